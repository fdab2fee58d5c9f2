use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::channels::test_support::*;
use crate::channels::{ErrorClass, PlaceholderExample, TemplateCategory};
use crate::domain::content::ParameterFormat;

fn sandbox(kind: ChannelKind) -> (SandboxAdapter, mpsc::Receiver<(String, ProviderEvent)>) {
    let (tx, rx) = mpsc::channel(16);
    let adapter = SandboxAdapter::new(kind, "ch-sandbox".into(), SandboxSettings::default(), tx);
    (adapter, rx)
}

async fn next(rx: &mut mpsc::Receiver<(String, ProviderEvent)>) -> ProviderEvent {
    let (channel, event) = rx.recv().await.expect("an event");
    assert_eq!(channel, "ch-sandbox");
    event
}

#[tokio::test(start_paused = true)]
async fn sends_are_delivered_then_read_on_time() {
    let (adapter, mut rx) = sandbox(ChannelKind::Whatsapp);
    let start = Instant::now();
    let receipt = adapter.send(&positional_template()).await.unwrap();
    assert!(receipt.provider_message_id.starts_with("sandbox-"));

    let ProviderEvent::Status(delivered) = next(&mut rx).await else {
        panic!("a status")
    };
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.provider_message_id, receipt.provider_message_id);
    assert_eq!(
        delivered.event_id,
        format!("sandbox:{}:delivered", receipt.provider_message_id)
    );

    let ProviderEvent::Status(read) = next(&mut rx).await else {
        panic!("a status")
    };
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(read.status, DeliveryStatus::Read);
    assert_eq!(read.provider_message_id, receipt.provider_message_id);
    // Nothing more comes.
    drop(adapter);
    assert!(rx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn templates_are_approved_after_the_configured_delay() {
    let (tx, mut rx) = mpsc::channel(4);
    let settings = SandboxSettings::from_json(&json!({"approve_after_ms": 500})).unwrap();
    let adapter = SandboxAdapter::new(ChannelKind::Viber, "ch-sandbox".into(), settings, tx);
    let t = TemplateSubmission {
        name: "otp".into(),
        language: "en".into(),
        category: TemplateCategory::Otp,
        parameter_format: ParameterFormat::Named,
        header_text: None,
        body_text: "Your code is {{pin}}. Do not share it.".into(),
        footer_text: None,
        buttons: vec![],
        header_examples: vec![],
        body_examples: vec![PlaceholderExample {
            placeholder: "pin".into(),
            value: "123456".into(),
        }],
        replaces: None,
        authentication: None,
    };
    let start = Instant::now();
    let submitted = adapter.submit_template(&t).await.unwrap();
    assert_eq!(submitted.status, ProviderTemplateStatus::Pending);
    let by_id = TemplateRef::ProviderId(submitted.provider_template_id.clone());
    assert_eq!(
        adapter.template_status(&by_id).await.unwrap().status,
        ProviderTemplateStatus::Pending
    );
    let ProviderEvent::TemplateStatus(approved) = next(&mut rx).await else {
        panic!("a template status")
    };
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(
        approved.provider_template_id,
        submitted.provider_template_id
    );
    assert_eq!(approved.status, ProviderTemplateStatus::Approved);
    assert_eq!(approved.name.as_deref(), Some("otp"));
    assert_eq!(
        adapter.template_status(&by_id).await.unwrap().status,
        ProviderTemplateStatus::Approved
    );

    // Checked like the real provider: every placeholder needs an example.
    let mut bad = t.clone();
    bad.body_examples.clear();
    assert_eq!(
        adapter.submit_template(&bad).await.unwrap_err().class,
        ErrorClass::TemplateProblem
    );
}

#[tokio::test]
async fn an_sms_sandbox_has_no_provider_templates_like_twilio() {
    let (adapter, _rx) = sandbox(ChannelKind::Sms);
    let e = adapter
        .template_status(&TemplateRef::ProviderId("x".into()))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Unsupported);
}

#[tokio::test]
async fn simulated_replies_are_inbound_events() {
    let (adapter, mut rx) = sandbox(ChannelKind::Whatsapp);
    let returned = adapter
        .simulate_reply(phone("+16505551234"), "Is it in blue?")
        .await
        .unwrap();
    let ProviderEvent::Inbound(e) = next(&mut rx).await else {
        panic!("inbound")
    };
    assert_eq!(returned, ProviderEvent::Inbound(e.clone()));
    assert_eq!(e.from, Address::Phone(phone("+16505551234")));
    assert_eq!(e.text, "Is it in blue?");
    assert!(e.event_id.starts_with("sandbox:in:"));
    drop(rx);
    assert_eq!(
        adapter.simulate_reply(phone("+16505551234"), "x").await,
        Err(SinkClosed)
    );
}

#[tokio::test]
async fn the_sandbox_is_offline_and_takes_no_webhooks() {
    let (adapter, _rx) = sandbox(ChannelKind::Whatsapp);
    assert!(adapter.test_connection().await.is_ok());
    assert!(matches!(
        adapter.parse_webhook(&WebhookRequest::new("POST", "https://h/x")),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn timing_settings_are_validated() {
    assert_eq!(
        SandboxSettings::from_json(&json!({})).unwrap(),
        SandboxSettings::default()
    );
    let e = SandboxSettings::from_json(
        &json!({"delivered_after_ms": "soon", "read_after_ms": 10, "approve_after_ms": 99999999}),
    )
    .unwrap_err();
    assert!(
        e.get("delivered_after_ms")
            .unwrap()
            .contains("milliseconds")
    );
    assert!(e.get("approve_after_ms").is_some());
    let e = SandboxSettings::from_json(&json!({"delivered_after_ms": 50, "read_after_ms": 10}))
        .unwrap_err();
    assert!(
        e.get("read_after_ms")
            .unwrap()
            .contains("after it is delivered")
    );
}
