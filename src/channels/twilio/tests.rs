use std::time::Duration;

use serde_json::json;

use super::*;
use crate::channels::test_support::*;
use crate::channels::{PlaceholderExample, SendDisposition, TemplateCategory};
use crate::domain::content::ParameterFormat;
use crate::testkit::fake_provider::Scripted;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const CALLBACK: &str = "https://herald.example/webhooks/twilio/ch-sms";

fn adapter_with(base_url: &str, extra: Value) -> TwilioAdapter {
    let mut settings = json!({"base_url": base_url, "account_sid": SID});
    if let (Some(s), Some(e)) = (settings.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let settings = TwilioSettings::from_json(&settings, &json!({"auth_token": TOKEN}))
        .expect("valid settings");
    TwilioAdapter::new(settings, client(), CALLBACK.into())
}

fn adapter(base_url: &str) -> TwilioAdapter {
    adapter_with(base_url, json!({"from": "+15017122661"}))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Twilio's published request-validator test vector.
#[test]
fn twilios_published_test_vector_passes() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let params = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]);
    assert_eq!(sign("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");

    // The same request, as Twilio posts it, verifies through the adapter, with or without the
    // default port in the configured URL.
    let body = serde_urlencoded::to_string(&params).unwrap();
    let settings = TwilioSettings::from_json(
        &json!({"account_sid": SID, "from": "+15017122661"}),
        &json!({"auth_token": "12345"}),
    )
    .unwrap();
    let a = TwilioAdapter::new(settings, client(), CALLBACK.into());
    for configured in [url, "https://mycompany.com:443/myapp.php?foo=1&bar=2"] {
        let request = WebhookRequest::new("POST", configured)
            .with_header("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .with_body(body.clone());
        assert_eq!(
            verify(&request, "12345"),
            Ok(params.clone()),
            "{configured}"
        );
        // It is a voice callback, not a message: signed, but not ours to read.
        assert!(matches!(
            a.parse_webhook(&request),
            Err(WebhookError::Malformed(_))
        ));
    }
    let other_port =
        WebhookRequest::new("POST", "https://mycompany.com:8443/myapp.php?foo=1&bar=2")
            .with_header("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .with_body(body);
    assert_eq!(
        verify(&other_port, "12345"),
        Err(WebhookError::BadSignature)
    );
}

/// JSON bodies: the URL carries `bodySHA256` and alone is signed (Twilio SDK vector).
#[test]
fn json_bodies_are_checked_through_their_hash() {
    let body = r#"{"property": "value", "boolean": true}"#;
    let hash = crate::channels::wire::sha256_hex(body.as_bytes());
    assert!(
        hash.starts_with("0a1ff763") && hash.ends_with("6620"),
        "{hash}"
    );
    let url = format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={hash}");
    assert_eq!(sign("12345", &url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
    let request = WebhookRequest::new("POST", url.clone())
        .with_header("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4=")
        .with_body(body);
    let params = verify(&request, "12345").unwrap();
    assert!(params.contains(&("property".into(), "value".into())));
    let tampered = request
        .clone()
        .with_body(r#"{"property": "other", "boolean": true}"#);
    assert_eq!(verify(&tampered, "12345"), Err(WebhookError::BadSignature));
}

#[test]
fn ports_are_added_and_removed_like_the_sdks_do() {
    assert_eq!(
        alternate_port("https://h.example/p?q=1").as_deref(),
        Some("https://h.example:443/p?q=1")
    );
    assert_eq!(
        alternate_port("https://h.example:443/p").as_deref(),
        Some("https://h.example/p")
    );
    assert_eq!(
        alternate_port("http://user@h.example").as_deref(),
        Some("http://user@h.example:80")
    );
    assert_eq!(
        alternate_port("http://[::1]:80/x").as_deref(),
        Some("http://[::1]/x")
    );
    assert_eq!(alternate_port("https://h.example:8443/p"), None);
    assert_eq!(alternate_port("not a url"), None);
}

#[test]
fn repeated_keys_sign_each_value_sorted_once() {
    let a = sign(
        "12345",
        "https://h/x",
        &pairs(&[("b", "2"), ("a", "z"), ("a", "y"), ("a", "y")]),
    );
    let b = sign(
        "12345",
        "https://h/x",
        &pairs(&[("a", "y"), ("a", "z"), ("b", "2")]),
    );
    assert_eq!(a, b);
}

#[tokio::test]
async fn sends_are_form_encoded_with_basic_auth_and_a_status_callback() {
    let fake = fake().await;
    let receipt = adapter(&fake.base_url)
        .send(&text("+12015550123", "Hello from Herald"))
        .await
        .unwrap();
    assert!(receipt.provider_message_id.starts_with("SM"));
    assert_eq!(receipt.provider_status.as_deref(), Some("queued"));
    let request = fake.last_request().unwrap();
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let basic = BASE64.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        request.form(),
        pairs(&[
            ("To", "+12015550123"),
            ("From", "+15017122661"),
            ("Body", "Hello from Herald"),
            ("StatusCallback", CALLBACK),
        ])
    );
}

#[tokio::test]
async fn templates_go_out_as_their_rendered_text_through_a_messaging_service() {
    let fake = fake().await;
    let a = adapter_with(
        &fake.base_url,
        json!({"messaging_service_sid": "MG0123456789abcdef0123456789abcdef"}),
    );
    let receipt = a.send(&positional_template()).await.unwrap();
    assert_eq!(receipt.provider_status.as_deref(), Some("accepted"));
    let request = fake.last_request().unwrap();
    assert_eq!(
        request.form(),
        pairs(&[
            ("To", "+16505551234"),
            ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
            (
                "Body",
                "Order 1234: Hi Jessica, your order SKBUP2-4CPIG9 is on its way."
            ),
            ("StatusCallback", CALLBACK),
        ])
    );
}

#[tokio::test]
async fn documented_errors_are_classified_with_twilios_words() {
    let error = |code: i64, status: u16, message: &str| {
        json!({"code": code, "message": message,
               "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status})
    };
    let cases = [
        (
            400,
            error(
                21211,
                400,
                "The 'To' number +1555 is not a valid phone number.",
            ),
            ErrorClass::InvalidRecipient,
        ),
        (
            400,
            error(21614, 400, "'To' number is not a valid mobile number"),
            ErrorClass::InvalidRecipient,
        ),
        (
            400,
            error(21610, 400, "Attempt to send to unsubscribed recipient"),
            ErrorClass::OptedOut,
        ),
        (
            429,
            error(20429, 429, "Too Many Requests"),
            ErrorClass::RateLimited,
        ),
        (
            401,
            error(20003, 401, "Authenticate"),
            ErrorClass::Permanent,
        ),
        (
            400,
            error(
                21606,
                400,
                "The From phone number is not a valid, SMS-capable inbound phone number",
            ),
            ErrorClass::Permanent,
        ),
        (
            500,
            error(20500, 500, "Internal Server Error"),
            ErrorClass::Ambiguous,
        ),
        (
            503,
            error(20503, 503, "Service Unavailable"),
            ErrorClass::Retryable,
        ),
    ];
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    for (status, body, class) in cases {
        let code = body["code"].to_string();
        fake.script(Scripted::json(status, body.clone()).with_header("Retry-After", "2"));
        let e = a.send(&text("+12015550123", "hi")).await.unwrap_err();
        assert_eq!(e.class, class, "{code}");
        assert_eq!(e.code.as_deref(), Some(code.as_str()));
        assert_eq!(e.message, body["message"].as_str().unwrap());
        assert_eq!(e.details.as_deref(), body["more_info"].as_str());
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    }
    // The RFC 9457 shape of Twilio's newer APIs.
    fake.script(Scripted::json(
        400,
        json!({"type": "https://www.twilio.com/docs/errors/21211", "title": "Invalid 'To' Phone Number",
               "status": 400, "code": 21211, "detail": "The 'To' number is not valid.", "instance": "/x"}),
    ));
    let e = a.send(&text("+12015550123", "hi")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidRecipient);
    assert_eq!(e.message, "The 'To' number is not valid.");
    // An answer in no known shape.
    fake.script(Scripted::raw(502, "Bad Gateway"));
    let e = a.send(&text("+12015550123", "hi")).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_deref()),
        (ErrorClass::Ambiguous, Some("http_502"))
    );
}

#[tokio::test]
async fn timeouts_are_ambiguous_and_refused_connections_retryable() {
    let fake = fake().await;
    fake.script(Scripted::Hang);
    let e = adapter(&fake.base_url)
        .send(&text("+12015550123", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.disposition(), SendDisposition::Unknown);
    let e = adapter(&refused_url())
        .send(&text("+12015550123", "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        e.disposition(),
        SendDisposition::RetryLater { not_before: None }
    );
}

#[tokio::test]
async fn sms_has_no_provider_templates() {
    let a = adapter(&refused_url());
    let t = TemplateSubmission {
        name: "reminder".into(),
        language: "en".into(),
        category: TemplateCategory::Utility,
        parameter_format: ParameterFormat::Positional,
        header_text: None,
        body_text: "Hi {{1}}".into(),
        footer_text: None,
        buttons: vec![],
        header_examples: vec![],
        body_examples: vec![PlaceholderExample {
            placeholder: "1".into(),
            value: "Ann".into(),
        }],
        replaces: None,
        authentication: None,
    };
    let e = a.submit_template(&t).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Unsupported);
    assert!(e.message.contains("local"));
    let e = a
        .template_status(&TemplateRef::ProviderId("x".into()))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Unsupported);
}

#[tokio::test]
async fn test_connection_fetches_the_account() {
    let fake = fake().await;
    let said = adapter(&fake.base_url).test_connection().await.unwrap();
    assert!(
        said.contains("Herald fake account") && said.contains("active"),
        "{said}"
    );
    assert_eq!(
        fake.last_request().unwrap().path,
        format!("/2010-04-01/Accounts/{SID}.json")
    );
}

// --- Webhooks --------------------------------------------------------------------------------

fn signed(params: &[(&str, &str)]) -> WebhookRequest {
    let params = pairs(params);
    WebhookRequest::new("POST", CALLBACK)
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_header("X-Twilio-Signature", sign(TOKEN, CALLBACK, &params))
        .with_body(serde_urlencoded::to_string(&params).unwrap())
}

fn one(request: &WebhookRequest) -> ProviderEvent {
    match adapter("https://api.twilio.com").parse_webhook(request) {
        Ok(WebhookOutcome::Events(mut events)) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

const DELIVERED: &[(&str, &str)] = &[
    ("AccountSid", SID),
    ("ApiVersion", "2010-04-01"),
    ("From", "+15017122661"),
    ("MessageSid", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
    ("MessageStatus", "delivered"),
    ("RawDlrDoneDate", "2507011200"),
    ("SmsSid", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
    ("SmsStatus", "delivered"),
    ("To", "+12015550123"),
];

#[test]
fn status_callbacks_become_status_events() {
    let ProviderEvent::Status(e) = one(&signed(DELIVERED)) else {
        panic!("a status")
    };
    assert_eq!(e.status, DeliveryStatus::Delivered);
    assert_eq!(e.provider_message_id, "SM1342fe1b2c904d1ab04f0fc7a58abca9");
    assert_eq!(
        e.event_id,
        "twilio:SM1342fe1b2c904d1ab04f0fc7a58abca9:delivered"
    );
    assert_eq!(e.error, None);

    for (code, class) in [
        ("30003", ErrorClass::Permanent),
        ("30006", ErrorClass::InvalidRecipient),
        ("21610", ErrorClass::OptedOut),
    ] {
        let ProviderEvent::Status(failed) = one(&signed(&[
            ("MessageSid", "SM2"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", code),
        ])) else {
            panic!("a status")
        };
        assert_eq!(failed.status, DeliveryStatus::Failed);
        let error = failed.error.unwrap();
        assert_eq!((error.code.as_str(), error.class), (code, class));
        assert!(!error.message.is_empty());
    }
    let ProviderEvent::Status(sent) =
        one(&signed(&[("MessageSid", "SM3"), ("MessageStatus", "sent")]))
    else {
        panic!("a status")
    };
    assert_eq!(sent.status, DeliveryStatus::Sent);
    assert!(matches!(
        one(&signed(&[
            ("MessageSid", "SM3"),
            ("MessageStatus", "partially_delivered")
        ])),
        ProviderEvent::Unrecognised { .. }
    ));
}

#[test]
fn inbound_messages_become_inbound_events() {
    let request = signed(&[
        ("AccountSid", SID),
        ("Body", "STOP"),
        ("From", "+12015550123"),
        ("MessageSid", "SM9"),
        ("NumMedia", "0"),
        ("OptOutType", "STOP"),
        ("SmsStatus", "received"),
        ("To", "+15017122661"),
    ]);
    let ProviderEvent::Inbound(e) = one(&request) else {
        panic!("inbound")
    };
    assert_eq!(e.from, Address::Phone(phone("+12015550123")));
    assert_eq!(e.text, "STOP");
    assert_eq!(e.event_id, "twilio:in:SM9");
    let ProviderEvent::Inbound(media) = one(&signed(&[
        ("From", "not-a-number"),
        ("MessageSid", "SM10"),
        ("NumMedia", "1"),
    ])) else {
        panic!("inbound")
    };
    assert_eq!(media.text, "[media]");
    assert_eq!(media.from, Address::Raw("not-a-number".into()));
}

#[test]
fn replays_give_the_same_event_id() {
    assert_eq!(
        one(&signed(DELIVERED)).event_id(),
        one(&signed(DELIVERED)).event_id()
    );
}

#[test]
fn bad_signatures_are_refused() {
    let a = adapter("https://api.twilio.com");
    let good = signed(DELIVERED);
    let mut no_header = good.clone();
    no_header.headers.retain(|(k, _)| k != "X-Twilio-Signature");
    let mut wrong_token = good.clone();
    wrong_token.headers[1].1 = sign("other", CALLBACK, &pairs(DELIVERED));
    let mut other_url = good.clone();
    other_url.url = "https://herald.example/webhooks/twilio/other".into();
    let mut tampered = good.clone();
    tampered.body = String::from_utf8(tampered.body)
        .unwrap()
        .replace("delivered", "read")
        .into_bytes();
    let mut garbage = good.clone();
    garbage.body = vec![0xff, 0x00, b'%', b'z'];
    for (name, r) in [
        ("no header", no_header),
        ("wrong token", wrong_token),
        ("other url", other_url),
        ("tampered", tampered),
        ("garbage", garbage),
    ] {
        assert_eq!(
            a.parse_webhook(&r),
            Err(WebhookError::BadSignature),
            "{name}"
        );
    }
}

#[test]
fn signed_but_malformed_forms_are_malformed() {
    let a = adapter("https://api.twilio.com");
    for params in [
        &[][..],
        &[("MessageStatus", "delivered")][..],
        &[("MessageSid", "SM1")][..],
    ] {
        assert!(
            matches!(
                a.parse_webhook(&signed(params)),
                Err(WebhookError::Malformed(_))
            ),
            "{params:?}"
        );
    }
}

#[test]
fn settings_are_validated_field_by_field() {
    let e = TwilioSettings::from_json(
        &json!({"account_sid": "AC123", "messaging_service_sid": "MGxyz", "from": "+1 555"}),
        &json!({}),
    )
    .unwrap_err();
    assert!(e.get("account_sid").unwrap().contains("32 hexadecimal"));
    assert!(e.get("messaging_service_sid").unwrap().contains("MG"));
    assert!(e.get("from").unwrap().contains("E.164"));
    assert!(e.get("auth_token").unwrap().contains("required"));
    let e = TwilioSettings::from_json(&json!({"account_sid": SID}), &json!({"auth_token": "t"}))
        .unwrap_err();
    assert!(e.get("from").unwrap().contains("messaging service"));
    for sender in ["+15017122661", "HERALD", "Herald Shop", "12345"] {
        let ok = TwilioSettings::from_json(
            &json!({"account_sid": SID, "from": sender}),
            &json!({"auth_token": "t"}),
        );
        assert!(ok.is_ok(), "{sender}");
    }
    let ok = TwilioSettings::from_json(
        &json!({"account_sid": SID, "from": "HERALD"}),
        &json!({"auth_token": "t"}),
    )
    .unwrap();
    assert_eq!(ok.base_url, "https://api.twilio.com");
}

/// A 500 with Twilio's error body: see [`assert_a_server_error_is_unknown_and_keeps_the_answer`].
#[tokio::test]
async fn a_server_error_with_a_body_is_unknown_and_keeps_what_twilio_answered() {
    assert_a_server_error_is_unknown_and_keeps_the_answer(
        adapter,
        &text("+14155550100", "Hello"),
        "20500",
        "Internal Server Error",
    )
    .await;
}
