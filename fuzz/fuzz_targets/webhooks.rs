//! Arbitrary bytes and headers into every adapter's `parse_webhook`, signed correctly half the
//! time so the parsers behind the signature checks are reached. Input layout: one selector
//! byte (adapter, method, signed or not, extra query), one length byte, then that many bytes of
//! a header value, then the body.
#![no_main]

use std::sync::OnceLock;

use herald::channels::{ChannelAdapter, WebhookRequest};
use herald::testkit::WebhookAdapters;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzzing-secret-0123456789";
const URL: &str = "https://herald.example/webhooks/x/ch?secret=fuzzing-secret-0123456789";

fn adapters() -> &'static WebhookAdapters {
    static ADAPTERS: OnceLock<WebhookAdapters> = OnceLock::new();
    ADAPTERS.get_or_init(|| WebhookAdapters::new(SECRET, URL).expect("adapters"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&header_len, rest)) = rest.split_first() else {
        return;
    };
    let (header, body) = rest.split_at((header_len as usize).min(rest.len()));
    let header = String::from_utf8_lossy(header).into_owned();
    let method = if selector & 1 == 0 { "POST" } else { "GET" };
    let signed = selector & 2 == 0;
    let url = if selector & 4 == 0 {
        URL.to_owned()
    } else {
        format!("{URL}&{header}")
    };
    let [meta, twilio, infobip] = WebhookAdapters::signatures(SECRET, &url, body);
    let request = WebhookRequest::new(method, url.clone())
        .with_header("Content-Type", header.clone())
        .with_body(body.to_vec());
    let value = |signature: String| if signed { signature } else { header.clone() };
    let a = adapters();
    let _ = match (selector >> 3) % 3 {
        0 => a
            .whatsapp
            .parse_webhook(&request.with_header(meta.0, value(meta.1))),
        1 => a
            .twilio
            .parse_webhook(&request.with_header(twilio.0, value(twilio.1))),
        _ => a
            .infobip
            .parse_webhook(&request.with_header(infobip.0, value(infobip.1))),
    };
});
