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
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, error, mime, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::web::errors::nul_error;
use crate::web::format::{json_may_hold_nul, nul_field_in_json, nul_field_in_pairs};

pub use crate::service::api_objects::ChannelRef;

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
pub struct Body<T>(Result<T, AppError>);

impl<T> Body<T> {
    /// The body, or why it is refused (422 for JSON that does not fit or holds a NUL).
    pub fn get(self) -> Result<T, AppError> {
        self.0
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
            return Box::pin(ready(Ok(Body(Err(AppError::BadRequest(
                "Send the body as JSON with `Content-Type: application/json`.".into(),
            ))))));
        }
        let read = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            Ok(Body(match read.await {
                Ok(raw) if raw.len() > MAX_BODY_BYTES => Err(AppError::BadRequest(
                    "The JSON body is larger than 1 MiB.".into(),
                )),
                Ok(raw) => parse_json(&raw),
                Err(e) => Err(body_error(e)),
            }))
        })
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(path_error))
        .service(
            web::resource("/channels")
                .route(web::get().to(channels::list))
                .route(web::post().to(channels::create)),
        )
        .service(
            web::resource("/channels/{id}")
                .route(web::get().to(channels::get))
                .route(web::patch().to(channels::patch))
                .route(web::delete().to(channels::delete)),
        )
        .route("/audit", web::get().to(audit::list))
        .service(
            web::resource("/broadcasts")
                .route(web::get().to(broadcasts::list))
                .route(web::post().to(broadcasts::create)),
        )
        .service(
            web::resource("/broadcasts/{id}")
                .route(web::get().to(broadcasts::get))
                .route(web::patch().to(broadcasts::update)),
        )
        .route(
            "/broadcasts/{id}/estimate",
            web::get().to(broadcasts::estimate),
        )
        .route(
            "/broadcasts/{id}/launch",
            web::post().to(broadcasts::launch),
        )
        .route("/broadcasts/{id}/pause", web::post().to(broadcasts::pause))
        .route(
            "/broadcasts/{id}/resume",
            web::post().to(broadcasts::resume),
        )
        .route(
            "/broadcasts/{id}/cancel",
            web::post().to(broadcasts::cancel),
        )
        .route(
            "/broadcasts/{id}/approve",
            web::post().to(broadcasts::approve),
        )
        .route(
            "/broadcasts/{id}/reject",
            web::post().to(broadcasts::reject),
        )
        // Issue 18: "Send again to..." (a follow-up draft).
        .route(
            "/broadcasts/{id}/send-again",
            web::post().to(broadcasts::send_again),
        )
        // Issue 17: a CSV upload as a draft's audience.
        .route(
            "/broadcasts/{id}/audience.csv",
            web::post().to(broadcasts::upload_audience),
        )
        .route("/contacts/import", web::post().to(contacts::import))
        .service(
            web::resource("/contacts")
                .route(web::get().to(contacts::list))
                .route(web::post().to(contacts::upsert)),
        )
        .route("/contacts/{id}", web::get().to(contacts::get))
        .route("/templates", web::get().to(templates::list))
        .service(
            web::resource("/messages")
                .route(web::get().to(messages::list))
                .route(web::post().to(messages::send)),
        )
        .route("/messages/{id}", web::get().to(messages::get))
        .route("/messages/{id}/resend", web::post().to(messages::resend))
        // Issue 19: status-callback endpoints.
        .service(
            web::resource("/webhook-endpoints")
                .route(web::get().to(webhook_endpoints::list))
                .route(web::post().to(webhook_endpoints::create)),
        )
        .service(
            web::resource("/webhook-endpoints/{id}")
                .route(web::get().to(webhook_endpoints::get))
                .route(web::patch().to(webhook_endpoints::patch))
                .route(web::delete().to(webhook_endpoints::delete)),
        )
        .route(
            "/webhook-endpoints/{id}/rotate-secret",
            web::post().to(webhook_endpoints::rotate_secret),
        )
        .route(
            "/webhook-endpoints/{id}/test",
            web::post().to(webhook_endpoints::test),
        )
        .route(
            "/webhook-endpoints/{id}/deliveries",
            web::get().to(webhook_endpoints::deliveries),
        )
        .route(
            "/webhook-endpoints/{id}/send-again",
            web::post().to(webhook_endpoints::send_again),
        )
        // Issue 20: triggers.
        .service(
            web::resource("/triggers")
                .route(web::get().to(triggers::list))
                .route(web::post().to(triggers::create)),
        )
        .service(
            web::resource("/triggers/{id}")
                .route(web::get().to(triggers::get))
                .route(web::patch().to(triggers::update))
                .route(web::delete().to(triggers::delete)),
        )
        .route("/triggers/{id}/try", web::post().to(triggers::try_payload))
        // Issue 20: reminder rules.
        .service(
            web::resource("/reminders")
                .route(web::get().to(reminders::list))
                .route(web::post().to(reminders::create)),
        )
        .service(
            web::resource("/reminders/{id}")
                .route(web::get().to(reminders::get))
                .route(web::patch().to(reminders::update))
                .route(web::delete().to(reminders::delete)),
        )
        // Issue 20: cancelling a scheduled send.
        .route("/messages/{id}/cancel", web::post().to(messages::cancel))
        .default_service(web::to(not_found));
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
