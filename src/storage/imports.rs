//! CSV imports: their progress, their rejected rows, and the batched upsert that writes a
//! thousand contacts per statement.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use super::schema::{import_rejections, imports};
use super::{DbConnection, lists, new_public_id, now};
use crate::domain::channel::ChannelKind;
use crate::domain::consent::ConsentStatus;
use crate::domain::contact::{Attributes, attributes_to_json};
use crate::domain::phone::E164;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = imports)]
pub struct Import {
    pub id: i64,
    pub public_id: String,
    pub file_name: String,
    pub status: String,
    pub list_id: Option<i64>,
    pub bytes_total: Option<i64>,
    pub bytes_read: i64,
    pub rows_read: i64,
    pub imported: i64,
    pub updated: i64,
    pub rejected: i64,
    pub error: Option<String>,
    pub requested_by: String,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

impl Import {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    /// The state in one word, the same on the list and the import's page.
    pub fn state_label(&self) -> &'static str {
        match self.status.as_str() {
            "running" => "Importing",
            "done" => "Finished",
            _ => "Stopped",
        }
    }

    /// Progress in percent when the size is known.
    pub fn percent(&self) -> Option<i64> {
        self.bytes_total
            .filter(|t| *t > 0)
            .map(|t| (self.bytes_read * 100 / t).clamp(0, 100))
    }
}

pub fn create(
    conn: &mut DbConnection,
    public_id: &str,
    file_name: &str,
    list_id: Option<i64>,
    bytes_total: Option<i64>,
    requested_by: &str,
) -> QueryResult<Import> {
    let id: i64 = diesel::insert_into(imports::table)
        .values((
            imports::public_id.eq(public_id),
            imports::file_name.eq(file_name),
            imports::status.eq("running"),
            imports::list_id.eq(list_id),
            imports::bytes_total.eq(bytes_total),
            imports::requested_by.eq(requested_by),
            imports::created_at.eq(now()),
        ))
        .returning(imports::id)
        .get_result(conn)?;
    imports::table
        .find(id)
        .select(Import::as_select())
        .first(conn)
}

pub fn find_by_public_id(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<Import>> {
    imports::table
        .filter(imports::public_id.eq(public_id))
        .select(Import::as_select())
        .first(conn)
        .optional()
}

pub fn recent(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Import>> {
    imports::table
        .select(Import::as_select())
        .order(imports::id.desc())
        .limit(limit)
        .load(conn)
}

/// Text as PostgreSQL can store it: a NUL character (which it refuses in text) becomes U+FFFD.
/// Rejected rows quote what the file held, NUL included.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

pub fn finish(conn: &mut DbConnection, id: i64, error: Option<&str>) -> QueryResult<usize> {
    diesel::update(imports::table.find(id))
        .set((
            imports::status.eq(if error.is_some() { "failed" } else { "done" }),
            imports::error.eq(error.map(storable)),
            imports::finished_at.eq(now()),
        ))
        .execute(conn)
}

/// Marks imports still "running" from before a restart as failed: their request is gone.
pub fn fail_abandoned(conn: &mut DbConnection, older_than: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        imports::table
            .filter(imports::status.eq("running"))
            .filter(imports::created_at.lt(older_than)),
    )
    .set((
        imports::status.eq("failed"),
        imports::error.eq("The import stopped before the end of the file (the server restarted or the upload was cut)."),
        imports::finished_at.eq(now()),
    ))
    .execute(conn)
}

#[derive(Debug, Clone, Queryable)]
pub struct Rejection {
    pub id: i64,
    pub row_number: i64,
    pub value: String,
    pub reason: String,
    /// The row's cells as the file gave them (a JSON array; empty for imports made before
    /// rows were kept).
    pub original: String,
}

impl Rejection {
    /// The row's cells as given.
    pub fn cells(&self) -> Vec<String> {
        serde_json::from_str(&self.original).unwrap_or_default()
    }

    /// Where the next batch starts (see [`rejections`]).
    pub fn cursor(&self) -> RejectionsFrom {
        RejectionsFrom::After(self.row_number, self.id)
    }
}

/// Where a batch of rejected rows starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionsFrom {
    /// After this row (its [`Rejection::cursor`]), for the streamed report.
    After(i64, i64),
    /// After skipping this many, for a page of the import's page.
    Offset(i64),
}

/// Rejected rows in line order (a row's several problems in the order found), `limit` at a
/// time from `from`.
pub fn rejections(
    conn: &mut DbConnection,
    import_id: i64,
    from: RejectionsFrom,
    limit: i64,
) -> QueryResult<Vec<Rejection>> {
    let mut query = import_rejections::table
        .filter(import_rejections::import_id.eq(import_id))
        .select((
            import_rejections::id,
            import_rejections::row_number,
            import_rejections::value,
            import_rejections::reason,
            import_rejections::original,
        ))
        .order((import_rejections::row_number, import_rejections::id))
        .limit(limit)
        .into_boxed();
    match from {
        RejectionsFrom::After(row, id) => {
            query = query.filter(
                import_rejections::row_number
                    .gt(row)
                    .or(import_rejections::row_number
                        .eq(row)
                        .and(import_rejections::id.gt(id))),
            );
        }
        RejectionsFrom::Offset(n) => query = query.offset(n),
    }
    query.load(conn)
}

/// How many problems were recorded for an import (a row can have several).
pub fn rejection_count(conn: &mut DbConnection, import_id: i64) -> QueryResult<i64> {
    import_rejections::table
        .filter(import_rejections::import_id.eq(import_id))
        .count()
        .get_result(conn)
}

/// Keeps the file's header cells (a JSON array), for the rejected rows' report.
pub fn set_header(conn: &mut DbConnection, id: i64, cells: &str) -> QueryResult<usize> {
    diesel::update(imports::table.find(id))
        .set(imports::header_cells.eq(Some(storable(cells))))
        .execute(conn)
}

/// The file's header cells, when they were kept.
pub fn header(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<String>> {
    let cells: Option<String> = imports::table
        .find(id)
        .select(imports::header_cells)
        .first(conn)?;
    Ok(cells
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default())
}

/// A row that passed validation. Empty strings mean "leave the field as it is" for contacts
/// that exist already (an import never erases data).
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub phone: E164,
    pub name: String,
    pub email: String,
    pub language: String,
    pub time_zone: String,
    pub attributes: Attributes,
    pub consents: Vec<(ChannelKind, ConsentStatus)>,
    /// The row's cells as given, kept (moved, not copied) in case a later check rejects it.
    pub original: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub line: u64,
    pub value: String,
    pub reason: String,
    /// The row's cells as given (a JSON array).
    pub original: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub imported: u64,
    pub updated: u64,
    /// Rows rejected here (duplicates within the file), on top of those passed in.
    pub rejected: u64,
}

#[derive(QueryableByName)]
struct Upserted {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    phone: String,
    /// 1 when the row was inserted, 0 when an existing contact was updated.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    inserted: i32,
}

// `search_text` is folded for new rows here; rows that existed are merged in SQL and folded
// again afterwards (`contacts::refresh_search_text`).
const UPSERT_COLUMNS: &str = "public_id, phone, name, email, language, time_zone, attributes, last_import_id, created_at, updated_at, search_text";

fn upsert_sql(rows: usize, postgres: bool) -> String {
    let mut sql = format!("INSERT INTO contacts ({UPSERT_COLUMNS}) VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..11 {
            if c > 0 {
                sql.push(',');
            }
            if postgres {
                n += 1;
                sql.push_str(&format!("${n}"));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    let keep = |col: &str| {
        format!(
            "{col} = CASE WHEN excluded.{col} <> '' THEN excluded.{col} ELSE contacts.{col} END"
        )
    };
    let (merge, distinct) = if postgres {
        (
            "attributes = (contacts.attributes::jsonb || excluded.attributes::jsonb)::text",
            "IS DISTINCT FROM",
        )
    } else {
        (
            "attributes = json_patch(contacts.attributes, excluded.attributes)",
            "IS NOT",
        )
    };
    // The WHERE skips contacts this same import already wrote (a number repeated further down
    // the file): they are not updated and not returned, which is how they are found. New rows
    // have created_at = updated_at (both set to this batch's time).
    sql.push_str(&format!(
        " ON CONFLICT (phone) DO UPDATE SET {}, {}, {}, {}, {merge}, last_import_id = excluded.last_import_id, \
         updated_at = excluded.updated_at WHERE contacts.last_import_id {distinct} excluded.last_import_id \
         RETURNING id, phone, CASE WHEN created_at = updated_at THEN 1 ELSE 0 END AS inserted",
        keep("name"),
        keep("email"),
        keep("language"),
        keep("time_zone"),
    ));
    sql
}

macro_rules! bind_rows {
    ($query:expr, $rows:expr, $import_id:expr, $at:expr) => {{
        let mut q = $query;
        for row in $rows {
            q = q
                .bind::<Text, _>(new_public_id())
                .bind::<Text, _>(row.phone.as_str().to_owned())
                .bind::<Text, _>(row.name.clone())
                .bind::<Text, _>(row.email.clone())
                .bind::<Text, _>(row.language.clone())
                .bind::<Text, _>(row.time_zone.clone())
                .bind::<Text, _>(attributes_to_json(&row.attributes))
                .bind::<Nullable<BigInt>, _>(Some($import_id))
                .bind::<Timestamp, _>($at)
                .bind::<Timestamp, _>($at)
                .bind::<Nullable<Text>, _>(Some(crate::domain::contact::search_text(
                    &row.name,
                    &row.email,
                    row.attributes.values(),
                )));
        }
        q
    }};
}

fn upsert_contacts(
    conn: &mut DbConnection,
    rows: &[&ImportRow],
    import_id: i64,
) -> QueryResult<Vec<Upserted>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let at = now();
    match conn {
        DbConnection::Sqlite(c) => {
            let q = diesel::sql_query(upsert_sql(rows.len(), false))
                .into_boxed::<diesel::sqlite::Sqlite>();
            bind_rows!(q, rows, import_id, at).load(c)
        }
        DbConnection::Postgres(c) => {
            let q = diesel::sql_query(upsert_sql(rows.len(), true)).into_boxed::<diesel::pg::Pg>();
            bind_rows!(q, rows, import_id, at).load(c)
        }
    }
}

/// Consent from an import: an opt-out always applies; an opt-in never overrides a recorded
/// opt-out (only an admin may opt a person back in), so it only fills in missing consent.
fn import_consents(
    conn: &mut DbConnection,
    entries: &[(i64, ChannelKind, ConsentStatus)],
    detail: &str,
) -> QueryResult<()> {
    use super::schema::contact_consents as cc;
    let at = now();
    for (contact_id, kind, status) in entries {
        let row = (
            cc::contact_id.eq(*contact_id),
            cc::channel_kind.eq(kind.as_str()),
            cc::status.eq(status.as_str()),
            cc::source.eq("import"),
            cc::detail.eq(detail),
            cc::changed_at.eq(at),
        );
        match status {
            ConsentStatus::OptedOut => {
                super::on_backend!(conn, |c| diesel::insert_into(cc::table)
                    .values(row)
                    .on_conflict((cc::contact_id, cc::channel_kind))
                    .do_update()
                    .set((
                        cc::status.eq("opted_out"),
                        cc::source.eq("import"),
                        cc::detail.eq(detail),
                        cc::changed_at.eq(at)
                    ))
                    .execute(c))?
            }
            ConsentStatus::OptedIn => super::on_backend!(conn, |c| diesel::insert_into(cc::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(c))?,
        };
    }
    Ok(())
}

/// Writes one batch of an import in one transaction: new and existing contacts (counted apart),
/// duplicates within the file (rejected, the first occurrence wins), list membership, consent,
/// the rejected rows, and the import's progress.
pub fn write_batch(
    conn: &mut DbConnection,
    import: &Import,
    rows: &[ImportRow],
    rejected: &[RejectedRow],
    bytes_read: u64,
) -> QueryResult<BatchResult> {
    crate::storage::write_transaction(conn, |conn| {
        let mut result = BatchResult::default();
        let mut rejections: Vec<RejectedRow> = rejected.to_vec();

        // Duplicates inside this batch.
        let mut first_line: HashMap<&str, u64> = HashMap::with_capacity(rows.len());
        let mut unique: Vec<&ImportRow> = Vec::with_capacity(rows.len());
        for row in rows {
            match first_line.get(row.phone.as_str()) {
                Some(first) => rejections.push(RejectedRow {
                    line: row.line,
                    value: row.phone.to_string(),
                    reason: format!(
                        "phone: {} is already on row {first} of this file; that row was imported",
                        row.phone
                    ),
                    original: cells_json(&row.original),
                }),
                None => {
                    first_line.insert(row.phone.as_str(), row.line);
                    unique.push(row);
                }
            }
        }

        // One statement per 500 rows inserts new numbers, updates known ones and skips the
        // ones an earlier batch of this file wrote (those come back missing).
        let mut ids: HashMap<String, i64> = HashMap::with_capacity(unique.len());
        let mut merged: Vec<i64> = Vec::new();
        for chunk in unique.chunks(500) {
            for u in upsert_contacts(conn, chunk, import.id)? {
                if u.inserted == 1 {
                    result.imported += 1;
                } else {
                    result.updated += 1;
                    merged.push(u.id);
                }
                ids.insert(u.phone, u.id);
            }
        }
        super::contacts::refresh_search_text(conn, &merged)?;
        let to_write: Vec<&ImportRow> = unique
            .into_iter()
            .filter(|row| {
                let written = ids.contains_key(row.phone.as_str());
                if !written {
                    rejections.push(RejectedRow {
                        line: row.line,
                        value: row.phone.to_string(),
                        reason: format!(
                            "phone: {} appears earlier in this file; the first occurrence was imported",
                            row.phone
                        ),
                        original: cells_json(&row.original),
                    });
                }
                written
            })
            .collect();
        if let Some(list_id) = import.list_id {
            let members: Vec<i64> = ids.values().copied().collect();
            lists::add_members(conn, list_id, &members)?;
        }
        let consents: Vec<(i64, ChannelKind, ConsentStatus)> = to_write
            .iter()
            .flat_map(|r| {
                let id = ids.get(r.phone.as_str()).copied();
                r.consents
                    .iter()
                    .filter_map(move |(k, s)| id.map(|id| (id, *k, *s)))
            })
            .collect();
        if !consents.is_empty() {
            import_consents(conn, &consents, &format!("import {}", import.file_name))?;
        }

        result.rejected = (rejections.len() - rejected.len()) as u64;
        for chunk in rejections.chunks(300) {
            let values: Vec<_> = chunk
                .iter()
                .map(|r| {
                    (
                        import_rejections::import_id.eq(import.id),
                        import_rejections::row_number.eq(i64::try_from(r.line).unwrap_or(i64::MAX)),
                        import_rejections::value.eq(storable(&r.value)),
                        import_rejections::reason.eq(storable(&r.reason)),
                        import_rejections::original.eq(storable(&r.original)),
                    )
                })
                .collect();
            super::on_backend!(conn, |c| diesel::insert_into(import_rejections::table)
                .values(&values)
                .execute(c))?;
        }

        let rows_in_batch = i64::try_from(rows.len()).unwrap_or(0);
        let rejected_rows_in_batch =
            count_rows(rejected) + i64::try_from(result.rejected).unwrap_or(0);
        diesel::update(imports::table.find(import.id))
            .set((
                imports::bytes_read.eq(i64::try_from(bytes_read).unwrap_or(i64::MAX)),
                imports::rows_read.eq(imports::rows_read + rows_in_batch + count_rows(rejected)),
                imports::imported
                    .eq(imports::imported + i64::try_from(result.imported).unwrap_or(0)),
                imports::updated.eq(imports::updated + i64::try_from(result.updated).unwrap_or(0)),
                imports::rejected.eq(imports::rejected + rejected_rows_in_batch),
            ))
            .execute(conn)?;
        Ok(result)
    })
}

/// Cells as a JSON array, as `import_rejections.original` keeps them.
pub fn cells_json(cells: &[String]) -> String {
    serde_json::to_string(cells).unwrap_or_default()
}

/// How many distinct rows a list of rejections covers (one row can have several problems).
fn count_rows(rejected: &[RejectedRow]) -> i64 {
    let mut lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
    lines.sort_unstable();
    lines.dedup();
    i64::try_from(lines.len()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sql_has_one_placeholder_per_value() {
        let s = upsert_sql(2, false);
        assert_eq!(s.matches('?').count(), 22);
        assert!(s.contains("json_patch"));
        let p = upsert_sql(2, true);
        assert!(p.contains("$22") && !p.contains("$23"));
        assert!(p.contains("jsonb"));
    }
}
