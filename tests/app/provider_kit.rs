//! What the channel and webhook tests share: admin API calls for channels, the channel registry
//! Herald builds (same key, same adapters) so a test can send through a channel as the
//! dispatcher will, and message rows written straight into the test's database (there is no
//! send page yet).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use herald::auth::keys::Keys;
use herald::channels::{Adapter, ProviderEvent};
use herald::dispatch::registry::ChannelRegistry;
use herald::storage::channels::Channel;
use herald::storage::messages::MessageRow;
use herald::storage::schema::{early_statuses, message_events, messages, webhook_receipts};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

use crate::helpers::{TestApp, test_settings};

/// Calls the API with a JSON body; returns the status and the JSON answer (`null` when empty).
pub async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("API call");
    let status = res.status();
    let text = res.text().await.expect("body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, json)
}

pub async fn get_json(app: &TestApp, key: &str, path: &str) -> (StatusCode, Value) {
    api(app, reqwest::Method::GET, path, key, None).await
}

pub async fn delete_json(app: &TestApp, key: &str, path: &str) -> (StatusCode, Value) {
    api(app, reqwest::Method::DELETE, path, key, None).await
}

/// Creates a channel through the API; returns its JSON (`id`, `webhook_url`, …).
pub async fn create_channel(app: &TestApp, key: &str, body: Value) -> Value {
    let (status, json) = api(
        app,
        reqwest::Method::POST,
        "/api/v1/channels",
        key,
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json
}

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "7d0a4c1f2b3e4d5a6b7c8d9e0f1a2b3c";
pub const META_APP_SECRET: &str = "meta-app-secret-0001";
pub const META_VERIFY_TOKEN: &str = "verify-me-0001";
pub const META_ACCESS_TOKEN: &str = "EAAG-meta-access-token-0001";
pub const INFOBIP_SECRET: &str = "infobip-webhook-secret-0001";
pub const INFOBIP_KEY: &str = "infobip-api-key-0001";

pub fn whatsapp_channel(name: &str, base_url: &str) -> Value {
    json!({"kind": "whatsapp", "name": name, "settings": {
        "base_url": base_url, "phone_number_id": "106540352242922", "waba_id": "102290129340398",
        "access_token": META_ACCESS_TOKEN, "app_secret": META_APP_SECRET,
        "verify_token": META_VERIFY_TOKEN}})
}

pub fn twilio_channel(name: &str, base_url: &str) -> Value {
    json!({"kind": "sms", "name": name, "rate_limit_per_second": 5, "settings": {
        "base_url": base_url, "account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN,
        "from": "+15005550006"}})
}

pub fn infobip_channel(name: &str, base_url: &str) -> Value {
    json!({"kind": "viber", "name": name, "settings": {
        "base_url": base_url, "api_key": INFOBIP_KEY, "sender": "HeraldShop",
        "webhook_secret": INFOBIP_SECRET}})
}

/// The registry a Herald with this test's settings builds, with the sandbox's event receiver.
pub fn registry(
    app: &TestApp,
    public_url: &str,
) -> (ChannelRegistry, Receiver<(String, ProviderEvent)>) {
    let master = test_settings(&app.database_url)
        .secret_key
        .expect("the tests set a secret key");
    let keys = Keys::derive(&master).expect("keys");
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let registry =
        ChannelRegistry::new(public_url, keys.channel_secrets, tx, Duration::from_secs(5))
            .expect("registry");
    (registry, rx)
}

pub fn channel(app: &TestApp, public_id: &str) -> Channel {
    herald::storage::channels::find_by_public_id(&mut app.db(), public_id)
        .expect("query")
        .expect("the channel exists")
}

/// The adapter Herald uses for this channel as stored now.
pub fn adapter(registry: &ChannelRegistry, channel: &Channel) -> Adapter {
    registry
        .adapter(channel)
        .expect("an adapter for the stored settings")
}

/// The internal id of a contact, by its public id.
pub fn contact_id(app: &TestApp, public_id: &str) -> i64 {
    herald::storage::contacts::find_by_public_id(&mut app.db(), public_id)
        .expect("query")
        .expect("the contact exists")
        .id
}

/// A message row as the outbox will write it; returns its id and public id.
pub fn insert_message(
    app: &TestApp,
    channel_id: i64,
    contact_id: i64,
    to: &str,
    status: &str,
    provider_message_id: Option<&str>,
) -> (i64, String) {
    let now = chrono::Utc::now().naive_utc();
    let public_id = uuid::Uuid::now_v7().to_string();
    let id = diesel::insert_into(messages::table)
        .values((
            messages::public_id.eq(&public_id),
            messages::channel_id.eq(channel_id),
            messages::contact_id.eq(contact_id),
            messages::to_address.eq(to),
            messages::content_kind.eq("template"),
            messages::body.eq("Hi Ada, order 1234 ships today."),
            messages::content.eq("{}"),
            messages::status.eq(status),
            messages::provider_message_id.eq(provider_message_id),
            messages::attempts.eq(1),
            messages::next_attempt_at.eq(now),
            messages::requested_by.eq("test"),
            messages::created_at.eq(now),
            messages::updated_at.eq(now),
            messages::sent_at.eq((status == "sent").then_some(now)),
        ))
        .returning(messages::id)
        .get_result::<i64>(&mut *app.db())
        .expect("insert message");
    (id, public_id)
}

/// Records a send's outcome as the dispatcher will: `sent` with the provider's id, then the
/// reports that arrived before it.
pub fn record_sent(app: &TestApp, channel: &Channel, message_id: i64, provider_id: &str) {
    let mut conn = app.db();
    diesel::update(messages::table.find(message_id))
        .set((
            messages::status.eq("sent"),
            messages::provider_message_id.eq(provider_id),
            messages::sent_at.eq(chrono::Utc::now().naive_utc()),
        ))
        .execute(&mut *conn)
        .expect("record sent");
    herald::dispatch::events::claim_early_statuses(&mut conn, channel, message_id)
        .expect("claim early statuses");
}

pub fn message(app: &TestApp, id: i64) -> MessageRow {
    herald::storage::messages::find(&mut app.db(), id)
        .expect("query")
        .expect("the message exists")
}

/// The statuses of a message's timeline, oldest first.
pub fn timeline(app: &TestApp, id: i64) -> Vec<String> {
    message_events::table
        .filter(message_events::message_id.eq(id))
        .order(message_events::id)
        .select(message_events::status)
        .load(&mut *app.db())
        .expect("events")
}

/// Waits (up to 10 s) until the message has `status`.
pub async fn wait_for_status(app: &TestApp, id: i64, status: &str) -> MessageRow {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = message(app, id);
        if m.status == status {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "message {id} is still {} (timeline {:?}), never {status}",
            m.status,
            timeline(app, id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn receipts(app: &TestApp, channel_id: i64) -> i64 {
    webhook_receipts::table
        .filter(webhook_receipts::channel_id.eq(channel_id))
        .count()
        .get_result(&mut *app.db())
        .expect("count")
}

/// Early statuses kept for this provider message id.
pub fn early(app: &TestApp, channel_id: i64, provider_id: &str) -> Vec<String> {
    early_statuses::table
        .filter(early_statuses::channel_id.eq(channel_id))
        .filter(early_statuses::provider_message_id.eq(provider_id))
        .select(early_statuses::status)
        .load(&mut *app.db())
        .expect("early statuses")
}

/// Creates a contact through the API; returns its public id.
pub async fn new_contact(app: &TestApp, key: &str, phone: &str) -> String {
    let (status, json) = api(
        app,
        reqwest::Method::POST,
        "/api/v1/contacts",
        key,
        Some(&json!({"phone": phone, "name": "Ada"})),
    )
    .await;
    assert!(status.is_success(), "{json}");
    json["id"].as_str().expect("id").to_owned()
}

/// The contact with this phone number, as the API shows it.
pub async fn contact_by_phone(app: &TestApp, key: &str, phone: &str) -> Option<Value> {
    let q = serde_urlencoded::to_string([("phone", phone)]).expect("query");
    let (status, json) = api(
        app,
        reqwest::Method::GET,
        &format!("/api/v1/contacts?{q}"),
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["data"].as_array().and_then(|d| d.first().cloned())
}

/// One channel's state on a contact (`window`, `opted_out`).
pub fn channel_state<'a>(contact: &'a Value, channel_id: &str) -> &'a Value {
    contact["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["channel_id"] == channel_id))
        .expect("the contact lists the channel")
}

/// The audit entries with this action, newest first.
pub async fn audit(app: &TestApp, key: &str, action: &str) -> Vec<Value> {
    let (status, json) = api(
        app,
        reqwest::Method::GET,
        "/api/v1/audit?limit=200",
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    json["data"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}
