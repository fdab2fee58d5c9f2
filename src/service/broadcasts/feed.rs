//! The broadcast scheduler: starts scheduled broadcasts when their time comes, and turns a
//! running broadcast's pending recipients into queued messages, a batch at a time and only
//! about two seconds of the channel's rate ahead (the dispatcher claims a channel's single sends
//! before its broadcast messages, so a single send never waits behind them). Each batch is
//! one transaction (on SQLite a savepoint in the write lane's, see [`step`]): the messages and
//! their recipients' `queued` mark commit together, so a crash neither loses nor repeats one.
//!
//! Each step also checks what would make sending wrong: the channel disabled, the template
//! no longer sendable, too many failures, the expiry passed. It pauses (or expires) the
//! broadcast with the reason instead of sending. It runs in `herald serve` (with the worker)
//! and in `herald worker`; several instances may run it at once: every change is conditional
//! on the broadcast's state, and the database refuses a second message for one recipient.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use super::{FAILURE_WINDOW, pause_in, read_settings, variables_for};
use crate::dispatch::worker::Dispatcher;
use crate::domain::audit::Actor;
use crate::domain::broadcast::{BroadcastMessage, BroadcastState, parse_zone};
use crate::domain::content::MessageContent;
use crate::domain::local_time::{Timing, zone_state};
use crate::domain::message::MessageSource;
use crate::service::{Change, ServiceError, ServiceResult, Services, write};
use crate::storage::broadcasts::{self as store, BroadcastRow};
use crate::storage::channels::{self, Channel};
use crate::storage::outbox::{self, NewMessage};
use crate::storage::templates::{self, SendableTemplate, TemplateLookup};
use crate::storage::{Db, DbConnection, broadcast_zones, contacts, now};

/// The most messages one step queues for one broadcast.
const MAX_BATCH: i64 = 1000;

fn waker() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// Wakes the scheduler now (a broadcast was launched, resumed or changed).
pub fn wake(_svc: &Services) {
    waker().notify_waiters();
}

/// How many of a broadcast's messages may be queued or in flight at once: about two seconds
/// of the channel's rate (at least 20, at most [`MAX_BATCH`] x 4). Single sends do not wait
/// behind them (the dispatcher claims those first), so the look-ahead only has to keep the
/// outbox from running dry between two steps while the dispatcher holds part of it in flight.
pub fn lookahead(channel: &Channel) -> i64 {
    (2 * i64::from(channel.rate_limit_per_second)).clamp(20, MAX_BATCH * 4)
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    pub started: usize,
    pub queued: usize,
    pub skipped: usize,
    pub completed: usize,
    pub paused: usize,
    /// Broadcasts still running after the step.
    pub running: usize,
    /// Running broadcasts whose every pending recipient waits for their local time or the end
    /// of quiet hours (the scheduler need not step at once for them).
    pub waiting: usize,
}

/// One deterministic step (tests drive it; the run loop repeats it).
///
/// On SQLite the step takes its turn in the write lane (`storage::group`), with the
/// dispatcher's claims and outcomes and the API's sends, instead of writing its batch on a
/// connection of its own ([`Db::write_beside_lane`]): a batch written beside the lane held the
/// broadcast to a fifth of the dispatcher's rate. Its transaction is then a savepoint in the
/// lane's, which commits as a whole: a batch's messages and its recipients' `queued` mark
/// still commit together.
pub async fn step(db: &Db, dispatcher: &Dispatcher) -> ServiceResult<Step> {
    let done = db.write_beside_lane(step_in).await?;
    if done.queued > 0 {
        dispatcher.wake();
    }
    Ok(done)
}

/// How long the scheduler waits between steps while broadcasts run and the last step did not
/// fill a batch. Shorter than the time the dispatcher takes to send a look-ahead's worth at a
/// high rate (2,000 messages at 10,000/s: 200 ms), so that the outbox never runs dry between
/// two steps.
const BUSY_PAUSE: Duration = Duration::from_millis(40);

/// Runs steps until `stop` turns true: at once again after a step that queued a full batch
/// (there may be room for more), every [`BUSY_PAUSE`] while broadcasts run, every second
/// otherwise, and at once when woken.
pub async fn run(db: Db, dispatcher: Dispatcher, mut stop: watch::Receiver<bool>) {
    loop {
        let pause = match step(&db, &dispatcher).await {
            Ok(s) if s.queued >= MAX_BATCH as usize => Duration::ZERO,
            Ok(s) if s.running > 0 => BUSY_PAUSE,
            Ok(_) => Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = ?e, "a broadcast step failed; trying again");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = waker().notified() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

fn scheduler() -> Actor {
    Actor::system("broadcast scheduler")
}

fn step_in(conn: &mut DbConnection) -> ServiceResult<Step> {
    let actor = scheduler();
    let mut done = Step::default();
    let at = now();
    for b in store::in_state(conn, BroadcastState::Scheduled)? {
        if b.send_at.is_some_and(|t| t <= at) {
            let started = write(conn, &actor, |change| {
                let moved = store::transition(
                    change.conn,
                    b.id,
                    &[BroadcastState::Scheduled],
                    BroadcastState::Running,
                )?;
                if moved {
                    change.audit(
                        "broadcast.started",
                        "broadcast",
                        Some(&b.public_id),
                        serde_json::json!({}),
                    )?;
                }
                Ok(moved)
            })?;
            done.started += usize::from(started);
        }
    }
    for b in store::in_state(conn, BroadcastState::Running)? {
        let fed = write(conn, &actor, |change| feed_one(change, b.id))?;
        done.queued += fed.queued;
        done.skipped += fed.skipped;
        done.completed += fed.completed;
        done.paused += fed.paused;
        done.waiting += fed.waiting;
        done.running += usize::from(fed.completed == 0 && fed.paused == 0 && fed.waiting == 0);
    }
    Ok(done)
}

/// Pauses with a reason a person can act on.
fn auto_pause(change: &mut Change<'_>, row: &BroadcastRow, reason: &str) -> ServiceResult<Step> {
    let paused = pause_in(change, row, Some(reason))?;
    if paused {
        tracing::info!(broadcast = %row.public_id, reason, "broadcast paused");
    }
    Ok(Step {
        paused: usize::from(paused),
        ..Step::default()
    })
}

/// The template to render, or why the broadcast must pause.
fn sendable_template(
    conn: &mut DbConnection,
    public_id: &str,
) -> ServiceResult<Result<Box<SendableTemplate>, String>> {
    let Some(t) = templates::find_by_public_id(conn, public_id)? else {
        return Ok(Err("The template was deleted.".into()));
    };
    Ok(match templates::sendable(conn, t.id)? {
        TemplateLookup::Sendable(s) => Ok(s),
        TemplateLookup::NotSendable { reason, .. } => Err(format!(
            "The template \"{}\" cannot be sent now: {reason} Resume once it is approved again.",
            t.name
        )),
        TemplateLookup::NotFound => Err("The template was deleted.".into()),
    })
}

/// One broadcast's step, in one transaction.
fn feed_one(change: &mut Change<'_>, broadcast_id: i64) -> ServiceResult<Step> {
    // Taking the row (a write on it) first: on PostgreSQL two instances' steps for one
    // broadcast wait for each other here instead of both reading the same pending rows.
    if !store::touch_running(change.conn, broadcast_id)? {
        return Ok(Step::default());
    }
    let row = store::find(change.conn, broadcast_id)?
        .ok_or_else(|| ServiceError::not_found("The broadcast"))?;
    let channel = channels::find(change.conn, row.channel_id)?
        .ok_or_else(|| ServiceError::not_found("Its channel"))?;
    if !channel.is_enabled() {
        let reason = format!(
            "The channel \"{}\" was disabled. Resume once it is enabled again.",
            channel.name
        );
        return auto_pause(change, &row, &reason);
    }
    if row.expires_at.is_some_and(|t| t <= now()) {
        return expire(change, &row);
    }
    let message: BroadcastMessage =
        serde_json::from_str(&row.message).map_err(ServiceError::internal)?;
    let template = match &message {
        BroadcastMessage::Template { template, .. } => {
            match sendable_template(change.conn, template)? {
                Ok(t) => Some(t),
                Err(reason) => return auto_pause(change, &row, &reason),
            }
        }
        BroadcastMessage::Text { .. } => None,
    };
    let settings = read_settings(change.conn)?;
    let since = row.resumed_at.or(row.started_at);
    if let Some((code, words)) = store::template_refusal(change.conn, row.id, since)? {
        let reason = format!(
            "The provider refused the template (code {code}: {words}). Resume once the template can be sent again."
        );
        return auto_pause(change, &row, &reason);
    }
    let (failed, finished) = store::recent_failures(change.conn, row.id, since, FAILURE_WINDOW)?;
    if finished >= 50 && failed * 100 >= settings.failure_pause_percent * finished {
        let reason = format!(
            "{failed} of the last {finished} messages failed (the limit is {}%). Check the failures, then resume.",
            settings.failure_pause_percent
        );
        return auto_pause(change, &row, &reason);
    }

    let in_flight = store::in_flight(change.conn, row.id)?;
    let mut room = (lookahead(&channel) - in_flight).min(MAX_BATCH);
    if room <= 0 {
        return Ok(Step::default());
    }
    if template.is_some()
        && let Some(limit) = messaging_limit(&channel)
    {
        let accounts = same_business_account(change.conn, &channel)?;
        let since = now() - chrono::Duration::hours(24);
        let (used, oldest) = store::business_initiated(change.conn, &accounts, since)?;
        let left = limit - used;
        if left <= 0 {
            let until = oldest
                .map(|t| t + chrono::Duration::hours(24))
                .unwrap_or_else(now);
            let note = format!(
                "Waiting for WhatsApp's messaging limit ({limit} customers per 24 hours, all used): it goes on at about {} UTC.",
                until.format("%Y-%m-%d %H:%M")
            );
            if row.pause_reason.as_deref() != Some(note.as_str()) {
                store::set_pause_reason(change.conn, row.id, &note)?;
            }
            return Ok(Step::default());
        }
        room = room.min(left);
    }
    let timing = row.timing();
    let (zones, next_ready) = if timing.is_used() {
        let (ready, next) = ready_zones(&row, &timing);
        (Some(ready), next)
    } else {
        (None, None)
    };
    let batch = match &zones {
        Some(ready) if ready.is_empty() => Vec::new(),
        Some(ready) => broadcast_zones::next_pending_in(change.conn, row.id, ready, room)?,
        None => store::next_pending(change.conn, row.id, room)?,
    };
    if batch.is_empty() {
        if in_flight == 0 && (zones.is_none() || !store::has_pending(change.conn, row.id)?) {
            return complete(change, &row);
        }
        if zones.is_some() && in_flight == 0 {
            // Everyone left waits for their local time or the end of quiet hours.
            let note = waiting_note(&timing, next_ready.unwrap_or_else(Utc::now));
            if row.pause_reason.as_deref() != Some(note.as_str()) {
                store::set_pause_reason(change.conn, row.id, &note)?;
            }
            return Ok(Step {
                waiting: 1,
                ..Step::default()
            });
        }
        return Ok(Step::default());
    }
    if row.pause_reason.is_some() {
        store::clear_pause_reason(change.conn, row.id)?;
    }
    let at = now();
    if let (BroadcastMessage::Text { text }, DbConnection::Sqlite(_)) = (&message, &*change.conn) {
        // SQLite, whose one writer is the bound: the database writes the batch from the
        // recipients' rows (no contact read, rendered or bound here, in the write lane).
        let content = serde_json::to_string(&MessageContent::Text { body: text.clone() })
            .map_err(ServiceError::internal)?;
        let ids: Vec<i64> = batch.iter().map(|(r, _)| *r).collect();
        let queued = store::queue_text(
            change.conn,
            row.id,
            channel.id,
            &ids,
            text,
            &content,
            &format!("Broadcast \"{}\"", row.name),
            at,
        )?;
        mark_batch_queued(change.conn, row.id, zones.is_some(), &batch)?;
        tracing::debug!(broadcast = %row.public_id, queued, at = %Utc::now(), "broadcast batch queued");
        return Ok(Step {
            queued,
            ..Step::default()
        });
    }
    let ids: Vec<i64> = batch.iter().map(|(_, c)| *c).collect();
    let people: std::collections::HashMap<i64, contacts::Contact> =
        contacts::by_ids(change.conn, &ids)?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
    // Issue 17: a CSV audience's variables, for the whole batch in one read.
    let audience: crate::domain::broadcast::Audience =
        serde_json::from_str(&row.audience).map_err(ServiceError::internal)?;
    let row_values = super::csv::variables_of(change.conn, &audience, &ids)?;
    let requested_by = format!("Broadcast \"{}\"", row.name);
    let mut step = Step::default();
    // Rendered first, then written in a few multi-row statements (`outbox::enqueue_many`).
    let mut rendered_all: Vec<(&contacts::Contact, String, String, Option<i64>)> =
        Vec::with_capacity(batch.len());
    for (recipient_id, contact_id) in &batch {
        let Some(contact) = people.get(contact_id) else {
            // Deleted since the launch (its recipient row went with it).
            continue;
        };
        let rendered = match (&message, &template) {
            (BroadcastMessage::Text { text }, _) => Ok((
                MessageContent::Text { body: text.clone() },
                text.clone(),
                None,
            )),
            (
                BroadcastMessage::Template {
                    variables,
                    window_text,
                    ..
                },
                Some(t),
            ) => variables_for(variables, contact, row_values.get(contact_id))
                .and_then(|v| t.render(&v).map_err(|e| e.to_string()))
                .map(|r| {
                    let content = match r.content {
                        MessageContent::Template(mut c) => {
                            c.window_text.clone_from(window_text);
                            MessageContent::Template(c)
                        }
                        other => other,
                    };
                    (content, r.text, Some(t.template_id))
                }),
            (BroadcastMessage::Template { .. }, None) => Err("no template".to_owned()),
        };
        let (content, text, template_id) = match rendered {
            Ok(r) => r,
            Err(_) => {
                store::set_recipient(
                    change.conn,
                    *recipient_id,
                    "skipped",
                    crate::domain::broadcast::Exclusion::MissingVariable.as_str(),
                )?;
                step.skipped += 1;
                continue;
            }
        };
        let content_json = serde_json::to_string(&content).map_err(ServiceError::internal)?;
        rendered_all.push((contact, content_json, text, template_id));
    }
    let messages: Vec<NewMessage<'_>> = rendered_all
        .iter()
        .map(|(contact, content_json, text, template_id)| NewMessage {
            channel_id: channel.id,
            contact_id: contact.id,
            to_address: contact.phone.as_str(),
            campaign_id: Some(row.id),
            template_id: *template_id,
            content_kind: if template_id.is_some() {
                "template"
            } else {
                "text"
            },
            body: text,
            content: content_json,
            idempotency_key: None,
            requested_by: &requested_by,
            resend_of: None,
            not_before: at,
            request_hash: None,
            source: MessageSource::Broadcast,
        })
        .collect();
    step.queued += outbox::enqueue_many(change.conn, &messages)?;
    mark_batch_queued(change.conn, row.id, zones.is_some(), &batch)?;
    tracing::debug!(broadcast = %row.public_id, queued = step.queued, at = %Utc::now(), "broadcast batch queued");
    Ok(step)
}

/// The batch's pending recipients become queued (their messages written in the same
/// transaction).
fn mark_batch_queued(
    conn: &mut DbConnection,
    broadcast_id: i64,
    by_zone: bool,
    batch: &[(i64, i64)],
) -> ServiceResult<()> {
    if by_zone {
        // Taken zone by zone: ids of other zones lie between them.
        let ids: Vec<i64> = batch.iter().map(|(r, _)| *r).collect();
        broadcast_zones::mark_queued(conn, &ids)?;
    } else if let (Some((first, _)), Some((last, _))) = (batch.first(), batch.last()) {
        store::mark_queued(conn, broadcast_id, *first, *last)?;
    }
    Ok(())
}

/// The zones whose recipients may be sent to now, and the first time another zone may be.
fn ready_zones(row: &BroadcastRow, timing: &Timing) -> (Vec<String>, Option<DateTime<Utc>>) {
    let fallback = parse_zone(&row.time_zone).unwrap_or(chrono_tz::Tz::UTC);
    let at = Utc::now();
    let mut ready = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for name in &timing.zones {
        let zone = parse_zone(name).unwrap_or(fallback);
        match zone_state(timing, zone, at).waits_until() {
            None => ready.push(name.clone()),
            Some(t) => next = Some(next.map_or(t, |n| n.min(t))),
        }
    }
    (ready, next)
}

/// What the broadcast's page says while every recipient left waits for their time.
fn waiting_note(timing: &Timing, until: DateTime<Utc>) -> String {
    let why = match (timing.local_time, timing.quiet_hours) {
        (Some(_), Some(q)) => format!(
            "their local time or the end of quiet hours ({} their time)",
            q.label()
        ),
        (Some(local), None) => format!("{} in their local time", local.format("%H:%M")),
        (None, Some(q)) => format!("the end of quiet hours ({} their time)", q.label()),
        (None, None) => "their time".to_owned(),
    };
    format!(
        "Waiting for {why}: the next recipients get it at about {} UTC.",
        until.format("%Y-%m-%d %H:%M")
    )
}

/// The messaging limit set on a WhatsApp channel (`messaging_limit`), if any.
pub fn messaging_limit(channel: &Channel) -> Option<i64> {
    if channel.kind != crate::domain::channel::ChannelKind::Whatsapp {
        return None;
    }
    let settings: serde_json::Value = serde_json::from_str(&channel.settings).ok()?;
    let raw = match settings.get("messaging_limit")? {
        serde_json::Value::String(s) => s.trim().replace(',', ""),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    raw.parse::<i64>().ok().filter(|n| *n > 0)
}

/// The WhatsApp channels of the same business account (the same `waba_id`), this one
/// included: the messaging limit is the account's.
fn same_business_account(conn: &mut DbConnection, channel: &Channel) -> ServiceResult<Vec<i64>> {
    let waba = |c: &Channel| -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&c.settings)
            .ok()?
            .get("waba_id")?
            .as_str()
            .map(str::to_owned)
    };
    let mine = waba(channel);
    let mut ids = vec![channel.id];
    if mine.is_some() {
        for c in channels::list(conn)? {
            if c.id != channel.id && c.kind == channel.kind && waba(&c) == mine {
                ids.push(c.id);
            }
        }
    }
    Ok(ids)
}

fn complete(change: &mut Change<'_>, row: &BroadcastRow) -> ServiceResult<Step> {
    let moved = store::transition(
        change.conn,
        row.id,
        &[BroadcastState::Running],
        BroadcastState::Completed,
    )?;
    if moved {
        change.audit(
            "broadcast.completed",
            "broadcast",
            Some(&row.public_id),
            serde_json::json!({}),
        )?;
    }
    Ok(Step {
        completed: usize::from(moved),
        ..Step::default()
    })
}

/// Past its expiry: what was not sent becomes `expired` (queued messages are withdrawn), and
/// the broadcast completes once what is being sent has its outcome.
fn expire(change: &mut Change<'_>, row: &BroadcastRow) -> ServiceResult<Step> {
    let closed = store::close_pending(change.conn, row.id, "expired", "expired")?;
    let withdrawn = store::withdraw_queued(
        change.conn,
        row.id,
        "The broadcast expired before this message was sent.",
    )?;
    if closed + withdrawn > 0 {
        change.audit(
            "broadcast.expired",
            "broadcast",
            Some(&row.public_id),
            serde_json::json!({ "not_sent": closed + withdrawn }),
        )?;
    }
    if store::in_flight(change.conn, row.id)? == 0 {
        return complete(change, row);
    }
    Ok(Step::default())
}
