//! Issue 17: a CSV upload as a draft's audience. The file is read by the contact import
//! (`import::audience`, under an import of its own with its audit entry and its per-line report
//! of bad rows); once it has been read to the end, the draft's audience becomes that upload
//! (replacing an earlier one) in one transaction with its audit entry. An upload that fails
//! leaves the draft's audience as it was.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::{BroadcastView, DraftInput, find_row, not_editable, view};
use crate::domain::audit::Actor;
use crate::domain::broadcast::{Audience, BroadcastState, CsvAudience, column_key};
use crate::domain::phone::DefaultCountry;
use crate::domain::template::{VariableMapping, VariableSource};
use crate::import::ImportError;
use crate::import::audience::{self, AudiencePlan, AudienceSummary};
use crate::import::gate::ImportPermit;
use crate::service::imports::{self as import_service, ImportList, NewImport};
use crate::service::{FieldProblems, ServiceError, ServiceResult, Services};
use crate::storage::broadcast_csv;
use crate::storage::broadcasts::BroadcastRow;
use crate::storage::imports::{self, Rejection, RejectionsFrom};
use crate::storage::{DbConnection, new_public_id};

/// The field a CSV audience's problems are reported against.
pub const FIELD: &str = "audience.csv";

fn at_field(code: &'static str, message: impl Into<String>) -> ServiceError {
    let mut p = FieldProblems::new();
    p.add(FIELD, message.into());
    ServiceError::invalid_fields(code, p)
}

/// A new draft has no upload yet: its CSV comes once it is saved.
pub(super) fn for_new_draft(input: DraftInput) -> ServiceResult<DraftInput> {
    if input.audience.csv.is_some() {
        return Err(at_field(
            "csv_not_uploaded",
            "Save the draft first, then upload its CSV file.",
        ));
    }
    Ok(input)
}

/// A draft saved with a CSV audience keeps the upload it has (the form and the API only say
/// "the CSV"; the rows come from an upload, never from the draft's JSON).
pub(super) fn keep_upload(row: &BroadcastRow, mut input: DraftInput) -> ServiceResult<DraftInput> {
    if input.audience.csv.is_none() {
        return Ok(input);
    }
    let stored: Audience = serde_json::from_str(&row.audience).map_err(ServiceError::internal)?;
    match stored.csv {
        Some(csv) => {
            input.audience = Audience {
                csv: Some(csv),
                ..Audience::default()
            };
            Ok(input)
        }
        None => Err(at_field(
            "csv_not_uploaded",
            "Upload the CSV file (a header row, one column with the phone numbers) before saving the audience as a CSV.",
        )),
    }
}

/// Variables mapped to CSV columns need a CSV audience that has those columns.
pub(super) fn check_columns(
    audience: &Audience,
    variables: &VariableMapping,
    problems: &mut FieldProblems,
) {
    for (name, source) in variables {
        let key = match source {
            VariableSource::Attribute { key }
            | VariableSource::AttributeWithFallback { key, .. } => key,
            VariableSource::Fixed { .. } => continue,
        };
        let Some(header) = column_key(key) else {
            continue;
        };
        let field = format!("message.variables.{name}");
        match &audience.csv {
            None => problems.add(
                field,
                "Only a CSV audience has columns: upload one, or choose a contact field.",
            ),
            Some(csv) if !csv.columns.iter().any(|c| c == header) => problems.add(
                field,
                format!(
                    "The CSV has no column \"{header}\" (its columns: {}).",
                    csv.columns.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The import id of a CSV audience's upload (none for lists and filters; -1 when the upload
/// is gone, which matches nobody).
pub(super) fn upload_id(
    conn: &mut DbConnection,
    audience: &Audience,
) -> ServiceResult<Option<i64>> {
    let Some(csv) = &audience.csv else {
        return Ok(None);
    };
    Ok(Some(
        imports::find_by_public_id(conn, &csv.upload)?.map_or(-1, |i| i.id),
    ))
}

/// The CSV variables of these contacts (by contact id), for a batch of recipients; empty for
/// an audience of lists and filters.
pub fn variables_of(
    conn: &mut DbConnection,
    audience: &Audience,
    contact_ids: &[i64],
) -> ServiceResult<HashMap<i64, BTreeMap<String, String>>> {
    match upload_id(conn, audience)? {
        Some(id) => Ok(broadcast_csv::variables(conn, id, contact_ids)?),
        None => Ok(HashMap::new()),
    }
}

/// How to read an uploaded file.
#[derive(Debug, Clone)]
pub struct CsvUpload {
    pub file_name: String,
    /// The phone column's header; `None`: found from the header names.
    pub phone_column: Option<String>,
    pub country: DefaultCountry,
    /// `None`: guessed from the first chunk.
    pub delimiter: Option<u8>,
    pub bytes_total: Option<i64>,
}

/// An upload's outcome: the audience as stored, and the first bad rows (line, value, reason).
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub view: BroadcastView,
    pub csv: CsvAudience,
    pub rejected: Vec<Rejection>,
}

fn csv_error(e: ImportError) -> ServiceError {
    match e {
        ImportError::Invalid(m) => at_field("invalid_csv", format!("The CSV cannot be used: {m}.")),
        ImportError::Storage(s) => s.into(),
        other => ServiceError::internal(other),
    }
}

/// Reads `upload` as the draft's audience and, when the whole file was read, makes it the
/// audience (the previous upload's rows go). Bad rows are reported, good rows kept; a file
/// that cannot be read at all (no phone column, no rows) changes nothing.
pub async fn upload<S, E>(
    svc: &Services,
    actor: Actor,
    public_id: String,
    how: CsvUpload,
    permit: ImportPermit,
    upload: S,
) -> ServiceResult<Uploaded>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let lookup = public_id.clone();
    let row = svc.read(move |conn| find_row(conn, &lookup)).await?;
    if row.state() != BroadcastState::Draft {
        return Err(not_editable(&row));
    }
    let import = import_service::begin(
        svc,
        actor.clone(),
        NewImport {
            public_id: new_public_id(),
            file_name: format!("{} (audience of broadcast \"{}\")", how.file_name, row.name),
            list: ImportList::IdOrName(String::new()),
            bytes_total: how.bytes_total,
        },
        None,
    )
    .await?;
    let (delimiter, upload) = match import_service::sniff_delimiter(upload, how.delimiter).await {
        Ok(found) => found,
        Err(e) => {
            let (id, message) = (import.id, e.to_string());
            let _ = svc
                .read(move |conn| Ok(imports::finish(conn, id, Some(&message))?))
                .await;
            return Err(csv_error(e));
        }
    };
    let plan = AudiencePlan {
        delimiter,
        phone_column: how.phone_column,
        country: how.country,
        broadcast_id: row.id,
    };
    let db = svc.db.clone();
    let reading = import.clone();
    let summary: AudienceSummary = crate::import::read_streaming(upload, move |reader| {
        // Held until the file has really been read, even when the request went away first.
        let _permit = permit;
        audience::run(&db, &reading, reader, &plan)
    })
    .await
    .map_err(csv_error)?;

    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let csv = CsvAudience {
        upload: import.public_id.clone(),
        file_name: how.file_name,
        phone_column: summary.phone_column,
        columns: summary.columns,
        rows: count(summary.rows),
        good: count(summary.good),
        invalid_number: count(summary.invalid_number),
        duplicate: count(summary.duplicate),
        invalid_row: count(summary.invalid_row),
    };
    let stored = csv.clone();
    let import_id = import.id;
    let row = svc
        .write(actor, move |change| {
            let row = find_row(change.conn, &public_id)?;
            if row.state() != BroadcastState::Draft {
                return Err(not_editable(&row));
            }
            let mut audience: Audience =
                serde_json::from_str(&row.audience).map_err(ServiceError::internal)?;
            if upload_id(change.conn, &audience)?.is_some_and(|current| current > import_id) {
                // Two uploads at once: the later one finished first and stays the audience.
                broadcast_csv::remove_upload(change.conn, import_id)?;
                return Ok(None);
            }
            audience.csv = Some(stored.clone());
            let json = serde_json::to_string(&audience).map_err(ServiceError::internal)?;
            if !broadcast_csv::set_draft_audience(change.conn, row.id, &json)? {
                return Err(not_editable(&row));
            }
            broadcast_csv::remove_older(change.conn, row.id, Some(import_id))?;
            change.audit(
                "broadcast.audience_uploaded",
                "broadcast",
                Some(&row.public_id),
                serde_json::json!({
                    "file": stored.file_name,
                    "upload": stored.upload,
                    "rows": stored.rows,
                    "good": stored.good,
                    "invalid_number": stored.invalid_number,
                    "duplicate": stored.duplicate,
                    "invalid_row": stored.invalid_row,
                }),
            )?;
            find_row(change.conn, &public_id).map(Some)
        })
        .await?
        .ok_or_else(|| {
            ServiceError::conflict(
                "csv_superseded",
                "Another upload of this draft's CSV, started later, finished first: it is the audience.",
            )
        })?;
    let rejected = rejections(svc, &csv, 1000).await?;
    Ok(Uploaded {
        view: view(svc, row).await?,
        csv,
        rejected,
    })
}

/// The first `limit` bad rows of a CSV audience's upload, in line order.
pub async fn rejections(
    svc: &Services,
    csv: &CsvAudience,
    limit: i64,
) -> ServiceResult<Vec<Rejection>> {
    let upload = csv.upload.clone();
    svc.read(move |conn| {
        let Some(import) = imports::find_by_public_id(conn, &upload)? else {
            return Ok(Vec::new());
        };
        Ok(imports::rejections(
            conn,
            import.id,
            RejectionsFrom::Offset(0),
            limit,
        )?)
    })
    .await
}
