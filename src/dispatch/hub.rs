//! The event hub: what changed, for the pages that show it live (message statuses, windows
//! opening, consent, templates). In one process it is a broadcast channel; on PostgreSQL every
//! event is also relayed through `NOTIFY herald_events`, and each process publishes what the
//! others notify, so a page served by one instance hears of a webhook another one took or of a
//! send by a separate `herald worker`.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
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
    /// Events for the PostgreSQL relay to notify the other processes of.
    relay: Option<SyncSender<HubEvent>>,
    /// Events the relay had no room for (said in the log now and then, not each time).
    relay_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The PostgreSQL channel events travel on between processes.
const NOTIFY_CHANNEL: &str = "herald_events";

/// An event as notified: who sent it, so a process skips its own.
#[derive(Serialize, Deserialize)]
struct Relayed {
    origin: String,
    event: HubEvent,
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
            relay: None,
            relay_dropped: Default::default(),
        }
    }

    /// A hub whose events also cross processes through PostgreSQL's LISTEN/NOTIFY. The relay
    /// runs on a thread of its own with one connection (reconnecting when it drops), and stops
    /// when the last clone of the hub is gone.
    pub fn with_postgres_relay(database_url: &str) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let (relay_tx, relay_rx) = std::sync::mpsc::sync_channel(4096);
        let url = database_url.to_owned();
        let local = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("herald-hub-relay".into())
            .spawn(move || run_relay(&url, &local, &relay_rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the live-event relay could not start; pages follow this process only");
        }
        EventHub {
            tx,
            relay: Some(relay_tx),
            relay_dropped: Default::default(),
        }
    }

    /// Publishes to everyone listening in this process (nobody listening is fine) and, on
    /// PostgreSQL, to the other processes.
    pub fn publish(&self, event: HubEvent) {
        if let Some(relay) = &self.relay {
            match relay.try_send(event.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    let dropped = self
                        .relay_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if dropped.is_multiple_of(1000) {
                        tracing::warn!(
                            dropped = dropped + 1,
                            "the live-event relay is behind; events stay in this process (pages on other instances catch up on reload)"
                        );
                    }
                }
            }
        }
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.tx.subscribe()
    }
}

/// The relay's loop: notify what this process publishes, publish what others notify.
fn run_relay(url: &str, local: &broadcast::Sender<HubEvent>, outgoing: &Receiver<HubEvent>) {
    let origin = uuid::Uuid::now_v7().to_string();
    let mut wait = Duration::from_millis(500);
    loop {
        let mut conn = match PgConnection::establish(url).and_then(|mut c| {
            diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
                .execute(&mut c)
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(c)
        }) {
            Ok(c) => {
                wait = Duration::from_millis(500);
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "the live-event relay cannot reach PostgreSQL; retrying");
                // Stop once the hub is gone, rather than retry for ever.
                match outgoing.recv_timeout(wait) {
                    Err(RecvTimeoutError::Disconnected) => return,
                    _ => {
                        wait = (wait * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
        };
        match relay_on(&mut conn, &origin, local, outgoing) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the live-event relay lost its connection; reconnecting")
            }
        }
    }
}

/// Relays on one connection until the hub is gone (`Ok`) or the connection fails.
fn relay_on(
    conn: &mut PgConnection,
    origin: &str,
    local: &broadcast::Sender<HubEvent>,
    outgoing: &Receiver<HubEvent>,
) -> diesel::QueryResult<()> {
    loop {
        match outgoing.recv_timeout(Duration::from_millis(50)) {
            Ok(event) => {
                let payload = serde_json::to_string(&Relayed {
                    origin: origin.to_owned(),
                    event,
                })
                .unwrap_or_default();
                diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(NOTIFY_CHANNEL)
                    .bind::<diesel::sql_types::Text, _>(payload)
                    .execute(conn)?;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        for notification in conn.notifications_iter() {
            let notification = notification?;
            match serde_json::from_str::<Relayed>(&notification.payload) {
                Ok(r) if r.origin != origin => {
                    let _ = local.send(r.event);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "an unreadable live event was skipped"),
            }
        }
    }
}
