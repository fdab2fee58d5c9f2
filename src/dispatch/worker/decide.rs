//! Send-time policy decisions: for a claimed batch, what the rules say now about each message
//! (consent, the window, Viber's session, WhatsApp's spacing per recipient, the template still
//! approved), looked up once per batch.

use std::collections::{HashMap, HashSet};

use chrono::Utc;

use crate::channels::OutboundMessage;
use crate::dispatch::error::DispatchError;
use crate::domain::channel::ChannelKind;
use crate::domain::consent::ConsentStatus;
use crate::domain::content::MessageContent;
use crate::domain::phone::E164;
use crate::domain::policy::{self, ContentIntent, SendContext};
use crate::domain::retry;
use crate::domain::window;
use crate::storage::channels::Channel;
use crate::storage::messages::MessageRow;
use crate::storage::outbox::{self, Outcome};
use crate::storage::templates::{self, TemplateLookup};
use crate::storage::{DbConnection, consents, conversations};

/// What policy says about one claimed message.
pub(super) enum Decision {
    Send(OutboundMessage),
    Outcome(Outcome),
}

/// What one batch looked up about its recipients and templates.
struct Known<'a> {
    /// Contacts opted out on the channel's kind.
    opted_out: &'a HashSet<i64>,
    /// The last inbound message per contact on this channel.
    windows: &'a HashMap<i64, chrono::NaiveDateTime>,
    /// Business messages per contact since its last inbound message (Viber's session).
    session: &'a HashMap<i64, Vec<i64>>,
    /// The last send per contact on this channel (WhatsApp's pair limit).
    recent: &'a HashMap<i64, chrono::NaiveDateTime>,
    /// Templates that may no longer be sent, and why.
    unsendable_templates: &'a HashMap<i64, String>,
}

/// Looks up, for one claimed batch, what the policy needs (opt-outs, windows, recent sends,
/// templates no longer sendable), then decides about each message.
pub(super) fn decide_all(
    conn: &mut DbConnection,
    ch: &Channel,
    rows: Vec<MessageRow>,
) -> Result<Vec<(MessageRow, Decision)>, DispatchError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.contact_id).collect();
    let template_ids: HashSet<i64> = rows.iter().filter_map(|r| r.template_id).collect();
    let opted_out: HashSet<i64> = consents::opted_out_kinds(conn, &ids)?
        .into_iter()
        .filter(|(_, kind)| kind == ch.kind.as_str())
        .map(|(id, _)| id)
        .collect();
    let windows = if window::has_window(ch.kind) {
        conversations::windows_on_channel(conn, ch.id, &ids)?
    } else {
        HashMap::new()
    };
    // Viber's session rule: five business messages in a row, then the customer must write.
    let session = if ch.kind == ChannelKind::Viber {
        conversations::session_messages(conn, ch.id, &windows)?
    } else {
        HashMap::new()
    };
    let recent = if ch.kind == ChannelKind::Whatsapp {
        let since = (Utc::now() - retry::PAIR_SPACING).naive_utc();
        outbox::recent_sends(conn, ch.id, &ids, since)?
    } else {
        HashMap::new()
    };
    // Approved when queued, but it may have been paused, disabled or withdrawn since.
    let mut unsendable: HashMap<i64, String> = HashMap::new();
    for id in template_ids {
        match templates::sendable(conn, id)? {
            TemplateLookup::Sendable(_) => {}
            TemplateLookup::NotSendable { reason, .. } => {
                unsendable.insert(id, reason);
            }
            TemplateLookup::NotFound => {
                unsendable.insert(id, "The template was deleted.".into());
            }
        }
    }
    let known = Known {
        opted_out: &opted_out,
        windows: &windows,
        session: &session,
        recent: &recent,
        unsendable_templates: &unsendable,
    };
    let now = Utc::now();
    let mut seen_this_batch: HashSet<i64> = HashSet::new();
    let mut decided = Vec::with_capacity(rows.len());
    for mut row in rows {
        let decision = decide(ch, &row, &known, &mut seen_this_batch, now);
        if let Decision::Send(out) = &decision
            && let MessageContent::Text { body } = &out.content
            && row.content_kind == "template"
        {
            // Window-aware: the free text goes instead of the template; the message says so.
            let content = serde_json::to_string(&out.content).map_err(|e| {
                DispatchError::Database(diesel::result::Error::SerializationError(Box::new(e)))
            })?;
            outbox::sent_as_text(conn, row.id, body, &content)?;
            row.content_kind = "text".into();
            row.body = body.clone();
            row.content = content;
        }
        decided.push((row, decision));
    }
    Ok(decided)
}

fn decide(
    channel: &Channel,
    row: &MessageRow,
    known: &Known<'_>,
    seen_this_batch: &mut HashSet<i64>,
    now: chrono::DateTime<Utc>,
) -> Decision {
    let Known {
        opted_out,
        windows,
        session,
        recent,
        unsendable_templates,
    } = known;
    let content: MessageContent = match serde_json::from_str(&row.content) {
        Ok(c) => c,
        Err(e) => {
            return Decision::Outcome(Outcome::Failed {
                code: Some("invalid_content".into()),
                message: format!("The stored message content cannot be read: {e}"),
                payload: None,
            });
        }
    };
    // Checked when it was queued; only valid numbers are stored.
    let to = E164::from_trusted(row.to_address.clone());
    let template_problem = row.template_id.and_then(|id| unsendable_templates.get(&id));
    let window = window::state(
        channel.kind,
        windows.get(&row.contact_id).map(|t| t.and_utc()),
        now,
    );
    // Window-aware mode: free text to a recipient whose window is open now.
    let content = match content {
        MessageContent::Template(t)
            if t.window_text.is_some() && matches!(window, window::WindowState::Open { .. }) =>
        {
            MessageContent::Text {
                body: t.window_text.unwrap_or_default(),
            }
        }
        other => other,
    };
    let intent = match &content {
        MessageContent::Text { .. } => ContentIntent::FreeText,
        MessageContent::Template(_) => ContentIntent::Template {
            sendable: template_problem.is_none(),
        },
    };
    let ctx = SendContext {
        kind: channel.kind,
        channel_enabled: channel.is_enabled(),
        consent: opted_out
            .contains(&row.contact_id)
            .then_some(ConsentStatus::OptedOut),
        window,
        // The messages of the session queued before this one.
        sent_since_last_inbound: session.get(&row.contact_id).map_or(0, |ids| {
            u32::try_from(ids.partition_point(|id| *id < row.id)).unwrap_or(u32::MAX)
        }),
    };
    if let Err(denial) = policy::may_send(&ctx, intent) {
        let message = match (denial, template_problem) {
            (policy::Denial::TemplateNotApproved, Some(why)) => format!("Not sent: {why}"),
            _ => format!("Not sent: {}", denial.message(channel.kind)),
        };
        return Decision::Outcome(Outcome::Skipped {
            code: denial.code().to_owned(),
            message,
        });
    }
    // WhatsApp's pair limit: one message per recipient per 6 seconds on a number.
    if channel.kind == ChannelKind::Whatsapp {
        let last = recent.get(&row.contact_id).map(|t| t.and_utc());
        let since = last.map(|t| (now - t).to_std().unwrap_or_default());
        let wait = retry::pair_wait(since);
        if !seen_this_batch.insert(row.contact_id) || !wait.is_zero() {
            let wait = if wait.is_zero() {
                retry::PAIR_SPACING
            } else {
                wait
            };
            return Decision::Outcome(Outcome::Released {
                at: (now + wait).naive_utc(),
            });
        }
    }
    Decision::Send(OutboundMessage {
        message_id: row.public_id.clone(),
        to,
        content,
    })
}
