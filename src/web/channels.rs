//! Settings › Channels (admins): the sender accounts Herald sends through.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::domain::channel::Provider;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm};
use crate::web::render;

/// Where a provider posts its events for this channel; `None` for the sandbox.
pub fn webhook_url(public_url: &str, channel: &Channel) -> Option<String> {
    let segment = match channel.provider {
        Provider::Sandbox => return None,
        Provider::WhatsappCloud => "whatsapp",
        Provider::Twilio => "twilio",
        Provider::Infobip => "infobip",
    };
    Some(format!(
        "{public_url}/webhooks/{segment}/{}",
        channel.public_id
    ))
}

pub struct ChannelView {
    pub channel: Channel,
    pub webhook_url: Option<String>,
}

#[derive(Template)]
#[template(path = "channels/index.html")]
struct ChannelsPage {
    chrome: Chrome,
    channels: Vec<ChannelView>,
}

pub async fn index(
    _auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let list = state
        .db
        .run(|conn| Ok::<_, AppError>(channels::list(conn)?))
        .await?;
    let channels = list
        .into_iter()
        .map(|c| ChannelView {
            webhook_url: webhook_url(&state.public_url, &c),
            channel: c,
        })
        .collect();
    render(&ChannelsPage { chrome, channels })
}
