//! Issue 20: Automations › Triggers (admins). The list with a form for a new trigger; each
//! trigger's page with its URL and secret and the set-up steps for its platform, a "try it" box
//! (a sample payload read through the mapping and rendered, nothing sent), enable/disable,
//! delete, and the log of received events with what each did. The same use cases as
//! `/api/v1/triggers` (`service::automations::triggers`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Switchable, form_refusal, template_choice};
use crate::domain::audit::Actor;
use crate::domain::fields::FieldProblems;
use crate::domain::trigger::{Mapping, Scheme};
use crate::error::AppError;
use crate::service::ServiceResult;
use crate::service::automations::triggers::{
    self, Trial, TriggerContent, TriggerInput, TriggerView,
};
use crate::service::automations::{self as automation, Choices};
use crate::startup::AppState;
use crate::storage::triggers::EventLine;
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{is_htmx, paths, render, render_with_status};

/// Events per page of a trigger's log.
const LOG_PAGE: i64 = 50;

/// A mapping to start from: the fields of a Shopify `orders/create` payload.
const EXAMPLE_MAPPING: &str = r#"{
  "phone": "/customer/phone",
  "default_country": "US",
  "name": "/customer/first_name",
  "attributes": {"last_order": "/name"},
  "variables": {
    "1": {"path": "/customer/first_name", "fallback": "there"},
    "2": "/name"
  },
  "conditions": [{"path": "/financial_status", "equals": "paid"}]
}"#;

#[derive(Debug, Default, Deserialize)]
pub struct TriggerForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    channel: String,
    /// `name|language`, or empty for free text.
    #[serde(default)]
    template: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    scheme: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    mapping: String,
}

#[derive(Template)]
#[template(path = "automations/index.html")]
struct IndexPage {
    chrome: Chrome,
    triggers: Vec<TriggerView>,
    choices: Choices,
    schemes: [Scheme; 5],
    form: TriggerForm,
    errors: FieldProblems,
    problem: Option<String>,
}

async fn index_page(
    state: &AppState,
    chrome: Chrome,
    form: TriggerForm,
    errors: FieldProblems,
    problem: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let triggers = triggers::list(state).await?;
    let choices = automation::choices(state).await?;
    render_with_status(
        &IndexPage {
            chrome,
            triggers,
            choices,
            schemes: Scheme::ALL,
            form,
            errors,
            problem,
        },
        status,
    )
}

/// `GET /automations`: the triggers, and the form for a new one.
pub async fn index(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let form = TriggerForm {
        scheme: Scheme::Shopify.as_str().into(),
        mapping: EXAMPLE_MAPPING.into(),
        ..TriggerForm::default()
    };
    index_page(
        &state,
        chrome,
        form,
        FieldProblems::default(),
        None,
        StatusCode::OK,
    )
    .await
}

/// The input a form asks for, or what is wrong with its shape.
fn input_from(form: &TriggerForm) -> Result<TriggerInput, FieldProblems> {
    let mut problems = FieldProblems::new();
    let mapping = match serde_json::from_str::<Mapping>(&form.mapping) {
        Ok(m) => m,
        Err(e) => {
            problems.add(
                "mapping",
                format!("The mapping is not valid JSON of the expected shape: {e}."),
            );
            Mapping::default()
        }
    };
    let content = match template_choice(&form.template) {
        Some((name, language)) => TriggerContent::Template { name, language },
        None => TriggerContent::Text(form.text.clone()),
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(TriggerInput {
        name: form.name.clone(),
        channel: form.channel.clone(),
        content,
        scheme: form.scheme.clone(),
        secret: Some(form.secret.clone()).filter(|s| !s.trim().is_empty()),
        mapping,
        enabled: true,
    })
}

/// `POST /automations`: creates a trigger, then its page (with the URL and secret).
pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<TriggerForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let input = match input_from(&form) {
        Ok(i) => i,
        Err(errors) => {
            return index_page(
                &state,
                chrome,
                form,
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match triggers::create(&state, auth.actor(), input, None).await {
        Ok(t) => {
            session.success(format!(
                "Trigger \"{}\" created. Paste its URL and secret into {}.",
                t.name,
                t.scheme.map(Scheme::label).unwrap_or("the sender")
            ));
            Ok(redirect_response(&req, &TriggerPages::page(&t.id)))
        }
        Err(e) => {
            let (errors, message) = form_refusal(e)?;
            index_page(
                &state,
                chrome,
                form,
                errors,
                Some(message),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

pub struct EventRow {
    pub when: String,
    pub outcome: String,
    pub reason: String,
    pub message: Option<(String, String)>,
}

impl EventRow {
    fn of(e: EventLine) -> Self {
        EventRow {
            when: format::datetime(&e.received_at),
            outcome: e.outcome,
            reason: e.reason.unwrap_or_default(),
            message: e.message_public_id.zip(e.message_status),
        }
    }
}

#[derive(Template)]
#[template(path = "automations/show.html")]
struct ShowPage {
    chrome: Chrome,
    t: TriggerView,
    mapping_json: String,
    events: Vec<EventRow>,
    older: Option<i64>,
    trial: Option<TrialView>,
    sample: String,
}

#[derive(Template)]
#[template(path = "automations/_trial.html")]
pub struct TrialView {
    pub skipped: Option<String>,
    pub recipient: Result<String, String>,
    pub variables: Vec<(String, String)>,
    pub rendered: Result<String, String>,
}

impl TrialView {
    fn of(t: Trial) -> Self {
        TrialView {
            skipped: t.skipped,
            recipient: t.recipient,
            variables: t.variables.into_iter().collect(),
            rendered: t.rendered,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    before: Option<i64>,
}

async fn show_page(
    state: &AppState,
    chrome: Chrome,
    id: String,
    before: Option<i64>,
    trial: Option<TrialView>,
    sample: String,
) -> Result<HttpResponse, AppError> {
    let t = triggers::get(state, id).await?;
    let lines = triggers::events(state, t.row_id, before, LOG_PAGE + 1).await?;
    let older = (lines.len() as i64 > LOG_PAGE)
        .then(|| lines.get(LOG_PAGE as usize - 1).map(|e| e.id))
        .flatten();
    let events = lines
        .into_iter()
        .take(LOG_PAGE as usize)
        .map(EventRow::of)
        .collect();
    let mapping_json = serde_json::to_string_pretty(&t.mapping).unwrap_or_default();
    render(&ShowPage {
        chrome,
        t,
        mapping_json,
        events,
        older,
        trial,
        sample,
    })
}

/// `GET /automations/triggers/{id}`.
pub async fn show(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, AppError> {
    show_page(
        &state,
        chrome,
        path.into_inner(),
        query.before,
        None,
        String::new(),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct TryForm {
    #[serde(default)]
    sample: String,
}

/// `POST /automations/triggers/{id}/try`: what the pasted payload would send; nothing is
/// sent. htmx gets the result alone.
pub async fn try_it(
    req: HttpRequest,
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    form: web::Form<TryForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let sample = form.into_inner().sample;
    let trial = TrialView::of(triggers::try_payload(&state, id.clone(), sample.clone()).await?);
    if is_htmx(&req) {
        return render(&trial);
    }
    show_page(&state, chrome, id, None, Some(trial), sample).await
}

/// A trigger's enable/disable and delete buttons (`automations::set_enabled`, `delete`).
pub struct TriggerPages;

impl Switchable for TriggerPages {
    const NOUN: &'static str = "Trigger";
    const LIST: &'static str = paths::AUTOMATIONS;
    const WHILE_DISABLED: &'static str = "deliveries get 410 until it is enabled again.";

    fn page(id: &str) -> String {
        format!("{}/triggers/{id}", paths::AUTOMATIONS)
    }

    async fn switch(
        state: &AppState,
        actor: Actor,
        id: String,
        enabled: bool,
    ) -> ServiceResult<String> {
        let t = triggers::update(state, actor, id, move |mut i| {
            i.enabled = enabled;
            i
        })
        .await?;
        Ok(t.name)
    }

    async fn delete(state: &AppState, actor: Actor, id: String) -> ServiceResult<()> {
        triggers::delete(state, actor, id).await
    }
}
