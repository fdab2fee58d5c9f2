//! API keys: created with a role (the key itself shown once, stored only as a hash) and revoked.

use super::reveals::{Reveal, RevealOn};
use super::{Change, FieldProblems, ServiceError, ServiceResult, Services};
use crate::auth::token;
use crate::domain::audit::Actor;
use crate::domain::role::Role;
use crate::domain::user::DisplayName;
use crate::storage::api_keys;

/// Every key, revoked ones too, as the API keys page lists them.
pub async fn list(svc: &Services) -> ServiceResult<Vec<(api_keys::ApiKey, Option<String>)>> {
    svc.read(|conn| Ok(api_keys::list(conn)?)).await
}

/// Creates a key named `name` with `role`; the key waits beside the admin's session
/// `session_id` to be shown once. Field problems come back as `invalid_api_key`.
pub async fn create(
    svc: &Services,
    actor: Actor,
    created_by: Option<i64>,
    session_id: i64,
    name: &str,
    role: &str,
) -> ServiceResult<(DisplayName, Role)> {
    let mut problems = FieldProblems::new();
    let name = problems.check("name", DisplayName::parse(name));
    let role = problems.check("role", role.parse::<Role>().map_err(|e| e.to_string()));
    let (Some(name), Some(role)) = (name, role) else {
        return Err(ServiceError::invalid_fields("invalid_api_key", problems));
    };
    let new = token::new_api_key();
    let reveal = Reveal::new(
        format!("API key \"{}\"", name.as_str()),
        new.secret.clone(),
        "Copy it now: Herald stores only a hash and cannot show it again. Send it in the header Authorization: Bearer <key>.",
    )
    .seal(&svc.keys)?;
    let key_name = name.clone();
    svc.write(actor, move |change| {
        let key = NewKey {
            name: &key_name,
            role,
            token: &new,
            created_by,
        };
        key.record(change)?;
        reveal.keep(change.conn, session_id, RevealOn::ApiKeys)?;
        Ok(())
    })
    .await?;
    Ok((name, role))
}

/// A key being created, by the page or the command line.
pub struct NewKey<'a> {
    pub name: &'a DisplayName,
    pub role: Role,
    pub token: &'a token::NewApiKey,
    pub created_by: Option<i64>,
}

impl NewKey<'_> {
    /// Stores the key (its hash) with its audit entry, inside `change`.
    pub fn record(&self, change: &mut Change<'_>) -> ServiceResult<api_keys::ApiKey> {
        let key = api_keys::insert(
            change.conn,
            &api_keys::NewApiKey {
                name: self.name.as_str(),
                role: self.role,
                prefix: &self.token.prefix,
                key_hash: &self.token.hash,
                created_by: self.created_by,
            },
        )?;
        change.audit(
            "api_key.created",
            "api_key",
            Some(&key.public_id),
            serde_json::json!({"name": key.name, "role": self.role.as_str(), "prefix": key.prefix}),
        )?;
        Ok(key)
    }
}

/// Revokes the key `public_id`; `false` when it was revoked already (nothing is recorded then).
pub async fn revoke(
    svc: &Services,
    actor: Actor,
    public_id: String,
) -> ServiceResult<(api_keys::ApiKey, bool)> {
    svc.write(actor, move |change| {
        let key = api_keys::find_by_public_id(change.conn, &public_id)?
            .ok_or_else(|| ServiceError::not_found("This API key"))?;
        let revoked = api_keys::revoke(change.conn, key.id)?;
        if revoked {
            change.audit(
                "api_key.revoked",
                "api_key",
                Some(&key.public_id),
                serde_json::json!({"name": key.name}),
            )?;
        }
        Ok((key, revoked))
    })
    .await
}
