//! `/api/v1/broadcasts`: drafts from JSON (with an optional `Idempotency-Key`), their state and
//! counts, the reach estimate, and the controls (`launch`, `pause`, `resume`, `cancel`,
//! `approve`, `reject`). The same use cases as the broadcast pages: `service::broadcasts`.
//! The body's shapes are documented in docs/api.md.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::broadcast::{Audience, BroadcastState};
use crate::domain::template::{VariableMapping, VariableSource};
use crate::error::AppError;
use crate::service::api_objects::{BroadcastJson, QuietHoursBody, broadcast_json};
use crate::service::broadcasts::{self, Control, DraftInput, MessageInput, When};
use crate::service::paging::{Page, encode_cursor};
use crate::service::sends::TemplateRef;
use crate::startup::AppState;
use crate::storage::broadcasts::ListFilter;
use crate::web::api::{
    BadRequest, Body, Busy, Conflict, NotFound, Params, Unprocessable, csv_body, default_country,
    idempotency_key, import_turn, page_params,
};
use crate::web::identity::{Auth, Principal, perm};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BroadcastDraft, example = json!({"name": "December sale", "channel": "Shop WhatsApp",
    "audience": {"lists": ["VIP"], "exclude_lists": ["Staff"]},
    "message": {"template": {"name": "sale", "language": "en_US",
        "variables": {"1": {"source": "attribute_with_fallback", "key": "first_name", "fallback": "there"}}}},
    "schedule": {"at": "2026-12-24T09:00", "time_zone": "Europe/Berlin", "recipient_local_time": true}}))]
pub struct DraftBody {
    name: String,
    /// A channel's id or name.
    channel: String,
    /// `{"lists": [list id or name...], "exclude_lists": [...], "filter": {...}}` (docs/api.md).
    #[serde(default)]
    #[schema(value_type = Object)]
    audience: Audience,
    message: MessageBody,
    #[serde(default)]
    schedule: ScheduleBody,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BroadcastMessageBody)]
pub struct MessageBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    template: Option<TemplateBody>,
    /// With a template on WhatsApp: free text for recipients whose window is open at send time.
    #[serde(default)]
    window_text: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BroadcastTemplate)]
pub struct TemplateBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    /// Per variable: a fixed text, or `{"source": "attribute", "key": "city"}`, or
    /// `{"source": "attribute_with_fallback", "key": "city", "fallback": "your city"}`; as an
    /// object by variable name, or an array for `{{1}}`, `{{2}}`…
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    variables: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BroadcastSchedule)]
pub struct ScheduleBody {
    /// An RFC 3339 instant, or a local time (`2026-12-24T09:00`) read in `time_zone`.
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    /// Send at `at`'s wall-clock time in each recipient's own zone.
    #[serde(default)]
    recipient_local_time: bool,
    /// `{"from": "21:00", "to": "08:00"}` in the recipient's local time.
    #[serde(default)]
    quiet_hours: Option<QuietHoursBody>,
}

fn when(raw: Option<&str>, field: &str) -> Result<Option<When>, AppError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(When::Instant(t.with_timezone(&Utc))));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(Some(When::Local(t)));
        }
    }
    Err(AppError::invalid(
        "invalid_schedule",
        format!(
            "`schedule.{field}` is not a time: give RFC 3339 (2026-12-24T09:00:00+01:00) or a local time (2026-12-24T09:00) with `time_zone`."
        ),
    ))
}

fn source_of(value: &serde_json::Value, name: &str) -> Result<VariableSource, AppError> {
    match value {
        serde_json::Value::String(text) => Ok(VariableSource::Fixed { text: text.clone() }),
        other => serde_json::from_value(other.clone()).map_err(|e| {
            AppError::invalid(
                "invalid_variables",
                format!(
                    "Variable \"{name}\": give a text, or {{\"source\": \"attribute\", \"key\": ...}} (optionally \"attribute_with_fallback\" with \"fallback\"): {e}"
                ),
            )
        }),
    }
}

fn mapping(value: Option<serde_json::Value>) -> Result<VariableMapping, AppError> {
    let mut out = BTreeMap::new();
    match value {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let name = (i + 1).to_string();
                out.insert(name.clone(), source_of(item, &name)?);
            }
        }
        Some(serde_json::Value::Object(map)) => {
            for (name, item) in &map {
                out.insert(name.clone(), source_of(item, name)?);
            }
        }
        Some(_) => {
            return Err(AppError::invalid(
                "invalid_variables",
                "`template.variables` is an object by variable name or an array.",
            ));
        }
    }
    Ok(out)
}

fn input_from(body: DraftBody) -> Result<DraftInput, AppError> {
    let message = match (body.message.text, body.message.template) {
        (Some(text), None) => MessageInput::Text(text),
        (None, Some(t)) => {
            let template = match (t.id, t.name) {
                (Some(id), _) => TemplateRef::Id(id),
                (None, Some(name)) => TemplateRef::Name {
                    name,
                    language: t.language.unwrap_or_default(),
                },
                (None, None) => {
                    return Err(AppError::invalid(
                        "invalid_message",
                        "Name the template: `id`, or `name` and `language`.",
                    ));
                }
            };
            MessageInput::Template {
                template,
                variables: mapping(t.variables)?,
                window_text: body.message.window_text,
            }
        }
        _ => {
            return Err(AppError::invalid(
                "invalid_message",
                "`message` holds either `text` or `template`.",
            ));
        }
    };
    Ok(DraftInput {
        name: body.name,
        channel: body.channel,
        audience: body.audience,
        message,
        send_at: when(body.schedule.at.as_deref(), "at")?,
        time_zone: body.schedule.time_zone.unwrap_or_default(),
        expires_at: when(body.schedule.expires_at.as_deref(), "expires_at")?,
        recipient_local_time: body.schedule.recipient_local_time,
        quiet_hours: body
            .schedule
            .quiet_hours
            .map(|q| (q.from, q.to))
            .unwrap_or_default(),
    })
}

/// `POST /api/v1/broadcasts` -> 201 with the draft (200 with `Idempotent-Replayed: true` for a
/// repeat of the same request under the same key).
#[utoipa::path(post, path = "/api/v1/broadcasts", tag = "broadcasts",
    summary = "Create a broadcast draft",
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat of the same body under the same key answers the first draft.")),
    request_body = DraftBody,
    responses(
        (status = 200, description = "A repeat under the same `Idempotency-Key`: the first draft.", body = BroadcastJson),
        (status = 201, description = "The draft.", body = BroadcastJson),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    body: Body<serde_json::Value>,
) -> Result<HttpResponse, AppError> {
    let key = idempotency_key(&req)?;
    let raw = body.get()?;
    let hash: String = Sha256::digest(raw.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let parsed: DraftBody = serde_json::from_value(raw)
        .map_err(|e| AppError::invalid("invalid_json", format!("The body does not fit: {e}")))?;
    let input = input_from(parsed)?;
    let owner = match &auth.principal {
        Principal::ApiKey(k) => format!("api:{}", k.public_id),
        Principal::User(u) => format!("user:{}", u.id),
    };
    let idempotency = key.map(|k| (format!("{owner}:{k}"), hash));
    let (view, replayed) = broadcasts::create(&state, auth.actor(), input, idempotency).await?;
    let mut res = if replayed {
        let mut r = HttpResponse::Ok();
        r.insert_header(("Idempotent-Replayed", "true"));
        r
    } else {
        HttpResponse::Created()
    };
    Ok(res.json(broadcast_json(view)))
}

/// `PATCH /api/v1/broadcasts/{id}`: rewrites a draft (the whole draft, as for `POST`).
#[utoipa::path(patch, path = "/api/v1/broadcasts/{id}", tag = "broadcasts",
    summary = "Rewrite a draft",
    params(("id" = String, Path, description = "The broadcast's id.")),
    request_body = DraftBody,
    responses(
        (status = 200, description = "The draft as it is now.", body = BroadcastJson),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn update(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<DraftBody>,
) -> Result<HttpResponse, AppError> {
    let input = input_from(body.get()?)?;
    let view = broadcasts::update(&state, auth.actor(), path.into_inner(), input).await?;
    Ok(HttpResponse::Ok().json(broadcast_json(view)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `draft`, `pending_approval`, `scheduled`, `running`, `paused`, `completed` or `cancelled`.
    #[serde(default)]
    state: Option<String>,
    /// Search in the names.
    #[serde(default)]
    q: Option<String>,
    /// Page size: 1 to 200 (default 50).
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /api/v1/broadcasts?state=&q=&limit=&cursor=` -> `{"data": [...], "next_cursor"}`.
#[utoipa::path(get, path = "/api/v1/broadcasts", tag = "broadcasts",
    summary = "List broadcasts, newest first",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of broadcasts.", body = Page<BroadcastJson>),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.get()?;
    let request = match page_params(q.limit.as_deref(), q.cursor.as_deref()) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    let wanted_state = match q.state.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<BroadcastState>()
                .map_err(|e| AppError::invalid("invalid_state", format!("`state`: {e}")))?,
        ),
    };
    let filter = ListFilter {
        state: wanted_state,
        q: q.q,
    };
    let (views, more) = broadcasts::list(&state, filter, request.after, request.limit).await?;
    let next_cursor = views
        .last()
        .filter(|_| more)
        .map(|v| encode_cursor(v.row.id));
    let data: Vec<BroadcastJson> = views.into_iter().map(broadcast_json).collect();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}

/// `GET /api/v1/broadcasts/{id}`.
#[utoipa::path(get, path = "/api/v1/broadcasts/{id}", tag = "broadcasts",
    summary = "Read a broadcast, its state and counts",
    params(("id" = String, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "The broadcast.", body = BroadcastJson),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    _auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let view = broadcasts::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(broadcast_json(view)))
}

/// How many a broadcast would reach.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastEstimate, example = json!({"matched": 1200, "reach": 1150,
    "excluded": {"opted_out": 30, "no_phone_for_channel": 20}}))]
struct Estimate {
    /// Contacts the audience matches.
    matched: i64,
    /// Of those, who would be sent to.
    reach: i64,
    /// Who would not, by reason.
    excluded: BTreeMap<&'static str, i64>,
}

/// `GET /api/v1/broadcasts/{id}/estimate` -> the reach and the exclusions by reason.
#[utoipa::path(get, path = "/api/v1/broadcasts/{id}/estimate", tag = "broadcasts",
    summary = "Estimate a broadcast's reach",
    params(("id" = String, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "The reach, and the exclusions by reason.", body = Estimate),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
pub async fn estimate(
    _auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let e = broadcasts::estimate(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Estimate {
        matched: e.matched,
        reach: e.reach(),
        excluded: e.excluded.iter().map(|(x, n)| (x.as_str(), *n)).collect(),
    }))
}

/// `POST /api/v1/broadcasts/{id}/launch` -> 200 with the broadcast (`pending_approval`,
/// `scheduled` or `running`).
#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/launch", tag = "broadcasts",
    summary = "Launch a draft",
    params(("id" = String, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "The broadcast: `pending_approval`, `scheduled` or `running`.", body = BroadcastJson),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn launch(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (_, view) = broadcasts::launch(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(broadcast_json(view)))
}

async fn control(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    id: String,
    what: Control,
) -> Result<HttpResponse, AppError> {
    let view = broadcasts::control(&state, auth.actor(), id, what).await?;
    Ok(HttpResponse::Ok().json(broadcast_json(view)))
}

#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/pause", tag = "broadcasts",
    summary = "Pause a running broadcast",
    params(("id" = String, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "The broadcast as it is now.", body = BroadcastJson),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub async fn pause(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    control(auth, state, path.into_inner(), Control::Pause).await
}

#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/resume", tag = "broadcasts",
    summary = "Resume a paused broadcast",
    params(("id" = String, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "The broadcast as it is now.", body = BroadcastJson),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub async fn resume(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    control(auth, state, path.into_inner(), Control::Resume).await
}

#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/cancel", tag = "broadcasts",
    summary = "Cancel a broadcast",
    params(("id" = String, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "The broadcast as it is now.", body = BroadcastJson),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub async fn cancel(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    control(auth, state, path.into_inner(), Control::Cancel).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BroadcastReview, example = json!({"note": "Checked the prices."}))]
pub struct ReviewBody {
    #[serde(default)]
    note: String,
}

async fn review(
    auth: Auth<perm::ApproveBroadcasts>,
    state: web::Data<AppState>,
    id: String,
    approve: bool,
    body: Body<ReviewBody>,
) -> Result<HttpResponse, AppError> {
    let note = body.get().map(|b| b.note).unwrap_or_default();
    let view = broadcasts::review(&state, auth.actor(), id, approve, note).await?;
    Ok(HttpResponse::Ok().json(broadcast_json(view)))
}

/// `POST /api/v1/broadcasts/{id}/approve` (optional `{"note"}`).
#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/approve", tag = "broadcasts",
    summary = "Approve a broadcast waiting for approval",
    params(("id" = String, Path, description = "The broadcast's id.")),
    request_body(content = ReviewBody, description = "An optional note."),
    responses(
        (status = 200, description = "The broadcast as it is now.", body = BroadcastJson),
        (status = 403, description = "Nobody approves their own broadcast.", body = crate::error::ErrorBody),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn approve(
    auth: Auth<perm::ApproveBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<ReviewBody>,
) -> Result<HttpResponse, AppError> {
    review(auth, state, path.into_inner(), true, body).await
}

/// `POST /api/v1/broadcasts/{id}/reject` with `{"note"}` (required).
#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/reject", tag = "broadcasts",
    summary = "Send a broadcast back to draft",
    params(("id" = String, Path, description = "The broadcast's id.")),
    request_body(content = ReviewBody, description = "Why (required)."),
    responses(
        (status = 200, description = "The broadcast as it is now.", body = BroadcastJson),
        (status = 403, description = "Nobody approves their own broadcast.", body = crate::error::ErrorBody),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn reject(
    auth: Auth<perm::ApproveBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<ReviewBody>,
) -> Result<HttpResponse, AppError> {
    review(auth, state, path.into_inner(), false, body).await
}

// --- issue 17: a CSV upload as the audience ---

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AudienceQuery {
    /// The phone column's header; without it, found from the header names.
    #[serde(default)]
    phone_column: Option<String>,
    /// ISO country for numbers written without their country code.
    #[serde(default)]
    default_country: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AudienceRejectedRow)]
struct RejectedRowJson {
    line: i64,
    value: String,
    reason: String,
}

/// `POST /api/v1/broadcasts/{id}/audience.csv`: the CSV as the raw body (`text/csv`) or the
/// multipart field `file`; `?phone_column=`, `?default_country=`. Answers once the file is
/// What an audience upload read.
#[derive(Serialize, utoipa::ToSchema)]
struct AudienceUploaded {
    broadcast: BroadcastJson,
    /// The upload as the audience names it (its `audience.csv`).
    #[schema(value_type = Object)]
    csv: crate::domain::broadcast::CsvAudience,
    rejected: Vec<RejectedRowJson>,
    /// Every rejected row, as CSV.
    report_url: String,
}

/// read: the broadcast (its `audience.csv`), and the bad rows by line, value and reason.
#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/audience.csv", tag = "broadcasts",
    summary = "Upload a CSV as a draft's audience",
    params(("id" = String, Path, description = "The broadcast's id."), AudienceQuery),
    request_body(description = "The CSV, as the raw body or the multipart field `file`.",
        content((String = "text/csv", example = "phone,first_name\n+14155550100,Ada\n"))),
    responses(
        (status = 200, description = "The file is read.", body = AudienceUploaded),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Busy),
    ))]
pub async fn upload_audience(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Params<AudienceQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let country = default_country(query.default_country.as_deref(), &state)?;
    // A turn first (nothing is written while the upload waits for one).
    let mut payload = payload;
    let permit = import_turn(&state, &mut payload).await?;
    let body = csv_body(&req, payload).await?;
    let how = broadcasts::csv::CsvUpload {
        file_name: body.file_name.unwrap_or_else(|| "api-upload.csv".into()),
        phone_column: query.phone_column,
        country,
        delimiter: None,
        bytes_total: body.bytes_total,
    };
    let done = broadcasts::csv::upload(
        &state,
        auth.actor(),
        path.into_inner(),
        how,
        permit,
        body.chunks,
    )
    .await?;
    let rejected: Vec<RejectedRowJson> = done
        .rejected
        .into_iter()
        .map(|r| RejectedRowJson {
            line: r.row_number,
            value: r.value,
            reason: r.reason,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AudienceUploaded {
        broadcast: broadcast_json(done.view),
        report_url: format!(
            "{}/contacts/imports/{}/rejected.csv",
            state.public_url, done.csv.upload
        ),
        csv: done.csv,
        rejected,
    }))
}
// --- end issue 17 CSV audience ---

// --- issue 18: "Send again to..." ---

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BroadcastSendAgain, example = json!({"to": "not_read"}))]
pub struct SendAgainBody {
    /// failed, not_delivered, not_read, not_replied or replied.
    to: String,
}

/// `POST /api/v1/broadcasts/{id}/send-again {"to": "not_read"}` -> 201 with the new draft,
/// whose audience (`audience.follow_up`) is the chosen recipients, frozen now.
#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/send-again", tag = "broadcasts",
    summary = "Draft a follow-up to some of a broadcast's recipients",
    params(("id" = String, Path, description = "The broadcast's id.")),
    request_body = SendAgainBody,
    responses(
        (status = 201, description = "The new draft.", body = BroadcastJson),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn send_again(
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<SendAgainBody>,
) -> Result<HttpResponse, AppError> {
    let once = body.idempotency();
    let to = body
        .get()?
        .to
        .parse()
        .map_err(|e: String| AppError::invalid("invalid_send_again", e))?;
    let (state, actor) = (&state, auth.actor());
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::CREATED,
        |key| async move {
            let view =
                broadcasts::results::send_again(state, actor, path.into_inner(), to, key).await?;
            Ok(HttpResponse::Created().json(broadcast_json(view)))
        },
        |id| async move {
            Ok(HttpResponse::Created().json(broadcast_json(broadcasts::get(state, id).await?)))
        },
    )
    .await
}
// --- end issue 18 ---
