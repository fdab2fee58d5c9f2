use std::time::Duration;

use serde_json::json;

use super::*;
use crate::channels::test_support::*;
use crate::channels::{DeliveryStatus, SendDisposition};
use crate::testkit::fake_provider::{FakeProviderHandle, Scripted};

const APP_SECRET: &str = "app-secret-123";
const VERIFY_TOKEN: &str = "verify-me";

fn settings(base_url: &str) -> WhatsappSettings {
    WhatsappSettings::from_json(
        &json!({
            "base_url": base_url,
            "phone_number_id": "106540352242922",
            "waba_id": "102290129340398",
        }),
        &json!({
            "access_token": "EAAtoken",
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
        }),
    )
    .expect("valid settings")
}

fn adapter(base_url: &str) -> WhatsappAdapter {
    WhatsappAdapter::new(settings(base_url), client())
}

async fn sent_body(fake: &FakeProviderHandle, message: &OutboundMessage) -> Value {
    let receipt = adapter(&fake.base_url).send(message).await.expect("sent");
    assert!(receipt.provider_message_id.starts_with("wamid."));
    let request = fake.last_request().expect("request");
    assert_eq!(request.path, "/v23.0/106540352242922/messages");
    assert_eq!(request.header("authorization"), Some("Bearer EAAtoken"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request.header("user-agent").unwrap().starts_with("herald/"));
    request.json().expect("JSON body")
}

/// The reference payload with the `language.policy` Meta's OpenAPI file requires.
fn with_policy(mut reference: Value) -> Value {
    reference["template"]["language"]["policy"] = json!("deterministic");
    reference
}

#[tokio::test]
async fn positional_template_sends_match_the_reference_payload() {
    let fake = fake().await;
    let body = sent_body(&fake, &positional_template()).await;
    let expected = json!({
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234",
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US", "policy": "deterministic"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "Order 1234"}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Jessica"},
                                                {"type": "text", "text": "SKBUP2-4CPIG9"}]},
                {"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": "SKBUP2-4CPIG9"}]},
                {"type": "button", "sub_type": "quick_reply", "index": "1",
                 "parameters": [{"type": "payload", "payload": "STOP_UPDATES"}]},
            ],
        },
    });
    assert_eq!(body, expected);
    if let Some(reference) =
        reference_json("whatsapp-examples/send_template_request_positional.json")
    {
        assert_eq!(body, with_policy(reference));
    }
}

#[tokio::test]
async fn named_template_sends_carry_parameter_names() {
    let fake = fake().await;
    let body = sent_body(&fake, &named_template()).await;
    assert_eq!(
        body["template"]["components"],
        json!([{"type": "body", "parameters": [
            {"type": "text", "parameter_name": "first_name", "text": "Jessica"},
            {"type": "text", "parameter_name": "order_number", "text": "SKBUP2-4CPIG9"}]}])
    );
    if let Some(reference) = reference_json("whatsapp-examples/send_template_request_named.json") {
        assert_eq!(body, with_policy(reference));
    }
}

#[tokio::test]
async fn text_sends_match_the_reference_payload() {
    let fake = fake().await;
    let body = sent_body(&fake, &text("+16505551234", "text-message-content")).await;
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual",
               "to": "+16505551234", "type": "text",
               "text": {"preview_url": false, "body": "text-message-content"}})
    );
    if let Some(mut reference) = reference_json("whatsapp-examples/send_text_request.json") {
        reference["to"] = json!("+16505551234");
        assert_eq!(body, reference);
    }
}

#[tokio::test]
async fn the_pacing_status_of_a_send_is_kept() {
    let fake = fake().await;
    fake.script(Scripted::json(
        200,
        json!({"messaging_product": "whatsapp",
               "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
               "messages": [{"id": "wamid.X", "message_status": "held_for_quality_assessment"}]}),
    ));
    let receipt = adapter(&fake.base_url)
        .send(&named_template())
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "wamid.X");
    assert_eq!(
        receipt.provider_status.as_deref(),
        Some("held_for_quality_assessment")
    );
}

fn seasonal_promotion() -> TemplateSubmission {
    let example = |p: &str, v: &str| PlaceholderExample {
        placeholder: p.into(),
        value: v.into(),
    };
    TemplateSubmission {
        name: "seasonal_promotion_text_only".into(),
        language: "en".into(),
        category: TemplateCategory::Marketing,
        parameter_format: ParameterFormat::Positional,
        header_text: Some("Our {{1}} is on!".into()),
        body_text: "Shop now through {{1}} and use code {{2}} to get {{3}} off of all merchandise."
            .into(),
        footer_text: Some("Use the buttons below to manage your marketing subscriptions".into()),
        buttons: vec![
            TemplateButton::QuickReply {
                text: "Unsubcribe from Promos".into(),
            },
            TemplateButton::QuickReply {
                text: "Unsubscribe from All".into(),
            },
        ],
        header_examples: vec![example("1", "Summer Sale")],
        // Out of order on purpose: positional examples go in placeholder order.
        body_examples: vec![
            example("3", "25%"),
            example("1", "the end of August"),
            example("2", "25OFF"),
        ],
        replaces: None,
        authentication: None,
    }
}

#[tokio::test]
async fn template_creation_matches_the_reference_payload() {
    let fake = fake().await;
    let submitted = adapter(&fake.base_url)
        .submit_template(&seasonal_promotion())
        .await
        .unwrap();
    assert_eq!(submitted.status, ProviderTemplateStatus::Pending);
    let request = fake.last_request().unwrap();
    assert_eq!(request.path, "/v23.0/102290129340398/message_templates");
    assert_eq!(request.header("authorization"), Some("Bearer EAAtoken"));
    let body = request.json().unwrap();
    let expected = json!({
        "category": "MARKETING", "language": "en", "name": "seasonal_promotion_text_only",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Our {{1}} is on!",
             "example": {"header_text": ["Summer Sale"]}},
            {"type": "BODY",
             "text": "Shop now through {{1}} and use code {{2}} to get {{3}} off of all merchandise.",
             "example": {"body_text": [["the end of August", "25OFF", "25%"]]}},
            {"type": "FOOTER", "text": "Use the buttons below to manage your marketing subscriptions"},
            {"type": "BUTTONS", "buttons": [
                {"type": "QUICK_REPLY", "text": "Unsubcribe from Promos"},
                {"type": "QUICK_REPLY", "text": "Unsubscribe from All"}]},
        ],
    });
    assert_eq!(body, expected);
    if let Some(reference) = reference_json("whatsapp-examples/template_create_request.json") {
        assert_eq!(body, reference);
    }
    // The fake answers with the id it stored; a status lookup by that id finds it.
    let id = submitted.provider_template_id;
    let answer = adapter(&fake.base_url)
        .template_status(&TemplateRef::ProviderId(id.clone()))
        .await
        .unwrap();
    assert_eq!(answer.status, ProviderTemplateStatus::Approved);
    assert!(answer.is_about(&id, "seasonal_promotion_text_only", "en"));
    assert!(
        fake.last_request()
            .unwrap()
            .query
            .contains("fields=id%2Cname%2Clanguage%2Cstatus"),
        "the answer must name the template it is about"
    );
    let by_name = adapter(&fake.base_url)
        .template_status(&TemplateRef::NameLanguage {
            name: "seasonal_promotion_text_only".into(),
            language: "en".into(),
        })
        .await
        .unwrap();
    assert_eq!(by_name.status, ProviderTemplateStatus::Approved);
    assert_eq!(by_name.provider_template_id.as_deref(), Some(id.as_str()));

    // An answer about another template says so; the caller does not take it for ours.
    fake.script(Scripted::json(
        200,
        json!({"id": "9999", "name": "other_template", "language": "en", "status": "REJECTED"}),
    ));
    let other = adapter(&fake.base_url)
        .template_status(&TemplateRef::ProviderId(id.clone()))
        .await
        .unwrap();
    assert!(!other.is_about(&id, "seasonal_promotion_text_only", "en"));
    let missing = adapter(&fake.base_url)
        .template_status(&TemplateRef::NameLanguage {
            name: "seasonal_promotion_text_only".into(),
            language: "de".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code.as_deref(), Some("template_not_found"));
}

#[tokio::test]
async fn a_new_version_edits_the_template_meta_already_has() {
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    let created = a.submit_template(&seasonal_promotion()).await.unwrap();
    let mut v2 = seasonal_promotion();
    v2.body_text = "Shop now through {{1}} and use code {{2}} to get {{3}} off.".into();
    v2.replaces = Some(created.provider_template_id.clone());
    let edited = a.submit_template(&v2).await.unwrap();
    // The same template at Meta, back in review.
    assert_eq!(edited.provider_template_id, created.provider_template_id);
    assert_eq!(edited.status, ProviderTemplateStatus::Pending);
    let request = fake.last_request().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        format!("/v23.0/{}", created.provider_template_id)
    );
    let body = request.json().unwrap();
    assert_eq!(body.get("name"), None, "a template's name never changes");
    assert_eq!(body.get("language"), None);
    assert_eq!(body["category"], "MARKETING");
    assert_eq!(
        body["components"][1]["text"],
        "Shop now through {{1}} and use code {{2}} to get {{3}} off."
    );
    let stats = fake.stats();
    assert_eq!((stats.templates_created, stats.templates_edited), (1, 1));

    // Meta no longer has it: its refusal, verbatim.
    v2.replaces = Some("1689556908000000".into());
    let e = a.submit_template(&v2).await.unwrap_err();
    assert!(e.message.contains("does not exist"), "{e}");
    // An id Meta never gives is not put into a URL.
    v2.replaces = Some("../message_templates".into());
    let before = fake.stats().requests;
    let e = a.submit_template(&v2).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("bad_request_setup"), "{e}");
    assert_eq!(fake.stats().requests, before);
}

#[test]
fn named_templates_send_named_examples_and_url_button_samples() {
    let t = TemplateSubmission {
        name: "order_confirmation".into(),
        language: "en_US".into(),
        category: TemplateCategory::Utility,
        parameter_format: ParameterFormat::Named,
        header_text: None,
        body_text: "Hi {{first_name}}, order {{order_number}} is confirmed.".into(),
        footer_text: None,
        buttons: vec![
            TemplateButton::Url {
                text: "Track".into(),
                url: "https://shop.example/track/{{1}}".into(),
                example_suffix: Some("SKBUP2".into()),
            },
            TemplateButton::PhoneNumber {
                text: "Call us".into(),
                phone_number: "+15550100".into(),
            },
        ],
        header_examples: vec![],
        body_examples: vec![
            PlaceholderExample {
                placeholder: "order_number".into(),
                value: "SKBUP2-4CPIG9".into(),
            },
            PlaceholderExample {
                placeholder: "first_name".into(),
                value: "Jessica".into(),
            },
        ],
        replaces: None,
        authentication: None,
    };
    let body = template_body(&t).unwrap();
    assert_eq!(body["parameter_format"], "named");
    assert_eq!(body["category"], "UTILITY");
    assert_eq!(
        body["components"][0]["example"],
        json!({"body_text_named_params": [
            {"param_name": "first_name", "example": "Jessica"},
            {"param_name": "order_number", "example": "SKBUP2-4CPIG9"}]})
    );
    assert_eq!(
        body["components"][1]["buttons"],
        json!([
            {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}",
             "example": ["https://shop.example/track/SKBUP2"]},
            {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550100"}])
    );
}

#[tokio::test]
async fn a_placeholder_without_example_is_refused_before_sending() {
    let fake = fake().await;
    let mut t = seasonal_promotion();
    t.body_examples.pop();
    let e = adapter(&fake.base_url)
        .submit_template(&t)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::TemplateProblem);
    assert_eq!(e.code.as_deref(), Some("missing_example"));
    assert!(e.message.contains("{{2}}"), "{}", e.message);
    assert_eq!(fake.stats().requests, 0);
}

/// Real error bodies (shared/reference/whatsapp-examples) and the class each must get.
#[tokio::test]
async fn every_documented_error_is_classified_with_the_providers_words() {
    let graph = |code: i64, message: &str, details: &str| {
        json!({"error": {"message": message, "type": "OAuthException", "code": code,
               "error_data": {"messaging_product": "whatsapp", "details": details},
               "fbtrace_id": "AWEdqoNazWdC-QDZfywosJo"}})
    };
    let cases = [
        (
            400,
            graph(
                130429,
                "(#130429) Rate limit hit",
                "Cloud API message throughput has been reached.",
            ),
            ErrorClass::RateLimited,
        ),
        (
            400,
            graph(
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                "body: number of localizable_params (2) does not match the expected number of params (1)",
            ),
            ErrorClass::TemplateProblem,
        ),
        (
            404,
            graph(
                132001,
                "(#132001) Template name does not exist in the translation",
                "template name (cg_quest_text) does not exist in en_US",
            ),
            ErrorClass::TemplateProblem,
        ),
        (
            400,
            graph(131047, "Re-engagement message", "more than 24 hours"),
            ErrorClass::WindowClosed,
        ),
        (
            400,
            graph(131026, "Message undeliverable", "not on WhatsApp"),
            ErrorClass::InvalidRecipient,
        ),
        (
            400,
            graph(131049, "healthy ecosystem", "marketing limit"),
            ErrorClass::MarketingLimit,
        ),
        (
            400,
            graph(
                131056,
                "(#131056) Pair rate limit hit",
                "too many to one user",
            ),
            ErrorClass::PairRateLimit,
        ),
        (
            400,
            graph(132005, "Translated text too long", "x"),
            ErrorClass::TemplateProblem,
        ),
        (
            400,
            graph(132007, "Format character policy violated", "x"),
            ErrorClass::TemplateProblem,
        ),
        (
            400,
            graph(132012, "Parameter format does not match", "x"),
            ErrorClass::TemplateProblem,
        ),
        (
            400,
            graph(132015, "Template is paused", "x"),
            ErrorClass::TemplateProblem,
        ),
        (
            400,
            graph(132016, "Template is disabled", "x"),
            ErrorClass::TemplateProblem,
        ),
        (
            400,
            graph(131057, "Account in maintenance mode", "x"),
            ErrorClass::Retryable,
        ),
        (
            401,
            graph(190, "Invalid OAuth access token", "expired"),
            ErrorClass::Permanent,
        ),
        (
            400,
            graph(
                100,
                "Invalid parameter",
                "Parameter name is missing or empty",
            ),
            ErrorClass::Permanent,
        ),
        (
            500,
            graph(131000, "Something went wrong", "x"),
            ErrorClass::Ambiguous,
        ),
        (
            503,
            graph(131000, "Service unavailable", "x"),
            ErrorClass::Retryable,
        ),
        (
            429,
            graph(4, "(#4) Application request limit reached", "x"),
            ErrorClass::RateLimited,
        ),
    ];
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    for (status, body, class) in cases {
        let code = body["error"]["code"].to_string();
        fake.script(Scripted::json(status, body.clone()));
        let e = a.send(&positional_template()).await.unwrap_err();
        assert_eq!(e.class, class, "{code}");
        assert_eq!(e.code.as_deref(), Some(code.as_str()));
        assert_eq!(e.message, body["error"]["message"].as_str().unwrap());
        assert_eq!(
            e.details.as_deref(),
            body["error"]["error_data"]["details"].as_str()
        );
    }
    for name in [
        "error_response_130429.json",
        "error_response_132000_real.json",
        "error_response_132001_real.json",
    ] {
        let Some(body) = reference_json(&format!("whatsapp-examples/{name}")) else {
            continue;
        };
        fake.script(Scripted::json(400, body));
        let e = a.send(&positional_template()).await.unwrap_err();
        let expected = if name.contains("130429") {
            ErrorClass::RateLimited
        } else {
            ErrorClass::TemplateProblem
        };
        assert_eq!(e.class, expected, "{name}");
    }
}

/// Meta's words for people (`error_user_title`, `error_user_msg`) come first, verbatim, with
/// the code and technical message beneath; without them the text is as before.
#[tokio::test]
async fn metas_words_for_people_are_kept_verbatim_with_the_code_beneath() {
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    fake.script(Scripted::json(
        400,
        json!({"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100,
            "error_subcode": 2388299, "is_transient": false,
            "error_user_title": "Variables can't be at the start or end of the template",
            "error_user_msg": "Variables can't be at the start or end of the template. Make sure to add text before and after each variable.",
            "fbtrace_id": "AfakeTrace"}}),
    ));
    let e = a.submit_template(&seasonal_promotion()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(
        e.said.as_deref(),
        Some(
            "Variables can't be at the start or end of the template: Variables can't be at the start or end of the template. Make sure to add text before and after each variable."
        )
    );
    assert_eq!(
        e.text(),
        "Variables can't be at the start or end of the template: Variables can't be at the start or end of the template. Make sure to add text before and after each variable.\n100: Invalid parameter"
    );
    // Only one of the two: that one alone.
    fake.script(Scripted::json(
        400,
        json!({"error": {"message": "Invalid parameter", "code": 100,
            "error_user_msg": "The template name already exists in this language."}}),
    ));
    let e = a.submit_template(&seasonal_promotion()).await.unwrap_err();
    assert_eq!(
        e.text(),
        "The template name already exists in this language.\n100: Invalid parameter"
    );
    // None: the code and message as before.
    fake.script(Scripted::json(
        400,
        json!({"error": {"message": "Invalid parameter", "code": 100, "error_user_title": " "}}),
    ));
    let e = a.submit_template(&seasonal_promotion()).await.unwrap_err();
    assert_eq!(e.said, None);
    assert_eq!(e.text(), "100: Invalid parameter");
}

#[tokio::test]
async fn retry_after_is_honoured_and_unknown_bodies_fall_back_to_the_status() {
    let fake = fake().await;
    let a = adapter(&fake.base_url);
    fake.script(
        Scripted::json(
            429,
            json!({"error": {"message": "(#130429) Rate limit hit", "code": 130429}}),
        )
        .with_header("Retry-After", "9"),
    );
    let e = a.send(&positional_template()).await.unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(9)));
    assert_eq!(
        e.disposition(),
        SendDisposition::RetryLater {
            not_before: Some(Duration::from_secs(9))
        }
    );
    for (status, class) in [
        (502, ErrorClass::Ambiguous),
        (503, ErrorClass::Retryable),
        (429, ErrorClass::RateLimited),
        (418, ErrorClass::Permanent),
    ] {
        fake.script(Scripted::raw(status, "<html>upstream trouble</html>"));
        let e = a.send(&positional_template()).await.unwrap_err();
        assert_eq!(e.class, class, "{status}");
        assert!(e.message.contains("upstream trouble"));
    }
    fake.script(Scripted::raw(200, "not json"));
    let e = a.send(&positional_template()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous);
    assert_eq!(e.code.as_deref(), Some("unreadable_answer"));
}

#[tokio::test]
async fn a_timeout_after_sending_is_ambiguous_and_a_refused_connection_is_retryable() {
    let fake = fake().await;
    fake.script(Scripted::Hang);
    let e = adapter(&fake.base_url)
        .send(&positional_template())
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous);
    assert_eq!(e.code.as_deref(), Some("timeout"));
    assert_eq!(e.disposition(), SendDisposition::Unknown);
    // The fake did receive it: exactly why it must not be resent.
    assert_eq!(fake.stats().received_per_recipient["+16505551234"], 1);

    let e = adapter(&refused_url())
        .send(&positional_template())
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");
    assert_eq!(e.code.as_deref(), Some("connect"));
}

#[tokio::test]
async fn test_connection_reads_the_number() {
    let fake = fake().await;
    let said = adapter(&fake.base_url).test_connection().await.unwrap();
    assert!(
        said.contains("+1 555-010-0100") && said.contains("Herald Fake"),
        "{said}"
    );
    let request = fake.last_request().unwrap();
    assert_eq!(request.path, "/v23.0/106540352242922");
    fake.script(Scripted::json(
        401,
        json!({"error": {"message": "Invalid OAuth access token", "code": 190}}),
    ));
    let e = adapter(&fake.base_url).test_connection().await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("190"));
}

#[tokio::test]
async fn the_messaging_limit_is_read_from_the_number() {
    let fake = fake().await;
    let limit = adapter(&fake.base_url).messaging_limit().await.unwrap();
    assert_eq!(limit, Some("2000"));
    let request = fake.last_request().unwrap();
    assert_eq!(request.path, "/v23.0/106540352242922");
    // Where the current field is refused, the deprecated tier is asked for.
    fake.script(Scripted::json(
        400,
        json!({"error": {"message": "Tried accessing nonexisting field", "code": 100}}),
    ));
    fake.script(Scripted::json(
        200,
        json!({"messaging_limit_tier": "TIER_UNLIMITED", "id": "106540352242922"}),
    ));
    let limit = adapter(&fake.base_url).messaging_limit().await.unwrap();
    assert_eq!(limit, Some("unlimited"));
    assert_eq!(limit_of_tier("TIER_100K"), Some("100000"));
    assert_eq!(limit_of_tier("TIER_9Z"), None);
}

// --- Webhooks --------------------------------------------------------------------------------

fn signed(body: &str) -> WebhookRequest {
    WebhookRequest::new("POST", "https://herald.example/webhooks/whatsapp/ch1")
        .with_header("Content-Type", "application/json")
        .with_header("X-Hub-Signature-256", sign(APP_SECRET, body.as_bytes()))
        .with_body(body.as_bytes().to_vec())
}

fn events(body: &str) -> Vec<ProviderEvent> {
    match adapter("https://graph.facebook.com").parse_webhook(&signed(body)) {
        Ok(WebhookOutcome::Events(events)) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

const INBOUND_TEXT: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"419561257915477","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},"field":"messages"}]}]}"#;

const STATUS_SENT: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=","status":"sent","timestamp":"1750030073","recipient_id":"16505551234","pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"marketing"}}]},"field":"messages"}]}]}"#;

const FAILED_131047: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"86501452171734","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"9999999999","phone_number_id":"86501452171734"},"statuses":[{"id":"wamid.H=====================================","status":"failed","timestamp":"1744609253","recipient_id":"86501452171734","errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message","error_data":{"details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."},"href":"https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]}]},"field":"messages"}]}]}"#;

const FAILED_131049: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA","status":"failed","timestamp":"1751142888","recipient_id":"16505551234","errors":[{"code":131049,"title":"This message was not delivered to maintain healthy ecosystem engagement.","message":"This message was not delivered to maintain healthy ecosystem engagement.","error_data":{"details":"In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},"href":"/documentation/business-messaging/whatsapp/support/error-codes"}]}]},"field":"messages"}]}]}"#;

const TEMPLATE_APPROVED: &str = r#"{"entry":[{"id":"102290129340398","time":1751247548,"changes":[{"value":{"event":"APPROVED","message_template_id":1689556908129832,"message_template_name":"order_confirmation","message_template_language":"en-US","reason":"NONE","message_template_category":"UTILITY"},"field":"message_template_status_update"}]}],"object":"whatsapp_business_account"}"#;

const TEMPLATE_REJECTED: &str = r#"{"entry":[{"id":"102290129340398","time":1751247548,"changes":[{"value":{"event":"REJECTED","message_template_id":1689556908129835,"message_template_name":"abandoned_cart","message_template_language":"en","reason":"INVALID_FORMAT","message_template_category":"MARKETING","rejection_info":{"reason":"Your template has parameters placed next to each other (like {{1}}{{2}}) without text or punctuation between them.","recommendation":"Separate parameters with descriptive text and ensure each parameter is clearly contextualized."}},"field":"message_template_status_update"}]}],"object":"whatsapp_business_account"}"#;

const QUALITY_UPDATE: &str = r#"{"entry":[{"id":"102290129340398","time":1674864290,"changes":[{"value":{"previous_quality_score":"GREEN","new_quality_score":"YELLOW","message_template_id":806312974732579,"message_template_name":"welcome_template","message_template_language":"en-US"},"field":"message_template_quality_update"}]}],"object":"whatsapp_business_account"}"#;

fn one(body: &str) -> ProviderEvent {
    let mut evs = events(body);
    assert_eq!(evs.len(), 1, "{evs:?}");
    evs.remove(0)
}

#[test]
fn inbound_text_becomes_an_inbound_event() {
    let ProviderEvent::Inbound(e) = one(INBOUND_TEXT) else {
        panic!("one inbound event")
    };
    assert_eq!(e.from, Address::Phone(phone("+16505551234")));
    assert_eq!(e.text, "Does it come in another color?");
    assert_eq!(e.profile_name.as_deref(), Some("Sheena Nelson"));
    assert_eq!(e.received_at.timestamp(), 1749416383);
    assert_eq!(
        e.provider_message_id,
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    );
    assert_eq!(e.event_id, format!("wa:msg:{}", e.provider_message_id));
}

#[test]
fn statuses_become_status_events_with_classified_errors() {
    let ProviderEvent::Status(sent) = one(STATUS_SENT) else {
        panic!("one status")
    };
    assert_eq!(sent.status, DeliveryStatus::Sent);
    assert_eq!(sent.at.timestamp(), 1750030073);
    assert_eq!(sent.error, None);
    assert!(sent.event_id.ends_with(":sent"));

    let ProviderEvent::Status(failed) = one(FAILED_131047) else {
        panic!("one status")
    };
    assert_eq!(failed.status, DeliveryStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "131047");
    assert_eq!(error.class, ErrorClass::WindowClosed);
    assert!(error.message.starts_with("Re-engagement message ("));
    assert!(error.message.contains("more than 24 hours"));

    let ProviderEvent::Status(limited) = one(FAILED_131049) else {
        panic!("one status")
    };
    assert_eq!(limited.error.unwrap().class, ErrorClass::MarketingLimit);
    assert_ne!(limited.event_id, failed.event_id);
}

#[test]
fn template_status_updates_carry_their_reasons() {
    let ProviderEvent::TemplateStatus(approved) = one(TEMPLATE_APPROVED) else {
        panic!("one template event")
    };
    assert_eq!(approved.provider_template_id, "1689556908129832");
    assert_eq!(approved.name.as_deref(), Some("order_confirmation"));
    assert_eq!(approved.language.as_deref(), Some("en-US"));
    assert_eq!(approved.status, ProviderTemplateStatus::Approved);
    assert_eq!(approved.reason, None);
    assert!(
        approved
            .event_id
            .starts_with("wa:tpl:1689556908129832:APPROVED:1751247548:"),
        "{}",
        approved.event_id
    );

    let ProviderEvent::TemplateStatus(rejected) = one(TEMPLATE_REJECTED) else {
        panic!("one template event")
    };
    let reason = rejected.reason.clone().unwrap();
    assert!(
        reason.starts_with("INVALID_FORMAT: Your template has parameters"),
        "{reason}"
    );
    assert_eq!(
        rejected.status,
        ProviderTemplateStatus::Rejected {
            reason: Some(reason)
        }
    );
}

#[test]
fn quality_updates_and_unknown_fields_are_unrecognised_not_errors() {
    let ProviderEvent::Unrecognised { description } = one(QUALITY_UPDATE) else {
        panic!("one unrecognised event")
    };
    assert!(description.contains("welcome_template") && description.contains("GREEN -> YELLOW"));
    let other = r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update","value":{}}]}]}"#;
    assert!(matches!(
        events(other).as_slice(),
        [ProviderEvent::Unrecognised { .. }]
    ));
    let image = r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"16505551234","id":"wamid.I","timestamp":"1","type":"image","image":{"caption":"my receipt","id":"1"}},{"from":"16505551234","id":"wamid.S","timestamp":"1","type":"sticker"}]}}]}]}"#;
    let texts: Vec<String> = events(image)
        .into_iter()
        .map(|e| match e {
            ProviderEvent::Inbound(i) => i.text,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["[image] my receipt", "[sticker]"]);
}

#[test]
fn the_reference_webhooks_parse() {
    for (name, expect) in [
        ("webhook_inbound_text.json", "inbound"),
        ("webhook_status_sent.json", "status"),
        ("webhook_status_failed_131047_real.json", "status"),
        ("webhook_status_failed_131049.json", "status"),
        ("webhook_template_status_approved.json", "template"),
        ("webhook_template_status_rejected.json", "template"),
        ("webhook_template_quality_update.json", "unrecognised"),
    ] {
        let Some(bytes) = reference(&format!("whatsapp-examples/{name}")) else {
            return;
        };
        let body = String::from_utf8(bytes).unwrap();
        let evs = events(&body);
        let kind = match evs.as_slice() {
            [ProviderEvent::Inbound(_)] => "inbound",
            [ProviderEvent::Status(_)] => "status",
            [ProviderEvent::TemplateStatus(_)] => "template",
            [ProviderEvent::Unrecognised { .. }] => "unrecognised",
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(kind, expect, "{name}");
    }
}

#[test]
fn replays_give_the_same_event_ids() {
    for body in [INBOUND_TEXT, STATUS_SENT, FAILED_131047, TEMPLATE_REJECTED] {
        let ids = |evs: Vec<ProviderEvent>| -> Vec<String> {
            evs.iter()
                .map(|e| e.event_id().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(events(body)), ids(events(body)));
    }
}

/// Two verdicts on one template sent within the same second (same event word, another
/// reason) are two events; the same delivery again is one.
#[test]
fn template_verdicts_in_one_second_are_told_apart_by_what_they_say() {
    let verdict = |reason: &str, detail: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "time": 1751247548, "changes": [{"field": "message_template_status_update",
            "value": {"event": "REJECTED", "message_template_id": 1689556908129832u64,
                "message_template_name": "order_confirmation", "message_template_language": "en_US",
                "reason": reason, "rejection_info": {"reason": detail}}}]}]})
        .to_string()
    };
    let id = |body: &str| one(body).event_id().unwrap().to_owned();
    let first = verdict("INVALID_FORMAT", "A variable is at the start.");
    let second = verdict("TAG_CONTENT_MISMATCH", "The content is marketing.");
    assert_ne!(id(&first), id(&second));
    assert_eq!(id(&first), id(&first));
    assert_ne!(
        id(&first),
        id(&verdict("INVALID_FORMAT", "Another detail.")),
        "the details are part of what Meta said"
    );
}

#[test]
fn bad_signatures_are_refused_before_the_body_is_read() {
    let a = adapter("https://graph.facebook.com");
    let good = signed(STATUS_SENT);
    let mut wrong_secret = good.clone();
    wrong_secret.headers[1].1 = sign("other-secret", STATUS_SENT.as_bytes());
    let mut no_header = good.clone();
    no_header.headers.remove(1);
    let mut tampered = good.clone();
    tampered.body = STATUS_SENT.replace("sent", "read").into_bytes();
    let mut no_prefix = good.clone();
    no_prefix.headers[1].1 = no_prefix.headers[1].1.trim_start_matches("sha256=").into();
    let mut garbage = good.clone();
    garbage.body = b"\xff not json".to_vec();
    for (name, request) in [
        ("wrong secret", wrong_secret),
        ("no header", no_header),
        ("tampered body", tampered),
        ("no sha256= prefix", no_prefix),
        ("garbage body, old signature", garbage),
    ] {
        assert_eq!(
            a.parse_webhook(&request),
            Err(WebhookError::BadSignature),
            "{name}"
        );
    }
    // Upper-case hex is the same signature.
    let mut upper = good.clone();
    upper.headers[1].1 = format!(
        "sha256={}",
        upper.headers[1]
            .1
            .trim_start_matches("sha256=")
            .to_uppercase()
    );
    assert!(a.parse_webhook(&upper).is_ok());
}

#[test]
fn signed_but_malformed_bodies_are_malformed_not_panics() {
    let a = adapter("https://graph.facebook.com");
    for body in [
        "",
        "not json",
        "[1,2,3]",
        r#"{"entry": 5}"#,
        r#"{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1"}]}}]}]}"#,
        r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[{"status":"read"}]}}]}]}"#,
        r#"{"entry":[{"changes":[{"field":"message_template_status_update","value":{"event":"APPROVED"}}]}]}"#,
    ] {
        assert!(
            matches!(
                a.parse_webhook(&signed(body)),
                Err(WebhookError::Malformed(_))
            ),
            "{body}"
        );
    }
    assert!(matches!(
        a.parse_webhook(&WebhookRequest::new("PUT", "https://h/x")),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn subscription_handshake_echoes_the_challenge_only_for_the_right_token() {
    let a = adapter("https://graph.facebook.com");
    let get = |query: &str| {
        a.parse_webhook(&WebhookRequest::new(
            "GET",
            format!("https://herald.example/webhooks/whatsapp/ch1?{query}"),
        ))
    };
    assert_eq!(
        get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me"),
        Ok(WebhookOutcome::Challenge("1158201444".into()))
    );
    assert_eq!(
        get("hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong"),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        get("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me"),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(get(""), Err(WebhookError::BadSignature));
    assert!(matches!(
        get("hub.mode=subscribe&hub.verify_token=verify-me"),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn settings_are_validated_field_by_field() {
    let ok = settings("https://graph.facebook.com/");
    assert_eq!(ok.base_url, "https://graph.facebook.com");
    assert_eq!(ok.api_version, "v23.0");
    let defaults = WhatsappSettings::from_json(
        &json!({"phone_number_id": 1065, "waba_id": "1022"}),
        &json!({"access_token": "t", "app_secret": "s", "verify_token": "v"}),
    )
    .unwrap();
    assert_eq!(defaults.base_url, "https://graph.facebook.com");
    assert_eq!(defaults.phone_number_id, "1065");
    let e = WhatsappSettings::from_json(
        &json!({"api_version": "23", "phone_number_id": "+1 555", "waba_id": ""}),
        &json!({"access_token": "t"}),
    )
    .unwrap_err();
    assert!(e.get("api_version").unwrap().contains("v23.0"));
    assert!(e.get("phone_number_id").unwrap().contains("numeric ID"));
    assert!(e.get("waba_id").unwrap().contains("required"));
    assert!(e.get("app_secret").unwrap().contains("required"));
    assert!(e.get("verify_token").unwrap().contains("required"));
    assert_eq!(e.get("access_token"), None);
}

/// A 500 with Meta's error body: see [`assert_a_server_error_is_unknown_and_keeps_the_answer`].
#[tokio::test]
async fn a_server_error_with_a_body_is_unknown_and_keeps_what_meta_answered() {
    assert_a_server_error_is_unknown_and_keeps_the_answer(
        adapter,
        &positional_template(),
        "1",
        "An unknown error has occurred.",
    )
    .await;
}

/// An authentication template submission as Meta's reference has it.
fn authentication_submission(
    name: &str,
    button: crate::domain::template::OtpButton,
) -> TemplateSubmission {
    TemplateSubmission {
        name: name.into(),
        language: "en_US".into(),
        category: TemplateCategory::Authentication,
        parameter_format: ParameterFormat::Positional,
        header_text: None,
        body_text: String::new(),
        footer_text: None,
        buttons: Vec::new(),
        header_examples: Vec::new(),
        body_examples: Vec::new(),
        replaces: None,
        authentication: Some(crate::domain::template::Authentication {
            add_security_recommendation: true,
            code_expiration_minutes: Some(10),
            button,
            button_text: Some("Copy Code".into()),
        }),
    }
}

/// Meta's two reference examples of authentication templates (the WhatsApp OpenAPI file,
/// "Create authentication template w/ OTP copy code button" and "... one-tap autofill
/// button"), field for field.
#[test]
fn authentication_templates_are_built_as_metas_reference_does() {
    use crate::domain::template::OtpButton;
    let copy = template_body(&authentication_submission(
        "authentication_code_copy_code_button",
        OtpButton::CopyCode,
    ))
    .expect("a body");
    assert_eq!(
        copy,
        json!({
            "category": "AUTHENTICATION",
            "components": [
                {"add_security_recommendation": true, "type": "BODY"},
                {"code_expiration_minutes": 10, "type": "FOOTER"},
                {"buttons": [{"otp_type": "COPY_CODE", "text": "Copy Code", "type": "OTP"}],
                 "type": "BUTTONS"}
            ],
            "language": "en_US",
            "name": "authentication_code_copy_code_button"
        })
    );
    let one_tap = template_body(&authentication_submission(
        "authentication_code_autofill_button",
        OtpButton::OneTap {
            autofill_text: Some("Autofill".into()),
            package_name: "com.example.luckyshrub".into(),
            signature_hash: "K8a%2FAINcGX7".into(),
        },
    ))
    .expect("a body");
    assert_eq!(
        one_tap,
        json!({
            "category": "AUTHENTICATION",
            "components": [
                {"add_security_recommendation": true, "type": "BODY"},
                {"code_expiration_minutes": 10, "type": "FOOTER"},
                {"buttons": [{"autofill_text": "Autofill", "otp_type": "ONE_TAP",
                    "package_name": "com.example.luckyshrub", "signature_hash": "K8a%2FAINcGX7",
                    "text": "Copy Code", "type": "OTP"}],
                 "type": "BUTTONS"}
            ],
            "language": "en_US",
            "name": "authentication_code_autofill_button"
        })
    );
    // No free text anywhere, and no expiry footer when the code does not expire.
    let mut plain = authentication_submission("login_code", OtpButton::CopyCode);
    if let Some(a) = plain.authentication.as_mut() {
        a.code_expiration_minutes = None;
        a.button_text = None;
        a.add_security_recommendation = false;
    }
    let body = template_body(&plain).unwrap();
    assert_eq!(
        body["components"],
        json!([{"type": "BODY", "add_security_recommendation": false},
               {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE"}]}])
    );
    // An authentication template without its code button is refused before anything is sent.
    plain.authentication = None;
    plain.body_text = "{{1}} is your code.".into();
    let e = template_body(&plain).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("missing_otp_button"));
}

/// A send of an authentication template fills the code as Meta expects: the body's parameter
/// and the code button's (`sub_type: url`, index 0).
#[test]
fn an_authentication_send_fills_the_code_in_the_body_and_the_button() {
    use crate::domain::template::{OtpDraft, TemplateDraft, Variables, render, validate};
    let draft = TemplateDraft {
        name: "login_code".into(),
        language: "en_US".into(),
        category: "authentication".into(),
        otp: OtpDraft {
            otp_type: "copy_code".into(),
            ..OtpDraft::default()
        },
        ..TemplateDraft::default()
    };
    let valid = validate(crate::domain::channel::ChannelKind::Whatsapp, &draft).unwrap();
    let rendered = render(&valid, &Variables::Positional(vec!["J$FpnYnP".into()])).unwrap();
    let message = OutboundMessage {
        message_id: "m1".into(),
        to: phone("+16505551234"),
        content: rendered.content,
    };
    let body = message_body(&message);
    assert_eq!(
        body["template"],
        json!({
            "name": "login_code",
            "language": {"code": "en_US", "policy": "deterministic"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "J$FpnYnP"}]},
                {"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": "J$FpnYnP"}]}
            ]
        })
    );
}
