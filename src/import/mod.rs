//! The contact import pipeline: a CSV stream in, contacts out, with every bad row reported and
//! every good row kept. Memory stays flat whatever the file's size: records are read with a
//! bounded reader, validated one by one, and written a thousand at a time by a second thread
//! (so parsing phone numbers and writing to the database use both cores).

pub mod audience;
pub mod gate;
pub mod mapping;
pub mod records;

use std::io::Read;
use std::sync::mpsc;

use crate::csv_out;
use crate::domain::consent::ConsentStatus;
use crate::domain::contact::{
    Attributes, parse_attribute_value, parse_email, parse_language, parse_name, parse_time_zone,
};
use crate::domain::phone::{DefaultCountry, E164};
use crate::storage::imports::{self, BatchResult, Import, ImportRow, RejectedRow};
use crate::storage::{Db, StorageError};

use mapping::{Mapping, Target};
use records::{FieldValue, Record, RecordReader, truncate};

/// Rows per database transaction.
pub const BATCH_ROWS: usize = 1000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub imported: u64,
    pub updated: u64,
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Invalid(String),
    #[error("reading the file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("writing to the database failed: {0}")]
    Database(#[from] diesel::result::Error),
}

/// The header row and the mapping to use for it.
pub struct Plan {
    pub delimiter: u8,
    /// `None`: guess from the header (the API); `Some`: what the person chose in the form.
    pub mapping: Option<Mapping>,
    pub country: DefaultCountry,
}

/// Checks one record against the mapping; either a row to write or the reasons it cannot be.
pub fn validate(
    record: &Record,
    headers: &[String],
    mapping: &Mapping,
    country: DefaultCountry,
) -> Result<ImportRow, Vec<RejectedRow>> {
    let line = record.line;
    // The row as given is added by the caller, which owns the record.
    let reject = |value: String, reason: String| RejectedRow {
        line,
        value,
        reason,
        original: String::new(),
    };
    if record.fields.len() != headers.len() || record.truncated_fields {
        let snippet = record
            .fields
            .iter()
            .map(FieldValue::display)
            .collect::<Vec<_>>()
            .join(",");
        return Err(vec![reject(
            truncate(&snippet, 100),
            format!(
                "this row has {}{} fields but the header has {} (a value containing the delimiter needs quotes)",
                record.fields.len(),
                if record.truncated_fields { "+" } else { "" },
                headers.len()
            ),
        )]);
    }
    let mut problems = Vec::new();
    let mut phone = None;
    let (mut name, mut first, mut last) = (String::new(), String::new(), String::new());
    let mut row = ImportRow {
        line,
        phone: E164::from_trusted(String::new()),
        name: String::new(),
        email: String::new(),
        language: String::new(),
        time_zone: String::new(),
        attributes: Attributes::new(),
        consents: Vec::new(),
        original: Vec::new(),
    };
    for (i, (target, field)) in mapping.targets.iter().zip(&record.fields).enumerate() {
        if *target == Target::Ignore {
            continue;
        }
        let column = &headers[i];
        let text = match field {
            // A cell Herald's own export guarded against spreadsheet formulas reads back as
            // it was (`'+14155550100` is +14155550100).
            FieldValue::Text(s) => csv_out::restore(s.trim()),
            FieldValue::TooLong(n) => {
                problems.push(reject(
                    field.display(),
                    format!(
                        "{column}: the value has {n} bytes; at most {} are accepted",
                        records::MAX_FIELD_BYTES
                    ),
                ));
                continue;
            }
            FieldValue::NotUtf8(s) => {
                problems.push(reject(
                    truncate(s, 100),
                    format!("{column}: the text is not UTF-8 (the file may be Latin-1 or Windows-1252); save it as CSV UTF-8"),
                ));
                continue;
            }
        };
        if text.contains('\0') {
            // PostgreSQL cannot store it; refused here, so only this row is rejected.
            problems.push(reject(
                truncate(text, 100),
                format!("{column}: the value contains a NUL character (U+0000); remove it"),
            ));
            continue;
        }
        let mut check = |result: Result<String, String>| match result {
            Ok(v) => Some(v),
            Err(reason) => {
                problems.push(reject(truncate(text, 100), format!("{column}: {reason}")));
                None
            }
        };
        match target {
            Target::Ignore => {}
            Target::Phone => {
                phone = check(E164::parse(text, Some(country)).map(E164::into_inner));
            }
            Target::Name => name = check(parse_name(text)).unwrap_or_default(),
            Target::FirstName => first = check(parse_name(text)).unwrap_or_default(),
            Target::LastName => last = check(parse_name(text)).unwrap_or_default(),
            Target::Email => row.email = check(parse_email(text)).unwrap_or_default(),
            Target::Language => row.language = check(parse_language(text)).unwrap_or_default(),
            Target::TimeZone => row.time_zone = check(parse_time_zone(text)).unwrap_or_default(),
            Target::Attribute(key) => {
                if let Some(v) = check(parse_attribute_value(key, text)).filter(|v| !v.is_empty()) {
                    row.attributes.insert(key.clone(), v);
                }
            }
            Target::Consent(kind) => {
                if !text.trim().is_empty()
                    && let Some(status) =
                        check(text.parse::<ConsentStatus>().map(|s| s.as_str().to_owned()))
                {
                    let status = if status == "opted_out" {
                        ConsentStatus::OptedOut
                    } else {
                        ConsentStatus::OptedIn
                    };
                    row.consents.push((*kind, status));
                }
            }
        }
    }
    if !name.is_empty() {
        row.name = name;
    } else {
        row.name = [first.as_str(), last.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
    }
    match (phone, problems.is_empty()) {
        (Some(p), true) => {
            row.phone = E164::from_trusted(p);
            Ok(row)
        }
        _ => Err(problems),
    }
}

/// The header row's cells, checked: a header with a NUL character, text that is not UTF-8 or
/// a cell too long for a header refuses the whole file. (Also the broadcast's CSV audience.)
pub fn read_header_cells<R: Read>(
    reader: &mut RecordReader<R>,
) -> Result<Vec<String>, ImportError> {
    let header = reader
        .next_record()?
        .ok_or_else(|| ImportError::Invalid("the file is empty: it has no header row".into()))?;
    let mut headers = Vec::with_capacity(header.fields.len());
    for (i, f) in header.fields.iter().enumerate() {
        match f {
            FieldValue::Text(s) if s.contains('\0') => {
                return Err(ImportError::Invalid(format!(
                    "the header (column {}) contains a NUL character (U+0000); this does not look like a CSV header",
                    i + 1
                )));
            }
            FieldValue::Text(s) => headers.push(csv_out::restore(s.trim()).to_owned()),
            FieldValue::NotUtf8(_) => {
                return Err(ImportError::Invalid(format!(
                    "the header (column {}) is not UTF-8 text; save the file as CSV UTF-8",
                    i + 1
                )));
            }
            FieldValue::TooLong(n) => {
                return Err(ImportError::Invalid(format!(
                    "column {} of the header has {n} bytes: this does not look like a CSV header",
                    i + 1
                )));
            }
        }
    }
    Ok(headers)
}

/// Reads the header of a stream and settles the mapping.
fn read_header<R: Read>(
    reader: &mut RecordReader<R>,
    plan: &Plan,
) -> Result<(Vec<String>, Mapping), ImportError> {
    let headers = read_header_cells(reader)?;
    let mapping = match &plan.mapping {
        Some(m) if m.targets.len() == headers.len() => m.clone(),
        Some(m) => {
            return Err(ImportError::Invalid(format!(
                "the mapping has {} columns but the file's header has {}",
                m.targets.len(),
                headers.len()
            )));
        }
        None => Mapping::from_headers(&headers).map_err(ImportError::Invalid)?,
    };
    Ok((headers, mapping))
}

/// A record's cells as text (moved, not copied), for the rejected rows' report.
pub fn cells(fields: Vec<FieldValue>) -> Vec<String> {
    fields
        .into_iter()
        .map(|f| match f {
            FieldValue::Text(s) | FieldValue::NotUtf8(s) => s,
            FieldValue::TooLong(n) => format!("({n} bytes)"),
        })
        .collect()
}

struct Batch {
    rows: Vec<ImportRow>,
    rejected: Vec<RejectedRow>,
    bytes_read: u64,
}

/// Runs an import to the end of `source` (blocking: call it on a blocking thread). Progress is
/// written to the import's row after every batch; the import is finished (done or failed)
/// before this returns.
pub fn run<R: Read>(
    db: &Db,
    import: &Import,
    source: R,
    plan: &Plan,
) -> Result<Summary, ImportError> {
    finish(db, import, run_inner(db, import, source, plan))
}

/// Records how an import ended (done, or failed with the error), and hands the result on.
pub fn finish<T>(
    db: &Db,
    import: &Import,
    result: Result<T, ImportError>,
) -> Result<T, ImportError> {
    let mut conn = db.get()?;
    match &result {
        Ok(_) => imports::finish(&mut conn, import.id, None)?,
        Err(e) => imports::finish(&mut conn, import.id, Some(&e.to_string()))?,
    };
    result
}

fn run_inner<R: Read>(
    db: &Db,
    import: &Import,
    source: R,
    plan: &Plan,
) -> Result<Summary, ImportError> {
    let mut reader = RecordReader::new(source, plan.delimiter);
    let (headers, mapping) = read_header(&mut reader, plan)?;
    {
        let mut conn = db.get()?;
        imports::set_header(&mut conn, import.id, &imports::cells_json(&headers))?;
        crate::storage::contacts::register_attribute_keys(
            &mut conn,
            mapping.attribute_keys().iter(),
        )?;
    }

    let (tx, rx) = mpsc::sync_channel::<Batch>(4);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<BatchResult, ImportError> {
            let mut conn = db.get()?;
            let mut total = BatchResult::default();
            for batch in rx {
                let r = imports::write_batch(
                    &mut conn,
                    import,
                    &batch.rows,
                    &batch.rejected,
                    batch.bytes_read,
                )?;
                total.imported += r.imported;
                total.updated += r.updated;
                total.rejected += r.rejected + distinct_lines(&batch.rejected);
            }
            Ok(total)
        });

        let mut summary = Summary::default();
        let mut batch = Batch {
            rows: Vec::with_capacity(BATCH_ROWS),
            rejected: Vec::new(),
            bytes_read: 0,
        };
        let read_result = (|| -> Result<(), ImportError> {
            while let Some(record) = reader.next_record()? {
                summary.rows += 1;
                match validate(&record, &headers, &mapping, plan.country) {
                    Ok(mut row) => {
                        row.original = cells(record.fields);
                        batch.rows.push(row);
                    }
                    Err(problems) => {
                        let original = imports::cells_json(&cells(record.fields));
                        batch
                            .rejected
                            .extend(problems.into_iter().map(|p| RejectedRow {
                                original: original.clone(),
                                ..p
                            }));
                    }
                }
                if batch.rows.len() + batch.rejected.len() >= BATCH_ROWS {
                    batch.bytes_read = reader.bytes_consumed();
                    let full = std::mem::replace(
                        &mut batch,
                        Batch {
                            rows: Vec::with_capacity(BATCH_ROWS),
                            rejected: Vec::new(),
                            bytes_read: 0,
                        },
                    );
                    if tx.send(full).is_err() {
                        // The writer stopped on an error; it reports it below.
                        return Ok(());
                    }
                }
            }
            batch.bytes_read = reader.bytes_consumed();
            let _ = tx.send(batch);
            Ok(())
        })();
        drop(tx);
        let written = writer
            .join()
            .map_err(|_| ImportError::Invalid("the import's writer thread panicked".into()))??;
        read_result?;
        if summary.rows == 0 {
            return Err(ImportError::Invalid(
                "the file has a header but no rows".into(),
            ));
        }
        summary.imported = written.imported;
        summary.updated = written.updated;
        summary.rejected = written.rejected;
        Ok(summary)
    })
}

fn distinct_lines(rejected: &[RejectedRow]) -> u64 {
    let mut lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
    lines.sort_unstable();
    lines.dedup();
    lines.len() as u64
}

/// A `Read` over chunks arriving from an async body, so the blocking importer reads an upload
/// as it arrives (with backpressure: the upload is read no faster than rows are written).
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    current: bytes::Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Runs `job` on a blocking thread over a reader of the async `chunks`, feeding it as they
/// arrive (with backpressure); returns when the job has ended (when it ends early, the rest
/// of the stream is not read). The import and the broadcast's CSV audience read this way.
pub async fn read_streaming<S, E, T, F>(mut chunks: S, job: F) -> Result<T, ImportError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
    T: Send + 'static,
    F: FnOnce(ChunkReader) -> Result<T, ImportError> + Send + 'static,
{
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let job = tokio::task::spawn_blocking(move || {
        job(ChunkReader {
            rx,
            current: bytes::Bytes::new(),
        })
    });
    while let Some(chunk) = chunks.next().await {
        let item =
            chunk.map_err(|e| std::io::Error::other(format!("the upload was interrupted: {e}")));
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    job.await
        .map_err(|e| ImportError::Invalid(format!("the import task failed: {e}")))?
}

/// Runs an import over an async stream of body chunks; returns when the whole stream has been
/// imported (or the import failed, in which case the rest of the stream is not read).
pub async fn run_streaming<S, E>(
    db: Db,
    import: Import,
    plan: Plan,
    permit: gate::ImportPermit,
    chunks: S,
) -> Result<Summary, ImportError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    read_streaming(chunks, move |reader| {
        // Held until the import has really ended, even when the request went away first.
        let _permit = permit;
        run(&db, &import, reader, &plan)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: u64, cells: &[&str]) -> Record {
        Record {
            line,
            fields: cells
                .iter()
                .map(|c| FieldValue::Text(c.to_string()))
                .collect(),
            truncated_fields: false,
        }
    }

    fn setup() -> (Vec<String>, Mapping) {
        let headers: Vec<String> = ["Phone", "First", "Last", "E-mail", "Tier", "SMS consent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mapping = Mapping::from_headers(&headers).unwrap();
        (headers, mapping)
    }

    #[test]
    fn a_good_row_becomes_a_contact_row() {
        let (h, m) = setup();
        let row = validate(
            &rec(
                2,
                &[
                    "(201) 555-0123",
                    "Ada",
                    "Lovelace",
                    "ADA@example.com",
                    "gold",
                    "opted out",
                ],
            ),
            &h,
            &m,
            DefaultCountry::default(),
        )
        .unwrap();
        assert_eq!(row.phone.as_str(), "+12015550123");
        assert_eq!(row.name, "Ada Lovelace");
        assert_eq!(row.email, "ada@example.com");
        assert_eq!(row.attributes["tier"], "gold");
        assert_eq!(
            row.consents,
            [(
                crate::domain::channel::ChannelKind::Sms,
                ConsentStatus::OptedOut
            )]
        );
    }

    #[test]
    fn bad_rows_name_the_column_value_and_reason() {
        let (h, m) = setup();
        let problems = validate(
            &rec(1284, &["+1 555 0100", "Ada", "", "nope", "", "maybe"]),
            &h,
            &m,
            DefaultCountry::default(),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3);
        assert!(problems.iter().all(|p| p.line == 1284));
        assert_eq!(problems[0].value, "+1 555 0100");
        assert_eq!(
            problems[0].reason,
            "Phone: \"+1 555 0100\" is not a valid phone number"
        );
        assert!(problems[1].reason.starts_with("E-mail:"));
        assert!(
            problems[2]
                .reason
                .contains("\"maybe\" is not a consent value")
        );
    }

    #[test]
    fn ragged_and_oversized_rows_are_rejected_whole() {
        let (h, m) = setup();
        let p = validate(
            &rec(3, &["+12015550123", "Ada"]),
            &h,
            &m,
            DefaultCountry::default(),
        )
        .unwrap_err();
        assert!(
            p[0].reason
                .contains("this row has 2 fields but the header has 6")
        );
        let mut big = rec(4, &["+12015550123", "Ada", "", "", "", ""]);
        big.fields[4] = FieldValue::TooLong(50_000_000);
        let p = validate(&big, &h, &m, DefaultCountry::default()).unwrap_err();
        assert!(p[0].reason.contains("50000000 bytes"));
    }
}
