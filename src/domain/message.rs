//! The status of an outbound message, and how provider reports move it.
//!
//! Providers report status asynchronously, at least once and in no guaranteed order: WhatsApp
//! may send `read` without `delivered` and retries webhooks for days; Twilio says callbacks may
//! arrive out of order. So a report only ever moves a message *forward*, and the order reports
//! arrive in never changes where a message ends up: applying them is taking the maximum in one
//! fixed order of progress,
//!
//! `queued < sending < unknown < sent < failed < delivered < read`,
//!
//! which makes the result the same whatever order the reports come in (tested below).
//!
//! Two choices in that order need saying:
//! - `failed` sits below `delivered` and `read`. Nothing moves a failed message *back* (to
//!   queued, sending or sent), but a delivery or read receipt is proof from the handset that the
//!   message arrived, so it wins over a failure report whichever came first. If `failed` were
//!   final, a `read` and a `failed` for the same message would leave it in whichever state
//!   arrived first, and two workers could disagree.
//! - `unknown` (the request may have reached the provider, no answer came) sits below every
//!   report: any report proves the provider took the message, which is exactly what `unknown`
//!   did not know, and stops anyone resending it by hand.
//!
//! `skipped` and `cancelled` messages were never handed to a provider; reports for them are
//! ignored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Written to the outbox to go at a chosen time (a scheduled send, a delayed trigger, a
    /// reminder); it becomes `queued` when the time comes, unless it is cancelled first.
    Scheduled,
    /// Written to the outbox, waiting for a worker (also after a retryable error).
    Queued,
    /// A worker holds it under a lease and is calling the provider.
    Sending,
    /// The provider accepted it.
    Sent,
    /// The provider reports it reached the handset.
    Delivered,
    /// The recipient opened it (WhatsApp, Viber "seen").
    Read,
    /// The provider refused it or could not deliver it; the error says why.
    Failed,
    /// The request may have reached the provider but no answer came (timeout, crash during the
    /// call). Never re-sent automatically: a duplicate is worse than a flagged message.
    Unknown,
    /// Not sent on purpose (opted out, window closed, template no longer approved at send time).
    Skipped,
    /// Withdrawn before it was sent (a campaign stopped, a person cancelled it).
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 10] = [
        MessageStatus::Scheduled,
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
        MessageStatus::Unknown,
        MessageStatus::Skipped,
        MessageStatus::Cancelled,
    ];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
            MessageStatus::Unknown => "unknown",
            MessageStatus::Skipped => "skipped",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MessageStatus::Scheduled => "Scheduled",
            MessageStatus::Queued => "Queued",
            MessageStatus::Sending => "Sending",
            MessageStatus::Sent => "Sent",
            MessageStatus::Delivered => "Delivered",
            MessageStatus::Read => "Read",
            MessageStatus::Failed => "Failed",
            MessageStatus::Unknown => "Outcome unknown",
            MessageStatus::Skipped => "Skipped",
            MessageStatus::Cancelled => "Cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, UnknownMessageStatus> {
        MessageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownMessageStatus(s.to_owned()))
    }

    /// Nothing can change this status any more: no report moves it and no worker picks it up.
    /// `failed` is not terminal (a late delivery receipt can still correct it), nor is
    /// `delivered` (it can still be read).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            MessageStatus::Read | MessageStatus::Skipped | MessageStatus::Cancelled
        )
    }

    /// An admin may send it again by hand (as a new message linked to this one): only when
    /// the provider refused it or nobody knows whether it went out.
    pub fn may_resend(self) -> bool {
        matches!(self, MessageStatus::Failed | MessageStatus::Unknown)
    }

    /// The recipient has an outcome a person can read, so a campaign counts them as done.
    /// Only `scheduled`, `queued` and `sending` are still work in progress: a campaign is
    /// complete when none of its messages is in any of them.
    pub fn is_final_outcome(self) -> bool {
        !matches!(
            self,
            MessageStatus::Scheduled | MessageStatus::Queued | MessageStatus::Sending
        )
    }

    /// A person (or client) may still withdraw it: only while it waits for its time.
    pub fn may_cancel(self) -> bool {
        self == MessageStatus::Scheduled
    }

    /// Position in the order of progress; `None` for messages no provider ever saw.
    fn progress(self) -> Option<u8> {
        match self {
            MessageStatus::Queued => Some(0),
            MessageStatus::Sending => Some(1),
            MessageStatus::Unknown => Some(2),
            MessageStatus::Sent => Some(3),
            MessageStatus::Failed => Some(4),
            MessageStatus::Delivered => Some(5),
            MessageStatus::Read => Some(6),
            MessageStatus::Scheduled | MessageStatus::Skipped | MessageStatus::Cancelled => None,
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownMessageStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageStatus::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown message status \"{0}\": expected scheduled, queued, sending, sent, delivered, read, failed, unknown, skipped or cancelled"
)]
pub struct UnknownMessageStatus(pub String);

/// What a provider can report about a message it took, after the adapter has mapped its own
/// words: WhatsApp `sent`/`delivered`/`read`/`failed`; Twilio `sent`/`delivered`, with
/// `undelivered` and `failed` both meaning `Failed`; Infobip DELIVERED, seen (`Read`),
/// UNDELIVERABLE/EXPIRED/REJECTED (`Failed`). Intermediate provider states (Twilio `queued`,
/// `sending`, `accepted`) tell nothing new and are not reported.
///
/// The dispatcher records a successful send call as `ProviderStatus::Sent` through the same
/// function, because the provider's `delivered` webhook can win the race against the worker
/// writing down the send call's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl ProviderStatus {
    pub const ALL: [ProviderStatus; 4] = [
        ProviderStatus::Sent,
        ProviderStatus::Delivered,
        ProviderStatus::Read,
        ProviderStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    /// The message status this report stands for.
    pub fn status(self) -> MessageStatus {
        match self {
            ProviderStatus::Sent => MessageStatus::Sent,
            ProviderStatus::Delivered => MessageStatus::Delivered,
            ProviderStatus::Read => MessageStatus::Read,
            ProviderStatus::Failed => MessageStatus::Failed,
        }
    }
}

impl FromStr for ProviderStatus {
    type Err = UnknownMessageStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderStatus::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownMessageStatus(s.to_owned()))
    }
}

/// The status a message moves to when a provider reports `incoming`, or `None` when the report
/// must be ignored (a late or repeated report, or a message no provider ever saw).
pub fn apply_provider_status(
    current: MessageStatus,
    incoming: ProviderStatus,
) -> Option<MessageStatus> {
    let next = incoming.status();
    match (current.progress(), next.progress()) {
        (Some(from), Some(to)) if to > from => Some(next),
        _ => None,
    }
}

/// How far ahead a single message may be scheduled.
pub const MAX_SCHEDULE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Why a time to send a message later is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendAtError {
    #[error("The time to send it must be in the future.")]
    NotInFuture,
    #[error("The time to send it must be within 30 days from now.")]
    TooFarAhead,
}

/// Checks the time a message was asked to go at: after `now`, at most
/// [`MAX_SCHEDULE_AHEAD`] later.
pub fn check_send_at(
    send_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), SendAtError> {
    if send_at <= now {
        Err(SendAtError::NotInFuture)
    } else if send_at - now > MAX_SCHEDULE_AHEAD {
        Err(SendAtError::TooFarAhead)
    } else {
        Ok(())
    }
}

// --- issue 18: where a message came from (the history's "source") ---

/// Where a message came from: a person (the send page, a resend from the dashboard), a
/// client with an API key, or a broadcast. Kept on the message (`messages.source`) so the
/// history filters on it; issue 20 adds triggers and reminders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageSource {
    Person,
    Api,
    Broadcast,
    /// Issue 20: a trigger (a shop or CRM posted an event).
    Trigger,
    /// Issue 20: a reminder rule.
    Reminder,
}

impl MessageSource {
    pub const ALL: [MessageSource; 5] = [
        MessageSource::Person,
        MessageSource::Api,
        MessageSource::Broadcast,
        MessageSource::Trigger,
        MessageSource::Reminder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageSource::Person => "person",
            MessageSource::Api => "api",
            MessageSource::Broadcast => "broadcast",
            MessageSource::Trigger => "trigger",
            MessageSource::Reminder => "reminder",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MessageSource::Person => "A person",
            MessageSource::Api => "API key",
            MessageSource::Broadcast => "Broadcast",
            MessageSource::Trigger => "Trigger",
            MessageSource::Reminder => "Reminder",
        }
    }

    /// The source of what an actor asks for directly: an API key's sends are `api`, the
    /// rest (people, and the command line) `person`.
    pub fn of_actor(kind: crate::domain::audit::ActorKind) -> Self {
        match kind {
            crate::domain::audit::ActorKind::ApiKey => MessageSource::Api,
            _ => MessageSource::Person,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        MessageSource::ALL.into_iter().find(|x| x.as_str() == s)
    }
}
// --- end issue 18 source ---

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus as M;
    use ProviderStatus as P;
    use proptest::prelude::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(status.as_str()), Ok(status));
            assert_eq!(status.to_string().parse::<MessageStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        let err = MessageStatus::parse("undelivered").unwrap_err();
        assert!(err.to_string().contains("\"undelivered\""), "{err}");
        assert!(MessageStatus::parse("Sent").is_err());
    }

    /// Every (current, report) pair, written out: the table is the specification.
    #[test]
    fn every_report_on_every_status() {
        let table: [(MessageStatus, [Option<MessageStatus>; 4]); 10] = [
            (M::Scheduled, [None, None, None, None]),
            //             sent           delivered          read           failed
            (
                M::Queued,
                [
                    Some(M::Sent),
                    Some(M::Delivered),
                    Some(M::Read),
                    Some(M::Failed),
                ],
            ),
            (
                M::Sending,
                [
                    Some(M::Sent),
                    Some(M::Delivered),
                    Some(M::Read),
                    Some(M::Failed),
                ],
            ),
            (
                M::Unknown,
                [
                    Some(M::Sent),
                    Some(M::Delivered),
                    Some(M::Read),
                    Some(M::Failed),
                ],
            ),
            (
                M::Sent,
                [None, Some(M::Delivered), Some(M::Read), Some(M::Failed)],
            ),
            (M::Failed, [None, Some(M::Delivered), Some(M::Read), None]),
            (M::Delivered, [None, None, Some(M::Read), None]),
            (M::Read, [None, None, None, None]),
            (M::Skipped, [None, None, None, None]),
            (M::Cancelled, [None, None, None, None]),
        ];
        for (current, expected) in table {
            for (incoming, want) in ProviderStatus::ALL.into_iter().zip(expected) {
                assert_eq!(
                    apply_provider_status(current, incoming),
                    want,
                    "{current} + {}",
                    incoming.as_str()
                );
            }
        }
    }

    #[test]
    fn a_send_time_must_be_ahead_and_within_thirty_days() {
        let now = chrono::Utc::now();
        let secs = chrono::TimeDelta::seconds;
        assert_eq!(check_send_at(now, now), Err(SendAtError::NotInFuture));
        assert_eq!(
            check_send_at(now - secs(1), now),
            Err(SendAtError::NotInFuture)
        );
        assert_eq!(check_send_at(now + secs(1), now), Ok(()));
        assert_eq!(check_send_at(now + MAX_SCHEDULE_AHEAD, now), Ok(()));
        assert_eq!(
            check_send_at(now + MAX_SCHEDULE_AHEAD + secs(1), now),
            Err(SendAtError::TooFarAhead)
        );
    }

    #[test]
    fn no_downgrades() {
        assert_eq!(apply_provider_status(M::Read, P::Delivered), None);
        assert_eq!(apply_provider_status(M::Delivered, P::Sent), None);
        assert_eq!(apply_provider_status(M::Read, P::Failed), None);
        assert_eq!(apply_provider_status(M::Failed, P::Sent), None);
    }

    #[test]
    fn read_may_come_without_delivered() {
        assert_eq!(apply_provider_status(M::Sent, P::Read), Some(M::Read));
    }

    #[test]
    fn failed_after_sent_fails_and_proof_of_delivery_beats_failure() {
        assert_eq!(apply_provider_status(M::Sent, P::Failed), Some(M::Failed));
        assert_eq!(apply_provider_status(M::Delivered, P::Failed), None);
        assert_eq!(apply_provider_status(M::Failed, P::Read), Some(M::Read));
    }

    #[test]
    fn a_report_settles_an_unknown_outcome() {
        for incoming in ProviderStatus::ALL {
            assert_eq!(
                apply_provider_status(M::Unknown, incoming),
                Some(incoming.status())
            );
        }
    }

    #[test]
    fn terminal_means_no_report_moves_it() {
        for status in MessageStatus::ALL {
            let movable = ProviderStatus::ALL
                .into_iter()
                .any(|p| apply_provider_status(status, p).is_some());
            // A scheduled message moves by time (it becomes queued), not by reports.
            let waits_for_time = status == M::Scheduled;
            assert_eq!(
                status.is_terminal(),
                !movable && !waits_for_time,
                "{status}"
            );
        }
    }

    #[test]
    fn only_scheduled_queued_and_sending_are_unfinished() {
        let unfinished: Vec<MessageStatus> = MessageStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final_outcome())
            .collect();
        assert_eq!(unfinished, vec![M::Scheduled, M::Queued, M::Sending]);
        let cancellable: Vec<MessageStatus> = MessageStatus::ALL
            .into_iter()
            .filter(|s| s.may_cancel())
            .collect();
        assert_eq!(cancellable, vec![M::Scheduled]);
    }

    fn any_status() -> impl Strategy<Value = MessageStatus> {
        prop::sample::select(MessageStatus::ALL.to_vec())
    }

    fn any_report() -> impl Strategy<Value = ProviderStatus> {
        prop::sample::select(ProviderStatus::ALL.to_vec())
    }

    fn apply_all(start: MessageStatus, reports: &[ProviderStatus]) -> MessageStatus {
        reports.iter().fold(start, |current, incoming| {
            apply_provider_status(current, *incoming).unwrap_or(current)
        })
    }

    proptest! {
        #[test]
        fn the_order_reports_arrive_in_does_not_matter(
            start in any_status(),
            reports in prop::collection::vec(any_report(), 0..12),
        ) {
            let mut sorted = reports.clone();
            sorted.sort_by_key(|p| p.status().progress());
            prop_assert_eq!(apply_all(start, &reports), apply_all(start, &sorted));
            let mut reversed = reports.clone();
            reversed.reverse();
            prop_assert_eq!(apply_all(start, &reports), apply_all(start, &reversed));
        }

        #[test]
        fn reports_never_move_a_message_backwards(
            start in any_status(),
            reports in prop::collection::vec(any_report(), 0..12),
        ) {
            let mut current = start;
            for incoming in reports {
                if let Some(next) = apply_provider_status(current, incoming) {
                    prop_assert!(next.progress() > current.progress());
                    current = next;
                }
            }
        }

        #[test]
        fn repeating_a_report_changes_nothing(start in any_status(), incoming in any_report()) {
            let once = apply_all(start, &[incoming]);
            prop_assert_eq!(apply_all(start, &[incoming, incoming]), once);
        }
    }
}
