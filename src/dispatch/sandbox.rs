//! The sandbox's simulated provider reports (delivered, read, template approvals, replies)
//! arrive on a channel instead of a webhook; this loop applies them exactly as webhooks are.

use tokio::sync::mpsc::Receiver;

use crate::channels::ProviderEvent;
use crate::dispatch::events;
use crate::dispatch::hub::EventHub;
use crate::error::AppError;
use crate::storage::{Db, channels};

pub async fn run(db: Db, hub: EventHub, mut rx: Receiver<(String, ProviderEvent)>) {
    while let Some((channel_public_id, event)) = rx.recv().await {
        let id = channel_public_id.clone();
        let channel = db
            .run(move |conn| Ok::<_, AppError>(channels::find_by_public_id(conn, &id)?))
            .await;
        match channel {
            Ok(Some(channel)) => {
                if let Err(e) = events::apply(&db, &hub, &channel, vec![event]).await {
                    tracing::warn!(channel = %channel.name, error = ?e, "a sandbox report could not be applied");
                }
            }
            Ok(None) => {
                tracing::debug!(channel = %channel_public_id, "sandbox report for a deleted channel")
            }
            Err(e) => tracing::warn!(error = ?e, "a sandbox report could not be applied"),
        }
    }
}
