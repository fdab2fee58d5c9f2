//! Reminder rules: "send T on channel C N minutes before (or after) the contact's date
//! attribute A", or "at 09:00 in the contact's time zone, D days before or after A".
//!
//! A row per (rule, contact, value of A) in `reminders` (unique) makes each reminder go once,
//! whatever the number of workers or restarts. The background step ([`step`]) does two
//! things: it reads the contacts changed since each rule's scan mark (by `updated_at`, so
//! nothing is rescanned) and works out their reminders (a moved date cancels the old one and
//! adds the new one; a cleared date cancels it; an unreadable one is recorded as skipped with
//! the reason), then it sends the pending reminders whose time has come through the one send
//! use case (`service::sends`, source `reminder`: the policy decides), each taken by one
//! worker with a conditional state change. A reminder due longer ago than the rule's grace
//! period is skipped, not sent late.
//!
//! Dates: an RFC 3339 datetime is that instant; a plain date (YYYY-MM-DD) is 00:00 on that day
//! in the contact's zone. The contact's zone is its `time_zone`, else its number's country
//! when that keeps one zone, else the rule's.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::json;

use crate::dispatch::hub::HubEvent;
use crate::dispatch::worker::Dispatcher;
use crate::domain::audit::Actor;
use crate::domain::contact::attributes_from_json;
use crate::domain::local_time::{first_start, zone_of_number};
use crate::domain::message::{MessageSource, MessageStatus};
use crate::domain::phone::DefaultCountry;
use crate::domain::template::{VariableMapping, check_mapping, resolve};
use crate::service::paging::{Page, PageRequest};
use crate::service::sends::{
    self, Checked, ContentRequest, Recipient, Requester, SendRequest, TemplateRef,
};
use crate::service::{FieldProblems, ServiceError, ServiceResult, Services};
use crate::storage::contacts;
use crate::storage::reminders::{self as store, ReminderLine, RuleFields, RuleRow};
use crate::storage::templates;
use crate::storage::{DbConnection, channels, now, write_transaction};

/// The grace period a rule gets when none is given.
pub const DEFAULT_GRACE_MINUTES: i32 = 60;
/// Contacts read per rule per step, and reminders sent per step.
const BATCH: i64 = 500;

/// When a reminder goes relative to the date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Timing {
    /// Minutes after the date (negative: before).
    Offset { offset_minutes: i32 },
    /// At a local time (HH:MM) on the date's day moved by `day_offset` days.
    AtTime { at_time: String, day_offset: i32 },
}

/// What a rule sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleContent {
    Text(String),
    Template {
        name: String,
        language: String,
        variables: VariableMapping,
    },
}

/// A rule as asked for (create, or the new state on update).
#[derive(Debug, Clone)]
pub struct RuleInput {
    pub name: String,
    /// A channel's public id or name.
    pub channel: String,
    pub content: RuleContent,
    pub attribute: String,
    pub timing: Timing,
    /// The zone used for contacts without one (an IANA name); "UTC" when blank.
    pub time_zone: String,
    pub grace_minutes: i32,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
    /// Each template variable from a field, an attribute or fixed text, with a fallback.
    #[schema(value_type = Object)]
    pub variables: VariableMapping,
}

/// A rule as shown to an admin (page and API).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub channel: String,
    pub channel_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateView>,
    pub attribute: String,
    #[serde(flatten)]
    pub timing: Timing,
    pub time_zone: String,
    pub grace_minutes: i32,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub row_id: i64,
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    let mut fields = FieldProblems::new();
    fields.add(field, message.into());
    ServiceError::invalid_fields("invalid_reminder", fields)
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("There is no reminder rule with id \"{id}\"."))
}

fn timing_of(row: &RuleRow) -> Timing {
    match (&row.at_time, row.offset_minutes) {
        (Some(t), _) => Timing::AtTime {
            at_time: t.clone(),
            day_offset: row.day_offset,
        },
        (None, m) => Timing::Offset {
            offset_minutes: m.unwrap_or(0),
        },
    }
}

fn view(conn: &mut DbConnection, row: RuleRow) -> ServiceResult<RuleView> {
    let channel = channels::find(conn, row.channel_id)?;
    let variables: VariableMapping =
        serde_json::from_str(&row.variables).map_err(ServiceError::internal)?;
    let template = match row.template_id {
        Some(id) => templates::find(conn, id)?.map(|t| TemplateView {
            name: t.name,
            language: t.language,
            variables,
        }),
        None => None,
    };
    Ok(RuleView {
        id: row.public_id.clone(),
        name: row.name.clone(),
        channel: channel.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        channel_id: channel.map(|c| c.public_id).unwrap_or_default(),
        text: row.text.clone(),
        template,
        attribute: row.attribute.clone(),
        timing: timing_of(&row),
        time_zone: row.time_zone.clone(),
        grace_minutes: row.grace_minutes,
        enabled: row.enabled != 0,
        created_at: row.created_at.and_utc().to_rfc3339(),
        updated_at: row.updated_at.and_utc().to_rfc3339(),
        row_id: row.id,
    })
}

/// The input that would leave a rule as it is (the start of an edit).
pub fn input_of(v: &RuleView) -> RuleInput {
    RuleInput {
        name: v.name.clone(),
        channel: v.channel_id.clone(),
        content: match (&v.text, &v.template) {
            (_, Some(t)) => RuleContent::Template {
                name: t.name.clone(),
                language: t.language.clone(),
                variables: t.variables.clone(),
            },
            (text, None) => RuleContent::Text(text.clone().unwrap_or_default()),
        },
        attribute: v.attribute.clone(),
        timing: v.timing.clone(),
        time_zone: v.time_zone.clone(),
        grace_minutes: v.grace_minutes,
        enabled: v.enabled,
    }
}

/// A local time of day, HH:MM.
pub fn parse_at_time(raw: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(raw.trim(), "%H:%M")
        .map_err(|_| format!("\"{raw}\" is not a time of day: give HH:MM, e.g. 09:00."))
}

/// Checks a rule and returns the columns to store.
fn check(
    conn: &mut DbConnection,
    input: &RuleInput,
    except: Option<i64>,
) -> ServiceResult<RuleFields> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid(
            "name",
            "Give the rule a name (up to 100 characters).",
        ));
    }
    if store::name_taken(conn, name, except)? {
        return Err(ServiceError::conflict(
            "name_taken",
            format!("There is already a reminder rule called \"{name}\"."),
        ));
    }
    let attribute = crate::domain::contact::parse_attribute_key(&input.attribute)
        .map_err(|e| invalid("attribute", e))?;
    let (offset_minutes, at_time, day_offset) = match &input.timing {
        Timing::Offset { offset_minutes } => {
            if offset_minutes.unsigned_abs() > 366 * 24 * 60 {
                return Err(invalid(
                    "offset_minutes",
                    "Give an offset within a year before or after the date.",
                ));
            }
            (Some(*offset_minutes), None, 0)
        }
        Timing::AtTime {
            at_time,
            day_offset,
        } => {
            let t = parse_at_time(at_time).map_err(|e| invalid("at_time", e))?;
            if day_offset.unsigned_abs() > 366 {
                return Err(invalid(
                    "day_offset",
                    "Give a number of days within a year before or after the date.",
                ));
            }
            (None, Some(t.format("%H:%M").to_string()), *day_offset)
        }
    };
    let zone = input.time_zone.trim();
    let time_zone = if zone.is_empty() {
        "UTC".to_owned()
    } else {
        zone.parse::<Tz>()
            .map_err(|_| {
                invalid(
                    "time_zone",
                    format!("\"{zone}\" is not a time zone (e.g. Europe/Berlin)."),
                )
            })?
            .name()
            .to_owned()
    };
    if !(0..=7 * 24 * 60).contains(&input.grace_minutes) {
        return Err(invalid(
            "grace_minutes",
            "Give a grace period from 0 minutes to 7 days (10080 minutes).",
        ));
    }
    let channel = sends::find_channel(conn, &input.channel)?;
    let (template_id, text, variables) = match &input.content {
        RuleContent::Text(text) => {
            crate::domain::content::check_free_text(channel.kind, text)
                .map_err(|e| invalid("text", e.to_string()))?;
            (None, Some(text.clone()), VariableMapping::new())
        }
        RuleContent::Template {
            name,
            language,
            variables,
        } => {
            let t = super::sendable_template(conn, &channel, name, language, invalid)?;
            check_mapping(&t.template, variables)
                .map_err(|f| ServiceError::invalid_fields("invalid_variables", f))?;
            (Some(t.template_id), None, variables.clone())
        }
    };
    Ok(RuleFields {
        name: name.to_owned(),
        channel_id: channel.id,
        template_id,
        text,
        variables: serde_json::to_string(&variables).map_err(ServiceError::internal)?,
        attribute,
        offset_minutes,
        at_time,
        day_offset,
        time_zone,
        grace_minutes: input.grace_minutes,
        enabled: i32::from(input.enabled),
        // Every contact is looked at again under the new rule.
        scanned_at: None,
        scanned_id: 0,
        updated_at: now(),
    })
}

fn summary(f: &RuleFields) -> serde_json::Value {
    json!({
        "name": f.name,
        "attribute": f.attribute,
        "offset_minutes": f.offset_minutes,
        "at_time": f.at_time,
        "day_offset": f.day_offset,
        "grace_minutes": f.grace_minutes,
        "enabled": f.enabled != 0,
    })
}

/// Creates a rule (audited `reminder.created`); `once` is the API's `Idempotency-Key`, kept in
/// the same transaction.
pub async fn create(
    svc: &Services,
    actor: Actor,
    input: RuleInput,
    once: Option<crate::service::idempotency::IdempotencyKey>,
) -> ServiceResult<RuleView> {
    svc.write(actor, move |change| {
        let fields = check(change.conn, &input, None)?;
        let row = store::insert(change.conn, &fields, &change.actor.label)?;
        change.audit(
            "reminder.created",
            "reminder_rule",
            Some(&row.public_id),
            summary(&fields),
        )?;
        crate::service::idempotency::remember(
            change,
            once.as_ref(),
            "reminder_rule",
            &row.public_id,
        )?;
        view(change.conn, row)
    })
    .await
}

/// Changes a rule (audited `reminder.updated`, or `reminder.disabled` / `reminder.enabled`).
/// Its pending reminders are worked out again by the next step.
pub async fn update(
    svc: &Services,
    actor: Actor,
    public_id: String,
    edit: impl FnOnce(RuleInput) -> ServiceResult<RuleInput> + Send + 'static,
) -> ServiceResult<RuleView> {
    svc.write(actor, move |change| {
        let row = store::find_by_public_id(change.conn, &public_id)?
            .ok_or_else(|| not_found(&public_id))?;
        let before = input_of(&view(change.conn, row.clone())?);
        let after = edit(before.clone())?;
        let fields = check(change.conn, &after, Some(row.id))?;
        store::update(change.conn, row.id, &fields)?;
        let action = match (before.enabled, after.enabled) {
            (true, false) => "reminder.disabled",
            (false, true) => "reminder.enabled",
            _ => "reminder.updated",
        };
        change.audit(
            action,
            "reminder_rule",
            Some(&row.public_id),
            summary(&fields),
        )?;
        let row = store::find(change.conn, row.id)?.ok_or_else(|| not_found(&public_id))?;
        view(change.conn, row)
    })
    .await
}

/// Deletes a rule and its reminders (audited `reminder.deleted`); its messages stay.
pub async fn delete(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<()> {
    svc.write(actor, move |change| {
        let row = store::find_by_public_id(change.conn, &public_id)?
            .ok_or_else(|| not_found(&public_id))?;
        store::delete(change.conn, row.id)?;
        change.audit(
            "reminder.deleted",
            "reminder_rule",
            Some(&row.public_id),
            json!({"name": row.name}),
        )?;
        Ok(())
    })
    .await
}

fn page_in(conn: &mut DbConnection, request: PageRequest) -> ServiceResult<Page<RuleView>> {
    let rows = store::page(conn, request.after, request.fetch())?;
    let page = request.finish(rows, |row| row.id);
    let data = page
        .data
        .into_iter()
        .map(|r| view(conn, r))
        .collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page {
        data,
        next_cursor: page.next_cursor,
    })
}

/// A page of rules, in the order they were made (the API's list).
pub async fn page(svc: &Services, request: PageRequest) -> ServiceResult<Page<RuleView>> {
    svc.read(move |conn| page_in(conn, request)).await
}

/// A rule as the Reminders page lists it: the rule and how many of its reminders are due next.
pub struct Listed {
    pub rule: RuleView,
    pub due_next: i64,
}

/// A page of rules with their pending counts (the Reminders page).
pub async fn listing(svc: &Services, request: PageRequest) -> ServiceResult<Page<Listed>> {
    svc.read(move |conn| {
        let page = page_in(conn, request)?;
        let ids: Vec<i64> = page.data.iter().map(|r| r.row_id).collect();
        let counts = store::pending_counts(conn, &ids)?;
        Ok(page.map(|rule| Listed {
            due_next: counts
                .iter()
                .find(|(id, _)| *id == rule.row_id)
                .map_or(0, |(_, n)| *n),
            rule,
        }))
    })
    .await
}

pub async fn get(svc: &Services, public_id: String) -> ServiceResult<RuleView> {
    svc.read(move |conn| {
        let row =
            store::find_by_public_id(conn, &public_id)?.ok_or_else(|| not_found(&public_id))?;
        view(conn, row)
    })
    .await
}

/// What a rule's page lists: what is due next and what happened, a page of each, and how many
/// reminders are due in all.
pub struct Activity {
    pub upcoming: Page<ReminderLine>,
    pub recent: Page<ReminderLine>,
    pub due: i64,
}

/// A page of what is due next (soonest first) and of what happened (newest first), each from
/// its own cursor.
pub async fn activity(
    svc: &Services,
    rule_row_id: i64,
    upcoming: PageRequest,
    recent: PageRequest,
) -> ServiceResult<Activity> {
    svc.read(move |conn| {
        let key = |l: &ReminderLine| l.0.id;
        let due = store::pending_counts(conn, &[rule_row_id])?
            .first()
            .map_or(0, |(_, n)| *n);
        Ok(Activity {
            upcoming: upcoming.finish(
                store::upcoming(conn, rule_row_id, upcoming.after, upcoming.fetch())?,
                key,
            ),
            recent: recent.finish(
                store::recent(conn, rule_row_id, recent.after, recent.fetch())?,
                key,
            ),
            due,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// When a reminder is due

/// The zone a contact's local times are read in.
pub fn contact_zone(contact_zone: &str, phone: &str, rule_zone: &str) -> Tz {
    contact_zone
        .trim()
        .parse::<Tz>()
        .ok()
        .or_else(|| zone_of_number(phone))
        .or_else(|| rule_zone.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// When a reminder for this date value is due, or why it cannot be worked out.
pub fn due_at(rule: &Timing, value: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let value = value.trim();
    let anchor: DateTime<Utc> = if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        at.with_timezone(&Utc)
    } else if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        first_start(day.and_time(NaiveTime::MIN), &[zone])
            .ok_or_else(|| format!("\"{value}\" has no midnight in {zone}."))?
    } else {
        return Err(format!(
            "\"{value}\" is not a date: give RFC 3339 (2026-12-24T09:00:00+01:00) or YYYY-MM-DD."
        ));
    };
    match rule {
        Timing::Offset { offset_minutes } => anchor
            .checked_add_signed(Duration::minutes(i64::from(*offset_minutes)))
            .ok_or_else(|| format!("\"{value}\" is out of range.")),
        Timing::AtTime {
            at_time,
            day_offset,
        } => {
            let t = parse_at_time(at_time)?;
            let day = anchor.with_timezone(&zone).date_naive();
            let day = day
                .checked_add_signed(Duration::days(i64::from(*day_offset)))
                .ok_or_else(|| format!("\"{value}\" is out of range."))?;
            first_start(NaiveDateTime::new(day, t), &[zone])
                .ok_or_else(|| format!("{day} {t} does not exist in {zone}."))
        }
    }
}

/// Works out one contact's reminder under a rule: cancels a pending one for another value of
/// the attribute, and records the one for the current value (pending, or skipped with why).
fn sync_contact(
    conn: &mut DbConnection,
    rule: &RuleRow,
    contact: &store::ChangedContact,
    at: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    let (contact_id, _, zone, phone, attributes) = contact;
    let value = attributes_from_json(attributes)
        .get(&rule.attribute)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let why = if value.is_some() {
        "Cancelled: the date changed."
    } else {
        "Cancelled: the date was cleared."
    };
    store::cancel_other_values(conn, rule.id, *contact_id, value.as_deref(), why)?;
    let Some(value) = value else { return Ok(()) };
    let zone = contact_zone(zone, phone, &rule.time_zone);
    let grace = Duration::minutes(i64::from(rule.grace_minutes));
    let existing = store::find_for_value(conn, rule.id, *contact_id, &value)?;
    match (due_at(&timing_of(rule), &value, zone), existing) {
        (Ok(due), Some(r)) if r.state == "pending" => {
            if r.due_at != Some(due.naive_utc()) {
                store::reschedule(conn, r.id, due.naive_utc())?;
            }
        }
        (_, Some(_)) => {}
        (Ok(due), None) if due + grace < at => {
            store::insert_reminder(
                conn,
                rule.id,
                *contact_id,
                &value,
                Some(due.naive_utc()),
                "skipped",
                Some("Skipped: its time had passed by more than the grace period."),
            )?;
        }
        (Ok(due), None) => {
            store::insert_reminder(
                conn,
                rule.id,
                *contact_id,
                &value,
                Some(due.naive_utc()),
                "pending",
                None,
            )?;
        }
        (Err(why), None) => {
            store::insert_reminder(
                conn,
                rule.id,
                *contact_id,
                &value,
                None,
                "skipped",
                Some(&format!("Skipped: {why}")),
            )?;
        }
    }
    Ok(())
}

/// Reads the contacts changed since each enabled rule's mark and works out their reminders.
pub fn sync_in(conn: &mut DbConnection, at: DateTime<Utc>) -> diesel::QueryResult<usize> {
    let mut seen = 0;
    for rule in store::enabled(conn)? {
        let changed = store::changed_contacts(conn, &rule, BATCH)?;
        let Some(last) = changed.last().map(|c| (c.1, c.0)) else {
            continue;
        };
        write_transaction(conn, |conn| {
            for contact in &changed {
                sync_contact(conn, &rule, contact, at)?;
            }
            store::mark_scanned(conn, rule.id, last.0, last.1)
        })?;
        seen += changed.len();
    }
    Ok(seen)
}

/// Sends (or skips) the pending reminders whose time has come; each in its own transaction,
/// taken by one worker. Returns the messages queued.
pub fn send_due_in(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
) -> ServiceResult<Vec<crate::storage::messages::MessageRow>> {
    let mut queued = Vec::new();
    for reminder in store::due(conn, at.naive_utc(), BATCH)? {
        let message = write_transaction(conn, |conn| send_one(conn, &reminder, at))?;
        queued.extend(message);
    }
    Ok(queued)
}

fn send_one(
    conn: &mut DbConnection,
    reminder: &store::ReminderRow,
    at: DateTime<Utc>,
) -> ServiceResult<Option<crate::storage::messages::MessageRow>> {
    let Some(rule) = store::find(conn, reminder.rule_id)? else {
        return Ok(None);
    };
    let skip = |conn: &mut DbConnection, why: &str| -> ServiceResult<Option<_>> {
        store::settle(conn, reminder.id, "skipped", Some(why), None)?;
        Ok(None)
    };
    if rule.enabled == 0 {
        return skip(conn, "Skipped: the rule is disabled.");
    }
    let due = reminder.due_at.unwrap_or(at.naive_utc()).and_utc();
    if at - due > Duration::minutes(i64::from(rule.grace_minutes)) {
        return skip(
            conn,
            &format!(
                "Skipped: due at {} and not sent within the grace period of {} minutes.",
                due.to_rfc3339(),
                rule.grace_minutes
            ),
        );
    }
    let Some(contact) = contacts::find(conn, reminder.contact_id)? else {
        return Ok(None);
    };
    if contact
        .value_of(&rule.attribute)
        .map(|v| v.trim().to_owned())
        .as_deref()
        != Some(reminder.attribute_value.as_str())
    {
        return skip(conn, "Cancelled: the date changed.");
    }
    let content = match rule.template_id {
        Some(id) => {
            let template = templates::find(conn, id)?.ok_or_else(|| {
                ServiceError::internal(anyhow::anyhow!("reminder template {id} is gone"))
            })?;
            let mapping: VariableMapping =
                serde_json::from_str(&rule.variables).map_err(ServiceError::internal)?;
            match resolve(&mapping, &|k: &str| contact.value_of(k)) {
                Ok(variables) => ContentRequest::Template {
                    template: TemplateRef::Id(template.public_id),
                    variables,
                },
                Err(e) => return skip(conn, &format!("Skipped: {e}")),
            }
        }
        None => ContentRequest::Text(rule.text.clone().unwrap_or_default()),
    };
    let channel = channels::find(conn, rule.channel_id)?
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("reminder channel is gone")))?;
    // Taken first: a second worker finds it no longer pending (on PostgreSQL it waits for
    // this transaction, then finds it settled).
    if !store::settle(conn, reminder.id, "sent", None, None)? {
        return Ok(None);
    }
    let checked = Checked::new(
        SendRequest {
            recipient: Recipient::Contact(contact.public_id.clone()),
            channel: channel.public_id,
            content,
            send_at: None,
        },
        DefaultCountry::default(),
    )?;
    let actor = Actor::system(&format!("Reminder \"{}\"", rule.name));
    // A savepoint: a send the policy refuses leaves nothing but the reason.
    let sent = write_transaction(conn, |conn| {
        sends::queue_in(
            conn,
            &checked,
            &Requester {
                actor: &actor,
                idempotency_key: None,
                source: Some(MessageSource::Reminder),
            },
        )
    });
    match sent {
        Ok(q) => {
            store::set_message(conn, reminder.id, q.message.id)?;
            Ok(Some(q.message))
        }
        Err(ServiceError::Invalid { message, .. }) => {
            crate::storage::reminders::mark(
                conn,
                reminder.id,
                "skipped",
                &format!("Refused: {message}"),
            )?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The background step: works out reminders for what changed, then sends what is due.
pub async fn step(dispatcher: &Dispatcher) -> ServiceResult<usize> {
    let at = Utc::now();
    let queued = dispatcher
        .db()
        .run(move |conn| {
            sync_in(conn, at)?;
            send_due_in(conn, at)
        })
        .await?;
    for m in &queued {
        dispatcher
            .hub()
            .publish(HubEvent::message_status(m, m.status()));
    }
    if queued.iter().any(|m| m.status() == MessageStatus::Queued) {
        dispatcher.wake();
    }
    Ok(queued.len())
}
