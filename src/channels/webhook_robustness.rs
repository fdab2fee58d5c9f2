//! Every adapter's `parse_webhook` answers arbitrary input with a value, never a panic: random
//! bytes and headers, and real payloads with random bytes changed, signed correctly so that
//! the parsers behind the signature checks are reached too. (The cargo-fuzz target in fuzz/
//! does the same with coverage guidance.)

use super::infobip_viber::SECRET_HEADER;
use proptest::prelude::*;

use super::{ChannelAdapter, WebhookRequest};
use crate::testkit::WebhookAdapters;

const SECRET: &str = "robustness-secret-0123456789";
const URL: &str = "https://herald.example/webhooks/x/ch?secret=robustness-secret-0123456789";

/// Built once: a client per proptest case would dominate the run time.
fn adapters() -> &'static WebhookAdapters {
    static ADAPTERS: std::sync::OnceLock<WebhookAdapters> = std::sync::OnceLock::new();
    ADAPTERS.get_or_init(|| WebhookAdapters::new(SECRET, URL).expect("adapters"))
}

const SEEDS: &[&str] = &[
    r#"{"object":"whatsapp_business_account","entry":[{"id":"1","time":1,"changes":[{"field":"messages","value":{"contacts":[{"profile":{"name":"A"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.1","timestamp":"1749416383","type":"text","text":{"body":"hi"}}],"statuses":[{"id":"wamid.2","status":"failed","timestamp":"1","errors":[{"code":131047,"title":"t","error_data":{"details":"d"}}]}]}},{"field":"message_template_status_update","value":{"event":"REJECTED","message_template_id":1,"reason":"X","rejection_info":{"reason":"r"}}}]}]}"#,
    r#"{"results":[{"messageId":"m","status":{"groupName":"UNDELIVERABLE","name":"N"},"error":{"id":27,"name":"E"},"doneAt":"2023-02-03T00:01:01.000+0000"},{"messageId":"s","seenAt":"2023-04-05T11:22:10.251+0000"},{"messageId":"i","sender":"385912345678","receivedAt":"x","message":{"type":"FILE","fileName":"f"}}]}"#,
    "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30006&From=%2B12015550123&Body=STOP&NumMedia=2",
];

fn request(body: &[u8], post: bool, headers: &[(String, String)]) -> WebhookRequest {
    let mut r =
        WebhookRequest::new(if post { "POST" } else { "GET" }, URL).with_body(body.to_vec());
    r.headers.extend(headers.iter().cloned());
    r
}

/// Feeds one body to all three adapters, unsigned and signed.
fn feed(a: &WebhookAdapters, body: &[u8], post: bool, headers: &[(String, String)]) {
    let plain = request(body, post, headers);
    let _ = a.whatsapp.parse_webhook(&plain);
    let _ = a.twilio.parse_webhook(&plain);
    let _ = a.infobip.parse_webhook(&plain);
    let [meta, twilio, infobip] = WebhookAdapters::signatures(SECRET, URL, body);
    let _ = a
        .whatsapp
        .parse_webhook(&plain.clone().with_header(meta.0, meta.1));
    let _ = a
        .twilio
        .parse_webhook(&plain.clone().with_header(twilio.0, twilio.1));
    let _ = a
        .infobip
        .parse_webhook(&plain.with_header(infobip.0, infobip.1));
}

fn header() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(vec![
            "X-Hub-Signature-256",
            "X-Twilio-Signature",
            SECRET_HEADER,
            "Content-Type",
            "x-hub-signature-256",
        ]),
        ".{0,80}",
    )
        .prop_map(|(k, v)| (k.to_owned(), v))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        post in any::<bool>(),
        headers in prop::collection::vec(header(), 0..4),
    ) {
        feed(adapters(), &body, post, &headers);
    }

    #[test]
    fn mutated_real_payloads_never_panic(
        seed in 0..SEEDS.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut body = SEEDS[seed].as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if truncate {
            body.truncate(cut.index(body.len() + 1));
        }
        feed(adapters(), &body, true, &[]);
    }
}

#[test]
fn the_seeds_themselves_parse() {
    let a = adapters();
    for (i, seed) in SEEDS.iter().enumerate() {
        let body = seed.as_bytes();
        let [meta, twilio, infobip] = WebhookAdapters::signatures(SECRET, URL, body);
        let request = request(body, true, &[]);
        let ok = match i {
            0 => a
                .whatsapp
                .parse_webhook(&request.with_header(meta.0, meta.1)),
            1 => a
                .infobip
                .parse_webhook(&request.with_header(infobip.0, infobip.1)),
            _ => a
                .twilio
                .parse_webhook(&request.with_header(twilio.0, twilio.1)),
        };
        assert!(ok.is_ok(), "seed {i}: {ok:?}");
    }
}
