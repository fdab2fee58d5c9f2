//! Broadcast campaigns, one use case per call: save a draft, estimate its reach, launch it
//! (straight away, at a time, or after approval), pause, resume, cancel, and test-send it. The
//! scheduler that turns a launched broadcast's recipients into queued messages, a batch at a
//! time and just ahead of the channel's rate, is [`feed`]; it queues through the same outbox
//! as every other send, and the dispatcher asks the policy again when it sends.
//!
//! Launching is one conditional state change in the same transaction as the audience's
//! freezing (one `INSERT ... SELECT`), so a broadcast is launched once whatever double clicks,
//! retries or several instances do; the recipients' unique (broadcast, contact) pair and the
//! messages' unique (campaign, contact) index make "at most one message per recipient" a
//! property of the database.

pub mod csv;
pub mod feed;
pub mod results;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Serialize;

use crate::domain::audit::{Actor, ActorKind};
use crate::domain::broadcast::{
    Audience, BroadcastMessage, BroadcastState, column_key, local_to_utc, parse_zone,
};
use crate::domain::channel::ChannelKind;
use crate::domain::content::check_free_text;
use crate::domain::local_time::{QuietHours, Timing, first_start};
use crate::domain::template::{VariableMapping, VariableSource, Variables, check_mapping, resolve};
use crate::service::sends::{self, ContentRequest, Recipient, SendRequest, TemplateRef};
use crate::service::{Change, FieldProblems, ServiceError, ServiceResult, Services};
use crate::storage::broadcasts::{self as store, AudienceContext, BroadcastRow, Counts, Estimate};
use crate::storage::channels::{self, Channel};
use crate::storage::templates::{self, TemplateLookup};
use crate::storage::{DbConnection, broadcast_zones, contacts, lists, now, settings};

/// Setting keys (Broadcasts › Settings).
pub const LAUNCH_APPROVAL: &str = "broadcasts.launch_approval";
pub const FREQUENCY_CAP: &str = "broadcasts.frequency_cap";
pub const FAILURE_PAUSE_PERCENT: &str = "broadcasts.failure_pause_percent";
pub const REPLY_WINDOW_HOURS: &str = crate::storage::broadcast_results::REPLY_WINDOW_KEY;

/// The broadcast settings, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BroadcastSettings {
    /// Launching needs approval by an admin or support lead who did not compose it.
    pub launch_approval: bool,
    /// At most this many broadcast messages per contact per rolling 7 days.
    pub frequency_cap: Option<i64>,
    /// Pause when this share (percent) of the last [`FAILURE_WINDOW`] outcomes failed.
    pub failure_pause_percent: i64,
    /// A recipient's first message within this many hours after the broadcast's message was
    /// delivered counts as a reply to it.
    pub reply_window_hours: i64,
}

/// How many of the latest outcomes the failure threshold looks at.
pub const FAILURE_WINDOW: i64 = 200;

impl Default for BroadcastSettings {
    fn default() -> Self {
        BroadcastSettings {
            launch_approval: false,
            frequency_cap: None,
            failure_pause_percent: 20,
            reply_window_hours: crate::storage::broadcast_results::DEFAULT_REPLY_WINDOW_HOURS,
        }
    }
}

pub fn read_settings(conn: &mut DbConnection) -> ServiceResult<BroadcastSettings> {
    let d = BroadcastSettings::default();
    let number = |v: Option<String>| v.and_then(|s| s.trim().parse::<i64>().ok());
    Ok(BroadcastSettings {
        launch_approval: settings::get(conn, LAUNCH_APPROVAL)?.as_deref() == Some("on"),
        frequency_cap: number(settings::get(conn, FREQUENCY_CAP)?).filter(|n| *n > 0),
        failure_pause_percent: number(settings::get(conn, FAILURE_PAUSE_PERCENT)?)
            .filter(|n| (1..=100).contains(n))
            .unwrap_or(d.failure_pause_percent),
        reply_window_hours: crate::storage::broadcast_results::reply_window_hours(conn)?,
    })
}

/// Saves the broadcast settings (admins), with its audit entry.
pub async fn save_settings(
    svc: &Services,
    actor: Actor,
    new: BroadcastSettings,
) -> ServiceResult<BroadcastSettings> {
    let mut problems = FieldProblems::new();
    if new.frequency_cap.is_some_and(|n| !(1..=1000).contains(&n)) {
        problems.add(
            "frequency_cap",
            "Enter a number from 1 to 1,000, or leave it empty for no cap.",
        );
    }
    if !(1..=100).contains(&new.failure_pause_percent) {
        problems.add("failure_pause_percent", "Enter a percentage from 1 to 100.");
    }
    if !(1..=720).contains(&new.reply_window_hours) {
        problems.add(
            "reply_window_hours",
            "Enter a number of hours from 1 to 720 (30 days).",
        );
    }
    if !problems.is_empty() {
        return Err(ServiceError::invalid_fields("invalid_settings", problems));
    }
    svc.write(actor, move |change| {
        let conn = &mut *change.conn;
        settings::set(
            conn,
            LAUNCH_APPROVAL,
            if new.launch_approval { "on" } else { "off" },
        )?;
        settings::set(
            conn,
            FREQUENCY_CAP,
            &new.frequency_cap.map(|n| n.to_string()).unwrap_or_default(),
        )?;
        settings::set(
            conn,
            FAILURE_PAUSE_PERCENT,
            &new.failure_pause_percent.to_string(),
        )?;
        settings::set(
            conn,
            REPLY_WINDOW_HOURS,
            &new.reply_window_hours.to_string(),
        )?;
        change.audit(
            "broadcast.settings_changed",
            "settings",
            None,
            serde_json::to_value(&new).unwrap_or_default(),
        )?;
        Ok(new)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Drafts

/// When: an instant, or a wall-clock time in the broadcast's zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    Instant(DateTime<Utc>),
    Local(NaiveDateTime),
}

/// The message as asked for: the template by id or by name and language.
#[derive(Debug, Clone)]
pub enum MessageInput {
    Text(String),
    Template {
        template: TemplateRef,
        variables: VariableMapping,
        /// Window-aware mode (WhatsApp): free text for recipients whose window is open when
        /// the message is sent; empty or `None`: the template to everyone.
        window_text: Option<String>,
    },
}

/// A draft as a form or the API gives it.
#[derive(Debug, Clone)]
pub struct DraftInput {
    pub name: String,
    /// A channel's public id or name.
    pub channel: String,
    /// Lists named by public id or name.
    pub audience: Audience,
    pub message: MessageInput,
    /// `None`: as soon as it is launched.
    pub send_at: Option<When>,
    /// IANA zone; empty means UTC.
    pub time_zone: String,
    pub expires_at: Option<When>,
    /// Send at `send_at`'s wall-clock time in each recipient's own zone.
    pub recipient_local_time: bool,
    /// Quiet hours in the recipient's local time ("21:00", "08:00"); both empty: none.
    pub quiet_hours: (String, String),
}

/// A broadcast with what its pages and the API show.
#[derive(Debug, Clone)]
pub struct BroadcastView {
    pub row: BroadcastRow,
    pub channel: Channel,
    pub audience: Audience,
    pub message: BroadcastMessage,
    /// "order_update (en_US)" for a template.
    pub template_label: Option<String>,
    pub counts: Counts,
}

impl BroadcastView {
    pub fn state(&self) -> BroadcastState {
        self.row.state()
    }
}

fn name_problem(name: &str) -> Option<&'static str> {
    let n = name.trim().chars().count();
    if n == 0 {
        Some("Give the broadcast a name.")
    } else if n > 200 {
        Some("A name has at most 200 characters.")
    } else {
        None
    }
}

fn resolve_lists(
    conn: &mut DbConnection,
    wanted: &[String],
    field: &str,
    problems: &mut FieldProblems,
) -> ServiceResult<Vec<String>> {
    let mut ids = Vec::new();
    for w in wanted.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        let list = match lists::find_by_public_id(conn, w)? {
            Some(l) => Some(l),
            None => lists::find_by_name(conn, w)?,
        };
        match list {
            Some(l) if !ids.contains(&l.public_id) => ids.push(l.public_id),
            Some(_) => {}
            None => problems.add(
                field,
                format!("There is no list called or numbered \"{w}\"."),
            ),
        }
    }
    Ok(ids)
}

fn to_utc(when: When, zone: chrono_tz::Tz) -> NaiveDateTime {
    match when {
        When::Instant(t) => t.naive_utc(),
        When::Local(local) => local_to_utc(local, zone).naive_utc(),
    }
}

/// The keys a mapping needs from every recipient, with no fallback.
fn required_values(message: &BroadcastMessage) -> Vec<String> {
    match message {
        BroadcastMessage::Template { variables, .. } => variables
            .values()
            .filter_map(|s| match s {
                VariableSource::Attribute { key } => Some(key.trim().to_owned()),
                _ => None,
            })
            .collect(),
        BroadcastMessage::Text { .. } => Vec::new(),
    }
}

/// Checks a draft and turns it into what is stored, or says what is wrong, by field.
fn check_draft(
    conn: &mut DbConnection,
    input: &DraftInput,
) -> ServiceResult<(store::DraftFields, Channel)> {
    let mut problems = FieldProblems::new();
    if let Some(p) = name_problem(&input.name) {
        problems.add("name", p);
    }
    let channel = match sends::find_channel(conn, &input.channel) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.add("channel", e.to_string());
            None
        }
    };
    let mut audience = input.audience.clone();
    if let Err(p) = audience.check() {
        for problem in p.into_vec() {
            problems.add(problem.field, problem.message);
        }
    }
    audience.lists = resolve_lists(conn, &input.audience.lists, "audience.lists", &mut problems)?;
    audience.exclude_lists = resolve_lists(
        conn,
        &input.audience.exclude_lists,
        "audience.exclude_lists",
        &mut problems,
    )?;
    let zone = match parse_zone(&input.time_zone) {
        Ok(z) => z,
        Err(e) => {
            problems.add("schedule.time_zone", e);
            chrono_tz::Tz::UTC
        }
    };
    let send_at = input.send_at.map(|w| to_utc(w, zone));
    let expires_at = input.expires_at.map(|w| to_utc(w, zone));
    let timing = check_timing(input, zone, &mut problems);
    if let Some(at) = send_at
        && at < now() - Duration::minutes(1)
    {
        problems.add(
            "schedule.at",
            "This time has passed; choose a time to come, or send it on launch.",
        );
    }
    if let Some(exp) = expires_at
        && exp <= send_at.unwrap_or_else(now)
    {
        problems.add(
            "schedule.expires_at",
            "The expiry must come after the start, or nothing would be sent.",
        );
    }
    let message = match (&input.message, &channel) {
        (_, None) => None,
        (MessageInput::Text(text), Some(channel)) => {
            if channel.kind == ChannelKind::Whatsapp {
                problems.add(
                    "message",
                    "A WhatsApp broadcast sends an approved template: free text only reaches people who wrote in the last 24 hours.",
                );
            } else if let Err(e) = check_free_text(channel.kind, text) {
                problems.add("message.text", e.to_string());
            }
            Some(BroadcastMessage::Text { text: text.clone() })
        }
        (
            MessageInput::Template {
                template,
                variables,
                window_text,
            },
            Some(channel),
        ) => match sends::find_template(conn, channel, template) {
            Err(e) => {
                problems.add("message.template", e.to_string());
                None
            }
            Ok(lookup) => {
                let public_id = match &lookup {
                    TemplateLookup::Sendable(t) => {
                        if let Err(p) = check_mapping(&t.template, variables) {
                            for problem in p.into_vec() {
                                problems.add(format!("message.{}", problem.field), problem.message);
                            }
                        }
                        csv::check_columns(&audience, variables, &mut problems);
                        Some(t.public_id.clone())
                    }
                    TemplateLookup::NotSendable { template_id, .. } => {
                        templates::find(conn, *template_id)?.map(|t| t.public_id)
                    }
                    TemplateLookup::NotFound => None,
                };
                let window_text = window_text
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned);
                if let Some(text) = &window_text {
                    if channel.kind != ChannelKind::Whatsapp {
                        problems.add(
                            "message.window_text",
                            "Only WhatsApp has a customer-service window: leave this empty on other channels.",
                        );
                    } else if let Err(e) = check_free_text(channel.kind, text) {
                        problems.add("message.window_text", e.to_string());
                    }
                }
                public_id.map(|template| BroadcastMessage::Template {
                    template,
                    variables: variables.clone(),
                    window_text,
                })
            }
        },
    };
    if !problems.is_empty() {
        return Err(ServiceError::invalid_fields("invalid_broadcast", problems));
    }
    let (Some(channel), Some(message)) = (channel, message) else {
        return Err(ServiceError::invalid(
            "invalid_broadcast",
            "The broadcast is incomplete.",
        ));
    };
    let fields = store::DraftFields {
        name: input.name.trim().to_owned(),
        channel_id: channel.id,
        audience: serde_json::to_string(&audience).map_err(ServiceError::internal)?,
        message: serde_json::to_string(&message).map_err(ServiceError::internal)?,
        send_at,
        time_zone: zone.name().to_owned(),
        expires_at,
        timing: if timing.is_used() {
            Some(serde_json::to_string(&timing).map_err(ServiceError::internal)?)
        } else {
            None
        },
    };
    Ok((fields, channel))
}

/// Local time and quiet hours, checked.
fn check_timing(input: &DraftInput, zone: chrono_tz::Tz, problems: &mut FieldProblems) -> Timing {
    let quiet_hours = match (input.quiet_hours.0.trim(), input.quiet_hours.1.trim()) {
        ("", "") => None,
        (from, to) => match QuietHours::parse(from, to) {
            Ok(q) => Some(q),
            Err(e) => {
                problems.add("schedule.quiet_hours", e);
                None
            }
        },
    };
    let local_time = if input.recipient_local_time {
        match input.send_at {
            Some(When::Local(local)) => Some(local),
            Some(When::Instant(t)) => Some(t.with_timezone(&zone).naive_local()),
            None => {
                problems.add(
                    "schedule.at",
                    "Choose the date and time to send at in each recipient's local time.",
                );
                None
            }
        }
    } else {
        None
    };
    Timing {
        local_time,
        quiet_hours,
        zones: Vec::new(),
    }
}

fn user_id(actor: &Actor) -> Option<i64> {
    (actor.kind == ActorKind::User)
        .then_some(actor.id)
        .flatten()
}

/// Saves a new draft. With an idempotency key, the same request again answers with the first
/// draft (`replayed`), and another request under that key is refused.
pub async fn create(
    svc: &Services,
    actor: Actor,
    input: DraftInput,
    idempotency: Option<(String, String)>,
) -> ServiceResult<(BroadcastView, bool)> {
    let (row, replayed) = svc
        .write(actor, move |change| {
            if let Some((key, hash)) = &idempotency
                && let Some(found) = store::find_by_idempotency_key(change.conn, key)?
            {
                if found.request_hash.as_deref() != Some(hash.as_str()) {
                    return Err(ServiceError::invalid(
                        "idempotency_key_reused",
                        "This idempotency key was already used for a different broadcast; use a new key.",
                    ));
                }
                return Ok((found, true));
            }
            let mut input = csv::for_new_draft(input)?;
            // Issue 18: only "Send again to..." makes a follow-up.
            input.audience.follow_up = None;
            let (fields, _) = check_draft(change.conn, &input)?;
            let row = store::insert(
                change.conn,
                &fields,
                user_id(change.actor),
                &change.actor.label,
                idempotency.as_ref().map(|(k, _)| k.as_str()),
                idempotency.as_ref().map(|(_, h)| h.as_str()),
            )?;
            change.audit(
                "broadcast.created",
                "broadcast",
                Some(&row.public_id),
                serde_json::json!({ "name": row.name }),
            )?;
            Ok((row, false))
        })
        .await?;
    Ok((view(svc, row).await?, replayed))
}

/// Rewrites a draft (only drafts change).
pub async fn update(
    svc: &Services,
    actor: Actor,
    public_id: String,
    input: DraftInput,
) -> ServiceResult<BroadcastView> {
    let row = svc
        .write(actor, move |change| {
            let row = find_row(change.conn, &public_id)?;
            if row.state() != BroadcastState::Draft {
                return Err(not_editable(&row));
            }
            let input = csv::keep_upload(&row, input)?;
            let input = results::keep_follow_up(&row, input)?;
            let (fields, _) = check_draft(change.conn, &input)?;
            store::update_draft(change.conn, row.id, &fields)?;
            if input.audience.csv.is_none() {
                // Lists and filters again: the uploaded rows go.
                crate::storage::broadcast_csv::remove_older(change.conn, row.id, None)?;
            }
            change.audit(
                "broadcast.updated",
                "broadcast",
                Some(&row.public_id),
                serde_json::json!({ "name": fields.name }),
            )?;
            find_row(change.conn, &public_id)
        })
        .await?;
    view(svc, row).await
}

fn not_editable(row: &BroadcastRow) -> ServiceError {
    ServiceError::conflict(
        "broadcast_not_editable",
        format!(
            "This broadcast is {}: its audience and content are frozen once launched.",
            row.state().label().to_lowercase()
        ),
    )
}

fn find_row(conn: &mut DbConnection, public_id: &str) -> ServiceResult<BroadcastRow> {
    store::find_by_public_id(conn, public_id.trim())?
        .ok_or_else(|| ServiceError::not_found("This broadcast"))
}

fn parse_stored(row: &BroadcastRow) -> ServiceResult<(Audience, BroadcastMessage)> {
    let audience = serde_json::from_str(&row.audience).map_err(ServiceError::internal)?;
    let message = serde_json::from_str(&row.message).map_err(ServiceError::internal)?;
    Ok((audience, message))
}

pub(crate) fn view_in(conn: &mut DbConnection, row: BroadcastRow) -> ServiceResult<BroadcastView> {
    let (audience, message) = parse_stored(&row)?;
    let channel = channels::find(conn, row.channel_id)?
        .ok_or_else(|| ServiceError::not_found("Its channel"))?;
    let template_label = match &message {
        BroadcastMessage::Template { template, .. } => {
            templates::find_by_public_id(conn, template)?
                .map(|t| format!("{} ({})", t.name, t.language))
        }
        BroadcastMessage::Text { .. } => None,
    };
    let counts = results::counts(conn, row.id)?;
    Ok(BroadcastView {
        row,
        channel,
        audience,
        message,
        template_label,
        counts,
    })
}

async fn view(svc: &Services, row: BroadcastRow) -> ServiceResult<BroadcastView> {
    svc.read(move |conn| view_in(conn, row)).await
}

/// One broadcast with its counts.
pub async fn get(svc: &Services, public_id: String) -> ServiceResult<BroadcastView> {
    svc.read(move |conn| {
        let row = find_row(conn, &public_id)?;
        view_in(conn, row)
    })
    .await
}

/// A page of broadcasts (newest first) with their counts, and whether there is another page.
pub async fn list(
    svc: &Services,
    filter: store::ListFilter,
    before: Option<i64>,
    limit: i64,
) -> ServiceResult<(Vec<BroadcastView>, bool)> {
    svc.read(move |conn| {
        let mut rows = store::page(conn, &filter, before, limit)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let views = rows
            .into_iter()
            .map(|r| view_in(conn, r))
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok((views, more))
    })
    .await
}

fn audience_context(
    conn: &mut DbConnection,
    broadcast_id: i64,
    audience: &Audience,
    channel: &Channel,
    message: &BroadcastMessage,
) -> ServiceResult<AudienceContext> {
    let mut ids = |wanted: &[String]| -> ServiceResult<Vec<i64>> {
        let mut out = Vec::new();
        for w in wanted {
            if let Some(l) = lists::find_by_public_id(conn, w)? {
                out.push(l.id);
            }
        }
        Ok(out)
    };
    let lists = ids(&audience.lists)?;
    let exclude_lists = ids(&audience.exclude_lists)?;
    Ok(AudienceContext {
        lists,
        exclude_lists,
        channel_id: channel.id,
        kind: channel.kind,
        now: now(),
        frequency_cap: read_settings(conn)?.frequency_cap,
        required_values: required_values(message),
        csv_upload: csv::upload_id(conn, audience)?,
        // Issue 18: a follow-up's frozen contacts are kept under its own id.
        follow_up: audience.follow_up.is_some().then_some(broadcast_id),
    })
}

/// The reach of a draft's audience now, and who it would leave out and why.
pub async fn estimate(svc: &Services, public_id: String) -> ServiceResult<Estimate> {
    svc.read(move |conn| {
        let row = find_row(conn, &public_id)?;
        let (audience, message) = parse_stored(&row)?;
        let channel = channels::find(conn, row.channel_id)?
            .ok_or_else(|| ServiceError::not_found("Its channel"))?;
        let ctx = audience_context(conn, row.id, &audience, &channel, &message)?;
        Ok(store::estimate(conn, &audience, &ctx)?)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Launching and controls

/// What launching did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launched {
    /// Waiting for approval (launch approval is on).
    AwaitingApproval,
    /// Frozen; starts at its time.
    Scheduled,
    /// Frozen and sending.
    Running,
}

/// Why the broadcast may not start now, checked at launch (and again when approved).
fn check_launchable(conn: &mut DbConnection, row: &BroadcastRow) -> ServiceResult<()> {
    let (audience, message) = parse_stored(row)?;
    let channel = channels::find(conn, row.channel_id)?
        .ok_or_else(|| ServiceError::not_found("Its channel"))?;
    let mut problems = FieldProblems::new();
    if !channel.is_enabled() {
        problems.add(
            "channel",
            format!(
                "The channel \"{}\" is disabled; enable it first.",
                channel.name
            ),
        );
    }
    if let BroadcastMessage::Template { variables, .. } = &message {
        // Issue 17: the CSV uploaded since the mapping was saved must still have its columns.
        csv::check_columns(&audience, variables, &mut problems);
    }
    if let BroadcastMessage::Template { template, .. } = &message {
        match templates::find_by_public_id(conn, template)? {
            None => problems.add("message.template", "The template no longer exists."),
            Some(t) => {
                if let TemplateLookup::NotSendable { reason, .. } = templates::sendable(conn, t.id)?
                {
                    problems.add(
                        "message.template",
                        format!("The template cannot be sent yet: {reason}"),
                    );
                }
            }
        }
    }
    if let Some(at) = row.send_at
        && at < now() - Duration::minutes(1)
    {
        problems.add(
            "schedule.at",
            "The start time has passed; choose a new time or clear it to send on launch.",
        );
    }
    if let Some(exp) = row.expires_at
        && exp <= now()
    {
        problems.add("schedule.expires_at", "The expiry has passed.");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid_fields("not_launchable", problems))
    }
}

/// Freezes the audience and moves the broadcast on (in the caller's transaction). Refuses an
/// empty audience, leaving nothing behind.
fn freeze_and_start(
    change: &mut Change<'_>,
    row: &BroadcastRow,
    from: BroadcastState,
) -> ServiceResult<Launched> {
    let conn = &mut *change.conn;
    let (audience, message) = parse_stored(row)?;
    let channel = channels::find(conn, row.channel_id)?
        .ok_or_else(|| ServiceError::not_found("Its channel"))?;
    let mut timing = row.timing();
    // In local time the start is the first recipient's, known once the audience is frozen: the
    // scheduler starts it then (at once when it has come).
    let scheduled = timing.local_time.is_some() || row.send_at.is_some_and(|at| at > now());
    let to = if scheduled {
        BroadcastState::Scheduled
    } else {
        BroadcastState::Running
    };
    if !store::transition(conn, row.id, &[from], to)? {
        return Err(ServiceError::conflict(
            "already_launched",
            "This broadcast was launched already.",
        ));
    }
    let ctx = audience_context(conn, row.id, &audience, &channel, &message)?;
    let frozen = store::freeze(conn, row.id, &audience, &ctx)?;
    if !store::has_pending(conn, row.id)? {
        let why = if frozen == 0 {
            "The audience is empty: no contact matches it.".to_owned()
        } else {
            format!("Every one of the {frozen} contacts it matches is excluded (see the estimate).")
        };
        return Err(ServiceError::invalid_fields("empty_audience", {
            let mut p = FieldProblems::new();
            p.add("audience", why);
            p
        }));
    }
    let mut send_at = row.send_at;
    if timing.is_used() {
        timing.zones = broadcast_zones::assign(conn, row.id, &row.time_zone)?;
        if let Some(local) = timing.local_time {
            let zones: Vec<chrono_tz::Tz> = timing
                .zones
                .iter()
                .filter_map(|z| parse_zone(z).ok())
                .collect();
            send_at = first_start(local, &zones)
                .map(|t| t.naive_utc())
                .or(send_at);
        }
        let stored = serde_json::to_string(&timing).map_err(ServiceError::internal)?;
        broadcast_zones::set_timing(conn, row.id, &stored)?;
    }
    store::set_launched(conn, row.id, frozen as i64, send_at)?;
    change.audit(
        "broadcast.launched",
        "broadcast",
        Some(&row.public_id),
        serde_json::json!({ "recipients": frozen, "state": to.as_str() }),
    )?;
    Ok(if scheduled {
        Launched::Scheduled
    } else {
        Launched::Running
    })
}

/// Launches a draft: with launch approval on, it waits for a reviewer; otherwise the audience
/// is frozen and it starts now or at its time.
pub async fn launch(
    svc: &Services,
    actor: Actor,
    public_id: String,
) -> ServiceResult<(Launched, BroadcastView)> {
    let (launched, row) = svc
        .write(actor, move |change| {
            let row = find_row(change.conn, &public_id)?;
            match row.state() {
                BroadcastState::Draft => {}
                BroadcastState::PendingApproval => {
                    return Err(ServiceError::conflict(
                        "awaiting_approval",
                        "This broadcast is waiting for approval.",
                    ));
                }
                _ => {
                    return Err(ServiceError::conflict(
                        "already_launched",
                        "This broadcast was launched already.",
                    ));
                }
            }
            check_launchable(change.conn, &row)?;
            let launched = if read_settings(change.conn)?.launch_approval {
                if !store::transition(
                    change.conn,
                    row.id,
                    &[BroadcastState::Draft],
                    BroadcastState::PendingApproval,
                )? {
                    return Err(ServiceError::conflict(
                        "already_launched",
                        "This broadcast was launched already.",
                    ));
                }
                store::set_review(change.conn, row.id, user_id(change.actor), None, None)?;
                change.audit(
                    "broadcast.approval_requested",
                    "broadcast",
                    Some(&row.public_id),
                    serde_json::json!({}),
                )?;
                Launched::AwaitingApproval
            } else {
                freeze_and_start(change, &row, BroadcastState::Draft)?
            };
            Ok((launched, find_row(change.conn, &public_id)?))
        })
        .await?;
    feed::wake(svc);
    Ok((launched, view(svc, row).await?))
}

/// Approves (launches) or rejects a broadcast waiting for approval. The reviewer must not be
/// the person who composed it or asked for the launch.
pub async fn review(
    svc: &Services,
    actor: Actor,
    public_id: String,
    approve: bool,
    note: String,
) -> ServiceResult<BroadcastView> {
    let row = svc
        .write(actor, move |change| {
            let row = find_row(change.conn, &public_id)?;
            if row.state() != BroadcastState::PendingApproval {
                return Err(ServiceError::conflict(
                    "not_awaiting_approval",
                    "This broadcast is not waiting for approval.",
                ));
            }
            let me = user_id(change.actor);
            if me.is_some() && (me == row.created_by || me == row.approval_requested_by) {
                return Err(ServiceError::Forbidden(
                    "Someone other than its author approves a broadcast.".into(),
                ));
            }
            let note = note.trim().to_owned();
            if !approve && note.is_empty() {
                let mut p = FieldProblems::new();
                p.add("note", "Say why, so the author can fix it.");
                return Err(ServiceError::invalid_fields("note_required", p));
            }
            let label = change.actor.label.clone();
            store::set_review(
                change.conn,
                row.id,
                row.approval_requested_by,
                Some(&label),
                (!note.is_empty()).then_some(note.as_str()),
            )?;
            if approve {
                check_launchable(change.conn, &row)?;
                change.audit(
                    "broadcast.approved",
                    "broadcast",
                    Some(&row.public_id),
                    serde_json::json!({ "note": note }),
                )?;
                freeze_and_start(change, &row, BroadcastState::PendingApproval)?;
            } else {
                store::transition(
                    change.conn,
                    row.id,
                    &[BroadcastState::PendingApproval],
                    BroadcastState::Draft,
                )?;
                change.audit(
                    "broadcast.rejected",
                    "broadcast",
                    Some(&row.public_id),
                    serde_json::json!({ "note": note }),
                )?;
            }
            find_row(change.conn, &public_id)
        })
        .await?;
    feed::wake(svc);
    view(svc, row).await
}

/// Pauses in the caller's transaction: nothing new is claimed (queued messages are held), what
/// is being sent finishes.
pub(crate) fn pause_in(
    change: &mut Change<'_>,
    row: &BroadcastRow,
    reason: Option<&str>,
) -> ServiceResult<bool> {
    if !store::transition(
        change.conn,
        row.id,
        &[BroadcastState::Running, BroadcastState::Scheduled],
        BroadcastState::Paused,
    )? {
        return Ok(false);
    }
    store::hold_queued(change.conn, row.id)?;
    if let Some(reason) = reason {
        store::set_pause_reason(change.conn, row.id, reason)?;
    }
    change.audit(
        "broadcast.paused",
        "broadcast",
        Some(&row.public_id),
        serde_json::json!({ "reason": reason }),
    )?;
    Ok(true)
}

/// Which control a person or client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

/// Pause, resume or cancel. Asking for the state a broadcast is already in answers with it
/// unchanged (a double click is not an error); asking what its state does not allow is a
/// conflict.
pub async fn control(
    svc: &Services,
    actor: Actor,
    public_id: String,
    what: Control,
) -> ServiceResult<BroadcastView> {
    let row = svc
        .write(actor, move |change| {
            let row = find_row(change.conn, &public_id)?;
            let state = row.state();
            match what {
                Control::Pause => {
                    if state == BroadcastState::Paused {
                        return Ok(row);
                    }
                    if !pause_in(change, &row, None)? {
                        return Err(ServiceError::conflict(
                            "not_running",
                            format!(
                                "A {} broadcast cannot be paused.",
                                state.label().to_lowercase()
                            ),
                        ));
                    }
                }
                Control::Resume => {
                    if matches!(state, BroadcastState::Running | BroadcastState::Scheduled) {
                        return Ok(row);
                    }
                    if state != BroadcastState::Paused {
                        return Err(ServiceError::conflict(
                            "not_paused",
                            format!(
                                "A {} broadcast cannot be resumed.",
                                state.label().to_lowercase()
                            ),
                        ));
                    }
                    check_launchable_to_resume(change.conn, &row)?;
                    let to = if row.started_at.is_none() && row.send_at.is_some_and(|t| t > now()) {
                        BroadcastState::Scheduled
                    } else {
                        BroadcastState::Running
                    };
                    store::transition(change.conn, row.id, &[BroadcastState::Paused], to)?;
                    store::release_held(change.conn, row.id)?;
                    store::set_resumed(change.conn, row.id)?;
                    change.audit(
                        "broadcast.resumed",
                        "broadcast",
                        Some(&row.public_id),
                        serde_json::json!({}),
                    )?;
                }
                Control::Cancel => {
                    if state == BroadcastState::Cancelled {
                        return Ok(row);
                    }
                    if state == BroadcastState::Completed {
                        return Err(ServiceError::conflict(
                            "already_completed",
                            "This broadcast has completed; there is nothing left to cancel.",
                        ));
                    }
                    store::transition(
                        change.conn,
                        row.id,
                        &[
                            BroadcastState::Draft,
                            BroadcastState::PendingApproval,
                            BroadcastState::Scheduled,
                            BroadcastState::Running,
                            BroadcastState::Paused,
                        ],
                        BroadcastState::Cancelled,
                    )?;
                    let closed =
                        store::close_pending(change.conn, row.id, "cancelled", "cancelled")?;
                    let withdrawn = store::withdraw_queued(
                        change.conn,
                        row.id,
                        "The broadcast was cancelled.",
                    )?;
                    change.audit(
                        "broadcast.cancelled",
                        "broadcast",
                        Some(&row.public_id),
                        serde_json::json!({ "not_sent": closed + withdrawn }),
                    )?;
                }
            }
            find_row(change.conn, &public_id)
        })
        .await?;
    feed::wake(svc);
    view(svc, row).await
}

/// A paused broadcast resumes only when what paused it is fixed (the channel enabled, the
/// template sendable).
fn check_launchable_to_resume(conn: &mut DbConnection, row: &BroadcastRow) -> ServiceResult<()> {
    let mut row = row.clone();
    // The start time may have passed while it was paused: that is fine for a resume.
    row.send_at = None;
    check_launchable(conn, &row)
}

/// The variables for one contact, from the broadcast's mapping; `column:<header>` keys read
/// the recipient's row of a CSV audience (`csv`, none when the contact has no row).
pub fn variables_for(
    mapping: &VariableMapping,
    contact: &contacts::Contact,
    csv: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Variables, String> {
    resolve(mapping, &|key| match column_key(key) {
        Some(header) => csv.and_then(|row| row.get(header).cloned()),
        None => contact.value_of(key),
    })
    .map_err(|e| e.to_string())
}

/// Sends the broadcast's message to a few chosen contacts now, marked as a test: through the
/// ordinary send path (policy and all), not counted in the broadcast.
pub async fn test_send(
    svc: &Services,
    actor: Actor,
    public_id: String,
    contact_ids: Vec<String>,
) -> ServiceResult<Vec<Result<String, String>>> {
    if contact_ids.is_empty() || contact_ids.len() > 10 {
        return Err(ServiceError::invalid(
            "invalid_test",
            "Choose one to ten contacts to send the test to.",
        ));
    }
    let b = get(svc, public_id).await?;
    let mut results = Vec::new();
    for id in contact_ids {
        let lookup = id.clone();
        let contact = svc
            .read(move |conn| Ok(contacts::find_by_public_id(conn, lookup.trim())?))
            .await?;
        let Some(contact) = contact else {
            results.push(Err(format!("There is no contact {id}.")));
            continue;
        };
        let audience = b.audience.clone();
        let contact_id = contact.id;
        let row_values = svc
            .read(move |conn| csv::variables_of(conn, &audience, &[contact_id]))
            .await?;
        let content = match &b.message {
            BroadcastMessage::Text { text } => ContentRequest::Text(text.clone()),
            BroadcastMessage::Template {
                template,
                variables,
                ..
            } => match variables_for(variables, &contact, row_values.get(&contact.id)) {
                Ok(values) => ContentRequest::Template {
                    template: TemplateRef::Id(template.clone()),
                    variables: values,
                },
                Err(e) => {
                    results.push(Err(format!("{}: {e}", contact.display_name())));
                    continue;
                }
            },
        };
        let request = SendRequest {
            recipient: Recipient::Contact(contact.public_id.clone()),
            channel: b.channel.public_id.clone(),
            content,
            send_at: None,
        };
        let tester = Actor {
            label: format!("{} (test of broadcast \"{}\")", actor.label, b.row.name),
            ..actor.clone()
        };
        match sends::send(svc, tester, request, None).await {
            Ok(q) => results.push(Ok(q.message.public_id)),
            Err(e) => results.push(Err(format!("{}: {e}", contact.display_name()))),
        }
    }
    Ok(results)
}

/// The message as one real recipient would get it.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Which recipient (0-based) of the reach this is.
    pub index: i64,
    pub contact: contacts::Contact,
    /// The text they would read, or why they could not get it.
    pub text: Result<String, String>,
}

/// Renders the message for the `index`-th recipient the audience reaches now (none when the
/// audience has fewer).
pub async fn preview(
    svc: &Services,
    public_id: String,
    index: i64,
) -> ServiceResult<Option<Preview>> {
    svc.read(move |conn| {
        let row = find_row(conn, &public_id)?;
        let (audience, message) = parse_stored(&row)?;
        let channel = channels::find(conn, row.channel_id)?
            .ok_or_else(|| ServiceError::not_found("Its channel"))?;
        let ctx = audience_context(conn, row.id, &audience, &channel, &message)?;
        let Some(contact_id) = store::sample(conn, &audience, &ctx, index)? else {
            return Ok(None);
        };
        let Some(contact) = contacts::find(conn, contact_id)? else {
            return Ok(None);
        };
        let row_values = csv::variables_of(conn, &audience, &[contact.id])?;
        let text = match &message {
            BroadcastMessage::Text { text } => Ok(text.clone()),
            BroadcastMessage::Template {
                template,
                variables,
                ..
            } => match templates::find_by_public_id(conn, template)? {
                None => Err("The template no longer exists.".to_owned()),
                Some(t) => match templates::sendable(conn, t.id)? {
                    TemplateLookup::Sendable(s) => {
                        variables_for(variables, &contact, row_values.get(&contact.id))
                            .and_then(|v| s.render(&v).map(|r| r.text).map_err(|e| e.to_string()))
                    }
                    TemplateLookup::NotSendable { reason, .. } => {
                        Err(format!("The template cannot be sent yet: {reason}"))
                    }
                    TemplateLookup::NotFound => Err("The template no longer exists.".to_owned()),
                },
            },
        };
        Ok(Some(Preview {
            index,
            contact,
            text,
        }))
    })
    .await
}

/// The contacts with these phone numbers (as typed, any format), or what was not found.
pub async fn contacts_by_phone(
    svc: &Services,
    phones: Vec<String>,
) -> ServiceResult<Vec<Result<String, String>>> {
    let country = svc.settings.default_country;
    svc.read(move |conn| {
        let mut out = Vec::new();
        for raw in phones.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            match crate::domain::phone::E164::parse(raw, Some(country)) {
                Err(e) => out.push(Err(format!("{raw}: {e}"))),
                Ok(phone) => match contacts::find_by_phone(conn, &phone)? {
                    Some(c) => out.push(Ok(c.public_id)),
                    None => out.push(Err(format!("{raw}: no contact has this number."))),
                },
            }
        }
        Ok(out)
    })
    .await
}
