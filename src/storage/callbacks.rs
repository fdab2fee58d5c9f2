//! Status callbacks (issue 19): endpoints and the event types they want, the events the
//! triggers append (migration 20261205100000_status_callbacks), deliveries fanned out from
//! them, and each attempt. Events are taken and deliveries claimed with `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL and by conditional statements in one write transaction on SQLite
//! (whose writers are serialised), so several workers never take one twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use super::prepared::fixed;
use super::schema::{
    webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events, webhook_subscriptions,
};
use super::{DbConnection, now, on_backend};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct Endpoint {
    pub id: i64,
    pub public_id: String,
    pub url: String,
    pub description: String,
    pub events: String,
    pub enabled: i32,
    pub allow_private_network: i32,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<NaiveDateTime>,
    pub failing_since: Option<NaiveDateTime>,
    pub disabled_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Endpoint {
    pub fn is_enabled(&self) -> bool {
        self.enabled != 0
    }

    pub fn allows_private_network(&self) -> bool {
        self.allow_private_network != 0
    }

    /// The event types it wants, as stored.
    pub fn event_names(&self) -> Vec<&str> {
        self.events.split_whitespace().collect()
    }
}

/// An endpoint's settings as written (sealed secret included).
pub struct EndpointFields<'a> {
    pub url: &'a str,
    pub description: &'a str,
    pub events: &'a [&'a str],
    pub enabled: bool,
    pub allow_private_network: bool,
}

pub fn insert_endpoint(
    conn: &mut DbConnection,
    public_id: &str,
    fields: &EndpointFields<'_>,
    sealed_secret: &str,
) -> QueryResult<Endpoint> {
    let at = now();
    diesel::insert_into(webhook_endpoints::table)
        .values((
            webhook_endpoints::public_id.eq(public_id),
            webhook_endpoints::url.eq(fields.url),
            webhook_endpoints::description.eq(fields.description),
            webhook_endpoints::events.eq(fields.events.join(" ")),
            webhook_endpoints::enabled.eq(i32::from(fields.enabled)),
            webhook_endpoints::allow_private_network.eq(i32::from(fields.allow_private_network)),
            webhook_endpoints::secret.eq(sealed_secret),
            webhook_endpoints::created_at.eq(at),
            webhook_endpoints::updated_at.eq(at),
        ))
        .execute(conn)?;
    let endpoint = find_endpoint(conn, public_id)?.ok_or(diesel::result::Error::NotFound)?;
    sync_subscriptions(conn, &endpoint)?;
    Ok(endpoint)
}

pub fn find_endpoint(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<Endpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::public_id.eq(public_id))
        .select(Endpoint::as_select())
        .first(conn)
        .optional()
}

pub fn find_endpoint_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Endpoint>> {
    webhook_endpoints::table
        .find(id)
        .select(Endpoint::as_select())
        .first(conn)
        .optional()
}

/// Every endpoint, oldest first.
pub fn list_endpoints(conn: &mut DbConnection) -> QueryResult<Vec<Endpoint>> {
    webhook_endpoints::table
        .order(webhook_endpoints::id)
        .select(Endpoint::as_select())
        .load(conn)
}

/// A page of endpoints in the order they were made, after the endpoint with id `after`.
pub fn page_endpoints(
    conn: &mut DbConnection,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Endpoint>> {
    let mut query = webhook_endpoints::table
        .order(webhook_endpoints::id)
        .select(Endpoint::as_select())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(webhook_endpoints::id.gt(after));
    }
    query.load(conn)
}

pub fn enabled_endpoints(conn: &mut DbConnection) -> QueryResult<Vec<Endpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::enabled.ne(0))
        .order(webhook_endpoints::id)
        .select(Endpoint::as_select())
        .load(conn)
}

pub fn update_endpoint(
    conn: &mut DbConnection,
    id: i64,
    fields: &EndpointFields<'_>,
) -> QueryResult<Endpoint> {
    diesel::update(webhook_endpoints::table.find(id))
        .set((
            webhook_endpoints::url.eq(fields.url),
            webhook_endpoints::description.eq(fields.description),
            webhook_endpoints::events.eq(fields.events.join(" ")),
            webhook_endpoints::enabled.eq(i32::from(fields.enabled)),
            webhook_endpoints::allow_private_network.eq(i32::from(fields.allow_private_network)),
            webhook_endpoints::updated_at.eq(now()),
        ))
        .execute(conn)?;
    // Enabling it again forgets why it was disabled and how long it had failed.
    if fields.enabled {
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::disabled_reason.eq(None::<String>),
                webhook_endpoints::failing_since.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
    }
    let endpoint = find_endpoint_by_id(conn, id)?.ok_or(diesel::result::Error::NotFound)?;
    sync_subscriptions(conn, &endpoint)?;
    Ok(endpoint)
}

/// Makes `webhook_subscriptions` say what the endpoint wants: its event types while it is
/// enabled, nothing otherwise. The triggers read this table alone.
fn sync_subscriptions(conn: &mut DbConnection, endpoint: &Endpoint) -> QueryResult<()> {
    diesel::delete(
        webhook_subscriptions::table.filter(webhook_subscriptions::endpoint_id.eq(endpoint.id)),
    )
    .execute(conn)?;
    if !endpoint.is_enabled() {
        return Ok(());
    }
    let rows: Vec<_> = endpoint
        .event_names()
        .into_iter()
        .map(|e| {
            (
                webhook_subscriptions::event_type.eq(e.to_owned()),
                webhook_subscriptions::endpoint_id.eq(endpoint.id),
            )
        })
        .collect();
    on_backend!(conn, |c| diesel::insert_into(webhook_subscriptions::table)
        .values(&rows)
        .execute(c))?;
    Ok(())
}

/// Disables an endpoint and says why (a 410, or failing for a day).
pub fn disable_endpoint(conn: &mut DbConnection, id: i64, reason: &str) -> QueryResult<()> {
    diesel::update(webhook_endpoints::table.find(id))
        .set((
            webhook_endpoints::enabled.eq(0),
            webhook_endpoints::disabled_reason.eq(Some(reason)),
            webhook_endpoints::updated_at.eq(now()),
        ))
        .execute(conn)?;
    diesel::delete(webhook_subscriptions::table.filter(webhook_subscriptions::endpoint_id.eq(id)))
        .execute(conn)?;
    Ok(())
}

/// A new secret; the old one keeps signing until `old_until`.
pub fn rotate_secret(
    conn: &mut DbConnection,
    id: i64,
    sealed_new: &str,
    sealed_old: &str,
    old_until: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(webhook_endpoints::table.find(id))
        .set((
            webhook_endpoints::secret.eq(sealed_new),
            webhook_endpoints::previous_secret.eq(Some(sealed_old)),
            webhook_endpoints::previous_secret_until.eq(Some(old_until)),
            webhook_endpoints::updated_at.eq(now()),
        ))
        .execute(conn)
}

pub fn delete_endpoint(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    // Children first: SQLite enforces the cascade only with foreign keys on, which every
    // Herald connection has, but a delete that does not depend on it reads plainer.
    let deliveries = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(id))
        .select(webhook_deliveries::id);
    diesel::delete(
        webhook_attempts::table.filter(webhook_attempts::delivery_id.eq_any(deliveries)),
    )
    .execute(conn)?;
    diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::endpoint_id.eq(id)))
        .execute(conn)?;
    diesel::delete(webhook_subscriptions::table.filter(webhook_subscriptions::endpoint_id.eq(id)))
        .execute(conn)?;
    diesel::delete(webhook_endpoints::table.find(id)).execute(conn)
}

/// Records that an endpoint failed (keeping the first time it did) or answered (clearing it).
/// Returns since when it has been failing.
pub fn note_health(
    conn: &mut DbConnection,
    id: i64,
    failing: bool,
    at: NaiveDateTime,
) -> QueryResult<Option<NaiveDateTime>> {
    if failing {
        diesel::update(
            webhook_endpoints::table
                .find(id)
                .filter(webhook_endpoints::failing_since.is_null()),
        )
        .set(webhook_endpoints::failing_since.eq(Some(at)))
        .execute(conn)?;
    } else {
        diesel::update(
            webhook_endpoints::table
                .find(id)
                .filter(webhook_endpoints::failing_since.is_not_null()),
        )
        .set(webhook_endpoints::failing_since.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    }
    webhook_endpoints::table
        .find(id)
        .select(webhook_endpoints::failing_since)
        .first(conn)
}

// --- events ---

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = webhook_events)]
pub struct EventRow {
    pub id: i64,
    pub event_type: String,
    pub subject_id: i64,
    pub detail: String,
    pub occurred_at: NaiveDateTime,
}

fn take_events_sql(postgres: bool) -> String {
    let lock = if postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    format!(
        "DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events ORDER BY id LIMIT $1{lock}) \
         RETURNING id, event_type, subject_id, detail, occurred_at"
    )
}

/// Takes up to `limit` events, oldest first, out of the table: call it inside the transaction
/// that writes their deliveries, so an event is either still there or fanned out.
pub fn take_events(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<EventRow>> {
    let mut rows: Vec<EventRow> = match conn {
        DbConnection::Sqlite(c) => fixed(&take_events_sql(false))
            .bind::<BigInt, _>(limit)
            .load(c)?,
        DbConnection::Postgres(c) => fixed(&take_events_sql(true))
            .bind::<BigInt, _>(limit)
            .load(c)?,
    };
    rows.sort_by_key(|e| e.id);
    Ok(rows)
}

/// `(event type, endpoint id)` of every enabled endpoint's wishes.
pub fn subscriptions(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    webhook_subscriptions::table
        .select((
            webhook_subscriptions::event_type,
            webhook_subscriptions::endpoint_id,
        ))
        .load(conn)
}

/// Events waiting to be fanned out (the benchmark watches it stay bounded).
pub fn waiting_events(conn: &mut DbConnection) -> QueryResult<i64> {
    webhook_events::table.count().get_result(conn)
}

// --- deliveries ---

pub struct NewDelivery {
    pub endpoint_id: i64,
    pub webhook_id: String,
    pub event_type: String,
    pub payload: String,
}

/// Inserts deliveries, due now; or, with `lease_until`, claimed until then by the worker
/// fanning them out (their first attempt counted, as [`claim_due`] does: nobody else takes
/// them meanwhile, and if that worker dies they come due when the lease ends). Returns them as
/// stored, in the order given.
pub fn insert_deliveries(
    conn: &mut DbConnection,
    rows: Vec<NewDelivery>,
    lease_until: Option<NaiveDateTime>,
) -> QueryResult<Vec<DeliveryRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let at = now();
    let (attempts, next_attempt_at) = match lease_until {
        Some(until) => (1, until),
        None => (0, at),
    };
    let mut ids = std::collections::HashMap::with_capacity(rows.len());
    // SQLite binds at most 32,766 values a statement: 9 a row.
    for chunk in rows.chunks(1000) {
        let values: Vec<_> = chunk
            .iter()
            .map(|d| {
                (
                    webhook_deliveries::endpoint_id.eq(d.endpoint_id),
                    webhook_deliveries::webhook_id.eq(&d.webhook_id),
                    webhook_deliveries::event_type.eq(&d.event_type),
                    webhook_deliveries::payload.eq(&d.payload),
                    webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
                    webhook_deliveries::attempts.eq(attempts),
                    webhook_deliveries::next_attempt_at.eq(next_attempt_at),
                    webhook_deliveries::created_at.eq(at),
                    webhook_deliveries::updated_at.eq(at),
                )
            })
            .collect();
        // RETURNING gives rows in no promised order: each is matched by its webhook-id.
        let written: Vec<(i64, String)> =
            on_backend!(conn, |c| diesel::insert_into(webhook_deliveries::table)
                .values(&values)
                .returning((webhook_deliveries::id, webhook_deliveries::webhook_id))
                .get_results(c))?;
        ids.extend(written.into_iter().map(|(id, webhook_id)| (webhook_id, id)));
    }
    rows.into_iter()
        .map(|d| {
            Ok(DeliveryRow {
                id: ids
                    .get(&d.webhook_id)
                    .copied()
                    .ok_or(diesel::result::Error::NotFound)?,
                endpoint_id: d.endpoint_id,
                webhook_id: d.webhook_id,
                event_type: d.event_type,
                payload: d.payload,
                status: DeliveryStatus::Pending.as_str().to_owned(),
                attempts,
                next_attempt_at,
                last_status_code: None,
                created_at: at,
                updated_at: at,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint_id: i64,
    pub webhook_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_status_code: Option<i32>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

const DELIVERY_COLUMNS: &str = "id, endpoint_id, webhook_id, event_type, payload, status, attempts, \
                                next_attempt_at, last_status_code, created_at, updated_at";

fn claim_sql(postgres: bool) -> String {
    // Claiming moves the next attempt to the lease's end: the row is not due for anyone else
    // meanwhile, and if this worker dies it comes due again by itself (at least once).
    const SET: &str = "UPDATE webhook_deliveries SET next_attempt_at = $1, attempts = attempts + 1, \
                       updated_at = $2 WHERE id IN";
    const DUE: &str = "status = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at, id";
    if postgres {
        // Every endpoint at once: each takes at most its own room, skipping rows another
        // worker holds.
        format!(
            "{SET} (SELECT d.id FROM unnest($3::bigint[], $4::bigint[]) AS e(endpoint_id, room) \
             CROSS JOIN LATERAL (SELECT id FROM webhook_deliveries WHERE endpoint_id = e.endpoint_id \
             AND {DUE} LIMIT e.room FOR UPDATE SKIP LOCKED) AS d) RETURNING {DELIVERY_COLUMNS}"
        )
    } else {
        format!(
            "{SET} (SELECT id FROM webhook_deliveries WHERE endpoint_id = $3 AND {DUE} LIMIT $4) \
             RETURNING {DELIVERY_COLUMNS}"
        )
    }
}

/// Claims due deliveries until `lease_until`: for each `(endpoint id, room)`, up to `room` of
/// that endpoint's, oldest due first. One statement on PostgreSQL; on SQLite (whose writers are
/// serialised) one statement per endpoint in one transaction.
pub fn claim_due(
    conn: &mut DbConnection,
    wanted: &[(i64, i64)],
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<DeliveryRow>> {
    let wanted: Vec<(i64, i64)> = wanted.iter().copied().filter(|w| w.1 > 0).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let at = now();
    let mut rows: Vec<DeliveryRow> = match conn {
        DbConnection::Postgres(c) => {
            let (endpoints, rooms): (Vec<i64>, Vec<i64>) = wanted.into_iter().unzip();
            fixed(&claim_sql(true))
                .bind::<Timestamp, _>(lease_until)
                .bind::<Timestamp, _>(at)
                .bind::<Array<BigInt>, _>(endpoints)
                .bind::<Array<BigInt>, _>(rooms)
                .load(c)?
        }
        DbConnection::Sqlite(_) => super::write_transaction(conn, |conn| {
            let DbConnection::Sqlite(c) = conn else {
                unreachable!("matched above")
            };
            let mut rows = Vec::new();
            for (endpoint_id, room) in &wanted {
                rows.extend(
                    fixed::<diesel::sqlite::Sqlite>(&claim_sql(false))
                        .bind::<Timestamp, _>(lease_until)
                        .bind::<Timestamp, _>(at)
                        .bind::<BigInt, _>(*endpoint_id)
                        .bind::<BigInt, _>(*room)
                        .load::<DeliveryRow>(c)?,
                );
            }
            Ok::<_, diesel::result::Error>(rows)
        })?,
    };
    rows.sort_by_key(|d| (d.next_attempt_at, d.id));
    Ok(rows)
}

/// Moves the lease of claimed deliveries still waiting for their turn to `lease_until`, for
/// those whose lease is still running and ends before `before`: a lease that ran out may be
/// another worker's by now (its claim set a later end). Returns the ids extended.
pub fn extend_leases(
    conn: &mut DbConnection,
    ids: &[i64],
    before: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    const SET: &str = "UPDATE webhook_deliveries SET next_attempt_at = $1";
    const WHERE: &str = "AND status = 'pending' AND next_attempt_at > $2 AND next_attempt_at < $3 \
                         RETURNING id";
    let at = now();
    let rows: Vec<IdRow> = match conn {
        DbConnection::Postgres(c) => fixed(&format!("{SET} WHERE id = ANY($4) {WHERE}"))
            .bind::<Timestamp, _>(lease_until)
            .bind::<Timestamp, _>(at)
            .bind::<Timestamp, _>(before)
            .bind::<Array<BigInt>, _>(ids)
            .load(c)?,
        DbConnection::Sqlite(c) => fixed(&format!(
            "{SET} WHERE id IN (SELECT value FROM json_each($4)) {WHERE}"
        ))
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(at)
        .bind::<Timestamp, _>(before)
        .bind::<Text, _>(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .load(c)?,
    };
    Ok(rows.into_iter().map(|r| r.id).collect())
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Gives back claims that were not tried (`(delivery id, attempts as claimed)`): due now, the
/// claim's count undone. A claim another worker has taken since (its count is higher) is left.
pub fn release_claims(conn: &mut DbConnection, claims: &[(i64, i32)]) -> QueryResult<usize> {
    let at = now();
    let mut released = 0;
    for (id, attempts) in claims {
        released += diesel::update(
            webhook_deliveries::table
                .find(id)
                .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
                .filter(webhook_deliveries::attempts.eq(attempts)),
        )
        .set((
            webhook_deliveries::next_attempt_at.eq(at),
            webhook_deliveries::attempts.eq(attempts - 1),
            webhook_deliveries::updated_at.eq(at),
        ))
        .execute(conn)?;
    }
    Ok(released)
}

/// One try of a delivery, as the log shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub response_excerpt: String,
    pub error: Option<String>,
}

pub struct NewAttempt<'a> {
    pub delivery_id: i64,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub response_excerpt: &'a str,
    pub error: Option<&'a str>,
    /// Where the delivery goes from here: its status and, when still pending, the time of the
    /// next try.
    pub then: DeliveryStatus,
    pub next_attempt_at: NaiveDateTime,
}

/// Logs attempts and moves their deliveries on, a batch at a time: one insert for the log, one
/// update per outcome shared by many (a success, a failure with its code), one per retry (each
/// has its own time).
pub fn record_attempts(conn: &mut DbConnection, attempts: &[NewAttempt<'_>]) -> QueryResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                webhook_attempts::delivery_id.eq(a.delivery_id),
                webhook_attempts::attempted_at.eq(a.attempted_at),
                webhook_attempts::status_code.eq(a.status_code),
                webhook_attempts::duration_ms.eq(a.duration_ms),
                webhook_attempts::response_excerpt.eq(a.response_excerpt),
                webhook_attempts::error.eq(a.error),
            )
        })
        .collect();
    // SQLite binds at most 32,766 values a statement: 6 a row.
    for chunk in rows.chunks(1000) {
        on_backend!(conn, |c| diesel::insert_into(webhook_attempts::table)
            .values(chunk)
            .execute(c))?;
    }
    let at = now();
    let mut finished: std::collections::BTreeMap<(&str, Option<i32>), Vec<i64>> =
        Default::default();
    for a in attempts {
        if a.then == DeliveryStatus::Pending {
            diesel::update(webhook_deliveries::table.find(a.delivery_id))
                .set((
                    webhook_deliveries::status.eq(a.then.as_str()),
                    webhook_deliveries::next_attempt_at.eq(a.next_attempt_at),
                    webhook_deliveries::last_status_code.eq(a.status_code),
                    webhook_deliveries::updated_at.eq(at),
                ))
                .execute(conn)?;
        } else {
            finished
                .entry((a.then.as_str(), a.status_code))
                .or_default()
                .push(a.delivery_id);
        }
    }
    for ((status, code), ids) in finished {
        for chunk in ids.chunks(1000) {
            diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(chunk)))
                .set((
                    webhook_deliveries::status.eq(status),
                    webhook_deliveries::next_attempt_at.eq(at),
                    webhook_deliveries::last_status_code.eq(code),
                    webhook_deliveries::updated_at.eq(at),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Which deliveries a page of an endpoint's log shows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    /// Only those older than this delivery (the next page).
    pub before_id: Option<i64>,
    /// How many a page holds.
    pub page_size: i64,
}

/// A page of an endpoint's deliveries, newest first.
pub fn deliveries(
    conn: &mut DbConnection,
    endpoint_id: i64,
    filter: &DeliveryFilter,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    let mut q = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .select(DeliveryRow::as_select())
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(s) = filter.status {
        q = q.filter(webhook_deliveries::status.eq(s.as_str()));
    }
    if let Some(e) = &filter.event_type {
        q = q.filter(webhook_deliveries::event_type.eq(e.clone()));
    }
    if let Some(before) = filter.before_id {
        q = q.filter(webhook_deliveries::id.lt(before));
    }
    q.load(conn)
}

/// The attempts of these deliveries, oldest first.
pub fn attempts_of(conn: &mut DbConnection, delivery_ids: &[i64]) -> QueryResult<Vec<AttemptRow>> {
    webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(delivery_ids))
        .order(webhook_attempts::id)
        .select(AttemptRow::as_select())
        .load(conn)
}

pub fn find_delivery(
    conn: &mut DbConnection,
    endpoint_id: i64,
    webhook_id: &str,
) -> QueryResult<Option<DeliveryRow>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .select(DeliveryRow::as_select())
        .first(conn)
        .optional()
}

/// What "send again" resets: pending, due now, and a new day of tries (the age limit counts
/// from here).
macro_rules! due_again {
    ($at:expr) => {
        (
            webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
            webhook_deliveries::next_attempt_at.eq($at),
            webhook_deliveries::created_at.eq($at),
            webhook_deliveries::updated_at.eq($at),
        )
    };
}

/// Makes one delivery due again now (send again).
pub fn send_one_again(conn: &mut DbConnection, delivery_id: i64) -> QueryResult<usize> {
    let at = now();
    diesel::update(webhook_deliveries::table.find(delivery_id))
        .set(due_again!(at))
        .execute(conn)
}

/// Makes every failed delivery of an endpoint created since `since` due again now.
pub fn send_failed_again(
    conn: &mut DbConnection,
    endpoint_id: i64,
    since: NaiveDateTime,
) -> QueryResult<usize> {
    let at = now();
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Failed.as_str()))
            .filter(webhook_deliveries::created_at.ge(since)),
    )
    .set(due_again!(at))
    .execute(conn)
}

/// Deliveries (and their attempts) finished before `before`; returns how many went.
pub fn purge_finished_before(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    let old = webhook_deliveries::table
        .filter(webhook_deliveries::updated_at.lt(before))
        .filter(webhook_deliveries::status.ne(DeliveryStatus::Pending.as_str()))
        .select(webhook_deliveries::id);
    diesel::delete(webhook_attempts::table.filter(webhook_attempts::delivery_id.eq_any(old)))
        .execute(conn)?;
    diesel::delete(
        webhook_deliveries::table
            .filter(webhook_deliveries::updated_at.lt(before))
            .filter(webhook_deliveries::status.ne(DeliveryStatus::Pending.as_str())),
    )
    .execute(conn)
}

/// Deliveries not yet done, across endpoints (the benchmark watches this queue).
pub fn pending_deliveries(conn: &mut DbConnection) -> QueryResult<i64> {
    webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
        .count()
        .get_result(conn)
}

// --- what events carry ---

/// The messages with these ids (those still there).
pub fn messages_by_ids(
    conn: &mut DbConnection,
    ids: &[i64],
) -> QueryResult<Vec<super::messages::MessageRow>> {
    use super::schema::messages;
    messages::table
        .filter(messages::id.eq_any(ids))
        .select(super::messages::MessageRow::as_select())
        .load(conn)
}

/// `(id, public id)` of these contacts.
pub fn contact_public_ids(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, String)>> {
    use super::schema::contacts;
    contacts::table
        .filter(contacts::id.eq_any(ids))
        .select((contacts::id, contacts::public_id))
        .load(conn)
}

/// `(id, public id)` of these broadcasts.
pub fn broadcast_public_ids(
    conn: &mut DbConnection,
    ids: &[i64],
) -> QueryResult<Vec<(i64, String)>> {
    use super::schema::broadcasts;
    broadcasts::table
        .filter(broadcasts::id.eq_any(ids))
        .select((broadcasts::id, broadcasts::public_id))
        .load(conn)
}

/// A message a customer sent in.
#[derive(Debug, Clone, Queryable)]
pub struct InboundRow {
    pub public_id: String,
    pub channel_id: i64,
    pub contact_id: i64,
    pub provider_message_id: Option<String>,
    pub body: String,
    pub received_at: NaiveDateTime,
}

pub fn inbound(conn: &mut DbConnection, id: i64) -> QueryResult<Option<InboundRow>> {
    use super::schema::inbound_messages as im;
    im::table
        .find(id)
        .select((
            im::public_id,
            im::channel_id,
            im::contact_id,
            im::provider_message_id,
            im::body,
            im::received_at,
        ))
        .first(conn)
        .optional()
}
