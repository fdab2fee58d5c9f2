//! Provider callbacks: `/webhooks/{whatsapp|twilio|infobip}/{channel id}`. The signature is
//! checked first (401 and nothing stored when it fails); then events are de-duplicated by the
//! provider's id and applied. A signed body Herald cannot read is logged and acknowledged, so a
//! provider never retries it for days.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use crate::channels::{
    Adapter, ChannelAdapter, ProviderEvent, WebhookError, WebhookOutcome, WebhookRequest, twilio,
};
use crate::dispatch::events;
use crate::domain::channel::Provider;
use crate::error::{AppError, json_error};
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};

fn provider_of(segment: &str) -> Option<Provider> {
    match segment {
        "whatsapp" => Some(Provider::WhatsappCloud),
        "twilio" => Some(Provider::Twilio),
        "infobip" => Some(Provider::Infobip),
        _ => None,
    }
}

/// The largest webhook body read (a Meta batch is far smaller); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads a webhook's body, at most [`MAX_BODY_BYTES`]. Its time is bounded for every request
/// by `web::body_deadline`. `Err` is the answer to give instead.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("A webhook body has at most {MAX_BODY_BYTES} bytes."),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("The request body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GET (WhatsApp's verification handshake) and POST (events) for every provider. The channel
/// is looked up first: a webhook for no channel is answered 404 without its body being read.
pub async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let (segment, channel_id) = path.into_inner();
    let provider = provider_of(&segment).ok_or_else(|| AppError::not_found("This webhook"))?;
    let lookup = channel_id.clone();
    let channel = state
        .db
        .run(move |conn| Ok::<_, AppError>(channels::find_by_public_id(conn, &lookup)?))
        .await?
        .filter(|c| c.provider == provider)
        .ok_or_else(|| AppError::not_found("This webhook"))?;
    let adapter = state.channels.adapter(&channel).map_err(|e| {
        tracing::error!(channel = %channel.name, error = %e, "a webhook arrived for a channel whose settings cannot be used");
        AppError::Unavailable(anyhow::anyhow!("channel settings unusable: {e}"))
    })?;

    let body = match read_body(&req, payload).await {
        Ok(body) => body,
        Err(answer) => return Ok(answer),
    };

    // The URL the provider signed: the public one, as the provider was told it.
    let mut url = format!("{}{}", state.public_url, req.path());
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let mut webhook = WebhookRequest::new(req.method().as_str(), url).with_body(body);
    for (name, value) in req.headers() {
        if let Ok(v) = value.to_str() {
            webhook = webhook.with_header(name.as_str(), v);
        }
    }

    match adapter.parse_webhook(&webhook) {
        Ok(WebhookOutcome::Challenge(challenge)) => Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .body(challenge)),
        Ok(WebhookOutcome::Events(list)) => {
            for (target, list) in route(&state, &channel, &webhook, list).await? {
                let count = list.len();
                let applied = events::apply(&state.db, &state.hub, &target, list).await?;
                tracing::info!(channel = %target.name, events = count, ?applied, "webhook applied");
            }
            Ok(acknowledge(provider))
        }
        Err(WebhookError::BadSignature) => {
            tracing::warn!(channel = %channel.name, "webhook with a missing or wrong signature refused");
            let status = if req.method() == actix_web::http::Method::GET {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            Ok(HttpResponse::build(status).json(serde_json::json!({
                "error": {"code": "invalid_signature", "message": "The webhook signature is missing or wrong."}
            })))
        }
        Err(WebhookError::Malformed(what)) => {
            tracing::warn!(channel = %channel.name, problem = %what, "a webhook Herald cannot read was acknowledged and ignored");
            Ok(acknowledge(provider))
        }
    }
}

/// Which channel each event is about. One Meta app has one webhook URL for all its numbers, so
/// a WhatsApp event names its number (`metadata.phone_number_id`) and goes to the channel with
/// that number, but only when that channel's own app secret signed the body (the channels of
/// one Meta app share its secret): a body signed with channel A's secret never touches channel
/// B. Events for a number no channel has, or whose channel's secret did not sign them, are
/// logged and dropped. Every other event belongs to the channel in the URL.
async fn route(
    state: &AppState,
    channel: &Channel,
    webhook: &WebhookRequest,
    list: Vec<ProviderEvent>,
) -> Result<Vec<(Channel, Vec<ProviderEvent>)>, AppError> {
    let own = phone_number_id(channel);
    let foreign = |e: &ProviderEvent| e.account().is_some_and(|a| Some(a) != own.as_deref());
    if channel.provider != Provider::WhatsappCloud || !list.iter().any(foreign) {
        return Ok(vec![(channel.clone(), list)]);
    }
    let others = state
        .db
        .run(|conn| Ok::<_, AppError>(channels::list(conn)?))
        .await?
        .into_iter()
        .filter(|c| c.provider == Provider::WhatsappCloud && c.id != channel.id)
        .collect::<Vec<_>>();
    let mut routed: Vec<(Channel, Vec<ProviderEvent>)> = vec![(channel.clone(), Vec::new())];
    // Whether each other channel's secret signed this body, checked once per channel.
    let mut signed_by: Vec<(i64, bool)> = Vec::new();
    for event in list {
        if !foreign(&event) {
            routed[0].1.push(event);
            continue;
        }
        let account = event.account().unwrap_or_default();
        let Some(target) = others
            .iter()
            .find(|c| phone_number_id(c).as_deref() == Some(account))
        else {
            tracing::warn!(channel = %channel.name, phone_number_id = account, "a WhatsApp event for a number no channel has was ignored");
            continue;
        };
        let signed = match signed_by.iter().find(|(id, _)| *id == target.id) {
            Some((_, signed)) => *signed,
            None => {
                let signed = signed_with_secret_of(state, target, webhook);
                signed_by.push((target.id, signed));
                signed
            }
        };
        if !signed {
            tracing::warn!(channel = %channel.name, target = %target.name, phone_number_id = account, "a WhatsApp event for another channel's number was not signed with that channel's app secret; ignored");
            continue;
        }
        match routed.iter_mut().find(|(c, _)| c.id == target.id) {
            Some((_, events)) => events.push(event),
            None => routed.push((target.clone(), vec![event])),
        }
    }
    Ok(routed)
}

/// True when `target`'s own app secret signed this webhook. A channel whose settings cannot
/// be used verifies nothing.
fn signed_with_secret_of(state: &AppState, target: &Channel, webhook: &WebhookRequest) -> bool {
    match state.channels.adapter(target) {
        Ok(Adapter::Whatsapp(adapter)) => adapter.signed_by_app(webhook),
        Ok(_) => false,
        Err(e) => {
            tracing::error!(channel = %target.name, error = %e, "a WhatsApp channel's settings cannot be used to check a webhook");
            false
        }
    }
}

/// A WhatsApp channel's number id, from its (non-secret) settings.
fn phone_number_id(channel: &Channel) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&channel.settings)
        .ok()?
        .get("phone_number_id")?
        .as_str()
        .map(str::to_owned)
}

/// The answer each provider expects (Twilio wants TwiML; an empty response sends nothing back).
fn acknowledge(provider: Provider) -> HttpResponse {
    match provider {
        Provider::Twilio => HttpResponse::Ok()
            .content_type("text/xml")
            .body(twilio::EMPTY_TWIML),
        _ => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
    }
}
