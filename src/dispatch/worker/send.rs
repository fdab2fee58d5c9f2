//! One send: wait for its slot, call the adapter with no transaction open, and turn the
//! answer into an outcome (sent, retry later, failed, unknown), pausing the channel when the
//! provider throttles it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use crate::channels::{Adapter, ChannelAdapter, ErrorClass, OutboundMessage, SendDisposition};
use crate::dispatch::error::DispatchError;
use crate::dispatch::metrics::ChannelLabels;
use crate::domain::retry;
use crate::storage::channels::Channel;
use crate::storage::messages::MessageRow;
use crate::storage::outbox::{self, Outcome};

use super::{Inner, now_us};

pub(super) struct SendKit {
    adapter: Result<Adapter, String>,
    latency: prometheus_client::metrics::histogram::Histogram,
}

impl Inner {
    fn jitter(&self) -> f64 {
        // A cheap per-process sequence is enough to spread retries.
        let x = self
            .jitter_seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let mixed = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (mixed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What every send of one batch on one channel shares (looked up once per batch).
    pub(super) fn kit(&self, channel: &Channel) -> Arc<SendKit> {
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

    /// Waits for the slot, sends, and says what became of the message.
    pub(super) async fn send_one(
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
                        payload: None,
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
                    payload: receipt.payload,
                },
                None,
            ),
            Err(e) => {
                let attempt = u32::try_from(message.attempts.max(1)).unwrap_or(1);
                let text = e.text();
                let payload = e.payload.as_deref().cloned();
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
                                payload,
                            },
                            None => Outcome::Failed {
                                code: e.code.clone(),
                                message: format!("Gave up after {attempt} attempts: {text}"),
                                payload,
                            },
                        }
                    }
                    SendDisposition::Failed => Outcome::Failed {
                        code: e.code.clone(),
                        message: text,
                        payload,
                    },
                    SendDisposition::Unknown => Outcome::Unknown {
                        message: e.unknown_text(),
                        payload,
                    },
                };
                (outcome, Some(e.class))
            }
        }
    }
}
