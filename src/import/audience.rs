//! A CSV file as a broadcast's audience, read by the contact import's own parts: the bounded
//! record reader (long cells, NUL characters, text that is not UTF-8, ragged rows), the row
//! check ([`super::validate`]: the number normalised with the default country, consent
//! columns), and the batched write ([`imports::write_batch`]: new numbers become contacts,
//! consent by the import's rules, every bad row kept in the import's report). On top: one
//! column is the phone, every other column is a per-recipient variable, a repeated number is
//! a duplicate of the line that had it first, and each good row is kept for the broadcast.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use super::mapping::{Mapping, Target, guess};
use super::records::{RecordReader, truncate};
use super::{BATCH_ROWS, ImportError, cells, read_header_cells, validate};
use crate::domain::phone::DefaultCountry;
use crate::storage::broadcast_csv::{self, CsvRow};
use crate::storage::imports::{self, Import, ImportRow, RejectedRow, cells_json};
use crate::storage::{Db, DbConnection, write_transaction};

/// The most data rows a CSV audience may have.
pub const MAX_ROWS: u64 = 1_000_000;

/// How to read the file.
#[derive(Debug, Clone)]
pub struct AudiencePlan {
    pub delimiter: u8,
    /// The phone column's header as chosen; `None`: found from the header names as the import
    /// does (phone, mobile, msisdn...).
    pub phone_column: Option<String>,
    pub country: DefaultCountry,
    pub broadcast_id: i64,
}

/// What became of the file's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudienceSummary {
    pub phone_column: String,
    /// The variable columns' headers, in file order.
    pub columns: Vec<String>,
    pub rows: u64,
    pub good: u64,
    pub invalid_number: u64,
    pub duplicate: u64,
    pub invalid_row: u64,
}

/// Which column is the phone, and the mapping the import's row check uses: the phone, consent
/// columns (applied to contacts as an import does), and every other named column kept as a
/// value (checked like an attribute's, but never written to the contact).
fn plan_columns(
    headers: &[String],
    chosen: Option<&str>,
) -> Result<(usize, Mapping, Vec<String>), ImportError> {
    let phone = match chosen.map(str::trim).filter(|c| !c.is_empty()) {
        Some(name) => headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ImportError::Invalid(format!(
                    "the file has no column \"{}\" (its columns: {})",
                    truncate(name, 40),
                    truncate(&headers.join(", "), 200)
                ))
            })?,
        None => headers
            .iter()
            .position(|h| guess(h) == Target::Phone)
            .ok_or_else(|| {
                ImportError::Invalid(
                    "no column of the header is the phone number: name it phone (or mobile, msisdn...), or choose it"
                        .into(),
                )
            })?,
    };
    let mut targets = Vec::with_capacity(headers.len());
    let mut columns: Vec<String> = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let target = if i == phone {
            Target::Phone
        } else if h.is_empty() {
            Target::Ignore
        } else if let Target::Consent(kind) = guess(h) {
            Target::Consent(kind)
        } else {
            if columns.iter().any(|c| c == h) {
                return Err(ImportError::Invalid(format!(
                    "two columns are named \"{}\": name each column once, so each variable is one column",
                    truncate(h, 40)
                )));
            }
            columns.push(h.clone());
            Target::Attribute(h.clone())
        };
        targets.push(target);
    }
    Ok((phone, Mapping { targets }, columns))
}

/// Reads the whole file as `broadcast_id`'s audience under `import` (blocking: call it on a
/// blocking thread), and finishes the import (done or failed) before it returns.
pub fn run<R: Read>(
    db: &Db,
    import: &Import,
    source: R,
    plan: &AudiencePlan,
) -> Result<AudienceSummary, ImportError> {
    let result = run_inner(db, import, source, plan);
    if result.is_err() {
        // What a failed upload kept is of no use to the broadcast (its contacts stay, as
        // after any import that stopped).
        let mut conn = db.get()?;
        broadcast_csv::remove_upload(&mut conn, import.id)?;
    }
    super::finish(db, import, result)
}

fn run_inner<R: Read>(
    db: &Db,
    import: &Import,
    source: R,
    plan: &AudiencePlan,
) -> Result<AudienceSummary, ImportError> {
    let mut reader = RecordReader::new(source, plan.delimiter);
    let headers = read_header_cells(&mut reader)?;
    let (phone, mapping, columns) = plan_columns(&headers, plan.phone_column.as_deref())?;
    let mut conn = db.get()?;
    imports::set_header(&mut conn, import.id, &cells_json(&headers))?;
    let mut summary = AudienceSummary {
        phone_column: headers[phone].clone(),
        columns,
        ..AudienceSummary::default()
    };
    let phone_problem = format!("{}: ", headers[phone]);
    let mut good: Vec<ImportRow> = Vec::with_capacity(BATCH_ROWS);
    let mut bad: Vec<RejectedRow> = Vec::new();
    while let Some(record) = reader.next_record()? {
        summary.rows += 1;
        if summary.rows > MAX_ROWS {
            return Err(ImportError::Invalid(format!(
                "the file has more than {MAX_ROWS} rows; a CSV audience has at most that many"
            )));
        }
        match validate(&record, &headers, &mapping, plan.country) {
            Ok(mut row) => {
                row.original = cells(record.fields);
                good.push(row);
            }
            Err(problems) => {
                if problems
                    .iter()
                    .any(|p| p.reason.starts_with(&phone_problem))
                {
                    summary.invalid_number += 1;
                } else {
                    summary.invalid_row += 1;
                }
                let original = cells_json(&cells(record.fields));
                bad.extend(problems.into_iter().map(|p| RejectedRow {
                    original: original.clone(),
                    ..p
                }));
            }
        }
        if good.len() + bad.len() >= BATCH_ROWS {
            let (g, b) = (std::mem::take(&mut good), std::mem::take(&mut bad));
            write(
                &mut conn,
                import,
                plan,
                g,
                b,
                reader.bytes_consumed(),
                &mut summary,
            )?;
        }
    }
    write(
        &mut conn,
        import,
        plan,
        good,
        bad,
        reader.bytes_consumed(),
        &mut summary,
    )?;
    if summary.rows == 0 {
        return Err(ImportError::Invalid(
            "the file has a header but no rows".into(),
        ));
    }
    Ok(summary)
}

/// One batch in one transaction: duplicates found (within the batch and against earlier
/// batches), contacts written by the import, and the good rows kept for the broadcast.
fn write(
    conn: &mut DbConnection,
    import: &Import,
    plan: &AudiencePlan,
    rows: Vec<ImportRow>,
    mut rejected: Vec<RejectedRow>,
    bytes_read: u64,
    summary: &mut AudienceSummary,
) -> Result<(), ImportError> {
    write_transaction(conn, |conn| {
        let phones: Vec<&str> = rows.iter().map(|r| r.phone.as_str()).collect();
        let earlier = broadcast_csv::earlier_lines(conn, import.id, &phones)?;
        let mut first_line: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        let mut unique: Vec<(ImportRow, BTreeMap<String, String>)> = Vec::with_capacity(rows.len());
        for mut row in rows {
            let line = i64::try_from(row.line).unwrap_or(i64::MAX);
            let first = earlier
                .get(row.phone.as_str())
                .or_else(|| first_line.get(row.phone.as_str()))
                .copied();
            if let Some(first) = first {
                summary.duplicate += 1;
                rejected.push(RejectedRow {
                    line: row.line,
                    value: row.phone.to_string(),
                    reason: format!("duplicate of line {first}: {} is already there", row.phone),
                    original: cells_json(&row.original),
                });
                continue;
            }
            first_line.insert(row.phone.as_str().to_owned(), line);
            // The other columns are this recipient's variables, not the contact's attributes.
            let variables = std::mem::take(&mut row.attributes);
            unique.push((row, variables));
        }
        let contacts: Vec<ImportRow> = unique.iter().map(|(r, _)| r.clone()).collect();
        imports::write_batch(conn, import, &contacts, &rejected, bytes_read)?;
        let phones: Vec<&str> = contacts.iter().map(|r| r.phone.as_str()).collect();
        let ids = broadcast_csv::contact_ids(conn, &phones)?;
        let kept: Vec<CsvRow> = unique
            .into_iter()
            .filter_map(|(row, variables)| {
                ids.get(row.phone.as_str()).map(|id| CsvRow {
                    line: i64::try_from(row.line).unwrap_or(i64::MAX),
                    contact_id: *id,
                    variables,
                })
            })
            .collect();
        broadcast_csv::insert(conn, plan.broadcast_id, import.id, &kept)?;
        summary.good += kept.len() as u64;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_phone_column_is_found_like_the_import_finds_it_and_the_rest_are_variables() {
        let (phone, mapping, columns) =
            plan_columns(&h(&["Name", "Mobile", "Code", "SMS consent", ""]), None).unwrap();
        assert_eq!(phone, 1);
        assert_eq!(columns, ["Name", "Code"]);
        assert_eq!(mapping.targets[1], Target::Phone);
        assert!(matches!(mapping.targets[3], Target::Consent(_)));
        assert_eq!(mapping.targets[4], Target::Ignore);
        // Chosen by name (any case); a name that is no column is refused.
        let (phone, _, columns) = plan_columns(&h(&["a", "b"]), Some("B")).unwrap();
        assert_eq!((phone, columns), (1, vec!["a".to_owned()]));
        assert!(plan_columns(&h(&["a", "b"]), Some("c")).is_err());
        assert!(plan_columns(&h(&["a", "b"]), None).is_err());
        assert!(plan_columns(&h(&["phone", "x", "x"]), None).is_err());
    }
}
