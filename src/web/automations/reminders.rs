//! Issue 20: Automations › Reminders (admins). The list of reminder rules (what each sends,
//! when in words, how many reminders are due next) with the form for a new one; each rule's
//! page with its settings, the same form to edit it, enable/disable, delete, what is due next
//! and what happened lately (each list paged on its own cursor). The form fills the template's
//! variables in rows (`web::variables`), re-rendered alone when the template changes. The same
//! use cases as `/api/v1/reminders` (`service::automations::reminders`).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono_tz::Tz;
use serde::Deserialize;

use super::{Switchable, form_refusal, template_choice, template_value};
use crate::domain::audit::Actor;
use crate::domain::fields::FieldProblems;
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
use crate::web::variables::{self, VarRow};
use crate::web::{paths, render_with_status};

/// Reminders listed per page of each list on a rule's page (due next, recent activity).
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
    /// The template's variables, one row each (`var.<name>.source|key|text`).
    #[serde(flatten, deserialize_with = "variable_rows")]
    variables: Vec<VarRow>,
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
    /// Set by "Show the template's variables" (the form without JavaScript): the form again,
    /// nothing saved.
    #[serde(default)]
    show_variables: String,
}

/// The `var.<name>.<part>` fields among the form's others.
fn variable_rows<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<VarRow>, D::Error> {
    let rest = BTreeMap::<String, String>::deserialize(d)?;
    Ok(variables::read(
        rest.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

impl RuleForm {
    /// A new rule's form: a day before `appointment_at`.
    fn new_rule() -> Self {
        RuleForm {
            name: String::new(),
            channel: String::new(),
            template: String::new(),
            text: String::new(),
            variables: Vec::new(),
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
            show_variables: String::new(),
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
            form.variables = variables::rows_of(&t.variables);
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
        let content = match template_choice(&self.template) {
            Some((name, language)) => RuleContent::Template {
                name,
                language,
                variables: variables::mapping(&self.variables),
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

/// The form's variables block: a row for each variable of the chosen template, what was typed
/// (or saved) kept, and what the Field column offers.
pub struct VarBlock {
    rows: Vec<VarRow>,
    keys: Vec<(String, String)>,
    /// A template is chosen (one without variables says so).
    template: bool,
}

impl VarBlock {
    fn of(form: &RuleForm, choices: &Choices) -> Self {
        let chosen = template_choice(&form.template);
        let rows = match &chosen {
            Some((name, language)) => match choices.variables_of(name, language) {
                Some(names) => variables::for_placeholders(names, &form.variables),
                // Not sendable now (paused, or its approval withdrawn): the rows as they are.
                None => form.variables.clone(),
            },
            None => Vec::new(),
        };
        VarBlock {
            keys: variables::key_choices(&[], &choices.fields, &rows),
            rows,
            template: chosen.is_some(),
        }
    }

    /// A row shows this field's problems (`variables.<name>`); the others are listed below.
    pub fn shows(&self, field: &str) -> bool {
        field
            .strip_prefix("variables.")
            .is_some_and(|name| self.rows.iter().any(|r| r.name == name))
    }
}

/// The variables block alone (`automations/_reminder_variables.html`).
#[derive(Template)]
#[template(path = "automations/_reminder_variables.html")]
struct VariablesFragment {
    vars: VarBlock,
    errors: FieldProblems,
}

/// `POST /automations/reminders/variables`: the form's variables block for the template now
/// chosen (htmx, on the template's select), what was typed kept.
pub async fn variables_block(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    form: web::Form<RuleForm>,
) -> Result<HttpResponse, AppError> {
    let choices = automation::choices(&state).await?;
    render_with_status(
        &VariablesFragment {
            vars: VarBlock::of(&form, &choices),
            errors: FieldProblems::default(),
        },
        StatusCode::OK,
    )
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
    vars: VarBlock,
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
            vars: VarBlock::of(&form, &choices),
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
    if !form.show_variables.is_empty() {
        return index_page(
            &state,
            chrome,
            None,
            form,
            FieldProblems::default(),
            None,
            StatusCode::OK,
        )
        .await;
    }
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
    /// The template's variables in words (`{{1}}: contact attribute name, else "there"`).
    variables: Vec<String>,
    upcoming: Vec<ReminderRow>,
    recent: Vec<ReminderRow>,
    /// How many reminders are due in all.
    due: i64,
    due_pager: Pager,
    activity_pager: Pager,
    choices: Choices,
    form: RuleForm,
    vars: VarBlock,
    errors: FieldProblems,
    problem: Option<String>,
}

/// A list's links on a rule's page: to its first page (when not on it) and to its next one
/// (when more follow), the other list staying where it is (`automations/_list_pager.html`).
pub struct Pager {
    first: Option<String>,
    next: Option<String>,
}

/// Where a rule's page starts each of its lists (due next, recent activity).
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    due_cursor: Option<String>,
    #[serde(default)]
    activity_cursor: Option<String>,
}

impl ShowQuery {
    /// The rule's page with these cursors, at the list `anchor`.
    fn link(page: &str, due: Option<&str>, activity: Option<&str>, anchor: &str) -> String {
        let params: Vec<String> = [("due_cursor", due), ("activity_cursor", activity)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect();
        if params.is_empty() {
            format!("{page}#{anchor}")
        } else {
            format!("{page}?{}#{anchor}", params.join("&"))
        }
    }
}

async fn show_page(
    state: &AppState,
    chrome: Chrome,
    id: String,
    at: ShowQuery,
    edit: Option<(RuleForm, FieldProblems, Option<String>)>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let r = reminders::get(state, id).await?;
    let page = |cursor: &Option<String>| {
        PageRequest::parse(None, cursor.as_deref()).map(|p| PageRequest {
            limit: ACTIVITY_PAGE,
            ..p
        })
    };
    let activity = reminders::activity(
        state,
        r.row_id,
        page(&at.due_cursor)?,
        page(&at.activity_cursor)?,
    )
    .await?;
    let choices = automation::choices(state).await?;
    let zone: Tz = r.time_zone.parse().unwrap_or(Tz::UTC);
    let rows = |lines: Vec<ReminderLine>, due: bool| -> Vec<ReminderRow> {
        lines
            .into_iter()
            .map(|l| ReminderRow::of(l, zone, due))
            .collect()
    };
    let here = RulePages::page(&r.id);
    let (due_cursor, activity_cursor) = (at.due_cursor.as_deref(), at.activity_cursor.as_deref());
    let due_pager = Pager {
        first: due_cursor.map(|_| ShowQuery::link(&here, None, activity_cursor, "rule-due")),
        next: (activity.upcoming.next_cursor.as_deref())
            .map(|next| ShowQuery::link(&here, Some(next), activity_cursor, "rule-due")),
    };
    let activity_pager = Pager {
        first: activity_cursor.map(|_| ShowQuery::link(&here, due_cursor, None, "rule-activity")),
        next: (activity.recent.next_cursor.as_deref())
            .map(|next| ShowQuery::link(&here, due_cursor, Some(next), "rule-activity")),
    };
    let (form, errors, problem) =
        edit.unwrap_or_else(|| (RuleForm::of(&r), FieldProblems::default(), None));
    render_with_status(
        &ShowPage {
            timing: timing_words(&r.timing, &r.attribute),
            content: content_words(&r),
            variables: r
                .template
                .iter()
                .flat_map(|t| &t.variables)
                .map(|(name, source)| variables::words(name, source))
                .collect(),
            chrome,
            action: here,
            r,
            upcoming: rows(activity.upcoming.data, true),
            recent: rows(activity.recent.data, false),
            due: activity.due,
            due_pager,
            activity_pager,
            vars: VarBlock::of(&form, &choices),
            choices,
            form,
            errors,
            problem,
        },
        status,
    )
}

/// `GET /automations/reminders/{id}`, `?due_cursor=` and `?activity_cursor=` paging its lists.
pub async fn show(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, AppError> {
    show_page(
        &state,
        chrome,
        path.into_inner(),
        query.into_inner(),
        None,
        StatusCode::OK,
    )
    .await
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
    if !form.show_variables.is_empty() {
        let kept = Some((form, FieldProblems::default(), None));
        return show_page(
            &state,
            chrome,
            id,
            ShowQuery::default(),
            kept,
            StatusCode::OK,
        )
        .await;
    }
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
        ShowQuery::default(),
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
    use crate::domain::template::VariableSource;

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
        let problems = form.input(true).expect_err("refused");
        for field in ["day_offset", "grace_minutes"] {
            assert!(problems.get(field).is_some(), "{field}: {problems:?}");
        }
    }

    #[test]
    fn the_variables_are_read_from_their_rows() {
        let form: RuleForm = serde_urlencoded::from_str(
            "name=Day+before&template=visit%7Cen&var.1.source=fallback&var.1.key=name\
             &var.1.text=there&var.2.source=fixed&var.2.text=Dr+Who&amount=1&grace_minutes=60",
        )
        .expect("the form reads");
        assert_eq!(form.name, "Day before");
        assert_eq!(form.grace_minutes, "60");
        let RuleContent::Template { variables, .. } = form.input(true).expect("whole").content
        else {
            panic!("a template");
        };
        assert_eq!(
            variables.get("1"),
            Some(&VariableSource::AttributeWithFallback {
                key: "name".into(),
                fallback: "there".into()
            })
        );
        assert_eq!(
            variables.get("2"),
            Some(&VariableSource::Fixed {
                text: "Dr Who".into()
            })
        );
    }

    #[test]
    fn the_variables_block_has_the_chosen_templates_rows() {
        let choices = Choices {
            channels: Vec::new(),
            templates: Vec::new(),
            variables: vec![
                (("visit".into(), "en".into()), vec!["1".into(), "2".into()]),
                (("thanks".into(), "en".into()), Vec::new()),
            ],
            fields: vec!["name".into(), "attributes.city".into()],
        };
        let mut form = RuleForm::new_rule();
        form.template = "visit|en".into();
        form.variables = vec![VarRow::of(
            "2",
            &VariableSource::Fixed {
                text: "Dr Who".into(),
            },
        )];
        let block = VarBlock::of(&form, &choices);
        let names: Vec<&str> = block.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["1", "2"]);
        assert_eq!(block.rows[1].text, "Dr Who");
        assert!(block.shows("variables.2") && !block.shows("variables.9"));
        form.template = "thanks|en".into();
        let block = VarBlock::of(&form, &choices);
        assert!(block.rows.is_empty() && block.template);
        form.template = "withdrawn|en".into();
        let block = VarBlock::of(&form, &choices);
        assert_eq!(block.rows, form.variables, "a saved mapping is not lost");
        form.template = String::new();
        assert!(!VarBlock::of(&form, &choices).template);
    }
}
