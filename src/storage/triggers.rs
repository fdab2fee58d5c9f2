//! Issue 20: triggers and the log of their events (`triggers`, `trigger_events`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{channels, messages, templates, trigger_events, triggers};
use super::{DbConnection, new_public_id, now};

/// A stored trigger; `secret` is sealed (see `auth::sealed`) and `mapping` is JSON.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = triggers)]
pub struct TriggerRow {
    pub id: i64,
    pub public_id: String,
    pub slug: String,
    pub name: String,
    pub channel_id: i64,
    pub template_id: Option<i64>,
    pub text: Option<String>,
    pub scheme: String,
    pub secret: String,
    pub mapping: String,
    pub enabled: i32,
    pub created_by_label: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl TriggerRow {
    pub fn is_enabled(&self) -> bool {
        self.enabled != 0
    }
}

/// What a trigger is made of (a new one, or the new state of one).
#[derive(Debug, Clone)]
pub struct TriggerFields<'a> {
    pub name: &'a str,
    pub channel_id: i64,
    pub template_id: Option<i64>,
    pub text: Option<&'a str>,
    pub scheme: &'a str,
    pub sealed_secret: &'a str,
    pub mapping: &'a str,
    pub enabled: bool,
}

/// The columns a create or an update writes (`None` writes NULL: a trigger that moves from a
/// template to text loses its template).
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = triggers, treat_none_as_null = true)]
struct Columns<'a> {
    name: &'a str,
    channel_id: i64,
    template_id: Option<i64>,
    text: Option<&'a str>,
    scheme: &'a str,
    secret: &'a str,
    mapping: &'a str,
    enabled: i32,
    updated_at: NaiveDateTime,
}

impl<'a> Columns<'a> {
    fn of(f: &TriggerFields<'a>) -> Self {
        Columns {
            name: f.name,
            channel_id: f.channel_id,
            template_id: f.template_id,
            text: f.text,
            scheme: f.scheme,
            secret: f.sealed_secret,
            mapping: f.mapping,
            enabled: i32::from(f.enabled),
            updated_at: now(),
        }
    }
}

pub fn insert(
    conn: &mut DbConnection,
    fields: &TriggerFields<'_>,
    slug: &str,
    created_by: &str,
) -> QueryResult<TriggerRow> {
    let columns = Columns::of(fields);
    let created_at = columns.updated_at;
    super::on_backend!(conn, |c| diesel::insert_into(triggers::table)
        .values((
            triggers::public_id.eq(new_public_id()),
            triggers::slug.eq(slug),
            triggers::created_by_label.eq(created_by),
            triggers::created_at.eq(created_at),
            &columns,
        ))
        .returning(TriggerRow::as_returning())
        .get_result(c))
}

pub fn update(conn: &mut DbConnection, id: i64, fields: &TriggerFields<'_>) -> QueryResult<usize> {
    diesel::update(triggers::table.find(id))
        .set(&Columns::of(fields))
        .execute(conn)
}

pub fn delete(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(trigger_events::table.filter(trigger_events::trigger_id.eq(id)))
        .execute(conn)?;
    diesel::delete(triggers::table.find(id)).execute(conn)
}

pub fn find_by_public_id(
    conn: &mut DbConnection,
    public_id: &str,
) -> QueryResult<Option<TriggerRow>> {
    triggers::table
        .filter(triggers::public_id.eq(public_id))
        .select(TriggerRow::as_select())
        .first(conn)
        .optional()
}

/// A trigger by its URL's slug, with the public ids of its channel and template (the names
/// its sends give them): one read for a delivery instead of three.
pub fn find_hook(
    conn: &mut DbConnection,
    slug: &str,
) -> QueryResult<Option<(TriggerRow, String, Option<String>)>> {
    triggers::table
        .inner_join(channels::table)
        .left_join(templates::table.on(triggers::template_id.eq(templates::id.nullable())))
        .filter(triggers::slug.eq(slug))
        .select((
            TriggerRow::as_select(),
            channels::public_id,
            templates::public_id.nullable(),
        ))
        .first(conn)
        .optional()
}

/// Another trigger with this name (names compare without case).
pub fn name_taken(conn: &mut DbConnection, name: &str, except: Option<i64>) -> QueryResult<bool> {
    let lower = name.trim().to_lowercase();
    let rows: Vec<(i64, String)> = triggers::table
        .select((triggers::id, triggers::name))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .any(|(id, n)| Some(id) != except && n.trim().to_lowercase() == lower))
}

/// Every trigger, by name (an admin keeps a handful).
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<TriggerRow>> {
    triggers::table
        .order(triggers::name)
        .select(TriggerRow::as_select())
        .load(conn)
}

/// A page of triggers in the order they were made, after the trigger with id `after`.
pub fn page(
    conn: &mut DbConnection,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<TriggerRow>> {
    let mut query = triggers::table
        .order(triggers::id)
        .select(TriggerRow::as_select())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(triggers::id.gt(after));
    }
    query.load(conn)
}

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub trigger_id: i64,
    pub dedup_key: Option<&'a str>,
    pub delay_key: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub payload: Option<&'a str>,
    /// The message it queued or scheduled.
    pub message_id: Option<i64>,
}

/// Records a delivery with what it did; `None` when one with the same de-duplication key was
/// recorded before (the unique index decides, so two copies arriving together still make one
/// event).
pub fn insert_event(conn: &mut DbConnection, e: &NewEvent<'_>) -> QueryResult<Option<i64>> {
    super::on_backend!(conn, |c| diesel::insert_into(trigger_events::table)
        .values((
            trigger_events::trigger_id.eq(e.trigger_id),
            trigger_events::dedup_key.eq(e.dedup_key),
            trigger_events::delay_key.eq(e.delay_key),
            trigger_events::outcome.eq(e.outcome),
            trigger_events::reason.eq(e.reason),
            trigger_events::payload.eq(e.payload),
            trigger_events::message_id.eq(e.message_id),
            trigger_events::received_at.eq(now()),
        ))
        .on_conflict_do_nothing()
        .returning(trigger_events::id)
        .get_result(c)
        .optional())
}

/// The messages earlier events of this trigger with this delay key scheduled and that have
/// not gone yet.
pub fn delayed_with_key(
    conn: &mut DbConnection,
    trigger_id: i64,
    delay_key: &str,
) -> QueryResult<Vec<i64>> {
    trigger_events::table
        .inner_join(messages::table)
        .filter(trigger_events::trigger_id.eq(trigger_id))
        .filter(trigger_events::delay_key.eq(delay_key))
        .filter(messages::status.eq("scheduled"))
        .select(messages::id)
        .load(conn)
}

/// One line of a trigger's event log.
#[derive(Debug, Clone, Queryable)]
pub struct EventLine {
    pub id: i64,
    pub received_at: NaiveDateTime,
    pub outcome: String,
    pub reason: Option<String>,
    pub dedup_key: Option<String>,
    pub message_public_id: Option<String>,
    pub message_status: Option<String>,
}

/// The newest events of a trigger, older than `before` (an event id) when given.
pub fn events(
    conn: &mut DbConnection,
    trigger_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<EventLine>> {
    let mut q = trigger_events::table
        .left_join(messages::table)
        .filter(trigger_events::trigger_id.eq(trigger_id))
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(trigger_events::id.lt(b));
    }
    q.order(trigger_events::id.desc())
        .limit(limit)
        .select((
            trigger_events::id,
            trigger_events::received_at,
            trigger_events::outcome,
            trigger_events::reason,
            trigger_events::dedup_key,
            messages::public_id.nullable(),
            messages::status.nullable(),
        ))
        .load(conn)
}

/// How many events a trigger has recorded.
pub fn event_count(conn: &mut DbConnection, trigger_id: i64) -> QueryResult<i64> {
    trigger_events::table
        .filter(trigger_events::trigger_id.eq(trigger_id))
        .count()
        .get_result(conn)
}
