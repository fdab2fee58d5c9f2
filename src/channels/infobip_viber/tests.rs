use std::time::Duration;

use serde_json::json;

use super::*;
use crate::channels::test_support::*;
use crate::channels::{PlaceholderExample, TemplateButton};
use crate::domain::content::ParameterFormat;
use crate::testkit::fake_provider::Scripted;

const SECRET: &str = "a-long-webhook-secret/+=";
const WEBHOOK: &str = "https://herald.example/webhooks/infobip/ch-viber";
/// The report URL Herald gives Infobip: the webhook path with the secret, form-encoded.
const REPORT_URL: &str =
    "https://herald.example/webhooks/infobip/ch-viber?secret=a-long-webhook-secret%2F%2B%3D";

fn adapter(base_url: &str) -> InfobipViberAdapter {
    let settings = InfobipViberSettings::from_json(
        &json!({"base_url": base_url, "sender": "HeraldShop"}),
        &json!({"api_key": "ib-key", "webhook_secret": SECRET}),
    )
    .expect("valid settings");
    InfobipViberAdapter::new(settings, client(), WEBHOOK.into())
}

#[tokio::test]
async fn text_sends_carry_our_id_digits_only_and_the_report_urls() {
    let fake = fake().await;
    let receipt = adapter(&fake.base_url)
        .send(&text("+441134960001", "Your order shipped"))
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "msg-0001");
    assert_eq!(receipt.provider_status.as_deref(), Some("PENDING_ACCEPTED"));
    let request = fake.last_request().unwrap();
    assert_eq!(request.path, "/viber/2/messages");
    assert_eq!(request.header("authorization"), Some("App ib-key"));
    assert_eq!(
        request.json().unwrap(),
        json!({"messages": [{
            "sender": "HeraldShop",
            "destinations": [{"to": "441134960001", "messageId": "msg-0001"}],
            "content": {"type": "TEXT", "text": "Your order shipped"},
            "webhooks": {
                "delivery": {"url": REPORT_URL},
                "seen": {"url": REPORT_URL},
                "contentType": "application/json",
                "callbackData": "msg-0001",
            },
        }]})
    );
    // The report URL verifies as Infobip will call it.
    let a = adapter(&fake.base_url);
    assert_eq!(a.report_url(), REPORT_URL);
    let report = WebhookRequest::new("POST", REPORT_URL).with_body(r#"{"results": []}"#);
    assert_eq!(a.parse_webhook(&report), Ok(WebhookOutcome::Events(vec![])));
}

#[tokio::test]
async fn template_sends_name_the_template_and_its_parameters() {
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    a.send(&named_template()).await.unwrap();
    let body = fake.last_request().unwrap().json().unwrap();
    assert_eq!(
        body["messages"][0]["content"],
        json!({"type": "TEMPLATE", "templateId": "tpl-43", "language": "en_US",
               "parameters": {"first_name": "Jessica", "order_number": "SKBUP2-4CPIG9"}})
    );
    a.send(&positional_template()).await.unwrap();
    let body = fake.last_request().unwrap().json().unwrap();
    assert_eq!(
        body["messages"][0]["content"]["parameters"],
        json!({"1": "Order 1234", "2": "Jessica", "3": "SKBUP2-4CPIG9"})
    );

    let mut no_id = named_template();
    if let MessageContent::Template(t) = &mut no_id.content {
        t.provider_template_id = None;
    }
    let requests = fake.stats().requests;
    let e = a.send(&no_id).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::TemplateProblem);
    assert_eq!(e.code.as_deref(), Some("missing_template_id"));
    assert_eq!(fake.stats().requests, requests, "nothing was sent");
}

#[tokio::test]
async fn a_destination_rejected_in_a_200_is_a_refusal() {
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    for (name, class) in [
        (
            "REJECTED_DESTINATION_NOT_REGISTERED",
            ErrorClass::InvalidRecipient,
        ),
        ("REJECTED_NOT_ENOUGH_CREDITS", ErrorClass::Permanent),
        ("REJECTED_DND", ErrorClass::OptedOut),
    ] {
        fake.script(Scripted::json(
            200,
            json!({"bulkId": "b", "messages": [{"messageId": "msg-0001", "destination": "441134960001",
                "status": {"groupId": 5, "groupName": "REJECTED", "id": 52, "name": name,
                           "description": "Destination not registered"}}]}),
        ));
        let e = a.send(&text("+441134960001", "hi")).await.unwrap_err();
        assert_eq!((e.class, e.code.as_deref()), (class, Some(name)));
        assert_eq!(e.message, "Destination not registered");
    }
}

#[tokio::test]
async fn api_errors_are_classified_with_infobips_words() {
    let api_error = |code: &str, description: &str| {
        json!({"errorCode": code, "description": description, "action": "Check the request.",
               "violations": [{"property": "messages[0].sender", "violation": "must not be blank"}],
               "resources": []})
    };
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    for (status, code, class) in [
        (400, "E400", ErrorClass::Permanent),
        (401, "E401", ErrorClass::Permanent),
        (403, "E403", ErrorClass::Permanent),
        (429, "E429", ErrorClass::RateLimited),
        (500, "E500", ErrorClass::Ambiguous),
        (503, "E503", ErrorClass::Retryable),
    ] {
        fake.script(
            Scripted::json(status, api_error(code, "Request cannot be processed."))
                .with_header("Retry-After", "5"),
        );
        let e = a.send(&text("+441134960001", "hi")).await.unwrap_err();
        assert_eq!((e.class, e.code.as_deref()), (class, Some(code)));
        assert_eq!(e.message, "Request cannot be processed.");
        assert_eq!(
            e.details.as_deref(),
            Some("messages[0].sender: must not be blank; Check the request.")
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
    }
    // The older envelope some Infobip endpoints still use.
    fake.script(Scripted::json(
        400,
        json!({"requestError": {"serviceException": {"messageId": "BAD_REQUEST", "text": "Bad request"}}}),
    ));
    let e = a.send(&text("+441134960001", "hi")).await.unwrap_err();
    assert_eq!(
        (e.code.as_deref(), e.message.as_str()),
        (Some("BAD_REQUEST"), "Bad request")
    );
    fake.script(Scripted::Hang);
    let e = a.send(&text("+441134960001", "hi")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous);
    let e = adapter(&refused_url())
        .send(&text("+441134960001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Retryable);
}

fn booking() -> TemplateSubmission {
    TemplateSubmission {
        name: "booking_confirmation".into(),
        language: "en".into(),
        category: TemplateCategory::Transactional,
        parameter_format: ParameterFormat::Named,
        header_text: None,
        body_text: "Booking confirmation #{{bookingNumber}} for {{customerName}}. Come join us!"
            .into(),
        footer_text: None,
        buttons: vec![],
        header_examples: vec![],
        body_examples: vec![
            PlaceholderExample {
                placeholder: "customerName".into(),
                value: "Luke".into(),
            },
            PlaceholderExample {
                placeholder: "bookingNumber".into(),
                value: "K999".into(),
            },
        ],
        replaces: None,
        authentication: None,
    }
}

#[tokio::test]
async fn templates_are_submitted_per_sender_and_their_status_fetched() {
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    let submitted = a.submit_template(&booking()).await.unwrap();
    assert_eq!(submitted.status, ProviderTemplateStatus::Pending);
    let request = fake.last_request().unwrap();
    assert_eq!(request.path, "/viber/1/senders/HeraldShop/templates");
    assert_eq!(request.header("authorization"), Some("App ib-key"));
    // The spec's "Transactional template" example.
    assert_eq!(
        request.json().unwrap(),
        json!({"category": "TRANSACTIONAL",
               "body": [{"language": "en",
                         "template": "Booking confirmation #{{bookingNumber}} for {{customerName}}. Come join us!"}],
               "params": [{"type": "TEXT", "name": "bookingNumber", "example": "K999"},
                          {"type": "TEXT", "name": "customerName", "example": "Luke"}]})
    );
    let status = a
        .template_status(&TemplateRef::ProviderId(
            submitted.provider_template_id.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(status.status, ProviderTemplateStatus::Approved);
    assert_eq!(
        status.provider_template_id.as_deref(),
        Some(submitted.provider_template_id.as_str())
    );
    assert_eq!(
        fake.last_request().unwrap().path,
        format!(
            "/viber/1/senders/HeraldShop/templates/{}",
            submitted.provider_template_id
        )
    );
    fake.script(Scripted::json(
        200,
        json!({"templateId": "t", "status": "DECLINED"}),
    ));
    let declined = a
        .template_status(&TemplateRef::ProviderId("t".into()))
        .await
        .unwrap();
    assert_eq!(
        declined.status,
        ProviderTemplateStatus::Rejected { reason: None }
    );
    assert!(declined.is_about("t", "any_name", "en"));
    assert!(!declined.is_about("u", "any_name", "en"));
    let e = a
        .template_status(&TemplateRef::NameLanguage {
            name: "x".into(),
            language: "en".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Unsupported);
}

#[test]
fn what_viber_templates_cannot_hold_is_refused_not_dropped() {
    let mut marketing = booking();
    marketing.category = TemplateCategory::Marketing;
    assert_eq!(
        template_body(&marketing).unwrap_err().class,
        ErrorClass::Unsupported
    );
    let mut with_button = booking();
    with_button.buttons.push(TemplateButton::QuickReply {
        text: "Stop".into(),
    });
    assert_eq!(
        template_body(&with_button).unwrap_err().code.as_deref(),
        Some("unsupported_component")
    );
    let mut otp = booking();
    otp.category = TemplateCategory::Authentication;
    assert_eq!(template_body(&otp).unwrap()["category"], "OTP");
    let mut missing = booking();
    missing.body_examples.pop();
    assert_eq!(
        template_body(&missing).unwrap_err().code.as_deref(),
        Some("missing_example")
    );
}

// --- Webhooks --------------------------------------------------------------------------------

fn with_secret(body: &str) -> WebhookRequest {
    WebhookRequest::new("POST", REPORT_URL)
        .with_header("Content-Type", "application/json")
        .with_body(body)
}

fn events(request: &WebhookRequest) -> Vec<ProviderEvent> {
    match adapter("https://api.infobip.com").parse_webhook(request) {
        Ok(WebhookOutcome::Events(events)) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

/// The spec's "Delivery report" example.
const DELIVERED: &str = r#"{"results":[{"bulkId":"a28dd97c-2222-4fcf-99f1-0b557ed381da","price":{"pricePerMessage":0.15,"currency":"EUR"},"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET","description":"Message delivered to handset"},"error":{"groupId":0,"groupName":"OK","id":0,"name":"NO_ERROR","description":"No Error","permanent":false},"messageId":"2250be2d4219-3af1-78856-aabe-1362af1edfd2","to":"441134960001","sender":"441134960000","sentAt":"2023-02-01T23:00:00.000+0000","doneAt":"2023-02-03T00:01:01.000+0000","messageCount":1,"mccMnc":"22801","callbackData":"Callback data","platform":{"entityId":"promotional-traffic-entity","applicationId":"marketing-automation-application"}}]}"#;

/// The spec's "Seen report" example.
const SEEN: &str = r#"{"results":[{"messageId":"1215f543ab19-345f-adbd-12ad31451ed25f35","from":"385919998888","to":"41793026731","sentAt":"2023-04-05T11:21:57.793+0000","seenAt":"2023-04-05T11:22:10.251+0000","applicationId":"example-application-id","entityId":"example-entity-id","campaignReferenceId":"campaignRefId"}]}"#;

/// The spec's inbound TEXT and FILE examples, in one batch.
const INBOUND: &str = r#"{"results":[{"sender":"385912345678","to":"givenClient","integrationType":"VIBER","receivedAt":"2020-04-01T11:02:43.594+0000","messageId":"1234567890123456789","message":{"text":"givenText","trackingData":"givenTrackingData","type":"TEXT"},"price":{"pricePerMessage":0.15,"currency":"EUR"}},{"sender":"385912345678","to":"givenClient","integrationType":"VIBER","receivedAt":"2020-04-01T11:02:43.594+0000","messageId":"1234567890123456790","message":{"url":"https://example.com/givenUrl.pdf","fileName":"givenFileName","trackingData":"givenTrackingData","type":"FILE"},"price":{"pricePerMessage":0.15,"currency":"EUR"}}],"messageCount":2,"pendingMessageCount":0}"#;

fn report(group: &str, name: &str, error: serde_json::Value) -> String {
    json!({"results": [{"messageId": "msg-0001", "to": "441134960001",
        "status": {"groupName": group, "name": name, "description": format!("{name} happened")},
        "error": error, "doneAt": "2025-07-01T10:00:00.000+0000"}]})
    .to_string()
}

#[test]
fn delivery_reports_become_status_events() {
    let [ProviderEvent::Status(delivered)] = &events(&with_secret(DELIVERED))[..] else {
        panic!("one status")
    };
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(
        delivered.provider_message_id,
        "2250be2d4219-3af1-78856-aabe-1362af1edfd2"
    );
    assert_eq!(delivered.at.to_rfc3339(), "2023-02-03T00:01:01+00:00");
    assert_eq!(
        delivered.event_id,
        "infobip:2250be2d4219-3af1-78856-aabe-1362af1edfd2:DELIVERED_TO_HANDSET"
    );
    assert_eq!(delivered.error, None);

    let no_error = json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR"});
    let cases = [
        (
            "PENDING",
            "PENDING_ENROUTE",
            no_error.clone(),
            DeliveryStatus::Sent,
            None,
        ),
        (
            "EXPIRED",
            "EXPIRED_EXPIRED",
            no_error.clone(),
            DeliveryStatus::Failed,
            Some("EXPIRED_EXPIRED"),
        ),
        (
            "REJECTED",
            "REJECTED_DESTINATION_NOT_REGISTERED",
            no_error,
            DeliveryStatus::Failed,
            Some("REJECTED_DESTINATION_NOT_REGISTERED"),
        ),
        (
            "UNDELIVERABLE",
            "UNDELIVERABLE_NOT_DELIVERED",
            json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER",
                "description": "Absent Subscriber", "permanent": false}),
            DeliveryStatus::Failed,
            Some("EC_ABSENT_SUBSCRIBER"),
        ),
    ];
    for (group, name, error, status, code) in cases {
        let [ProviderEvent::Status(e)] = &events(&with_secret(&report(group, name, error)))[..]
        else {
            panic!("one status for {group}")
        };
        assert_eq!(e.status, status, "{group}");
        assert_eq!(e.error.as_ref().map(|e| e.code.as_str()), code, "{group}");
        assert_eq!(e.event_id, format!("infobip:msg-0001:{name}"));
    }
    let [ProviderEvent::Status(rejected)] = &events(&with_secret(&report(
        "REJECTED",
        "REJECTED_DESTINATION_NOT_REGISTERED",
        json!(null),
    )))[..] else {
        panic!("one status")
    };
    let error = rejected.error.clone().unwrap();
    assert_eq!(error.class, ErrorClass::InvalidRecipient);
    assert_eq!(
        error.message,
        "REJECTED_DESTINATION_NOT_REGISTERED happened"
    );
    assert!(matches!(
        &events(&with_secret(&report("SOMETHING_NEW", "X", json!(null))))[..],
        [ProviderEvent::Unrecognised { .. }]
    ));
}

#[test]
fn seen_reports_are_reads_and_inbound_messages_are_inbound() {
    let [ProviderEvent::Status(seen)] = &events(&with_secret(SEEN))[..] else {
        panic!("one status")
    };
    assert_eq!(seen.status, DeliveryStatus::Read);
    assert_eq!(
        seen.event_id,
        "infobip:1215f543ab19-345f-adbd-12ad31451ed25f35:SEEN"
    );
    assert_eq!(seen.at.to_rfc3339(), "2023-04-05T11:22:10.251+00:00");

    let [ProviderEvent::Inbound(text), ProviderEvent::Inbound(file)] =
        &events(&with_secret(INBOUND))[..]
    else {
        panic!("two inbound")
    };
    assert_eq!(text.from, Address::Phone(phone("+385912345678")));
    assert_eq!(text.text, "givenText");
    assert_eq!(text.event_id, "infobip:in:1234567890123456789");
    assert_eq!(file.text, "[file] givenFileName");
}

#[test]
fn replays_give_the_same_event_ids() {
    for body in [DELIVERED, SEEN, INBOUND] {
        let ids = |evs: Vec<ProviderEvent>| -> Vec<String> {
            evs.iter()
                .filter_map(|e| e.event_id().map(str::to_owned))
                .collect()
        };
        let first = ids(events(&with_secret(body)));
        assert!(!first.is_empty());
        assert_eq!(first, ids(events(&with_secret(body))));
    }
}

#[test]
fn only_the_shared_secret_opens_the_door() {
    let a = adapter("https://api.infobip.com");
    let plain = WebhookRequest::new("POST", WEBHOOK).with_body(DELIVERED);
    assert_eq!(a.parse_webhook(&plain), Err(WebhookError::BadSignature));
    let wrong = WebhookRequest::new("POST", format!("{WEBHOOK}?secret=guess")).with_body(DELIVERED);
    assert_eq!(a.parse_webhook(&wrong), Err(WebhookError::BadSignature));
    let wrong_header = plain.clone().with_header(SECRET_HEADER, "guess");
    assert_eq!(
        a.parse_webhook(&wrong_header),
        Err(WebhookError::BadSignature)
    );
    // Checked before the body is read.
    let garbage = WebhookRequest::new("POST", WEBHOOK).with_body(vec![0xff, 0xfe]);
    assert_eq!(a.parse_webhook(&garbage), Err(WebhookError::BadSignature));
    let by_header = plain.with_header(SECRET_HEADER, SECRET);
    assert!(matches!(a.parse_webhook(&by_header), Ok(WebhookOutcome::Events(e)) if e.len() == 1));
}

#[test]
fn authenticated_but_malformed_bodies_are_malformed() {
    let a = adapter("https://api.infobip.com");
    for body in [
        "",
        "<xml/>",
        "[]",
        "{}",
        r#"{"results": 5}"#,
        r#"{"results": [{"status": {"groupName": "DELIVERED"}}]}"#,
        r#"{"results": [{"messageId": 7}]}"#,
    ] {
        assert!(
            matches!(
                a.parse_webhook(&with_secret(body)),
                Err(WebhookError::Malformed(_))
            ),
            "{body}"
        );
    }
    let get = WebhookRequest::new("GET", REPORT_URL);
    assert!(matches!(
        a.parse_webhook(&get),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn settings_are_validated_field_by_field() {
    let e = InfobipViberSettings::from_json(
        &json!({"base_url": "xxxx.api.infobip.com"}),
        &json!({"webhook_secret": "short"}),
    )
    .unwrap_err();
    assert!(e.get("base_url").unwrap().contains("https://"));
    assert!(e.get("api_key").unwrap().contains("required"));
    assert!(e.get("sender").unwrap().contains("required"));
    assert!(e.get("webhook_secret").unwrap().contains("16"));
}

#[tokio::test]
async fn test_connection_reads_logs_not_reports() {
    let fake = fake().await;
    let said = adapter(&fake.base_url).test_connection().await.unwrap();
    assert!(said.contains("HeraldShop"));
    let request = fake.last_request().unwrap();
    assert_eq!(request.path, "/viber/2/logs");
    assert_eq!(request.query, "sender=HeraldShop&limit=1");
}

/// A 500 with Infobip's error body: see [`assert_a_server_error_is_unknown_and_keeps_the_answer`].
#[tokio::test]
async fn a_server_error_with_a_body_is_unknown_and_keeps_what_infobip_answered() {
    assert_a_server_error_is_unknown_and_keeps_the_answer(
        adapter,
        &text("+14155550100", "Hello"),
        "E500",
        "Something went wrong.",
    )
    .await;
}
