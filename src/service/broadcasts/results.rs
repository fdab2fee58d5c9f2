//! Issue 18: a broadcast's results. Its counts (read in one place, [`counts`]), the funnel
//! they draw, its failures grouped by reason and code, the per-recipient table with its
//! filters and export, and "Send again to...", which creates a follow-up draft whose audience
//! is frozen when it is created.
//!
//! What each funnel bar counts (the broadcast's first messages, resends not counted, each at the
//! furthest status it reached; the history filtered to the broadcast lists the same messages):
//! - targeted: every recipient frozen at launch, skipped ones included;
//! - sent: messages `sent`, `delivered` or `read`;
//! - delivered: messages `delivered` or `read`;
//! - read: messages `read`;
//! - replied: recipients with a reply attributed to the broadcast (their first message on the
//!   channel within the reply window after delivery);
//! - beside them, opted out: recipients left out for having opted out, at launch (recipients
//!   `skipped` with reason `opted_out`) or at send time (messages `skipped` with code
//!   `opted_out`); failed: messages `failed`.

use super::{BroadcastView, find_row, parse_stored, user_id, view};
use crate::domain::audit::Actor;
use crate::domain::broadcast::{Audience, BroadcastState, FollowUpAudience, SendAgainTo};
use crate::domain::local_time::Timing;
use crate::service::idempotency::{self, IdempotencyKey};
use crate::service::{ServiceError, ServiceResult, Services};
use crate::storage::broadcast_results::{
    self as results_store, FailureGroup, RecipientFilter, ResultRow,
};
use crate::storage::broadcasts::{self as store, Counts, DraftFields};
use crate::storage::{DbConnection, contacts};

/// A broadcast's counts: the one call every page and the API read them through.
pub fn counts(conn: &mut DbConnection, broadcast_id: i64) -> ServiceResult<Counts> {
    Ok(store::counts(conn, broadcast_id)?)
}

/// One bar of the funnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelBar {
    /// `sent`, `opted_out`...
    pub key: &'static str,
    pub label: &'static str,
    pub count: i64,
    /// The message status whose messages stopped at this step (the history's filter), and
    /// how many they are; none for a step the history cannot filter on.
    pub stopped: Option<(&'static str, i64)>,
}

/// The funnel: targeted, sent, delivered, read, replied; opted out and failed beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funnel {
    pub steps: Vec<FunnelBar>,
    pub beside: Vec<FunnelBar>,
}

/// Recipients left out for having opted out, at launch or at send time.
pub fn opted_out(groups: &[FailureGroup]) -> i64 {
    groups
        .iter()
        .filter(|g| g.status == "skipped" && g.code.as_deref() == Some("opted_out"))
        .map(|g| g.count)
        .sum()
}

/// The funnel the counts draw (see the module's documentation for what each bar counts).
pub fn funnel(c: &Counts, opted_out: i64) -> Funnel {
    let bar = |key, label, count, stopped| FunnelBar {
        key,
        label,
        count,
        stopped,
    };
    Funnel {
        steps: vec![
            bar("targeted", "Targeted", c.recipients, None),
            bar(
                "sent",
                "Sent",
                c.sent + c.delivered + c.read,
                Some(("sent", c.sent)),
            ),
            bar(
                "delivered",
                "Delivered",
                c.delivered + c.read,
                Some(("delivered", c.delivered)),
            ),
            bar("read", "Read", c.read, Some(("read", c.read))),
            bar("replied", "Replied", c.replied, None),
        ],
        beside: vec![
            bar("opted_out", "Opted out", opted_out, None),
            bar("failed", "Failed", c.failed, Some(("failed", c.failed))),
        ],
    }
}

/// Everything the results part of a broadcast's page shows beside its counts.
#[derive(Debug, Clone)]
pub struct Results {
    pub funnel: Funnel,
    pub failures: Vec<FailureGroup>,
    /// How many each "Send again to..." choice would reach now.
    pub send_again: Vec<(SendAgainTo, i64)>,
    /// Follow-ups created from it: (public id, name, state).
    pub follow_ups: Vec<(String, String, String)>,
    /// The broadcast it follows up, if it is a follow-up: (public id, name).
    pub follow_up_of: Option<(String, String)>,
}

/// How many each choice would reach, from the counts and the replied recipients' statuses
/// (never a pass over every recipient).
pub fn send_again_counts(
    c: &Counts,
    replied_by_status: &[(String, i64)],
) -> Vec<(SendAgainTo, i64)> {
    let replied_reached: i64 = replied_by_status
        .iter()
        .filter(|(s, _)| SendAgainTo::Replied.statuses().contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    SendAgainTo::ALL
        .into_iter()
        .map(|to| {
            let n = match to {
                SendAgainTo::Failed => c.failed,
                SendAgainTo::NotDelivered => c.sent + c.failed + c.unknown,
                SendAgainTo::NotRead => c.sent + c.delivered,
                SendAgainTo::NotReplied => c.sent + c.delivered + c.read - replied_reached,
                SendAgainTo::Replied => replied_reached,
            };
            (to, n)
        })
        .collect()
}

/// The results of a broadcast (one that was launched) beside the counts in its view.
pub async fn results(svc: &Services, v: &BroadcastView) -> ServiceResult<Results> {
    let (id, counts, follow_up_of) = (v.row.id, v.counts.clone(), v.row.follow_up_of);
    svc.read(move |conn| {
        let failures = results_store::failure_groups(conn, id)?;
        let replied = results_store::replied_by_status(conn, id)?;
        let follow_ups = results_store::follow_ups(conn, id)?;
        let first = match follow_up_of {
            Some(first) => store::find(conn, first)?.map(|b| (b.public_id, b.name)),
            None => None,
        };
        Ok(Results {
            funnel: funnel(&counts, opted_out(&failures)),
            send_again: send_again_counts(&counts, &replied),
            failures,
            follow_ups,
            follow_up_of: first,
        })
    })
    .await
}

/// A row of the per-recipient table, with its contact.
#[derive(Debug, Clone)]
pub struct ResultView {
    pub row: ResultRow,
    pub contact: Option<contacts::Contact>,
}

/// Reads a batch of the table with the rows' contacts.
fn page_in(
    conn: &mut DbConnection,
    broadcast_id: i64,
    filter: &RecipientFilter,
    after: Option<i64>,
    limit: i64,
) -> ServiceResult<(Vec<ResultView>, bool)> {
    let mut rows = results_store::recipients_page(conn, broadcast_id, filter, after, limit)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let ids: Vec<i64> = rows.iter().map(|r| r.contact_id).collect();
    let mut people: std::collections::HashMap<i64, contacts::Contact> =
        contacts::by_ids(conn, &ids)?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
    Ok((
        rows.into_iter()
            .map(|row| ResultView {
                contact: people.remove(&row.contact_id),
                row,
            })
            .collect(),
        more,
    ))
}

/// A page of the per-recipient table (in frozen order, after `after`), and whether more follow.
pub async fn recipients(
    svc: &Services,
    broadcast_id: i64,
    filter: RecipientFilter,
    after: Option<i64>,
    limit: i64,
) -> ServiceResult<(Vec<ResultView>, bool)> {
    svc.read(move |conn| page_in(conn, broadcast_id, &filter, after, limit))
        .await
}

/// Every row of the filtered table, a batch at a time (for the streamed export); `each`
/// returns false to stop (the client went away).
pub fn each_recipient_batch(
    conn: &mut DbConnection,
    broadcast_id: i64,
    filter: &RecipientFilter,
    mut each: impl FnMut(Vec<ResultView>) -> bool,
) -> ServiceResult<()> {
    let mut after = None;
    loop {
        let (batch, more) = page_in(conn, broadcast_id, filter, after, 1000)?;
        after = batch.last().map(|r| r.row.id);
        if batch.is_empty() || !each(batch) || !more {
            return Ok(());
        }
    }
}

/// "Send again to...": a new draft with the same channel and message, named
/// "<name> (again: not read)", whose audience is the first broadcast's recipients `to` chooses,
/// frozen now (later changes to the first broadcast do not change it), linked to the first.
/// Offered once the first has started. The draft then goes through review and launch as any
/// other.
pub async fn send_again(
    svc: &Services,
    actor: Actor,
    public_id: String,
    to: SendAgainTo,
    once: Option<IdempotencyKey>,
) -> ServiceResult<BroadcastView> {
    let row = svc
        .write(actor, move |change| {
            let first = find_row(change.conn, &public_id)?;
            if first.started_at.is_none() {
                return Err(ServiceError::conflict(
                    "not_started",
                    "A broadcast can be sent again once it has started sending.",
                ));
            }
            let (audience, _) = parse_stored(&first)?;
            let stored_audience = |contacts: i64| Audience {
                // A CSV audience's rows still give each contact their variables.
                csv: audience.csv.clone(),
                follow_up: Some(FollowUpAudience {
                    of: first.public_id.clone(),
                    to,
                    contacts,
                }),
                ..Audience::default()
            };
            let json = |a: &Audience| serde_json::to_string(a).map_err(ServiceError::internal);
            let timing = Timing {
                quiet_hours: first.timing().quiet_hours,
                ..Timing::default()
            };
            let fields = DraftFields {
                name: to.follow_up_name(&first.name),
                channel_id: first.channel_id,
                audience: json(&stored_audience(0))?,
                message: first.message.clone(),
                send_at: None,
                time_zone: first.time_zone.clone(),
                expires_at: None,
                timing: timing
                    .is_used()
                    .then(|| serde_json::to_string(&timing))
                    .transpose()
                    .map_err(ServiceError::internal)?,
            };
            let row = store::insert(
                change.conn,
                &fields,
                user_id(change.actor),
                &change.actor.label,
                None,
                None,
            )?;
            let frozen = results_store::freeze_follow_up(change.conn, row.id, first.id, to)?;
            results_store::set_follow_up_of(change.conn, row.id, first.id)?;
            let contacts = i64::try_from(frozen).unwrap_or(i64::MAX);
            let mut fields = fields;
            fields.audience = json(&stored_audience(contacts))?;
            store::update_draft(change.conn, row.id, &fields)?;
            change.audit(
                "broadcast.follow_up_created",
                "broadcast",
                Some(&row.public_id),
                serde_json::json!({
                    "name": fields.name,
                    "follow_up_of": first.public_id,
                    "to": to.as_str(),
                    "contacts": contacts,
                }),
            )?;
            idempotency::remember(change, once.as_ref(), "broadcast", &row.public_id)?;
            find_row(change.conn, &row.public_id)
        })
        .await?;
    view(svc, row).await
}

/// A follow-up draft keeps the audience frozen when it was created, whatever a form sends.
pub(super) fn keep_follow_up(
    row: &crate::storage::broadcasts::BroadcastRow,
    mut input: super::DraftInput,
) -> ServiceResult<super::DraftInput> {
    let (stored, _) = parse_stored(row)?;
    if stored.follow_up.is_some() {
        input.audience = stored;
    } else {
        // Only "Send again to..." makes a follow-up.
        input.audience.follow_up = None;
    }
    Ok(input)
}

/// Whether "Send again to..." is offered for a broadcast in this state that started at all.
pub fn may_send_again(state: BroadcastState, started: bool) -> bool {
    started
        && !matches!(
            state,
            BroadcastState::Draft | BroadcastState::PendingApproval
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::broadcast_results::FailureSource;

    fn counts() -> Counts {
        Counts {
            recipients: 20,
            pending: 0,
            sent: 2,
            delivered: 3,
            read: 5,
            replied: 4,
            failed: 4,
            skipped: 3,
            cancelled: 0,
            expired: 0,
            unknown: 1,
        }
    }

    #[test]
    fn the_funnel_counts_each_message_at_every_step_it_passed() {
        let f = funnel(&counts(), 2);
        let n: Vec<(&str, i64)> = f.steps.iter().map(|b| (b.key, b.count)).collect();
        assert_eq!(
            n,
            [
                ("targeted", 20),
                ("sent", 10),
                ("delivered", 8),
                ("read", 5),
                ("replied", 4)
            ]
        );
        assert_eq!(f.steps[1].stopped, Some(("sent", 2)));
        assert_eq!(f.beside[0].count, 2);
        assert_eq!(f.beside[1].stopped, Some(("failed", 4)));
    }

    #[test]
    fn send_again_counts_follow_the_statuses_of_each_choice() {
        // Three replied recipients: two read, one whose message later failed.
        let replied = vec![("read".to_owned(), 2), ("failed".to_owned(), 1)];
        let n: Vec<i64> = send_again_counts(&counts(), &replied)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        // failed, not delivered (sent + failed + unknown), not read (sent + delivered),
        // not replied (reached, minus the 2 replied among them), replied (reached).
        assert_eq!(n, [4, 7, 5, 8, 2]);
    }

    #[test]
    fn opted_out_adds_launch_and_send_time_opt_outs_only() {
        let g = |source, status: &str, code: &str, count| FailureGroup {
            source,
            status: status.into(),
            code: Some(code.into()),
            message: None,
            count,
        };
        let groups = vec![
            g(FailureSource::Recipient, "skipped", "opted_out", 3),
            g(FailureSource::Message, "skipped", "opted_out", 1),
            g(FailureSource::Recipient, "skipped", "frequency_cap", 7),
            g(FailureSource::Message, "failed", "131026", 2),
        ];
        assert_eq!(opted_out(&groups), 4);
    }
}
