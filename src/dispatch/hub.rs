//! The event hub: what changed, for the pages that show it live (message statuses, windows
//! opening, consent, templates). In one process it is a broadcast channel; several instances on
//! PostgreSQL relay through LISTEN/NOTIFY (see [`crate::dispatch::relay`]).

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubEvent {
    /// A message's status changed.
    MessageStatus {
        message_id: String,
        contact_id: i64,
        channel_id: i64,
        status: String,
    },
    /// A customer wrote: the window on this channel (re)opened.
    Inbound {
        contact_id: i64,
        channel_id: i64,
        /// RFC 3339.
        at: String,
    },
    /// A contact's consent for a kind of channel changed.
    Consent {
        contact_id: i64,
        kind: String,
        status: String,
    },
    /// A template's review state changed (internally or at the provider).
    Template { template_id: i64 },
}

#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<HubEvent>,
    /// Where this process's events go to reach other instances (PostgreSQL only; see
    /// [`crate::dispatch::relay`]).
    relay: Arc<OnceLock<std::sync::mpsc::Sender<HubEvent>>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventHub {
            tx,
            relay: Arc::default(),
        }
    }

    /// Publishes to everyone listening in this process (nobody listening is fine) and, with a
    /// relay attached, in every other instance on the same database.
    pub fn publish(&self, event: HubEvent) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Attaches the relay's queue; returns false when one is attached already.
    pub(crate) fn attach_relay(&self, to: std::sync::mpsc::Sender<HubEvent>) -> bool {
        self.relay.set(to).is_ok()
    }

    /// A handle that does not keep the hub alive (the relay's thread ends with the hub).
    pub(crate) fn downgrade(&self) -> broadcast::WeakSender<HubEvent> {
        self.tx.downgrade()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.tx.subscribe()
    }
}
