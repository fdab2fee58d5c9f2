//! Scheduled single sends: a send with `send_at` is written by `service::sends` as a
//! `scheduled` message (the same checks, the same idempotency key); [`promote`] queues it when
//! its time comes, and the dispatcher then asks the policy again as for any message. Until
//! then a person or an API client may cancel it ([`cancel`]), which is audited.

use serde_json::json;

use crate::dispatch::hub::HubEvent;
use crate::dispatch::worker::Dispatcher;
use crate::domain::audit::Actor;
use crate::domain::message::MessageStatus;
use crate::service::{Change, ServiceError, ServiceResult, Services};
use crate::storage::messages::{self, MessageRow};
use crate::storage::{DbConnection, now, outbox, write_transaction};

/// The most scheduled messages one step queues (the next step takes the rest at once).
const BATCH: i64 = 1000;

/// Queues the scheduled messages whose time has come, tells the live pages and wakes the
/// dispatcher. Returns how many it queued. Several workers may run it together: each message
/// is queued by one of them.
pub async fn promote(dispatcher: &Dispatcher) -> ServiceResult<usize> {
    let mut total = 0;
    loop {
        let moved = dispatcher
            .db()
            .run(|conn| Ok::<_, ServiceError>(promote_in(conn)?))
            .await?;
        total += moved.len();
        for (_, public_id, contact_id, channel_id) in &moved {
            dispatcher.hub().publish(HubEvent::MessageStatus {
                message_id: public_id.clone(),
                contact_id: *contact_id,
                channel_id: *channel_id,
                status: MessageStatus::Queued.as_str().to_owned(),
            });
        }
        if !moved.is_empty() {
            dispatcher.wake();
        }
        if (moved.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// One batch of [`promote`], in one transaction.
pub fn promote_in(conn: &mut DbConnection) -> diesel::QueryResult<Vec<outbox::Moved>> {
    write_transaction(conn, |conn| outbox::promote_due(conn, now(), BATCH))
}

/// Withdraws a scheduled message before it goes, with its audit entry (`message.cancelled`).
/// A message that is not (or no longer) scheduled is a [`ServiceError::Conflict`]
/// (`not_scheduled`).
pub async fn cancel(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<MessageRow> {
    let message = svc
        .write(actor, move |change| cancel_in(change, &public_id))
        .await?;
    svc.hub
        .publish(HubEvent::message_status(&message, MessageStatus::Cancelled));
    Ok(message)
}

/// The change a cancellation makes, inside the caller's transaction.
pub fn cancel_in(change: &mut Change<'_>, public_id: &str) -> ServiceResult<MessageRow> {
    let message = messages::find_by_public_id(change.conn, public_id)?.ok_or_else(|| {
        ServiceError::NotFound(format!("There is no message with id \"{public_id}\"."))
    })?;
    let detail = format!("Cancelled by {}.", change.actor.label);
    if !outbox::cancel_scheduled(change.conn, message.id, &detail, now())? {
        return Err(ServiceError::conflict(
            "not_scheduled",
            format!(
                "This message is {}, not scheduled: only a message waiting for its time can be cancelled.",
                message.status().label().to_lowercase()
            ),
        ));
    }
    change.audit(
        "message.cancelled",
        "message",
        Some(&message.public_id),
        json!({"was": MessageStatus::Scheduled.as_str()}),
    )?;
    messages::find(change.conn, message.id)?.ok_or_else(|| ServiceError::not_found("The message"))
}
