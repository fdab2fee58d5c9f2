//! Issue 20: Automations › Reminders (admins). The list of reminder rules (what each sends,
//! when in words, how many reminders are due next) with the form for a new one; each rule's
//! page with its settings, the same form to edit it, enable/disable, delete, what is due next
//! and what happened lately. The same use cases as `/api/v1/reminders`
//! (`service::automations::reminders`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono_tz::Tz;
use serde::Deserialize;

use super::{Switchable, form_refusal, template_choice, template_value};
use crate::domain::audit::Actor;
use crate::domain::fields::FieldProblems;
use crate::domain::template::VariableMapping;
use crate::error::AppError;
use crate::service::ServiceResult;
use crate::service::automations::reminders::{
    self, DEFAULT_GRACE_MINUTES, Listed, RuleContent, RuleInput, RuleView, Timing,
};
use crate::service::automations::{self as automation, Choices};
use crate::service::paging::PageRequest;
use crate::startup::AppState;
use crate::storage::reminders::ReminderLine;
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{paths, render_with_status};

/// Reminders listed per part of a rule's page (due next, recent activity).
const ACTIVITY_PAGE: i64 = 50;

const MINUTES_PER: [(&str, i32); 3] = [("days", 24 * 60), ("hours", 60), ("minutes", 1)];

/// The rule form as posted (and as shown again with what was typed).
#[derive(Debug, Clone, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    channel: String,
    /// `name|language`, or empty for free text.
    #[serde(default)]
    template: String,
    #[serde(default)]
    text: String,
    /// The template's variables as JSON (blank: none).
    #[serde(default)]
    variables: String,
    #[serde(default)]
    attribute: String,
    /// `offset` (before or after the date) or `at_time` (a time of day).
    #[serde(default)]
    timing: String,
    #[serde(default)]
    amount: String,
    /// `days`, `hours` or `minutes`.
    #[serde(default)]
    unit: String,
    /// `before` or `after`.
    #[serde(default)]
    direction: String,
    #[serde(default)]
    at_time: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    day_direction: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    grace_minutes: String,
}

impl RuleForm {
    /// A new rule's form: a day before `appointment_at`.
    fn new_rule() -> Self {
        RuleForm {
            name: String::new(),
            channel: String::new(),
            template: String::new(),
            text: String::new(),
            variables: String::new(),
            attribute: "appointment_at".into(),
            timing: "offset".into(),
            amount: "1".into(),
            unit: "days".into(),
            direction: "before".into(),
            at_time: "09:00".into(),
            days: "1".into(),
            day_direction: "before".into(),
            time_zone: "UTC".into(),
            grace_minutes: DEFAULT_GRACE_MINUTES.to_string(),
        }
    }

    /// The form that edits a rule, filled with its settings.
    fn of(v: &RuleView) -> Self {
        let mut form = RuleForm::new_rule();
        form.name = v.name.clone();
        form.channel = v.channel_id.clone();
        form.text = v.text.clone().unwrap_or_default();
        if let Some(t) = &v.template {
            form.template = template_value(&t.name, &t.language);
            if !t.variables.is_empty() {
                form.variables = serde_json::to_string_pretty(&t.variables).unwrap_or_default();
            }
        }
        form.attribute = v.attribute.clone();
        match &v.timing {
            Timing::Offset { offset_minutes } => {
                let (unit, per) = MINUTES_PER
                    .into_iter()
                    .find(|(_, per)| offset_minutes % per == 0)
                    .unwrap_or(("minutes", 1));
                form.timing = "offset".into();
                form.amount = (offset_minutes.abs() / per).to_string();
                form.unit = unit.into();
                form.direction = direction(*offset_minutes).into();
            }
            Timing::AtTime {
                at_time,
                day_offset,
            } => {
                form.timing = "at_time".into();
                form.at_time = at_time.clone();
                form.days = day_offset.abs().to_string();
                form.day_direction = direction(*day_offset).into();
            }
        }
        form.time_zone = v.time_zone.clone();
        form.grace_minutes = v.grace_minutes.to_string();
        form
    }

    /// The rule the form asks for, or what is wrong with its shape (the service checks the rest).
    fn input(&self, enabled: bool) -> Result<RuleInput, FieldProblems> {
        let mut problems = FieldProblems::new();
        let whole = |raw: &str| raw.trim().parse::<i32>().ok().filter(|n| *n >= 0);
        let sign = |dir: &str| if dir == "after" { 1 } else { -1 };
        let timing = if self.timing == "at_time" {
            let days = problems.check(
                "day_offset",
                whole(&self.days).ok_or_else(|| "Give a whole number of days, e.g. 1.".to_owned()),
            );
            Timing::AtTime {
                at_time: self.at_time.clone(),
                day_offset: days.unwrap_or(0) * sign(&self.day_direction),
            }
        } else {
            let per = MINUTES_PER
                .into_iter()
                .find(|(unit, _)| *unit == self.unit)
                .map_or(1, |(_, per)| per);
            let minutes = problems.check(
                "offset_minutes",
                whole(&self.amount)
                    .and_then(|n| n.checked_mul(per))
                    .ok_or_else(|| "Give a whole number, e.g. 1 (day) or 2 (hours).".to_owned()),
            );
            Timing::Offset {
                offset_minutes: minutes.unwrap_or(0) * sign(&self.direction),
            }
        };
        let grace_minutes = problems
            .check(
                "grace_minutes",
                whole(&self.grace_minutes)
                    .ok_or_else(|| "Give the grace period in whole minutes, e.g. 60.".to_owned()),
            )
            .unwrap_or(DEFAULT_GRACE_MINUTES);
        let variables = if self.variables.trim().is_empty() {
            VariableMapping::new()
        } else {
            problems
                .check(
                    "variables",
                    serde_json::from_str::<VariableMapping>(&self.variables).map_err(|e| {
                        format!("The variables are not valid JSON of the expected shape: {e}.")
                    }),
                )
                .unwrap_or_default()
        };
        let content = match template_choice(&self.template) {
            Some((name, language)) => RuleContent::Template {
                name,
                language,
                variables,
            },
            None => RuleContent::Text(self.text.clone()),
        };
        problems.into_result(RuleInput {
            name: self.name.clone(),
            channel: self.channel.clone(),
            content,
            attribute: self.attribute.clone(),
            timing,
            time_zone: self.time_zone.clone(),
            grace_minutes,
            enabled,
        })
    }
}

fn direction(n: i32) -> &'static str {
    if n < 0 { "before" } else { "after" }
}

/// When a rule sends, in words: "1 day before appointment_at", "at 09:00 the day before
/// appointment_at".
pub fn timing_words(timing: &Timing, attribute: &str) -> String {
    match timing {
        Timing::Offset { offset_minutes: 0 } => format!("at {attribute}"),
        Timing::Offset { offset_minutes } => format!(
            "{} {} {attribute}",
            format::minutes_words(offset_minutes.unsigned_abs()),
            direction(*offset_minutes)
        ),
        Timing::AtTime {
            at_time,
            day_offset,
        } => match day_offset {
            0 => format!("at {at_time} on the day of {attribute}"),
            -1 => format!("at {at_time} the day before {attribute}"),
            1 => format!("at {at_time} the day after {attribute}"),
            d => format!(
                "at {at_time}, {} days {} {attribute}",
                d.unsigned_abs(),
                direction(*d)
            ),
        },
    }
}

/// What a rule sends, in words: the template, or the text.
fn content_words(v: &RuleView) -> String {
    match (&v.template, &v.text) {
        (Some(t), _) => format!("Template {} ({})", t.name, t.language),
        (None, text) => format!("Text: {}", text.as_deref().unwrap_or_default()),
    }
}

pub struct ListRow {
    pub id: String,
    pub name: String,
    pub channel: String,
    pub content: String,
    pub timing: String,
    pub enabled: bool,
    pub due_next: i64,
}

impl ListRow {
    fn of(l: Listed) -> Self {
        ListRow {
            content: content_words(&l.rule),
            timing: timing_words(&l.rule.timing, &l.rule.attribute),
            id: l.rule.id,
            name: l.rule.name,
            channel: l.rule.channel,
            enabled: l.rule.enabled,
            due_next: l.due_next,
        }
    }
}

#[derive(Template)]
#[template(path = "automations/reminders_index.html")]
struct IndexPage {
    chrome: Chrome,
    rules: Vec<ListRow>,
    /// Set when this is not the first page.
    paged: bool,
    next_cursor: Option<String>,
    choices: Choices,
    form: RuleForm,
    errors: FieldProblems,
    problem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
}

async fn index_page(
    state: &AppState,
    chrome: Chrome,
    cursor: Option<String>,
    form: RuleForm,
    errors: FieldProblems,
    problem: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let request = PageRequest::parse(None, cursor.as_deref())?;
    let page = reminders::listing(state, request).await?;
    let choices = automation::choices(state).await?;
    render_with_status(
        &IndexPage {
            chrome,
            rules: page.data.into_iter().map(ListRow::of).collect(),
            paged: request.after.is_some(),
            next_cursor: page.next_cursor,
            choices,
            form,
            errors,
            problem,
        },
        status,
    )
}

/// `GET /automations/reminders`: the rules, a page at a time, and the form for a new one.
pub async fn index(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    index_page(
        &state,
        chrome,
        query.into_inner().cursor,
        RuleForm::new_rule(),
        FieldProblems::default(),
        None,
        StatusCode::OK,
    )
    .await
}

/// `POST /automations/reminders`: creates a rule, then its page; a refused form comes back
/// with what was typed and the problem beside each field (422).
pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<RuleForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let refused = |errors: FieldProblems, problem: Option<String>, form: RuleForm| {
        let state = state.clone();
        async move {
            index_page(
                &state,
                chrome,
                None,
                form,
                errors,
                problem,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let input = match form.input(true) {
        Ok(i) => i,
        Err(errors) => return refused(errors, None, form).await,
    };
    match reminders::create(&state, auth.actor(), input, None).await {
        Ok(r) => {
            session.success(format!(
                "Reminder rule \"{}\" created: it sends {}.",
                r.name,
                timing_words(&r.timing, &r.attribute)
            ));
            Ok(redirect_response(&req, &RulePages::page(&r.id)))
        }
        Err(e) => {
            let (errors, message) = form_refusal(e)?;
            refused(errors, Some(message), form).await
        }
    }
}

/// A reminder as the rule's page lists it.
pub struct ReminderRow {
    pub contact_id: String,
    pub contact: String,
    pub value: String,
    /// Due at (due next), or when it was settled (recent activity), in the rule's zone.
    pub when: String,
    pub state: String,
    pub reason: String,
    pub message: Option<String>,
}

impl ReminderRow {
    fn of((row, contact_id, phone, message): ReminderLine, zone: Tz, due: bool) -> Self {
        let at = if due {
            row.due_at
        } else {
            Some(row.updated_at)
        };
        ReminderRow {
            contact_id,
            contact: phone,
            value: row.attribute_value,
            when: at
                .map(|at| format::datetime_in(&at, zone))
                .unwrap_or_default(),
            state: row.state,
            reason: row.reason.unwrap_or_default(),
            message,
        }
    }
}

#[derive(Template)]
#[template(path = "automations/reminders_show.html")]
struct ShowPage {
    chrome: Chrome,
    r: RuleView,
    /// Where the edit form posts.
    action: String,
    timing: String,
    content: String,
    variables_json: Option<String>,
    upcoming: Vec<ReminderRow>,
    recent: Vec<ReminderRow>,
    /// More than a page of either.
    more_upcoming: bool,
    more_recent: bool,
    choices: Choices,
    form: RuleForm,
    errors: FieldProblems,
    problem: Option<String>,
}

async fn show_page(
    state: &AppState,
    chrome: Chrome,
    id: String,
    edit: Option<(RuleForm, FieldProblems, Option<String>)>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let r = reminders::get(state, id).await?;
    let activity = reminders::activity(state, r.row_id, 0, ACTIVITY_PAGE + 1).await?;
    let choices = automation::choices(state).await?;
    let zone: Tz = r.time_zone.parse().unwrap_or(Tz::UTC);
    let rows = |lines: Vec<ReminderLine>, due: bool| -> (Vec<ReminderRow>, bool) {
        let more = lines.len() as i64 > ACTIVITY_PAGE;
        let rows = lines
            .into_iter()
            .take(ACTIVITY_PAGE as usize)
            .map(|l| ReminderRow::of(l, zone, due))
            .collect();
        (rows, more)
    };
    let (upcoming, more_upcoming) = rows(activity.upcoming, true);
    let (recent, more_recent) = rows(activity.recent, false);
    let (form, errors, problem) =
        edit.unwrap_or_else(|| (RuleForm::of(&r), FieldProblems::default(), None));
    render_with_status(
        &ShowPage {
            timing: timing_words(&r.timing, &r.attribute),
            content: content_words(&r),
            variables_json: r
                .template
                .as_ref()
                .filter(|t| !t.variables.is_empty())
                .and_then(|t| serde_json::to_string_pretty(&t.variables).ok()),
            chrome,
            action: format!("{}/{}", paths::REMINDERS, r.id),
            r,
            upcoming,
            recent,
            more_upcoming,
            more_recent,
            choices,
            form,
            errors,
            problem,
        },
        status,
    )
}

/// `GET /automations/reminders/{id}`.
pub async fn show(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    show_page(&state, chrome, path.into_inner(), None, StatusCode::OK).await
}

/// `POST /automations/reminders/{id}`: saves the edit form (the rule stays enabled or
/// disabled as it was); a refused form comes back on the rule's page (422).
pub async fn update(
    req: HttpRequest,
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<RuleForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let (errors, problem) = match form.input(true) {
        Ok(input) => {
            let saved = reminders::update(&state, auth.actor(), id.clone(), move |current| {
                Ok(RuleInput {
                    enabled: current.enabled,
                    ..input
                })
            })
            .await;
            match saved {
                Ok(r) => {
                    session.success(format!("Reminder rule \"{}\" saved.", r.name));
                    return Ok(redirect_response(&req, &RulePages::page(&id)));
                }
                Err(e) => {
                    let (errors, message) = form_refusal(e)?;
                    (errors, Some(message))
                }
            }
        }
        Err(errors) => (errors, None),
    };
    show_page(
        &state,
        chrome,
        id,
        Some((form, errors, problem)),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

/// A rule's enable/disable and delete buttons (`automations::set_enabled`, `delete`).
pub struct RulePages;

impl Switchable for RulePages {
    const NOUN: &'static str = "Reminder rule";
    const LIST: &'static str = paths::REMINDERS;
    const WHILE_DISABLED: &'static str = "its reminders are not sent until it is enabled again.";

    fn page(id: &str) -> String {
        format!("{}/{id}", paths::REMINDERS)
    }

    async fn switch(
        state: &AppState,
        actor: Actor,
        id: String,
        enabled: bool,
    ) -> ServiceResult<String> {
        let r = reminders::update(state, actor, id, move |mut i| {
            i.enabled = enabled;
            Ok(i)
        })
        .await?;
        Ok(r.name)
    }

    async fn delete(state: &AppState, actor: Actor, id: String) -> ServiceResult<()> {
        reminders::delete(state, actor, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_read_as_words() {
        let offset = |m| Timing::Offset { offset_minutes: m };
        let at = |d| Timing::AtTime {
            at_time: "09:00".into(),
            day_offset: d,
        };
        let a = "appointment_at";
        assert_eq!(
            timing_words(&offset(-1440), a),
            "1 day before appointment_at"
        );
        assert_eq!(
            timing_words(&offset(120), a),
            "2 hours after appointment_at"
        );
        assert_eq!(timing_words(&offset(0), a), "at appointment_at");
        assert_eq!(
            timing_words(&at(-1), a),
            "at 09:00 the day before appointment_at"
        );
        assert_eq!(
            timing_words(&at(0), a),
            "at 09:00 on the day of appointment_at"
        );
        assert_eq!(
            timing_words(&at(-3), a),
            "at 09:00, 3 days before appointment_at"
        );
    }

    #[test]
    fn the_form_reads_timings_and_says_which_field_is_wrong() {
        let mut form = RuleForm::new_rule();
        let input = form.input(true).expect("the new rule's form is whole");
        assert_eq!(
            input.timing,
            Timing::Offset {
                offset_minutes: -1440
            }
        );
        form.timing = "at_time".into();
        form.days = "2".into();
        form.day_direction = "after".into();
        assert_eq!(
            form.input(true).expect("whole").timing,
            Timing::AtTime {
                at_time: "09:00".into(),
                day_offset: 2
            }
        );
        form.days = "soon".into();
        form.grace_minutes = "-5".into();
        form.template = "order_shipped|en_US".into();
        form.variables = "{not json".into();
        let problems = form.input(true).expect_err("refused");
        for field in ["day_offset", "grace_minutes", "variables"] {
            assert!(problems.get(field).is_some(), "{field}: {problems:?}");
        }
    }
}
