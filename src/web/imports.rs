//! Contacts › Import: choose a CSV, map its columns with a preview of the first rows, import it
//! while it uploads (progress shown), then read the report of rejected rows.

use std::collections::HashMap;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;

use crate::domain::phone::DefaultCountry;
use crate::error::AppError;
use crate::import::mapping::{self, CHOICES, Mapping, Preview, Target};
use crate::import::{self, Summary};
use crate::service;
use crate::service::imports::{ImportList, NewImport, ReadAs};
use crate::startup::AppState;
use crate::storage::imports::{Import, Rejection};
use crate::storage::lists::List;
use crate::storage::new_public_id;
use crate::web::chrome::Chrome;
use crate::web::download::{csv_download, csv_rows, download_error};
use crate::web::format::{self, thousands};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::render;
use crate::web::session::TypedSession;

/// How much of the file the browser sends for the preview.
pub const SAMPLE_BYTES: usize = 64 * 1024;
/// The largest form field read into memory (everything but the file itself).
const MAX_FORM_FIELD: usize = 16 * 1024;

pub struct ImportRowView {
    pub import: Import,
    pub when: String,
}

#[derive(Template)]
#[template(path = "contacts/import.html")]
struct ImportPage {
    chrome: Chrome,
    recent: Vec<ImportRowView>,
}

pub async fn index(
    _auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let recent = service::imports::recent(&state, 20).await?;
    render(&ImportPage {
        chrome,
        recent: recent
            .into_iter()
            .map(|i| ImportRowView {
                when: format::datetime(&i.created_at),
                import: i,
            })
            .collect(),
    })
}

pub struct ColumnView {
    pub index: usize,
    pub header: String,
    pub samples: Vec<String>,
    pub target: String,
    pub attribute: String,
}

#[derive(Template)]
#[template(path = "contacts/_mapping.html")]
struct MappingForm {
    import_id: String,
    file_name: String,
    preview: Preview,
    columns: Vec<ColumnView>,
    choices: &'static [(&'static str, &'static str)],
    lists: Vec<List>,
    default_country: String,
}

#[derive(Template)]
#[template(path = "contacts/_import_problem.html")]
struct ProblemPartial {
    message: String,
}

/// Reads the small fields of a multipart form up to `stop_at` (which is returned unread).
async fn read_fields(
    multipart: &mut Multipart,
    stop_at: &str,
) -> Result<(HashMap<String, String>, Option<actix_multipart::Field>), AppError> {
    crate::web::multipart_fields(multipart, stop_at, MAX_FORM_FIELD.max(SAMPLE_BYTES + 1024)).await
}

/// `POST /contacts/import/preview`: the browser sends the first 64 KiB of the chosen file;
/// the answer is the mapping form with the first rows.
pub async fn preview(
    _auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    mut multipart: Multipart,
) -> Result<HttpResponse, AppError> {
    let mut sample = Vec::new();
    let mut file_name = String::from("contacts.csv");
    while let Some(item) = multipart.next().await {
        let mut field =
            item.map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk
                .map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?;
            if value.len() < SAMPLE_BYTES {
                value.extend_from_slice(&chunk[..chunk.len().min(SAMPLE_BYTES - value.len())]);
            }
        }
        match name.as_str() {
            "sample" => sample = value,
            "file_name" => file_name = String::from_utf8_lossy(&value).trim().to_owned(),
            _ => {}
        }
    }
    let preview = match mapping::preview(&sample) {
        Ok(p) => p,
        Err(message) => {
            return render(&ProblemPartial {
                message: format!("{file_name}: {message}."),
            });
        }
    };
    if preview.headers.len() > import::records::MAX_FIELDS {
        return render(&ProblemPartial {
            message: format!(
                "{file_name} has more than {} columns.",
                import::records::MAX_FIELDS
            ),
        });
    }
    let columns = preview
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| ColumnView {
            index: i,
            header: h.clone(),
            samples: preview
                .rows
                .iter()
                .map(|r| r.get(i).cloned().unwrap_or_default())
                .collect(),
            target: preview.guesses[i].form_value(),
            attribute: preview.guesses[i]
                .attribute_name()
                .map(str::to_owned)
                .unwrap_or_else(|| mapping::sanitise_key(h)),
        })
        .collect();
    let all_lists = service::lists::all(&state).await?;
    render(&MappingForm {
        import_id: new_public_id(),
        file_name,
        columns,
        choices: &CHOICES[..12],
        lists: all_lists,
        default_country: state.settings.default_country.code().to_owned(),
        preview,
    })
}

/// The mapping from the form's `columns`, `header_N`, `target_N` and `attribute_N` fields;
/// `None` when the form has none (the page without JavaScript: guess from the header).
fn mapping_from(fields: &HashMap<String, String>) -> Result<Option<Mapping>, String> {
    let Some(n) = fields
        .get("columns")
        .and_then(|c| c.trim().parse::<usize>().ok())
    else {
        return Ok(None);
    };
    if n == 0 || n > import::records::MAX_FIELDS {
        return Err("the mapping has no columns".into());
    }
    let mut headers = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        let header = fields
            .get(&format!("header_{i}"))
            .cloned()
            .unwrap_or_default();
        let target = fields
            .get(&format!("target_{i}"))
            .map(String::as_str)
            .unwrap_or("ignore");
        let attr = fields
            .get(&format!("attribute_{i}"))
            .map(String::as_str)
            .unwrap_or("");
        let t = Target::from_form(target, attr)
            .map_err(|e| format!("column {} (\"{header}\"): {e}", i + 1))?;
        headers.push(header);
        targets.push(t);
    }
    Mapping::new(targets, &headers).map(Some)
}

pub fn summary_text(s: &Summary) -> String {
    format!(
        "{} rows read: {} new contacts, {} updated, {} rejected.",
        thousands(i64::try_from(s.rows).unwrap_or(i64::MAX)),
        thousands(i64::try_from(s.imported).unwrap_or(i64::MAX)),
        thousands(i64::try_from(s.updated).unwrap_or(i64::MAX)),
        thousands(i64::try_from(s.rejected).unwrap_or(i64::MAX)),
    )
}

/// `POST /contacts/import`: the mapping fields, then the file (in that order), imported as the
/// upload arrives.
pub async fn start(
    req: HttpRequest,
    auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    mut multipart: Multipart,
) -> Result<HttpResponse, AppError> {
    let (fields, file) = read_fields(&mut multipart, "file").await?;
    let Some(file) = file else {
        return Err(AppError::invalid("no_file", "Choose a CSV file to import."));
    };
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let file_name = file
        .content_disposition()
        .and_then(|cd| cd.get_filename().map(str::to_owned))
        .filter(|n| !n.trim().is_empty())
        .or_else(|| fields.get("file_name").cloned())
        .unwrap_or_else(|| "upload.csv".into());

    let mapping = match mapping_from(&fields) {
        Ok(m) => m,
        Err(e) => {
            drain(file, multipart).await;
            return Err(AppError::invalid(
                "invalid_mapping",
                format!("Check the mapping: {e}."),
            ));
        }
    };
    let country = match get("default_country").trim() {
        "" => state.settings.default_country,
        c => match DefaultCountry::parse(c) {
            Ok(c) => c,
            Err(e) => {
                drain(file, multipart).await;
                return Err(AppError::invalid("invalid_country", e));
            }
        },
    };
    let delimiter = match get("delimiter").as_str() {
        ";" | "semicolon" => Some(b';'),
        "\t" | "tab" => Some(b'\t'),
        "," | "comma" => Some(b','),
        _ => None,
    };
    let public_id = Some(get("import_id"))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(new_public_id);
    let bytes_total = get("file_size")
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0);
    // A turn first (nothing is written while the import waits for one).
    let permit = match service::imports::take_turn(&state).await {
        Ok(p) => p,
        Err(busy) => {
            drain(file, multipart).await;
            return Err(busy.into());
        }
    };
    let new = NewImport {
        public_id,
        file_name,
        list: ImportList::Form {
            existing: get("list"),
            new_name: get("new_list"),
        },
        bytes_total,
    };
    let import = match service::imports::begin(&state, auth.actor(), new, None).await {
        Ok(i) => i,
        Err(e) => {
            drain(file, multipart).await;
            return Err(e.into());
        }
    };
    let id = import.public_id.clone();
    let read_as = ReadAs {
        mapping,
        country,
        delimiter,
    };
    let result = service::imports::run(&state, import, read_as, permit, file).await;
    match result {
        Ok(summary) => session.success(format!("Import finished. {}", summary_text(&summary))),
        Err(e) => session.error(format!("The import stopped: {e}")),
    }
    Ok(redirect_response(&req, &format!("/contacts/imports/{id}")))
}

/// Reads and drops the rest of an upload, so the browser gets the answer instead of a reset.
async fn drain(file: actix_multipart::Field, rest: Multipart) {
    crate::web::drain_upload(file, rest).await
}

#[derive(Template)]
#[template(path = "contacts/import_result.html")]
struct ResultPage {
    chrome: Chrome,
    progress: ProgressPartial,
    report: Option<RejectedReport>,
}

/// One page of the rejected rows, in line order.
pub struct RejectedReport {
    pub rows: Vec<RejectedView>,
    pub total: String,
    pub first: String,
    pub last: String,
    pub previous: Option<i64>,
    pub next: Option<i64>,
}

pub struct RejectedView {
    pub line: i64,
    pub value: String,
    pub reason: String,
    /// `(column header, cell)` as the file gave them.
    pub cells: Vec<(String, String)>,
}

const REPORT_PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "contacts/_import_progress.html")]
struct ProgressPartial {
    import: Import,
    list: Option<List>,
    rows: String,
    imported: String,
    updated: String,
    rejected: String,
    started: String,
    /// Rows written before an import stopped (they stay).
    kept: String,
}

async fn load(state: &AppState, public_id: String) -> Result<ProgressPartial, AppError> {
    let (import, list) = service::imports::progress(state, public_id).await?;
    Ok(ProgressPartial {
        rows: thousands(import.rows_read),
        imported: thousands(import.imported),
        updated: thousands(import.updated),
        rejected: thousands(import.rejected),
        started: format::datetime(&import.created_at),
        kept: thousands(import.imported + import.updated),
        import,
        list,
    })
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ReportQuery {
    /// The page of rejected rows, from 1.
    page: Option<i64>,
}

pub async fn show(
    _auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, AppError> {
    let progress = load(&state, path.into_inner()).await?;
    let page = query.page.unwrap_or(1).clamp(1, i64::MAX / REPORT_PAGE);
    let offset = (page - 1) * REPORT_PAGE;
    let report = if progress.import.rejected > 0 {
        let (rows, total, header) =
            service::imports::rejection_page(&state, progress.import.id, offset, REPORT_PAGE)
                .await?;
        let shown = i64::try_from(rows.len()).unwrap_or(0);
        Some(RejectedReport {
            total: thousands(total),
            first: thousands(offset + 1),
            last: thousands(offset + shown),
            previous: (page > 1).then_some(page - 1),
            next: (offset + shown < total).then_some(page + 1),
            rows: rows
                .into_iter()
                .map(|r| RejectedView {
                    line: r.row_number,
                    cells: r
                        .cells()
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| (header.get(i).cloned().unwrap_or_default(), c))
                        .collect(),
                    value: r.value,
                    reason: r.reason,
                })
                .collect(),
        })
    } else {
        None
    };
    render(&ResultPage {
        chrome,
        progress,
        report,
    })
}

pub async fn progress(
    _auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    if service::imports::find(&state, id.clone()).await?.is_none() {
        // The upload has not reached the server yet.
        let id = crate::web::format::attr_escape(&id);
        return Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
            "<div hx-get=\"/contacts/imports/{id}/progress\" hx-trigger=\"every 1s\" hx-swap=\"outerHTML\">\
             <p class=\"muted\">Uploading… the import starts as soon as the first rows arrive.</p></div>"
        )));
    }
    render(&load(&state, id).await?)
}

/// `GET /contacts/imports/{id}/rejected.csv`: every rejected row in line order, as its line,
/// the reasons, and the file's own columns as given (so it can be fixed and imported again),
/// streamed. Imports made before rows were kept give the line, the value and the reason.
pub async fn rejected_csv(
    _auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let (import, _) = service::imports::progress(&state, public_id).await?;
    let import_id = import.id;
    let stem = import
        .file_name
        .trim_end_matches(".csv")
        .replace(['"', '\\', '/'], "_");
    Ok(csv_download(
        state.db.clone(),
        format!("{stem}-rejected-rows.csv"),
        move |conn, sink| {
            let header =
                service::imports::report_header(conn, import_id).map_err(|e| download_error(&e))?;
            let with_row = !header.is_empty();
            let mut first: Vec<String> = if with_row {
                vec!["line".into(), "reason".into()]
            } else {
                vec!["row".into(), "value".into(), "reason".into()]
            };
            first.extend(header);
            if !sink(csv_rows([first])) {
                return Ok(());
            }
            // A row's several problems are one line of the report, their reasons joined.
            let mut pending: Option<ReportRow> = None;
            let mut open = true;
            service::imports::each_rejection_batch(conn, import_id, |batch| {
                let mut out = Vec::with_capacity(batch.len());
                for r in batch {
                    match &mut pending {
                        Some(p) if p.line == r.row_number => {
                            p.reason.push_str("; ");
                            p.reason.push_str(&r.reason);
                        }
                        _ => {
                            out.extend(pending.take().map(|p| p.cells(with_row)));
                            pending = Some(ReportRow::from(r));
                        }
                    }
                }
                open = out.is_empty() || sink(csv_rows(out));
                open
            })
            .map_err(|e| download_error(&e))?;
            if let Some(p) = pending.filter(|_| open) {
                sink(csv_rows([p.cells(with_row)]));
            }
            Ok(())
        },
    ))
}

/// One line of the rejected rows' report.
struct ReportRow {
    line: i64,
    value: String,
    reason: String,
    cells: Vec<String>,
}

impl From<Rejection> for ReportRow {
    fn from(r: Rejection) -> Self {
        ReportRow {
            line: r.row_number,
            cells: r.cells(),
            value: r.value,
            reason: r.reason,
        }
    }
}

impl ReportRow {
    fn cells(self, with_row: bool) -> Vec<String> {
        if with_row {
            let mut out = vec![self.line.to_string(), self.reason];
            out.extend(self.cells);
            out
        } else {
            vec![self.line.to_string(), self.value, self.reason]
        }
    }
}
