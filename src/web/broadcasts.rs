//! Broadcasts: the list, the composer (audience, message, schedule: one form saved as a draft,
//! resumable), the review page (reach and exclusions, a preview for real recipients, SMS
//! segments, the projected duration, a test send, launch), the live page (progress over SSE,
//! pause, resume, cancel, recipients) and the settings. Every change goes through
//! `service::broadcasts`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::domain::broadcast::{
    Audience, BroadcastMessage, BroadcastState, Combine, Condition, CsvAudience, FIELDS, Group,
    Node, Op,
};
use crate::domain::channel::ChannelKind;
use crate::domain::fields::FieldProblems;
use crate::domain::phone::DefaultCountry;
use crate::domain::role::{Permission, Role};
use crate::domain::sms;
use crate::error::AppError;
use crate::service::broadcasts::{
    self as service, BroadcastSettings, BroadcastView, Control, DraftInput, Launched, MessageInput,
    Preview, When,
};
// Issue 18: broadcast results.
use crate::domain::broadcast::SendAgainTo;
use crate::service::broadcasts::results::{self as outcomes, ResultView, Results};
use crate::service::sends::TemplateRef;
use crate::startup::AppState;
use crate::storage::broadcast_results::{FailureSource, RecipientFilter};
use crate::storage::broadcasts::{Counts, Estimate, ListFilter};
use crate::storage::channels::{self, Channel};
use crate::storage::imports::Rejection;
use crate::storage::templates::{self, TemplateFilter};
use crate::storage::{contacts, lists};
use crate::web::chrome::Chrome;
use crate::web::download::{csv_download, csv_rows, download_error};
use crate::web::format::{datetime, sse_event, thousands};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::variables::{self, VarRow};
use crate::web::{render, render_with_status};

pub const PATH: &str = "/broadcasts";
const PAGE_SIZE: i64 = 25;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    cfg.service(
        resource(PATH)
            .route(get().to(index))
            .route(post().to(create)),
    )
    .service(resource("/broadcasts/new").get(new_form))
    .service(
        resource("/broadcasts/settings")
            .route(get().to(settings_form))
            .route(post().to(save_settings)),
    )
    .service(resource("/broadcasts/{id}").get(show))
    .service(
        resource("/broadcasts/{id}/edit")
            .route(get().to(edit_form))
            .route(post().to(update)),
    )
    .service(resource("/broadcasts/{id}/launch").post(launch))
    .service(resource("/broadcasts/{id}/audience.csv").post(upload_audience))
    .service(resource("/broadcasts/{id}/test").post(test_send))
    .service(resource("/broadcasts/{id}/review").post(review))
    .service(resource("/broadcasts/{id}/{action:pause|resume|cancel}").post(control))
    .service(resource("/broadcasts/{id}/progress").get(progress))
    .service(resource("/broadcasts/{id}/events").get(events))
    // Issue 18: broadcast results.
    .service(resource("/broadcasts/{id}/send-again").post(send_again))
    .service(resource("/broadcasts/{id}/recipients.csv").get(recipients_csv));
}

// ---------------------------------------------------------------------------------------------
// Views

/// A broadcast's state and counts as its pages show them.
pub struct ProgressView {
    pub id: String,
    pub state: BroadcastState,
    pub percent: i64,
    pub counts: Counts,
    pub pause_reason: Option<String>,
    /// "About 3 minutes left" while running.
    pub eta: Option<String>,
}

fn duration_words(secs: i64) -> String {
    match secs {
        s if s < 60 => "under a minute".into(),
        s if s < 3600 => format!("about {} minutes", (s + 59) / 60),
        s => format!("about {} hours {} minutes", s / 3600, (s % 3600) / 60),
    }
}

impl ProgressView {
    fn of(v: &BroadcastView) -> Self {
        let counts = v.counts.clone();
        let state = v.state();
        let rate = i64::from(v.channel.rate_limit_per_second.max(1));
        let eta = (state == BroadcastState::Running && counts.pending > 0)
            .then(|| format!("{} left", duration_words(counts.pending / rate + 1)));
        ProgressView {
            id: v.row.public_id.clone(),
            state,
            percent: counts.percent(),
            counts,
            pause_reason: v.row.pause_reason.clone(),
            eta,
        }
    }
}

#[derive(Template)]
#[template(path = "broadcasts/_progress.html")]
struct ProgressFragment {
    p: ProgressView,
}

struct Row {
    v: BroadcastView,
    p: ProgressView,
    created: String,
    started: String,
}

#[derive(Template)]
#[template(path = "broadcasts/index.html")]
struct IndexPage {
    chrome: Chrome,
    rows: Vec<Row>,
    q: String,
    state: String,
    states: Vec<(&'static str, &'static str)>,
    next: Option<String>,
    can_manage: bool,
    is_admin: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct IndexQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    before: Option<i64>,
}

pub async fn index(
    auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<IndexQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let filter = ListFilter {
        state: query.state.parse().ok(),
        q: Some(query.q.clone()).filter(|q| !q.trim().is_empty()),
    };
    let (views, more) = service::list(&state, filter, query.before, PAGE_SIZE).await?;
    let next = more
        .then(|| views.last().map(|v| v.row.id))
        .flatten()
        .map(|id| {
            format!(
                "{PATH}?q={}&state={}&before={id}",
                urlencode(&query.q),
                urlencode(&query.state)
            )
        });
    let rows = views
        .into_iter()
        .map(|v| Row {
            p: ProgressView::of(&v),
            created: datetime(&v.row.created_at),
            started: v.row.started_at.as_ref().map(datetime).unwrap_or_default(),
            v,
        })
        .collect();
    let role = auth.principal.role();
    render(&IndexPage {
        chrome,
        rows,
        q: query.q,
        state: query.state,
        states: BroadcastState::ALL
            .iter()
            .map(|s| (s.as_str(), s.label()))
            .collect(),
        next,
        can_manage: role.can(Permission::ManageBroadcasts),
        is_admin: role.can(Permission::ManageUsers),
    })
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The composer

/// One condition row of the form.
#[derive(Debug, Clone, Default)]
struct CondRow {
    field: String,
    op: String,
    value: String,
}

/// A group of conditions one level inside the filter, as the form shows it.
#[derive(Debug, Clone, Default)]
struct GroupRow {
    /// `all` or `any`.
    combine: String,
    conditions: Vec<CondRow>,
}

/// How many groups of conditions the form reads back (each with up to 60 conditions).
const MAX_FORM_GROUPS: usize = 20;

/// The conditions of filled rows.
fn condition_nodes(rows: &[CondRow]) -> Vec<Node> {
    rows.iter()
        .filter(|c| !c.field.is_empty())
        .map(|c| {
            Node::Condition(Condition {
                field: c.field.clone(),
                op: Op::ALL
                    .into_iter()
                    .find(|o| o.as_str() == c.op)
                    .unwrap_or(Op::Eq),
                value: Some(c.value.clone()).filter(|v| !v.is_empty()),
            })
        })
        .collect()
}

fn combine_named(name: &str) -> Combine {
    if name == "any" {
        Combine::Any
    } else {
        Combine::All
    }
}

/// What the composer shows and posts.
#[derive(Debug, Clone, Default)]
struct Draft {
    name: String,
    channel: String,
    lists: Vec<String>,
    exclude_lists: Vec<String>,
    combine: String,
    conditions: Vec<CondRow>,
    /// Groups of conditions inside the filter (one level down).
    groups: Vec<GroupRow>,
    /// The whole filter as JSON, when it nests deeper than the form's rows show (made through
    /// the API): edited as it is, never flattened.
    filter_json: String,
    text: String,
    template: String,
    variables: Vec<VarRow>,
    send_at: String,
    time_zone: String,
    expires_at: String,
    /// Issue 17: `lists` or `csv`.
    audience_source: String,
    /// Window-aware mode's free text (WhatsApp).
    window_text: String,
    /// "In each recipient's local time".
    local_time: bool,
    quiet_from: String,
    quiet_to: String,
}

const BLANK_CONDITIONS: usize = 2;
const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M";

impl Draft {
    fn from_pairs(pairs: &[(String, String)]) -> Draft {
        let one = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        // Message texts keep their spacing as typed.
        let untrimmed = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let many = |k: &str| {
            pairs
                .iter()
                .filter(|(key, v)| key == k && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        let rows = |prefix: &str| -> Vec<CondRow> {
            (0..60)
                .filter_map(|i| {
                    let field = one(&format!("{prefix}c{i}.field"));
                    (!field.is_empty()).then(|| CondRow {
                        field,
                        op: one(&format!("{prefix}c{i}.op")),
                        value: one(&format!("{prefix}c{i}.value")),
                    })
                })
                .collect()
        };
        let conditions = rows("");
        let groups = (0..MAX_FORM_GROUPS)
            .map(|j| GroupRow {
                combine: one(&format!("g{j}.match")),
                conditions: rows(&format!("g{j}.")),
            })
            .filter(|g| !g.conditions.is_empty())
            .collect();
        Draft {
            name: one("name"),
            channel: one("channel"),
            lists: many("list"),
            exclude_lists: many("exclude"),
            combine: one("match"),
            conditions,
            groups,
            filter_json: one("filter_json"),
            text: untrimmed("text"),
            template: one("template"),
            variables: variables::read(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            send_at: one("send_at"),
            time_zone: one("time_zone"),
            expires_at: one("expires_at"),
            audience_source: one("audience_source"),
            window_text: untrimmed("window_text"),
            local_time: one("local_time") == "on",
            quiet_from: one("quiet_from"),
            quiet_to: one("quiet_to"),
        }
    }

    fn of(v: &BroadcastView) -> Draft {
        let mut conditions = Vec::new();
        let mut groups = Vec::new();
        let mut combine = "all".to_owned();
        let mut filter_json = String::new();
        let combine_of = |g: &Group| match g.combine {
            Combine::All => "all".to_owned(),
            Combine::Any => "any".to_owned(),
        };
        let row = |c: &Condition| CondRow {
            field: c.field.clone(),
            op: c.op.as_str().to_owned(),
            value: c.value.clone().unwrap_or_default(),
        };
        if let Some(g) = &v.audience.filter {
            combine = combine_of(g);
            for node in &g.conditions {
                match node {
                    Node::Condition(c) => conditions.push(row(c)),
                    Node::Group(sub) => {
                        let mut rows = Vec::new();
                        for inner in &sub.conditions {
                            match inner {
                                Node::Condition(c) => rows.push(row(c)),
                                // Deeper than the form's rows: the JSON is edited instead.
                                Node::Group(_) => {
                                    filter_json =
                                        serde_json::to_string_pretty(g).unwrap_or_default();
                                }
                            }
                        }
                        groups.push(GroupRow {
                            combine: combine_of(sub),
                            conditions: rows,
                        });
                    }
                }
            }
        }
        let zone: chrono_tz::Tz = v.row.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
        let timing = v.row.timing();
        let local = |t: &NaiveDateTime| {
            t.and_utc()
                .with_timezone(&zone)
                .format(LOCAL_FORMAT)
                .to_string()
        };
        let window_text = match &v.message {
            BroadcastMessage::Template {
                window_text: Some(t),
                ..
            } => t.clone(),
            _ => String::new(),
        };
        let (text, template, variables) = match &v.message {
            BroadcastMessage::Text { text } => (text.clone(), String::new(), Vec::new()),
            BroadcastMessage::Template {
                template,
                variables,
                ..
            } => (
                String::new(),
                template.clone(),
                variables::rows_of(variables),
            ),
        };
        Draft {
            name: v.row.name.clone(),
            channel: v.channel.public_id.clone(),
            lists: v.audience.lists.clone(),
            exclude_lists: v.audience.exclude_lists.clone(),
            combine,
            conditions,
            groups,
            filter_json,
            text,
            template,
            variables,
            send_at: v.row.send_at.as_ref().map(local).unwrap_or_default(),
            time_zone: v.row.time_zone.clone(),
            expires_at: v.row.expires_at.as_ref().map(local).unwrap_or_default(),
            audience_source: if v.audience.csv.is_some() {
                "csv".into()
            } else {
                "lists".into()
            },
            window_text,
            local_time: timing.local_time.is_some(),
            quiet_from: timing
                .quiet_hours
                .map(|q| q.from.format("%H:%M").to_string())
                .unwrap_or_default(),
            quiet_to: timing
                .quiet_hours
                .map(|q| q.to.format("%H:%M").to_string())
                .unwrap_or_default(),
        }
    }

    fn input(&self, problems: &mut FieldProblems) -> DraftInput {
        let filter = if self.filter_json.trim().is_empty() {
            let mut nodes = condition_nodes(&self.conditions);
            nodes.extend(
                self.groups
                    .iter()
                    .map(|g| (g, condition_nodes(&g.conditions)))
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(g, conditions)| {
                        Node::Group(Group {
                            combine: combine_named(&g.combine),
                            conditions,
                        })
                    }),
            );
            (!nodes.is_empty()).then(|| Group {
                combine: combine_named(&self.combine),
                conditions: nodes,
            })
        } else {
            match serde_json::from_str::<Group>(&self.filter_json) {
                Ok(g) => Some(g),
                Err(e) => {
                    problems.add(
                        "audience.filter",
                        format!("The filter is not valid JSON for a group of conditions: {e}"),
                    );
                    None
                }
            }
        };
        let message = if self.template.is_empty() {
            MessageInput::Text(self.text.clone())
        } else {
            MessageInput::Template {
                template: TemplateRef::Id(self.template.clone()),
                variables: variables::mapping(&self.variables),
                window_text: Some(self.window_text.clone()),
            }
        };
        let mut when = |raw: &str, field: &str| -> Option<When> {
            if raw.is_empty() {
                return None;
            }
            let parsed = NaiveDateTime::parse_from_str(raw, LOCAL_FORMAT)
                .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"));
            match parsed {
                Ok(t) => Some(When::Local(t)),
                Err(_) => {
                    problems.add(field, "Enter a date and time, like 2026-12-24 09:00.");
                    None
                }
            }
        };
        DraftInput {
            name: self.name.clone(),
            channel: self.channel.clone(),
            audience: Audience {
                lists: self.lists.clone(),
                exclude_lists: self.exclude_lists.clone(),
                filter,
                // Issue 17: "keep the uploaded CSV" (the service puts the upload back).
                csv: (self.audience_source == "csv").then(CsvAudience::default),
                // Issue 18: a follow-up keeps its frozen audience (the service puts it back).
                follow_up: None,
            },
            message,
            send_at: when(&self.send_at, "schedule.at"),
            time_zone: self.time_zone.clone(),
            expires_at: when(&self.expires_at, "schedule.expires_at"),
            recipient_local_time: self.local_time,
            quiet_hours: (self.quiet_from.clone(), self.quiet_to.clone()),
        }
    }
}

struct Choice {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "broadcasts/form.html")]
struct FormPage {
    chrome: Chrome,
    /// The draft's public id when editing.
    id: Option<String>,
    d: Draft,
    conditions: Vec<CondRow>,
    /// The draft's groups, each with an empty row to add to, and one empty group to start.
    groups: Vec<GroupRow>,
    errors: FieldProblems,
    channels: Vec<Choice>,
    lists: Vec<Choice>,
    templates: Vec<Choice>,
    fields: Vec<String>,
    /// What a variable's Field column offers (`_variable_rows.html`).
    var_keys: Vec<(String, String)>,
    ops: Vec<(&'static str, &'static str)>,
    zones: Vec<&'static str>,
    /// Issue 17: the draft's uploaded CSV audience, and its first bad rows.
    csv: Option<CsvAudience>,
    csv_rejected: Vec<Rejection>,
}

const ZONES: [&str; 16] = [
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Warsaw",
    "Europe/Istanbul",
    "Africa/Lagos",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Los_Angeles",
];

async fn form_page(
    state: &AppState,
    chrome: Chrome,
    id: Option<String>,
    mut d: Draft,
    errors: FieldProblems,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let chosen_template = d.template.clone();
    let (csv, csv_rejected) = match &id {
        Some(id) => {
            let csv = service::get(state, id.clone()).await?.audience.csv;
            let rejected = match &csv {
                Some(c) => service::csv::rejections(state, c, CSV_REPORT_ROWS).await?,
                None => Vec::new(),
            };
            (csv, rejected)
        }
        None => (None, Vec::new()),
    };
    let (channels, lists, templates, fields, placeholders) = state
        .db
        .run(move |conn| {
            let channels: Vec<Channel> = channels::list(conn)?;
            let lists = lists::all(conn)?;
            let sendable = templates::sendable_list(conn, &TemplateFilter::default())?;
            let mut fields: Vec<String> = FIELDS.iter().map(|f| (*f).to_owned()).collect();
            for k in contacts::attribute_keys(conn)? {
                fields.push(format!("attributes.{k}"));
            }
            let placeholders: Vec<String> = sendable
                .iter()
                .find(|(_, t)| t.public_id == chosen_template)
                .map(|(_, t)| {
                    let mut names: Vec<String> =
                        t.placeholders().into_iter().map(|p| p.name).collect();
                    names.dedup();
                    names
                })
                .unwrap_or_default();
            Ok::<_, AppError>((channels, lists, sendable, fields, placeholders))
        })
        .await?;
    // One row per placeholder of the chosen template, keeping what was typed.
    d.variables = variables::for_placeholders(&placeholders, &d.variables);
    let mut conditions = d.conditions.clone();
    conditions.extend(std::iter::repeat_n(CondRow::default(), BLANK_CONDITIONS));
    let mut groups = d.groups.clone();
    for g in &mut groups {
        g.conditions.push(CondRow::default());
    }
    if groups.len() < MAX_FORM_GROUPS {
        groups.push(GroupRow {
            combine: "any".into(),
            conditions: vec![CondRow::default(); BLANK_CONDITIONS],
        });
    }
    let columns = csv.as_ref().map(|c| c.columns.clone()).unwrap_or_default();
    let page = FormPage {
        chrome,
        id,
        var_keys: variables::key_choices(&columns, &fields, &d.variables),
        conditions,
        groups,
        errors,
        channels: channels
            .iter()
            .map(|c| Choice {
                value: c.public_id.clone(),
                label: format!(
                    "{} ({}){}",
                    c.name,
                    c.kind.label(),
                    if c.is_enabled() { "" } else { " · disabled" }
                ),
            })
            .collect(),
        lists: lists
            .into_iter()
            .map(|l| Choice {
                value: l.public_id,
                label: l.name,
            })
            .collect(),
        templates: templates
            .iter()
            .map(|(ch, t)| Choice {
                value: t.public_id.clone(),
                label: format!(
                    "{} ({}) on {}",
                    t.template.name().as_str(),
                    t.template.language().as_str(),
                    ch.name
                ),
            })
            .collect(),
        fields,
        ops: Op::ALL.iter().map(|o| (o.as_str(), o.label())).collect(),
        zones: ZONES.to_vec(),
        csv,
        csv_rejected,
        d,
    };
    render_with_status(&page, status)
}

pub async fn new_form(
    _auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let d = Draft {
        combine: "all".into(),
        time_zone: "UTC".into(),
        audience_source: "lists".into(),
        ..Draft::default()
    };
    form_page(
        &state,
        chrome,
        None,
        d,
        FieldProblems::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn edit_form(
    _auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let v = service::get(&state, path.into_inner()).await?;
    if v.state() != BroadcastState::Draft {
        return Err(AppError::Conflict {
            code: "broadcast_not_editable",
            message: "This broadcast was launched: its audience and content are frozen.".into(),
        });
    }
    let id = v.row.public_id.clone();
    form_page(
        &state,
        chrome,
        Some(id),
        Draft::of(&v),
        FieldProblems::new(),
        StatusCode::OK,
    )
    .await
}

/// Where "Save" leads: back to the form (to fill the template's variables) or on to review.
fn next_step(pairs: &[(String, String)]) -> &'static str {
    if pairs.iter().any(|(k, v)| k == "next" && v == "review") {
        "review"
    } else {
        "edit"
    }
}

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = form.into_inner();
    let d = Draft::from_pairs(&pairs);
    let mut problems = FieldProblems::new();
    let input = d.input(&mut problems);
    if !problems.is_empty() {
        return form_page(
            &state,
            chrome,
            None,
            d,
            problems,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match service::create(&state, auth.actor(), input, None).await {
        Ok((v, _)) => {
            session.success(format!("Draft \"{}\" saved.", v.row.name));
            let to = match next_step(&pairs) {
                "review" => format!("{PATH}/{}", v.row.public_id),
                _ => format!("{PATH}/{}/edit", v.row.public_id),
            };
            Ok(redirect_response(&req, &to))
        }
        Err(e) => match e.fields() {
            Some(errors) => {
                let errors = errors.clone();
                form_page(
                    &state,
                    chrome,
                    None,
                    d,
                    errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

pub async fn update(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let pairs = form.into_inner();
    let d = Draft::from_pairs(&pairs);
    let mut problems = FieldProblems::new();
    let input = d.input(&mut problems);
    if !problems.is_empty() {
        return form_page(
            &state,
            chrome,
            Some(id),
            d,
            problems,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match service::update(&state, auth.actor(), id.clone(), input).await {
        Ok(v) => {
            session.success(format!("Draft \"{}\" saved.", v.row.name));
            let to = match next_step(&pairs) {
                "review" => format!("{PATH}/{id}"),
                _ => format!("{PATH}/{id}/edit"),
            };
            Ok(redirect_response(&req, &to))
        }
        Err(e) => match e.fields() {
            Some(errors) => {
                let errors = errors.clone();
                form_page(
                    &state,
                    chrome,
                    Some(id),
                    d,
                    errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 17: a CSV upload as the audience

/// How many bad rows the form lists (the import's report has them all).
const CSV_REPORT_ROWS: i64 = 20;

/// `POST /broadcasts/{id}/audience.csv` (multipart: `phone_column`, `default_country`, then
/// `file`): reads the file as the draft's audience, then back to the form with its report.
#[allow(clippy::too_many_arguments)]
pub async fn upload_audience(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    mut multipart: actix_multipart::Multipart,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (fields, file) = crate::web::multipart_fields(&mut multipart, "file", 16 * 1024).await?;
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let country = match get("default_country").map(|c| DefaultCountry::parse(&c)) {
        None => Ok(state.settings.default_country),
        Some(parsed) => parsed,
    };
    let problem = match (&file, &country) {
        (None, _) => Some("Choose a CSV file to upload.".to_owned()),
        (_, Err(e)) => Some(e.clone()),
        _ => None,
    };
    let (Some(file), Ok(country), None) = (file, country, problem.clone()) else {
        let mut errors = FieldProblems::new();
        errors.add(service::csv::FIELD, problem.unwrap_or_default());
        return stored_form_with(&state, chrome, id, errors).await;
    };
    let file_name = file
        .content_disposition()
        .and_then(|cd| cd.get_filename().map(str::to_owned))
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "audience.csv".into());
    // A turn first (nothing is written while the upload waits for one).
    let permit = match crate::service::imports::take_turn(&state).await {
        Ok(p) => p,
        Err(e) => {
            crate::web::drain_upload(file, multipart).await;
            return Err(e.into());
        }
    };
    let how = service::csv::CsvUpload {
        file_name,
        phone_column: get("phone_column"),
        country,
        delimiter: None,
        bytes_total: None,
    };
    match service::csv::upload(&state, auth.actor(), id.clone(), how, permit, file).await {
        Ok(done) => {
            let c = &done.csv;
            session.success(format!(
                "CSV read: {} rows, {} kept, {} left out.",
                thousands(c.rows),
                thousands(c.good),
                thousands(c.rows - c.good)
            ));
            Ok(redirect_response(&req, &format!("{PATH}/{id}/edit")))
        }
        Err(e) => match e.fields() {
            Some(errors) => stored_form_with(&state, chrome, id, errors.clone()).await,
            None => Err(e.into()),
        },
    }
}

/// The draft's form as stored, with problems to show (422).
async fn stored_form_with(
    state: &AppState,
    chrome: Chrome,
    id: String,
    errors: FieldProblems,
) -> Result<HttpResponse, AppError> {
    let v = service::get(state, id.clone()).await?;
    form_page(
        state,
        chrome,
        Some(id),
        Draft::of(&v),
        errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Review and the live page

struct Exclusions {
    label: &'static str,
    count: String,
}

#[derive(Template)]
#[template(path = "broadcasts/show.html")]
struct ShowPage {
    chrome: Chrome,
    v: BroadcastView,
    p: ProgressView,
    /// Drafts: the reach estimate now.
    estimate: Option<Estimate>,
    reach: String,
    matched: String,
    exclusions: Vec<Exclusions>,
    preview: Option<Preview>,
    message_text: String,
    segments: Option<String>,
    duration: Option<String>,
    lists: Vec<String>,
    filter: Vec<String>,
    recipients: Vec<RecipientRowView>,
    recipients_next: Option<i64>,
    /// Issue 18: the results (funnel, failures, send again), once launched.
    results: Option<ResultsView>,
    /// The recipient table's filter, as given, and its query string (for paging and export).
    rf: RecipientFilterForm,
    rf_query: String,
    schedule: String,
    can_manage: bool,
    can_review: bool,
    approval_on: bool,
    errors: FieldProblems,
    test_phones: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    preview: i64,
    #[serde(default)]
    after: Option<i64>,
    /// Issue 18: the recipient table's filter.
    #[serde(flatten)]
    filter: RecipientFilterForm,
}

fn describe_filter(audience: &Audience) -> Vec<String> {
    let Some(g) = &audience.filter else {
        return Vec::new();
    };
    let joiner = match g.combine {
        Combine::All => "and",
        Combine::Any => "or",
    };
    g.conditions
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let words = describe_node(n);
            if i == 0 {
                words
            } else {
                format!("{joiner} {words}")
            }
        })
        .collect()
}

/// "city is Lyon", or a group in brackets: "(tier is gold or tier is silver)".
fn describe_node(node: &Node) -> String {
    match node {
        Node::Condition(c) => format!(
            "{} {} {}",
            c.field,
            c.op.label(),
            c.value.clone().unwrap_or_default()
        )
        .trim_end()
        .to_owned(),
        Node::Group(g) => {
            let joiner = match g.combine {
                Combine::All => " and ",
                Combine::Any => " or ",
            };
            let inner: Vec<String> = g.conditions.iter().map(describe_node).collect();
            format!("({})", inner.join(joiner))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn show_page(
    state: &AppState,
    role: Role,
    chrome: Chrome,
    id: String,
    query: ShowQuery,
    errors: FieldProblems,
    test_phones: String,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let v = service::get(state, id.clone()).await?;
    let is_draft = matches!(
        v.state(),
        BroadcastState::Draft | BroadcastState::PendingApproval
    );
    let estimate = if is_draft {
        Some(service::estimate(state, id.clone()).await?)
    } else {
        None
    };
    let preview = if is_draft {
        service::preview(state, id.clone(), query.preview.max(0)).await?
    } else {
        None
    };
    // Issue 18: the results and the filtered recipient table.
    let (filter, filter_problem) = query.filter.parse();
    let (recipients, more) = if is_draft {
        (Vec::new(), false)
    } else {
        outcomes::recipients(state, v.row.id, filter, query.after, PAGE_SIZE).await?
    };
    let recipients_next = more.then(|| recipients.last().map(|r| r.row.id)).flatten();
    let recipients: Vec<RecipientRowView> =
        recipients.into_iter().map(RecipientRowView::from).collect();
    let results = if is_draft && v.row.follow_up_of.is_none() {
        None
    } else {
        let r = outcomes::results(state, &v).await?;
        Some(ResultsView::of(
            &v,
            r,
            role.can(Permission::ManageBroadcasts),
        ))
    };
    let mut errors = errors;
    if let Some(problem) = filter_problem {
        errors.add("status", problem);
    }
    let message_text = match &preview {
        Some(p) => p.text.clone().unwrap_or_default(),
        None => match &v.message {
            BroadcastMessage::Text { text } => text.clone(),
            BroadcastMessage::Template { .. } => String::new(),
        },
    };
    let reach_n = estimate
        .as_ref()
        .map(Estimate::reach)
        .unwrap_or(v.counts.recipients - v.counts.skipped);
    let segments = (v.channel.kind == ChannelKind::Sms && !message_text.is_empty()).then(|| {
        let info = sms::analyse(&message_text);
        format!(
            "{} segment{} per message ({}), about {} in total",
            info.segments,
            if info.segments == 1 { "" } else { "s" },
            info.encoding.label(),
            thousands(info.segments as i64 * reach_n)
        )
    });
    let rate = i64::from(v.channel.rate_limit_per_second.max(1));
    let at_rate = format!(
        "{} at {} messages a second",
        duration_words(reach_n / rate + 1),
        rate
    );
    // A WhatsApp template broadcast also waits under the business's messaging limit.
    let limit = v
        .template_label
        .as_ref()
        .and_then(|_| service::feed::messaging_limit(&v.channel));
    let duration = Some(match limit {
        Some(limit) if reach_n > limit => format!(
            "{at_rate}; WhatsApp's messaging limit ({} customers per 24 hours) spreads it over about {} days",
            thousands(limit),
            (reach_n + limit - 1) / limit
        ),
        _ => at_rate,
    });
    let names = {
        let wanted: Vec<String> = v.audience.lists.clone();
        state
            .db
            .run(move |conn| {
                let mut out = Vec::new();
                for w in wanted {
                    if let Some(l) = lists::find_by_public_id(conn, &w)? {
                        out.push(l.name);
                    }
                }
                Ok::<_, AppError>(out)
            })
            .await?
    };
    let approval_on = state
        .db
        .run(|conn| Ok::<_, AppError>(service::read_settings(conn)?.launch_approval))
        .await?;
    let exclusions = estimate
        .as_ref()
        .map(|e| {
            e.excluded
                .iter()
                .map(|(x, n)| Exclusions {
                    label: x.label(),
                    count: thousands(*n),
                })
                .collect()
        })
        .unwrap_or_default();
    let timing = v.row.timing();
    let mut schedule = match v.row.send_at {
        None => "As soon as it is launched".to_owned(),
        Some(_) if timing.local_time.is_some() && v.row.launched_at.is_none() => format!(
            "{} in each recipient's local time",
            timing
                .local_time
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default()
        ),
        Some(at) if timing.local_time.is_some() => format!(
            "{} in each recipient's local time ({} zones; the first at {} UTC)",
            timing
                .local_time
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
            timing.zones.len(),
            at.format("%Y-%m-%d %H:%M")
        ),
        Some(at) => {
            let zone: chrono_tz::Tz = v.row.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
            format!(
                "{} ({}), {} UTC",
                at.and_utc().with_timezone(&zone).format("%Y-%m-%d %H:%M"),
                v.row.time_zone,
                at.format("%Y-%m-%d %H:%M")
            )
        }
    };
    if let Some(q) = timing.quiet_hours {
        schedule.push_str(&format!(
            "; quiet hours {} in the recipient's local time",
            q.label()
        ));
    }
    let page = ShowPage {
        chrome,
        p: ProgressView::of(&v),
        reach: thousands(reach_n),
        matched: thousands(estimate.as_ref().map(|e| e.matched).unwrap_or_default()),
        filter: describe_filter(&v.audience),
        lists: names,
        estimate,
        exclusions,
        preview,
        message_text,
        segments,
        duration,
        recipients,
        recipients_next,
        results,
        rf_query: query.filter.query_string(),
        rf: query.filter,
        schedule,
        can_manage: role.can(Permission::ManageBroadcasts),
        can_review: role.can(Permission::ApproveBroadcasts),
        approval_on,
        errors,
        test_phones,
        v,
    };
    render_with_status(&page, status)
}

pub async fn show(
    auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, AppError> {
    show_page(
        &state,
        auth.principal.role(),
        chrome,
        path.into_inner(),
        query.into_inner(),
        FieldProblems::new(),
        String::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn launch(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let done = service::launch(&state, auth.actor(), id.clone()).await;
    Ok(back_to_page(&req, &session, &id, done, |(launched, v)| {
        let recipients = thousands(v.counts.recipients - v.counts.skipped);
        match launched {
            Launched::AwaitingApproval => {
                "Sent for approval: an admin or support lead launches it.".to_owned()
            }
            Launched::Scheduled => {
                format!("Launched: {recipients} recipients, starting at its scheduled time.")
            }
            Launched::Running => format!("Launched: sending to {recipients} recipients."),
        }
    }))
}

/// Says how an action on a broadcast went (a flash message) and goes back to its page.
fn back_to_page<T>(
    req: &HttpRequest,
    session: &TypedSession,
    id: &str,
    done: Result<T, crate::service::ServiceError>,
    said: impl FnOnce(T) -> String,
) -> HttpResponse {
    match done {
        Ok(value) => session.success(said(value)),
        Err(e) => session.error(e.to_string()),
    }
    redirect_response(req, &format!("{PATH}/{id}"))
}

#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

pub async fn review(
    req: HttpRequest,
    auth: Auth<perm::ApproveBroadcasts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let approve = form.decision == "approve";
    let done = service::review(&state, auth.actor(), id.clone(), approve, form.note).await;
    Ok(back_to_page(&req, &session, &id, done, |_| {
        if approve {
            "Approved and launched.".into()
        } else {
            "Sent back to its author with your note.".into()
        }
    }))
}

pub async fn control(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, action) = path.into_inner();
    let what = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        _ => Control::Cancel,
    };
    let done = service::control(&state, auth.actor(), id.clone(), what).await;
    Ok(back_to_page(&req, &session, &id, done, |_| {
        match what {
            Control::Pause => "Paused: nothing new goes out; messages being sent finish.",
            Control::Resume => "Resumed where it stopped.",
            Control::Cancel => "Cancelled: what was not sent will not be.",
        }
        .into()
    }))
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    phones: String,
}

pub async fn test_send(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<TestForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let phones: Vec<String> = form
        .phones
        .split([',', '\n'])
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let found = service::contacts_by_phone(&state, phones).await?;
    let mut problems: Vec<String> = found.iter().filter_map(|r| r.clone().err()).collect();
    let ids: Vec<String> = found.into_iter().filter_map(Result::ok).collect();
    if ids.is_empty() {
        let mut errors = FieldProblems::new();
        errors.add(
            "phones",
            if problems.is_empty() {
                "Enter the phone numbers of one to ten contacts.".to_owned()
            } else {
                problems.join(" ")
            },
        );
        return show_page(
            &state,
            auth.principal.role(),
            chrome,
            id,
            ShowQuery::default(),
            errors,
            form.phones.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match service::test_send(&state, auth.actor(), id.clone(), ids).await {
        Ok(results) => {
            let sent = results.iter().filter(|r| r.is_ok()).count();
            problems.extend(results.into_iter().filter_map(Result::err));
            if problems.is_empty() {
                session.success(format!(
                    "Test sent to {sent} contact{}.",
                    if sent == 1 { "" } else { "s" }
                ));
            } else {
                session.error(format!(
                    "Test sent to {sent}. Not sent: {}",
                    problems.join(" ")
                ));
            }
        }
        Err(e) => session.error(e.to_string()),
    }
    Ok(redirect_response(&req, &format!("{PATH}/{id}")))
}

/// `GET /broadcasts/{id}/progress`: the progress fragment (for pages without SSE).
pub async fn progress(
    _auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let v = service::get(&state, path.into_inner()).await?;
    render(&ProgressFragment {
        p: ProgressView::of(&v),
    })
}

/// `GET /broadcasts/{id}/events`: the progress fragment as server-sent events, at most twice
/// a second and only when something changed, until the broadcast is final (then the page
/// reloads to show its outcome).
pub async fn events(
    _auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    // Fails now (404) rather than inside the stream.
    service::get(&state, id.clone()).await?;
    let svc = state.services.clone();
    let stream = futures_util::stream::unfold(
        (svc, id, String::new(), 0u32, false),
        |(svc, id, last, ticks, done)| async move {
            if done || ticks > 1200 {
                return None;
            }
            if ticks > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let (chunk, html, finished) = match service::get(&svc, id.clone()).await {
                Ok(v) => {
                    let p = ProgressView::of(&v);
                    let finished = p.state.is_final();
                    let html = ProgressFragment { p }.render().unwrap_or_default();
                    if html == last {
                        (bytes::Bytes::from_static(b": waiting\n\n"), last, finished)
                    } else {
                        (sse_event("progress", &html), html, finished)
                    }
                }
                Err(_) => (bytes::Bytes::from_static(b": gone\n\n"), last, true),
            };
            Some((
                Ok::<_, actix_web::Error>(chunk),
                (svc, id, html, ticks + 1, finished),
            ))
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Template)]
#[template(path = "broadcasts/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    s: BroadcastSettings,
    cap: String,
    errors: FieldProblems,
}

pub async fn settings_form(
    _auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let s = state
        .db
        .run(|conn| Ok::<_, AppError>(service::read_settings(conn)?))
        .await?;
    render(&SettingsPage {
        chrome,
        cap: s.frequency_cap.map(|n| n.to_string()).unwrap_or_default(),
        s,
        errors: FieldProblems::new(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    launch_approval: Option<String>,
    #[serde(default)]
    frequency_cap: String,
    #[serde(default)]
    failure_pause_percent: String,
    #[serde(default)]
    reply_window_hours: String,
}

pub async fn save_settings(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<SettingsForm>,
) -> Result<HttpResponse, AppError> {
    let f = form.into_inner();
    let mut errors = FieldProblems::new();
    let mut number = |raw: &str, field: &str, empty: Option<i64>| -> Option<i64> {
        let raw = raw.trim().replace(',', "");
        if raw.is_empty() {
            return empty;
        }
        match raw.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add(field, format!("\"{raw}\" is not a whole number."));
                empty
            }
        }
    };
    let d = BroadcastSettings::default();
    let wanted = BroadcastSettings {
        launch_approval: f.launch_approval.is_some(),
        frequency_cap: number(&f.frequency_cap, "frequency_cap", None),
        failure_pause_percent: number(
            &f.failure_pause_percent,
            "failure_pause_percent",
            Some(d.failure_pause_percent),
        )
        .unwrap_or(d.failure_pause_percent),
        reply_window_hours: number(
            &f.reply_window_hours,
            "reply_window_hours",
            Some(d.reply_window_hours),
        )
        .unwrap_or(d.reply_window_hours),
    };
    let result = if errors.is_empty() {
        service::save_settings(&state, auth.actor(), wanted.clone()).await
    } else {
        Err(crate::service::ServiceError::invalid_fields(
            "invalid_settings",
            errors,
        ))
    };
    match result {
        Ok(_) => {
            session.success("Broadcast settings saved.");
            Ok(redirect_response(&req, "/broadcasts/settings"))
        }
        Err(e) => match e.fields() {
            Some(errors) => render_with_status(
                &SettingsPage {
                    chrome,
                    cap: f.frequency_cap.clone(),
                    s: wanted,
                    errors: errors.clone(),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 18: broadcast results (funnel, failures, recipient table, CSV, send again)

/// The recipient table's filter as the query string gives it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecipientFilterForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    /// `yes`, `no` or empty.
    #[serde(default)]
    replied: String,
}

impl RecipientFilterForm {
    /// The filter, and what was wrong with it (an unknown status is left out, and said).
    fn parse(&self) -> (RecipientFilter, Option<String>) {
        let status = self.status.trim();
        let mut problem = None;
        let status = if status.is_empty() {
            None
        } else if status == "pending" || crate::service::history::STATUSES.contains(&status) {
            // A recipient's status: its message's (any message status), else its own.
            Some(status.to_owned())
        } else {
            problem = Some(format!(
                "\"{}\" is not a status; showing every status.",
                status.chars().take(40).collect::<String>()
            ));
            None
        };
        let reason = self.reason.trim();
        let reason = (!reason.is_empty()).then(|| reason.chars().take(100).collect());
        let replied = match self.replied.trim() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        };
        (
            RecipientFilter {
                status,
                reason,
                replied,
            },
            problem,
        )
    }

    /// `status=...&reason=...&replied=...` (the parts given), for links that keep the filter.
    fn query_string(&self) -> String {
        [
            ("status", &self.status),
            ("reason", &self.reason),
            ("replied", &self.replied),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }

    fn is_empty(&self) -> bool {
        self.query_string().is_empty()
    }
}

/// A row of the recipient table.
struct RecipientRowView {
    id: i64,
    contact: Option<contacts::Contact>,
    status: String,
    reason: String,
    message: Option<String>,
    status_at: String,
    replied_at: String,
}

impl From<ResultView> for RecipientRowView {
    fn from(r: ResultView) -> Self {
        let reason = match (&r.row.reason, &r.row.error_code, &r.row.error_message) {
            (Some(reason), _, _) => reason.clone(),
            (None, Some(code), Some(text)) => format!("{code}: {text}"),
            (None, Some(code), None) => code.clone(),
            (None, None, Some(text)) => text.clone(),
            (None, None, None) => String::new(),
        };
        RecipientRowView {
            id: r.row.id,
            contact: r.contact,
            status: r.row.status,
            reason,
            message: r.row.message_public_id,
            status_at: r.row.status_at.as_ref().map(datetime).unwrap_or_default(),
            replied_at: r.row.replied_at.as_ref().map(datetime).unwrap_or_default(),
        }
    }
}

/// One bar of the funnel chart, placed.
struct SvgBar {
    class: &'static str,
    label: &'static str,
    count: String,
    /// What the bar's link says (its accessible name).
    title: String,
    href: String,
    y: i64,
    width: i64,
    text_y: i64,
    count_x: i64,
}

/// A group of failures as the page lists it.
struct FailureView {
    what: String,
    code: String,
    example: String,
    count: String,
    href: String,
}

/// The results part of a broadcast's page.
struct ResultsView {
    bars: Vec<SvgBar>,
    svg_height: i64,
    summary: String,
    failures: Vec<FailureView>,
    /// (choice, its label, how many, the confirmation question), when offered.
    send_again: Vec<(&'static str, &'static str, String, i64, String)>,
    follow_ups: Vec<(String, String, String)>,
    follow_up_of: Option<(String, String)>,
}

/// The chart's geometry: a label column, then bars up to `BAR_MAX` wide.
const LABEL_W: i64 = 110;
const BAR_MAX: i64 = 380;
const ROW_H: i64 = 34;

impl ResultsView {
    fn of(v: &BroadcastView, r: Results, can_manage: bool) -> Self {
        let id = &v.row.public_id;
        let history = |status: Option<&str>| match status {
            Some(st) => format!("/history?broadcast={}&status={st}", urlencode(id)),
            None => format!("/history?broadcast={}", urlencode(id)),
        };
        let max = r
            .funnel
            .steps
            .iter()
            .chain(&r.funnel.beside)
            .map(|b| b.count)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut bars = Vec::new();
        let mut y = 8;
        let steps = r.funnel.steps.iter().map(|b| (b, "funnel-step"));
        let beside = r.funnel.beside.iter().map(|b| (b, "funnel-beside"));
        let mut last_group = "funnel-step";
        for (b, group) in steps.chain(beside) {
            if group != last_group {
                // A gap between the funnel and what fell beside it.
                y += ROW_H / 2;
                last_group = group;
            }
            let (href, title) = match (b.key, b.stopped) {
                ("targeted", _) => (
                    history(None),
                    format!(
                        "Targeted: {} recipients; show the broadcast's messages in the history",
                        thousands(b.count)
                    ),
                ),
                ("replied", _) => (
                    format!("{PATH}/{id}?replied=yes#recipients"),
                    format!(
                        "Replied: {}; show the recipients who replied",
                        thousands(b.count)
                    ),
                ),
                ("opted_out", _) => (
                    format!("{PATH}/{id}?status=skipped&reason=opted_out#recipients"),
                    format!("Opted out: {}; show those recipients", thousands(b.count)),
                ),
                (_, Some((status, n))) if b.key != status || n != b.count => (
                    history(Some(status)),
                    format!(
                        "{}: {}; show the {} whose message stopped at {status} in the history",
                        b.label,
                        thousands(b.count),
                        thousands(n)
                    ),
                ),
                (_, stopped) => (
                    history(stopped.map(|(s, _)| s)),
                    format!(
                        "{}: {}; show them in the history",
                        b.label,
                        thousands(b.count)
                    ),
                ),
            };
            let width = if b.count == 0 {
                0
            } else {
                (b.count * BAR_MAX / max).max(2)
            };
            bars.push(SvgBar {
                class: match b.key {
                    "targeted" => "funnel-bar funnel-targeted",
                    "sent" => "funnel-bar funnel-sent",
                    "delivered" => "funnel-bar funnel-delivered",
                    "read" => "funnel-bar funnel-read",
                    "replied" => "funnel-bar funnel-replied",
                    "opted_out" => "funnel-bar funnel-opted-out",
                    _ => "funnel-bar funnel-failed",
                },
                label: b.label,
                count: thousands(b.count),
                title,
                href,
                y,
                width,
                text_y: y + 17,
                count_x: LABEL_W + width + 8,
            });
            y += ROW_H;
        }
        let summary = r
            .funnel
            .steps
            .iter()
            .chain(&r.funnel.beside)
            .map(|b| format!("{} {}", b.label.to_lowercase(), thousands(b.count)))
            .collect::<Vec<_>>()
            .join(", ");
        let failures = r
            .failures
            .iter()
            .map(|g| {
                let code = g.code.clone().unwrap_or_default();
                let (what, href) = match g.source {
                    FailureSource::Message => {
                        let mut href = history(Some(&g.status));
                        if !code.is_empty() {
                            href.push_str(&format!("&error={}", urlencode(&code)));
                        }
                        (format!("Messages {}", g.status), href)
                    }
                    FailureSource::Recipient => (
                        format!("Recipients {} (never sent)", g.status),
                        format!(
                            "{PATH}/{id}?status={}&reason={}#recipients",
                            g.status,
                            urlencode(&code)
                        ),
                    ),
                };
                let example = match g.source {
                    FailureSource::Recipient => crate::domain::broadcast::Exclusion::ALL
                        .into_iter()
                        .find(|x| x.as_str() == code)
                        .map(|x| x.label().to_owned())
                        .unwrap_or_default(),
                    FailureSource::Message => g.message.clone().unwrap_or_default(),
                };
                FailureView {
                    what,
                    code,
                    example,
                    count: thousands(g.count),
                    href,
                }
            })
            .collect();
        let offered = can_manage && outcomes::may_send_again(v.state(), v.row.started_at.is_some());
        let send_again = if offered {
            r.send_again
                .iter()
                .map(|(to, n)| {
                    let question = format!(
                        "Create a draft of \"{}\" to the {} recipient{} who {}? Its audience is fixed now; you review and launch it.",
                        to.follow_up_name(&v.row.name),
                        thousands(*n),
                        if *n == 1 { "" } else { "s" },
                        to.who()
                    );
                    (to.as_str(), to.label(), thousands(*n), *n, question)
                })
                .collect()
        } else {
            Vec::new()
        };
        ResultsView {
            svg_height: y + 8,
            bars,
            summary,
            failures,
            send_again,
            follow_ups: r.follow_ups,
            follow_up_of: r.follow_up_of,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SendAgainForm {
    #[serde(default)]
    to: String,
}

/// `POST /broadcasts/{id}/send-again` (`to`): creates the follow-up draft and opens it.
pub async fn send_again(
    req: HttpRequest,
    auth: Auth<perm::ManageBroadcasts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<SendAgainForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let to = match form.to.parse::<SendAgainTo>() {
        Ok(to) => to,
        Err(e) => {
            session.error(e);
            return Ok(redirect_response(&req, &format!("{PATH}/{id}")));
        }
    };
    match outcomes::send_again(&state, auth.actor(), id.clone(), to, None).await {
        Ok(draft) => {
            let n = draft.audience.follow_up.as_ref().map_or(0, |f| f.contacts);
            session.success(format!(
                "Draft created for the {} recipient{} who {}: review it, then launch it.",
                thousands(n),
                if n == 1 { "" } else { "s" },
                to.who()
            ));
            Ok(redirect_response(
                &req,
                &format!("{PATH}/{}", draft.row.public_id),
            ))
        }
        Err(e) => {
            session.error(e.to_string());
            Ok(redirect_response(&req, &format!("{PATH}/{id}")))
        }
    }
}

/// `GET /broadcasts/{id}/recipients.csv?status=&reason=&replied=`: the filtered recipient
/// table, streamed in keyset batches.
pub async fn recipients_csv(
    _auth: Auth<perm::ViewBroadcasts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<RecipientFilterForm>,
) -> Result<HttpResponse, AppError> {
    let v = service::get(&state, path.into_inner()).await?;
    let (filter, problem) = query.parse();
    if let Some(problem) = problem {
        return Err(AppError::invalid("invalid_filter", problem));
    }
    let stem: String = v
        .row
        .name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let id = v.row.id;
    Ok(csv_download(
        state.db.clone(),
        format!("{stem}-recipients.csv"),
        move |conn, sink| {
            let header = [
                "phone",
                "name",
                "status",
                "status_at",
                "reason",
                "error_code",
                "replied_at",
                "message_id",
            ];
            if !sink(csv_rows([header])) {
                return Ok(());
            }
            outcomes::each_recipient_batch(conn, id, &filter, |batch| {
                let rows = batch.into_iter().map(|r| {
                    let at = |t: Option<NaiveDateTime>| {
                        t.map(|t| t.and_utc().to_rfc3339()).unwrap_or_default()
                    };
                    let (phone, name) = r
                        .contact
                        .map(|c| (c.phone.to_string(), c.name))
                        .unwrap_or_default();
                    [
                        phone,
                        name,
                        r.row.status,
                        at(r.row.status_at),
                        r.row.reason.unwrap_or_default(),
                        r.row.error_code.unwrap_or_default(),
                        at(r.row.replied_at),
                        r.row.message_public_id.unwrap_or_default(),
                    ]
                });
                sink(csv_rows(rows))
            })
            .map_err(|e| download_error(&e))
        },
    ))
}
