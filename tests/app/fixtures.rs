//! Builders the test modules share: an admin with an API key, the seeded channels, a support
//! lead, templates drafted and approved through the real pages, contacts made through the API,
//! customer replies on the sandbox, and a server that dispatches in-process.

use std::time::Duration;

use herald::domain::channel::{ChannelKind, Provider};
use herald::storage::Db;
use herald::storage::channels::{self, Channel};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, Client, TestApp, create_api_key, location};
use crate::provider_kit::{api, get_json};

/// An admin signed in to the dashboard, and an admin API key.
pub async fn admin_and_key(app: &TestApp) -> (Client, String) {
    let admin = app.admin().await;
    let key = create_api_key(&admin, "Channel tests", "admin").await;
    (admin, key)
}

pub const WA_BODY: &str = "Hi {{1}}, your order {{2}} has shipped.";

pub struct Setup {
    pub admin: Client,
    /// A support lead (approves the admin's templates).
    pub lead: Client,
    /// An admin API key.
    pub key: String,
    pub wa: Channel,
    pub sms: Channel,
}

/// A server that dispatches in-process, with the sandbox reporting delivered and read quickly.
pub async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| s.run_worker = true).await
}

pub fn channel_named(app: &TestApp, name: &str) -> Channel {
    channels::list(&mut app.db())
        .expect("channels")
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no channel {name}"))
}

pub async fn setup(app: &TestApp) -> Setup {
    let admin = app.admin().await;
    let lead = app
        .user_with_role(&admin, "sam@example.com", "support_lead")
        .await;
    let key = create_api_key(&admin, "Shop", "admin").await;
    let wa = channel_named(app, "Sandbox WhatsApp");
    let sms = channel_named(app, "Sandbox SMS");
    for ch in [&wa, &sms] {
        let (status, body) = api(
            app,
            Method::PATCH,
            &format!("/api/v1/channels/{}", ch.public_id),
            &key,
            Some(&json!({"settings": {"delivered_after_ms": 100, "read_after_ms": 200, "approve_after_ms": 0}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    Setup {
        admin,
        lead,
        key,
        wa,
        sms,
    }
}

/// Drafts a WhatsApp template as the admin, has the lead approve it, and waits until the
/// sandbox approved it too. Returns the template's page path.
pub async fn approved_template(app: &TestApp, s: &Setup, name: &str, body: &str) -> String {
    let path = drafted_template(s, name, body).await;
    submit_and_approve(s, &path).await;
    // The sandbox approves at once here (`approve_after_ms` 0): its verdict alone makes the
    // template sendable, whichever of it and the submission's answer is written first.
    assert!(
        sendable_within(app, s, name, Duration::from_secs(30)).await,
        "{name} never became sendable"
    );
    path
}

/// The admin submits version 1 of the template at `path` for review; the lead approves it.
pub async fn submit_and_approve(s: &Setup, path: &str) {
    let res = s
        .admin
        .post_form(&format!("{path}/submit"), &[("version", "1")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = s
        .lead
        .post_form(
            &format!("{path}/approve"),
            &[("version", "1"), ("note", "")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

/// Whether the API lists the template `name` as sendable before `wait` has passed.
pub async fn sendable_within(app: &TestApp, s: &Setup, name: &str, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let (_, list) = get_json(app, &s.key, &format!("/api/v1/templates?name={name}")).await;
        if list["data"].as_array().is_some_and(|a| !a.is_empty()) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn drafted_template(s: &Setup, name: &str, body: &str) -> String {
    let mut fields = vec![
        ("channel", s.wa.public_id.as_str()),
        ("name", name),
        ("language", "en_US"),
        ("category", "utility"),
        ("body", body),
        ("sample.1", "Alex"),
    ];
    if body.contains("{{2}}") {
        fields.push(("sample.2", "#1234"));
    }
    let res = s.admin.post_form("/templates", &fields).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap_or_default()
    );
    location(&res)
}

/// Creates a contact through the API; returns its id.
pub async fn contact(app: &TestApp, key: &str, body: Value) -> String {
    let (status, c) = api(app, Method::POST, "/api/v1/contacts", key, Some(&body)).await;
    assert!(status.is_success(), "{c}");
    c["id"].as_str().expect("id").to_owned()
}

/// The sandbox customer writes on `channel`.
pub async fn customer_replies(admin: &Client, contact_id: &str, channel: &Channel, text: &str) {
    let res = admin
        .post_form(
            &format!("/contacts/{contact_id}/simulate-reply"),
            &[("channel", channel.public_id.as_str()), ("text", text)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

/// The sandbox channel of a kind, which exists without any configuration.
pub fn sandbox_channel(db: &Db, kind: ChannelKind) -> Channel {
    channels::list(&mut db.get().unwrap())
        .unwrap()
        .into_iter()
        .find(|c| c.provider == Provider::Sandbox && c.kind == kind)
        .unwrap_or_else(|| panic!("no sandbox {kind:?} channel"))
}
