//! Upkeep: the worker's heartbeat, reaping what dead workers held (those messages become
//! `unknown`, never resent on their own), applying early provider reports, and pruning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use crate::dispatch::error::DispatchError;
use crate::dispatch::events;
use crate::dispatch::hub::HubEvent;
use crate::domain::message::MessageStatus;
use crate::storage::outbox;

use super::Inner;

impl Inner {
    /// Heartbeat, reaping what dead workers held, and pruning old receipts.
    pub(super) async fn upkeep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut last_reap = Instant::now() - Duration::from_secs(3600);
        let mut last_prune = Instant::now();
        loop {
            let id = self.worker_id.clone();
            if let Err(e) = self
                .db
                .run(move |conn| Ok::<_, DispatchError>(outbox::heartbeat(conn, &id)?))
                .await
            {
                tracing::warn!(error = ?e, "worker heartbeat failed");
            }
            if last_reap.elapsed() >= self.config.heartbeat_every * 2 {
                last_reap = Instant::now();
                self.reap().await;
                match self.db.run(events::sweep_early_statuses).await {
                    Ok(found) => {
                        for e in found {
                            self.hub.publish(e);
                        }
                    }
                    Err(e) => tracing::warn!(error = ?e, "applying early provider reports failed"),
                }
            }
            if last_prune.elapsed() >= Duration::from_secs(3600) {
                last_prune = Instant::now();
                let _ = self
                    .db
                    .run(|conn| {
                        events::prune(conn)?;
                        outbox::prune_workers(
                            conn,
                            (Utc::now() - chrono::Duration::days(1)).naive_utc(),
                        )?;
                        Ok::<_, DispatchError>(())
                    })
                    .await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat_every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    async fn reap(&self) {
        let dead_before = (Utc::now() - self.config.dead_after).naive_utc();
        let reaped = self
            .db
            .run(move |conn| {
                Ok::<_, DispatchError>(outbox::reap(conn, crate::storage::now(), dead_before)?)
            })
            .await;
        match reaped {
            Ok(list) => {
                if !list.is_empty() {
                    tracing::warn!(
                        count = list.len(),
                        "messages held by a stopped worker are now unknown"
                    );
                }
                for (_, public_id, contact_id, channel_id) in list {
                    self.hub.publish(HubEvent::MessageStatus {
                        message_id: public_id,
                        contact_id,
                        channel_id,
                        status: MessageStatus::Unknown.as_str().to_owned(),
                    });
                }
            }
            Err(e) => tracing::warn!(error = ?e, "reaping stale messages failed"),
        }
    }
}
