//! A fake of the three providers' HTTP APIs, for tests, benchmarks and crash tests: WhatsApp
//! Cloud API (`/{version}/{phone_number_id}/messages`, `message_templates`), Twilio
//! (`/2010-04-01/Accounts/{sid}/Messages.json`) and Infobip Viber (`/viber/2/messages`,
//! templates), answering with the real response shapes (shared/reference/).
//!
//! It injects faults (latency, 500s, 429s with `Retry-After`, requests that never get an
//! answer), counts what each recipient received so a test can prove nobody got a message
//! twice, keeps the last requests for field-by-field assertions, and plays the providers'
//! webhooks back to Herald, signed as the providers sign them: a status sequence after each
//! accepted send, and inbound messages on demand.
//!
//! Start it in-process with [`FakeProvider::start`] (port 0), or as the binary
//! `cargo run --example fake_provider -- --help`. `GET /_fake/stats` serves [`FakeStats`] as
//! JSON, `GET /_fake/requests` the kept requests, and `POST /_fake/inbound` with
//! `{"provider": "whatsapp"|"twilio"|"infobip", "from": "+1…", "text": "…"}` sends an inbound
//! message to Herald.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::channels::{infobip_viber, twilio, whatsapp};

/// Which provider's API a request spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FakeProviderKind {
    Whatsapp,
    Twilio,
    Infobip,
}

/// A status the fake reports back after an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FakeStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// Where Herald receives a provider's webhooks, and the secret they are signed with (Meta app
/// secret, Twilio auth token, Infobip shared webhook secret).
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub url: String,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Added before every provider answer.
    pub latency: Duration,
    /// Share of provider requests answered 500 (0.0 to 1.0).
    pub error_rate: f64,
    /// Share answered 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    pub retry_after: Duration,
    /// Share that get no answer for `hang_for` (the client times out first).
    pub hang_rate: f64,
    pub hang_for: Duration,
    /// How many requests to keep for assertions.
    pub keep_last: usize,
    /// Seeds the fault dice, for reproducible runs.
    pub seed: Option<u64>,
    /// Reported after every accepted send, `status_delay` apart.
    pub status_sequence: Vec<FakeStatus>,
    pub status_delay: Duration,
    /// WhatsApp webhooks (statuses and inbound) go here, signed with the app secret.
    pub whatsapp_webhook: Option<WebhookEndpoint>,
    /// Twilio inbound messages go here, signed with the auth token. Status callbacks go to
    /// each send's `StatusCallback`, signed with the auth token the send authenticated with.
    pub twilio_webhook: Option<WebhookEndpoint>,
    /// Infobip inbound messages go here. Reports go to each send's `webhooks.delivery.url` /
    /// `webhooks.seen.url`; the secret is also sent as `X-Herald-Webhook-Secret`.
    pub infobip_webhook: Option<WebhookEndpoint>,
    /// What template lookups answer (`APPROVED`, `PENDING`, `REJECTED`…).
    pub template_status: String,
    /// actix workers.
    pub workers: usize,
    /// Keep the time of every accepted send (`FakeStats::accepted_at_ms`), to measure rates.
    pub record_times: bool,
    /// Count sends per recipient (the duplicate check). Off for a million-message memory
    /// measurement, where the fake's own maps would dwarf Herald's memory.
    pub count_recipients: bool,

    // A provider repeating a message id.
    /// WhatsApp sends answered with an id the fake gave before, as `(n, m)`: the send that
    /// draws id number `n` is answered with id number `m` (ids are numbered from 1 in the order
    /// the fake gives them; created templates draw numbers too).
    pub repeat_ids: Vec<(u64, u64)>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            latency: Duration::ZERO,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after: Duration::from_secs(1),
            hang_rate: 0.0,
            hang_for: Duration::from_secs(600),
            keep_last: 100,
            seed: None,
            status_sequence: Vec::new(),
            status_delay: Duration::from_millis(50),
            whatsapp_webhook: None,
            twilio_webhook: None,
            infobip_webhook: None,
            template_status: "APPROVED".into(),
            workers: 1,
            record_times: false,
            count_recipients: true,
            repeat_ids: Vec::new(),
        }
    }
}

/// Counters, as served at `GET /_fake/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeStats {
    pub requests: u64,
    pub sends_received: u64,
    pub sends_accepted: u64,
    pub errors_500: u64,
    pub rate_limited: u64,
    pub hung: u64,
    pub scripted: u64,
    pub unauthorized: u64,
    pub templates_created: u64,
    /// Templates edited through Meta's edit call (`POST /{version}/{template-id}`).
    pub templates_edited: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    /// Send requests per recipient (`+digits`), whatever the answer.
    pub received_per_recipient: BTreeMap<String, u64>,
    /// Sends answered as accepted per recipient: more than one is a duplicate.
    pub accepted_per_recipient: BTreeMap<String, u64>,
    /// When each accepted send arrived, in milliseconds since the Unix epoch (with
    /// `record_times`).
    pub accepted_at_ms: Vec<u64>,
}

impl FakeStats {
    /// Recipients who were accepted more than one message.
    pub fn duplicates(&self) -> Vec<(String, u64)> {
        self.accepted_per_recipient
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub provider: FakeProviderKind,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the fake did: `accepted`, `500`, `429`, `hang`, `scripted`, `401`, …
    pub outcome: String,
}

impl RecordedRequest {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).unwrap_or_default()
    }

    pub fn form_value(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer queued for the next provider request, before any random fault.
#[derive(Debug, Clone)]
pub enum Scripted {
    Respond {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// No answer for `hang_for`.
    Hang,
}

impl Scripted {
    pub fn json(status: u16, body: Value) -> Self {
        Scripted::Respond {
            status,
            body: body.to_string(),
            headers: vec![("Content-Type".into(), "application/json".into())],
        }
    }

    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        Scripted::Respond {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Scripted::Respond { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("no {0:?} webhook endpoint is configured")]
    NoEndpoint(FakeProviderKind),
    #[error("posting the webhook failed: {0}")]
    Post(#[from] reqwest::Error),
}

#[derive(Debug, Clone)]
struct FakeTemplate {
    id: String,
    name: String,
    language: String,
    category: String,
    /// Set once a status webhook was sent for it; lookups answer `template_status` until then.
    status: Option<String>,
}

struct State {
    config: FakeConfig,
    rng: Mutex<StdRng>,
    stats: Arc<Mutex<FakeStats>>,
    recent: Mutex<VecDeque<RecordedRequest>>,
    script: Mutex<VecDeque<Scripted>>,
    templates: Mutex<HashMap<String, FakeTemplate>>,
    counter: AtomicU64,
    http: reqwest::Client,
}

/// Poisoned locks only mean a handler panicked mid-update; the counters are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.clamp(0.0, 1.0))
    }

    fn stats(&self, f: impl FnOnce(&mut FakeStats)) {
        f(&mut lock(&self.stats));
    }
}

pub struct FakeProvider;

/// A running fake: its URL, counters and kept requests; stops when dropped.
pub struct FakeProviderHandle {
    pub base_url: String,
    state: Arc<State>,
    server: ServerHandle,
}

impl FakeProvider {
    /// Starts on a free loopback port.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeProviderHandle> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        config: FakeConfig,
    ) -> std::io::Result<FakeProviderHandle> {
        let listener = std::net::TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::seed_from_u64(rand::random()),
        };
        let workers = config.workers.max(1);
        let state = Arc::new(State {
            config,
            rng: Mutex::new(rng),
            stats: Arc::default(),
            recent: Mutex::default(),
            script: Mutex::default(),
            templates: Mutex::default(),
            counter: AtomicU64::new(0),
            http,
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .default_service(web::to(handle))
        })
        .listen(listener)?
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(1)
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeProviderHandle {
            base_url: format!("http://{local}"),
            state,
            server: handle,
        })
    }
}

impl FakeProviderHandle {
    pub fn stats(&self) -> FakeStats {
        lock(&self.state.stats).clone()
    }

    /// Sends answered as accepted so far (cheap: no copy of the per-recipient maps).
    pub fn sends_accepted(&self) -> u64 {
        lock(&self.state.stats).sends_accepted
    }

    /// Sends answered as accepted for one recipient (`+digits`) so far, with
    /// `count_recipients` (cheap: one look-up, no copy of the maps).
    pub fn accepted_for(&self, recipient: &str) -> u64 {
        lock(&self.state.stats)
            .accepted_per_recipient
            .get(recipient)
            .copied()
            .unwrap_or(0)
    }

    /// The kept requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.recent).iter().cloned().collect()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.state.recent).back().cloned()
    }

    /// Queues an answer for the next provider request.
    pub fn script(&self, answer: Scripted) {
        lock(&self.state.script).push_back(answer);
    }

    /// Sends Herald an inbound message, signed as the provider would; returns Herald's HTTP
    /// status.
    pub async fn send_inbound(
        &self,
        provider: FakeProviderKind,
        from: &str,
        text: &str,
    ) -> Result<u16, FakeError> {
        send_inbound(&self.state, provider, from, default_name(provider), text).await
    }

    /// As [`FakeProviderHandle::send_inbound`], with the sender's display name as the provider
    /// gives it (WhatsApp's `contacts[].profile.name`, Twilio's `ProfileName`; Infobip's Viber
    /// messages carry none), or none.
    pub async fn send_inbound_named(
        &self,
        provider: FakeProviderKind,
        from: &str,
        profile_name: Option<&str>,
        text: &str,
    ) -> Result<u16, FakeError> {
        send_inbound(&self.state, provider, from, profile_name, text).await
    }

    /// Ends Meta's review of a template this fake created: posts WhatsApp's
    /// `message_template_status_update` webhook to `endpoint`, signed with its secret (the
    /// app secret), and answers later lookups of the template with `event`. `event` is
    /// `APPROVED`, `REJECTED`, `PAUSED`…; `reason` Meta's code (`INVALID_FORMAT`) and
    /// `detail` its `rejection_info.reason`. Returns Herald's HTTP status.
    pub async fn send_template_status(
        &self,
        endpoint: &WebhookEndpoint,
        template_id: &str,
        event: &str,
        reason: Option<&str>,
        detail: Option<&str>,
    ) -> Result<u16, FakeError> {
        let template = {
            let mut templates = lock(&self.state.templates);
            templates.get_mut(template_id).map(|t| {
                t.status = Some(event.to_owned());
                t.clone()
            })
        };
        let (name, language, category) = template
            .map(|t| (t.name, t.language, t.category))
            .unwrap_or_default();
        let mut value = json!({
            "event": event,
            "message_template_id": template_id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(template_id)),
            "message_template_name": name,
            "message_template_language": language,
            "message_template_category": category,
            "reason": reason.unwrap_or("NONE"),
        });
        if let Some(detail) = detail {
            value["rejection_info"] = json!({"reason": detail, "recommendation": "Edit the template and submit it again."});
        }
        let body = wa_envelope("message_template_status_update", value).to_string();
        let out = signed_json(
            &endpoint.url,
            whatsapp::sign(&endpoint.secret, body.as_bytes()),
            "X-Hub-Signature-256",
            body,
        );
        let result = post(&self.state.http, out).await;
        count_webhook(&self.state.stats, &result);
        Ok(result?)
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

impl Drop for FakeProviderHandle {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits for completion.
        drop(self.server.stop(false));
    }
}

enum Route {
    WaSend,
    WaTemplateCreate,
    WaTemplateList,
    WaTemplateEdit(String),
    WaObject(String),
    TwSend,
    TwAccount(String),
    IbSend,
    IbTemplateCreate(String),
    IbTemplateGet(String),
    IbLogs,
}

impl Route {
    fn find(method: &str, path: &str) -> Option<(FakeProviderKind, Route)> {
        use FakeProviderKind::*;
        let s: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let post = method == "POST";
        Some(match (post, s.as_slice()) {
            (true, ["viber", "2", "messages"]) => (Infobip, Route::IbSend),
            (false, ["viber", "2", "logs"]) => (Infobip, Route::IbLogs),
            (true, ["viber", "1", "senders", sender, "templates"]) => {
                (Infobip, Route::IbTemplateCreate(sender.to_string()))
            }
            (false, ["viber", "1", "senders", _, "templates", id]) => {
                (Infobip, Route::IbTemplateGet(id.to_string()))
            }
            (true, ["2010-04-01", "Accounts", _, "Messages.json"]) => (Twilio, Route::TwSend),
            (false, ["2010-04-01", "Accounts", account]) if account.ends_with(".json") => (
                Twilio,
                Route::TwAccount(account.trim_end_matches(".json").to_owned()),
            ),
            (true, [_, _, "messages"]) => (Whatsapp, Route::WaSend),
            (true, [_, _, "message_templates"]) => (Whatsapp, Route::WaTemplateCreate),
            (false, [_, _, "message_templates"]) => (Whatsapp, Route::WaTemplateList),
            (true, [_, id]) => (Whatsapp, Route::WaTemplateEdit(id.to_string())),
            (false, [_, id]) => (Whatsapp, Route::WaObject(id.to_string())),
            _ => return None,
        })
    }

    fn is_send(&self) -> bool {
        matches!(self, Route::WaSend | Route::TwSend | Route::IbSend)
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    match (method.as_str(), path.as_str()) {
        ("GET", "/_fake/stats") => return HttpResponse::Ok().json(lock(&state.stats).clone()),
        ("GET", "/_fake/requests") => {
            let recent: Vec<RecordedRequest> = lock(&state.recent).iter().cloned().collect();
            return HttpResponse::Ok().json(recent);
        }
        ("POST", "/_fake/inbound") => return inbound_endpoint(&state, &body).await,
        _ => {}
    }
    let Some((provider, route)) = Route::find(&method, &path) else {
        return HttpResponse::NotFound()
            .json(json!({"error": format!("the fake has no route {method} {path}")}));
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut record = RecordedRequest {
        provider,
        method,
        path,
        query: req.query_string().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        outcome: String::new(),
    };
    let recipients = if route.is_send() {
        recipients(provider, &record)
    } else {
        Vec::new()
    };
    state.stats(|s| {
        s.requests += 1;
        if route.is_send() {
            s.sends_received += 1;
            for r in recipients.iter().filter(|_| state.config.count_recipients) {
                *s.received_per_recipient.entry(r.clone()).or_default() += 1;
            }
        }
    });
    let (outcome, response) = answer(&state, provider, route, &record, &recipients).await;
    record.outcome = outcome;
    let mut recent = lock(&state.recent);
    recent.push_back(record);
    while recent.len() > state.config.keep_last.max(1) {
        recent.pop_front();
    }
    drop(recent);
    response
}

/// Scripted answer, else random fault, else the provider's success answer.
async fn answer(
    state: &State,
    provider: FakeProviderKind,
    route: Route,
    record: &RecordedRequest,
    recipients: &[String],
) -> (String, HttpResponse) {
    let scripted = lock(&state.script).pop_front();
    if let Some(scripted) = scripted {
        state.stats(|s| s.scripted += 1);
        return match scripted {
            Scripted::Hang => {
                tokio::time::sleep(state.config.hang_for).await;
                (
                    "scripted hang".into(),
                    HttpResponse::GatewayTimeout().finish(),
                )
            }
            Scripted::Respond {
                status,
                body,
                headers,
            } => {
                let mut r = HttpResponse::build(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                );
                for (k, v) in headers {
                    r.insert_header((k, v));
                }
                (format!("scripted {status}"), r.body(body))
            }
        };
    }
    if !authorised(provider, record) {
        state.stats(|s| s.unauthorized += 1);
        return ("401".into(), unauthorised(provider));
    }
    if state.roll(state.config.hang_rate) {
        state.stats(|s| s.hung += 1);
        tokio::time::sleep(state.config.hang_for).await;
        return ("hang".into(), HttpResponse::GatewayTimeout().finish());
    }
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    if state.roll(state.config.rate_limit_rate) {
        state.stats(|s| s.rate_limited += 1);
        let mut r = HttpResponse::TooManyRequests();
        r.insert_header((
            "Retry-After",
            state.config.retry_after.as_secs().to_string(),
        ));
        return ("429".into(), r.json(rate_limit_body(provider)));
    }
    if state.roll(state.config.error_rate) {
        state.stats(|s| s.errors_500 += 1);
        return (
            "500".into(),
            HttpResponse::InternalServerError().json(server_error_body(provider)),
        );
    }
    let response = match route {
        Route::WaSend => wa_send(state, record, recipients),
        Route::TwSend => tw_send(state, record, recipients),
        Route::IbSend => ib_send(state, record, recipients),
        Route::WaTemplateCreate => wa_template_create(state, record),
        Route::WaTemplateList => wa_template_list(state, record),
        Route::WaTemplateEdit(id) => wa_template_edit(state, record, &id),
        Route::WaObject(id) => wa_object(state, &id),
        Route::TwAccount(sid) => HttpResponse::Ok().json(json!({
            "sid": sid, "friendly_name": "Herald fake account", "status": "active", "type": "Full",
        })),
        Route::IbTemplateCreate(sender) => ib_template_create(state, record, &sender),
        Route::IbTemplateGet(id) => ib_template_get(state, &id),
        Route::IbLogs => HttpResponse::Ok().json(json!({ "results": [] })),
    };
    ("accepted".into(), response)
}

/// Recipients of a send, as `+digits`.
fn recipients(provider: FakeProviderKind, r: &RecordedRequest) -> Vec<String> {
    let plus = |s: &str| format!("+{}", s.trim().trim_start_matches('+'));
    match provider {
        FakeProviderKind::Whatsapp => r
            .json()
            .and_then(|j| j.get("to")?.as_str().map(plus))
            .into_iter()
            .collect(),
        FakeProviderKind::Twilio => r.form_value("To").map(|t| plus(&t)).into_iter().collect(),
        FakeProviderKind::Infobip => r
            .json()
            .and_then(|j| j.get("messages")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|m| {
                m.get("destinations")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|d| d.get("to")?.as_str().map(plus))
            .collect(),
    }
}

fn authorised(provider: FakeProviderKind, r: &RecordedRequest) -> bool {
    let auth = r.header("Authorization").unwrap_or_default();
    match provider {
        FakeProviderKind::Whatsapp => auth.len() > 7 && auth.starts_with("Bearer "),
        FakeProviderKind::Twilio => auth.starts_with("Basic "),
        FakeProviderKind::Infobip => auth.len() > 4 && auth.starts_with("App "),
    }
}

fn unauthorised(provider: FakeProviderKind) -> HttpResponse {
    HttpResponse::Unauthorized().json(match provider {
        FakeProviderKind::Whatsapp => json!({"error": {
            "message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException", "code": 190, "fbtrace_id": "AfakeTrace"}}),
        FakeProviderKind::Twilio => json!({"code": 20003, "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
        FakeProviderKind::Infobip => json!({"errorCode": "E401",
            "description": "The request lacks valid authentication credentials for the requested resource.",
            "action": "Check the resources and adjust authentication credentials.",
            "violations": [], "resources": []}),
    })
}

fn rate_limit_body(provider: FakeProviderKind) -> Value {
    match provider {
        FakeProviderKind::Whatsapp => json!({"error": {
            "message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
            "error_data": {"messaging_product": "whatsapp",
                           "details": "Cloud API message throughput has been reached."},
            "error_subcode": 2494055, "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"}}),
        FakeProviderKind::Twilio => json!({"code": 20429, "message": "Too Many Requests",
            "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}),
        FakeProviderKind::Infobip => json!({"errorCode": "E429",
            "description": "Too many requests sent.",
            "action": "Check request rate limit specified in the API endpoint documentation resource.",
            "violations": [], "resources": []}),
    }
}

fn server_error_body(provider: FakeProviderKind) -> Value {
    match provider {
        FakeProviderKind::Whatsapp => json!({"error": {
            "message": "An unknown error has occurred.", "type": "OAuthException", "code": 1,
            "fbtrace_id": "AfakeTrace"}}),
        FakeProviderKind::Twilio => json!({"code": 20500, "message": "Internal Server Error",
            "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}),
        FakeProviderKind::Infobip => {
            json!({"errorCode": "E500", "description": "Something went wrong.",
            "action": "Contact the support.", "violations": [], "resources": []})
        }
    }
}

fn wa_send(state: &State, r: &RecordedRequest, recipients: &[String]) -> HttpResponse {
    let Some(to) = r
        .json()
        .and_then(|j| j.get("to")?.as_str().map(str::to_owned))
    else {
        return HttpResponse::BadRequest().json(json!({"error": {
            "message": "(#100) The parameter to is required.", "type": "OAuthException",
            "code": 100, "fbtrace_id": "AfakeTrace"}}));
    };
    let wamid = format!(
        "wamid.{}",
        BASE64.encode(format!(
            "HERALDFAKE{:020}",
            repeated_id(&state.config, state.next_id())
        ))
    );
    accepted(state, recipients);
    let digits = to.trim_start_matches('+').to_owned();
    // `/{version}/{phone_number_id}/messages`: statuses name the number that sent.
    let number = r.path.split('/').nth(2).unwrap_or_default().to_owned();
    if let Some(endpoint) = state.config.whatsapp_webhook.clone() {
        let id = wamid.clone();
        spawn_statuses(state, move |status| {
            let body = wa_status_webhook(&id, &digits, &number, status).to_string();
            Some(signed_json(
                &endpoint.url,
                whatsapp::sign(&endpoint.secret, body.as_bytes()),
                "X-Hub-Signature-256",
                body,
            ))
        });
    }
    HttpResponse::Ok().json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}],
        "messages": [{"id": wamid}],
    }))
}

fn wa_status_webhook(wamid: &str, recipient: &str, number: &str, status: FakeStatus) -> Value {
    let word = match status {
        FakeStatus::Sent => "sent",
        FakeStatus::Delivered => "delivered",
        FakeStatus::Read => "read",
        FakeStatus::Failed => "failed",
    };
    let mut s = json!({
        "id": wamid, "status": word, "timestamp": Utc::now().timestamp().to_string(),
        "recipient_id": recipient,
    });
    if status == FakeStatus::Failed {
        s["errors"] = json!([{"code": 131026, "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message failed to send because the recipient is not on WhatsApp."}}]);
    }
    wa_envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
            "statuses": [s],
        }),
    )
}

/// The WhatsApp number (`phone_number_id`) customers write to in [`FakeProvider::send_inbound`].
pub const FAKE_WHATSAPP_NUMBER: &str = "106540352242922";

fn wa_envelope(field: &str, value: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "time": Utc::now().timestamp(),
        "changes": [{"value": value, "field": field}]}]})
}

fn wa_template_create(state: &State, r: &RecordedRequest) -> HttpResponse {
    let body = r.json().unwrap_or_default();
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let template = FakeTemplate {
        id: format!("{}", 1_689_556_908_129_000u64 + state.next_id()),
        name: text("name"),
        language: text("language"),
        category: text("category"),
        status: None,
    };
    state.stats(|s| s.templates_created += 1);
    let out = json!({"id": template.id, "status": "PENDING", "category": template.category});
    lock(&state.templates).insert(template.id.clone(), template);
    HttpResponse::Ok().json(out)
}

/// Meta's edit call: the template keeps its id and goes back to review.
fn wa_template_edit(state: &State, r: &RecordedRequest, id: &str) -> HttpResponse {
    let body = r.json().unwrap_or_default();
    let mut templates = lock(&state.templates);
    let Some(template) = templates.get_mut(id) else {
        return HttpResponse::BadRequest().json(json!({"error": {
            "message": format!("Unsupported post request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
            "type": "GraphMethodException", "code": 100, "error_subcode": 33,
            "fbtrace_id": "AfakeTrace"}}));
    };
    if let Some(category) = body.get("category").and_then(Value::as_str) {
        template.category = category.to_owned();
    }
    template.status = None;
    drop(templates);
    state.stats(|s| s.templates_edited += 1);
    HttpResponse::Ok().json(json!({"success": true}))
}

fn wa_template_json(state: &State, t: &FakeTemplate) -> Value {
    let status = t.status.as_ref().unwrap_or(&state.config.template_status);
    json!({"id": t.id, "name": t.name, "language": t.language, "category": t.category,
           "status": status})
}

fn wa_template_list(state: &State, r: &RecordedRequest) -> HttpResponse {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(&r.query).unwrap_or_default();
    let name = query
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str());
    let data: Vec<Value> = lock(&state.templates)
        .values()
        .filter(|t| name.is_none_or(|n| n == t.name))
        .map(|t| wa_template_json(state, t))
        .collect();
    HttpResponse::Ok().json(json!({"data": data, "paging": {"cursors": {}}}))
}

fn wa_object(state: &State, id: &str) -> HttpResponse {
    let template = lock(&state.templates).get(id).cloned();
    match template {
        Some(t) => HttpResponse::Ok().json(wa_template_json(state, &t)),
        None => HttpResponse::Ok().json(json!({
            "verified_name": "Herald Fake", "display_phone_number": "+1 555-010-0100", "id": id,
            "whatsapp_business_manager_messaging_limit": "TIER_2K",
        })),
    }
}

fn tw_send(state: &State, r: &RecordedRequest, recipients: &[String]) -> HttpResponse {
    let (Some(to), Some(body)) = (r.form_value("To"), r.form_value("Body")) else {
        return HttpResponse::BadRequest().json(json!({"code": 21604,
            "message": "A 'To' phone number and a 'Body' are required.",
            "more_info": "https://www.twilio.com/docs/errors/21604", "status": 400}));
    };
    let account = r.path.split('/').nth(3).unwrap_or_default().to_owned();
    let sid = format!("SM{:032x}", u128::from(state.next_id()) << 64 | 0xfeed);
    let service = r.form_value("MessagingServiceSid");
    accepted(state, recipients);
    if let Some(callback) = r.form_value("StatusCallback") {
        let token = basic_password(r)
            .or_else(|| {
                state
                    .config
                    .twilio_webhook
                    .as_ref()
                    .map(|e| e.secret.clone())
            })
            .unwrap_or_default();
        let (sid, account, to) = (sid.clone(), account.clone(), to.clone());
        let from = r.form_value("From").unwrap_or_default();
        spawn_statuses(state, move |status| {
            let word = match status {
                FakeStatus::Sent => "sent",
                FakeStatus::Delivered => "delivered",
                FakeStatus::Read => "read",
                FakeStatus::Failed => "undelivered",
            };
            let mut params: Vec<(String, String)> = [
                ("AccountSid", account.as_str()),
                ("ApiVersion", "2010-04-01"),
                ("From", from.as_str()),
                ("MessageSid", sid.as_str()),
                ("MessageStatus", word),
                ("SmsSid", sid.as_str()),
                ("SmsStatus", word),
                ("To", to.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            if status == FakeStatus::Failed {
                params.push(("ErrorCode".into(), "30003".into()));
            }
            Some(signed_form(&callback, &token, params))
        });
    }
    let now = Utc::now().to_rfc2822();
    HttpResponse::Created().json(json!({
        "sid": sid, "account_sid": account, "messaging_service_sid": service,
        "from": r.form_value("From"), "to": to, "body": body,
        "status": if service.is_some() { "accepted" } else { "queued" },
        "direction": "outbound-api", "num_segments": "1", "num_media": "0",
        "error_code": null, "error_message": null, "price": null, "price_unit": null,
        "date_created": now, "date_sent": null, "date_updated": now, "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json")},
    }))
}

fn basic_password(r: &RecordedRequest) -> Option<String> {
    let encoded = r.header("Authorization")?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    decoded.split_once(':').map(|(_, p)| p.to_owned())
}

fn ib_send(state: &State, r: &RecordedRequest, recipients: &[String]) -> HttpResponse {
    let messages = r
        .json()
        .and_then(|j| j.get("messages")?.as_array().cloned())
        .unwrap_or_default();
    if messages.is_empty() || recipients.is_empty() {
        return HttpResponse::BadRequest().json(json!({"errorCode": "E400",
            "description": "Request cannot be processed.",
            "action": "Check the syntax, violations and adjust the request.",
            "violations": [{"property": "messages", "violation": "must not be empty"}],
            "resources": []}));
    }
    accepted(state, recipients);
    let mut answers = Vec::new();
    for m in &messages {
        let hooks = m.get("webhooks");
        let url = |k: &str| hooks.and_then(|h| h.get(k)?.get("url")?.as_str().map(str::to_owned));
        let (delivery, seen) = (url("delivery"), url("seen"));
        let sender = m
            .get("sender")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let callback = hooks.and_then(|h| h.get("callbackData")?.as_str().map(str::to_owned));
        for d in m
            .get("destinations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let to = d
                .get("to")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let id = d
                .get("messageId")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            answers.push(json!({"messageId": id, "destination": to, "status": {
                "groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED",
                "description": "Message sent to next instance"}}));
            let configured = state.config.infobip_webhook.clone();
            let secret = configured.as_ref().map(|e| e.secret.clone());
            let fallback = configured.map(|e| e.url);
            let (delivery, seen, sender, callback) = (
                delivery.clone(),
                seen.clone(),
                sender.clone(),
                callback.clone(),
            );
            spawn_statuses(state, move |status| {
                let body = ib_report(status, &id, &to, &sender, callback.as_deref());
                let url = if status == FakeStatus::Read {
                    &seen
                } else {
                    &delivery
                };
                let url = url.clone().or(fallback.clone())?;
                let mut req = Outgoing::json(&url, body.to_string());
                if let Some(secret) = &secret {
                    req.headers
                        .push((infobip_viber::SECRET_HEADER.into(), secret.clone()));
                }
                Some(req)
            });
        }
    }
    HttpResponse::Ok()
        .json(json!({"bulkId": uuid::Uuid::new_v4().to_string(), "messages": answers}))
}

/// An Infobip delivery report, or a seen report for `Read`.
fn ib_report(
    status: FakeStatus,
    id: &str,
    to: &str,
    sender: &str,
    callback: Option<&str>,
) -> Value {
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
    if status == FakeStatus::Read {
        return json!({"results": [{"messageId": id, "from": sender, "to": to,
            "sentAt": now, "seenAt": now}]});
    }
    let (status_json, error) = match status {
        FakeStatus::Failed => (
            json!({"groupId": 2, "groupName": "UNDELIVERABLE", "id": 4, "name": "UNDELIVERABLE_REJECTED_OPERATOR",
                   "description": "Message rejected by operator"}),
            json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER",
                   "description": "Absent Subscriber", "permanent": false}),
        ),
        FakeStatus::Sent => (
            json!({"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED",
                   "description": "Message sent to next instance"}),
            json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
                   "description": "No Error", "permanent": false}),
        ),
        _ => (
            json!({"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET",
                   "description": "Message delivered to handset"}),
            json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
                   "description": "No Error", "permanent": false}),
        ),
    };
    json!({"results": [{"bulkId": "fake-bulk", "messageId": id, "to": to, "sender": sender,
        "sentAt": now, "doneAt": now, "messageCount": 1, "callbackData": callback,
        "price": {"pricePerMessage": 0.0, "currency": "EUR"},
        "status": status_json, "error": error}]})
}

fn ib_template_create(state: &State, r: &RecordedRequest, sender: &str) -> HttpResponse {
    let body = r.json().unwrap_or_default();
    let language = body
        .pointer("/body/0/language")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let template = FakeTemplate {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        language,
        category: body
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        status: None,
    };
    state.stats(|s| s.templates_created += 1);
    let now = Utc::now().timestamp_millis();
    let out = json!({"templateId": template.id, "version": "1", "sender": sender, "createdAt": now,
        "lastModified": now, "category": template.category, "status": "PENDING",
        "params": body.get("params"), "body": body.get("body")});
    lock(&state.templates).insert(template.id.clone(), template);
    HttpResponse::Created().json(out)
}

fn ib_template_get(state: &State, id: &str) -> HttpResponse {
    match lock(&state.templates).get(id) {
        Some(t) => HttpResponse::Ok().json(json!({"templateId": t.id, "version": "1",
            "category": t.category, "status": t.status.as_ref().unwrap_or(&state.config.template_status)})),
        None => HttpResponse::NotFound().json(json!({"errorCode": "E404",
            "description": "Template not found.", "action": "Check the template id.",
            "violations": [], "resources": []})),
    }
}

fn accepted(state: &State, recipients: &[String]) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let record = state.config.record_times;
    state.stats(|s| {
        if record {
            s.accepted_at_ms.push(now_ms);
        }
        s.sends_accepted += 1;
        for r in recipients.iter().filter(|_| state.config.count_recipients) {
            *s.accepted_per_recipient.entry(r.clone()).or_default() += 1;
        }
    });
}

/// A webhook the fake is about to post.
struct Outgoing {
    url: String,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: String,
}

impl Outgoing {
    fn json(url: &str, body: String) -> Self {
        Outgoing {
            url: url.to_owned(),
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }
}

fn signed_json(url: &str, signature: String, header: &str, body: String) -> Outgoing {
    let mut out = Outgoing::json(url, body);
    out.headers.push((header.to_owned(), signature));
    out
}

fn signed_form(url: &str, auth_token: &str, params: Vec<(String, String)>) -> Outgoing {
    let signature = twilio::sign(auth_token, url, &params);
    Outgoing {
        url: url.to_owned(),
        content_type: "application/x-www-form-urlencoded",
        headers: vec![("X-Twilio-Signature".into(), signature)],
        body: serde_urlencoded::to_string(&params).unwrap_or_default(),
    }
}

/// Posts one webhook per status, `delay` apart, in the background. Counters are updated by
/// whoever holds the state when the post completes.
fn spawn_statuses(state: &State, build: impl Fn(FakeStatus) -> Option<Outgoing> + Send + 'static) {
    let statuses = state.config.status_sequence.clone();
    if statuses.is_empty() {
        return;
    }
    let (delay, http, stats) = (
        state.config.status_delay,
        state.http.clone(),
        state.stats.clone(),
    );
    tokio::spawn(async move {
        for status in statuses {
            tokio::time::sleep(delay).await;
            if let Some(out) = build(status) {
                let result = post(&http, out).await;
                count_webhook(&stats, &result);
            }
        }
    });
}

fn count_webhook(stats: &Mutex<FakeStats>, result: &Result<u16, reqwest::Error>) {
    let mut s = lock(stats);
    match result {
        Ok(code) if (200..300).contains(code) => s.webhooks_sent += 1,
        _ => s.webhooks_failed += 1,
    }
}

async fn post(http: &reqwest::Client, out: Outgoing) -> Result<u16, reqwest::Error> {
    let mut request = http
        .post(&out.url)
        .header(reqwest::header::CONTENT_TYPE, out.content_type)
        .body(out.body);
    for (k, v) in out.headers {
        request = request.header(k, v);
    }
    Ok(request.send().await?.status().as_u16())
}

/// The display name the fake's WhatsApp inbound messages carry unless told otherwise.
pub const FAKE_PROFILE_NAME: &str = "Fake Customer";

/// WhatsApp always names the sender; Twilio only on some channels (WhatsApp through Twilio,
/// not SMS); Infobip's Viber messages never do.
fn default_name(provider: FakeProviderKind) -> Option<&'static str> {
    (provider == FakeProviderKind::Whatsapp).then_some(FAKE_PROFILE_NAME)
}

async fn send_inbound(
    state: &State,
    provider: FakeProviderKind,
    from: &str,
    profile_name: Option<&str>,
    text: &str,
) -> Result<u16, FakeError> {
    let endpoint = match provider {
        FakeProviderKind::Whatsapp => &state.config.whatsapp_webhook,
        FakeProviderKind::Twilio => &state.config.twilio_webhook,
        FakeProviderKind::Infobip => &state.config.infobip_webhook,
    }
    .as_ref()
    .ok_or(FakeError::NoEndpoint(provider))?;
    let n = state.next_id();
    let digits = from.trim_start_matches('+');
    let out = match provider {
        FakeProviderKind::Whatsapp => {
            let contact = match profile_name {
                Some(name) => json!({"profile": {"name": name}, "wa_id": digits}),
                None => json!({"wa_id": digits}),
            };
            let body = wa_envelope("messages", json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": FAKE_WHATSAPP_NUMBER},
                "contacts": [contact],
                "messages": [{"from": digits, "id": format!("wamid.FAKEIN{n:020}"),
                    "timestamp": Utc::now().timestamp().to_string(), "type": "text",
                    "text": {"body": text}}],
            }))
            .to_string();
            let signature = whatsapp::sign(&endpoint.secret, body.as_bytes());
            signed_json(&endpoint.url, signature, "X-Hub-Signature-256", body)
        }
        FakeProviderKind::Twilio => {
            let sid = format!("SM{n:032x}");
            let mut params: Vec<(String, String)> = [
                ("AccountSid", "AC00000000000000000000000000000000"),
                ("ApiVersion", "2010-04-01"),
                ("Body", text),
                ("From", from),
                ("MessageSid", sid.as_str()),
                ("NumMedia", "0"),
                ("NumSegments", "1"),
                ("SmsMessageSid", sid.as_str()),
                ("SmsSid", sid.as_str()),
                ("SmsStatus", "received"),
                ("To", "+15005550006"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            if let Some(name) = profile_name {
                params.push(("ProfileName".into(), name.to_owned()));
            }
            signed_form(&endpoint.url, &endpoint.secret, params)
        }
        FakeProviderKind::Infobip => {
            let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
            let body = json!({"results": [{"sender": digits, "to": "HeraldFake", "integrationType": "VIBER",
                "receivedAt": now, "messageId": format!("fake-in-{n}"),
                "message": {"text": text, "type": "TEXT"},
                "price": {"pricePerMessage": 0.0, "currency": "EUR"}}],
                "messageCount": 1, "pendingMessageCount": 0});
            signed_json(
                &endpoint.url,
                endpoint.secret.clone(),
                infobip_viber::SECRET_HEADER,
                body.to_string(),
            )
        }
    };
    let result = post(&state.http, out).await;
    count_webhook(&state.stats, &result);
    Ok(result?)
}

#[derive(Deserialize)]
struct InboundRequest {
    provider: FakeProviderKind,
    from: String,
    text: String,
}

async fn inbound_endpoint(state: &State, body: &[u8]) -> HttpResponse {
    let Ok(req) = serde_json::from_slice::<InboundRequest>(body) else {
        return HttpResponse::BadRequest()
            .json(json!({"error": "expected {\"provider\", \"from\", \"text\"}"}));
    };
    match send_inbound(
        state,
        req.provider,
        &req.from,
        default_name(req.provider),
        &req.text,
    )
    .await
    {
        Ok(status) => HttpResponse::Ok().json(json!({ "herald_status": status })),
        Err(e) => HttpResponse::BadGateway().json(json!({ "error": e.to_string() })),
    }
}

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// A provider repeating a message id

/// The id number a send answers with: its own, or an earlier one (`FakeConfig::repeat_ids`).
fn repeated_id(config: &FakeConfig, drawn: u64) -> u64 {
    config
        .repeat_ids
        .iter()
        .find(|(n, _)| *n == drawn)
        .map_or(drawn, |(_, m)| *m)
}
