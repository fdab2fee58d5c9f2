//! Per-channel lanes: each claims due messages in short transactions, just ahead of its send
//! slots, and takes those slots from the channel's shared rate schedule (one schedule per
//! channel in the database, so every worker sharing a channel keeps to its limit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::dispatch::error::DispatchError;
use crate::dispatch::metrics::ChannelLabels;
use crate::storage::Backend;
use crate::storage::channels::{self, Channel};
use crate::storage::messages::MessageRow;
use crate::storage::outbox;

use super::decide::{Decision, decide_all};
use super::record::Done;
use super::{Dispatcher, Inner, now_us};

/// How far ahead of its send slots a lane claims messages.
const LOOKAHEAD: Duration = Duration::from_millis(200);

/// The longest a lane waits for sends to finish before claiming a smaller batch.
const BATCH_WAIT: Duration = Duration::from_millis(4);

/// How late after its slot a send may still start.
pub(super) const LATE_TOLERANCE: Duration = Duration::from_millis(10);

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

impl Dispatcher {
    /// Claims up to `limit` due messages of the channel, asks the policy about each again
    /// (consent, window, spacing per recipient, the template's approval) and gives the ones to
    /// send their slots on the channel's shared schedule. One transaction: a failure anywhere
    /// leaves every message queued as it was.
    ///
    /// On PostgreSQL the slots are reserved just after that transaction, in a statement of
    /// their own: in the write lane the schedule row would stay locked until the lane commits
    /// its whole group, so every late send taking a new slot ([`Inner::reserve`], on another
    /// connection) waited for a group commit, and the batch's first slots passed while it
    /// committed, making more sends late (measured: 5,478 reservations at 2.8 ms each, the
    /// dispatcher held to 2,000 of a channel's 5,000 a second). On SQLite, with one writer,
    /// the reservation stays in the lane's turn. If it fails after the claim, the sends get
    /// slots already past, so each tries for a new one and, failing that, goes back to the
    /// queue.
    pub(super) async fn claim_batch(
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
        let in_turn = self.inner.db.backend() == Backend::Sqlite;
        let (decided, start_us) = self
            .inner
            .db
            .write_turn(move |conn| {
                let rows = outbox::claim(conn, ch.id, &worker, limit, lease_until)?;
                if rows.is_empty() {
                    return Ok((Vec::new(), None));
                }
                let decided = decide_all(conn, &ch, rows)?;
                let start_us = match i64::try_from(sends(&decided)) {
                    Ok(n) if n > 0 && in_turn => Some(outbox::reserve_slots(
                        conn,
                        ch.id,
                        n,
                        interval_us,
                        now_us(),
                    )?),
                    _ => None,
                };
                Ok::<_, DispatchError>((decided, start_us))
            })
            .await?;
        let mut slots: Box<dyn Iterator<Item = Instant> + Send> = match start_us {
            Some(start_us) => Box::new(slot_instants(start_us, interval_us)),
            // (`Inner::reserve` asks the database nothing when there is no send.)
            None => {
                let reserved = self
                    .inner
                    .reserve(channel, sends(&decided), Duration::ZERO)
                    .await;
                match reserved {
                    Ok(slots) => Box::new(slots.into_iter()),
                    Err(e) => {
                        tracing::warn!(channel = %channel.name, error = ?e, "reserving send slots failed");
                        let past = Instant::now()
                            .checked_sub(self.inner.config.late_tolerance * 2)
                            .unwrap_or_else(Instant::now);
                        Box::new(std::iter::repeat(past))
                    }
                }
            }
        };
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
}

/// How many of the decisions are sends.
fn sends(decided: &[(MessageRow, Decision)]) -> usize {
    decided
        .iter()
        .filter(|(_, d)| matches!(d, Decision::Send(_)))
        .count()
}

/// Send slots `start_us`, `start_us + interval_us`, … (wall clock, µs) as monotonic instants.
pub(super) fn slot_instants(start_us: i64, interval_us: i64) -> impl Iterator<Item = Instant> {
    let (wall_now, mono_now) = (now_us(), Instant::now());
    (0..).map(move |i: i64| {
        let at = start_us + i * interval_us;
        mono_now + Duration::from_micros(u64::try_from((at - wall_now).max(0)).unwrap_or(0))
    })
}

impl Inner {
    /// `count` send times from the channel's shared schedule, spaced at its rate, none sooner
    /// than `lead` from now.
    pub(super) async fn reserve(
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
    pub(super) async fn wait_for_slot(
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
}

/// One channel's sending loop.
pub(super) struct Lane {
    pub(super) inner: Arc<Inner>,
    pub(super) channel_id: i64,
    pub(super) semaphore: Arc<Semaphore>,
    pub(super) writer: mpsc::Sender<Done>,
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

    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
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
