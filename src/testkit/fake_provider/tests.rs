//! The fake against Herald's own adapters: what it sends back (webhooks) must verify and parse,
//! and its faults must come out classified.

use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::channels::{
    Adapter, AdapterEnv, ChannelAdapter, ChannelConfig, DeliveryStatus, ErrorClass,
    OutboundMessage, ProviderEvent, WebhookOutcome, WebhookRequest, http_client,
};
use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::content::MessageContent;
use crate::domain::phone::E164;

const APP_SECRET: &str = "meta-app-secret";
const IB_SECRET: &str = "infobip-shared-secret-1234";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

/// Records every webhook posted to it, as the `WebhookRequest` Herald's handler would build.
struct Receiver {
    base_url: String,
    rx: mpsc::UnboundedReceiver<WebhookRequest>,
    server: ServerHandle,
}

impl Receiver {
    async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let base = base_url.clone();
        let server = HttpServer::new(move || {
            let (tx, base) = (tx.clone(), base.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let mut r =
                    WebhookRequest::new(req.method().as_str(), format!("{base}{}", req.uri()))
                        .with_body(body.to_vec());
                for (k, v) in req.headers() {
                    r = r.with_header(k.as_str(), v.to_str().unwrap_or_default());
                }
                let _ = tx.send(r);
                async { HttpResponse::Ok().finish() }
            }))
        })
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            base_url,
            rx,
            server: handle,
        }
    }

    async fn next(&mut self) -> WebhookRequest {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver open")
    }
}

fn env(public_url: &str) -> AdapterEnv {
    let (tx, _rx) = mpsc::channel(1);
    AdapterEnv {
        public_url: public_url.into(),
        http: http_client(Duration::from_millis(700)).unwrap(),
        sandbox_events: tx,
    }
}

fn adapters(fake: &str, public_url: &str) -> [(Provider, Adapter); 3] {
    let config = |kind, provider, settings: serde_json::Value, secrets| ChannelConfig {
        kind,
        provider,
        public_id: "ch1".into(),
        settings,
        secrets,
    };
    let env = env(public_url);
    let build = |c: ChannelConfig| (c.provider, Adapter::from_config(&c, &env).unwrap());
    [
        build(config(
            ChannelKind::Whatsapp,
            Provider::WhatsappCloud,
            serde_json::json!({"base_url": fake, "phone_number_id": "1065", "waba_id": "1022"}),
            serde_json::json!({"access_token": "tok", "app_secret": APP_SECRET, "verify_token": "v"}),
        )),
        build(config(
            ChannelKind::Sms,
            Provider::Twilio,
            serde_json::json!({"base_url": fake, "account_sid": SID, "from": "+12015550100"}),
            serde_json::json!({"auth_token": "twilio-token"}),
        )),
        build(config(
            ChannelKind::Viber,
            Provider::Infobip,
            serde_json::json!({"base_url": fake, "sender": "Herald"}),
            serde_json::json!({"api_key": "key", "webhook_secret": IB_SECRET}),
        )),
    ]
}

fn message(to: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: format!("msg-{to}"),
        to: E164::parse(to, None).unwrap(),
        content: MessageContent::Text {
            body: "hello".into(),
        },
    }
}

fn parse(adapters: &[(Provider, Adapter)], request: &WebhookRequest) -> Vec<ProviderEvent> {
    let provider = if request.url.contains("/webhooks/whatsapp/") {
        Provider::WhatsappCloud
    } else if request.url.contains("/webhooks/twilio/") {
        Provider::Twilio
    } else {
        Provider::Infobip
    };
    let adapter = &adapters.iter().find(|(p, _)| *p == provider).unwrap().1;
    match adapter.parse_webhook(request) {
        Ok(WebhookOutcome::Events(events)) => events,
        other => panic!("{provider:?}: {other:?} for {request:?}"),
    }
}

#[tokio::test]
async fn status_webhooks_verify_and_parse_in_every_adapter() {
    let mut receiver = Receiver::start().await;
    let fake = FakeProvider::start(FakeConfig {
        status_sequence: vec![FakeStatus::Delivered, FakeStatus::Read],
        status_delay: Duration::from_millis(5),
        whatsapp_webhook: Some(WebhookEndpoint {
            url: format!("{}/webhooks/whatsapp/ch1", receiver.base_url),
            secret: APP_SECRET.into(),
        }),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let adapters = adapters(&fake.base_url, &receiver.base_url);
    let mut expected = Vec::new();
    for (i, (_, adapter)) in adapters.iter().enumerate() {
        let receipt = adapter
            .send(&message(&format!("+1201555010{i}")))
            .await
            .unwrap();
        expected.push((
            receipt.provider_message_id.clone(),
            DeliveryStatus::Delivered,
        ));
        expected.push((receipt.provider_message_id, DeliveryStatus::Read));
    }
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        let request = receiver.next().await;
        for event in parse(&adapters, &request) {
            let ProviderEvent::Status(s) = event else {
                panic!("a status: {event:?}")
            };
            seen.push((s.provider_message_id, s.status));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
    expected.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
    assert_eq!(seen, expected);
    // Infobip's reports name Herald's own message id.
    assert!(seen.iter().any(|(id, _)| id == "msg-+12015550102"));
    // The fake counts a webhook once Herald's answer is back, just after the receiver saw it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.stats().webhooks_sent < 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(fake.stats().webhooks_sent, 6);
    receiver.server.stop(false).await;
}

#[tokio::test]
async fn inbound_messages_on_demand_verify_and_parse() {
    let mut receiver = Receiver::start().await;
    let endpoint = |path: &str, secret: &str| {
        Some(WebhookEndpoint {
            url: format!("{}/webhooks/{path}", receiver.base_url),
            secret: secret.into(),
        })
    };
    let fake = FakeProvider::start(FakeConfig {
        whatsapp_webhook: endpoint("whatsapp/ch1", APP_SECRET),
        twilio_webhook: endpoint("twilio/ch1", "twilio-token"),
        infobip_webhook: endpoint("infobip/ch1", IB_SECRET),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let adapters = adapters(&fake.base_url, &receiver.base_url);
    for provider in [
        FakeProviderKind::Whatsapp,
        FakeProviderKind::Twilio,
        FakeProviderKind::Infobip,
    ] {
        let status = fake
            .send_inbound(provider, "+12015550123", "Is it in blue?")
            .await
            .unwrap();
        assert_eq!(status, 200);
        let events = parse(&adapters, &receiver.next().await);
        let [ProviderEvent::Inbound(e)] = &events[..] else {
            panic!("{provider:?}: {events:?}")
        };
        assert_eq!(e.from.to_string(), "+12015550123");
        assert_eq!(e.text, "Is it in blue?");
    }
    // The same over HTTP, for the binary.
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_fake/inbound", fake.base_url))
        .json(&serde_json::json!({"provider": "twilio", "from": "+12015550123", "text": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["herald_status"], 200);
    assert!(matches!(
        &parse(&adapters, &receiver.next().await)[..],
        [ProviderEvent::Inbound(_)]
    ));
    assert_eq!(fake.stats().webhooks_sent, 4);
    let unconfigured = FakeProvider::start(FakeConfig::default()).await.unwrap();
    assert!(matches!(
        unconfigured
            .send_inbound(FakeProviderKind::Whatsapp, "+12015550123", "x")
            .await,
        Err(FakeError::NoEndpoint(_))
    ));
}

#[tokio::test]
async fn faults_come_out_classified() {
    let cases = [
        (
            FakeConfig {
                error_rate: 1.0,
                ..FakeConfig::default()
            },
            ErrorClass::Ambiguous,
        ),
        (
            FakeConfig {
                rate_limit_rate: 1.0,
                retry_after: Duration::from_secs(3),
                ..FakeConfig::default()
            },
            ErrorClass::RateLimited,
        ),
        (
            FakeConfig {
                hang_rate: 1.0,
                ..FakeConfig::default()
            },
            ErrorClass::Ambiguous,
        ),
    ];
    for (config, class) in cases {
        let fake = FakeProvider::start(config).await.unwrap();
        for (provider, adapter) in adapters(&fake.base_url, "https://herald.example") {
            let e = adapter.send(&message("+12015550123")).await.unwrap_err();
            assert_eq!(e.class, class, "{provider:?}: {e}");
            if class == ErrorClass::RateLimited {
                assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
            }
        }
        let stats = fake.stats();
        assert_eq!(stats.sends_received, 3);
        assert_eq!(stats.sends_accepted, 0);
        assert_eq!(stats.errors_500 + stats.rate_limited + stats.hung, 3);
    }
}

#[tokio::test]
async fn recipients_are_counted_so_duplicates_show() {
    let fake = FakeProvider::start(FakeConfig {
        keep_last: 2,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let all = adapters(&fake.base_url, "https://herald.example");
    let whatsapp = &all[0].1;
    let infobip = &all[2].1;
    whatsapp.send(&message("+12015550123")).await.unwrap();
    infobip.send(&message("+12015550123")).await.unwrap();
    whatsapp.send(&message("+12015550124")).await.unwrap();
    let stats = fake.stats();
    assert_eq!(stats.sends_accepted, 3);
    assert_eq!(stats.duplicates(), vec![("+12015550123".to_owned(), 2)]);
    assert_eq!(stats.accepted_per_recipient["+12015550124"], 1);
    let served: FakeStats = reqwest::get(format!("{}/_fake/stats", fake.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, stats);
    let kept = fake.requests();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].provider, FakeProviderKind::Infobip);
    assert_eq!(kept[1].json().unwrap()["to"], "+12015550124");
}

#[tokio::test]
async fn requests_without_credentials_are_refused_like_the_providers_do() {
    let fake = FakeProvider::start(FakeConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    for path in [
        "/v23.0/1065/messages".to_owned(),
        format!("/2010-04-01/Accounts/{SID}/Messages.json"),
        "/viber/2/messages".to_owned(),
    ] {
        let res = http
            .post(format!("{}{path}", fake.base_url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
    assert_eq!(fake.stats().unauthorized, 3);
    let res = http
        .get(format!("{}/nowhere", fake.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}
