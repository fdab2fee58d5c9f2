//! The "done when", end to end on both backends: a channel's base URL pointed at the
//! in-process fake provider, Herald sending through the real adapter, and the providers' signed
//! webhooks (from the fake, or written here in their wire format) applied by Herald's webhook
//! endpoint: statuses forward only and once, forgeries refused with nothing stored, unreadable
//! bodies acknowledged, inbound messages creating contacts and opening windows, opt-outs; the
//! same for Twilio (signed over HERALD_PUBLIC_URL) and Infobip (shared secret); and the sandbox
//! with no configuration at all.

use std::time::Duration;

use herald::channels::{
    ChannelAdapter, OutboundMessage, SendReceipt, infobip_viber, twilio, whatsapp,
};
use herald::domain::content::{MessageContent, ParameterFormat, TemplateContent, TemplateParam};
use herald::domain::phone::E164;
use herald::storage::channels::Channel;
use herald::testkit::fake_provider::{
    FakeConfig, FakeProvider, FakeProviderHandle, FakeProviderKind, FakeStatus, WebhookEndpoint,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::admin_and_key;
use crate::helpers::{Backend, TestApp, location};
use crate::provider_kit::*;

crate::both_backends!(
    whatsapp_sends_a_template_and_metas_signed_statuses_come_back,
    whatsapp_statuses_move_forward_once_and_forgeries_store_nothing,
    whatsapp_verification_inbound_messages_and_stop,
    whatsapp_events_go_to_the_number_they_name,
    whatsapp_events_go_only_to_channels_whose_secret_signed_them,
    provider_text_is_kept_without_nul_or_controls_and_bounded,
    twilio_status_callbacks_inbound_messages_and_opt_outs,
    infobip_reports_and_inbound_messages_carry_the_shared_secret,
    the_sandbox_works_with_no_configuration,
);

// Twilio behind a proxy needs its own HERALD_PUBLIC_URL.
crate::both_backends!(with_backend proxy: twilio_signatures_are_checked_against_the_public_url);
// The in-process worker sends through the fake provider.
crate::both_backends!(with_backend worker: a_providers_error_answer_is_kept_with_the_unknown_status);
// Slow and oversized bodies, with a short body time limit.
crate::both_backends!(with_backend bodies: slow_and_oversized_bodies_are_bounded);

// Instances relay hub events through PostgreSQL (SQLite has one instance).
mod relay {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(herald_pg_tests),
        ignore = "set HERALD_TEST_DATABASE_URL to run on PostgreSQL"
    )]
    async fn postgres() {
        super::another_instance_sees_a_webhook_live(
            super::TestApp::spawn(super::Backend::Postgres).await,
        )
        .await;
    }
}

const ADA: &str = "+16505551234";

fn phone(p: &str) -> E164 {
    E164::parse(p, None).expect("a valid number")
}

fn template_message(message_id: &str, to: &str) -> OutboundMessage {
    let param = |name: &str, value: &str| TemplateParam {
        name: Some(name.into()),
        value: value.into(),
    };
    OutboundMessage {
        message_id: message_id.into(),
        to: phone(to),
        content: MessageContent::Template(TemplateContent {
            name: "order_update".into(),
            language: "en_US".into(),
            provider_template_id: None,
            parameter_format: ParameterFormat::Named,
            header: Vec::new(),
            body: vec![param("first_name", "Ada"), param("order_number", "1234")],
            buttons: Vec::new(),
            rendered: "Hi Ada, order 1234 ships today.".into(),
            window_text: None,
        }),
    }
}

fn text_message(message_id: &str, to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: message_id.into(),
        to: phone(to),
        content: MessageContent::Text { body: body.into() },
    }
}

/// A channel whose base URL is the in-process fake provider, which posts its webhooks (signed
/// with the channel's secret) to the channel's webhook URL: `statuses` after every send.
struct Wired {
    id: String,
    hook: String,
    channel: Channel,
    fake: FakeProviderHandle,
}

async fn wired(
    app: &TestApp,
    key: &str,
    body: Value,
    secret: &str,
    statuses: Vec<FakeStatus>,
) -> Wired {
    // Moving the channel to the fake provider takes its secrets again (a saved secret never
    // goes to a new address): the same settings, with the fake's base URL.
    let mut settings = body["settings"].clone();
    let created = create_channel(app, key, body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let hook = created["webhook_url"].as_str().expect("webhook").to_owned();
    let endpoint = Some(WebhookEndpoint {
        url: hook.clone(),
        secret: secret.into(),
    });
    let mut config = FakeConfig {
        status_sequence: statuses,
        status_delay: Duration::from_millis(300),
        ..FakeConfig::default()
    };
    match created["provider"].as_str() {
        Some("whatsapp_cloud") => config.whatsapp_webhook = endpoint,
        Some("twilio") => config.twilio_webhook = endpoint,
        _ => config.infobip_webhook = endpoint,
    }
    let fake = FakeProvider::start(config).await.expect("fake provider");
    settings["base_url"] = json!(fake.base_url);
    let (status, json) = api(
        app,
        Method::PATCH,
        &format!("/api/v1/channels/{id}"),
        key,
        Some(&json!({ "settings": settings })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    Wired {
        channel: channel(app, &id),
        id,
        hook,
        fake,
    }
}

impl Wired {
    /// Sends through the adapter Herald builds for the channel, as the dispatcher will: a
    /// `sending` row, the provider call, then `sent` with the provider's id.
    async fn send(
        &self,
        app: &TestApp,
        contact: i64,
        to: &str,
        message: impl FnOnce(&str) -> OutboundMessage,
    ) -> (i64, SendReceipt) {
        let (id, public_id) = insert_message(app, self.channel.id, contact, to, "sending", None);
        let (registry, _rx) = registry(app, &app.address);
        let receipt = adapter(&registry, &self.channel)
            .send(&message(&public_id))
            .await
            .expect("the fake accepts the send");
        record_sent(app, &self.channel, id, &receipt.provider_message_id);
        (id, receipt)
    }
}

// ---------------------------------------------------------------------------------------------
// WhatsApp
// ---------------------------------------------------------------------------------------------

/// A Meta status webhook, as in shared/reference/whatsapp-examples.
fn wa_status(wamid: &str, status: &str, timestamp: i64) -> String {
    let mut s = json!({"id": wamid, "status": status, "timestamp": timestamp.to_string(),
        "recipient_id": ADA.trim_start_matches('+')});
    if status == "failed" {
        s["errors"] = json!([{"code": 131047, "title": "Re-engagement message",
            "message": "Re-engagement message", "error_data": {"details":
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [s]}}]}]})
    .to_string()
}

/// Posts a body to Herald's WhatsApp webhook, signed with `secret` (unsigned with `None`).
async fn post_whatsapp(url: &str, body: &str, secret: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(secret) = secret {
        req = req.header(
            "X-Hub-Signature-256",
            whatsapp::sign(secret, body.as_bytes()),
        );
    }
    let res = req.send().await.expect("webhook");
    (res.status(), res.text().await.unwrap_or_default())
}

async fn whatsapp_sends_a_template_and_metas_signed_statuses_come_back(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let w = wired(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
        META_APP_SECRET,
        vec![FakeStatus::Sent, FakeStatus::Delivered, FakeStatus::Read],
    )
    .await;
    let contact = contact_id(&app, &new_contact(&app, &key, ADA).await);

    // Herald sends through the real adapter, with the settings it stored.
    let (message_id, receipt) = w
        .send(&app, contact, ADA, |id| template_message(id, ADA))
        .await;
    assert!(receipt.provider_message_id.starts_with("wamid."));
    let fake = &w.fake;

    // Meta's documented shape, field by field.
    let sent = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/messages"))
        .expect("a send");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v23.0/106540352242922/messages");
    assert_eq!(
        sent.header("Authorization"),
        Some(format!("Bearer {META_ACCESS_TOKEN}").as_str())
    );
    let body = sent.json().expect("JSON");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["recipient_type"], "individual");
    assert_eq!(body["to"], ADA);
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "order_update");
    assert_eq!(
        body["template"]["language"],
        json!({"code": "en_US", "policy": "deterministic"})
    );
    assert_eq!(
        body["template"]["components"],
        json!([{"type": "body", "parameters": [
            {"type": "text", "parameter_name": "first_name", "text": "Ada"},
            {"type": "text", "parameter_name": "order_number", "text": "1234"}]}])
    );

    // Meta's signed statuses move the message to read.
    let read = wait_for_status(&app, message_id, "read").await;
    assert!(read.delivered_at.is_some() && read.read_at.is_some());
    assert_eq!(timeline(&app, message_id), vec!["delivered", "read"]);
    assert_eq!(
        receipts(&app, w.channel.id),
        3,
        "sent, delivered, read: each once"
    );
    for _ in 0..50 {
        if fake.stats().webhooks_sent == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = fake.stats();
    assert_eq!((stats.webhooks_sent, stats.webhooks_failed), (3, 0));
}

async fn whatsapp_statuses_move_forward_once_and_forgeries_store_nothing(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "https://graph.facebook.com"),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let hook = created["webhook_url"].as_str().unwrap().to_owned();
    let ch = channel(&app, &id);
    let contact = contact_id(&app, &new_contact(&app, &key, ADA).await);
    let now = chrono::Utc::now().timestamp();

    // Read before delivered: read (and delivered with it); the late delivered changes nothing.
    let (m1, _) = insert_message(&app, ch.id, contact, ADA, "sent", Some("wamid.ONE"));
    let (status, body) = post_whatsapp(
        &hook,
        &wa_status("wamid.ONE", "read", now),
        Some(META_APP_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = post_whatsapp(
        &hook,
        &wa_status("wamid.ONE", "delivered", now - 5),
        Some(META_APP_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let m = message(&app, m1);
    assert_eq!(m.status, "read");
    assert!(m.delivered_at.is_some(), "read implies delivered");
    assert_eq!(timeline(&app, m1), vec!["read"]);

    // Replays: the same event twice (Meta retries for days) is one change and one timeline row.
    let (m2, _) = insert_message(&app, ch.id, contact, ADA, "sent", Some("wamid.TWO"));
    let delivered = wa_status("wamid.TWO", "delivered", now);
    for _ in 0..2 {
        let (status, _) = post_whatsapp(&hook, &delivered, Some(META_APP_SECRET)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = post_whatsapp(
        &hook,
        &wa_status("wamid.TWO", "delivered", now + 60),
        Some(META_APP_SECRET),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a retry with another timestamp is the same event"
    );
    assert_eq!(message(&app, m2).status, "delivered");
    assert_eq!(timeline(&app, m2), vec!["delivered"]);
    let seen = receipts(&app, ch.id);
    assert_eq!(seen, 3, "read and delivered of ONE, delivered of TWO");

    // Forgeries: a wrong secret, no signature, a signature of another body: 401, nothing stored.
    let (m3, _) = insert_message(&app, ch.id, contact, ADA, "sent", Some("wamid.THREE"));
    let forged = wa_status("wamid.THREE", "read", now);
    let (status, body) = post_whatsapp(&hook, &forged, Some("not-the-app-secret")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_signature"), "{body}");
    let (status, _) = post_whatsapp(&hook, &forged, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = reqwest::Client::new()
        .post(&hook)
        .header(
            "X-Hub-Signature-256",
            whatsapp::sign(META_APP_SECRET, b"{}"),
        )
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(message(&app, m3).status, "sent");
    assert!(timeline(&app, m3).is_empty());
    assert_eq!(receipts(&app, ch.id), seen);

    // A signed body Herald cannot read is acknowledged (never a retry loop) and stores nothing.
    for unreadable in [
        "{not json",
        "[]",
        "{\"object\": \"whatsapp_business_account\", \"entry\": 7}",
    ] {
        let (status, body) = post_whatsapp(&hook, unreadable, Some(META_APP_SECRET)).await;
        assert_eq!(status, StatusCode::OK, "{unreadable}: {body}");
    }
    assert_eq!(receipts(&app, ch.id), seen);

    // A failed status keeps Meta's code and words.
    let (status, _) = post_whatsapp(
        &hook,
        &wa_status("wamid.THREE", "failed", now),
        Some(META_APP_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let failed = message(&app, m3);
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.error_code.as_deref(), Some("131047"));
    assert!(failed.error_message.unwrap().contains("more than 24 hours"));

    // A status for a message Herald has not recorded yet is kept, then claimed by it.
    let (status, _) = post_whatsapp(
        &hook,
        &wa_status("wamid.EARLY", "delivered", now),
        Some(META_APP_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(early(&app, ch.id, "wamid.EARLY"), vec!["delivered"]);
    let (m4, _) = insert_message(&app, ch.id, contact, ADA, "sending", None);
    record_sent(&app, &ch, m4, "wamid.EARLY");
    assert_eq!(message(&app, m4).status, "delivered");
    assert!(early(&app, ch.id, "wamid.EARLY").is_empty());

    // Webhooks to a channel that is not this provider's, or to no channel, are not found.
    let other = hook.replace("/webhooks/whatsapp/", "/webhooks/twilio/");
    assert_eq!(
        reqwest::Client::new()
            .post(&other)
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn whatsapp_verification_inbound_messages_and_stop(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let w = wired(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
        META_APP_SECRET,
        Vec::new(),
    )
    .await;
    let (id, hook, fake) = (&w.id, &w.hook, &w.fake);

    // Meta's GET handshake: the right verify token echoes hub.challenge; any other is 403.
    let verify = |token: &str| {
        let q = serde_urlencoded::to_string([
            ("hub.mode", "subscribe"),
            ("hub.challenge", "1158201444"),
            ("hub.verify_token", token),
        ])
        .unwrap();
        let url = format!("{hook}?{q}");
        async move { reqwest::get(url).await.unwrap() }
    };
    let res = verify(META_VERIFY_TOKEN).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "1158201444");
    assert_eq!(verify("guess").await.status(), StatusCode::FORBIDDEN);

    // A customer writes: a contact is created with their profile name and the window opens.
    assert!(contact_by_phone(&app, &key, ADA).await.is_none());
    let status = fake
        .send_inbound(
            FakeProviderKind::Whatsapp,
            ADA,
            "Does it come in another color?",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let c = contact_by_phone(&app, &key, ADA)
        .await
        .expect("a new contact");
    assert_eq!(c["name"], "Fake Customer");
    let state = channel_state(&c, id);
    assert_eq!(state["window"]["open"], true);
    assert_eq!(state["opted_out"], false);
    let page = admin
        .get_html(&format!("/contacts/{}", c["id"].as_str().unwrap()))
        .await;
    assert!(page.contains("Does it come in another color?"));

    // STOP opts them out of WhatsApp (only).
    fake.send_inbound(FakeProviderKind::Whatsapp, ADA, "STOP")
        .await
        .unwrap();
    let c = contact_by_phone(&app, &key, ADA).await.unwrap();
    assert_eq!(channel_state(&c, id)["opted_out"], true);
    assert_eq!(c["consent"]["whatsapp"]["status"], "opted_out");
    assert_eq!(c["consent"]["whatsapp"]["source"], "keyword");
    assert!(
        c["consent"]
            .get("sms")
            .is_none_or(|s| s["status"] != "opted_out")
    );

    // A forged inbound message creates nobody.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "messages": [{"from": "16505550199", "id": "wamid.FORGED", "timestamp": "1749416383",
            "type": "text", "text": {"body": "hi"}}]}}]}]})
    .to_string();
    let (status, _) = post_whatsapp(hook, &body, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(contact_by_phone(&app, &key, "+16505550199").await.is_none());
}

/// The sales number's id at Meta (the support channel has `whatsapp_channel`'s).
const SALES_NUMBER_ID: &str = "106540352242999";

/// Two WhatsApp channels made through the API: "Support WhatsApp" as `whatsapp_channel` has it,
/// and "Sales WhatsApp" on [`SALES_NUMBER_ID`] with `sales_app_secret`. Returns the API's
/// answers, support first.
async fn support_and_sales(app: &TestApp, key: &str, sales_app_secret: &str) -> (Value, Value) {
    let support = create_channel(
        app,
        key,
        whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
    )
    .await;
    let mut sales_body = whatsapp_channel("Sales WhatsApp", "http://127.0.0.1:9");
    sales_body["settings"]["phone_number_id"] = json!(SALES_NUMBER_ID);
    sales_body["settings"]["app_secret"] = json!(sales_app_secret);
    let sales = create_channel(app, key, sales_body).await;
    (support, sales)
}

/// One Meta app, one webhook URL, two numbers: each event goes to the channel of the number
/// in its `metadata.phone_number_id`, whichever channel's URL it arrived at.
async fn whatsapp_events_go_to_the_number_they_name(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let (support, sales) = support_and_sales(&app, &key, META_APP_SECRET).await;
    let hook = support["webhook_url"].as_str().expect("webhook url");
    let inbound = |number: &str, from: &str, wamid: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783999", "phone_number_id": number},
            "contacts": [{"profile": {"name": "Grace"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid,
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "type": "text", "text": {"body": "Hello sales"}}]}}]}]})
        .to_string()
    };

    // Written to the sales number, delivered to the support channel's URL.
    let body = inbound(SALES_NUMBER_ID, "16505550111", "wamid.ROUTED1");
    let (status, _) = post_whatsapp(hook, &body, Some(META_APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    let c = contact_by_phone(&app, &key, "+16505550111")
        .await
        .expect("the customer is recorded");
    let sales_id = sales["id"].as_str().unwrap();
    let support_id = support["id"].as_str().unwrap();
    assert!(
        channel_state(&c, sales_id)["window"]["open"] == true,
        "the sales number's window opened: {c}"
    );
    assert!(
        channel_state(&c, support_id)["window"]["open"] != true,
        "the support number's did not: {c}"
    );

    // A number no channel has: acknowledged, nothing recorded.
    let body = inbound("999999999999999", "16505550122", "wamid.ROUTED2");
    let (status, _) = post_whatsapp(hook, &body, Some(META_APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(contact_by_phone(&app, &key, "+16505550122").await.is_none());
}

/// Two channels of two Meta apps (two app secrets): a body signed with channel A's secret,
/// posted to A's URL but naming B's number, must not touch B (no contact, no window, no STOP).
/// When both channels belong to one Meta app (the same secret), it goes to B.
async fn whatsapp_events_go_only_to_channels_whose_secret_signed_them(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let (support, sales) = support_and_sales(&app, &key, "another-meta-apps-secret").await;
    let (support_id, sales_id) = (
        support["id"].as_str().unwrap(),
        sales["id"].as_str().unwrap(),
    );
    let hook = support["webhook_url"].as_str().expect("webhook url");
    // Ada is a customer already; a stranger is not.
    new_contact(&app, &key, ADA).await;
    let stranger = "+16505550144";
    let now = chrono::Utc::now().timestamp().to_string();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783999", "phone_number_id": SALES_NUMBER_ID},
        "contacts": [{"profile": {"name": "Eve"}, "wa_id": "16505550144"}],
        "messages": [
            {"from": ADA.trim_start_matches('+'), "id": "wamid.CROSS1", "timestamp": now,
             "type": "text", "text": {"body": "STOP"}},
            {"from": "16505550144", "id": "wamid.CROSS2", "timestamp": now,
             "type": "text", "text": {"body": "Hello sales"}}]}}]}]})
    .to_string();

    // Signed with the support channel's secret (it verifies at its URL), naming sales' number.
    let (status, _) = post_whatsapp(hook, &body, Some(META_APP_SECRET)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "acknowledged, so Meta does not retry"
    );
    assert!(
        contact_by_phone(&app, &key, stranger).await.is_none(),
        "no contact"
    );
    let ada = contact_by_phone(&app, &key, ADA).await.unwrap();
    for id in [sales_id, support_id] {
        assert_ne!(channel_state(&ada, id)["window"]["open"], true, "{ada}");
        assert_eq!(channel_state(&ada, id)["opted_out"], false, "{ada}");
    }
    assert!(
        ada["consent"]
            .get("whatsapp")
            .is_none_or(|c| c["status"] != "opted_out"),
        "{ada}"
    );
    let sales_channel = channel(&app, sales_id);
    assert_eq!(receipts(&app, sales_channel.id), 0);

    // The two numbers belong to one Meta app after all: the same secret. Now it goes to sales.
    let (status, json) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{sales_id}"),
        &key,
        Some(&json!({"settings": {"app_secret": META_APP_SECRET}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, _) = post_whatsapp(hook, &body, Some(META_APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    let eve = contact_by_phone(&app, &key, stranger)
        .await
        .expect("the stranger is recorded");
    assert_eq!(
        channel_state(&eve, sales_id)["window"]["open"],
        true,
        "{eve}"
    );
    let ada = contact_by_phone(&app, &key, ADA).await.unwrap();
    assert_eq!(channel_state(&ada, sales_id)["opted_out"], true, "{ada}");
    assert_ne!(channel_state(&ada, support_id)["window"]["open"], true);
}

/// A page served by another instance on the same PostgreSQL database sees an inbound message
/// the server under test received, through LISTEN/NOTIFY; its own events reach it once.
async fn another_instance_sees_a_webhook_live(app: TestApp) {
    use herald::dispatch::hub::{EventHub, HubEvent};
    let other = EventHub::new();
    let url = app.database_url.clone();
    let hub = other.clone();
    tokio::task::spawn_blocking(move || herald::dispatch::relay::start(&url, &hub))
        .await
        .unwrap()
        .expect("the relay starts");
    let mut rx = other.subscribe();

    let (_admin, key) = admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
    )
    .await;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "messages": [{"from": "16505550133", "id": "wamid.RELAYED",
            "timestamp": chrono::Utc::now().timestamp().to_string(),
            "type": "text", "text": {"body": "hi"}}]}}]}]})
    .to_string();
    let hook = created["webhook_url"].as_str().unwrap();
    let (status, _) = post_whatsapp(hook, &body, Some(META_APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    let contact = contact_by_phone(&app, &key, "+16505550133")
        .await
        .expect("the contact was recorded");
    let seen = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match rx.recv().await {
                Ok(HubEvent::Inbound { contact_id, .. }) => break contact_id,
                Ok(_) => continue,
                Err(e) => panic!("the hub closed: {e}"),
            }
        }
    })
    .await
    .expect("the inbound event crossed instances within two seconds");
    assert!(seen > 0);
    assert!(contact["id"].is_string());

    // What this instance publishes reaches its own pages once, not again through the database.
    let mut rx = other.subscribe();
    let mine = HubEvent::Template {
        template_id: 424242,
    };
    other.publish(mine.clone());
    assert_eq!(rx.recv().await.unwrap(), mine);
    tokio::time::sleep(Duration::from_millis(400)).await;
    while let Ok(event) = rx.try_recv() {
        assert_ne!(
            event, mine,
            "an instance's own event came back through the relay"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------------------------

/// Posts Twilio's form to `post_to`, signed over `signed_url` with `token`.
async fn post_twilio(
    post_to: &str,
    signed_url: &str,
    token: &str,
    params: &[(&str, &str)],
) -> (StatusCode, String) {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let res = reqwest::Client::new()
        .post(post_to)
        .header(
            "X-Twilio-Signature",
            twilio::sign(token, signed_url, &owned),
        )
        .form(&owned)
        .send()
        .await
        .expect("webhook");
    (res.status(), res.text().await.unwrap_or_default())
}

fn twilio_status(sid: &str, status: &str, error: Option<&str>) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("AccountSid", TWILIO_SID.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
        ("From", "+15005550006".to_owned()),
        ("MessageSid", sid.to_owned()),
        ("MessageStatus", status.to_owned()),
        ("SmsSid", sid.to_owned()),
        ("SmsStatus", status.to_owned()),
        ("To", "+12015550123".to_owned()),
    ];
    if let Some(code) = error {
        p.push(("ErrorCode", code.to_owned()));
    }
    p
}

fn borrowed<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn twilio_status_callbacks_inbound_messages_and_opt_outs(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let w = wired(
        &app,
        &key,
        twilio_channel("Shop SMS", "http://127.0.0.1:9"),
        TWILIO_TOKEN,
        vec![FakeStatus::Sent, FakeStatus::Delivered],
    )
    .await;
    let (id, hook, fake, ch) = (&w.id, &w.hook, &w.fake, &w.channel);
    let sam = "+12015550123";
    let contact = contact_id(&app, &new_contact(&app, &key, sam).await);

    // A send through the adapter names Herald's webhook as the status callback; Twilio's
    // signed callbacks (form-encoded) move the message forward.
    let (m1, _) = w
        .send(&app, contact, sam, |id| {
            text_message(id, sam, "Your order shipped.")
        })
        .await;
    let sent = fake.last_request().unwrap();
    assert_eq!(
        sent.path,
        format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    );
    assert_eq!(sent.form_value("To").as_deref(), Some(sam));
    assert_eq!(sent.form_value("From").as_deref(), Some("+15005550006"));
    assert_eq!(
        sent.form_value("StatusCallback").as_deref(),
        Some(hook.as_str())
    );
    wait_for_status(&app, m1, "delivered").await;
    assert_eq!(timeline(&app, m1), vec!["delivered"]);

    // Replays and forgeries.
    let (m2, _) = insert_message(
        &app,
        ch.id,
        contact,
        sam,
        "sent",
        Some("SM0000000000000000000000000000002"),
    );
    let delivered = twilio_status("SM0000000000000000000000000000002", "delivered", None);
    for _ in 0..2 {
        let (status, body) = post_twilio(hook, hook, TWILIO_TOKEN, &borrowed(&delivered)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("<Response></Response>"), "TwiML: {body}");
    }
    assert_eq!(timeline(&app, m2), vec!["delivered"]);
    let read_forged = twilio_status("SM0000000000000000000000000000002", "read", None);
    let before = receipts(&app, ch.id);
    let (status, _) = post_twilio(hook, hook, "not-the-token", &borrowed(&read_forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&app, m2).status, "delivered");
    assert_eq!(receipts(&app, ch.id), before);

    // 21610 (the recipient texted STOP to Twilio): failed, and Herald records the opt-out.
    let lea = "+12015550124";
    let lea_id = contact_id(&app, &new_contact(&app, &key, lea).await);
    let (m3, _) = insert_message(
        &app,
        ch.id,
        lea_id,
        lea,
        "sent",
        Some("SM0000000000000000000000000000003"),
    );
    let failed = twilio_status("SM0000000000000000000000000000003", "failed", Some("21610"));
    let (status, _) = post_twilio(hook, hook, TWILIO_TOKEN, &borrowed(&failed)).await;
    assert_eq!(status, StatusCode::OK);
    let m = message(&app, m3);
    assert_eq!(m.status, "failed");
    assert_eq!(m.error_code.as_deref(), Some("21610"));
    let c = contact_by_phone(&app, &key, lea).await.unwrap();
    assert_eq!(c["consent"]["sms"]["status"], "opted_out");
    assert_eq!(c["consent"]["sms"]["source"], "provider");
    assert_eq!(channel_state(&c, id)["opted_out"], true);

    // A callback for a sid Herald has not recorded is kept, not lost.
    let early_cb = twilio_status("SM0000000000000000000000000000009", "delivered", None);
    let (status, _) = post_twilio(hook, hook, TWILIO_TOKEN, &borrowed(&early_cb)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        early(&app, ch.id, "SM0000000000000000000000000000009"),
        vec!["delivered"]
    );

    // Inbound: a new number becomes a contact; STOP opts out of SMS.
    let new = "+12015550177";
    assert_eq!(
        fake.send_inbound(FakeProviderKind::Twilio, new, "Is the shop open on Sunday?")
            .await
            .unwrap(),
        200
    );
    let c = contact_by_phone(&app, &key, new)
        .await
        .expect("a new contact");
    assert!(
        channel_state(&c, id)["window"]["expires_at"].is_null(),
        "SMS has no window"
    );
    fake.send_inbound(FakeProviderKind::Twilio, new, "stop")
        .await
        .unwrap();
    let c = contact_by_phone(&app, &key, new).await.unwrap();
    assert_eq!(c["consent"]["sms"]["status"], "opted_out");
    assert_eq!(c["consent"]["sms"]["source"], "keyword");

    // A form body that is not a form cannot be verified: refused.
    let res = reqwest::Client::new()
        .post(hook.as_str())
        .header("X-Twilio-Signature", "x")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn twilio_signatures_are_checked_against_the_public_url(backend: Backend) {
    // Behind a proxy: Twilio calls https://herald.example.com/…, the proxy forwards to the
    // bound address. Twilio signed the public URL, so that is what Herald checks.
    let public = "https://herald.example.com";
    let app = TestApp::spawn_with(backend, |s| s.public_url = Some(public.into())).await;
    let (admin, key) = admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        twilio_channel("Shop SMS", "https://api.twilio.com"),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let signed_url = format!("{public}/webhooks/twilio/{id}");
    assert_eq!(created["webhook_url"], signed_url.as_str());
    let local = format!("{}/webhooks/twilio/{id}", app.address);
    let inbound = |sid: &'static str, from: &'static str| {
        [
            ("AccountSid", TWILIO_SID),
            ("Body", "Hello from behind the proxy"),
            ("From", from),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("To", "+15005550006"),
        ]
    };

    // Signed over the address Herald listens on (not what Twilio called): refused.
    let (status, _) = post_twilio(
        &local,
        &local,
        TWILIO_TOKEN,
        &inbound("SM01", "+12015550150"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(contact_by_phone(&app, &key, "+12015550150").await.is_none());

    // Signed over HERALD_PUBLIC_URL, as Twilio does: applied.
    let (status, body) = post_twilio(
        &local,
        &signed_url,
        TWILIO_TOKEN,
        &inbound("SM02", "+12015550151"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(contact_by_phone(&app, &key, "+12015550151").await.is_some());

    // The channel page says which URL signatures are checked against.
    let page = admin.get_html(&format!("/settings/channels/{id}")).await;
    assert!(page.contains(&format!(
        "<code>{public}</code> (<code>HERALD_PUBLIC_URL</code>)"
    )));
    assert!(!page.contains("Providers only call public"));
}

// ---------------------------------------------------------------------------------------------
// Infobip (Viber)
// ---------------------------------------------------------------------------------------------

async fn infobip_reports_and_inbound_messages_carry_the_shared_secret(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let w = wired(
        &app,
        &key,
        infobip_channel("Viber promos", "http://127.0.0.1:9"),
        INFOBIP_SECRET,
        vec![FakeStatus::Delivered, FakeStatus::Read],
    )
    .await;
    let (id, hook, fake, ch) = (&w.id, &w.hook, &w.fake, &w.channel);
    let ada = "+441134960001";
    let contact = contact_id(&app, &new_contact(&app, &key, ada).await);

    // The send gives Infobip report URLs carrying the secret; delivery then seen reports come
    // back and name Herald's own message id.
    let (m1, receipt) = w
        .send(&app, contact, ada, |id| {
            text_message(id, ada, "Your order shipped.")
        })
        .await;
    let public_id = message(&app, m1).public_id;
    assert_eq!(receipt.provider_message_id, public_id);
    let sent = fake.last_request().unwrap().json().unwrap();
    let delivery_url = sent["messages"][0]["webhooks"]["delivery"]["url"]
        .as_str()
        .unwrap();
    assert!(
        delivery_url.starts_with(&format!("{hook}?secret=")),
        "{delivery_url}"
    );
    wait_for_status(&app, m1, "read").await;
    assert_eq!(timeline(&app, m1), vec!["delivered", "read"]);

    // Without the secret, or with another one: refused, nothing stored.
    let (m2, _) = insert_message(&app, ch.id, contact, ada, "sent", Some("ib-two"));
    let seen =
        json!({"results": [{"messageId": "ib-two", "from": "HeraldShop", "to": "441134960001",
        "sentAt": "2026-11-25T16:00:00.000+0000", "seenAt": "2026-11-25T16:01:00.000+0000"}]})
        .to_string();
    let post = |url: String, header: Option<&'static str>| {
        let seen = seen.clone();
        async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .body(seen);
            if let Some(h) = header {
                req = req.header(infobip_viber::SECRET_HEADER, h);
            }
            req.send().await.unwrap().status()
        }
    };
    let before = receipts(&app, ch.id);
    assert_eq!(post(hook.clone(), None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(hook.clone(), Some("another-secret-entirely")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(format!("{hook}?secret=nope"), None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(message(&app, m2).status, "sent");
    assert_eq!(receipts(&app, ch.id), before);

    // The secret in the query (as in the report URLs) or in the header: the seen report applies.
    let q = serde_urlencoded::to_string([("secret", INFOBIP_SECRET)]).unwrap();
    assert_eq!(post(format!("{hook}?{q}"), None).await, StatusCode::OK);
    assert_eq!(message(&app, m2).status, "read");
    assert_eq!(
        post(hook.clone(), Some(INFOBIP_SECRET)).await,
        StatusCode::OK,
        "a replay"
    );
    assert_eq!(timeline(&app, m2), vec!["read"]);

    // A customer writes on Viber: a contact, and the session window opens.
    let new = "+441134960077";
    assert_eq!(
        fake.send_inbound(
            FakeProviderKind::Infobip,
            new,
            "Hi, is my parcel on its way?"
        )
        .await
        .unwrap(),
        200
    );
    let c = contact_by_phone(&app, &key, new)
        .await
        .expect("a new contact");
    assert_eq!(channel_state(&c, id)["window"]["open"], true);

    // The page reminds where the secret goes, and never shows it.
    let page = admin.get_html(&format!("/settings/channels/{id}")).await;
    assert!(page.contains("?secret="));
    assert!(!page.contains(INFOBIP_SECRET));
}

// ---------------------------------------------------------------------------------------------
// The sandbox
// ---------------------------------------------------------------------------------------------

async fn the_sandbox_works_with_no_configuration(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;

    // The three sandbox channels exist on the first start.
    let (_, list) = get_json(&app, &key, "/api/v1/channels").await;
    let sandboxes: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["provider"] == "sandbox")
        .collect();
    let kinds: Vec<&str> = sandboxes
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3);
    for kind in ["whatsapp", "sms", "viber"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    let wa = sandboxes.iter().find(|c| c["kind"] == "whatsapp").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Short delays, through the channel's settings.
    let (status, json) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{wa}"),
        &key,
        Some(&json!({"settings": {"delivered_after_ms": 100, "read_after_ms": 400}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");

    // The sandbox's reports arrive as Herald's do: through dispatch::sandbox, applied like
    // webhooks.
    let (registry, rx) = registry(&app, &app.address);
    let db = herald::storage::Db::connect(&app.database_url, 2).expect("pool");
    let hub = herald::dispatch::hub::EventHub::new();
    let mut live = hub.subscribe();
    let reports = tokio::spawn(herald::dispatch::sandbox::run(db, hub, rx));
    let ch = channel(&app, &wa);
    let contact_public = new_contact(&app, &key, ADA).await;
    let (m1, public_id) = insert_message(
        &app,
        ch.id,
        contact_id(&app, &contact_public),
        ADA,
        "sending",
        None,
    );
    let receipt = adapter(&registry, &ch)
        .send(&template_message(&public_id, ADA))
        .await
        .expect("the sandbox takes every send");
    assert_eq!(receipt.provider_status.as_deref(), Some("accepted"));
    record_sent(&app, &ch, m1, &receipt.provider_message_id);
    let delivered = wait_for_status(&app, m1, "delivered").await;
    assert!(delivered.read_at.is_none());
    let read = wait_for_status(&app, m1, "read").await;
    assert!(read.read_at >= read.delivered_at);
    assert_eq!(timeline(&app, m1), vec!["delivered", "read"]);
    let first = tokio::time::timeout(Duration::from_secs(1), live.recv())
        .await
        .expect("the hub heard")
        .expect("an event");
    assert!(
        matches!(&first, herald::dispatch::hub::HubEvent::MessageStatus { message_id, status, .. }
            if *message_id == public_id && status == "delivered"),
        "{first:?}"
    );
    reports.abort();

    // "Simulate a customer reply" on the contact page opens the window.
    let res = admin
        .post_form(
            &format!("/contacts/{contact_public}/simulate-reply"),
            &[("channel", &wa), ("text", "Thanks, got it!")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html(&location(&res)).await;
    assert!(page.contains("The 24-hour window is open."));
    let c = contact_by_phone(&app, &key, ADA).await.unwrap();
    assert_eq!(channel_state(&c, &wa)["window"]["open"], true);

    // The sandbox's page needs no webhook, and its test connection needs no account.
    let page = admin.get_html(&format!("/settings/channels/{wa}")).await;
    assert!(page.contains("None needed: the sandbox"));
    assert!(page.contains("value=\"100\"") && page.contains("value=\"400\""));
}

// ---------------------------------------------------------------------------------------------
// Provider answers
// ---------------------------------------------------------------------------------------------

/// A 500 with an error body may come after the provider acted, so the message is `unknown`
/// (never resent by itself); but the provider did answer, and what it said is kept.
async fn a_providers_error_answer_is_kept_with_the_unknown_status(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.run_worker = true).await;
    let (_admin, key) = admin_and_key(&app).await;
    let cases = [
        (
            whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
            META_APP_SECRET,
            FakeProviderKind::Whatsapp,
            ADA,
            json!({"error": {"message": "An unknown error has occurred.", "type": "OAuthException",
                "code": 1, "fbtrace_id": "AfakeTrace"}}),
            "1: An unknown error has occurred.",
        ),
        (
            twilio_channel("Shop SMS", "http://127.0.0.1:9"),
            TWILIO_TOKEN,
            FakeProviderKind::Twilio,
            "+12015550123",
            json!({"code": 20500, "message": "Internal Server Error",
                "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}),
            "20500: Internal Server Error",
        ),
        (
            infobip_channel("Viber promos", "http://127.0.0.1:9"),
            INFOBIP_SECRET,
            FakeProviderKind::Infobip,
            "+441134960001",
            json!({"errorCode": "E500", "description": "Something went wrong.",
                "action": "Contact the support.", "violations": [], "resources": []}),
            "E500: Something went wrong.",
        ),
    ];
    for (body, secret, kind, to, answer, words) in cases {
        let w = wired(&app, &key, body, secret, Vec::new()).await;
        // The customer writes first, so free text may go (the WhatsApp and Viber windows).
        assert_eq!(w.fake.send_inbound(kind, to, "Hello?").await.unwrap(), 200);
        w.fake
            .script(herald::testkit::fake_provider::Scripted::json(500, answer));
        let (status, sent) = api(
            &app,
            Method::POST,
            "/api/v1/messages",
            &key,
            Some(&json!({"to": to, "channel": w.id, "text": "Your order shipped."})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        let path = format!("/api/v1/messages/{}", sent["id"].as_str().unwrap());
        let mut m = Value::Null;
        for _ in 0..200 {
            m = get_json(&app, &key, &path).await.1;
            if !matches!(m["status"].as_str(), Some("queued" | "sending")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(m["status"], "unknown", "{kind:?}: {m}");
        assert_eq!(
            w.fake.stats().scripted,
            1,
            "{kind:?}: the send reached the fake"
        );
        let said = m["error"]["message"].as_str().unwrap_or_default();
        assert!(
            said.starts_with("The provider answered HTTP 500") && said.contains(words),
            "{kind:?}: {said}"
        );
        assert!(!said.contains("No answer"), "{kind:?}: {said}");
    }
}

/// The bodies of the inbound messages stored for a contact, oldest first.
fn inbound_bodies(app: &TestApp, contact_public_id: &str) -> Vec<String> {
    use diesel::prelude::*;
    use herald::storage::schema::inbound_messages;
    let contact = contact_id(app, contact_public_id);
    inbound_messages::table
        .filter(inbound_messages::contact_id.eq(contact))
        .order(inbound_messages::id)
        .select(inbound_messages::body)
        .load(&mut *app.db())
        .expect("inbound messages")
}

/// A NUL byte in a signed webhook (PostgreSQL's text cannot hold it) is stripped and the event
/// kept; display names lose control characters and direction overrides; inbound text longer
/// than any provider sends is cut with a note. For the three providers and the sandbox.
async fn provider_text_is_kept_without_nul_or_controls_and_bounded(app: TestApp) {
    use herald::channels::clean::{MAX_INBOUND_TEXT_CHARS, truncation_note};
    let (_admin, key) = admin_and_key(&app).await;
    let spoofing = "Eve\u{202E}gnp.exe\u{0}\u{7}\u{2066}";
    let long = format!("{}{}", "a".repeat(MAX_INBOUND_TEXT_CHARS), "b".repeat(100));
    let cases = [
        (
            whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
            META_APP_SECRET,
            FakeProviderKind::Whatsapp,
            "+16505550161",
            Some(spoofing),
        ),
        (
            twilio_channel("Shop SMS", "http://127.0.0.1:9"),
            TWILIO_TOKEN,
            FakeProviderKind::Twilio,
            "+12015550162",
            Some(spoofing),
        ),
        (
            infobip_channel("Viber promos", "http://127.0.0.1:9"),
            INFOBIP_SECRET,
            FakeProviderKind::Infobip,
            "+441134960063",
            None,
        ),
    ];
    for (body, secret, kind, from, name) in cases {
        let w = wired(&app, &key, body, secret, Vec::new()).await;
        let status = w
            .fake
            .send_inbound_named(kind, from, name, "Hello\u{0} there")
            .await
            .unwrap();
        assert_eq!(status, 200, "{kind:?}");
        let c = contact_by_phone(&app, &key, from)
            .await
            .unwrap_or_else(|| panic!("{kind:?}: the message was kept"));
        if name.is_some() {
            assert_eq!(c["name"], "Evegnp.exe", "{kind:?}: {c}");
        }
        let status = w
            .fake
            .send_inbound_named(kind, from, name, &long)
            .await
            .unwrap();
        assert_eq!(status, 200, "{kind:?}");
        let public_id = c["id"].as_str().unwrap();
        assert_eq!(
            inbound_bodies(&app, public_id),
            vec![
                "Hello there".to_owned(),
                format!(
                    "{}{}",
                    "a".repeat(MAX_INBOUND_TEXT_CHARS),
                    truncation_note(MAX_INBOUND_TEXT_CHARS + 100)
                )
            ],
            "{kind:?}"
        );
    }

    // The sandbox's events (simulated replies) are cleaned the same way.
    let (_, list) = get_json(&app, &key, "/api/v1/channels").await;
    let sandbox = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "sandbox" && c["kind"] == "whatsapp")
        .expect("the sandbox WhatsApp channel")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = herald::storage::Db::connect(&app.database_url, 2).expect("pool");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let reports = tokio::spawn(herald::dispatch::sandbox::run(
        db,
        herald::dispatch::hub::EventHub::new(),
        rx,
    ));
    let from = "+16505550164";
    let event = herald::channels::ProviderEvent::Inbound(herald::channels::InboundEvent {
        event_id: "sandbox:in:\u{0}nul".into(),
        from: herald::channels::Address::parse(from),
        text: "STOP\u{0}".into(),
        received_at: chrono::Utc::now(),
        provider_message_id: "sandbox-\u{0}1".into(),
        profile_name: Some(spoofing.into()),
        account: None,
    });
    tx.send((sandbox.clone(), event)).await.unwrap();
    let mut c = None;
    for _ in 0..100 {
        c = contact_by_phone(&app, &key, from).await;
        if c.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = c.expect("the sandbox's reply was kept");
    assert_eq!(c["name"], "Evegnp.exe");
    assert_eq!(
        inbound_bodies(&app, c["id"].as_str().unwrap()),
        vec!["STOP"]
    );
    assert_eq!(c["consent"]["whatsapp"]["status"], "opted_out", "{c}");
    reports.abort();
}

// ---------------------------------------------------------------------------------------------
// Slow and oversized bodies
// ---------------------------------------------------------------------------------------------

/// A connection to the server under test, speaking HTTP/1.1 by hand.
async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.address.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Reads up to the end of a response head; `None` when the server did not answer within
/// `wait` (the read stops there: this is not a measure of speed).
async fn response_head(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned())
}

/// Sends a request head announcing a body of `length` bytes, then trickles the body a byte
/// every 200 ms (for at most 20 s) while reading the answer: returns the whole answer once the
/// server closes the connection, or `None` if it never does.
async fn trickle(app: &TestApp, head: &str, length: usize) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = connect(app).await;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(format!("{head}Content-Length: {length}\r\n\r\n").as_bytes())
        .await
        .expect("head");
    let writing = tokio::spawn(async move {
        for _ in 0..100.min(length.saturating_sub(1)) {
            if writer.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer))
        .await
        .is_ok();
    writing.abort();
    closed.then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// Webhooks for no channel are answered 404 before their body (which may never come) is read;
/// bodies over 1 MiB get 413; a body that trickles in slower than the limit is cut off with 408
/// and the connection closed, on webhooks and on every other route (forms, the API).
async fn slow_and_oversized_bodies_are_bounded(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(backend, |s| {
        s.body_timeout = Duration::from_secs(1);
        s.body_min_rate = 500;
    })
    .await;
    let (_admin, key) = admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
    )
    .await;
    let hook = created["webhook_url"].as_str().unwrap();
    let hook_path = hook.trim_start_matches(&app.address).to_owned();

    // No such channel (or another provider's): 404, although the body never comes. The body
    // limit is 1 s, so an answer within 10 s with no body sent can only be the 404.
    for path in [
        "/webhooks/whatsapp/no-such-channel".to_owned(),
        hook_path.replace("/whatsapp/", "/twilio/"),
        "/webhooks/nope/bogus".to_owned(),
    ] {
        let mut stream = connect(&app).await;
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let head = response_head(&mut stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer"));
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }

    // Over 1 MiB: 413, whether announced or streamed (chunked).
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST {hook_path} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                (1 << 20) + 1
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = response_head(&mut stream, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST {hook_path} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    for _ in 0..20 {
        // The server may stop reading (and answer) before all of it is written.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let head = response_head(&mut stream, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // A trickle: cut off with 408, and the connection closed.
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let json_type = "Content-Type: application/json\r\n";
    let bearer = format!("Authorization: Bearer {key}\r\n");
    for head in [
        format!("POST {hook_path} HTTP/1.1\r\nHost: herald\r\n{json_type}"),
        format!("POST /login HTTP/1.1\r\nHost: herald\r\n{form}"),
        format!("POST /api/v1/contacts HTTP/1.1\r\nHost: herald\r\n{json_type}{bearer}"),
    ] {
        let answer = trickle(&app, &head, 1000)
            .await
            .unwrap_or_else(|| panic!("the connection stayed open: {head}"));
        assert!(answer.starts_with("HTTP/1.1 408"), "{head}: {answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }

    // A whole, well-formed webhook still goes through.
    let (status, _) = post_whatsapp(
        hook,
        &wa_status("wamid.AFTER", "delivered", chrono::Utc::now().timestamp()),
        Some(META_APP_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
