//! The sandbox's simulated provider reports (delivered, read, template approvals, replies)
//! arrive on a channel instead of a webhook; this loop applies them exactly as webhooks are.

use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use crate::channels::ProviderEvent;
use crate::dispatch::error::DispatchError;
use crate::dispatch::events;
use crate::dispatch::hub::EventHub;
use crate::storage::{Db, channels};

pub async fn run(db: Db, hub: EventHub, mut rx: Receiver<(String, ProviderEvent)>) {
    while let Some((channel_public_id, event)) = rx.recv().await {
        // A busy database (a full pool, SQLite's lock) must not lose a report: try again a
        // few times. Applying is idempotent (events are de-duplicated by their id).
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match apply_one(&db, &hub, &channel_public_id, event.clone()).await {
                Ok(()) => break,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!(attempt, error = ?e, "a sandbox report could not be applied yet");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::warn!(channel = %channel_public_id, error = ?e, "a sandbox report could not be applied")
                }
            }
        }
    }
}

const ATTEMPTS: u32 = 5;

async fn apply_one(
    db: &Db,
    hub: &EventHub,
    channel_public_id: &str,
    event: ProviderEvent,
) -> Result<(), DispatchError> {
    let id = channel_public_id.to_owned();
    let channel = db
        .run(move |conn| Ok::<_, DispatchError>(channels::find_by_public_id(conn, &id)?))
        .await?;
    match channel {
        Some(channel) => events::apply(db, hub, &channel, vec![event])
            .await
            .map(drop),
        None => {
            tracing::debug!(channel = %channel_public_id, "sandbox report for a deleted channel");
            Ok(())
        }
    }
}
