//! Status callbacks to the business (issue 19): the endpoints admins register, their signing
//! secrets (shown once, sealed at rest, rotated with a day's overlap), the delivery log and
//! "send again"; and the two steps the delivery worker (`dispatch::callbacks`) runs through
//! here: fanning events out into deliveries, and recording what each attempt got.
//!
//! Events are written by database triggers in the transaction of the change they report
//! (migration 20261205100000_status_callbacks), only while an enabled endpoint wants that event
//! type, so every place that changes a message, a consent or a broadcast reports it without
//! knowing about callbacks, and a rolled-back change reports nothing.

use std::collections::HashMap;
use std::time::Duration;

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::idempotency::{self, IdempotencyKey};
use super::paging::{Page, PageRequest};
use super::reveals::{Reveal, RevealOn};
use super::{Change, FieldProblems, ServiceError, ServiceResult, Services, api_objects};
use crate::auth::keys::Keys;
use crate::auth::sealed;
use crate::domain::audit::Actor;
use crate::domain::callbacks::{
    self as rules, EventType, KEEP_TRYING, Subject, Verdict, check_url, new_secret,
    private_refusal, refused_address,
};
use crate::storage::callbacks::{
    self as store, DeliveryFilter, DeliveryRow, DeliveryStatus, Endpoint, EndpointFields,
    NewDelivery,
};
use crate::storage::{DbConnection, channels, now, write_transaction};

/// What an admin asks for when registering or changing an endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub allow_private_network: bool,
}

/// A change to some of an endpoint's settings (`None`: keep it).
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub allow_private_network: Option<bool>,
}

/// The longest description kept.
const DESCRIPTION_MAX: usize = 500;
/// How long the secret being rotated out keeps signing beside the new one.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// How long a name may take to resolve when an endpoint is saved.
const SAVE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks an endpoint's settings: field problems come back as `invalid_webhook_endpoint`.
async fn checked(input: &EndpointInput) -> ServiceResult<(String, Vec<EventType>, String)> {
    let mut problems = FieldProblems::new();
    let url = problems.check("url", check_url(&input.url, input.allow_private_network));
    let events = problems.check("events", rules::parse_events(&input.events));
    let description = input.description.trim().to_owned();
    if description.chars().count() > DESCRIPTION_MAX {
        problems.add(
            "description",
            format!("Keep the description under {DESCRIPTION_MAX} characters."),
        );
    }
    if let Some(url) = &url
        && !input.allow_private_network
        && let Some(why) = resolves_privately(url).await
    {
        problems.add("url", private_refusal(why));
    }
    match (url, events) {
        (Some(url), Some(events)) if problems.is_empty() => {
            Ok((url.to_string(), events, description))
        }
        _ => Err(ServiceError::invalid_fields(
            "invalid_webhook_endpoint",
            problems,
        )),
    }
}

/// Whether a URL's host name resolves to an address callbacks may not go to. A name that does
/// not resolve now is accepted (it is looked up again, and checked, before every call).
async fn resolves_privately(url: &url::Url) -> Option<&'static str> {
    let Some(url::Host::Domain(name)) = url.host() else {
        return None;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((name.to_owned(), port));
    let addrs = tokio::time::timeout(SAVE_LOOKUP_TIMEOUT, lookup)
        .await
        .ok()?
        .ok()?;
    addrs.map(|a| a.ip()).find_map(refused_address)
}

fn seal(keys: &Keys, secret: &str) -> ServiceResult<String> {
    sealed::seal(&keys.webhook_secrets, secret).map_err(ServiceError::internal)
}

fn endpoint_or_404(conn: &mut DbConnection, public_id: &str) -> ServiceResult<Endpoint> {
    store::find_endpoint(conn, public_id.trim())?
        .ok_or_else(|| ServiceError::not_found("This webhook endpoint"))
}

fn audit_details(e: &Endpoint) -> Value {
    json!({
        "url": e.url,
        "events": e.event_names(),
        "enabled": e.is_enabled(),
        "allow_private_network": e.allows_private_network(),
    })
}

pub async fn list(svc: &Services) -> ServiceResult<Vec<Endpoint>> {
    svc.read(|conn| Ok(store::list_endpoints(conn)?)).await
}

/// A page of endpoints, in the order they were made (the API's list).
pub async fn page(svc: &Services, request: PageRequest) -> ServiceResult<Page<Endpoint>> {
    svc.read(move |conn| {
        let rows = store::page_endpoints(conn, request.after, request.fetch())?;
        Ok(request.finish(rows, |e| e.id))
    })
    .await
}

pub async fn get(svc: &Services, public_id: String) -> ServiceResult<Endpoint> {
    svc.read(move |conn| endpoint_or_404(conn, &public_id))
        .await
}

/// Registers an endpoint. Its secret comes back to be shown once; when `reveal_to` names an
/// admin's session, it also waits there to be shown on the next page.
pub async fn create(
    svc: &Services,
    actor: Actor,
    input: EndpointInput,
    reveal_to: Option<i64>,
    once: Option<IdempotencyKey>,
) -> ServiceResult<(Endpoint, String)> {
    let (url, events, description) = checked(&input).await?;
    let secret = new_secret();
    let sealed_secret = seal(&svc.keys, &secret)?;
    let reveal = match reveal_to {
        Some(session) => Some((
            Reveal::new(
                format!("Signing secret of {url}"),
                secret.clone(),
                "Copy it now: Herald shows it only once. Verify each callback's webhook-signature with it.",
            )
            .seal(&svc.keys)?,
            session,
        )),
        None => None,
    };
    let endpoint = svc
        .write(actor, move |change| {
            let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
            let fields = EndpointFields {
                url: &url,
                description: &description,
                events: &names,
                enabled: input.enabled,
                allow_private_network: input.allow_private_network,
            };
            let public_id = crate::storage::new_public_id();
            let endpoint =
                store::insert_endpoint(change.conn, &public_id, &fields, &sealed_secret)?;
            change.audit(
                "webhook_endpoint.created",
                "webhook_endpoint",
                Some(&endpoint.public_id),
                audit_details(&endpoint),
            )?;
            if let Some((reveal, session)) = reveal {
                reveal.keep(change.conn, session, RevealOn::Webhooks)?;
            }
            idempotency::remember(change, once.as_ref(), "webhook_endpoint", &public_id)?;
            Ok(endpoint)
        })
        .await?;
    Ok((endpoint, secret))
}

/// Changes what is given in `patch`.
pub async fn update(
    svc: &Services,
    actor: Actor,
    public_id: String,
    patch: EndpointPatch,
) -> ServiceResult<Endpoint> {
    let current = get(svc, public_id).await?;
    let input = EndpointInput {
        url: patch.url.unwrap_or_else(|| current.url.clone()),
        description: patch
            .description
            .unwrap_or_else(|| current.description.clone()),
        events: patch.events.unwrap_or_else(|| {
            current
                .event_names()
                .into_iter()
                .map(str::to_owned)
                .collect()
        }),
        enabled: patch.enabled.unwrap_or(current.is_enabled()),
        allow_private_network: patch
            .allow_private_network
            .unwrap_or(current.allows_private_network()),
    };
    let (url, events, description) = checked(&input).await?;
    svc.write(actor, move |change| {
        let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
        let fields = EndpointFields {
            url: &url,
            description: &description,
            events: &names,
            enabled: input.enabled,
            allow_private_network: input.allow_private_network,
        };
        let endpoint = store::update_endpoint(change.conn, current.id, &fields)?;
        change.audit(
            "webhook_endpoint.updated",
            "webhook_endpoint",
            Some(&endpoint.public_id),
            audit_details(&endpoint),
        )?;
        Ok(endpoint)
    })
    .await
}

/// A new signing secret; the current one keeps signing beside it for [`ROTATION_OVERLAP`].
pub async fn rotate_secret(
    svc: &Services,
    actor: Actor,
    public_id: String,
    reveal_to: Option<i64>,
    once: Option<IdempotencyKey>,
) -> ServiceResult<(Endpoint, String)> {
    let secret = new_secret();
    let sealed_new = seal(&svc.keys, &secret)?;
    let reveal = match reveal_to {
        Some(session) => Some((
            Reveal::new(
                "New signing secret",
                secret.clone(),
                "Copy it now: Herald shows it only once. The old secret keeps signing beside it for 24 hours.",
            )
            .seal(&svc.keys)?,
            session,
        )),
        None => None,
    };
    let endpoint = svc
        .write(actor, move |change| {
            let endpoint = endpoint_or_404(change.conn, &public_id)?;
            let until = now() + ROTATION_OVERLAP;
            store::rotate_secret(
                change.conn,
                endpoint.id,
                &sealed_new,
                &endpoint.secret,
                until,
            )?;
            change.audit(
                "webhook_endpoint.secret_rotated",
                "webhook_endpoint",
                Some(&endpoint.public_id),
                json!({"old_secret_signs_until": until.and_utc().to_rfc3339()}),
            )?;
            if let Some((reveal, session)) = reveal {
                reveal.keep(change.conn, session, RevealOn::Webhooks)?;
            }
            idempotency::remember(change, once.as_ref(), "webhook_endpoint", &public_id)?;
            Ok(store::find_endpoint_by_id(change.conn, endpoint.id)?.unwrap_or(endpoint))
        })
        .await?;
    Ok((endpoint, secret))
}

/// Deletes an endpoint with its delivery log.
pub async fn delete(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<Endpoint> {
    svc.write(actor, move |change| {
        let endpoint = endpoint_or_404(change.conn, &public_id)?;
        store::delete_endpoint(change.conn, endpoint.id)?;
        change.audit(
            "webhook_endpoint.deleted",
            "webhook_endpoint",
            Some(&endpoint.public_id),
            audit_details(&endpoint),
        )?;
        Ok(endpoint)
    })
    .await
}

/// The type of the test event.
pub const TEST_EVENT: &str = "webhook.test";

/// Queues a `webhook.test` delivery to the endpoint (enabled or not: an admin checking a
/// receiver before turning it on). Returns its `webhook-id`.
pub async fn send_test(
    svc: &Services,
    actor: Actor,
    public_id: String,
    once: Option<IdempotencyKey>,
) -> ServiceResult<String> {
    svc.write(actor, move |change| {
        let endpoint = endpoint_or_404(change.conn, &public_id)?;
        let webhook_id = rules::new_webhook_id();
        let payload = json!({
            "type": TEST_EVENT,
            "timestamp": now().and_utc().to_rfc3339(),
            "data": {"endpoint_id": endpoint.public_id, "message": "A test event from Herald."},
        });
        store::insert_deliveries(
            change.conn,
            vec![NewDelivery {
                endpoint_id: endpoint.id,
                webhook_id: webhook_id.clone(),
                event_type: TEST_EVENT.into(),
                payload: payload.to_string(),
            }],
            None,
        )?;
        change.audit(
            "webhook_endpoint.test_sent",
            "webhook_endpoint",
            Some(&endpoint.public_id),
            json!({"webhook_id": webhook_id}),
        )?;
        idempotency::remember(change, once.as_ref(), "webhook_delivery", &webhook_id)?;
        Ok(webhook_id)
    })
    .await
}

/// Which deliveries to send again.
#[derive(Debug, Clone)]
pub enum SendAgain {
    /// One delivery, by its `webhook-id`.
    One(String),
    /// Every failed delivery created since this time.
    FailedSince(NaiveDateTime),
}

/// Makes deliveries due again (with the same `webhook-id`, so a receiver that did get them
/// drops the repeat). Returns how many.
pub async fn send_again(
    svc: &Services,
    actor: Actor,
    public_id: String,
    what: SendAgain,
) -> ServiceResult<usize> {
    svc.write(actor, move |change| {
        let endpoint = endpoint_or_404(change.conn, &public_id)?;
        let n = match &what {
            SendAgain::One(webhook_id) => {
                let delivery = store::find_delivery(change.conn, endpoint.id, webhook_id.trim())?
                    .ok_or_else(|| ServiceError::not_found("This delivery"))?;
                store::send_one_again(change.conn, delivery.id)?
            }
            SendAgain::FailedSince(since) => {
                store::send_failed_again(change.conn, endpoint.id, *since)?
            }
        };
        let details = match &what {
            SendAgain::One(id) => json!({"webhook_id": id, "deliveries": n}),
            SendAgain::FailedSince(t) => {
                json!({"failed_since": t.and_utc().to_rfc3339(), "deliveries": n})
            }
        };
        change.audit(
            "webhook_endpoint.sent_again",
            "webhook_endpoint",
            Some(&endpoint.public_id),
            details,
        )?;
        Ok(n)
    })
    .await
}

/// Reads the delivery log's filters (`status`, `event`, and `cursor`: the id of the oldest
/// delivery of the previous page), as the API and the endpoint page give them.
pub fn log_filter(
    status: Option<&str>,
    event: Option<&str>,
    cursor: Option<&str>,
) -> ServiceResult<DeliveryFilter> {
    let blank = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut problems = FieldProblems::new();
    let status = blank(status).and_then(|s| {
        let parsed = DeliveryStatus::parse(&s);
        if parsed.is_none() {
            problems.add(
                "status",
                format!("\"{s}\" is not a delivery status: use pending, succeeded or failed."),
            );
        }
        parsed
    });
    let before_id = blank(cursor).and_then(|c| {
        let parsed = c.parse::<i64>().ok();
        if parsed.is_none() {
            problems.add("cursor", "The cursor is not one Herald gave.");
        }
        parsed
    });
    if !problems.is_empty() {
        return Err(ServiceError::invalid_fields("invalid_filter", problems));
    }
    Ok(DeliveryFilter {
        status,
        event_type: blank(event),
        before_id,
        page_size: LOG_PAGE,
    })
}

/// A delivery with its attempts, for the log.
pub struct LoggedDelivery {
    pub delivery: DeliveryRow,
    pub attempts: Vec<store::AttemptRow>,
}

/// The largest page of the delivery log.
pub const LOG_PAGE: i64 = 50;

/// A page of an endpoint's delivery log, newest first, and whether there are older ones.
pub async fn log(
    svc: &Services,
    public_id: String,
    filter: DeliveryFilter,
) -> ServiceResult<(Endpoint, Vec<LoggedDelivery>, bool)> {
    svc.read(move |conn| {
        let endpoint = endpoint_or_404(conn, &public_id)?;
        let page = filter.page_size;
        let mut rows = store::deliveries(conn, endpoint.id, &filter, page + 1)?;
        let more = rows.len() as i64 > page;
        rows.truncate(usize::try_from(page).unwrap_or(usize::MAX));
        let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
        let mut by_delivery: HashMap<i64, Vec<store::AttemptRow>> = HashMap::new();
        for a in store::attempts_of(conn, &ids)? {
            by_delivery.entry(a.delivery_id).or_default().push(a);
        }
        let logged = rows
            .into_iter()
            .map(|d| LoggedDelivery {
                attempts: by_delivery.remove(&d.id).unwrap_or_default(),
                delivery: d,
            })
            .collect();
        Ok((endpoint, logged, more))
    })
    .await
}

// --- the worker's steps ---

/// What one [`fan_out`] took and claimed.
pub struct FannedOut {
    /// Events taken.
    pub events: usize,
    /// Deliveries claimed for the caller until the lease's end, oldest due first.
    pub claimed: Vec<DeliveryRow>,
}

/// Fans out up to `limit` events into deliveries, one per event per endpoint that wants it,
/// in one transaction (an event is either still waiting or fanned out). An endpoint's
/// deliveries are claimed for the caller as they are written, until `lease_until`, up to its
/// `room` (so they are not written due and then claimed by a second statement); the others are
/// due at once. When fewer than `limit` events waited (the last batch), the room left is
/// filled, in the same transaction, with deliveries already due ([`store::claim_due`]: retries,
/// claims given back, what found no room before). Blocking.
pub fn fan_out(
    conn: &mut DbConnection,
    limit: i64,
    room: &HashMap<i64, usize>,
    lease_until: NaiveDateTime,
) -> ServiceResult<FannedOut> {
    write_transaction(conn, |conn| {
        let mut room = room.clone();
        let events = store::take_events(conn, limit)?;
        let (mut mine, mut due) = (Vec::new(), Vec::new());
        if !events.is_empty() {
            let mut wanted: HashMap<String, Vec<i64>> = HashMap::new();
            for (event_type, endpoint) in store::subscriptions(conn)? {
                wanted.entry(event_type).or_default().push(endpoint);
            }
            let datas = event_data(conn, &events)?;
            for (event, data) in events.iter().zip(datas) {
                let (Some(targets), Some(data)) = (wanted.get(&event.event_type), data) else {
                    continue;
                };
                let mut payload = format!(
                    r#"{{"type":{},"timestamp":{},"data":{data}}}"#,
                    Value::from(event.event_type.as_str()),
                    Value::from(event.occurred_at.and_utc().to_rfc3339()),
                );
                for (i, endpoint) in targets.iter().enumerate() {
                    let delivery = NewDelivery {
                        endpoint_id: *endpoint,
                        webhook_id: rules::new_webhook_id(),
                        event_type: event.event_type.clone(),
                        payload: if i + 1 < targets.len() {
                            payload.clone()
                        } else {
                            std::mem::take(&mut payload)
                        },
                    };
                    match room.get_mut(endpoint) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            mine.push(delivery);
                        }
                        _ => due.push(delivery),
                    }
                }
            }
        }
        store::insert_deliveries(conn, due, None)?;
        let mut claimed = Vec::new();
        if (events.len() as i64) < limit {
            let left: Vec<(i64, i64)> = room.iter().map(|(e, n)| (*e, *n as i64)).collect();
            claimed = store::claim_due(conn, &left, lease_until)?;
        }
        claimed.extend(store::insert_deliveries(conn, mine, Some(lease_until))?);
        Ok(FannedOut {
            events: events.len(),
            claimed,
        })
    })
}

/// The `data` of each event, as JSON text: the API's own JSON of its message, contact or
/// broadcast, as it is now but with the status the event reports (`None` when the subject is
/// gone).
fn event_data(
    conn: &mut DbConnection,
    events: &[store::EventRow],
) -> ServiceResult<Vec<Option<String>>> {
    let kind = |e: &store::EventRow| e.event_type.parse::<EventType>().ok().map(|t| t.subject());
    // Messages come in bulk (every status change): read them a batch at a time.
    let message_ids: Vec<i64> = events
        .iter()
        .filter(|e| kind(e) == Some(Subject::Message))
        .map(|e| e.subject_id)
        .collect();
    let mut messages = HashMap::new();
    let mut contacts = HashMap::new();
    let mut broadcasts = HashMap::new();
    let mut channels_by_id = HashMap::new();
    if !message_ids.is_empty() {
        for chunk in message_ids.chunks(500) {
            for m in store::messages_by_ids(conn, chunk)? {
                messages.insert(m.id, m);
            }
        }
        let contact_ids: Vec<i64> = messages.values().map(|m| m.contact_id).collect();
        let campaign_ids: Vec<i64> = messages.values().filter_map(|m| m.campaign_id).collect();
        for chunk in contact_ids.chunks(500) {
            contacts.extend(store::contact_public_ids(conn, chunk)?);
        }
        for chunk in campaign_ids.chunks(500) {
            broadcasts.extend(store::broadcast_public_ids(conn, chunk)?);
        }
    }
    for c in channels::list(conn)? {
        channels_by_id.insert(c.id, c);
    }
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let data = match kind(e) {
            Some(Subject::Message) => messages.get(&e.subject_id).and_then(|m| {
                let channel = channels_by_id.get(&m.channel_id)?;
                let contact = contacts.get(&m.contact_id).cloned().unwrap_or_default();
                let mut json = api_objects::message_json(m.clone(), channel, contact);
                json.broadcast_id = m.campaign_id.and_then(|b| broadcasts.get(&b).cloned());
                // The status this event reports, whatever happened since.
                json.status = e.detail.clone();
                // Written straight from the struct (not through a `Value`): every send makes
                // one.
                serde_json::to_string(&json).ok()
            }),
            Some(Subject::Inbound) => store::inbound(conn, e.subject_id)?.and_then(|m| {
                let channel = channels_by_id.get(&m.channel_id)?;
                let contact = crate::storage::contacts::find(conn, m.contact_id).ok()??;
                Some(
                    json!({
                        "id": m.public_id,
                        "channel": api_objects::ChannelRef::of(channel),
                        "contact_id": contact.public_id,
                        "from": contact.phone.as_str(),
                        "body": m.body,
                        "provider_message_id": m.provider_message_id,
                        "received_at": m.received_at.and_utc().to_rfc3339(),
                    })
                    .to_string(),
                )
            }),
            Some(Subject::Contact) => match crate::storage::contacts::find(conn, e.subject_id)? {
                Some(contact) => {
                    let view = super::contacts::view_in(conn, contact)?;
                    let mut json = serde_json::to_value(api_objects::contact_json(view))
                        .map_err(ServiceError::internal)?;
                    if let Some(obj) = json.as_object_mut() {
                        obj.insert("channel_kind".into(), Value::String(e.detail.clone()));
                    }
                    Some(json.to_string())
                }
                None => None,
            },
            Some(Subject::Broadcast) => match crate::storage::broadcasts::find(conn, e.subject_id)?
            {
                Some(row) => {
                    let view = super::broadcasts::view_in(conn, row)?;
                    Some(
                        serde_json::to_string(&api_objects::broadcast_json(view))
                            .map_err(ServiceError::internal)?,
                    )
                }
                None => None,
            },
            None => None,
        };
        out.push(data);
    }
    Ok(out)
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    pub endpoint_id: i64,
    /// The delivery's attempts, this one included.
    pub attempts: i32,
    /// When the delivery was created (or sent again): tries stop [`KEEP_TRYING`] after it.
    pub created_at: NaiveDateTime,
    pub attempted_at: NaiveDateTime,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub duration_ms: i32,
    pub excerpt: String,
    /// Why no answer came (timeout, connection refused, address refused).
    pub error: Option<String>,
    /// The endpoint's `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// Records attempts (a batch, in one transaction): each delivery is done, failed, or due again
/// after a backoff with jitter; a 410 disables its endpoint, and so does failing for a day
/// (with an audit entry). Blocking.
pub fn record_attempts(
    conn: &mut DbConnection,
    outcomes: &[AttemptOutcome],
    retry_base: Duration,
) -> ServiceResult<()> {
    settle(conn, outcomes, &[], retry_base)
}

/// What the worker settles in one transaction: the attempts it made ([`record_attempts`]), and
/// the claims it gives back untried (`(delivery id, attempts as claimed)`: its endpoint went
/// away, or the lease ran out before its turn), due again at once. Blocking.
pub fn settle(
    conn: &mut DbConnection,
    outcomes: &[AttemptOutcome],
    released: &[(i64, i32)],
    retry_base: Duration,
) -> ServiceResult<()> {
    let actor = Actor::system("status callbacks");
    let policy = rules::retry_policy(retry_base);
    super::write(conn, &actor, |change| {
        let at = now();
        store::release_claims(change.conn, released)?;
        let mut attempts = Vec::with_capacity(outcomes.len());
        // Per endpoint, in the order they came: whether one got through, whether the last
        // failed, whether one said 410.
        let mut health: Vec<(i64, bool, bool, bool)> = Vec::new();
        for o in outcomes {
            let verdict = rules::verdict(o.status);
            let (status, next) = match verdict {
                Verdict::Delivered => (DeliveryStatus::Succeeded, at),
                Verdict::Gone | Verdict::Failed => (DeliveryStatus::Failed, at),
                Verdict::Retry => {
                    let jitter: f64 = rand::random();
                    let delay =
                        policy.next_attempt(o.attempts.max(1) as u32, o.retry_after, jitter);
                    match delay {
                        Some(d) if at - o.created_at < KEEP_TRYING => (
                            DeliveryStatus::Pending,
                            at + chrono::TimeDelta::from_std(d)
                                .unwrap_or(chrono::TimeDelta::hours(1)),
                        ),
                        _ => (DeliveryStatus::Failed, at),
                    }
                }
            };
            attempts.push(store::NewAttempt {
                delivery_id: o.delivery_id,
                attempted_at: o.attempted_at,
                status_code: o.status.map(i32::from),
                duration_ms: o.duration_ms,
                response_excerpt: &o.excerpt,
                error: o.error.as_deref(),
                then: status,
                next_attempt_at: next,
            });
            let failing = verdict != Verdict::Delivered;
            let i = match health.iter().position(|h| h.0 == o.endpoint_id) {
                Some(i) => i,
                None => {
                    health.push((o.endpoint_id, false, false, false));
                    health.len() - 1
                }
            };
            let h = &mut health[i];
            h.1 |= !failing;
            h.2 = failing;
            h.3 |= verdict == Verdict::Gone;
        }
        store::record_attempts(change.conn, &attempts)?;
        for (endpoint_id, answered, last_failed, gone) in health {
            // As if noted one by one: an answer clears the failing time, a failure after it
            // starts it again.
            let mut since = None;
            if answered {
                since = store::note_health(change.conn, endpoint_id, false, at)?;
            }
            if last_failed {
                since = store::note_health(change.conn, endpoint_id, true, at)?;
            }
            let reason = match since {
                _ if gone => Some("The endpoint answered 410 Gone.".to_owned()),
                Some(since) if last_failed && at - since >= KEEP_TRYING => Some(format!(
                    "Every delivery failed since {} (24 hours).",
                    since.and_utc().format("%Y-%m-%d %H:%M UTC")
                )),
                _ => None,
            };
            if let Some(reason) = reason
                && store::find_endpoint_by_id(change.conn, endpoint_id)?
                    .is_some_and(|e| e.is_enabled())
            {
                disable(change, endpoint_id, &reason)?;
            }
        }
        Ok(())
    })
}

fn disable(change: &mut Change<'_>, endpoint_id: i64, reason: &str) -> ServiceResult<()> {
    store::disable_endpoint(change.conn, endpoint_id, reason)?;
    let public_id = store::find_endpoint_by_id(change.conn, endpoint_id)?
        .map(|e| e.public_id)
        .unwrap_or_default();
    change.audit(
        "webhook_endpoint.disabled",
        "webhook_endpoint",
        Some(&public_id),
        json!({"reason": reason}),
    )
}

/// The HMAC keys an endpoint signs with now: its secret, and the one rotated out while that
/// still signs.
pub fn signing_keys(keys: &Keys, endpoint: &Endpoint) -> ServiceResult<Vec<Vec<u8>>> {
    let open = |sealed_secret: &str| -> ServiceResult<Vec<u8>> {
        let secret =
            sealed::open(&keys.webhook_secrets, sealed_secret).map_err(ServiceError::internal)?;
        rules::secret_key(&secret).map_err(|e| ServiceError::internal(anyhow::anyhow!(e)))
    };
    let mut out = vec![open(&endpoint.secret)?];
    if let (Some(old), Some(until)) = (&endpoint.previous_secret, endpoint.previous_secret_until)
        && until > now()
    {
        out.push(open(old)?);
    }
    Ok(out)
}

/// How long finished deliveries are kept when retention is off.
const KEEP_LOG_DAYS: i32 = 30;

/// Purges finished deliveries older than the retention setting (30 days when it is off).
/// Blocking.
pub fn purge(conn: &mut DbConnection) -> ServiceResult<usize> {
    let days = super::retention::stored_days(conn)?.unwrap_or(KEEP_LOG_DAYS);
    let before = now() - chrono::TimeDelta::days(i64::from(days.max(1)));
    Ok(store::purge_finished_before(conn, before)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing;
    use diesel::prelude::*;

    fn endpoint(conn: &mut DbConnection) -> Endpoint {
        store::insert_endpoint(
            conn,
            "ep-1",
            &EndpointFields {
                url: "https://example.com/hooks",
                description: "",
                events: &["message.sent"],
                enabled: true,
                allow_private_network: false,
            },
            "sealed",
        )
        .expect("endpoint")
    }

    fn failed_attempt(e: &Endpoint, delivery_id: i64, status: u16) -> AttemptOutcome {
        AttemptOutcome {
            delivery_id,
            endpoint_id: e.id,
            attempts: 1,
            created_at: now(),
            attempted_at: now(),
            status: Some(status),
            duration_ms: 3,
            excerpt: "nope".into(),
            error: None,
            retry_after: None,
        }
    }

    fn delivery(conn: &mut DbConnection, e: &Endpoint) -> i64 {
        store::insert_deliveries(
            conn,
            vec![NewDelivery {
                endpoint_id: e.id,
                webhook_id: rules::new_webhook_id(),
                event_type: "message.sent".into(),
                payload: "{}".into(),
            }],
            None,
        )
        .expect("delivery")[0]
            .id
    }

    #[test]
    fn an_endpoint_failing_for_a_day_is_disabled_with_an_audit_entry() {
        use crate::storage::schema::webhook_endpoints;
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let e = endpoint(&mut conn);
        // A failure an hour ago: still enabled, and the retry is scheduled.
        let id = delivery(&mut conn, &e);
        record_attempts(
            &mut conn,
            &[failed_attempt(&e, id, 503)],
            Duration::from_millis(10),
        )
        .expect("recorded");
        let after = store::find_endpoint_by_id(&mut conn, e.id)
            .unwrap()
            .unwrap();
        assert!(after.is_enabled());
        assert!(after.failing_since.is_some());
        let log = store::deliveries(&mut conn, e.id, &DeliveryFilter::default(), 10).unwrap();
        assert_eq!(log[0].status, "pending", "retried later");
        // Failing since 25 hours ago: the next failure disables it, with the reason and an entry.
        diesel::update(webhook_endpoints::table.find(e.id))
            .set(webhook_endpoints::failing_since.eq(Some(now() - chrono::TimeDelta::hours(25))))
            .execute(&mut conn)
            .unwrap();
        let id = delivery(&mut conn, &e);
        record_attempts(
            &mut conn,
            &[failed_attempt(&e, id, 500)],
            Duration::from_millis(10),
        )
        .expect("recorded");
        let after = store::find_endpoint_by_id(&mut conn, e.id)
            .unwrap()
            .unwrap();
        assert!(!after.is_enabled());
        assert!(after.disabled_reason.unwrap().contains("24 hours"));
        assert_eq!(testing::audit_entries_by(&mut conn, "status callbacks"), 1);
        assert!(
            store::subscriptions(&mut conn).unwrap().is_empty(),
            "nothing more is fanned out"
        );
    }

    #[test]
    fn a_batch_settles_each_delivery_and_gives_back_untried_claims() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let e = endpoint(&mut conn);
        let ids: Vec<i64> = (0..4).map(|_| delivery(&mut conn, &e)).collect();
        let lease = now() + chrono::TimeDelta::minutes(1);
        assert_eq!(
            store::claim_due(&mut conn, &[(e.id, 10)], lease)
                .unwrap()
                .len(),
            4
        );
        settle(
            &mut conn,
            &[
                failed_attempt(&e, ids[0], 200),
                failed_attempt(&e, ids[1], 503),
                failed_attempt(&e, ids[2], 400),
            ],
            &[(ids[3], 1)],
            Duration::from_millis(10),
        )
        .expect("settled");
        let log = store::deliveries(&mut conn, e.id, &DeliveryFilter::default(), 10).unwrap();
        let row = |id: i64| log.iter().find(|d| d.id == id).expect("delivery");
        assert_eq!(row(ids[0]).status, "succeeded");
        assert_eq!(row(ids[1]).status, "pending", "retried later");
        assert_eq!(row(ids[2]).status, "failed");
        let given_back = row(ids[3]);
        assert_eq!(given_back.status, "pending");
        assert_eq!(given_back.attempts, 0, "the untried claim is not counted");
        assert!(given_back.next_attempt_at <= now(), "due again at once");
        assert_eq!(store::attempts_of(&mut conn, &ids).unwrap().len(), 3);
        let after = store::find_endpoint_by_id(&mut conn, e.id)
            .unwrap()
            .unwrap();
        assert!(
            after.failing_since.is_some(),
            "the last answer was a failure"
        );
        assert!(after.is_enabled());
    }

    #[test]
    fn claims_take_each_endpoints_room_and_only_a_running_lease_is_extended() {
        use crate::storage::schema::webhook_deliveries;
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let e = endpoint(&mut conn);
        let (a, b) = (delivery(&mut conn, &e), delivery(&mut conn, &e));
        let lease = now() + chrono::TimeDelta::minutes(1);
        let first = store::claim_due(&mut conn, &[(e.id, 1)], lease).unwrap();
        assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), [a]);
        assert_eq!(first[0].attempts, 1);
        let second = store::claim_due(&mut conn, &[(e.id, 5)], lease).unwrap();
        assert_eq!(second.iter().map(|d| d.id).collect::<Vec<_>>(), [b]);
        assert!(
            store::claim_due(&mut conn, &[(e.id, 5)], lease)
                .unwrap()
                .is_empty()
        );

        let later = now() + chrono::TimeDelta::minutes(5);
        let before = now() + chrono::TimeDelta::minutes(2);
        let mut extended = store::extend_leases(&mut conn, &[a, b], before, later).unwrap();
        extended.sort();
        assert_eq!(extended, [a, b]);
        // `a`'s lease ran out (another worker may claim it): it is not extended.
        diesel::update(webhook_deliveries::table.find(a))
            .set(webhook_deliveries::next_attempt_at.eq(now() - chrono::TimeDelta::seconds(1)))
            .execute(&mut conn)
            .unwrap();
        let much_later = now() + chrono::TimeDelta::minutes(10);
        let extended = store::extend_leases(&mut conn, &[a, b], much_later, much_later).unwrap();
        assert_eq!(extended, [b]);
    }

    #[test]
    fn a_fan_out_claims_what_fits_its_room_and_fills_the_rest_from_the_due() {
        use diesel::connection::SimpleConnection;
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let e = store::insert_endpoint(
            &mut conn,
            "ep-2",
            &EndpointFields {
                url: "https://example.com/hooks",
                description: "",
                events: &["contact.opted_out"],
                enabled: true,
                allow_private_network: false,
            },
            "sealed",
        )
        .expect("endpoint");
        let at = "2026-01-01 00:00:00";
        conn.batch_execute(&format!(
            "INSERT INTO contacts (id, public_id, phone, attributes, created_at, updated_at) \
             VALUES (7, 'c-7', '+15550007', '{{}}', '{at}', '{at}'); \
             INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at) VALUES \
             ('contact.opted_out', 7, 'whatsapp', '{at}'), ('contact.opted_out', 7, 'sms', '{at}'), \
             ('contact.opted_out', 7, 'email', '{at}');"
        ))
        .expect("events");
        let lease = now() + chrono::TimeDelta::minutes(1);
        let room = HashMap::from([(e.id, 2)]);
        let first = fan_out(&mut conn, 500, &room, lease).expect("fanned out");
        assert_eq!(first.events, 3);
        assert_eq!(first.claimed.len(), 2, "as many as its room");
        let log = store::deliveries(&mut conn, e.id, &DeliveryFilter::default(), 10).unwrap();
        assert_eq!(log.len(), 3, "one delivery per event");
        for c in &first.claimed {
            let stored = log.iter().find(|d| d.id == c.id).expect("stored");
            assert_eq!(stored.webhook_id, c.webhook_id);
            assert_eq!(stored.payload, c.payload);
            assert_eq!(
                (stored.attempts, stored.next_attempt_at),
                (1, lease),
                "claimed"
            );
            let body: Value = serde_json::from_str(&c.payload).expect("JSON");
            assert_eq!(body["type"], "contact.opted_out");
            assert_eq!(body["data"]["id"], "c-7");
        }
        let unclaimed = log
            .iter()
            .find(|d| first.claimed.iter().all(|c| c.id != d.id))
            .expect("the third");
        assert_eq!(unclaimed.attempts, 0);
        assert!(unclaimed.next_attempt_at <= now(), "due at once");
        assert!(
            store::claim_due(&mut conn, &[(e.id, 5)], lease)
                .unwrap()
                .iter()
                .all(|d| d.id == unclaimed.id),
            "the claimed ones are nobody else's"
        );

        // No events left: the room is filled from the due deliveries.
        conn.batch_execute(&format!(
            "UPDATE webhook_deliveries SET attempts = 0, next_attempt_at = '{at}' WHERE id = {}",
            unclaimed.id
        ))
        .unwrap();
        let second = fan_out(&mut conn, 500, &HashMap::from([(e.id, 5)]), lease).unwrap();
        assert_eq!(second.events, 0);
        assert_eq!(
            second.claimed.iter().map(|d| d.id).collect::<Vec<_>>(),
            [unclaimed.id]
        );
    }

    #[test]
    fn a_delivery_older_than_a_day_fails_instead_of_retrying() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let e = endpoint(&mut conn);
        let id = delivery(&mut conn, &e);
        let mut old = failed_attempt(&e, id, 503);
        old.created_at = now() - chrono::TimeDelta::hours(25);
        record_attempts(&mut conn, &[old], Duration::from_millis(10)).expect("recorded");
        let log = store::deliveries(&mut conn, e.id, &DeliveryFilter::default(), 10).unwrap();
        assert_eq!(log[0].status, "failed");
    }
}
