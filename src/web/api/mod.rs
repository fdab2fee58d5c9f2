//! JSON API v1, under `/api/v1`, authenticated with `Authorization: Bearer <key>`. Handlers call
//! the same domain and storage functions as the pages; errors use the shape
//! `{"error":{"code","message"}}`.

pub mod audit;
pub mod channels;
pub mod contacts;
pub mod messages;
pub mod templates;

use actix_web::{HttpRequest, error, web};

use crate::error::AppError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(1 << 20)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error))
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
    .route("/contacts/import", web::post().to(contacts::import))
    .service(
        web::resource("/contacts")
            .route(web::get().to(contacts::list))
            .route(web::post().to(contacts::upsert)),
    )
    .route("/contacts/{id}", web::get().to(contacts::get))
    .route("/templates", web::get().to(templates::list))
    .route("/messages", web::post().to(messages::send))
    .route("/messages/{id}", web::get().to(messages::get))
    .route(
        "/messages/{id}/resend",
        web::post().to(crate::web::resend::api),
    )
    .default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound("There is no such API endpoint.".into()))
}

fn json_error(err: error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match err {
        error::JsonPayloadError::OverflowKnownLength { .. }
        | error::JsonPayloadError::Overflow { .. } => {
            AppError::BadRequest("The JSON body is larger than 1 MiB.".into()).into()
        }
        error::JsonPayloadError::ContentType => AppError::BadRequest(
            "Send the body as JSON with `Content-Type: application/json`.".into(),
        )
        .into(),
        error::JsonPayloadError::Deserialize(e) => {
            AppError::invalid("invalid_json", format!("The JSON body does not fit: {e}")).into()
        }
        other => AppError::BadRequest(format!("The JSON body could not be read: {other}")).into(),
    }
}

fn query_error(err: error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    AppError::BadRequest(format!("The query string does not fit: {err}")).into()
}

fn path_error(err: error::PathError, _: &HttpRequest) -> actix_web::Error {
    AppError::NotFound(format!("No such resource: {err}")).into()
}
