//! Settings › Webhooks (admins, issue 19): the endpoints Herald posts status callbacks to. The
//! list (with its empty state); a new endpoint (its signing secret shown once on its page); the
//! endpoint's page with its settings form, "send test event", "rotate secret", delete (after a
//! confirmation), and its delivery log with filters, each attempt, and "send again" for one
//! delivery or every failed delivery since a time. The use cases: `service::callbacks`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::callbacks::EventType;
use crate::domain::fields::FieldProblems;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::callbacks::{self as service, EndpointInput, LoggedDelivery, SendAgain};
use crate::service::reveals::{self, Reveal, RevealOn};
use crate::startup::AppState;
use crate::storage::callbacks::Endpoint;
use crate::web::chrome::Chrome;
use crate::web::format::{self, field_of};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{paths, render_with_status};

fn endpoint_path(public_id: &str) -> String {
    format!("{}/{public_id}", paths::WEBHOOKS)
}

/// The admin's server-side session, which alone may see a secret created here.
fn my_session(auth: &Auth<perm::ManageWebhooks>) -> Result<i64, AppError> {
    auth.user()
        .map(|u| u.session_id)
        .ok_or(AppError::Unauthenticated)
}

pub struct EndpointRow {
    pub public_id: String,
    pub url: String,
    pub description: String,
    pub events: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<String>,
}

impl EndpointRow {
    fn of(e: &Endpoint) -> Self {
        EndpointRow {
            public_id: e.public_id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.event_names().join(", "),
            enabled: e.is_enabled(),
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since.as_ref().map(format::datetime),
        }
    }
}

#[derive(Template)]
#[template(path = "webhooks/index.html")]
struct ListPage {
    chrome: Chrome,
    endpoints: Vec<EndpointRow>,
}

/// `GET /settings/webhooks`.
pub async fn index(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let endpoints = service::list(&state)
        .await?
        .iter()
        .map(EndpointRow::of)
        .collect();
    render_with_status(&ListPage { chrome, endpoints }, StatusCode::OK)
}

/// What the endpoint form shows: the values given, and which event types are ticked.
pub struct FormValues {
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub allow_private_network: bool,
}

impl FormValues {
    fn of(e: &Endpoint) -> Self {
        FormValues {
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.event_names().into_iter().map(str::to_owned).collect(),
            enabled: e.is_enabled(),
            allow_private_network: e.allows_private_network(),
        }
    }

    fn read(pairs: &[(String, String)]) -> Self {
        FormValues {
            url: field_of(pairs, "url"),
            description: field_of(pairs, "description"),
            events: pairs
                .iter()
                .filter(|(k, _)| k == "events")
                .map(|(_, v)| v.clone())
                .collect(),
            enabled: field_of(pairs, "enabled") == "on",
            allow_private_network: field_of(pairs, "allow_private_network") == "on",
        }
    }

    pub fn has(&self, event: &EventType) -> bool {
        self.events.iter().any(|e| e == event.as_str())
    }

    fn input(&self) -> EndpointInput {
        EndpointInput {
            url: self.url.clone(),
            description: self.description.clone(),
            events: self.events.clone(),
            enabled: self.enabled,
            allow_private_network: self.allow_private_network,
        }
    }
}

#[derive(Template)]
#[template(path = "webhooks/new.html")]
struct NewPage {
    chrome: Chrome,
    form: FormValues,
    errors: FieldProblems,
    event_types: [EventType; 11],
}

/// `GET /settings/webhooks/new`.
pub async fn new_form(
    _auth: Auth<perm::ManageWebhooks>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let form = FormValues {
        url: String::new(),
        description: String::new(),
        events: [
            "message.sent",
            "message.delivered",
            "message.read",
            "message.failed",
        ]
        .map(str::to_owned)
        .to_vec(),
        enabled: true,
        allow_private_network: false,
    };
    render_with_status(
        &NewPage {
            chrome,
            form,
            errors: FieldProblems::default(),
            event_types: EventType::ALL,
        },
        StatusCode::OK,
    )
}

/// The field problems of a refused form, or the error itself.
fn problems_of(err: ServiceError) -> Result<FieldProblems, AppError> {
    match err {
        ServiceError::Invalid { fields, .. } if !fields.is_empty() => Ok(fields),
        other => Err(other.into()),
    }
}

/// `POST /settings/webhooks`: registers the endpoint; its page then shows the secret once.
pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let form = FormValues::read(&body);
    let session_id = my_session(&auth)?;
    match service::create(&state, auth.actor(), form.input(), Some(session_id), None).await {
        Ok((endpoint, _)) => {
            session.success(format!("Webhook endpoint {} added.", endpoint.url));
            Ok(redirect_response(&req, &endpoint_path(&endpoint.public_id)))
        }
        Err(err) => {
            let errors = problems_of(err)?;
            render_with_status(
                &NewPage {
                    chrome,
                    form,
                    errors,
                    event_types: EventType::ALL,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    }
}

pub struct AttemptView {
    pub at: String,
    pub status_code: String,
    pub duration_ms: i32,
    pub response: String,
    pub error: String,
}

pub struct DeliveryView {
    pub webhook_id: String,
    pub event_type: String,
    pub status: String,
    pub created: String,
    pub next_attempt: Option<String>,
    pub attempts: Vec<AttemptView>,
}

impl DeliveryView {
    fn of(l: LoggedDelivery) -> Self {
        let d = l.delivery;
        DeliveryView {
            next_attempt: (d.status == "pending").then(|| format::datetime(&d.next_attempt_at)),
            created: format::datetime(&d.created_at),
            webhook_id: d.webhook_id,
            event_type: d.event_type,
            status: d.status,
            attempts: l
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    at: format::datetime(&a.attempted_at),
                    status_code: a
                        .status_code
                        .map_or_else(|| "no answer".to_owned(), |c| c.to_string()),
                    duration_ms: a.duration_ms,
                    response: a.response_excerpt,
                    error: a.error.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    before: String,
}

#[derive(Template)]
#[template(path = "webhooks/show.html")]
struct ShowPage {
    chrome: Chrome,
    endpoint: EndpointRow,
    rotating_until: Option<String>,
    form: FormValues,
    errors: FieldProblems,
    event_types: [EventType; 11],
    reveal: Option<Reveal>,
    deliveries: Vec<DeliveryView>,
    filter: LogQuery,
    older: Option<String>,
}

async fn show_page(
    state: &AppState,
    chrome: Chrome,
    public_id: String,
    filter: LogQuery,
    edited: Option<(FormValues, FieldProblems)>,
    reveal: Option<Reveal>,
) -> Result<HttpResponse, AppError> {
    let parsed = service::log_filter(
        Some(&filter.status),
        Some(&filter.event),
        Some(&filter.before),
    )?;
    let (endpoint, rows, more) = service::log(state, public_id, parsed).await?;
    let older = more
        .then(|| rows.last().map(|r| r.delivery.id.to_string()))
        .flatten()
        .map(|before| {
            let query = serde_urlencoded::to_string([
                ("status", filter.status.as_str()),
                ("event", filter.event.as_str()),
                ("before", before.as_str()),
            ])
            .unwrap_or_default();
            format!("{}?{query}", endpoint_path(&endpoint.public_id))
        });
    let status = if edited.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (form, errors) =
        edited.unwrap_or_else(|| (FormValues::of(&endpoint), FieldProblems::default()));
    let now = crate::storage::now();
    render_with_status(
        &ShowPage {
            chrome,
            rotating_until: endpoint
                .previous_secret_until
                .filter(|u| *u > now)
                .as_ref()
                .map(format::datetime),
            endpoint: EndpointRow::of(&endpoint),
            form,
            errors,
            event_types: EventType::ALL,
            reveal,
            deliveries: rows.into_iter().map(DeliveryView::of).collect(),
            filter,
            older,
        },
        status,
    )
}

/// `GET /settings/webhooks/{id}?status=&event=&before=`.
pub async fn show(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, AppError> {
    let reveal = reveals::take(&state, my_session(&auth)?, RevealOn::Webhooks).await?;
    show_page(
        &state,
        chrome,
        path.into_inner(),
        query.into_inner(),
        None,
        reveal,
    )
    .await
}

/// `POST /settings/webhooks/{id}`: saves the settings form.
pub async fn update(
    req: HttpRequest,
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let form = FormValues::read(&body);
    let patch = service::EndpointPatch {
        url: Some(form.url.clone()),
        description: Some(form.description.clone()),
        events: Some(form.events.clone()),
        enabled: Some(form.enabled),
        allow_private_network: Some(form.allow_private_network),
    };
    match service::update(&state, auth.actor(), public_id.clone(), patch).await {
        Ok(endpoint) => {
            session.success("The endpoint was saved.");
            Ok(redirect_response(&req, &endpoint_path(&endpoint.public_id)))
        }
        Err(err) => {
            let errors = problems_of(err)?;
            show_page(
                &state,
                chrome,
                public_id,
                LogQuery::default(),
                Some((form, errors)),
                None,
            )
            .await
        }
    }
}

/// `POST /settings/webhooks/{id}/rotate`: a new secret, shown once on the page.
pub async fn rotate(
    req: HttpRequest,
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let session_id = my_session(&auth)?;
    let (endpoint, _) = service::rotate_secret(
        &state,
        auth.actor(),
        path.into_inner(),
        Some(session_id),
        None,
    )
    .await?;
    session.success("A new signing secret was made; the old one keeps signing for 24 hours.");
    Ok(redirect_response(&req, &endpoint_path(&endpoint.public_id)))
}

/// `POST /settings/webhooks/{id}/test`.
pub async fn test(
    req: HttpRequest,
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let id = service::send_test(&state, auth.actor(), public_id.clone(), None).await?;
    session.success(format!(
        "A test event ({id}) is on its way; its attempts show in the log below."
    ));
    Ok(redirect_response(&req, &endpoint_path(&public_id)))
}

#[derive(Debug, Default, Deserialize)]
pub struct SendAgainForm {
    #[serde(default)]
    webhook_id: String,
    /// `datetime-local`, read as UTC.
    #[serde(default)]
    failed_since: String,
}

/// `POST /settings/webhooks/{id}/send-again`: one delivery, or every failed one since a time.
pub async fn send_again(
    req: HttpRequest,
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<SendAgainForm>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let form = form.into_inner();
    let what = if !form.webhook_id.trim().is_empty() {
        SendAgain::One(form.webhook_id)
    } else {
        let raw = form.failed_since.trim();
        let since = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
            .map_err(|_| {
                AppError::invalid(
                    "invalid_time",
                    "Give the time to send failed deliveries again from (UTC).",
                )
            })?;
        SendAgain::FailedSince(since)
    };
    let n = service::send_again(&state, auth.actor(), public_id.clone(), what).await?;
    session.success(match n {
        0 => "No delivery matched.".to_owned(),
        1 => "1 delivery will be sent again.".to_owned(),
        n => format!("{n} deliveries will be sent again."),
    });
    Ok(redirect_response(&req, &endpoint_path(&public_id)))
}

/// `POST /settings/webhooks/{id}/delete` (the form asks first).
pub async fn delete(
    req: HttpRequest,
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let endpoint = service::delete(&state, auth.actor(), path.into_inner()).await?;
    session.success(format!(
        "The endpoint {} and its delivery log were deleted.",
        endpoint.url
    ));
    Ok(redirect_response(&req, paths::WEBHOOKS))
}
