//! A broadcast's CSV audience: the good rows of an upload (contact and per-recipient
//! variables), keyed by the upload's import. Written a batch at a time while the file is read;
//! read whole by the audience's SQL (`storage::broadcasts`), and a batch of recipients at a time
//! for their variables.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;

use super::schema::{broadcast_csv_rows, broadcasts, contacts};
use super::{DbConnection, now};
use crate::domain::broadcast::BroadcastState;

/// One good row of an upload.
#[derive(Debug, Clone)]
pub struct CsvRow {
    pub line: i64,
    pub contact_id: i64,
    /// The row's variables by column header.
    pub variables: BTreeMap<String, String>,
}

/// Keeps a batch of good rows of an upload.
pub fn insert(
    conn: &mut DbConnection,
    broadcast_id: i64,
    import_id: i64,
    rows: &[CsvRow],
) -> QueryResult<usize> {
    let mut n = 0;
    for chunk in rows.chunks(500) {
        let values: Vec<_> = chunk
            .iter()
            .map(|r| {
                (
                    broadcast_csv_rows::broadcast_id.eq(broadcast_id),
                    broadcast_csv_rows::import_id.eq(import_id),
                    broadcast_csv_rows::line.eq(r.line),
                    broadcast_csv_rows::contact_id.eq(r.contact_id),
                    broadcast_csv_rows::variables
                        .eq(serde_json::to_string(&r.variables).unwrap_or_else(|_| "{}".into())),
                )
            })
            .collect();
        n += super::on_backend!(conn, |c| diesel::insert_into(broadcast_csv_rows::table)
            .values(&values)
            .execute(c))?;
    }
    Ok(n)
}

/// The line of the row of this upload that already has each of these numbers (an earlier
/// batch's), by phone.
pub fn earlier_lines(
    conn: &mut DbConnection,
    import_id: i64,
    phones: &[&str],
) -> QueryResult<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in phones.chunks(500) {
        let found: Vec<(String, i64)> = broadcast_csv_rows::table
            .inner_join(contacts::table)
            .filter(broadcast_csv_rows::import_id.eq(import_id))
            .filter(contacts::phone.eq_any(chunk))
            .select((contacts::phone, broadcast_csv_rows::line))
            .load(conn)?;
        out.extend(found);
    }
    Ok(out)
}

/// The contact ids of these numbers (those that have a contact).
pub fn contact_ids(conn: &mut DbConnection, phones: &[&str]) -> QueryResult<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in phones.chunks(500) {
        let found: Vec<(String, i64)> = contacts::table
            .filter(contacts::phone.eq_any(chunk))
            .select((contacts::phone, contacts::id))
            .load(conn)?;
        out.extend(found);
    }
    Ok(out)
}

/// The variables of these contacts in an upload (one read for a batch of recipients).
pub fn variables(
    conn: &mut DbConnection,
    import_id: i64,
    contact_ids: &[i64],
) -> QueryResult<HashMap<i64, BTreeMap<String, String>>> {
    let mut out = HashMap::with_capacity(contact_ids.len());
    for chunk in contact_ids.chunks(500) {
        let found: Vec<(i64, String)> = broadcast_csv_rows::table
            .filter(broadcast_csv_rows::import_id.eq(import_id))
            .filter(broadcast_csv_rows::contact_id.eq_any(chunk))
            .select((
                broadcast_csv_rows::contact_id,
                broadcast_csv_rows::variables,
            ))
            .load(conn)?;
        out.extend(
            found
                .into_iter()
                .map(|(id, json)| (id, serde_json::from_str(&json).unwrap_or_default())),
        );
    }
    Ok(out)
}

/// Removes the broadcast's rows of earlier uploads than `keep` (all of them with `None`): a
/// new upload replaced them, or the audience is lists again. Rows of a later upload still
/// being read are left to it.
pub fn remove_older(
    conn: &mut DbConnection,
    broadcast_id: i64,
    keep: Option<i64>,
) -> QueryResult<usize> {
    let mine = broadcast_csv_rows::table.filter(broadcast_csv_rows::broadcast_id.eq(broadcast_id));
    match keep {
        Some(keep) => {
            diesel::delete(mine.filter(broadcast_csv_rows::import_id.lt(keep))).execute(conn)
        }
        None => diesel::delete(mine).execute(conn),
    }
}

/// Removes the rows of one upload (one that failed).
pub fn remove_upload(conn: &mut DbConnection, import_id: i64) -> QueryResult<usize> {
    diesel::delete(broadcast_csv_rows::table.filter(broadcast_csv_rows::import_id.eq(import_id)))
        .execute(conn)
}

/// Sets a draft's audience (the JSON document); false when it is no longer a draft.
pub fn set_draft_audience(conn: &mut DbConnection, id: i64, audience: &str) -> QueryResult<bool> {
    let n = diesel::update(
        broadcasts::table
            .filter(broadcasts::id.eq(id))
            .filter(broadcasts::state.eq(BroadcastState::Draft.as_str())),
    )
    .set((
        broadcasts::audience.eq(audience),
        broadcasts::updated_at.eq(now()),
    ))
    .execute(conn)?;
    Ok(n == 1)
}
