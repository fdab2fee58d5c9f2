//! Static files (stylesheet, vendored htmx, app.js, icon), embedded in the binary so Herald is
//! one file to deploy. URLs carry a content hash, so browsers may cache them for a year.

use std::sync::LazyLock;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use rust_embed::RustEmbed;

use crate::error::AppError;

#[derive(RustEmbed)]
#[folder = "assets/"]
#[exclude = "*.md"]
#[exclude = "*LICENSE*"]
struct Files;

/// Cache-busted URLs for the layout.
pub struct AssetUrls {
    pub css: String,
    pub htmx: String,
    pub htmx_sse: String,
    pub app_js: String,
    pub favicon: String,
}

fn url(name: &str) -> String {
    match Files::get(name) {
        Some(f) => {
            let hash: String = f.metadata.sha256_hash()[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("/assets/{name}?v={hash}")
        }
        None => format!("/assets/{name}"),
    }
}

pub static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
    css: url("app.css"),
    htmx: url("vendor/htmx-2.0.11.min.js"),
    htmx_sse: url("vendor/htmx-ext-sse-2.2.4.min.js"),
    app_js: url("app.js"),
    favicon: url("favicon.svg"),
});

pub async fn serve(path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let name = path.into_inner();
    let file = Files::get(&name).ok_or_else(|| AppError::not_found("This file"))?;
    let mime = mime_guess::from_path(&name).first_or_octet_stream();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, mime.essence_str().to_owned()))
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ]))
        .body(file.data.into_owned()))
}

pub async fn favicon() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, URLS.favicon.as_str()))
        .finish()
}
