//! `GET /api/v1/channels`: the channels a client can send through.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::web::channels::webhook_url;
use crate::web::identity::{Auth, perm};

#[derive(Serialize)]
pub struct ChannelJson {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub provider: &'static str,
    pub sandbox: bool,
    pub sender: String,
    pub enabled: bool,
    pub rate_limit_per_second: i32,
    pub webhook_url: Option<String>,
    pub created_at: String,
}

impl ChannelJson {
    pub fn new(c: Channel, public_url: &str) -> Self {
        ChannelJson {
            webhook_url: webhook_url(public_url, &c),
            kind: c.kind.as_str(),
            provider: c.provider.as_str(),
            sandbox: c.is_sandbox(),
            enabled: c.is_enabled(),
            rate_limit_per_second: c.rate_limit_per_second,
            created_at: c.created_at.and_utc().to_rfc3339(),
            id: c.public_id,
            name: c.name,
            sender: c.sender,
        }
    }
}

#[derive(Serialize)]
struct ChannelList {
    data: Vec<ChannelJson>,
}

pub async fn list(
    _auth: Auth<perm::ViewChannels>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let all = state
        .db
        .run(|conn| Ok::<_, AppError>(channels::list(conn)?))
        .await?;
    let data = all
        .into_iter()
        .map(|c| ChannelJson::new(c, &state.public_url))
        .collect();
    Ok(HttpResponse::Ok().json(ChannelList { data }))
}
