//! People's accounts: the first admin at setup, inviting someone, roles and access, password
//! resets by an admin, and changing one's own password. Nobody changes their own role or access
//! through these calls, and the last active admin stays an active admin.

use super::reveals::{Reveal, RevealOn};
use super::sign_in::{Attempt, start_session};
use super::{Change, FieldProblems, ServiceError, ServiceResult, Services};
use crate::auth::token;
use crate::domain::audit::{Actor, ActorKind};
use crate::domain::role::Role;
use crate::domain::user::{DisplayName, Email, NewPassword};
use crate::storage::{is_unique_violation, users};

/// Every account, as the users page lists them.
pub async fn list(svc: &Services) -> ServiceResult<Vec<users::User>> {
    svc.read(|conn| Ok(users::list(conn)?)).await
}

/// Someone to invite, as typed: checked here.
#[derive(Debug, Clone, Default)]
pub struct Invitation {
    pub name: String,
    pub email: String,
    pub role: String,
    /// Empty: Herald makes up a readable temporary password.
    pub password: String,
}

/// Invites a person with a temporary password, which waits (sealed, beside `session_id`, the
/// inviting admin's session) to be shown once. Field problems come back as `invalid_user`.
pub async fn invite(
    svc: &Services,
    actor: Actor,
    session_id: i64,
    invitation: Invitation,
) -> ServiceResult<users::User> {
    let mut problems = FieldProblems::new();
    let name = problems.check("name", DisplayName::parse(&invitation.name));
    let email = problems.check("email", Email::parse(&invitation.email));
    let role = problems.check(
        "role",
        invitation.role.parse::<Role>().map_err(|e| e.to_string()),
    );
    let secret = if invitation.password.trim().is_empty() {
        token::readable_password()
    } else {
        invitation.password
    };
    let password = problems.check("password", NewPassword::parse(&secret, email.as_ref()));
    let (Some(name), Some(email), Some(role), Some(password), true) =
        (name, email, role, password, problems.is_empty())
    else {
        return Err(ServiceError::invalid_fields("invalid_user", problems));
    };

    let hash = svc.passwords.hash(password.expose().to_owned()).await?;
    let reveal = Reveal::new(
        format!("Sign-in details for {}", name.as_str()),
        format!("{email} / {}", password.expose()),
        "Share them privately. They choose their own password at first sign-in. This is shown only once.",
    )
    .seal(&svc.keys)?;
    svc.write(actor, move |change| {
        let user = record_new_user(
            change,
            &users::NewUser {
                email: email.as_str(),
                name: name.as_str(),
                role,
                password_hash: &hash,
                must_change_password: true,
            },
        )?;
        reveal.keep(change.conn, session_id, RevealOn::Users)?;
        Ok(user)
    })
    .await
}

/// Stores a new account with its audit entry, inside `change` (the users page and the command
/// line). An e-mail that already has an account is `email_taken`, named at the field.
pub fn record_new_user(
    change: &mut Change<'_>,
    new: &users::NewUser<'_>,
) -> ServiceResult<users::User> {
    let taken = |email: &str| {
        let mut problems = FieldProblems::new();
        problems.add("email", format!("{email} already has an account."));
        ServiceError::invalid_fields("email_taken", problems)
    };
    // Checked first: on PostgreSQL a unique violation would abort the whole transaction.
    if users::find_by_email(change.conn, new.email)?.is_some() {
        return Err(taken(new.email));
    }
    let user = users::insert(change.conn, new).map_err(|e| {
        if is_unique_violation(&e) {
            taken(new.email)
        } else {
            e.into()
        }
    })?;
    change.audit(
        "user.created",
        "user",
        Some(&user.id.to_string()),
        serde_json::json!({"email": user.email, "role": new.role.as_str()}),
    )?;
    Ok(user)
}

/// Loads the target account and refuses changes that would lock everyone out: nobody changes
/// their own role or access here, and the last active admin stays an active admin.
fn guard_change(
    change: &mut Change<'_>,
    me: i64,
    target: i64,
    removes_admin: bool,
) -> ServiceResult<users::User> {
    let user =
        users::find(change.conn, target)?.ok_or_else(|| ServiceError::not_found("This user"))?;
    if user.id == me {
        return Err(ServiceError::Forbidden(
            "You cannot change your own role or access; ask another admin.".into(),
        ));
    }
    if removes_admin
        && user.role == Role::Admin
        && user.is_active()
        && users::count_active_admins(change.conn)? <= 1
    {
        return Err(ServiceError::Forbidden(
            "Herald needs at least one active admin; make someone else an admin first.".into(),
        ));
    }
    Ok(user)
}

fn audit_user(
    change: &mut Change<'_>,
    action: &str,
    user: &users::User,
    details: serde_json::Value,
) -> ServiceResult<()> {
    change.audit(action, "user", Some(&user.id.to_string()), details)
}

/// Gives `target` another role; `me` is the admin asking.
pub async fn change_role(
    svc: &Services,
    actor: Actor,
    me: i64,
    target: i64,
    role: &str,
) -> ServiceResult<(users::User, Role)> {
    let role: Role = role
        .parse()
        .map_err(|e: crate::domain::role::UnknownRole| {
            ServiceError::invalid("invalid_role", e.to_string())
        })?;
    svc.write(actor, move |change| {
        let user = guard_change(change, me, target, role != Role::Admin)?;
        if user.role != role {
            users::set_role(change.conn, user.id, role)?;
            audit_user(
                change,
                "user.role_changed",
                &user,
                serde_json::json!({"from": user.role.as_str(), "to": role.as_str()}),
            )?;
        }
        Ok((user, role))
    })
    .await
}

/// Disables `target` (ending their sessions) or enables them again.
pub async fn set_access(
    svc: &Services,
    actor: Actor,
    me: i64,
    target: i64,
    disable: bool,
) -> ServiceResult<users::User> {
    svc.write(actor, move |change| {
        let user = guard_change(change, me, target, disable)?;
        users::set_disabled(change.conn, user.id, disable)?;
        let action = if disable {
            "user.disabled"
        } else {
            "user.enabled"
        };
        audit_user(change, action, &user, serde_json::json!({}))?;
        Ok(user)
    })
    .await
}

/// Gives `target` a new temporary password (ending their sessions), which waits beside the
/// admin's session `session_id` to be shown once.
pub async fn reset_password(
    svc: &Services,
    actor: Actor,
    me: i64,
    session_id: i64,
    target: i64,
) -> ServiceResult<users::User> {
    let temporary = token::readable_password();
    let hash = svc.passwords.hash(temporary.clone()).await?;
    let keys = svc.keys.clone();
    svc.write(actor, move |change| {
        let user = guard_change(change, me, target, false)?;
        users::set_password(change.conn, user.id, &hash, true, None)?;
        audit_user(
            change,
            "user.password_reset",
            &user,
            serde_json::json!({}),
        )?;
        Reveal::new(
            format!("New temporary password for {}", user.name),
            format!("{} / {temporary}", user.email),
            "Share it privately. They must choose a new password when they sign in. This is shown only once.",
        )
        .seal(&keys)?
        .keep(change.conn, session_id, RevealOn::Users)?;
        Ok(user)
    })
    .await
}

/// Sets the signed-in person's new password after their current one was checked (`attempt`);
/// their other sessions end, `keep_session` carries on.
pub async fn change_own_password(
    svc: &Services,
    actor: Actor,
    user_id: i64,
    keep_session: i64,
    attempt: Attempt,
    new: NewPassword,
) -> ServiceResult<usize> {
    let hash = svc.passwords.hash(new.expose().to_owned()).await?;
    svc.write(actor, move |change| {
        attempt.forget(change.conn)?;
        let ended = users::set_password(change.conn, user_id, &hash, false, Some(keep_session))?;
        change.audit(
            "user.password_changed",
            "user",
            Some(&user_id.to_string()),
            serde_json::json!({"other_sessions_ended": ended}),
        )?;
        Ok(ended)
    })
    .await
}

/// The first admin, from the setup page: created only while no account exists (a flag written
/// in the same transaction stops two at once), signed in at once. `None` when Herald was set up
/// meanwhile. Returns the account and the new session's token.
pub async fn set_up_first_admin(
    svc: &Services,
    name: DisplayName,
    email: Email,
    password: NewPassword,
) -> ServiceResult<Option<(users::User, String)>> {
    let hash = svc.passwords.hash(password.expose().to_owned()).await?;
    let ttl = svc.settings.session_ttl;
    svc.db
        .run(move |conn| {
            crate::storage::write_transaction(conn, |conn| {
                let created = users::create_first_admin(
                    conn,
                    &users::NewUser {
                        email: email.as_str(),
                        name: name.as_str(),
                        role: Role::Admin,
                        password_hash: &hash,
                        must_change_password: false,
                    },
                );
                let user = match created {
                    Ok(user) => user,
                    Err(users::SetupError::AlreadySetUp) => return Ok(None),
                    Err(users::SetupError::Database(e)) => return Err(e.into()),
                };
                // The new admin is the actor of their own creation.
                let actor = Actor {
                    kind: ActorKind::User,
                    id: Some(user.id),
                    label: format!("{} <{}>", user.name, user.email),
                };
                let mut change = Change {
                    conn,
                    actor: &actor,
                };
                change.audit(
                    "setup.completed",
                    "user",
                    Some(&user.id.to_string()),
                    serde_json::json!({"role": "admin"}),
                )?;
                let session_token = start_session(change.conn, user.id, ttl)?;
                // Creating the admin signs them in: that is their first sign-in.
                users::record_login(change.conn, user.id)?;
                Ok(Some((user, session_token)))
            })
        })
        .await
}
