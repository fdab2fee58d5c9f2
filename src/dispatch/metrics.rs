//! Prometheus metrics: sends per channel and outcome, send latency, messages in flight, and the
//! queue depth per channel (read from the database when scraped).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub sends: Family<OutcomeLabels, Counter>,
    pub latency: Family<ChannelLabels, Histogram>,
    pub in_flight: Family<ChannelLabels, Gauge>,
    pub queue_depth: Family<ChannelLabels, Gauge>,
    pub webhook_events: Family<OutcomeLabels, Counter>,
    /// Sends that missed their slot (a stalled process) and took a new one.
    pub late_slots: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let sends = Family::<OutcomeLabels, Counter>::default();
        let latency = Family::<ChannelLabels, Histogram>::new_with_constructor(|| {
            // 1 ms to ~33 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let in_flight = Family::<ChannelLabels, Gauge>::default();
        let queue_depth = Family::<ChannelLabels, Gauge>::default();
        let webhook_events = Family::<OutcomeLabels, Counter>::default();
        let late_slots = Counter::default();
        registry.register(
            "messages_sent",
            "Send attempts per channel and outcome (sent, retry, failed, unknown, skipped)",
            sends.clone(),
        );
        registry.register(
            "send_duration_seconds",
            "Time a provider took to answer a send",
            latency.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Messages this process holds in `sending`",
            in_flight.clone(),
        );
        registry.register(
            "queue_depth",
            "Messages queued, per channel",
            queue_depth.clone(),
        );
        registry.register(
            "provider_events",
            "Provider events received, per channel and kind",
            webhook_events.clone(),
        );
        registry.register(
            "late_send_slots",
            "Sends that started too late for their rate-limit slot and took a new one",
            late_slots.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            sends,
            latency,
            in_flight,
            queue_depth,
            webhook_events,
            late_slots,
        }
    }

    pub fn record_sends(&self, channel: &str, outcome: &str, n: u64) {
        self.sends
            .get_or_create(&OutcomeLabels {
                channel: channel.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Encoding into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
