//! JSON API v1, under `/api/v1`, authenticated with `Authorization: Bearer <key>`. Handlers call
//! the same domain and storage functions as the pages; errors use the shape
//! `{"error":{"code","message"}}`.
//!
//! The API authenticates and authorises before it judges anything else: a wrong key is a 401
//! and a missing permission a 403 whatever the body. actix runs a handler's extractors
//! together, so a failing body extractor could answer before `Auth<P>` had looked the key
//! up. Hence handlers here take their input through [`Body`] and [`Params`], which never fail
//! as extractors: they keep the outcome, and the handler (which runs only once `Auth<P>`
//! succeeded) takes it with `.get()?`. They also refuse a NUL character, naming the field
//! (`web::edge`). `clippy.toml` forbids `web::Json`, which would answer first.

pub mod audit;
pub mod broadcasts;
pub mod channels;
pub mod contacts;
pub mod messages;
pub mod openapi;
pub mod templates;
// Issue 19: status-callback endpoints.
pub mod webhook_endpoints;
// Issue 20: triggers.
pub mod triggers;
// Issue 20: reminder rules.
pub mod reminders;

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, error, mime, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::service::idempotency::{self, IdempotencyKey};
use crate::service::paging::PageRequest;
use crate::startup::AppState;
use crate::web::errors::{nul_error, query_refused};
use crate::web::format::{json_may_hold_nul, nul_field_in_json, nul_field_in_pairs};
use crate::web::identity::Principal;

pub use crate::service::api_objects::ChannelRef;
pub use openapi::{BadRequest, Busy, Conflict, NotFound, Unprocessable};

/// The longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// The `Idempotency-Key` header, if any, checked.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX)
        .ok_or_else(|| {
            AppError::invalid(
                "invalid_idempotency_key",
                format!(
                    "The Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters."
                ),
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// The largest JSON body the API reads.
const MAX_BODY_BYTES: usize = 1 << 20;

/// A JSON body, read while `Auth<P>` checks the key and judged only in the handler, after it.
/// It keeps the request's `Idempotency-Key` with the fingerprint of the raw body (issue 19).
pub struct Body<T>(Result<T, AppError>, RequestKey);

impl<T> Body<T> {
    /// The body, or why it is refused (422 for JSON that does not fit or holds a NUL).
    pub fn get(self) -> Result<T, AppError> {
        self.0
    }

    /// The request's `Idempotency-Key`, fingerprinted with this body.
    pub fn idempotency(&self) -> RequestKey {
        self.1.clone()
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

/// Parses a JSON body: the field holding a NUL is named; otherwise the type's own errors
/// (with line and column) say what does not fit.
fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, AppError> {
    if json_may_hold_nul(raw)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw)
        && let Some(field) = nul_field_in_json(&value)
    {
        return Err(nul_error(&field));
    }
    serde_json::from_slice::<T>(raw)
        .map_err(|e| AppError::invalid("invalid_json", format!("The JSON body does not fit: {e}")))
}

fn body_error(err: actix_web::Error) -> AppError {
    match err.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => {
            AppError::BadRequest("The JSON body is larger than 1 MiB.".into())
        }
        _ => AppError::BadRequest(format!("The JSON body could not be read: {err}")),
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(ready(Ok(Body(
                Err(AppError::BadRequest(
                    "Send the body as JSON with `Content-Type: application/json`.".into(),
                )),
                RequestKey::default(),
            ))));
        }
        let read = web::Bytes::from_request(req, payload);
        let key = RequestKey::of(req);
        Box::pin(async move {
            let mut key = key;
            let parsed = match read.await {
                Ok(raw) if raw.len() > MAX_BODY_BYTES => Err(AppError::BadRequest(
                    "The JSON body is larger than 1 MiB.".into(),
                )),
                Ok(raw) => {
                    key.fingerprint(&raw);
                    parse_json(&raw)
                }
                Err(e) => Err(body_error(e)),
            };
            Ok(Body(parsed, key))
        })
    }
}

/// `?limit=&cursor=` of a list without filters (`service::paging`).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size: 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The page a list's `limit` and `cursor` ask for; a bad one is the 400 naming it
/// (`invalid_limit`, `invalid_cursor`), as the answer to send.
pub fn page_params(
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<PageRequest, actix_web::HttpResponse> {
    PageRequest::parse(limit, cursor).map_err(|e| match query_refused(e) {
        Ok(res) => res,
        Err(other) => actix_web::ResponseError::error_response(&other),
    })
}

/// [`page_params`] for a list that takes only [`PageQuery`].
pub fn page_request(query: Params<PageQuery>) -> Result<PageRequest, actix_web::HttpResponse> {
    match query.get() {
        Ok(q) => page_params(q.limit.as_deref(), q.cursor.as_deref()),
        Err(e) => Err(actix_web::ResponseError::error_response(&e)),
    }
}

/// The query string's parameters, judged in the handler after `Auth<P>`, like [`Body`].
pub struct Params<T>(Result<T, AppError>);

impl<T> Params<T> {
    /// The parameters, or why they are refused (422 naming a parameter with a NUL, 400 for a
    /// query string that does not fit).
    pub fn get(self) -> Result<T, AppError> {
        self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Params<T> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let query = req.query_string();
        let parsed = match nul_field_in_pairs(query.as_bytes()) {
            Some(field) => Err(nul_error(&field)),
            None => serde_urlencoded::from_str::<T>(query)
                .map_err(|e| AppError::BadRequest(format!("The query string does not fit: {e}"))),
        };
        ready(Ok(Params(parsed)))
    }
}

openapi::api_routes! {
    "/openapi.json" => { get openapi::serve },
    "/channels" => { get channels::list, post channels::create },
    "/channels/{id}" => { get channels::get, patch channels::patch, delete channels::delete },
    "/audit" => { get audit::list },
    "/broadcasts" => { get broadcasts::list, post broadcasts::create },
    "/broadcasts/{id}" => { get broadcasts::get, patch broadcasts::update },
    "/broadcasts/{id}/estimate" => { get broadcasts::estimate },
    "/broadcasts/{id}/launch" => { post broadcasts::launch },
    "/broadcasts/{id}/pause" => { post broadcasts::pause },
    "/broadcasts/{id}/resume" => { post broadcasts::resume },
    "/broadcasts/{id}/cancel" => { post broadcasts::cancel },
    "/broadcasts/{id}/approve" => { post broadcasts::approve },
    "/broadcasts/{id}/reject" => { post broadcasts::reject },
    // Issue 18: "Send again to..." (a follow-up draft).
    "/broadcasts/{id}/send-again" => { post broadcasts::send_again },
    // Issue 17: a CSV upload as a draft's audience.
    "/broadcasts/{id}/audience.csv" => { post broadcasts::upload_audience },
    // Before `/contacts/{id}`, which would otherwise answer 405 to its POST.
    "/contacts/import" => { post contacts::import },
    "/contacts" => { get contacts::list, post contacts::upsert },
    "/contacts/{id}" => { get contacts::get },
    "/templates" => { get templates::list },
    "/messages" => { get messages::list, post messages::send },
    "/messages/{id}" => { get messages::get },
    "/messages/{id}/resend" => { post messages::resend },
    // Issue 20: cancelling a scheduled send.
    "/messages/{id}/cancel" => { post messages::cancel },
    // Issue 19: status-callback endpoints.
    "/webhook-endpoints" => { get webhook_endpoints::list, post webhook_endpoints::create },
    "/webhook-endpoints/{id}" => {
        get webhook_endpoints::get,
        patch webhook_endpoints::patch,
        delete webhook_endpoints::delete,
    },
    "/webhook-endpoints/{id}/rotate-secret" => { post webhook_endpoints::rotate_secret },
    "/webhook-endpoints/{id}/test" => { post webhook_endpoints::test },
    "/webhook-endpoints/{id}/deliveries" => { get webhook_endpoints::deliveries },
    "/webhook-endpoints/{id}/send-again" => { post webhook_endpoints::send_again },
    // Issue 20: triggers.
    "/triggers" => { get triggers::list, post triggers::create },
    "/triggers/{id}" => { get triggers::get, patch triggers::update, delete triggers::delete },
    "/triggers/{id}/try" => { post triggers::try_payload },
    // Issue 20: reminder rules.
    "/reminders" => { get reminders::list, post reminders::create },
    "/reminders/{id}" => { get reminders::get, patch reminders::update, delete reminders::delete },
}

/// The API's routes (the table above) under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(path_error));
    register_routes(cfg);
    cfg.default_service(web::to(not_found));
}

/// The OpenAPI document of the API: the table's operations, described (made once).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| openapi::finish(operations(), ROUTES))
}

// --- issue 17: a CSV body (the broadcast's CSV audience) ---

/// A CSV sent as the raw body (`Content-Type: text/csv`) or as the multipart field `file`,
/// streamed as it arrives.
pub struct CsvBody {
    /// The multipart file's name, when it has one.
    pub file_name: Option<String>,
    /// The raw body's `Content-Length`, when given.
    pub bytes_total: Option<i64>,
    pub chunks: futures_util::stream::LocalBoxStream<'static, Result<bytes::Bytes, String>>,
}

/// Finds the CSV in a request (see [`CsvBody`]); a request without one is a 422 saying how to
/// send it.
pub async fn csv_body(req: &HttpRequest, payload: web::Payload) -> Result<CsvBody, AppError> {
    use futures_util::StreamExt;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
        while let Some(item) = multipart.next().await {
            let field = item
                .map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?;
            if field.name() == Some("file") {
                let file_name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename().map(str::to_owned));
                // The multipart stream goes along: the field reads through it.
                let chunks = futures_util::stream::unfold(
                    (field, multipart),
                    |(mut field, multipart)| async move {
                        let item = field.next().await?;
                        Some((item.map_err(|e| e.to_string()), (field, multipart)))
                    },
                );
                return Ok(CsvBody {
                    file_name,
                    bytes_total: None,
                    chunks: chunks.boxed_local(),
                });
            }
        }
        return Err(AppError::invalid(
            "no_file",
            "Send the CSV as the multipart field \"file\".",
        ));
    }
    if content_type.starts_with("text/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/csv")
    {
        let bytes_total = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        // A body that breaks off before its first chunk is a bad request.
        let mut payload = payload;
        let first = payload
            .next()
            .await
            .transpose()
            .map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?
            .unwrap_or_default();
        let head = futures_util::stream::iter([Ok::<_, PayloadError>(first)]);
        return Ok(CsvBody {
            file_name: None,
            bytes_total,
            chunks: head
                .chain(payload)
                .map(|c| c.map_err(|e| e.to_string()))
                .boxed_local(),
        });
    }
    Err(AppError::invalid(
        "unsupported_media_type",
        "Send the CSV with Content-Type: text/csv, or as the multipart field \"file\".",
    ))
}
/// The `default_country` a CSV upload names (`?default_country=`), else the server's.
pub fn default_country(
    raw: Option<&str>,
    state: &crate::startup::AppState,
) -> Result<crate::domain::phone::DefaultCountry, AppError> {
    match raw.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => crate::domain::phone::DefaultCountry::parse(c)
            .map_err(|e| AppError::invalid("invalid_country", e)),
        None => Ok(state.settings.default_country),
    }
}
/// A turn to read an upload (see `import::gate`); a refused upload is read to its end first, so
/// the client gets the 503 rather than a reset connection.
pub async fn import_turn(
    state: &crate::startup::AppState,
    payload: &mut web::Payload,
) -> Result<crate::import::gate::ImportPermit, AppError> {
    use futures_util::StreamExt;
    match crate::service::imports::take_turn(state).await {
        Ok(p) => Ok(p),
        Err(busy) => {
            while let Some(Ok(_)) = payload.next().await {}
            Err(busy.into())
        }
    }
}
// --- end issue 17 CSV body ---

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound("There is no such API endpoint.".into()))
}

fn path_error(err: error::PathError, _: &HttpRequest) -> actix_web::Error {
    AppError::NotFound(format!("No such resource: {err}")).into()
}

// --- Issue 19: Idempotency-Key on every creating POST ---

/// A request's `Idempotency-Key` (checked) and the fingerprint of its method, path and body.
/// A use case adopts it in a few lines: take a [`Body`] (or this extractor, for a POST without
/// one), pass `Option<&IdempotencyKey>` to the use case (which calls
/// `service::idempotency::remember` in its transaction) and answer through [`idempotent`].
#[derive(Debug, Clone)]
pub struct RequestKey(Result<Option<KeyedRequest>, String>);

#[derive(Debug, Clone)]
pub struct KeyedRequest {
    key: String,
    route: String,
    method: String,
    path: String,
    fingerprint: String,
}

impl Default for RequestKey {
    fn default() -> Self {
        RequestKey(Ok(None))
    }
}

impl RequestKey {
    fn of(req: &HttpRequest) -> Self {
        RequestKey(match idempotency_key(req) {
            Ok(None) => Ok(None),
            Ok(Some(key)) => {
                let method = req.method().as_str().to_owned();
                let path = req.uri().to_string();
                Ok(Some(KeyedRequest {
                    fingerprint: IdempotencyKey::fingerprint_of(&method, &path, b""),
                    route: req.match_pattern().unwrap_or_else(|| path.clone()),
                    key,
                    method,
                    path,
                }))
            }
            Err(e) => Err(e.to_string()),
        })
    }

    fn fingerprint(&mut self, body: &[u8]) {
        if let Ok(Some(k)) = &mut self.0 {
            k.fingerprint = IdempotencyKey::fingerprint_of(&k.method, &k.path, body);
        }
    }
}

/// For a creating POST without a body (the fingerprint is its method and path).
impl FromRequest for RequestKey {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(RequestKey::of(req)))
    }
}

/// Answers a creating POST once per `Idempotency-Key`: `create` runs the use case with the key
/// (its fresh answer has `status`); a repeat of the same request, or a concurrent twin that
/// lost the race, is answered by `replay` with the id of what the first one created, with the
/// first status and `Idempotent-Replayed: true`. The same key for a different request is a
/// 422 `idempotency_key_reused`. Without a key, `create` just runs.
pub async fn idempotent<C, CF, R, RF>(
    state: &AppState,
    principal: &Principal,
    request: RequestKey,
    status: StatusCode,
    create: C,
    replay: R,
) -> Result<HttpResponse, AppError>
where
    C: FnOnce(Option<IdempotencyKey>) -> CF,
    CF: Future<Output = Result<HttpResponse, AppError>>,
    R: FnOnce(String) -> RF,
    RF: Future<Output = Result<HttpResponse, AppError>>,
{
    let keyed = request
        .0
        .map_err(|m| AppError::invalid("invalid_idempotency_key", m))?;
    let (Some(k), Principal::ApiKey(api_key)) = (keyed, principal) else {
        return create(None).await;
    };
    let key = IdempotencyKey {
        api_key_id: api_key.id,
        key: k.key,
        route: k.route,
        fingerprint: k.fingerprint,
        status: status.as_u16(),
    };
    if let Some(done) = idempotency::replay(state, &key).await? {
        return replayed(done, replay).await;
    }
    match create(Some(key.clone())).await {
        // A twin sent at the same moment may have created it first (its key, or its unique
        // name, stopped this one): answer with what it created.
        Err(e @ AppError::Conflict { .. }) => match idempotency::replay(state, &key).await? {
            Some(done) => replayed(done, replay).await,
            None => Err(e),
        },
        answer => answer,
    }
}

async fn replayed<R, RF>(done: idempotency::Replay, replay: R) -> Result<HttpResponse, AppError>
where
    R: FnOnce(String) -> RF,
    RF: Future<Output = Result<HttpResponse, AppError>>,
{
    let mut res = replay(done.resource_id).await?;
    *res.status_mut() = StatusCode::from_u16(done.status).unwrap_or(StatusCode::OK);
    res.headers_mut().insert(
        header::HeaderName::from_static("idempotent-replayed"),
        header::HeaderValue::from_static("true"),
    );
    Ok(res)
}
// --- end issue 19 ---
