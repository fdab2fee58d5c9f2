//! Channels: a sender account on a provider (or the sandbox) and its settings.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::channels;
use super::{DbConnection, new_public_id, now, settings};
use crate::domain::channel::{ChannelKind, Provider};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = channels)]
struct ChannelRow {
    id: i64,
    public_id: String,
    kind: String,
    provider: String,
    name: String,
    sender: String,
    settings: String,
    secrets: Option<String>,
    rate_limit_per_second: i32,
    disabled_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    tested_ok_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: i64,
    pub public_id: String,
    pub kind: ChannelKind,
    pub provider: Provider,
    pub name: String,
    pub sender: String,
    /// Non-secret provider settings, JSON.
    pub settings: String,
    /// Encrypted secrets (never shown again once saved).
    pub secrets: Option<String>,
    pub rate_limit_per_second: i32,
    pub disabled_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// When "Test connection" last succeeded with the settings as they are now.
    pub tested_ok_at: Option<NaiveDateTime>,
}

impl Channel {
    pub fn is_enabled(&self) -> bool {
        self.disabled_at.is_none()
    }

    pub fn is_sandbox(&self) -> bool {
        self.provider == Provider::Sandbox
    }
}

impl TryFrom<ChannelRow> for Channel {
    type Error = diesel::result::Error;

    fn try_from(r: ChannelRow) -> Result<Self, Self::Error> {
        let bad = |e: String| diesel::result::Error::DeserializationError(e.into());
        Ok(Channel {
            id: r.id,
            public_id: r.public_id,
            kind: r.kind.parse().map_err(bad)?,
            provider: r.provider.parse().map_err(bad)?,
            name: r.name,
            sender: r.sender,
            settings: r.settings,
            secrets: r.secrets,
            rate_limit_per_second: r.rate_limit_per_second,
            disabled_at: r.disabled_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            tested_ok_at: r.tested_ok_at,
        })
    }
}

pub struct NewChannel<'a> {
    pub kind: ChannelKind,
    pub provider: Provider,
    pub name: &'a str,
    pub sender: &'a str,
    pub settings: &'a str,
    pub secrets: Option<&'a str>,
    pub rate_limit_per_second: i32,
}

pub fn insert(conn: &mut DbConnection, new: &NewChannel<'_>) -> QueryResult<Channel> {
    let at = now();
    let row = diesel::insert_into(channels::table)
        .values((
            channels::public_id.eq(new_public_id()),
            channels::kind.eq(new.kind.as_str()),
            channels::provider.eq(new.provider.as_str()),
            channels::name.eq(new.name),
            channels::sender.eq(new.sender),
            channels::settings.eq(new.settings),
            channels::secrets.eq(new.secrets),
            channels::rate_limit_per_second.eq(new.rate_limit_per_second),
            channels::created_at.eq(at),
            channels::updated_at.eq(at),
        ))
        .returning(channels::all_columns)
        .get_result::<ChannelRow>(conn)?;
    Channel::try_from(row)
}

/// All channels, enabled first, by kind and name.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Channel>> {
    channels::table
        .select(ChannelRow::as_select())
        .order((
            channels::disabled_at.is_not_null(),
            channels::kind,
            channels::name,
        ))
        .load(conn)?
        .into_iter()
        .map(Channel::try_from)
        .collect()
}

/// A page of channels in the order they were made, after the channel with id `after`.
pub fn page(conn: &mut DbConnection, after: Option<i64>, limit: i64) -> QueryResult<Vec<Channel>> {
    let mut query = channels::table
        .select(ChannelRow::as_select())
        .order(channels::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(channels::id.gt(after));
    }
    query
        .load(conn)?
        .into_iter()
        .map(Channel::try_from)
        .collect()
}

/// Creates one sandbox channel per kind the first time Herald starts on a database. A flag
/// records that it happened, so channels an admin deletes later do not come back.
pub fn seed_sandbox(conn: &mut DbConnection) -> QueryResult<Vec<Channel>> {
    if settings::get(conn, settings::SANDBOX_SEEDED)?.is_some() {
        return Ok(Vec::new());
    }
    crate::storage::write_transaction(conn, |conn| {
        if !settings::insert_if_absent(conn, settings::SANDBOX_SEEDED, "1")? {
            return Ok(Vec::new());
        }
        ChannelKind::ALL
            .iter()
            .map(|&kind| {
                insert(
                    conn,
                    &NewChannel {
                        kind,
                        provider: Provider::Sandbox,
                        name: &format!("Sandbox {}", kind.label()),
                        sender: "sandbox",
                        settings: "{}",
                        secrets: None,
                        rate_limit_per_second: Provider::Sandbox.default_rate_limit(),
                    },
                )
            })
            .collect()
    })
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Channel>> {
    channels::table
        .find(id)
        .select(ChannelRow::as_select())
        .first(conn)
        .optional()?
        .map(Channel::try_from)
        .transpose()
}

pub fn find_by_public_id(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<Channel>> {
    channels::table
        .filter(channels::public_id.eq(public_id))
        .select(ChannelRow::as_select())
        .first(conn)
        .optional()?
        .map(Channel::try_from)
        .transpose()
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// The channel already called `name` (compared without case), other than `except`.
pub fn find_by_name(
    conn: &mut DbConnection,
    name: &str,
    except: Option<i64>,
) -> QueryResult<Option<Channel>> {
    // Two fixed queries rather than one boxed one: Diesel keeps only fixed ones prepared, and a
    // send looks its channel up by name every time.
    let by_name = channels::table
        .filter(lower(channels::name).eq(name.to_lowercase()))
        .select(ChannelRow::as_select());
    match except {
        None => by_name.first(conn),
        Some(id) => by_name.filter(channels::id.ne(id)).first(conn),
    }
    .optional()?
    .map(Channel::try_from)
    .transpose()
}

/// What an edit changes; `secrets` replaces the sealed secrets as a whole.
pub struct ChannelChanges<'a> {
    pub name: &'a str,
    pub sender: &'a str,
    pub settings: &'a str,
    pub secrets: Option<&'a str>,
    pub rate_limit_per_second: i32,
    /// The settings or secrets it connects with changed: an earlier successful test no
    /// longer says anything about them.
    pub connection_changed: bool,
}

/// Saves an edit; a new `updated_at` makes the registry build a fresh adapter.
pub fn update(
    conn: &mut DbConnection,
    id: i64,
    changes: &ChannelChanges<'_>,
) -> QueryResult<Channel> {
    let row = diesel::update(channels::table.find(id))
        .set((
            channels::name.eq(changes.name),
            channels::sender.eq(changes.sender),
            channels::settings.eq(changes.settings),
            channels::secrets.eq(changes.secrets),
            channels::rate_limit_per_second.eq(changes.rate_limit_per_second),
            channels::updated_at.eq(now()),
        ))
        .returning(channels::all_columns)
        .get_result::<ChannelRow>(conn)?;
    if changes.connection_changed && row.tested_ok_at.is_some() {
        diesel::update(channels::table.find(id))
            .set(channels::tested_ok_at.eq(None::<NaiveDateTime>))
            .execute(conn)?;
        return find(conn, id)?.ok_or(diesel::result::Error::NotFound);
    }
    Channel::try_from(row)
}

/// Records the outcome of "Test connection": the time of a success, or none after a failure.
/// `updated_at` stays, so the registry keeps its adapter.
pub fn record_test(conn: &mut DbConnection, id: i64, ok: bool) -> QueryResult<usize> {
    diesel::update(channels::table.find(id))
        .set(channels::tested_ok_at.eq(ok.then(now)))
        .execute(conn)
}

/// Disables (nothing is sent through it) or enables a channel.
pub fn set_disabled(conn: &mut DbConnection, id: i64, disabled: bool) -> QueryResult<Channel> {
    let at = now();
    let row = diesel::update(channels::table.find(id))
        .set((
            channels::disabled_at.eq(disabled.then_some(at)),
            channels::updated_at.eq(at),
        ))
        .returning(channels::all_columns)
        .get_result::<ChannelRow>(conn)?;
    Channel::try_from(row)
}

/// How many messages (sent or waiting) name this channel: their history needs it.
pub fn messages_using(conn: &mut DbConnection, id: i64) -> QueryResult<i64> {
    use super::schema::messages;
    messages::table
        .filter(messages::channel_id.eq(id))
        .count()
        .get_result(conn)
}

/// Deletes a channel no message uses (its windows, inbound messages and webhook receipts go
/// with it). A message written meanwhile makes this fail on the foreign key.
pub fn delete(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(channels::table.find(id)).execute(conn)
}

/// Replaces a channel's (non-secret) settings document; a new `updated_at` makes the registry
/// build a fresh adapter.
pub fn set_settings(conn: &mut DbConnection, id: i64, settings: &str) -> QueryResult<usize> {
    diesel::update(channels::table.find(id))
        .set((
            channels::settings.eq(settings),
            channels::updated_at.eq(now()),
        ))
        .execute(conn)
}
