//! The command-line operations besides serving: migrate, create a user, create an API key.
//! Each opens the database itself (migrating it first, so they work on a fresh one).

use crate::auth::{password, token};
use crate::config::Settings;
use crate::domain::audit::Actor;
use crate::domain::role::Role;
use crate::domain::user::{DisplayName, Email, NewPassword};
use crate::service;
use crate::startup::prepare_database;
use crate::storage::{self, Db, settings as app_settings, users};

fn actor() -> Actor {
    Actor::system("command line")
}

pub fn migrate(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let db = Db::connect(&settings.database_url, 1)?;
    let mut conn = db.get()?;
    storage::run_migrations(&mut conn)
}

/// Creates an account. Without a password (`None`), a temporary one is generated, returned,
/// and must be changed at first sign-in.
pub fn create_user(
    settings: &Settings,
    email: &str,
    name: &str,
    role: &str,
    password_given: Option<String>,
) -> anyhow::Result<(users::User, Option<String>)> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let name = DisplayName::parse(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let generated = password_given.is_none();
    let plain = password_given.unwrap_or_else(token::readable_password);
    let pw =
        NewPassword::parse(&plain, Some(&email)).map_err(|e| anyhow::anyhow!("password: {e}"))?;
    let hash = password::hash(pw.expose())?;

    let (db, _) = prepare_database(settings, false)?;
    let mut conn = db.get()?;
    let user = service::write(&mut conn, &actor(), |change| {
        let user = service::users::record_new_user(
            change,
            &users::NewUser {
                email: email.as_str(),
                name: name.as_str(),
                role,
                password_hash: &hash,
                must_change_password: generated,
            },
        )?;
        // The shell did what the setup page does; the page is gone for good now.
        app_settings::insert_if_absent(change.conn, app_settings::SETUP_COMPLETED, "1")?;
        Ok(user)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((user, generated.then_some(plain)))
}

/// Creates an API key and returns the secret, which is never stored.
pub fn create_api_key(
    settings: &Settings,
    name: &str,
    role: &str,
    rate_limit: Option<&str>,
) -> anyhow::Result<String> {
    let name = DisplayName::parse(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let rate_limit_per_minute = service::rate_limits::parse_limit(rate_limit.unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("--rate-limit: {e}"))?;
    let (db, _) = prepare_database(settings, false)?;
    let mut conn = db.get()?;
    let new = token::new_api_key();
    service::write(&mut conn, &actor(), |change| {
        service::api_keys::NewKey {
            name: &name,
            role,
            token: &new,
            created_by: None,
            rate_limit_per_minute,
        }
        .record(change)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(new.secret)
}
