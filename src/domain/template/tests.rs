use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::domain::content::{ButtonKind, ButtonParam, MessageContent, TemplateParam};
use crate::domain::role::{Permission, Role};
use crate::domain::sms::SmsEncoding;

const WA: ChannelKind = ChannelKind::Whatsapp;
const SMS: ChannelKind = ChannelKind::Sms;
const VIBER: ChannelKind = ChannelKind::Viber;

fn samples(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn button(kind: &str, text: &str, target: &str) -> ButtonDraft {
    ButtonDraft {
        kind: kind.to_owned(),
        text: text.to_owned(),
        url: if kind == "url" {
            target.to_owned()
        } else {
            String::new()
        },
        phone_number: if kind == "phone_number" {
            target.to_owned()
        } else {
            String::new()
        },
    }
}

/// A WhatsApp draft with just a body and samples for `{{1}}`…`{{9}}`.
fn wa(body: &str) -> TemplateDraft {
    TemplateDraft {
        name: "order_update".into(),
        language: "en_US".into(),
        category: "utility".into(),
        body: body.into(),
        samples: (1..=9).map(|n| (n.to_string(), format!("v{n}"))).collect(),
        ..TemplateDraft::default()
    }
}

/// Drops the samples for placeholders the draft does not have, so they are not reported.
fn trimmed_samples(mut draft: TemplateDraft) -> TemplateDraft {
    let keys: Vec<String> = preview(WA, &draft)
        .placeholders
        .into_iter()
        .map(|p| p.name)
        .collect();
    draft.samples.retain(|k, _| keys.contains(k));
    draft
}

fn errors_for(kind: ChannelKind, draft: &TemplateDraft, field: &str) -> Vec<String> {
    match validate(kind, draft) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .for_field(field)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

fn body_errors(body: &str) -> Vec<String> {
    errors_for(WA, &trimmed_samples(wa(body)), "body")
}

fn assert_error(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no error containing {needle:?} in {errors:#?}"
    );
}

fn full_whatsapp() -> TemplateDraft {
    TemplateDraft {
        name: "order_update".into(),
        language: "en-us".into(),
        category: "Utility".into(),
        header: "Your order {{1}} is ready".into(),
        body: "Hi {{1}}, your order {{2}} ships today.\r\nReply *STOP* to opt out.".into(),
        footer: "Acme Shop".into(),
        buttons: vec![
            button("quick_reply", "Thanks", ""),
            button("quick_reply", "Stop updates", ""),
            button("url", "Track", "https://example.com/track/{{1}}"),
            button("phone_number", "Call us", "+1 415 555 0100"),
        ],
        samples: samples(&[
            ("header", "A-1"),
            ("1", "Alex"),
            ("2", "1234"),
            ("url_1", "ABC"),
        ]),
        ..TemplateDraft::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: WhatsApp

#[test]
fn a_full_whatsapp_template_is_valid_and_normalised() {
    let t = validate(WA, &full_whatsapp()).unwrap();
    assert_eq!(t.name().as_str(), "order_update");
    assert_eq!(t.language().as_str(), "en_US");
    assert_eq!(t.category(), Some(TemplateCategory::Utility));
    assert_eq!(t.parameter_format(), ParameterFormat::Positional);
    assert_eq!(t.header(), Some("Your order {{1}} is ready"));
    assert_eq!(
        t.body(),
        "Hi {{1}}, your order {{2}} ships today.\nReply *STOP* to opt out."
    );
    assert_eq!(t.footer(), Some("Acme Shop"));
    assert_eq!(t.buttons().len(), 4);
    assert_eq!(
        t.buttons()[3],
        Button::PhoneNumber {
            text: "Call us".into(),
            phone_number: "+14155550100".into()
        }
    );
    assert_eq!(t.samples().len(), 4);
}

#[test]
fn names_are_meta_style_identifiers() {
    let mut d = full_whatsapp();
    d.name = "Order Update!".into();
    let e = errors_for(WA, &d, "name");
    assert_error(&e, "\"Order Update!\"");
    assert_error(&e, "e.g. order_update");
    d.name = "  ".into();
    assert_error(&errors_for(WA, &d, "name"), "Enter a name");
    d.name = "a".repeat(513);
    assert_error(&errors_for(WA, &d, "name"), "512");
    d.name = "a".repeat(512);
    assert!(validate(WA, &d).is_ok());
}

#[test]
fn languages_are_locale_codes() {
    assert_eq!(Language::parse(WA, "pt-br").unwrap().as_str(), "pt_BR");
    assert_eq!(Language::parse(WA, " EN ").unwrap().as_str(), "en");
    assert_eq!(Language::parse(SMS, "fil").unwrap().as_str(), "fil");
    assert!(
        Language::parse(WA, "english")
            .unwrap_err()
            .contains("\"english\"")
    );
    assert!(Language::parse(WA, "en_").is_err());
    assert!(Language::parse(WA, "").unwrap_err().contains("Choose"));
    assert_eq!(Language::parse(VIBER, "PT-br").unwrap().as_str(), "pt_BR");
    assert_eq!(
        Language::parse(VIBER, "zh_hans").unwrap().as_str(),
        "zh-Hans"
    );
    assert!(
        Language::parse(VIBER, "en_US")
            .unwrap_err()
            .contains("Viber")
    );
}

#[test]
fn categories_belong_to_their_channel() {
    assert_eq!(
        TemplateCategory::parse(WA, "MARKETING"),
        Ok(Some(TemplateCategory::Marketing))
    );
    assert!(
        TemplateCategory::parse(WA, "otp")
            .unwrap_err()
            .contains("marketing, utility, authentication")
    );
    assert!(
        TemplateCategory::parse(WA, "")
            .unwrap_err()
            .contains("Choose")
    );
    assert_eq!(
        TemplateCategory::parse(VIBER, "otp"),
        Ok(Some(TemplateCategory::Otp))
    );
    assert!(
        TemplateCategory::parse(VIBER, "promotional")
            .unwrap_err()
            .contains("free text")
    );
    assert_eq!(TemplateCategory::parse(SMS, ""), Ok(None));
    assert!(TemplateCategory::parse(SMS, "utility").is_err());
    for c in TemplateCategory::ALL {
        assert_eq!(c.provider_str(), c.as_str().to_ascii_uppercase());
    }
}

#[test]
fn numbered_placeholders_run_without_gaps() {
    let e = body_errors("Hello there {{1}} and also {{3}} thanks a lot friend");
    assert_error(
        &e,
        "Placeholders must be numbered 1, 2, 3… without gaps: {{2}} is missing.",
    );
    let e = body_errors("Hello there {{1}} and also {{4}} thanks a lot friend, and more words");
    assert_error(&e, "{{2}}, {{3}} are missing");
    // Out of order is fine, as long as none is missing.
    assert!(body_errors("Hello {{2}} and then {{1}} for real, thank you").is_empty());
}

#[test]
fn numbered_and_named_placeholders_do_not_mix() {
    let mut d = wa("Hello {{1}} and {{first_name}} how are you today");
    d.samples = samples(&[("1", "a"), ("first_name", "b")]);
    assert_error(&errors_for(WA, &d, "body"), "Do not mix numbered");
    let mut d = wa("Hello {{first_name}}, how are you today");
    d.header = "Order {{1}} ready".into();
    d.samples = samples(&[("header", "a"), ("first_name", "b")]);
    assert_error(&errors_for(WA, &d, "header"), "Do not mix numbered");
}

#[test]
fn placeholders_cannot_lead_trail_or_touch() {
    assert_error(
        &body_errors("{{1}}, your order is ready for pickup today"),
        "cannot start with a placeholder: add words before {{1}} (Meta error 2388299)",
    );
    assert_error(
        &body_errors("Hello, your order is ready for pickup, {{1}}"),
        "cannot end with a placeholder",
    );
    // Punctuation after it does not count as words.
    assert_error(
        &body_errors("Hello, your order is ready for pickup, {{1}}."),
        "add words after {{1}}",
    );
    assert_error(
        &body_errors("Hello friend {{1}}{{2}} your order is ready now"),
        "{{1}} and {{2}} are next to each other",
    );
    assert_error(
        &body_errors("Hello friend {{1}} {{2}} your order is ready now"),
        "next to each other",
    );
    assert!(body_errors("Hello friend {{1}} and {{2}} your order is ready now").is_empty());
}

#[test]
fn too_many_placeholders_for_the_words_is_rejected() {
    // Two integrators' examples: 3 placeholders and 7 words pass, 4 and 8 do not.
    let e =
        body_errors("Dear Guest, Reservation {{1}} arriving from {{2}} departs on {{3}} today.");
    assert!(!e.iter().any(|m| m.contains("2388293")), "{e:?}");
    let e = body_errors("Hello {{1}}, your order {{2}} for {{3}} will be delivered by {{4}} soon");
    assert!(!e.iter().any(|m| m.contains("2388293")), "{e:?}");
    let e = body_errors("Hi {{1}}, your order {{2}} for {{3}} comes by {{4}} soon.");
    assert_error(
        &e,
        "with 4 placeholders Meta expects at least 9 other words, and this text has 7 (Meta error 2388293)",
    );
}

#[test]
fn malformed_braces_are_reported_at_the_field() {
    let e = body_errors("Hello {{ 1 }} your order is ready now");
    assert_error(&e, "\"{{ 1 }}\" has spaces inside the braces: write {{1}}");
    assert_error(
        &body_errors("Hello {{1} your order is ready"),
        "is not closed",
    );
    assert_error(&body_errors("Hello {{}} your order is ready"), "is empty");
    assert_error(
        &body_errors("Hello {{FirstName}} your order is ready"),
        "lowercase letters and underscores",
    );
}

#[test]
fn html_is_rejected_and_whatsapp_formatting_is_not() {
    let e = body_errors("<b>Hello</b> your order is ready");
    assert_error(&e, "\"<b>\" looks like HTML");
    assert_error(&e, "*bold*");
    let e = body_errors("Hello <script src=x.js> there");
    assert_error(&e, "code is never run");
    assert!(
        body_errors("*Hello* _there_, ~old~ ```mono``` price < 5 and > 2, I <3 you").is_empty()
    );
}

#[test]
fn a_placeholder_may_appear_once_on_whatsapp() {
    assert_error(
        &body_errors("Hello {{1}} and again {{1}} for your order today"),
        "{{1}} is used more than once",
    );
}

#[test]
fn body_length_and_presence() {
    let e = errors_for(WA, &wa(""), "body");
    assert_error(&e, "Enter the text");
    let e = body_errors(&"a".repeat(1025));
    assert_error(
        &e,
        "WhatsApp allows at most 1024 characters in the text; this one has 1025.",
    );
    assert!(body_errors(&"é".repeat(1024)).is_empty());
}

#[test]
fn header_rules() {
    let with_header = |header: &str, sample: Option<&str>| {
        let mut d = wa("Hello there, your order is ready");
        d.samples.clear();
        d.header = header.into();
        if let Some(s) = sample {
            d.samples.insert("header".into(), s.into());
        }
        errors_for(WA, &d, "header")
    };
    assert!(with_header("Order {{1}} is ready", Some("A1")).is_empty());
    assert_error(
        &with_header(&"h".repeat(61), None),
        "at most 60 characters in the header",
    );
    assert_error(
        &with_header("Order {{1}} and {{2}} ok", Some("x")),
        "one placeholder at most",
    );
    assert_error(
        &with_header("Order {{2}} is ready", None),
        "write {{1}} instead of {{2}}",
    );
    assert_error(&with_header("Order\nready", None), "one line");
    assert_error(
        &with_header("Your order {{1}}", Some("A1")),
        "cannot end with a placeholder",
    );
}

#[test]
fn footer_rules() {
    let mut d = wa("Hello there, your order is ready");
    d.samples.clear();
    d.footer = "Reply {{1}} to stop".into();
    assert_error(&errors_for(WA, &d, "footer"), "cannot have placeholders");
    d.footer = "f".repeat(61);
    assert_error(
        &errors_for(WA, &d, "footer"),
        "at most 60 characters in the footer",
    );
}

fn with_buttons(buttons: Vec<ButtonDraft>, sample_keys: &[&str]) -> TemplateDraft {
    let mut d = wa("Hello there, your order is ready");
    d.samples = sample_keys
        .iter()
        .map(|k| ((*k).to_owned(), "x".to_owned()))
        .collect();
    d.buttons = buttons;
    d
}

#[test]
fn button_limits() {
    let many: Vec<ButtonDraft> = (0..11)
        .map(|i| button("quick_reply", &format!("Q{i}"), ""))
        .collect();
    let d = with_buttons(many, &[]);
    assert_error(
        &errors_for(WA, &d, "buttons"),
        "at most 10 buttons; this one has 11",
    );
    assert_error(
        &errors_for(WA, &d, "buttons[10].kind"),
        "at most 10 quick-reply",
    );

    let d = with_buttons(
        vec![
            button("url", "A", "https://a.example/x"),
            button("url", "B", "https://b.example/x"),
            button("url", "C", "https://c.example/x"),
        ],
        &[],
    );
    assert_error(
        &errors_for(WA, &d, "buttons[2].kind"),
        "at most 2 link buttons",
    );

    let d = with_buttons(
        vec![
            button("phone_number", "A", "+14155550100"),
            button("phone_number", "B", "+14155550101"),
        ],
        &[],
    );
    assert_error(
        &errors_for(WA, &d, "buttons[1].kind"),
        "at most 1 phone button",
    );

    let d = with_buttons(vec![button("quick_reply", &"l".repeat(26), "")], &[]);
    assert_error(
        &errors_for(WA, &d, "buttons[0].text"),
        "at most 25 characters",
    );
    let d = with_buttons(vec![button("", "Label", "")], &[]);
    assert_error(
        &errors_for(WA, &d, "buttons[0].kind"),
        "Choose the button's type",
    );
    let d = with_buttons(vec![button("quick_reply", " ", "")], &[]);
    assert_error(
        &errors_for(WA, &d, "buttons[0].text"),
        "Enter the button's label",
    );
    let d = with_buttons(vec![button("copy_code", "Copy", "")], &[]);
    assert_error(&errors_for(WA, &d, "buttons[0].kind"), "\"copy_code\"");
}

#[test]
fn quick_replies_are_grouped() {
    let d = with_buttons(
        vec![
            button("quick_reply", "A", ""),
            button("url", "B", "https://b.example/x"),
            button("quick_reply", "C", ""),
        ],
        &[],
    );
    assert_error(&errors_for(WA, &d, "buttons[2].kind"), "next to each other");
    let d = with_buttons(
        vec![
            button("url", "B", "https://b.example/x"),
            button("quick_reply", "A", ""),
            button("quick_reply", "C", ""),
        ],
        &[],
    );
    assert!(validate(WA, &d).is_ok());
}

#[test]
fn blank_button_rows_are_ignored_but_keep_their_index() {
    let d = with_buttons(
        vec![ButtonDraft::default(), button("url", "Go", "ftp://x")],
        &[],
    );
    assert_error(
        &errors_for(WA, &d, "buttons[1].url"),
        "must start with https://",
    );
    let d = with_buttons(
        vec![ButtonDraft::default(), button("quick_reply", "Ok", "")],
        &[],
    );
    assert_eq!(validate(WA, &d).unwrap().buttons().len(), 1);
}

#[test]
fn url_buttons_take_one_placeholder_at_the_end_with_a_sample() {
    let url = |u: &str, keys: &[&str]| {
        errors_for(
            WA,
            &with_buttons(vec![button("url", "Go", u)], keys),
            "buttons[0].url",
        )
    };
    assert!(url("https://example.com/track/{{1}}", &["url_1"]).is_empty());
    assert_error(
        &url("https://example.com/{{1}}/track", &["url_1"]),
        "very end",
    );
    assert_error(&url("https://example.com/{{2}}", &["url_1"]), "as {{1}}");
    assert_error(
        &url("https://example.com/{{1}}{{1}}", &["url_1"]),
        "one placeholder",
    );
    assert_error(&url("https://{{1}}", &["url_1"]), "needs a domain");
    assert_error(
        &url("example.com/x", &[]),
        "must start with https:// or http://",
    );
    assert_error(&url("https://exa mple.com", &[]), "spaces");
    assert_error(
        &url(&format!("https://e.com/{}", "x".repeat(2000)), &[]),
        "2000",
    );
    let d = with_buttons(
        vec![button("url", "Go", "https://example.com/t/{{1}}")],
        &[],
    );
    assert_error(
        &errors_for(WA, &d, "samples.url_1"),
        "sample value for {{1}} in the link of button 1",
    );
}

#[test]
fn phone_buttons_need_an_international_number() {
    let phone = |p: &str| {
        errors_for(
            WA,
            &with_buttons(vec![button("phone_number", "Call", p)], &[]),
            "buttons[0].phone_number",
        )
    };
    assert!(phone("+44 20 7946 0018").is_empty());
    assert_error(&phone("020 7946 0018"), "no country code");
    assert_error(&phone("+1 415 555 0100 ext 12345"), "20 characters");
    assert_error(&phone(""), "Enter the number");
}

#[test]
fn every_placeholder_needs_a_sample_and_unknown_samples_are_reported() {
    let mut d = wa("Hello {{first_name}}, your order is ready");
    d.samples = samples(&[("first_nmae", "Alex")]);
    let errors = validate(WA, &d).unwrap_err();
    assert_error(
        &errors
            .for_field("samples.first_name")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        "Enter a sample value for {{first_name}}",
    );
    assert_error(
        &errors
            .for_field("samples.first_nmae")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        "no placeholder \"first_nmae\"",
    );
    // A blank leftover field from the form is not worth an error.
    d.samples = samples(&[("first_name", "Alex"), ("2", " ")]);
    assert!(validate(WA, &d).is_ok());
}

#[test]
fn samples_follow_the_parameter_rules() {
    let mut d = wa("Hello {{1}}, your order is ready");
    d.samples = samples(&[("1", "Alex\tSmith")]);
    assert_error(&errors_for(WA, &d, "samples.1"), "line breaks or tabs");
    d.samples = samples(&[("1", "Alex      Smith")]);
    assert_error(&errors_for(WA, &d, "samples.1"), "more than 4 spaces");
}

#[test]
fn images_are_viber_only() {
    let mut d = wa("Hello there, your order is ready");
    d.samples.clear();
    d.image_url = "https://example.com/a.png".into();
    assert_error(&errors_for(WA, &d, "image_url"), "only Viber");
}

#[test]
fn every_problem_is_reported_at_once() {
    let d = TemplateDraft {
        name: "Bad Name".into(),
        body: "{{1}} hi".into(),
        ..TemplateDraft::default()
    };
    let errors = validate(WA, &d).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for f in ["name", "language", "category", "body", "samples.1"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    assert!(errors.to_string().starts_with("name: "), "{errors}");
}

// ---------------------------------------------------------------------------------------------
// Validation: Viber and SMS

fn viber(body: &str, category: &str) -> TemplateDraft {
    TemplateDraft {
        name: "order_shipped".into(),
        language: "en".into(),
        category: category.into(),
        body: body.into(),
        ..TemplateDraft::default()
    }
}

#[test]
fn a_viber_template_uses_infobips_rules() {
    let mut d = viber(
        "Your order {{orderId}} has shipped, thank you.",
        "transactional",
    );
    d.samples = samples(&[("orderId", "ORD-1")]);
    d.buttons = vec![ButtonDraft {
        text: "Track".into(),
        url: "https://example.com/t".into(),
        ..ButtonDraft::default()
    }];
    d.image_url = "https://example.com/i.png".into();
    let t = validate(VIBER, &d).unwrap();
    assert_eq!(t.parameter_format(), ParameterFormat::Named);
    assert_eq!(t.buttons().len(), 1);

    let mut d = viber("Your order has shipped: {{orderId}}.", "transactional");
    d.samples = samples(&[("orderId", "ORD-1")]);
    assert_error(
        &errors_for(VIBER, &d, "body"),
        "The last word cannot be a placeholder",
    );

    let d = viber("Your code is ready, use it soon", "otp");
    assert_error(&errors_for(VIBER, &d, "body"), "must contain {{pin}}");

    let body: String = (1..=9)
        .map(|i| format!("word {{{{p{i}}}}} "))
        .collect::<String>()
        + "end";
    let mut d = viber(&body, "transactional");
    d.samples = (1..=9).map(|i| (format!("p{i}"), "x".to_owned())).collect();
    assert_error(&errors_for(VIBER, &d, "body"), "at most 8 placeholders");

    let mut d = viber("Your order {{id}} has shipped, thanks", "transactional");
    d.samples = samples(&[("id", &"x".repeat(126))]);
    assert_error(&errors_for(VIBER, &d, "samples.id"), "at most 125");

    let mut d = viber(&"a".repeat(1001), "transactional");
    d.header = "Hi".into();
    assert_error(&errors_for(VIBER, &d, "body"), "1000");
    assert_error(&errors_for(VIBER, &d, "header"), "no header");
}

#[test]
fn a_viber_button_is_one_https_link() {
    let mut d = viber("Your order has shipped, thanks", "transactional");
    d.buttons = vec![button("url", &"t".repeat(31), "http://example.com")];
    assert_error(&errors_for(VIBER, &d, "buttons[0].text"), "at most 30");
    assert_error(&errors_for(VIBER, &d, "buttons[0].url"), "https://");
    d.buttons = vec![
        button("url", "A", "https://a.com"),
        button("url", "B", "https://b.com"),
    ];
    assert_error(&errors_for(VIBER, &d, "buttons"), "one button at most");
    d.buttons = vec![button("phone_number", "A", "+14155550100")];
    assert_error(&errors_for(VIBER, &d, "buttons[0].kind"), "type is url");
    d.buttons.clear();
    d.image_url = "http://example.com/i.png".into();
    assert_error(&errors_for(VIBER, &d, "image_url"), "https://");
}

fn sms(body: &str) -> TemplateDraft {
    TemplateDraft {
        name: "welcome".into(),
        language: "en".into(),
        body: body.into(),
        ..TemplateDraft::default()
    }
}

#[test]
fn an_sms_text_is_a_body_with_optional_samples() {
    let t = validate(
        SMS,
        &sms("{{first_name}}, welcome to {{shop2}}! Reply STOP to opt out"),
    )
    .unwrap();
    assert_eq!(t.parameter_format(), ParameterFormat::Named);
    assert_eq!(t.category(), None);
    // Placement and repetition rules are Meta's, not SMS's.
    assert!(validate(SMS, &sms("{{1}}{{1}}")).is_ok());

    assert_error(
        &errors_for(SMS, &sms(&"a".repeat(1601)), "body"),
        "SMS allows at most 1600",
    );
    let mut d = sms("Hello");
    d.header = "Hi".into();
    d.footer = "Bye".into();
    d.category = "utility".into();
    d.buttons = vec![button("quick_reply", "Ok", "")];
    let errors = validate(SMS, &d).unwrap_err();
    for field in ["header", "footer", "category", "buttons"] {
        assert!(!errors.for_field(field).is_empty(), "{field}: {errors}");
    }
}

#[test]
fn drafts_and_templates_survive_json() {
    let draft = full_whatsapp();
    let json = serde_json::to_string(&draft).unwrap();
    assert_eq!(serde_json::from_str::<TemplateDraft>(&json).unwrap(), draft);
    let partial: TemplateDraft = serde_json::from_str(r#"{"body": "Hi"}"#).unwrap();
    assert_eq!(partial.body, "Hi");

    let t = validate(WA, &draft).unwrap();
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<ValidTemplate>(&json).unwrap(), t);
    // Editing a valid template starts from a draft that validates to the same template.
    assert_eq!(validate(WA, &t.to_draft()).unwrap(), t);
}

// ---------------------------------------------------------------------------------------------
// Placeholders

#[test]
fn placeholders_list_header_body_then_buttons() {
    let mut d = full_whatsapp();
    d.body = "Hi {{2}}, your order {{1}} ships today. Reply STOP to opt out.".into();
    let t = validate(WA, &d).unwrap();
    let list = placeholders(&t);
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["header", "1", "2", "url_1"]);
    assert_eq!(list[0].location, PlaceholderLocation::Header);
    assert_eq!(list[0].placeholder, "{{1}}");
    assert_eq!(list[3].location, PlaceholderLocation::Button { index: 2 });
    assert_eq!(list[1].sample, "Alex");
    let json = serde_json::to_value(&list[3]).unwrap();
    assert_eq!(json["location"]["component"], "button");
    assert_eq!(json["location"]["index"], 2);
}

fn named_whatsapp() -> ValidTemplate {
    let d = TemplateDraft {
        header: "Order {{order_id}} is ready".into(),
        body: "Hi {{first_name}}, your order {{order_id}} is ready for pickup today.".into(),
        samples: samples(&[("first_name", "Alex"), ("order_id", "A-1")]),
        ..wa("")
    };
    validate(WA, &d).unwrap()
}

#[test]
fn a_named_placeholder_in_header_and_body_is_one_variable() {
    let t = named_whatsapp();
    assert_eq!(t.parameter_format(), ParameterFormat::Named);
    let list = placeholders(&t);
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["order_id", "first_name", "order_id"]);
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn strings(values: &[&str]) -> Variables {
    Variables::Positional(values.iter().map(|v| (*v).to_owned()).collect())
}

fn named(pairs: &[(&str, &str)]) -> Variables {
    Variables::Named(samples(pairs))
}

#[test]
fn whatsapp_positional_render_fills_every_component() {
    let t = validate(WA, &full_whatsapp()).unwrap();
    let r = render(&t, &strings(&["A-9", "Sam", "77", "AB CD/é"])).unwrap();
    assert_eq!(
        r.text,
        "Your order A-9 is ready\n\nHi Sam, your order 77 ships today.\nReply *STOP* to opt out.\n\nAcme Shop"
    );
    let MessageContent::Template(c) = r.content else {
        panic!("not a template");
    };
    assert_eq!(c.name, "order_update");
    assert_eq!(c.language, "en_US");
    assert_eq!(c.parameter_format, ParameterFormat::Positional);
    let param = |v: &str| TemplateParam {
        name: None,
        value: v.into(),
    };
    assert_eq!(c.header, vec![param("A-9")]);
    assert_eq!(c.body, vec![param("Sam"), param("77")]);
    assert_eq!(
        c.buttons,
        vec![ButtonParam {
            index: 2,
            kind: ButtonKind::Url,
            value: "AB%20CD/%C3%A9".into()
        }]
    );
    assert_eq!(c.rendered, r.text);
}

#[test]
fn numbered_values_fill_by_number_not_by_position_in_the_text() {
    let mut d = wa("Hello {{2}} and then {{1}} for real, thank you");
    d = trimmed_samples(d);
    let t = validate(WA, &d).unwrap();
    let r = render(&t, &strings(&["first", "second"])).unwrap();
    assert_eq!(r.text, "Hello second and then first for real, thank you");
    let r2 = render(&t, &named(&[("1", "first"), ("2", "second")])).unwrap();
    assert_eq!(r2, r);
}

#[test]
fn named_render_carries_the_names() {
    let t = named_whatsapp();
    let r = render(&t, &named(&[("first_name", "Alex"), ("order_id", "Z-9")])).unwrap();
    assert_eq!(
        r.text,
        "Order Z-9 is ready\n\nHi Alex, your order Z-9 is ready for pickup today."
    );
    let MessageContent::Template(c) = r.content else {
        panic!("not a template");
    };
    let param = |n: &str, v: &str| TemplateParam {
        name: Some(n.into()),
        value: v.into(),
    };
    assert_eq!(c.header, vec![param("order_id", "Z-9")]);
    assert_eq!(
        c.body,
        vec![param("first_name", "Alex"), param("order_id", "Z-9")]
    );
    // A list fills the distinct names in placeholder order.
    let by_list = render(&t, &strings(&["Z-9", "Alex"])).unwrap();
    assert_eq!(by_list.text, r.text);
}

#[test]
fn render_errors_name_the_variable() {
    let t = validate(WA, &full_whatsapp()).unwrap();
    let e = render(&t, &strings(&["A-9", "Sam"])).unwrap_err();
    assert_eq!(e, RenderError::MissingVariable { name: "2".into() });
    assert_eq!(e.code(), "missing_variable");
    assert_eq!(e.to_string(), "No value for {{2}}.");

    let e = render(&t, &strings(&["a", "b", "c", "d", "e"])).unwrap_err();
    assert_eq!(e.code(), "too_many_variables");

    let e = render(
        &t,
        &named(&[
            ("header", "A"),
            ("1", "B"),
            ("2", "C"),
            ("url_1", "D"),
            ("3", "E"),
        ]),
    )
    .unwrap_err();
    assert_eq!(e, RenderError::UnknownVariable { name: "3".into() });
    assert_eq!(e.code(), "unknown_variable");

    let e = render(&t, &named(&[("header", "A"), ("1", "B"), ("2", "C")])).unwrap_err();
    assert_eq!(e.to_string(), "No value for the link of URL button 1.");

    let e = render(&t, &strings(&["A", " ", "C", "D"])).unwrap_err();
    assert_eq!(e, RenderError::EmptyValue { name: "1".into() });
    assert_eq!(e.code(), "empty_value");

    let e = render(&t, &strings(&["A", "B\nC", "C", "D"])).unwrap_err();
    assert_eq!(e.code(), "invalid_value");
    assert!(
        e.to_string().contains("{{1}}") && e.to_string().contains("line breaks"),
        "{e}"
    );
    let e = render(&t, &strings(&["A", "B      C", "C", "D"])).unwrap_err();
    assert!(e.to_string().contains("4 spaces"), "{e}");
}

#[test]
fn values_that_make_a_part_too_long_are_refused() {
    let t = validate(WA, &full_whatsapp()).unwrap();
    let long = "x".repeat(1000);
    let e = render(&t, &strings(&["A", "B", &long, "D"])).unwrap_err();
    let RenderError::TooLong {
        name,
        part,
        limit,
        actual,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!((name.as_str(), *part, *limit), ("2", "text", 1024));
    assert_eq!(*actual, t.body().chars().count() - 10 + 1 + 1000);
    assert_eq!(e.code(), "too_long");
    assert!(e.to_string().contains("{{2}}"), "{e}");

    let e = render(&t, &strings(&[&"h".repeat(50), "B", "C", "D"])).unwrap_err();
    assert!(
        matches!(
            e,
            RenderError::TooLong {
                part: "header",
                limit: 60,
                ..
            }
        ),
        "{e:?}"
    );

    let e = render(&t, &strings(&["A", "B", "C", &"u".repeat(2000)])).unwrap_err();
    assert!(
        matches!(
            e,
            RenderError::TooLong {
                part: "button link",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn sms_renders_to_text_and_viber_to_a_named_template() {
    let t = validate(
        SMS,
        &sms("Hi {{first_name}}, welcome!\nReply STOP to opt out"),
    )
    .unwrap();
    let r = render(&t, &named(&[("first_name", "Zoë")])).unwrap();
    assert_eq!(
        r.content,
        MessageContent::Text {
            body: "Hi Zoë, welcome!\nReply STOP to opt out".into()
        }
    );
    let e = render(&t, &named(&[("first_name", &"x".repeat(1600))])).unwrap_err();
    assert!(
        matches!(e, RenderError::TooLong { limit: 1600, .. }),
        "{e:?}"
    );

    let mut d = viber(
        "Your order {{orderId}} has shipped, thank you.",
        "transactional",
    );
    d.samples = samples(&[("orderId", "ORD-1")]);
    let t = validate(VIBER, &d).unwrap();
    let r = render(&t, &named(&[("orderId", "ORD-7")])).unwrap();
    let MessageContent::Template(c) = r.content else {
        panic!("not a template");
    };
    assert_eq!(c.parameter_format, ParameterFormat::Named);
    assert_eq!(
        c.body,
        vec![TemplateParam {
            name: Some("orderId".into()),
            value: "ORD-7".into()
        }]
    );
    assert_eq!(c.rendered, "Your order ORD-7 has shipped, thank you.");
}

#[test]
fn variables_read_as_a_list_or_a_map_in_json() {
    let list: Variables = serde_json::from_str(r#"["a", "b"]"#).unwrap();
    assert_eq!(list, strings(&["a", "b"]));
    let map: Variables = serde_json::from_str(r#"{"first_name": "Alex"}"#).unwrap();
    assert_eq!(map, named(&[("first_name", "Alex")]));
}

// ---------------------------------------------------------------------------------------------
// Preview

#[test]
fn an_invalid_draft_still_previews() {
    let mut d = wa("Hi {{1}}, order {{3}} ships {{ 4 }} today, thank you.");
    d.samples = samples(&[("1", "Alex")]);
    d.buttons = vec![ButtonDraft {
        kind: "URL".into(),
        ..button("url", "Track", "https://example.com/t/{{1}}")
    }];
    let p = preview(WA, &d);
    assert_eq!(
        p.body,
        "Hi Alex, order {{3}} ships {{ 4 }} today, thank you."
    );
    assert!(!p.problems.for_field("body").is_empty());
    let names: Vec<&str> = p.placeholders.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["1", "3", "url_1"]);
    assert_eq!(
        p.buttons[0].target.as_deref(),
        Some("https://example.com/t/{{1}}")
    );
    assert_eq!(p.sms, None);
}

#[test]
fn a_valid_template_previews_with_its_samples() {
    let t = validate(WA, &full_whatsapp()).unwrap();
    let p = t.preview();
    assert!(p.problems.is_empty(), "{}", p.problems);
    assert_eq!(p.header.as_deref(), Some("Your order A-1 is ready"));
    assert_eq!(p.footer.as_deref(), Some("Acme Shop"));
    assert_eq!(
        p.buttons[2].target.as_deref(),
        Some("https://example.com/track/ABC")
    );
    assert_eq!(p.buttons[3].kind, "phone_number");
    assert!(p.text.starts_with("Your order A-1 is ready\n\nHi Alex"));
}

#[test]
fn an_sms_preview_counts_segments_of_the_filled_text() {
    let mut d = sms("Hi {{name}}, your code is ready");
    d.samples = samples(&[("name", "François")]);
    let p = preview(SMS, &d);
    assert_eq!(p.text, "Hi François, your code is ready");
    let info = p.sms.unwrap();
    assert_eq!(info.encoding, SmsEncoding::Ucs2);
    assert_eq!(info.non_gsm_chars, vec!['ç']);
    assert_eq!(info.segments, 1);
}

#[test]
fn an_empty_draft_previews_as_empty() {
    let p = preview(WA, &TemplateDraft::default());
    assert_eq!(p.text, "");
    assert!(!p.problems.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Variables from contacts

fn contact(key: &str) -> Option<String> {
    match key {
        "name" => Some("Alex".into()),
        "city" => Some("  ".into()),
        "phone" => Some("+14155550100".into()),
        _ => None,
    }
}

#[test]
fn variables_come_from_contact_fields_with_fallbacks() {
    let mapping: VariableMapping = [
        (
            "1".to_owned(),
            VariableSource::Attribute { key: "name".into() },
        ),
        (
            "2".to_owned(),
            VariableSource::AttributeWithFallback {
                key: "city".into(),
                fallback: "your city".into(),
            },
        ),
        (
            "3".to_owned(),
            VariableSource::Fixed {
                text: "SPRING".into(),
            },
        ),
    ]
    .into();
    let vars = resolve(&mapping, &contact).unwrap();
    assert_eq!(
        vars,
        named(&[("1", "Alex"), ("2", "your city"), ("3", "SPRING")])
    );

    let missing: VariableMapping = [(
        "1".to_owned(),
        VariableSource::Attribute {
            key: "email".into(),
        },
    )]
    .into();
    let e = resolve(&missing, &contact).unwrap_err();
    assert_eq!(
        e,
        RenderError::MissingAttribute {
            name: "1".into(),
            attribute: "email".into()
        }
    );
    assert_eq!(e.to_string(), "The contact has no \"email\" for {{1}}.");
    assert!(CONTACT_FIELDS.contains(&"email"));
}

#[test]
fn mappings_are_checked_before_a_send() {
    let t = validate(WA, &full_whatsapp()).unwrap();
    let mut mapping: VariableMapping = [
        (
            "header".to_owned(),
            VariableSource::Fixed { text: "A-1".into() },
        ),
        (
            "1".to_owned(),
            VariableSource::Attribute { key: "name".into() },
        ),
        ("2".to_owned(), VariableSource::Fixed { text: " ".into() }),
        ("9".to_owned(), VariableSource::Fixed { text: "x".into() }),
    ]
    .into();
    let errors = check_mapping(&t, &mapping).unwrap_err();
    assert!(!errors.for_field("variables.2").is_empty());
    assert!(errors.for_field("variables.url_1")[0].contains("link of URL button 1"));
    assert!(errors.for_field("variables.9")[0].contains("no placeholder"));

    mapping.remove("9");
    mapping.insert("2".into(), VariableSource::Fixed { text: "77".into() });
    mapping.insert(
        "url_1".into(),
        VariableSource::AttributeWithFallback {
            key: "order".into(),
            fallback: "latest".into(),
        },
    );
    assert_eq!(check_mapping(&t, &mapping), Ok(()));
    let vars = resolve(&mapping, &contact).unwrap();
    let r = render(&t, &vars).unwrap();
    assert!(r.text.contains("Hi Alex, your order 77"), "{}", r.text);
}

// ---------------------------------------------------------------------------------------------
// Review workflow

const AUTHOR: i64 = 1;

fn person(id: i64, role: Role) -> Reviewer {
    Reviewer { user_id: id, role }
}

#[test]
fn drafted_by_one_approved_by_another_then_by_the_provider() {
    let author = person(AUTHOR, Role::Marketer);
    let lead = person(2, Role::SupportLead);
    let s = TemplateState::new();
    assert!(!s.is_sendable(WA));
    let s = s.apply(ReviewAction::Submit, &author, AUTHOR).unwrap();
    assert_eq!(s.review, ReviewStatus::InReview);
    let s = s.apply(ReviewAction::Approve, &lead, AUTHOR).unwrap();
    assert_eq!(s.review, ReviewStatus::Approved);
    assert!(s.awaits_provider_submission(WA));
    assert!(!s.is_sendable(WA));
    assert!(
        s.why_not_sendable(WA)
            .unwrap()
            .contains("not submitted to Meta")
    );
    let s = s.with_provider(ProviderApproval::Pending);
    assert!(s.why_not_sendable(WA).unwrap().contains("24 hours"));
    let s = s.with_provider(ProviderApproval::Approved);
    assert!(s.is_sendable(WA));
    assert!(is_sendable(WA, &s.review, &s.provider));
}

#[test]
fn nobody_approves_their_own_template_not_even_an_admin() {
    let admin = person(AUTHOR, Role::Admin);
    let s = TemplateState::new()
        .apply(ReviewAction::Submit, &admin, AUTHOR)
        .unwrap();
    let e = s.apply(ReviewAction::Approve, &admin, AUTHOR).unwrap_err();
    assert_eq!(e, ReviewError::OwnTemplate);
    assert_eq!(e.code(), "own_template");
    let e = s
        .apply(ReviewAction::Reject { note: "no".into() }, &admin, AUTHOR)
        .unwrap_err();
    assert_eq!(e, ReviewError::OwnTemplate);
    // The author can take it back instead.
    let back = s.apply(ReviewAction::Withdraw, &admin, AUTHOR).unwrap();
    assert_eq!(back.review, ReviewStatus::Draft);
}

#[test]
fn only_reviewers_approve_or_reject() {
    let author = person(AUTHOR, Role::Marketer);
    let other_marketer = person(3, Role::Marketer);
    let s = TemplateState::new()
        .apply(ReviewAction::Submit, &author, AUTHOR)
        .unwrap();
    let e = s
        .apply(ReviewAction::Approve, &other_marketer, AUTHOR)
        .unwrap_err();
    assert_eq!(e, ReviewError::NotPermitted(Permission::ReviewTemplates));
    assert_eq!(e.to_string(), "You may not approve or reject templates.");
    let e = s
        .apply(ReviewAction::Withdraw, &other_marketer, AUTHOR)
        .unwrap_err();
    assert_eq!(e.code(), "forbidden");
}

#[test]
fn a_rejection_needs_a_note_and_can_be_resubmitted() {
    let author = person(AUTHOR, Role::Marketer);
    let lead = person(2, Role::SupportLead);
    let s = TemplateState::new()
        .apply(ReviewAction::Submit, &author, AUTHOR)
        .unwrap();
    let e = s
        .apply(ReviewAction::Reject { note: "  ".into() }, &lead, AUTHOR)
        .unwrap_err();
    assert_eq!(e, ReviewError::NoteRequired);
    let e = s
        .apply(
            ReviewAction::Reject {
                note: "x".repeat(2001),
            },
            &lead,
            AUTHOR,
        )
        .unwrap_err();
    assert_eq!(e, ReviewError::NoteTooLong);
    let s = s
        .apply(
            ReviewAction::Reject {
                note: " Too pushy ".into(),
            },
            &lead,
            AUTHOR,
        )
        .unwrap();
    assert_eq!(s.review.note(), Some("Too pushy"));
    assert_eq!(
        s.why_not_sendable(SMS).unwrap(),
        "The template was rejected in review: Too pushy"
    );
    let s = s.apply(ReviewAction::Submit, &author, AUTHOR).unwrap();
    assert_eq!(s.review, ReviewStatus::InReview);
}

#[test]
fn actions_only_apply_in_their_states() {
    let lead = person(2, Role::SupportLead);
    let author = person(AUTHOR, Role::Marketer);
    let draft = TemplateState::new();
    let e = draft
        .apply(ReviewAction::Approve, &lead, AUTHOR)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "This template is still a draft, so it cannot be approved."
    );
    assert_eq!(e.code(), "invalid_transition");
    assert!(
        draft
            .apply(ReviewAction::Withdraw, &author, AUTHOR)
            .is_err()
    );
    let approved = TemplateState {
        review: ReviewStatus::Approved,
        provider: ProviderApproval::Approved,
    };
    assert!(
        approved
            .apply(ReviewAction::Submit, &author, AUTHOR)
            .is_err()
    );
    assert!(
        approved
            .apply(ReviewAction::Approve, &lead, AUTHOR)
            .is_err()
    );
}

#[test]
fn editing_starts_the_reviews_again() {
    let author = person(AUTHOR, Role::Marketer);
    let approved = TemplateState {
        review: ReviewStatus::Approved,
        provider: ProviderApproval::Approved,
    };
    let edited = approved.apply(ReviewAction::Edit, &author, AUTHOR).unwrap();
    assert_eq!(edited, TemplateState::new());
}

#[test]
fn sms_needs_only_herald_approval() {
    let s = TemplateState {
        review: ReviewStatus::Approved,
        provider: ProviderApproval::NotSubmitted,
    };
    assert!(s.is_sendable(SMS));
    assert!(!s.awaits_provider_submission(SMS));
    assert!(!s.is_sendable(VIBER));
}

#[test]
fn sendable_only_when_both_approved() {
    let reviews = [
        ReviewStatus::Draft,
        ReviewStatus::InReview,
        ReviewStatus::Approved,
        ReviewStatus::Rejected { note: "n".into() },
    ];
    let providers = [
        ProviderApproval::NotSubmitted,
        ProviderApproval::Pending,
        ProviderApproval::Approved,
        ProviderApproval::Rejected { reason: "r".into() },
        ProviderApproval::Paused,
        ProviderApproval::Disabled,
    ];
    for review in &reviews {
        for provider in &providers {
            let both = *review == ReviewStatus::Approved && *provider == ProviderApproval::Approved;
            assert_eq!(
                is_sendable(WA, review, provider),
                both,
                "{review:?} {provider:?}"
            );
            assert_eq!(is_sendable(VIBER, review, provider), both);
            assert_eq!(
                is_sendable(SMS, review, provider),
                *review == ReviewStatus::Approved
            );
        }
    }
    let paused = TemplateState {
        review: ReviewStatus::Approved,
        provider: ProviderApproval::Paused,
    };
    assert!(paused.why_not_sendable(WA).unwrap().contains("132015"));
}

#[test]
fn statuses_round_trip_through_storage() {
    for review in [
        ReviewStatus::Draft,
        ReviewStatus::InReview,
        ReviewStatus::Approved,
        ReviewStatus::Rejected { note: "why".into() },
    ] {
        assert_eq!(
            ReviewStatus::from_parts(review.as_str(), review.note()),
            Ok(review)
        );
    }
    for provider in [
        ProviderApproval::NotSubmitted,
        ProviderApproval::Pending,
        ProviderApproval::Approved,
        ProviderApproval::Rejected {
            reason: "INVALID_FORMAT".into(),
        },
        ProviderApproval::Paused,
        ProviderApproval::Disabled,
    ] {
        assert_eq!(
            ProviderApproval::from_parts(provider.as_str(), provider.reason()),
            Ok(provider)
        );
    }
    assert!(
        ReviewStatus::from_parts("done", None)
            .unwrap_err()
            .contains("\"done\"")
    );
    assert!(ProviderApproval::from_parts("LOCKED", None).is_err());
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A body with placeholders numbered 1..=n in the given order, with two words around each.
fn body_with(order: &[u32]) -> String {
    let mut body = String::from("Hello dear");
    for n in order {
        body.push_str(&format!(" {{{{{n}}}}} and more"));
    }
    body
}

fn positional_draft(order: &[u32]) -> TemplateDraft {
    let mut d = wa(&body_with(order));
    d.samples = order
        .iter()
        .map(|n| (n.to_string(), format!("s{n}")))
        .collect();
    d
}

#[test]
fn stages_name_review_and_provider_together() {
    let state =
        |review: ReviewStatus, provider: ProviderApproval| TemplateState { review, provider };
    use ProviderApproval as P;
    use ReviewStatus as R;
    let cases = [
        (WA, state(R::Draft, P::NotSubmitted), TemplateStage::Draft),
        (
            WA,
            state(R::InReview, P::NotSubmitted),
            TemplateStage::InReview,
        ),
        (
            WA,
            state(R::Rejected { note: "x".into() }, P::NotSubmitted),
            TemplateStage::Rejected,
        ),
        (
            WA,
            state(R::Approved, P::NotSubmitted),
            TemplateStage::Approved,
        ),
        (WA, state(R::Approved, P::Pending), TemplateStage::Pending),
        (WA, state(R::Approved, P::Approved), TemplateStage::Sendable),
        (
            VIBER,
            state(R::Approved, P::Approved),
            TemplateStage::Sendable,
        ),
        (
            SMS,
            state(R::Approved, P::NotSubmitted),
            TemplateStage::Sendable,
        ),
        (
            SMS,
            state(R::InReview, P::NotSubmitted),
            TemplateStage::InReview,
        ),
        (
            WA,
            state(R::Approved, P::Rejected { reason: "r".into() }),
            TemplateStage::ProviderRejected,
        ),
        (WA, state(R::Approved, P::Paused), TemplateStage::Paused),
        (WA, state(R::Approved, P::Disabled), TemplateStage::Disabled),
    ];
    for (kind, s, stage) in cases {
        assert_eq!(TemplateStage::of(kind, &s), stage, "{kind} {s:?}");
        assert_eq!(stage == TemplateStage::Sendable, s.is_sendable(kind));
    }
    for stage in TemplateStage::ALL {
        assert_eq!(TemplateStage::parse(stage.as_str()), Some(stage));
    }
    assert_eq!(TemplateStage::parse("nope"), None);
    assert!(TemplateStage::Rejected.is_editable_in_place());
    assert!(!TemplateStage::Sendable.is_editable_in_place());
    assert_eq!(TemplateStage::Pending.label("Meta"), "Waiting for Meta");
}

proptest! {
    #[test]
    fn any_order_of_one_to_n_is_valid_and_fills_by_number(
        order in (1u32..12).prop_flat_map(|n| Just((1..=n).collect::<Vec<u32>>()).prop_shuffle()),
    ) {
        let t = validate(WA, &positional_draft(&order));
        prop_assert!(t.is_ok(), "{:?}", t.err());
        let t = t.unwrap();
        let values: Vec<String> = (1..=order.len()).map(|n| format!("<v{n}>")).collect();
        let r = render(&t, &Variables::Positional(values)).unwrap();
        for n in &order {
            let want = format!("<v{n}>");
            prop_assert!(r.text.contains(&want));
        }
        let MessageContent::Template(c) = r.content else { unreachable!() };
        let filled: Vec<String> = c.body.into_iter().map(|p| p.value).collect();
        let expected: Vec<String> = (1..=order.len()).map(|n| format!("<v{n}>")).collect();
        prop_assert_eq!(filled, expected);
    }

    #[test]
    fn a_gap_in_the_numbering_is_named(n in 2u32..12, gap_seed in 0u32..100) {
        let gap = 1 + gap_seed % (n - 1);
        let order: Vec<u32> = (1..=n).filter(|k| *k != gap).collect();
        let errors = validate(WA, &positional_draft(&order)).unwrap_err();
        let body = errors.for_field("body").join(" ");
        let needle = format!("{{{{{gap}}}}}");
        prop_assert!(body.contains(&needle), "{}", body);
    }

    #[test]
    fn a_plain_body_is_valid_exactly_up_to_the_channel_limit(len in 1usize..1700, kind_index in 0usize..3) {
        let kind = ChannelKind::ALL[kind_index];
        let text: String = "abc ".chars().cycle().take(len).collect::<String>().trim_end().to_owned() + "z";
        let mut d = TemplateDraft { body: text.clone(), ..wa("") };
        d.samples.clear();
        match kind {
            ChannelKind::Sms => d.category.clear(),
            ChannelKind::Viber => { d.category = "transactional".into(); d.language = "en".into(); }
            ChannelKind::Whatsapp => {}
        }
        let valid = validate(kind, &d).is_ok();
        prop_assert_eq!(valid, text.chars().count() <= body_limit(kind));
    }

    #[test]
    fn rendering_adds_exactly_the_values(values in prop::collection::vec("[a-zA-Z0-9 ]{1,20}", 3)) {
        prop_assume!(values.iter().all(|v| !v.trim().is_empty() && !v.contains("     ")));
        let t = validate(WA, &positional_draft(&[1, 2, 3])).unwrap();
        let r = render(&t, &Variables::Positional(values.clone())).unwrap();
        let placeholders_len = "{{1}}".len() * 3;
        let values_len: usize = values.iter().map(|v| v.chars().count()).sum();
        prop_assert_eq!(r.text.chars().count(), t.body().chars().count() - placeholders_len + values_len);
    }

    #[test]
    fn preview_never_panics(body in "\\PC{0,200}", header in "\\PC{0,80}", kind_index in 0usize..3) {
        let kind = ChannelKind::ALL[kind_index];
        let d = TemplateDraft { body, header, ..TemplateDraft::default() };
        let p = preview(kind, &d);
        prop_assert!(!p.problems.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// WhatsApp authentication templates

fn authentication(otp_type: &str) -> TemplateDraft {
    TemplateDraft {
        name: "login_code".into(),
        language: "en_US".into(),
        category: "authentication".into(),
        otp: OtpDraft {
            otp_type: otp_type.into(),
            security_recommendation: true,
            code_expiration_minutes: "10".into(),
            ..OtpDraft::default()
        },
        ..TemplateDraft::default()
    }
}

#[test]
fn an_authentication_template_has_metas_text_and_a_code_button() {
    let valid = validate(WA, &authentication("copy_code")).expect("valid");
    let auth = valid.authentication().expect("an authentication template");
    assert_eq!(auth.button, OtpButton::CopyCode);
    assert!(auth.add_security_recommendation);
    assert_eq!(auth.code_expiration_minutes, Some(10));
    assert_eq!(
        valid.body(),
        "{{1}} is your verification code. For your security, do not share this code."
    );
    assert_eq!(valid.footer(), Some("This code expires in 10 minutes."));
    assert!(valid.buttons().is_empty() && valid.header().is_none());
    // One variable: the code (no sample needed; Meta reviews these without examples).
    let infos = placeholders(&valid);
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].name, CODE_VARIABLE);
    // The form gets back what was typed, with no text of its own.
    let draft = valid.to_draft();
    assert_eq!(draft, authentication("copy_code"));
    assert_eq!(validate(WA, &draft).expect("valid again"), valid);
    // Stored as JSON and read back.
    let json = serde_json::to_string(&valid).unwrap();
    assert_eq!(serde_json::from_str::<ValidTemplate>(&json).unwrap(), valid);

    let mut minimal = authentication("copy_code");
    minimal.otp.security_recommendation = false;
    minimal.otp.code_expiration_minutes.clear();
    let valid = validate(WA, &minimal).expect("valid");
    assert_eq!(valid.body(), "{{1}} is your verification code.");
    assert_eq!(valid.footer(), None);
}

#[test]
fn a_one_tap_button_names_the_android_app() {
    let mut draft = authentication("one_tap");
    draft.otp.button_text = "Copy Code".into();
    draft.otp.autofill_text = "Autofill".into();
    draft.otp.package_name = "com.example.luckyshrub".into();
    draft.otp.signature_hash = "K8a%2FAINcGX7".into();
    let valid = validate(WA, &draft).expect("valid");
    let auth = valid.authentication().unwrap();
    assert_eq!(
        auth.button,
        OtpButton::OneTap {
            autofill_text: Some("Autofill".into()),
            package_name: "com.example.luckyshrub".into(),
            signature_hash: "K8a%2FAINcGX7".into(),
        }
    );
    assert_eq!(auth.button_text.as_deref(), Some("Copy Code"));

    let mut bad = authentication("one_tap");
    assert_error(
        &errors_for(WA, &bad, "otp.package_name"),
        "Android package name",
    );
    assert_error(
        &errors_for(WA, &bad, "otp.signature_hash"),
        "signing key hash",
    );
    bad.otp.package_name = "luckyshrub".into();
    bad.otp.signature_hash = "too-short".into();
    assert_error(
        &errors_for(WA, &bad, "otp.package_name"),
        "is not an Android package name",
    );
    assert_error(&errors_for(WA, &bad, "otp.signature_hash"), "11 characters");
    // App details on a copy-code button would be dropped silently: refused instead.
    let mut copy = authentication("copy_code");
    copy.otp.package_name = "com.example.luckyshrub".into();
    assert_error(
        &errors_for(WA, &copy, "otp.package_name"),
        "Only a one-tap button",
    );
}

#[test]
fn an_authentication_template_has_no_text_of_its_own() {
    let mut draft = authentication("copy_code");
    draft.header = "Your code".into();
    draft.body = "Your code is {{1}}. Do not share it with anyone.".into();
    draft.footer = "Thanks".into();
    draft.buttons = vec![button("quick_reply", "Not me", "")];
    assert_error(&errors_for(WA, &draft, "header"), "no header");
    assert_error(&errors_for(WA, &draft, "body"), "no text of your own");
    assert_error(&errors_for(WA, &draft, "footer"), "Code expires after");
    assert_error(&errors_for(WA, &draft, "buttons"), "one button");

    let mut draft = authentication("");
    assert_error(
        &errors_for(WA, &draft, "otp.otp_type"),
        "Choose the code button",
    );
    draft.otp.otp_type = "zero_tap".into();
    assert_error(&errors_for(WA, &draft, "otp.otp_type"), "not a code button");
    for minutes in ["0", "91", "ten"] {
        let mut draft = authentication("copy_code");
        draft.otp.code_expiration_minutes = minutes.into();
        assert_error(
            &errors_for(WA, &draft, "otp.code_expiration_minutes"),
            "1 to 90 minutes",
        );
    }
    let mut draft = authentication("copy_code");
    draft.otp.button_text = "x".repeat(26);
    assert_error(&errors_for(WA, &draft, "otp.button_text"), "at most 25");

    // A code button on another category is a mistake, not something to drop.
    let mut utility = wa("Hi {{1}}, your order ships today from our store.");
    utility = trimmed_samples(utility);
    utility.otp.otp_type = "copy_code".into();
    assert_error(
        &errors_for(WA, &utility, "otp.otp_type"),
        "Only WhatsApp authentication templates",
    );
}

#[test]
fn sending_an_authentication_template_fills_the_code_in_the_body_and_the_button() {
    let valid = validate(WA, &authentication("copy_code")).expect("valid");
    let rendered = render(&valid, &strings(&["123456"])).expect("rendered");
    let MessageContent::Template(t) = &rendered.content else {
        panic!("{:?}", rendered.content)
    };
    assert_eq!(
        t.body,
        vec![TemplateParam {
            name: None,
            value: "123456".into()
        }]
    );
    assert_eq!(
        t.buttons,
        vec![ButtonParam {
            index: 0,
            kind: ButtonKind::Url,
            value: "123456".into()
        }]
    );
    assert!(t.header.is_empty());
    assert_eq!(
        rendered.text,
        "123456 is your verification code. For your security, do not share this code.\n\nThis code expires in 10 minutes."
    );
    // The code goes to the button as it is (a link suffix would be percent-encoded).
    let rendered = render(&valid, &named(&[("1", "J$FpnYnP")])).expect("rendered");
    let MessageContent::Template(t) = &rendered.content else {
        panic!()
    };
    assert_eq!(t.buttons[0].value, "J$FpnYnP");
    // Meta takes codes of at most 15 characters, without spaces.
    for code in ["1234567890123456", "12 34"] {
        let e = render(&valid, &strings(&[code])).unwrap_err();
        assert_eq!(e.code(), "invalid_value", "{code}: {e}");
    }
}

#[test]
fn an_authentication_draft_previews_metas_words() {
    let mut draft = authentication("");
    draft.samples = samples(&[("1", "482913")]);
    let p = preview(WA, &draft);
    assert_eq!(
        p.body,
        "482913 is your verification code. For your security, do not share this code."
    );
    assert_eq!(
        p.footer.as_deref(),
        Some("This code expires in 10 minutes.")
    );
    assert_eq!(p.buttons.len(), 1);
    assert_eq!(
        (p.buttons[0].kind, p.buttons[0].text.as_str()),
        ("otp", "Copy code")
    );
    assert!(!p.problems.is_empty(), "the button type is still missing");
}
