//! Helpers shared by the adapters' unit tests: a short-timeout client, the in-process fake
//! provider, messages, and the reference payloads in shared/ (optional: tests keep inline
//! copies of what they assert on).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{ChannelAdapter, OutboundMessage, SendDisposition};
use crate::domain::content::{
    ButtonKind, ButtonParam, MessageContent, ParameterFormat, TemplateContent, TemplateParam,
};
use crate::domain::phone::E164;
use crate::testkit::fake_provider::{FakeConfig, FakeProvider, FakeProviderHandle, Scripted};

/// Short enough that a hanging provider fails a test quickly.
pub fn client() -> reqwest::Client {
    super::http_client(Duration::from_millis(700)).expect("client")
}

pub async fn fake() -> FakeProviderHandle {
    FakeProvider::start(FakeConfig::default())
        .await
        .expect("fake provider")
}

/// A 500 with the provider's error body may have come after the provider acted: sending
/// `message` through `adapter` (made for the fake's URL) is `unknown`, but the text says what
/// the provider answered (status, `code`, `words`), never "no answer". A provider that gives
/// no answer at all is still said so.
pub async fn assert_a_server_error_is_unknown_and_keeps_the_answer<A: ChannelAdapter>(
    adapter: impl Fn(&str) -> A,
    message: &OutboundMessage,
    code: &str,
    words: &str,
) {
    let fake = FakeProvider::start(FakeConfig {
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .expect("fake provider");
    let e = adapter(&fake.base_url)
        .send(message)
        .await
        .expect_err("a 500 is not a send");
    assert_eq!(e.disposition(), SendDisposition::Unknown, "{e}");
    assert_eq!(e.http_status, Some(500), "{e}");
    assert_eq!(e.code.as_deref(), Some(code), "{e}");
    let said = e.unknown_text();
    assert!(said.starts_with("The provider answered HTTP 500"), "{said}");
    assert!(said.contains(&format!("{code}: {words}")), "{said}");
    assert!(!said.contains("No answer"), "{said}");
    // No answer at all is still said so.
    fake.script(Scripted::Hang);
    let e = adapter(&fake.base_url)
        .send(message)
        .await
        .expect_err("no answer is not a send");
    assert_eq!(e.http_status, None, "{e}");
    assert!(
        e.unknown_text().starts_with("No answer from the provider"),
        "{e}"
    );
}

/// A loopback URL nothing listens on (bound, then released).
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

pub fn phone(s: &str) -> E164 {
    E164::parse(s, None).expect("test phone")
}

pub fn text(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg-0001".into(),
        to: phone(to),
        content: MessageContent::Text { body: body.into() },
    }
}

fn param(name: Option<&str>, value: &str) -> TemplateParam {
    TemplateParam {
        name: name.map(str::to_owned),
        value: value.into(),
    }
}

/// The message of shared/reference/whatsapp-examples/send_template_request_positional.json.
pub fn positional_template() -> OutboundMessage {
    OutboundMessage {
        message_id: "msg-0002".into(),
        to: phone("+16505551234"),
        content: MessageContent::Template(TemplateContent {
            name: "order_update".into(),
            language: "en_US".into(),
            provider_template_id: Some("tpl-42".into()),
            parameter_format: ParameterFormat::Positional,
            header: vec![param(None, "Order 1234")],
            body: vec![param(None, "Jessica"), param(None, "SKBUP2-4CPIG9")],
            buttons: vec![
                ButtonParam {
                    index: 0,
                    kind: ButtonKind::Url,
                    value: "SKBUP2-4CPIG9".into(),
                },
                ButtonParam {
                    index: 1,
                    kind: ButtonKind::QuickReply,
                    value: "STOP_UPDATES".into(),
                },
            ],
            rendered: "Order 1234: Hi Jessica, your order SKBUP2-4CPIG9 is on its way.".into(),
            window_text: None,
        }),
    }
}

/// The message of send_template_request_named.json.
pub fn named_template() -> OutboundMessage {
    OutboundMessage {
        message_id: "msg-0003".into(),
        to: phone("+16505551234"),
        content: MessageContent::Template(TemplateContent {
            name: "order_confirmation".into(),
            language: "en_US".into(),
            provider_template_id: Some("tpl-43".into()),
            parameter_format: ParameterFormat::Named,
            header: vec![],
            body: vec![
                param(Some("first_name"), "Jessica"),
                param(Some("order_number"), "SKBUP2-4CPIG9"),
            ],
            buttons: vec![],
            rendered: "Thanks Jessica, order SKBUP2-4CPIG9 is confirmed.".into(),
            window_text: None,
        }),
    }
}

/// A file from shared/reference, or `None` (with a note) when shared/ is not beside the repo.
pub fn reference(relative: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference")
        .join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!("skipped: {} is absent", path.display());
            None
        }
    }
}

pub fn reference_json(relative: &str) -> Option<Value> {
    reference(relative).map(|b| serde_json::from_slice(&b).expect("reference JSON"))
}
