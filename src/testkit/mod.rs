//! Test doubles that speak the providers' wire formats, for Herald's tests, benchmarks and
//! fuzzing.

pub mod fake_provider;

use std::time::Duration;

use serde_json::json;

use crate::channels::infobip_viber::{InfobipViberAdapter, InfobipViberSettings};
use crate::channels::twilio::{TwilioAdapter, TwilioSettings};
use crate::channels::whatsapp::{WhatsappAdapter, WhatsappSettings};
use crate::channels::{http_client, infobip_viber, twilio, whatsapp};

/// The three webhook-verifying adapters, all keyed with one `secret` (Meta app secret, Twilio
/// auth token, Infobip webhook secret), for feeding webhooks to: the robustness proptest and
/// the cargo-fuzz target.
pub struct WebhookAdapters {
    pub whatsapp: WhatsappAdapter,
    pub twilio: TwilioAdapter,
    pub infobip: InfobipViberAdapter,
}

impl WebhookAdapters {
    /// `secret` must be at least 16 characters (Infobip's rule); `url` is the public URL the
    /// webhooks are addressed to (Twilio signs it).
    pub fn new(secret: &str, url: &str) -> Result<Self, String> {
        let http = http_client(Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let whatsapp = WhatsappSettings::from_json(
            &json!({"phone_number_id": "1", "waba_id": "2"}),
            &json!({"access_token": "t", "app_secret": secret, "verify_token": secret}),
        )
        .map_err(|e| e.to_string())?;
        let twilio = TwilioSettings::from_json(
            &json!({"account_sid": "AC0123456789abcdef0123456789abcdef", "from": "HERALD"}),
            &json!({"auth_token": secret}),
        )
        .map_err(|e| e.to_string())?;
        let infobip = InfobipViberSettings::from_json(
            &json!({"base_url": "https://api.infobip.com", "sender": "S"}),
            &json!({"api_key": "k", "webhook_secret": secret}),
        )
        .map_err(|e| e.to_string())?;
        Ok(WebhookAdapters {
            whatsapp: WhatsappAdapter::new(whatsapp, http.clone()),
            twilio: TwilioAdapter::new(twilio, http.clone(), url.into()),
            infobip: InfobipViberAdapter::new(infobip, http, url.into()),
        })
    }

    /// Headers that authenticate `body` at `url` for each adapter, as the providers would send
    /// them: `(whatsapp, twilio, infobip)` as `(name, value)`. Twilio's form is read from the
    /// body as the adapter reads it.
    pub fn signatures(secret: &str, url: &str, body: &[u8]) -> [(&'static str, String); 3] {
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        [
            ("X-Hub-Signature-256", whatsapp::sign(secret, body)),
            ("X-Twilio-Signature", twilio::sign(secret, url, &params)),
            (infobip_viber::SECRET_HEADER, secret.to_owned()),
        ]
    }
}
