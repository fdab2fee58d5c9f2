//! Recording outcomes: one writer gathers finished sends and writes them in batches (one
//! transaction each), falls back to row by row when a batch fails, and tries again later
//! what could not be written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::channels::ErrorClass;
use crate::dispatch::error::DispatchError;
use crate::dispatch::events;
use crate::dispatch::hub::HubEvent;
use crate::domain::consent::{ConsentSource, ConsentStatus};
use crate::domain::message::MessageStatus;
use crate::storage::channels::Channel;
use crate::storage::messages::MessageRow;
use crate::storage::outbox::{self, Outcome};
use crate::storage::{Backend, DbConnection, consents};

use super::Inner;

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

/// A finished message on its way to the writer; its permit is released once the outcome is
/// stored.
pub(super) struct Done {
    pub(super) channel: Arc<Channel>,
    pub(super) message: MessageRow,
    pub(super) outcome: Outcome,
    pub(super) class: Option<ErrorClass>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Failed writes of this outcome so far, and since when.
    failures: u32,
    failing_since: Option<Instant>,
}

impl Done {
    pub(super) fn new(
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

impl Inner {
    /// Stores outcomes (see [`store_outcomes`]), then tells the hub and frees the in-flight
    /// slots of those stored. Returns the outcomes that could not be stored yet, their messages
    /// still `sending` and held by this worker, with the error.
    pub(super) async fn store(&self, batch: Vec<Done>) -> (Vec<Done>, Option<DispatchError>) {
        if batch.is_empty() {
            return (Vec::new(), None);
        }
        let worker = self.worker_id.clone();
        // Lent to the write and taken back after it: a batch that could not be stored comes
        // back to be tried again.
        let lent = Arc::new(batch);
        let shared = lent.clone();
        let written = self
            .db
            .write_turn(move |conn| Ok::<_, DispatchError>(store_outcomes(conn, &worker, &shared)))
            .await;
        let Ok(batch) = Arc::try_unwrap(lent) else {
            tracing::error!("a batch of send outcomes was still held after its write");
            return (Vec::new(), None);
        };
        let stored = match written {
            Ok(stored) => stored,
            // No connection came, or the write lane failed: all of it comes back.
            Err(e) => Stored {
                events: Vec::new(),
                failed: (0..batch.len()).collect(),
                error: Some(e),
            },
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
    pub(super) async fn record(&self, done: Vec<Done>) -> Result<(), DispatchError> {
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
    pub(super) async fn writer(self: Arc<Self>, mut rx: mpsc::Receiver<Done>) {
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
            payload,
        } = &d.outcome
        else {
            continue;
        };
        if updated.contains(&d.message.id) {
            let detail = match provider_status {
                Some(s) => format!("provider id {provider_message_id} ({s})"),
                None => format!("provider id {provider_message_id}"),
            };
            timeline.push((d.message.id, MessageStatus::Sent, detail, payload.clone()));
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
