//! The outbox worker. Per channel, a lane claims due messages in short transactions, asks the
//! policy again, takes send slots from the channel's shared schedule (its rate limit), and sends
//! many messages at once with no transaction open; one writer records the outcomes in batches.
//! A message is held `sending` from its claim until its outcome is written, so at most
//! `max_in_flight` messages per channel can be caught by a crash: those become `unknown`, never
//! resent on their own.
//!
//! Here: the [`Dispatcher`], its configuration, `run_once` and the run loop. Beside it:
//! `lanes` (per-channel lanes, claims, the shared rate schedule), `decide` (send-time policy
//! decisions), `send` (one send and its outcome), `record` (writing outcomes in batches, the
//! row-by-row fallback) and `upkeep` (heartbeat, reaper, pruning).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::dispatch::error::DispatchError;
use crate::dispatch::hub::EventHub;
use crate::dispatch::metrics::Metrics;
use crate::dispatch::registry::ChannelRegistry;
use crate::domain::retry::RetryPolicy;
use crate::storage::Db;
use crate::storage::channels::{self, Channel};
use crate::storage::outbox::{self, Outcome};

mod decide;
mod lanes;
mod record;
mod send;
mod upkeep;

use decide::Decision;
pub use lanes::slot_interval_us;
use lanes::{LATE_TOLERANCE, Lane};
use record::Done;

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

    /// The database this worker sends from.
    pub fn db(&self) -> &Db {
        &self.inner.db
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
