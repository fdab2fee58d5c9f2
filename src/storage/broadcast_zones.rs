//! Where a broadcast's recipients are, for sends in each recipient's local time and quiet
//! hours (`domain::local_time`). At launch every pending recipient gets a zone, in a few
//! set-based statements: the contact's own time zone; else the zone of its number's country
//! (found once per distinct number prefix, not once per recipient); else the broadcast's. The
//! scheduler then takes pending recipients zone by zone, from the zones whose time has come.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use super::DbConnection;
use super::schema::{broadcast_recipients, broadcasts, contacts};
use crate::domain::local_time::zone_of_number;

diesel::define_sql_function!(fn substr(x: Text, start: Integer, len: Integer) -> Text);

/// How many characters of an E.164 number hold its calling code ("+" and at most three digits).
const PREFIX: i32 = 4;

/// Gives every pending recipient of the broadcast a zone (see the module's notes), and returns
/// the distinct zones, `fallback` (the broadcast's zone) among them if anyone got it.
pub fn assign(
    conn: &mut DbConnection,
    broadcast_id: i64,
    fallback: &str,
) -> QueryResult<Vec<String>> {
    // The contact's own zone (stored checked and canonical, or empty).
    diesel::sql_query(
        "UPDATE broadcast_recipients SET zone = (SELECT c.time_zone FROM contacts c \
         WHERE c.id = broadcast_recipients.contact_id AND c.time_zone <> '') \
         WHERE broadcast_id = $1 AND status = 'pending'",
    )
    .bind::<BigInt, _>(broadcast_id)
    .execute(conn)?;

    // The number's country, once per distinct prefix.
    let prefixes: Vec<String> = broadcast_recipients::table
        .inner_join(contacts::table)
        .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
        .filter(broadcast_recipients::status.eq("pending"))
        .filter(broadcast_recipients::zone.is_null())
        .select(substr(contacts::phone, 1, PREFIX))
        .distinct()
        .load(conn)?;
    let mut by_zone: std::collections::BTreeMap<&'static str, Vec<String>> = Default::default();
    for prefix in prefixes {
        if let Some(zone) = zone_of_number(&prefix) {
            by_zone.entry(zone.name()).or_default().push(prefix);
        }
    }
    for (zone, prefixes) in by_zone {
        let of_country = contacts::table
            .filter(substr(contacts::phone, 1, PREFIX).eq_any(prefixes))
            .select(contacts::id);
        diesel::update(
            broadcast_recipients::table
                .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
                .filter(broadcast_recipients::status.eq("pending"))
                .filter(broadcast_recipients::zone.is_null())
                .filter(broadcast_recipients::contact_id.eq_any(of_country)),
        )
        .set(broadcast_recipients::zone.eq(zone))
        .execute(conn)?;
    }

    // The rest: the broadcast's zone.
    diesel::update(
        broadcast_recipients::table
            .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
            .filter(broadcast_recipients::status.eq("pending"))
            .filter(broadcast_recipients::zone.is_null()),
    )
    .set(broadcast_recipients::zone.eq(fallback))
    .execute(conn)?;

    let zones: Vec<Option<String>> = broadcast_recipients::table
        .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
        .filter(broadcast_recipients::status.eq("pending"))
        .select(broadcast_recipients::zone)
        .distinct()
        .load(conn)?;
    Ok(zones.into_iter().flatten().collect())
}

/// Up to `limit` pending recipients in the zones given, oldest first within each zone:
/// (recipient id, contact id).
pub fn next_pending_in(
    conn: &mut DbConnection,
    broadcast_id: i64,
    zones: &[String],
    limit: i64,
) -> QueryResult<Vec<(i64, i64)>> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for zone in zones {
        let left = limit - out.len() as i64;
        if left <= 0 {
            break;
        }
        let rows: Vec<(i64, i64)> = broadcast_recipients::table
            .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
            .filter(broadcast_recipients::status.eq("pending"))
            .filter(broadcast_recipients::zone.is_not_null())
            .filter(broadcast_recipients::zone.eq(zone))
            .order(broadcast_recipients::id.asc())
            .limit(left)
            .select((broadcast_recipients::id, broadcast_recipients::contact_id))
            .load(conn)?;
        out.extend(rows);
    }
    out.sort_unstable();
    Ok(out)
}

/// These pending recipients became queued (their messages written in the same transaction).
pub fn mark_queued(conn: &mut DbConnection, recipient_ids: &[i64]) -> QueryResult<usize> {
    let mut n = 0;
    for chunk in recipient_ids.chunks(1000) {
        n += diesel::update(
            broadcast_recipients::table
                .filter(broadcast_recipients::id.eq_any(chunk))
                .filter(broadcast_recipients::status.eq("pending")),
        )
        .set(broadcast_recipients::status.eq("queued"))
        .execute(conn)?;
    }
    Ok(n)
}

/// Stores the broadcast's timing (with the zones found at launch).
pub fn set_timing(conn: &mut DbConnection, broadcast_id: i64, timing: &str) -> QueryResult<usize> {
    diesel::update(broadcasts::table.find(broadcast_id))
        .set(broadcasts::timing.eq(timing))
        .execute(conn)
}
