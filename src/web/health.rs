//! Liveness and readiness probe.

use actix_web::{HttpResponse, web};
use diesel::connection::SimpleConnection;

use crate::error::AppError;
use crate::startup::AppState;

/// 200 `{"status":"ok"}` when the database answers, 503 otherwise.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let probe = state
        .db
        .run(|conn| conn.batch_execute("SELECT 1").map_err(AppError::from))
        .await;
    match probe {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = ?e, "health check failed");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "error": "database"}))
        }
    }
}
