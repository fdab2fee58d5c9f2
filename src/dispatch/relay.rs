//! Carries hub events between instances on one PostgreSQL database, so a page served by one
//! instance sees what another instance's worker or webhook did. Each instance keeps one
//! connection of its own (outside the pool) that `LISTEN`s on [`CHANNEL`]; what the local hub
//! publishes is sent with `pg_notify`, many events per round trip, tagged with this instance's
//! id so it is not delivered here twice. SQLite has one instance by nature and needs none of it.
//!
//! Delivery is best effort, as for the hub itself: a page that misses an event while the
//! connection is re-established catches up on its next load.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::WeakSender;

use super::hub::{EventHub, HubEvent};

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "herald_events";
/// Sends a batch of payloads on [`CHANNEL`] (fixed text: kept prepared).
const NOTIFY: &str = "SELECT pg_notify('herald_events', payload) FROM unnest($1) AS payload";
/// How long events wait to be sent (and how often notifications are looked for).
const TICK: Duration = Duration::from_millis(50);
/// Events waiting to be sent at most; more are kept local (see [`EventHub::publish`]).
const QUEUE: usize = 8192;
/// Most events sent in one statement.
const BATCH: usize = 500;
/// How long the first event of a batch waits for others. Each `pg_notify` statement is a
/// transaction whose commit takes PostgreSQL's notification lock and wakes every listening
/// connection: sent one by one while messages flowed, they were about as many statements as
/// messages.
const GATHER: Duration = Duration::from_millis(20);
/// PostgreSQL refuses payloads of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The sending instance.
    origin: String,
    event: HubEvent,
}

/// Starts relaying `hub`'s events through the database at `url` on a thread of its own, which
/// ends when the hub is dropped. Returns once it listens (or, when the database cannot be
/// reached now, once the thread is started to keep trying). Does nothing when the hub has a
/// relay already. Blocking.
pub fn start(url: &str, hub: &EventHub) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    if !hub.attach_relay(tx) {
        return Ok(());
    }
    let relay = Relay {
        url: url.to_owned(),
        origin: uuid::Uuid::new_v4().to_string(),
        local: hub.downgrade(),
        outgoing: rx,
    };
    let first = relay
        .connect()
        .inspect_err(|e| tracing::warn!(error = %e, "the event relay cannot connect yet"))
        .ok();
    std::thread::Builder::new()
        .name("herald-relay".into())
        .spawn(move || relay.run(first))
        .map(drop)
}

struct Relay {
    url: String,
    origin: String,
    local: WeakSender<HubEvent>,
    outgoing: Receiver<HubEvent>,
}

/// Why a connection's loop ended.
enum Stop {
    /// Every hub handle is gone: the thread ends.
    HubGone,
    /// The database failed: reconnect.
    Failed(diesel::result::Error),
}

impl Relay {
    fn run(self, mut first: Option<PgConnection>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match first.take().map_or_else(|| self.connect(), Ok) {
                Ok(mut conn) => {
                    backoff = Duration::from_millis(200);
                    match self.serve(&mut conn) {
                        Stop::HubGone => return,
                        Stop::Failed(e) => {
                            tracing::warn!(error = %e, "the event relay lost its connection; reconnecting")
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "the event relay cannot connect")
                }
            }
            // Wait before reconnecting, dropping what is published meanwhile (best effort),
            // and stop if the hub goes away.
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until {
                match self.outgoing.recv_timeout(TICK) {
                    Err(RecvTimeoutError::Disconnected) => return,
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    fn connect(&self) -> Result<PgConnection, String> {
        let mut conn = PgConnection::establish(&self.url).map_err(|e| e.to_string())?;
        diesel::sql_query(format!("LISTEN {CHANNEL}"))
            .execute(&mut conn)
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    fn serve(&self, conn: &mut PgConnection) -> Stop {
        loop {
            let mut batch = Vec::new();
            match self.outgoing.recv_timeout(TICK) {
                Ok(first) => {
                    batch.push(first);
                    let until = std::time::Instant::now() + GATHER;
                    while batch.len() < BATCH {
                        let left = until.saturating_duration_since(std::time::Instant::now());
                        match self.outgoing.recv_timeout(left) {
                            Ok(event) => batch.push(event),
                            Err(RecvTimeoutError::Timeout) => break,
                            // Sent below; the next round finds the hub gone.
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Stop::HubGone,
            }
            if !batch.is_empty()
                && let Err(e) = self.send(conn, batch)
            {
                return Stop::Failed(e);
            }
            if let Err(e) = self.receive(conn) {
                return Stop::Failed(e);
            }
        }
    }

    fn send(&self, conn: &mut PgConnection, batch: Vec<HubEvent>) -> QueryResult<()> {
        let payloads: Vec<String> = batch
            .into_iter()
            .filter_map(|event| {
                let payload = serde_json::to_string(&Envelope {
                    origin: self.origin.clone(),
                    event,
                })
                .ok()?;
                if payload.len() > MAX_PAYLOAD {
                    tracing::warn!(
                        bytes = payload.len(),
                        "an event too large to relay was kept local"
                    );
                    return None;
                }
                Some(payload)
            })
            .collect();
        crate::storage::prepared::fixed(NOTIFY)
            .bind::<Array<Text>, _>(payloads)
            .execute(conn)
            .map(drop)
    }

    fn receive(&self, conn: &mut PgConnection) -> QueryResult<()> {
        let mut notes = Vec::new();
        for note in conn.notifications_iter() {
            notes.push(note?);
        }
        let Some(local) = self.local.upgrade() else {
            return Ok(());
        };
        for note in notes.into_iter().filter(|n| n.channel == CHANNEL) {
            match serde_json::from_str::<Envelope>(&note.payload) {
                Ok(envelope) if envelope.origin == self.origin => {}
                Ok(envelope) => {
                    let _ = local.send(envelope.event);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable relayed event was ignored")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notify_statement_names_the_listened_channel() {
        assert!(super::NOTIFY.contains(&format!("pg_notify('{}',", super::CHANNEL)));
    }
}
