//! History (admins): every message sent, newest first, with filters, keyset pages, a count
//! and a streamed CSV export of any filtered view (issue 18). The parameters are read by
//! `service::history`, the same as for `GET /api/v1/messages`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{NaiveDateTime, Utc};

use crate::domain::message::{MessageSource, MessageStatus};
use crate::error::AppError;
use crate::service::history::{self as service, Choices, HistoryParams, Total};
use crate::service::{FieldProblems, ServiceError};
use crate::startup::AppState;
use crate::storage::history::HistoryRow;
use crate::web::chrome::Chrome;
use crate::web::download::{csv_download, csv_rows, download_error};
use crate::web::format::{self, MessageStatusView, thousands};
use crate::web::identity::{Auth, perm};
use crate::web::{is_htmx, render_with_status};

pub const PATH: &str = "/history";
/// How much of a message's text a row shows.
const SUMMARY_CHARS: usize = 80;

pub struct Named {
    pub name: String,
    pub href: Option<String>,
}

pub struct RowView {
    pub detail_href: String,
    pub when: String,
    pub contact: Named,
    pub phone: String,
    pub channel: String,
    pub summary: String,
    pub template: Option<String>,
    pub status_html: String,
    pub status_at: String,
    pub source_kind: &'static str,
    pub source: Named,
}

pub struct Option_ {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "history/index.html")]
struct HistoryPage {
    chrome: Chrome,
    params: HistoryParams,
    problems: FieldProblems,
    channels: Vec<Option_>,
    statuses: Vec<Option_>,
    broadcasts: Vec<Option_>,
    templates: Vec<Option_>,
    sources: Vec<Option_>,
    /// `date` for a date (or nothing), `text` for a time the address gave.
    since_type: &'static str,
    until_type: &'static str,
    rows: Vec<RowView>,
    total: Option<String>,
    older: Option<String>,
    newer: Option<String>,
    newest: Option<String>,
    export: String,
}

impl HistoryPage {
    fn problem(&self, field: &str) -> Option<&str> {
        self.problems.get(field)
    }
}

/// The time of a message's status: when it was sent, delivered, read or failed; otherwise
/// when it last changed.
fn status_time(row: &HistoryRow) -> NaiveDateTime {
    let m = &row.message;
    let stamp = match m.status() {
        MessageStatus::Sent => m.sent_at,
        MessageStatus::Delivered => m.delivered_at,
        MessageStatus::Read => m.read_at,
        MessageStatus::Failed => m.failed_at,
        MessageStatus::Queued => Some(m.created_at),
        _ => None,
    };
    stamp.unwrap_or(m.updated_at)
}

/// The first characters of `text`, with an ellipsis when there is more.
fn summary(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Who or what sent it: the person or API key as recorded, or the broadcast (linked).
fn source_of(row: &HistoryRow) -> (&'static str, Named) {
    let m = &row.message;
    match MessageSource::parse(&m.source) {
        Some(MessageSource::Broadcast) => (
            MessageSource::Broadcast.as_str(),
            Named {
                name: row
                    .broadcast_name
                    .clone()
                    .unwrap_or_else(|| m.requested_by.clone()),
                href: row
                    .broadcast_public_id
                    .as_ref()
                    .map(|id| format!("/broadcasts/{id}")),
            },
        ),
        Some(MessageSource::Api) => (
            MessageSource::Api.as_str(),
            Named {
                name: m.requested_by.clone(),
                href: Some(crate::web::paths::API_KEYS.to_owned()),
            },
        ),
        // Issue 20: what a trigger or reminder rule sent, by its name as recorded.
        Some(s @ (MessageSource::Trigger | MessageSource::Reminder)) => (
            s.as_str(),
            Named {
                name: m.requested_by.clone(),
                href: None,
            },
        ),
        _ => (
            MessageSource::Person.as_str(),
            Named {
                name: m.requested_by.clone(),
                href: None,
            },
        ),
    }
}

fn row_view(row: &HistoryRow) -> Result<RowView, AppError> {
    let m = &row.message;
    let (source_kind, source) = source_of(row);
    let name = row.contact_name.clone().unwrap_or_default();
    Ok(RowView {
        detail_href: format!("/messages/{}", m.public_id),
        when: format::datetime(&m.created_at),
        contact: Named {
            name: if name.is_empty() {
                m.to_address.clone()
            } else {
                name
            },
            href: row
                .contact_public_id
                .as_ref()
                .map(|id| format!("/contacts/{id}")),
        },
        phone: m.to_address.clone(),
        channel: row.channel_name.clone().unwrap_or_default(),
        summary: if m.body.trim().is_empty() {
            row.template_name.clone().unwrap_or_default()
        } else {
            summary(&m.body)
        },
        template: row.template_name.clone(),
        status_html: MessageStatusView::of(m).render()?,
        status_at: format::datetime(&status_time(row)),
        source_kind,
        source,
    })
}

/// The options of a select: `(id, public id, name)`, the one the filter names selected.
fn options(
    choices: &[crate::storage::history::Choice],
    chosen: Option<i64>,
    raw: &str,
) -> Vec<Option_> {
    let raw = raw.trim();
    choices
        .iter()
        .map(|(id, public_id, name)| Option_ {
            selected: chosen == Some(*id) || (!raw.is_empty() && raw == public_id),
            value: public_id.clone(),
            label: name.clone(),
        })
        .collect()
}

fn fixed_options(values: &[(&str, &str)], raw: &str) -> Vec<Option_> {
    values
        .iter()
        .map(|(value, label)| Option_ {
            selected: raw.trim().eq_ignore_ascii_case(value),
            value: (*value).to_owned(),
            label: (*label).to_owned(),
        })
        .collect()
}

/// A date input for a date; a text input for anything else (a time from a link), so that
/// the value is kept rather than blanked by the browser.
fn input_type(raw: &str) -> &'static str {
    let raw = raw.trim();
    if raw.is_empty() || chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok() {
        "date"
    } else {
        "text"
    }
}

/// `GET /history`: the filter form and a page of messages. A filter that does not fit is
/// shown at its field (400), never as an error page.
pub async fn index(
    _auth: Auth<perm::ViewHistory>,
    req: HttpRequest,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let (params, unreadable) = match serde_urlencoded::from_str::<HistoryParams>(req.query_string())
    {
        Ok(p) => (p, None),
        Err(e) => (
            HistoryParams::default(),
            Some(format!("The address's filters could not be read ({e}).")),
        ),
    };
    let (choices, page): (Choices, _) =
        service::page_with_choices(&state, params.clone(), service::PAGE_SIZE).await?;
    let (page, mut problems) = match page {
        Ok(page) => (Some(page), FieldProblems::new()),
        Err(ServiceError::Invalid { fields, .. }) if !fields.is_empty() => (None, fields),
        Err(e) => return Err(e.into()),
    };
    if let Some(message) = unreadable {
        problems.add("filters", message);
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let filter = page.as_ref().map(|p| p.filter.clone()).unwrap_or_default();
    let statuses: Vec<(&str, &str)> = service::STATUSES
        .iter()
        .map(|s| {
            let label = MessageStatus::parse(s)
                .map(|m| m.label())
                .unwrap_or(match *s {
                    "scheduled" => "Scheduled",
                    "expired" => "Expired",
                    other => other,
                });
            (*s, label)
        })
        .collect();
    let sources: Vec<(&str, &str)> = MessageSource::ALL
        .iter()
        .map(|s| (s.as_str(), s.label()))
        .collect();
    let rows = match &page {
        Some(p) => p.rows.iter().map(row_view).collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let total = page.as_ref().and_then(|p| p.total).map(|t| match t {
        Total::Exact(1) => "1 message".to_owned(),
        Total::Exact(n) => format!("{} messages", thousands(n)),
        Total::MoreThan(n) => format!("More than {} messages", thousands(n)),
    });
    let link = |cursor: &Option<String>| {
        cursor
            .as_ref()
            .map(|c| format!("{PATH}{}", params.query_string(Some(c))))
    };
    let older = page.as_ref().and_then(|p| link(&p.older));
    let newer = page.as_ref().and_then(|p| link(&p.newer));
    let newest = page
        .as_ref()
        .filter(|p| p.not_first)
        .map(|_| format!("{PATH}{}", params.query_string(None)));
    // A GET form sends its empty fields too: htmx shows the address without them.
    let cursor = Some(params.cursor.trim()).filter(|c| !c.is_empty());
    let canonical = format!("{PATH}{}", params.query_string(cursor));
    let mut res = render_with_status(
        &HistoryPage {
            chrome,
            channels: options(&choices.channels, filter.channel_id, &params.channel),
            statuses: fixed_options(&statuses, &params.status),
            broadcasts: options(&choices.broadcasts, filter.broadcast_id, &params.broadcast),
            templates: options(&choices.templates, filter.template_id, &params.template),
            sources: fixed_options(&sources, &params.source),
            since_type: input_type(&params.since),
            until_type: input_type(&params.until),
            rows,
            total,
            older,
            newer,
            newest,
            export: format!("{PATH}/export.csv{}", params.query_string(None)),
            params,
            problems,
        },
        status,
    )?;
    if is_htmx(&req)
        && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&canonical)
    {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("hx-push-url"),
            v,
        );
    }
    Ok(res)
}

/// The CSV's columns.
const CSV_HEADER: [&str; 20] = [
    "id",
    "created_at",
    "contact_id",
    "contact_name",
    "phone",
    "channel",
    "status",
    "status_at",
    "source",
    "sent_by",
    "broadcast",
    "template",
    "error_code",
    "error_message",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "body",
];

fn csv_record(row: &HistoryRow) -> [String; 20] {
    let m = &row.message;
    let at = |t: Option<NaiveDateTime>| t.map(|t| t.and_utc().to_rfc3339()).unwrap_or_default();
    [
        m.public_id.clone(),
        at(Some(m.created_at)),
        row.contact_public_id.clone().unwrap_or_default(),
        row.contact_name.clone().unwrap_or_default(),
        m.to_address.clone(),
        row.channel_name.clone().unwrap_or_default(),
        m.status.clone(),
        at(Some(status_time(row))),
        m.source.clone(),
        m.requested_by.clone(),
        row.broadcast_name.clone().unwrap_or_default(),
        row.template_name.clone().unwrap_or_default(),
        m.error_code.clone().unwrap_or_default(),
        m.error_message.clone().unwrap_or_default(),
        m.provider_message_id.clone().unwrap_or_default(),
        at(m.sent_at),
        at(m.delivered_at),
        at(m.read_at),
        at(m.failed_at),
        m.body.clone(),
    ]
}

/// `GET /history/export.csv?<the page's filters>`: every matching message, newest first,
/// streamed a batch at a time (cells a spreadsheet would run are neutralised by `csv_out`).
pub async fn export(
    _auth: Auth<perm::ViewHistory>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let params = serde_urlencoded::from_str::<HistoryParams>(req.query_string())
        .map_err(|e| AppError::BadRequest(format!("The filters could not be read: {e}")))?;
    // A filter that does not fit is a 400 page saying which, before anything streams.
    let filter = service::export_plan(&state, params)
        .await
        .map_err(|e| match e {
            ServiceError::Invalid { .. } => AppError::BadRequest(e.to_string()),
            other => other.into(),
        })?;
    let file_name = format!("history-{}.csv", Utc::now().format("%Y%m%d-%H%M"));
    Ok(csv_download(
        state.db.clone(),
        file_name,
        move |conn, sink| {
            if !sink(csv_rows([CSV_HEADER])) {
                return Ok(());
            }
            service::each_batch(conn, &filter, |batch| {
                sink(csv_rows(batch.iter().map(csv_record)))
            })
            .map_err(|e| download_error(&e))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_short_and_on_one_line() {
        assert_eq!(summary("Hi\n  there"), "Hi there");
        let long = "é".repeat(100);
        let s = summary(&long);
        assert_eq!(s.chars().count(), SUMMARY_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
