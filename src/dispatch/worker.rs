//! The outbox worker. Per channel, a lane claims due messages in short transactions, asks the
//! policy again, takes send slots from the channel's shared schedule (its rate limit), and sends
//! many messages at once with no transaction open; one writer records the outcomes in batches.
//! A message is held `sending` from its claim until its outcome is written, so at most
//! `max_in_flight` messages per channel can be caught by a crash: those become `unknown`, never
//! resent on their own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::channels::{Adapter, ChannelAdapter, ErrorClass, OutboundMessage, SendDisposition};
use crate::dispatch::error::DispatchError;
use crate::dispatch::events;
use crate::dispatch::hub::{EventHub, HubEvent};
use crate::dispatch::metrics::{ChannelLabels, Metrics};
use crate::dispatch::registry::ChannelRegistry;
use crate::domain::channel::ChannelKind;
use crate::domain::consent::{ConsentSource, ConsentStatus};
use crate::domain::content::MessageContent;
use crate::domain::message::MessageStatus;
use crate::domain::phone::E164;
use crate::domain::policy::{self, ContentIntent, SendContext};
use crate::domain::retry::{self, RetryPolicy};
use crate::domain::window;
use crate::storage::channels::{self, Channel};
use crate::storage::messages::MessageRow;
use crate::storage::outbox::{self, Outcome};
use crate::storage::templates::{self, TemplateLookup};
use crate::storage::{Backend, Db, DbConnection, consents, conversations};

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Messages one channel may have between claim and recorded outcome.
    pub max_in_flight: usize,
    /// The most messages claimed at once.
    pub claim_batch: usize,
    /// How long a claim holds a message (longer than any send can take).
    pub lease: Duration,
    /// How often an idle lane looks for due messages (queueing in this process wakes it).
    pub idle_poll: Duration,
    pub heartbeat_every: Duration,
    /// A worker silent this long is dead: the messages it held become `unknown`.
    pub dead_after: Duration,
    /// A send may start at most this long after its slot; a later one takes a new slot.
    /// Together with [`slot_interval_us`] this keeps every one-second window within the limit.
    pub late_tolerance: Duration,
    pub retry: RetryPolicy,
}

impl DispatchConfig {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        DispatchConfig {
            max_in_flight: settings.max_in_flight,
            claim_batch: settings.max_in_flight.min(256),
            lease: settings.send_timeout + Duration::from_secs(60),
            idle_poll: Duration::from_millis(200),
            heartbeat_every: Duration::from_secs(1).min(settings.worker_dead_after / 4),
            dead_after: settings.worker_dead_after,
            late_tolerance: LATE_TOLERANCE,
            retry: RetryPolicy::DEFAULT,
        }
    }
}

/// How far ahead of its send slots a lane claims messages.
const LOOKAHEAD: Duration = Duration::from_millis(200);

/// The longest a lane waits for sends to finish before claiming a smaller batch.
const BATCH_WAIT: Duration = Duration::from_millis(4);

/// On SQLite, how long the outcome writer lets a batch grow, and the size that ends the wait.
const WRITE_WAIT: Duration = Duration::from_millis(3);
const WRITE_BATCH: usize = 200;

/// How long the writer spends writing the outcomes of a failed batch one by one before it
/// leaves the rest for its next turn.
const ONE_BY_ONE_BUDGET: Duration = Duration::from_secs(2);

/// How long the writer keeps trying to record an outcome that fails to be written, and how
/// long once the dispatcher is stopping.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
const GIVE_UP_WHEN_STOPPING: Duration = Duration::from_secs(10);

/// The pause before the `failures`-th new attempt to record an outcome: 100 ms, doubling, at
/// most 5 s.
fn retry_wait(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    (Duration::from_millis(100) * 2u32.pow(doublings)).min(Duration::from_secs(5))
}

/// How late after its slot a send may still start.
const LATE_TOLERANCE: Duration = Duration::from_millis(10);

/// How far ahead a late send's new slot is taken, so it is not late again by the time it is
/// known.
const RESLOT_LEAD: Duration = Duration::from_millis(5);

/// How often a late send takes a new slot before it goes back to the queue.
const RESLOT_TRIES: u32 = 3;

/// The spacing of a channel's send slots, in microseconds.
///
/// Every send starts in `[slot, slot + tolerance]`, so a one-second window at the provider holds
/// the sends of slots in a half-open span of `1 s + tolerance`: at most
/// `ceil(rate * (1 + tolerance))`.
/// Sending at `rate = (limit - spare) / (1 + tolerance)`, with one message spare (5% of small
/// limits), keeps that below the limit with room for network jitter, and the measured rate
/// within a few percent of it (78.2/s at 80/s, 989/s at 1,000/s).
pub fn slot_interval_us(limit_per_second: i32, tolerance: Duration) -> i64 {
    let limit = f64::from(limit_per_second.max(1));
    let spare = (limit * 0.05).min(1.0);
    let rate = (limit - spare) / (1.0 + tolerance.as_secs_f64());
    ((1_000_000.0 / rate).ceil() as i64).max(1)
}

/// What one `run_once` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    pub unknown: usize,
    pub skipped: usize,
    pub released: usize,
}

impl RunSummary {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Sent { .. } => self.sent += 1,
            Outcome::Retry { .. } => self.retried += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Unknown { .. } => self.unknown += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Released { .. } => self.released += 1,
        }
    }
}

/// A finished message on its way to the writer; its permit is released once the outcome is
/// stored.
struct Done {
    channel: Arc<Channel>,
    message: MessageRow,
    outcome: Outcome,
    class: Option<ErrorClass>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Failed writes of this outcome so far, and since when.
    failures: u32,
    failing_since: Option<Instant>,
}

impl Done {
    fn new(
        channel: Arc<Channel>,
        message: MessageRow,
        outcome: Outcome,
        class: Option<ErrorClass>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Done {
            channel,
            message,
            outcome,
            class,
            _permit: permit,
            failures: 0,
            failing_since: None,
        }
    }
}

struct SendKit {
    adapter: Result<Adapter, String>,
    latency: prometheus_client::metrics::histogram::Histogram,
}

struct Inner {
    db: Db,
    registry: Arc<ChannelRegistry>,
    hub: EventHub,
    metrics: Arc<Metrics>,
    worker_id: String,
    config: DispatchConfig,
    wake: Notify,
    jitter_seed: AtomicU64,
    sent_total: AtomicU64,
}

/// The outbox worker of one process.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

/// What policy says about one claimed message.
enum Decision {
    Send(OutboundMessage),
    Outcome(Outcome),
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

impl Dispatcher {
    pub fn new(
        db: Db,
        registry: Arc<ChannelRegistry>,
        hub: EventHub,
        metrics: Arc<Metrics>,
        config: DispatchConfig,
    ) -> Self {
        Dispatcher {
            inner: Arc::new(Inner {
                db,
                registry,
                hub,
                metrics,
                worker_id: uuid::Uuid::now_v7().to_string(),
                config,
                wake: Notify::new(),
                jitter_seed: AtomicU64::new(rand::random()),
                sent_total: AtomicU64::new(0),
            }),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    pub fn hub(&self) -> &EventHub {
        &self.inner.hub
    }

    /// Messages this worker recorded as sent.
    pub fn sent_total(&self) -> u64 {
        self.inner.sent_total.load(Ordering::Relaxed)
    }

    /// Wakes idle lanes now (a message was just queued in this process).
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Registers this worker (its heartbeat is how others know it is alive).
    pub async fn register(&self) -> Result<(), DispatchError> {
        let id = self.inner.worker_id.clone();
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pid = i64::from(std::process::id());
        self.inner
            .db
            .run(move |conn| {
                Ok::<_, DispatchError>(outbox::register_worker(conn, &id, &host, pid)?)
            })
            .await?;
        Ok(())
    }

    /// One deterministic step for tests: claim every due message of every enabled channel (up
    /// to one batch each), send them all, record every outcome, and say what happened. Rate
    /// limits still apply.
    pub async fn run_once(&self) -> Result<RunSummary, DispatchError> {
        let channels = self.enabled_channels().await?;
        let mut summary = RunSummary::default();
        for channel in channels {
            let channel = Arc::new(channel);
            let prepared = self
                .claim_batch(&channel, self.inner.config.claim_batch)
                .await?;
            summary.claimed += prepared.len();
            let mut done = Vec::new();
            let mut sends = Vec::new();
            let kit = self.inner.kit(&channel);
            for (message, decision, slot) in prepared {
                match decision {
                    Decision::Outcome(outcome) => {
                        done.push(Done::new(channel.clone(), message, outcome, None, None))
                    }
                    Decision::Send(out) => {
                        let inner = self.inner.clone();
                        let channel = channel.clone();
                        let kit = kit.clone();
                        sends.push(tokio::spawn(async move {
                            let (outcome, class) = inner
                                .send_one(&channel, &kit, &message, out, slot, None)
                                .await;
                            Done::new(channel, message, outcome, class, None)
                        }));
                    }
                }
            }
            for s in sends {
                done.push(s.await.map_err(DispatchError::from)?);
            }
            for d in &done {
                summary.count(&d.outcome);
            }
            self.inner.record(done).await?;
        }
        Ok(summary)
    }

    async fn enabled_channels(&self) -> Result<Vec<Channel>, DispatchError> {
        let list = self
            .inner
            .db
            .run(|conn| Ok::<_, DispatchError>(channels::list(conn)?))
            .await?;
        Ok(list.into_iter().filter(Channel::is_enabled).collect())
    }

    /// Claims up to `limit` due messages of the channel, asks the policy about each again
    /// (consent, window, spacing per recipient, the template's approval) and gives the ones to
    /// send their slots on the channel's shared schedule. One transaction: a failure anywhere
    /// leaves every message queued as it was.
    async fn claim_batch(
        &self,
        channel: &Arc<Channel>,
        limit: usize,
    ) -> Result<Vec<(MessageRow, Decision, Instant)>, DispatchError> {
        let ch = channel.clone();
        let worker = self.inner.worker_id.clone();
        let lease_until = (Utc::now() + self.inner.config.lease).naive_utc();
        let limit = i64::try_from(limit).unwrap_or(256);
        let interval_us = slot_interval_us(
            channel.rate_limit_per_second,
            self.inner.config.late_tolerance,
        );
        let (decided, start_us) = self
            .inner
            .db
            .run(move |conn| {
                crate::storage::write_transaction(conn, |conn| {
                    let rows = outbox::claim(conn, ch.id, &worker, limit, lease_until)?;
                    if rows.is_empty() {
                        return Ok((Vec::new(), 0));
                    }
                    let decided = decide_all(conn, &ch, rows)?;
                    let to_send = decided
                        .iter()
                        .filter(|(_, d)| matches!(d, Decision::Send(_)))
                        .count();
                    let start_us = match i64::try_from(to_send) {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => outbox::reserve_slots(conn, ch.id, n, interval_us, now_us())?,
                    };
                    Ok::<_, DispatchError>((decided, start_us))
                })
            })
            .await?;
        let mut slots = slot_instants(start_us, interval_us);
        Ok(decided
            .into_iter()
            .map(|(row, d)| {
                let slot = match &d {
                    Decision::Send(_) => slots.next().unwrap_or_else(Instant::now),
                    Decision::Outcome(_) => Instant::now(),
                };
                (row, d, slot)
            })
            .collect())
    }

    /// Runs until `stop` turns true: a lane per enabled channel, the outcome writer, and the
    /// heartbeat and reaper. On stop, lanes stop claiming, messages waiting for their slot go
    /// back to the queue untouched, sends under way finish and are recorded.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), DispatchError> {
        self.register().await?;
        let (tx, rx) = mpsc::channel::<Done>(self.inner.config.max_in_flight * 4);
        let writer = tokio::spawn(self.inner.clone().writer(rx));
        let upkeep = tokio::spawn(self.inner.clone().upkeep(stop.clone()));
        let mut lanes: HashMap<i64, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            match self.enabled_channels().await {
                Ok(list) => {
                    for channel in list {
                        let running = lanes.get(&channel.id).is_some_and(|h| !h.is_finished());
                        if !running {
                            let lane = Lane {
                                inner: self.inner.clone(),
                                channel_id: channel.id,
                                semaphore: Arc::new(Semaphore::new(
                                    self.inner.config.max_in_flight,
                                )),
                                writer: tx.clone(),
                            };
                            lanes.insert(channel.id, tokio::spawn(lane.run(stop.clone())));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = ?e, "listing channels failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        for (_, lane) in lanes {
            let _ = lane.await;
        }
        drop(tx);
        let _ = writer.await;
        let _ = upkeep.await;
        let id = self.inner.worker_id.clone();
        self.inner
            .db
            .run(move |conn| Ok::<_, DispatchError>(outbox::worker_stopped(conn, &id)?))
            .await?;
        tracing::info!(worker = %self.inner.worker_id, "dispatcher stopped");
        Ok(())
    }
}

/// What one batch looked up about its recipients and templates.
struct Known<'a> {
    /// Contacts opted out on the channel's kind.
    opted_out: &'a HashSet<i64>,
    /// The last inbound message per contact on this channel.
    windows: &'a HashMap<i64, chrono::NaiveDateTime>,
    /// Business messages per contact since its last inbound message (Viber's session).
    session: &'a HashMap<i64, Vec<i64>>,
    /// The last send per contact on this channel (WhatsApp's pair limit).
    recent: &'a HashMap<i64, chrono::NaiveDateTime>,
    /// Templates that may no longer be sent, and why.
    unsendable_templates: &'a HashMap<i64, String>,
}

/// Looks up, for one claimed batch, what the policy needs (opt-outs, windows, recent sends,
/// templates no longer sendable), then decides about each message.
fn decide_all(
    conn: &mut DbConnection,
    ch: &Channel,
    rows: Vec<MessageRow>,
) -> Result<Vec<(MessageRow, Decision)>, DispatchError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.contact_id).collect();
    let template_ids: HashSet<i64> = rows.iter().filter_map(|r| r.template_id).collect();
    let opted_out: HashSet<i64> = consents::opted_out_kinds(conn, &ids)?
        .into_iter()
        .filter(|(_, kind)| kind == ch.kind.as_str())
        .map(|(id, _)| id)
        .collect();
    let windows = if window::has_window(ch.kind) {
        conversations::windows_on_channel(conn, ch.id, &ids)?
    } else {
        HashMap::new()
    };
    // Viber's session rule: five business messages in a row, then the customer must write.
    let session = if ch.kind == ChannelKind::Viber {
        conversations::session_messages(conn, ch.id, &windows)?
    } else {
        HashMap::new()
    };
    let recent = if ch.kind == ChannelKind::Whatsapp {
        let since = (Utc::now() - retry::PAIR_SPACING).naive_utc();
        outbox::recent_sends(conn, ch.id, &ids, since)?
    } else {
        HashMap::new()
    };
    // Approved when queued, but it may have been paused, disabled or withdrawn since.
    let mut unsendable: HashMap<i64, String> = HashMap::new();
    for id in template_ids {
        match templates::sendable(conn, id)? {
            TemplateLookup::Sendable(_) => {}
            TemplateLookup::NotSendable { reason, .. } => {
                unsendable.insert(id, reason);
            }
            TemplateLookup::NotFound => {
                unsendable.insert(id, "The template was deleted.".into());
            }
        }
    }
    let known = Known {
        opted_out: &opted_out,
        windows: &windows,
        session: &session,
        recent: &recent,
        unsendable_templates: &unsendable,
    };
    let now = Utc::now();
    let mut seen_this_batch: HashSet<i64> = HashSet::new();
    Ok(rows
        .into_iter()
        .map(|row| {
            let decision = decide(ch, &row, &known, &mut seen_this_batch, now);
            (row, decision)
        })
        .collect())
}

/// Send slots `start_us`, `start_us + interval_us`, … (wall clock, µs) as monotonic instants.
fn slot_instants(start_us: i64, interval_us: i64) -> impl Iterator<Item = Instant> {
    let (wall_now, mono_now) = (now_us(), Instant::now());
    (0..).map(move |i: i64| {
        let at = start_us + i * interval_us;
        mono_now + Duration::from_micros(u64::try_from((at - wall_now).max(0)).unwrap_or(0))
    })
}

fn decide(
    channel: &Channel,
    row: &MessageRow,
    known: &Known<'_>,
    seen_this_batch: &mut HashSet<i64>,
    now: chrono::DateTime<Utc>,
) -> Decision {
    let Known {
        opted_out,
        windows,
        session,
        recent,
        unsendable_templates,
    } = known;
    let content: MessageContent = match serde_json::from_str(&row.content) {
        Ok(c) => c,
        Err(e) => {
            return Decision::Outcome(Outcome::Failed {
                code: Some("invalid_content".into()),
                message: format!("The stored message content cannot be read: {e}"),
            });
        }
    };
    // Checked when it was queued; only valid numbers are stored.
    let to = E164::from_trusted(row.to_address.clone());
    let template_problem = row.template_id.and_then(|id| unsendable_templates.get(&id));
    let intent = match &content {
        MessageContent::Text { .. } => ContentIntent::FreeText,
        MessageContent::Template(_) => ContentIntent::Template {
            sendable: template_problem.is_none(),
        },
    };
    let ctx = SendContext {
        kind: channel.kind,
        channel_enabled: channel.is_enabled(),
        consent: opted_out
            .contains(&row.contact_id)
            .then_some(ConsentStatus::OptedOut),
        window: window::state(
            channel.kind,
            windows.get(&row.contact_id).map(|t| t.and_utc()),
            now,
        ),
        // The messages of the session queued before this one.
        sent_since_last_inbound: session.get(&row.contact_id).map_or(0, |ids| {
            u32::try_from(ids.partition_point(|id| *id < row.id)).unwrap_or(u32::MAX)
        }),
    };
    if let Err(denial) = policy::may_send(&ctx, intent) {
        let message = match (denial, template_problem) {
            (policy::Denial::TemplateNotApproved, Some(why)) => format!("Not sent: {why}"),
            _ => format!("Not sent: {}", denial.message(channel.kind)),
        };
        return Decision::Outcome(Outcome::Skipped {
            code: denial.code().to_owned(),
            message,
        });
    }
    // WhatsApp's pair limit: one message per recipient per 6 seconds on a number.
    if channel.kind == ChannelKind::Whatsapp {
        let last = recent.get(&row.contact_id).map(|t| t.and_utc());
        let since = last.map(|t| (now - t).to_std().unwrap_or_default());
        let wait = retry::pair_wait(since);
        if !seen_this_batch.insert(row.contact_id) || !wait.is_zero() {
            let wait = if wait.is_zero() {
                retry::PAIR_SPACING
            } else {
                wait
            };
            return Decision::Outcome(Outcome::Released {
                at: (now + wait).naive_utc(),
            });
        }
    }
    Decision::Send(OutboundMessage {
        message_id: row.public_id.clone(),
        to,
        content,
    })
}

impl Inner {
    /// `count` send times from the channel's shared schedule, spaced at its rate, none sooner
    /// than `lead` from now.
    async fn reserve(
        &self,
        channel: &Channel,
        count: usize,
        lead: Duration,
    ) -> Result<Vec<Instant>, DispatchError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let interval_us =
            slot_interval_us(channel.rate_limit_per_second, self.config.late_tolerance);
        let (id, n) = (channel.id, i64::try_from(count).unwrap_or(i64::MAX));
        let lead_us = i64::try_from(lead.as_micros()).unwrap_or(0);
        let start_us = self
            .db
            .run(move |conn| {
                Ok::<_, DispatchError>(outbox::reserve_slots(
                    conn,
                    id,
                    n,
                    interval_us,
                    now_us() + lead_us,
                )?)
            })
            .await?;
        Ok(slot_instants(start_us, interval_us).take(count).collect())
    }

    /// Waits for the slot; a send that would start too late for it takes a new one, so a
    /// stalled process never sends in a burst. False when it gave up (stop, or no slot kept).
    async fn wait_for_slot(
        &self,
        channel: &Channel,
        mut slot: Instant,
        stop: &mut Option<watch::Receiver<bool>>,
    ) -> bool {
        for tries in 0..=RESLOT_TRIES {
            if slot > Instant::now() {
                match stop {
                    Some(stop) => tokio::select! {
                        _ = tokio::time::sleep_until(slot.into()) => {}
                        _ = stop.wait_for(|s| *s) => return false,
                    },
                    None => tokio::time::sleep_until(slot.into()).await,
                }
            }
            if Instant::now() <= slot + self.config.late_tolerance {
                return true;
            }
            if tries == RESLOT_TRIES {
                break;
            }
            self.metrics.late_slots.inc();
            match self.reserve(channel, 1, RESLOT_LEAD).await {
                Ok(new) => slot = new[0],
                Err(e) => {
                    tracing::warn!(error = ?e, "taking a new send slot failed");
                    break;
                }
            }
        }
        false
    }

    fn jitter(&self) -> f64 {
        // A cheap per-process sequence is enough to spread retries.
        let x = self
            .jitter_seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let mixed = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (mixed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Waits for the slot, sends, and says what became of the message.
    /// What every send of one batch on one channel shares (looked up once per batch).
    fn kit(&self, channel: &Channel) -> Arc<SendKit> {
        Arc::new(SendKit {
            adapter: self.registry.adapter(channel).map_err(|e| e.to_string()),
            latency: self
                .metrics
                .latency
                .get_or_create(&ChannelLabels {
                    channel: channel.name.clone(),
                })
                .clone(),
        })
    }

    async fn send_one(
        &self,
        channel: &Channel,
        kit: &SendKit,
        message: &MessageRow,
        out: OutboundMessage,
        slot: Instant,
        stop: Option<watch::Receiver<bool>>,
    ) -> (Outcome, Option<ErrorClass>) {
        let release = || Outcome::Released {
            at: Utc::now().naive_utc(),
        };
        let mut stop = stop;
        if !self.wait_for_slot(channel, slot, &mut stop).await {
            return (release(), None);
        }
        let adapter: &Adapter = match &kit.adapter {
            Ok(a) => a,
            Err(e) => {
                return (
                    Outcome::Retry {
                        at: (Utc::now() + Duration::from_secs(60)).naive_utc(),
                        code: Some("channel_settings".into()),
                        message: format!("The channel cannot send: {e}"),
                    },
                    None,
                );
            }
        };
        let started = Instant::now();
        let result = adapter.send(&out).await;
        kit.latency.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(receipt) => (
                Outcome::Sent {
                    provider_message_id: receipt.provider_message_id,
                    provider_status: receipt.provider_status,
                },
                None,
            ),
            Err(e) => {
                let attempt = u32::try_from(message.attempts.max(1)).unwrap_or(1);
                let text = e.text();
                let outcome = match e.disposition() {
                    SendDisposition::RetryLater { not_before } => {
                        let asked = if e.class == ErrorClass::PairRateLimit {
                            Some(retry::pair_limit_retry_after(attempt.saturating_sub(1)))
                        } else {
                            not_before
                        };
                        if e.class.throttles_channel() {
                            let pause = asked.unwrap_or(Duration::from_secs(1));
                            let until =
                                now_us() + i64::try_from(pause.as_micros()).unwrap_or(i64::MAX / 2);
                            let id = channel.id;
                            let _ = self
                                .db
                                .run(move |conn| {
                                    Ok::<_, DispatchError>(outbox::pause_channel(conn, id, until)?)
                                })
                                .await;
                        }
                        match self
                            .config
                            .retry
                            .next_attempt(attempt, asked, self.jitter())
                        {
                            Some(wait) => Outcome::Retry {
                                at: (Utc::now() + wait).naive_utc(),
                                code: e.code.clone(),
                                message: text,
                            },
                            None => Outcome::Failed {
                                code: e.code.clone(),
                                message: format!("Gave up after {attempt} attempts: {text}"),
                            },
                        }
                    }
                    SendDisposition::Failed => Outcome::Failed {
                        code: e.code.clone(),
                        message: text,
                    },
                    SendDisposition::Unknown => Outcome::Unknown {
                        message: e.unknown_text(),
                    },
                };
                (outcome, Some(e.class))
            }
        }
    }

    /// Stores outcomes (see [`store_outcomes`]), then tells the hub and frees the in-flight
    /// slots of those stored. Returns the outcomes that could not be stored yet, their messages
    /// still `sending` and held by this worker, with the error.
    async fn store(&self, batch: Vec<Done>) -> (Vec<Done>, Option<DispatchError>) {
        if batch.is_empty() {
            return (Vec::new(), None);
        }
        let worker = self.worker_id.clone();
        let db = self.db.clone();
        // Not `Db::run`: when no connection comes, the batch must come back to be tried again.
        let joined = tokio::task::spawn_blocking(move || {
            let stored = match db.get() {
                Ok(mut conn) => store_outcomes(&mut conn, &worker, &batch),
                Err(e) => Stored {
                    events: Vec::new(),
                    failed: (0..batch.len()).collect(),
                    error: Some(e.into()),
                },
            };
            (batch, stored)
        })
        .await;
        let (batch, stored) = match joined {
            Ok(joined) => joined,
            Err(e) => {
                // A panic while writing: a bug, not a state to retry.
                tracing::error!(error = ?e, "recording send outcomes panicked");
                return (Vec::new(), None);
            }
        };
        for e in stored.events {
            self.hub.publish(e);
        }
        let mut slots: Vec<Option<Done>> = batch.into_iter().map(Some).collect();
        let failed: Vec<Done> = stored
            .failed
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
        let mut counts: HashMap<(i64, &'static str), (Arc<Channel>, u64)> = HashMap::new();
        for d in slots.into_iter().flatten() {
            let outcome = match &d.outcome {
                Outcome::Sent { .. } => "sent",
                Outcome::Retry { .. } => "retry",
                Outcome::Failed { .. } => "failed",
                Outcome::Unknown { .. } => "unknown",
                Outcome::Skipped { .. } => "skipped",
                Outcome::Released { .. } => continue,
            };
            counts
                .entry((d.channel.id, outcome))
                .or_insert_with(|| (d.channel.clone(), 0))
                .1 += 1;
        }
        for ((_, outcome), (channel, n)) in counts {
            if outcome == "sent" {
                self.sent_total.fetch_add(n, Ordering::Relaxed);
            }
            self.metrics.record_sends(&channel.name, outcome, n);
        }
        (failed, stored.error)
    }

    /// Stores outcomes for `run_once`: an error when any could not be stored.
    async fn record(&self, done: Vec<Done>) -> Result<(), DispatchError> {
        let (failed, error) = self.store(done).await;
        match error {
            Some(e) if !failed.is_empty() => Err(e),
            _ => Ok(()),
        }
    }

    /// Collects finished messages and writes them in batches (under load, hundreds per
    /// transaction). On SQLite, whose writers take turns, a batch waits up to [`WRITE_WAIT`]
    /// to grow: fewer, larger write transactions leave the claims more room (the benchmark
    /// went from 47–49% to 56% of the ceiling). On PostgreSQL waiting only holds the in-flight
    /// slots longer (30% instead of 33%), so a batch is whatever has finished.
    ///
    /// An outcome that could not be written (the database refused or was out of reach) is
    /// tried again after a pause that grows with each failure, after the new outcomes of its
    /// turn, so it never holds them back. Its message stays `sending`, held by this worker,
    /// until it is written: left alone, the reaper would make it `unknown` when its lease ran
    /// out, although its outcome is known. After [`GIVE_UP_AFTER`] of failures (a few seconds
    /// when stopping) it is given up, logged, and left to the reaper.
    async fn writer(self: Arc<Self>, mut rx: mpsc::Receiver<Done>) {
        let gather = match self.db.backend() {
            Backend::Sqlite => WRITE_WAIT,
            Backend::Postgres => Duration::ZERO,
        };
        let mut unwritten: Vec<Done> = Vec::new();
        let mut retry_at = tokio::time::Instant::now();
        let mut open = true;
        while open || !unwritten.is_empty() {
            let mut batch = Vec::new();
            if open {
                let next = if unwritten.is_empty() {
                    Ok(rx.recv().await)
                } else {
                    tokio::time::timeout_at(retry_at, rx.recv()).await
                };
                match next {
                    Ok(Some(first)) => batch.push(first),
                    // Every lane has stopped.
                    Ok(None) => open = false,
                    // Time to try the unwritten outcomes again.
                    Err(_) => {}
                }
            } else {
                tokio::time::sleep_until(retry_at).await;
            }
            if !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + gather;
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(d) => batch.push(d),
                        Err(_) if batch.len() >= WRITE_BATCH || gather.is_zero() => break,
                        Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(d)) => batch.push(d),
                            _ => break,
                        },
                    }
                }
            }
            if !unwritten.is_empty() && tokio::time::Instant::now() >= retry_at {
                batch.append(&mut unwritten);
            }
            if batch.is_empty() {
                continue;
            }
            let (failed, error) = self.store(batch).await;
            if failed.is_empty() {
                continue;
            }
            let give_up_after = if open {
                GIVE_UP_AFTER
            } else {
                GIVE_UP_WHEN_STOPPING
            };
            let mut most = 0;
            for mut d in failed {
                d.failures += 1;
                let since = *d.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= give_up_after {
                    tracing::error!(
                        message = %d.message.public_id,
                        outcome = ?d.outcome,
                        error = ?error,
                        "gave up recording a send outcome; the message stays sending until its lease runs out"
                    );
                    continue;
                }
                most = most.max(d.failures);
                unwritten.push(d);
            }
            if !unwritten.is_empty() {
                let wait = retry_wait(most);
                tracing::warn!(
                    error = ?error,
                    count = unwritten.len(),
                    retry_in = ?wait,
                    "recording send outcomes failed; trying again"
                );
                retry_at = tokio::time::Instant::now() + wait;
            }
        }
    }

    /// Heartbeat, reaping what dead workers held, and pruning old receipts.
    async fn upkeep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut last_reap = Instant::now() - Duration::from_secs(3600);
        let mut last_prune = Instant::now();
        loop {
            let id = self.worker_id.clone();
            if let Err(e) = self
                .db
                .run(move |conn| Ok::<_, DispatchError>(outbox::heartbeat(conn, &id)?))
                .await
            {
                tracing::warn!(error = ?e, "worker heartbeat failed");
            }
            if last_reap.elapsed() >= self.config.heartbeat_every * 2 {
                last_reap = Instant::now();
                self.reap().await;
                match self.db.run(events::sweep_early_statuses).await {
                    Ok(found) => {
                        for e in found {
                            self.hub.publish(e);
                        }
                    }
                    Err(e) => tracing::warn!(error = ?e, "applying early provider reports failed"),
                }
            }
            if last_prune.elapsed() >= Duration::from_secs(3600) {
                last_prune = Instant::now();
                let _ = self
                    .db
                    .run(|conn| {
                        events::prune(conn)?;
                        outbox::prune_workers(
                            conn,
                            (Utc::now() - chrono::Duration::days(1)).naive_utc(),
                        )?;
                        Ok::<_, DispatchError>(())
                    })
                    .await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat_every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    async fn reap(&self) {
        let dead_before = (Utc::now() - self.config.dead_after).naive_utc();
        let reaped = self
            .db
            .run(move |conn| {
                Ok::<_, DispatchError>(outbox::reap(conn, crate::storage::now(), dead_before)?)
            })
            .await;
        match reaped {
            Ok(list) => {
                if !list.is_empty() {
                    tracing::warn!(
                        count = list.len(),
                        "messages held by a stopped worker are now unknown"
                    );
                }
                for (_, public_id, contact_id, channel_id) in list {
                    self.hub.publish(HubEvent::MessageStatus {
                        message_id: public_id,
                        contact_id,
                        channel_id,
                        status: MessageStatus::Unknown.as_str().to_owned(),
                    });
                }
            }
            Err(e) => tracing::warn!(error = ?e, "reaping stale messages failed"),
        }
    }
}

/// What writing a batch of outcomes did.
struct Stored {
    /// For the hub, about what was stored.
    events: Vec<HubEvent>,
    /// The outcomes (their places in the batch) not stored, and the last error.
    failed: Vec<usize>,
    error: Option<DispatchError>,
}

/// Writes a batch of outcomes in one transaction; when that fails, each on its own, so one
/// row the database refuses cannot hold back the others. One by one stops after
/// [`ONE_BY_ONE_BUDGET`]: when the database itself is the trouble (busy, out of reach) every
/// row would fail alike, each after its own wait. The rows not tried come first among those
/// returned, then the ones that failed, so a row that fails slowly never uses up the next
/// turn's time before the others are tried.
fn store_outcomes(conn: &mut DbConnection, worker: &str, done: &[Done]) -> Stored {
    let started = Instant::now();
    let error =
        match crate::storage::write_transaction(conn, |conn| record_batch(conn, worker, done)) {
            Ok(events) => {
                return Stored {
                    events,
                    failed: Vec::new(),
                    error: None,
                };
            }
            Err(e) if done.len() == 1 => {
                return Stored {
                    events: Vec::new(),
                    failed: vec![0],
                    error: Some(e),
                };
            }
            Err(e) => e,
        };
    tracing::warn!(error = ?error, count = done.len(), "recording a batch of send outcomes failed; recording them one by one");
    let mut events = Vec::new();
    let (mut untried, mut failed) = (Vec::new(), Vec::new());
    let mut last_error = error;
    for (i, d) in done.iter().enumerate() {
        if started.elapsed() > ONE_BY_ONE_BUDGET {
            untried.push(i);
            continue;
        }
        match crate::storage::write_transaction(conn, |conn| {
            record_batch(conn, worker, std::slice::from_ref(d))
        }) {
            Ok(stored) => events.extend(stored),
            Err(e) => {
                tracing::debug!(message = %d.message.public_id, error = ?e, "recording a send outcome failed");
                last_error = e;
                failed.push(i);
            }
        }
    }
    untried.append(&mut failed);
    let error = (!untried.is_empty()).then_some(last_error);
    Stored {
        events,
        failed: untried,
        error,
    }
}

/// The sends of one batch on one channel: `(message id, provider id)`.
type SentOnChannel<'a> = (Arc<Channel>, Vec<(i64, &'a str)>);

/// Writes a batch of outcomes: the message rows, their timelines, early provider reports
/// waiting for them, and the opt-outs a provider's refusal proves. Successful sends, the bulk
/// of any batch, take three statements for the whole batch.
fn record_batch(
    conn: &mut DbConnection,
    worker: &str,
    done: &[Done],
) -> Result<Vec<HubEvent>, DispatchError> {
    let mut events = Vec::new();
    let at = crate::storage::now();
    let sent: Vec<(i64, &str)> = done
        .iter()
        .filter_map(|d| match &d.outcome {
            Outcome::Sent {
                provider_message_id,
                ..
            } => Some((d.message.id, provider_message_id.as_str())),
            _ => None,
        })
        .collect();
    let updated: HashSet<i64> = outbox::mark_sent_batch(conn, worker, &sent, at)?
        .into_iter()
        .collect();
    let mut timeline = Vec::with_capacity(sent.len());
    let mut by_channel: HashMap<i64, SentOnChannel<'_>> = HashMap::new();
    for d in done {
        let Outcome::Sent {
            provider_message_id,
            provider_status,
        } = &d.outcome
        else {
            continue;
        };
        if updated.contains(&d.message.id) {
            let detail = match provider_status {
                Some(s) => format!("provider id {provider_message_id} ({s})"),
                None => format!("provider id {provider_message_id}"),
            };
            timeline.push((d.message.id, MessageStatus::Sent, detail));
        } else {
            // Reaped while sending (the answer still proves it left), or its provider id is
            // taken already, or the message was deleted: each is recorded as it stands.
            outbox::record_outcome(conn, &d.message, worker, &d.outcome)?;
        }
        events.push(HubEvent::message_status(&d.message, MessageStatus::Sent));
        by_channel
            .entry(d.channel.id)
            .or_insert_with(|| (d.channel.clone(), Vec::new()))
            .1
            .push((d.message.id, provider_message_id.as_str()));
    }
    outbox::record_events_batch(conn, "dispatcher", &timeline, at)?;
    // Reports that beat the send's answer here wait in early_statuses: apply them now.
    for (channel, list) in by_channel.values() {
        let ids: Vec<&str> = list.iter().map(|(_, pid)| *pid).collect();
        let waiting = crate::storage::receipts::early_statuses_for(conn, channel.id, &ids)?;
        for pid in waiting {
            if let Some((message_id, _)) = list.iter().find(|(_, p)| *p == pid) {
                events.extend(events::claim_early_statuses(conn, channel, *message_id)?);
            }
        }
    }

    for d in done
        .iter()
        .filter(|d| !matches!(d.outcome, Outcome::Sent { .. }))
    {
        let held = outbox::record_outcome(conn, &d.message, worker, &d.outcome)?;
        if !held || matches!(d.outcome, Outcome::Released { .. } | Outcome::Retry { .. }) {
            continue;
        }
        events.push(HubEvent::message_status(&d.message, d.outcome.status()));
        if d.class == Some(ErrorClass::OptedOut)
            && consents::set(
                conn,
                d.message.contact_id,
                d.channel.kind,
                ConsentStatus::OptedOut,
                ConsentSource::Provider,
                &format!(
                    "{} refused the send: the recipient unsubscribed",
                    d.channel.provider.label()
                ),
                &format!("{} (provider answer)", d.channel.name),
            )?
        {
            events.push(HubEvent::Consent {
                contact_id: d.message.contact_id,
                kind: d.channel.kind.as_str().to_owned(),
                status: ConsentStatus::OptedOut.as_str().to_owned(),
            });
        }
    }
    Ok(events)
}

/// One channel's sending loop.
struct Lane {
    inner: Arc<Inner>,
    channel_id: i64,
    semaphore: Arc<Semaphore>,
    writer: mpsc::Sender<Done>,
}

impl Lane {
    async fn load_channel(&self) -> Option<Arc<Channel>> {
        let id = self.channel_id;
        match self
            .inner
            .db
            .run(move |conn| Ok::<_, DispatchError>(channels::find(conn, id)?))
            .await
        {
            Ok(Some(c)) if c.is_enabled() => Some(Arc::new(c)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = ?e, "loading a channel failed");
                None
            }
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let dispatcher = Dispatcher {
            inner: self.inner.clone(),
        };
        let Some(mut channel) = self.load_channel().await else {
            return;
        };
        let mut loaded = Instant::now();
        let mut last_slot: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if loaded.elapsed() > Duration::from_secs(2) {
                match self.load_channel().await {
                    Some(c) => channel = c,
                    None => return,
                }
                loaded = Instant::now();
            }
            // Stay at most one look-ahead in front of the channel's schedule: messages waiting
            // for a far slot would be held for nothing (and lost to `unknown` in a crash), and
            // other workers could not share the channel.
            if let Some(last) = last_slot {
                let ahead = last.saturating_duration_since(Instant::now());
                if ahead > LOOKAHEAD {
                    tokio::select! {
                        _ = tokio::time::sleep(ahead - LOOKAHEAD) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    continue;
                }
            }
            // Claim only what can be in flight (a crash catches at most this many) and what
            // the channel's rate lets out within the look-ahead.
            let per_lookahead = (f64::from(channel.rate_limit_per_second.max(1))
                * LOOKAHEAD.as_secs_f64())
            .ceil() as usize;
            let want = self.inner.config.claim_batch.min(per_lookahead.max(1));
            let first = tokio::select! {
                p = self.semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = stop.wait_for(|s| *s) => return,
            };
            // Under load, let a few more sends finish so claims come in batches rather than
            // one message per transaction (woken as soon as they have, waiting at most
            // BATCH_WAIT).
            let mut held = first;
            let floor = (want / 8).max(1);
            if held.num_permits() + self.semaphore.available_permits() < floor {
                let more = u32::try_from(floor - held.num_permits()).unwrap_or(u32::MAX);
                let waited = tokio::time::timeout(
                    BATCH_WAIT,
                    self.semaphore.clone().acquire_many_owned(more),
                )
                .await;
                if let Ok(Ok(more)) = waited {
                    held.merge(more);
                }
            }
            let free = self.semaphore.available_permits();
            let top_up = want.saturating_sub(held.num_permits()).min(free);
            if top_up > 0
                && let Ok(more) = self
                    .semaphore
                    .clone()
                    .try_acquire_many_owned(u32::try_from(top_up).unwrap_or(u32::MAX))
            {
                held.merge(more);
            }
            let mut permits: Vec<OwnedSemaphorePermit> = Vec::with_capacity(held.num_permits());
            while let Some(one) = held.split(1) {
                permits.push(one);
            }
            let claimed = dispatcher.claim_batch(&channel, permits.len()).await;
            let prepared = match claimed {
                Ok(prepared) => prepared,
                Err(e) => {
                    // Nothing was claimed: the transaction rolled back.
                    tracing::warn!(channel = %channel.name, error = ?e, "claiming failed; retrying");
                    drop(permits);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if prepared.is_empty() {
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(self.inner.config.idle_poll) => {}
                    _ = self.inner.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
            permits.truncate(prepared.len());
            let in_flight = self.inner.config.max_in_flight - self.semaphore.available_permits();
            self.inner
                .metrics
                .in_flight
                .get_or_create(&ChannelLabels {
                    channel: channel.name.clone(),
                })
                .set(i64::try_from(in_flight).unwrap_or(0));
            let kit = self.inner.kit(&channel);
            last_slot = prepared
                .iter()
                .filter(|(_, d, _)| matches!(d, Decision::Send(_)))
                .map(|(_, _, slot)| *slot)
                .max()
                .or(last_slot);
            for ((message, decision, slot), permit) in prepared.into_iter().zip(permits) {
                match decision {
                    Decision::Outcome(outcome) => {
                        let _ = self
                            .writer
                            .send(Done::new(
                                channel.clone(),
                                message,
                                outcome,
                                None,
                                Some(permit),
                            ))
                            .await;
                    }
                    Decision::Send(out) => {
                        let inner = self.inner.clone();
                        let writer = self.writer.clone();
                        let channel = channel.clone();
                        let stop = stop.clone();
                        let kit = kit.clone();
                        tokio::spawn(async move {
                            let (outcome, class) = inner
                                .send_one(&channel, &kit, &message, out, slot, Some(stop))
                                .await;
                            let _ = writer
                                .send(Done::new(channel, message, outcome, class, Some(permit)))
                                .await;
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most sends a one-second window `[a, a + 1 s)` can see: those whose slots lie in
    /// `[a - tolerance, a + 1 s)`, a half-open span holding at most `ceil(span / interval)`.
    fn worst_window(limit: i32) -> i64 {
        let span_us = 1_000_000 + LATE_TOLERANCE.as_micros() as i64;
        let interval = slot_interval_us(limit, LATE_TOLERANCE);
        (span_us + interval - 1) / interval
    }

    #[test]
    fn no_one_second_window_exceeds_the_limit_even_with_late_starts() {
        for limit in 1..=5_000 {
            let worst = worst_window(limit);
            assert!(
                worst <= i64::from(limit),
                "{limit}/s: {worst} in one window"
            );
            if limit >= 20 {
                // A message to spare for jitter on the way to the provider.
                assert!(worst < i64::from(limit), "{limit}/s: {worst} in one window");
            }
        }
    }

    #[test]
    fn the_sending_rate_stays_close_to_the_limit() {
        for limit in [25, 50, 80, 250, 1_000, 5_000] {
            let rate = 1_000_000.0 / slot_interval_us(limit, LATE_TOLERANCE) as f64;
            assert!(
                rate >= 0.95 * f64::from(limit) && rate < f64::from(limit),
                "{limit}/s sends at {rate:.1}/s"
            );
        }
        assert_eq!(slot_interval_us(1, LATE_TOLERANCE), 1_063_158);
    }
}
