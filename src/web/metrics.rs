//! `GET /metrics`: Prometheus text format (queue depth per channel, sends per channel and
//! outcome, send latency, messages in flight). Set `HERALD_METRICS_TOKEN` to require
//! `Authorization: Bearer <token>`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::token::tokens_match;
use crate::dispatch::metrics::ChannelLabels;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::{channels, outbox};

pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if let Some(token) = &state.settings.metrics_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !tokens_match(token, given.trim()) {
            return Err(AppError::InvalidApiKey);
        }
    }
    let (depths, names) = state
        .db
        .run(|conn| {
            let names: Vec<(i64, String)> = channels::list(conn)?
                .into_iter()
                .map(|c| (c.id, c.name))
                .collect();
            Ok::<_, AppError>((outbox::queue_depth(conn)?, names))
        })
        .await?;
    for (id, name) in &names {
        let depth = depths.iter().find(|(c, _)| c == id).map_or(0, |(_, n)| *n);
        state
            .metrics
            .queue_depth
            .get_or_create(&ChannelLabels {
                channel: name.clone(),
            })
            .set(depth);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode()))
}
