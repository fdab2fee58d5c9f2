//! Resending by hand: an admin sends a `failed` or `unknown` message again, as a new message
//! linked to the old one (which keeps its outcome). Nothing is resent automatically once it may
//! have reached the provider; this is the deliberate way. Used by the contact's timeline
//! (`POST /messages/{id}/resend`) and the API (`POST /api/v1/messages/{id}/resend`).

use serde_json::json;

use crate::domain::audit::Actor;
use crate::domain::message::MessageSource;
use crate::service::idempotency::{self, IdempotencyKey};
use crate::service::sends::announce_queued;
use crate::service::{Change, ServiceError, ServiceResult, Services};
use crate::storage::contacts;
use crate::storage::messages::{self, MessageRow};
use crate::storage::outbox::{self, ResendRefusal};

/// What a resend did, and whose timeline it belongs on.
#[derive(Debug, Clone)]
pub struct Resent {
    /// The contact's public id (empty when the contact is gone).
    pub contact: String,
    pub original: MessageRow,
    /// The new message, queued.
    pub message: MessageRow,
}

/// Queues the new message with its audit entry (`message.resent`) in one transaction, then
/// tells the live pages and wakes the dispatcher. A message that is not `failed` or
/// `unknown`, or that was resent already, is a [`ServiceError::Conflict`] (`conflict`).
pub async fn resend(
    svc: &Services,
    actor: Actor,
    public_id: String,
    once: Option<IdempotencyKey>,
) -> ServiceResult<Resent> {
    let done = svc
        .write(actor, move |change| {
            let done = resend_in(change, &public_id)?;
            idempotency::remember(change, once.as_ref(), "message", &done.message.public_id)?;
            Ok(done)
        })
        .await?;
    announce_queued(svc, &done.message);
    Ok(done)
}

/// The change a resend makes, inside the caller's transaction.
pub fn resend_in(change: &mut Change<'_>, public_id: &str) -> ServiceResult<Resent> {
    let original = find(change.conn, public_id)?;
    let contact = contact_in(change.conn, &original)?;
    // A resend is someone's decision, even of a broadcast's message: a person's, or an API
    // client's.
    let source = MessageSource::of_actor(change.actor.kind);
    let message = outbox::resend(change.conn, &original, &change.actor.label, source)?
        .map_err(|refusal| ServiceError::conflict("conflict", refusal_words(&refusal)))?;
    change.audit(
        "message.resent",
        "message",
        Some(&original.public_id),
        json!({"as": message.public_id, "was": original.status}),
    )?;
    Ok(Resent {
        contact,
        original,
        message,
    })
}

/// The public id of the contact whose timeline shows the message (empty when the contact is
/// gone), for going back to it after a refused resend.
pub async fn contact_of(svc: &Services, public_id: String) -> ServiceResult<String> {
    svc.read(move |conn| {
        let original = find(conn, &public_id)?;
        contact_in(conn, &original)
    })
    .await
}

fn find(conn: &mut crate::storage::DbConnection, public_id: &str) -> ServiceResult<MessageRow> {
    messages::find_by_public_id(conn, public_id)?.ok_or_else(|| {
        ServiceError::NotFound(format!("There is no message with id \"{public_id}\"."))
    })
}

fn contact_in(
    conn: &mut crate::storage::DbConnection,
    original: &MessageRow,
) -> ServiceResult<String> {
    Ok(contacts::find(conn, original.contact_id)?
        .map(|c| c.public_id)
        .unwrap_or_default())
}

/// Why a message is not resent, in words for the person who asked.
fn refusal_words(refusal: &ResendRefusal) -> String {
    match refusal {
        ResendRefusal::Status(status) => format!(
            "Only failed or unknown messages can be resent; this one is {}.",
            status.label().to_lowercase()
        ),
        ResendRefusal::AlreadyResent { public_id } => format!(
            "This message was resent already, as message {public_id}; resend that one if it failed too."
        ),
        ResendRefusal::Purged { days } => format!(
            "This message cannot be resent: its content was removed after {days} days (retention)."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::MessageStatus;

    #[test]
    fn refusals_keep_their_words() {
        assert_eq!(
            refusal_words(&ResendRefusal::Status(MessageStatus::Sent)),
            "Only failed or unknown messages can be resent; this one is sent."
        );
        assert!(
            refusal_words(&ResendRefusal::AlreadyResent {
                public_id: "m-1".into()
            })
            .contains("as message m-1;")
        );
        assert_eq!(
            refusal_words(&ResendRefusal::Purged { days: 30 }),
            "This message cannot be resent: its content was removed after 30 days (retention)."
        );
    }

    #[test]
    fn an_unknown_message_is_not_found_and_writes_nothing() {
        let (_dir, db) = crate::service::testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let actor = Actor::system("resends test");
        let err = crate::service::write(&mut conn, &actor, |change| resend_in(change, "nope"))
            .unwrap_err();
        assert!(matches!(err, ServiceError::NotFound(ref m) if m.contains("\"nope\"")));
    }
}
