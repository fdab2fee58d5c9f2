//! The event hub: what changed, for the pages that show it live (message statuses, windows
//! opening, consent, templates). In one process it is a broadcast channel; several instances on
//! PostgreSQL relay through LISTEN/NOTIFY (see [`crate::dispatch::relay`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::domain::message::MessageStatus;
use crate::storage::messages::MessageRow;
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
    relay: Arc<OnceLock<SyncSender<HubEvent>>>,
    /// Events the relay had no room for (logged now and then, not each time).
    relay_dropped: Arc<AtomicU64>,
}

impl HubEvent {
    /// `message` is now in `status`.
    pub fn message_status(message: &MessageRow, status: MessageStatus) -> Self {
        HubEvent::MessageStatus {
            message_id: message.public_id.clone(),
            contact_id: message.contact_id,
            channel_id: message.channel_id,
            status: status.as_str().to_owned(),
        }
    }
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
            relay_dropped: Arc::default(),
        }
    }

    /// Publishes to everyone listening in this process (nobody listening is fine) and, with a
    /// relay attached, in every other instance on the same database.
    pub fn publish(&self, event: HubEvent) {
        // Never blocks: when the relay is behind (or reconnecting), events stay in this
        // process and pages elsewhere catch up on their next load.
        if let Some(relay) = self.relay.get()
            && let Err(TrySendError::Full(_)) = relay.try_send(event.clone())
        {
            let dropped = self.relay_dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = dropped + 1,
                    "the event relay is behind; events stay in this process"
                );
            }
        }
        let _ = self.tx.send(event);
    }

    /// Attaches the relay's queue; returns false when one is attached already.
    pub(crate) fn attach_relay(&self, to: SyncSender<HubEvent>) -> bool {
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
