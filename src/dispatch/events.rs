//! Applying what providers report (webhooks, and the sandbox's simulated reports): once per
//! event id, statuses forward only, inbound messages opening the window and carrying keywords,
//! unsubscribes recorded as opt-outs. Then the hub hears about it.

use chrono::Utc;

use crate::channels::{ErrorClass, ProviderEvent, StatusEvent};
use crate::dispatch::error::DispatchError;
use crate::dispatch::hub::{EventHub, HubEvent};
use crate::domain::consent::{ConsentSource, ConsentStatus};
use crate::domain::message::ProviderStatus;
use crate::storage::channels::Channel;
use crate::storage::conversations::{self, Inbound};
use crate::storage::messages::{self, FailureDetail, MessageRow};
use crate::storage::receipts::{self, NewEarlyStatus};
use crate::storage::{Db, DbConnection, consents, templates};

/// What a batch of events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub inbound: usize,
    pub statuses: usize,
    pub templates: usize,
    /// Seen before (a provider retry): nothing changed.
    pub duplicates: usize,
    /// Well-formed but not acted on (unknown shapes, senders that are not phone numbers).
    pub ignored: usize,
    /// Status reports for messages not known yet, kept until the message claims them.
    pub early: usize,
}

fn provider_status(event: &StatusEvent) -> ProviderStatus {
    match event.status {
        crate::channels::DeliveryStatus::Sent => ProviderStatus::Sent,
        crate::channels::DeliveryStatus::Delivered => ProviderStatus::Delivered,
        crate::channels::DeliveryStatus::Read => ProviderStatus::Read,
        crate::channels::DeliveryStatus::Failed => ProviderStatus::Failed,
    }
}

/// Applies one status report to a known message; returns the hub event when it changed.
pub fn apply_status_to(
    conn: &mut DbConnection,
    channel: &Channel,
    message: &MessageRow,
    status: ProviderStatus,
    at: chrono::NaiveDateTime,
    error: Option<(&str, &str, Option<ErrorClass>)>,
    payload: Option<&str>,
) -> Result<Vec<HubEvent>, DispatchError> {
    let failure = error.map(|(code, message, _)| FailureDetail { code, message });
    let mut out = Vec::new();
    if let Some(next) =
        messages::apply_provider_report(conn, message, status, at, failure, payload)?
    {
        out.push(HubEvent::message_status(message, next));
    }
    // The provider says the person unsubscribed (Twilio 21610 after STOP): record it, so no
    // later send even reaches the provider.
    if let Some((code, text, Some(ErrorClass::OptedOut))) = error
        && consents::set(
            conn,
            message.contact_id,
            channel.kind,
            ConsentStatus::OptedOut,
            ConsentSource::Provider,
            &format!("{} {code}: {text}", channel.provider.label()),
            &format!("{} (provider report)", channel.name),
        )?
    {
        out.push(HubEvent::Consent {
            contact_id: message.contact_id,
            kind: channel.kind.as_str().to_owned(),
            status: ConsentStatus::OptedOut.as_str().to_owned(),
        });
    }
    Ok(out)
}

fn apply_one(
    conn: &mut DbConnection,
    channel: &Channel,
    event: &ProviderEvent,
    applied: &mut Applied,
) -> Result<Vec<HubEvent>, DispatchError> {
    let mut out = Vec::new();
    match event {
        ProviderEvent::Inbound(e) => {
            let Some(phone) = e.from.phone() else {
                tracing::info!(channel = %channel.name, from = %e.from, "inbound message from an address that is not a phone number; ignored");
                applied.ignored += 1;
                return Ok(out);
            };
            let outcome = conversations::record_inbound(
                conn,
                channel,
                &Inbound {
                    from: phone,
                    text: &e.text,
                    provider_message_id: Some(&e.provider_message_id),
                    received_at: e.received_at.naive_utc(),
                    profile_name: e.profile_name.as_deref(),
                },
            )?;
            if outcome.duplicate {
                applied.duplicates += 1;
                return Ok(out);
            }
            applied.inbound += 1;
            out.push(HubEvent::Inbound {
                contact_id: outcome.contact.id,
                channel_id: channel.id,
                at: e.received_at.to_rfc3339(),
            });
            if let Some(status) = outcome.consent_change {
                out.push(HubEvent::Consent {
                    contact_id: outcome.contact.id,
                    kind: channel.kind.as_str().to_owned(),
                    status: status.as_str().to_owned(),
                });
            }
        }
        ProviderEvent::Status(e) => {
            let status = provider_status(e);
            let error = e
                .error
                .as_ref()
                .map(|x| (x.code.as_str(), x.message.as_str(), Some(x.class)));
            match messages::find_by_provider_id(conn, channel.id, &e.provider_message_id)? {
                Some(message) => {
                    out.extend(apply_status_to(
                        conn,
                        channel,
                        &message,
                        status,
                        e.at.naive_utc(),
                        error,
                        e.payload.as_deref(),
                    )?);
                    applied.statuses += 1;
                }
                None => {
                    receipts::keep_early_status(
                        conn,
                        &NewEarlyStatus {
                            channel_id: channel.id,
                            provider_message_id: &e.provider_message_id,
                            status: status.as_str(),
                            error_code: error.map(|x| x.0),
                            error_message: error.map(|x| x.1),
                            error_class: e.error.as_ref().map(|x| x.class.as_str()),
                            occurred_at: e.at.naive_utc(),
                            payload: e.payload.as_deref(),
                        },
                    )?;
                    applied.early += 1;
                }
            }
        }
        ProviderEvent::TemplateStatus(e) => {
            // TEMPLATES-HOOK: the templates storage applies this (issue "Templates").
            match templates::apply_provider_status(conn, channel, e)? {
                Some(template_id) => {
                    applied.templates += 1;
                    out.push(HubEvent::Template { template_id });
                }
                None => {
                    tracing::info!(channel = %channel.name, template = %e.provider_template_id, "status of a template Herald does not know; ignored");
                    applied.ignored += 1;
                }
            }
        }
        ProviderEvent::Unrecognised { description } => {
            tracing::info!(channel = %channel.name, %description, "provider event not acted on");
            applied.ignored += 1;
        }
    }
    Ok(out)
}

/// Applies a batch of verified events from one channel. Each event is applied once whatever
/// the provider retries: its id is recorded in the same transaction as its effects. Every
/// event is cleaned first (`channels::clean`: no NUL, display names without control or
/// direction characters, inbound text of bounded length), whichever provider or the sandbox
/// produced it.
pub async fn apply(
    db: &Db,
    hub: &EventHub,
    channel: &Channel,
    events: Vec<ProviderEvent>,
) -> Result<Applied, DispatchError> {
    let events: Vec<ProviderEvent> = events.into_iter().map(ProviderEvent::cleaned).collect();
    let channel = channel.clone();
    let shard = shard_of(&channel, &events);
    // Webhooks arriving together are committed together (`Db::write_grouped`); this one's
    // events are all applied, or none.
    let (applied, hub_events) = db
        .write_grouped(shard, move |conn| {
            let mut applied = Applied::default();
            let mut hub_events = Vec::new();
            for event in &events {
                hub_events.extend(apply_in(conn, &channel, event, &mut applied)?);
            }
            Ok::<_, DispatchError>((applied, hub_events))
        })
        .await?;
    for e in hub_events {
        hub.publish(e);
    }
    Ok(applied)
}

/// The write lane for a webhook's events: by the message a status is about (so that two
/// reports on one message never wait on each other's row lock), else by the channel.
fn shard_of(channel: &Channel, events: &[ProviderEvent]) -> u64 {
    use crate::storage::group::shard_of;
    match events.first() {
        Some(ProviderEvent::Status(e)) => shard_of(&e.provider_message_id),
        _ => shard_of(channel.id),
    }
}

/// Applies one (cleaned) event inside the caller's transaction, once: an event whose id was
/// seen before only counts as a duplicate. Returns what live pages should hear once the
/// transaction commits.
pub fn apply_in(
    conn: &mut DbConnection,
    channel: &Channel,
    event: &ProviderEvent,
    applied: &mut Applied,
) -> Result<Vec<HubEvent>, DispatchError> {
    if let Some(id) = event.event_id()
        && !receipts::first_time(conn, channel.id, id)?
    {
        applied.duplicates += 1;
        return Ok(Vec::new());
    }
    apply_one(conn, channel, event, applied)
}

/// Applies the reports that arrived before the message's provider id was stored (called right
/// after a send records it).
pub fn claim_early_statuses(
    conn: &mut DbConnection,
    channel: &Channel,
    message_id: i64,
) -> Result<Vec<HubEvent>, DispatchError> {
    let Some(message) = messages::find(conn, message_id)? else {
        return Ok(Vec::new());
    };
    let Some(provider_id) = message.provider_message_id.clone() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for early in receipts::take_early_statuses(conn, channel.id, &provider_id)? {
        let Ok(status) = early.status.parse::<ProviderStatus>() else {
            continue;
        };
        let class = early
            .error_class
            .as_deref()
            .and_then(|c| ErrorClass::ALL.into_iter().find(|x| x.as_str() == c));
        let error = early.error_code.as_deref().map(|code| {
            (
                code,
                early.error_message.as_deref().unwrap_or_default(),
                class,
            )
        });
        let current = messages::find(conn, message_id)?.unwrap_or_else(|| message.clone());
        out.extend(apply_status_to(
            conn,
            channel,
            &current,
            status,
            early.occurred_at,
            error,
            early.payload.as_deref(),
        )?);
    }
    Ok(out)
}

/// Applies early reports whose message is known by now (a report saved in the instant between
/// the send's commit and its own check would otherwise wait until pruned).
pub fn sweep_early_statuses(conn: &mut DbConnection) -> Result<Vec<HubEvent>, DispatchError> {
    let before = (Utc::now() - chrono::Duration::seconds(5)).naive_utc();
    let mut out = Vec::new();
    for (channel_id, provider_id) in receipts::early_status_keys(conn, before, 500)? {
        let Some(message) = messages::find_by_provider_id(conn, channel_id, &provider_id)? else {
            continue;
        };
        let Some(channel) = crate::storage::channels::find(conn, channel_id)? else {
            continue;
        };
        out.extend(crate::storage::write_transaction(conn, |conn| {
            claim_early_statuses(conn, &channel, message.id)
        })?);
    }
    Ok(out)
}

/// Drops receipts and early reports older than providers retry.
pub fn prune(conn: &mut DbConnection) -> Result<(), DispatchError> {
    let week_ago = (Utc::now() - chrono::Duration::days(8)).naive_utc();
    receipts::prune(conn, week_ago)?;
    receipts::prune_early_statuses(conn, week_ago)?;
    Ok(())
}
