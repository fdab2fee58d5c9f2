//! Issue 18: the message detail page (`/messages/{public_id}`) and the provider payloads kept
//! per message. A sandbox-sent template message shows its timeline, provider id and the
//! template version's approver; a webhook's status object shows to admins and not to others;
//! no secret is ever stored in a payload (asserted on the database); a failed message is
//! resent from its page; an unknown id is a 404 page.

use diesel::prelude::*;
use herald::channels::whatsapp;
use herald::storage::schema::{message_events, messages};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::{WA_BODY, approved_template, contact, setup, spawn};
use crate::helpers::{TestApp, location};
use crate::provider_kit::*;

// The in-process worker sends (the sandbox and the refusing provider); the others need no
// worker but do no harm with one.
crate::both_backends!(spawn = spawn;
    the_page_shows_what_became_of_a_sandbox_template_message,
    a_refused_send_keeps_the_answer_without_secrets_and_is_resent_from_its_page,
    a_webhook_status_payload_shows_to_admins_only_and_keeps_no_secret,
    an_unknown_message_is_a_404_page,
);

/// Every payload stored on a message's timeline.
fn payloads(app: &TestApp, message_id: i64) -> Vec<String> {
    message_events::table
        .filter(message_events::message_id.eq(message_id))
        .filter(message_events::payload.is_not_null())
        .select(message_events::payload.assume_not_null())
        .load(&mut *app.db())
        .expect("payloads")
}

fn internal_id(app: &TestApp, public_id: &str) -> i64 {
    messages::table
        .filter(messages::public_id.eq(public_id))
        .select(messages::id)
        .first(&mut *app.db())
        .expect("the message exists")
}

async fn the_page_shows_what_became_of_a_sandbox_template_message(app: TestApp) {
    let s = setup(&app).await;
    approved_template(&app, &s, "order_shipped", WA_BODY).await;
    let ada = contact(
        &app,
        &s.key,
        json!({"phone": "+16505551234", "name": "Ada"}),
    )
    .await;
    let (status, sent) = api(
        &app,
        Method::POST,
        "/api/v1/messages",
        &s.key,
        Some(&json!({"contact_id": ada, "channel": s.wa.public_id,
            "template": {"name": "order_shipped", "language": "en_US",
                "variables": ["Ada", "#4321"]}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let public_id = sent["id"].as_str().expect("id").to_owned();
    let row = wait_for_status(&app, internal_id(&app, &public_id), "read").await;
    let provider_id = row.provider_message_id.clone().expect("a provider id");

    let page = s.admin.get_html(&format!("/messages/{public_id}")).await;
    // Content as sent, with its variables filled.
    assert!(
        page.contains("Hi Ada, your order #4321 has shipped."),
        "{page}"
    );
    assert!(page.contains("#4321"));
    // The timeline, oldest first, with timestamps.
    let timeline = crate::helpers::texts(&page, ".status-timeline li .status");
    assert_eq!(timeline, ["Queued", "Sent", "Delivered", "Read"], "{page}");
    assert!(page.contains(" UTC"));
    // Provider id, sender, and the template version with who approved it (the lead).
    assert!(page.contains(&provider_id), "{page}");
    assert!(page.contains("API key"), "{page}");
    let template = crate::helpers::texts(&page, "#message-template").join(" ");
    assert!(template.contains("order_shipped"), "{template}");
    assert!(
        template.contains("version 1, approved by Test Person"),
        "{template}"
    );
    assert!(
        page.contains("href=\"/history\""),
        "a way back to the history"
    );
    // The sandbox's answer and reports are kept: an admin sees them.
    assert!(page.contains("What the provider said"), "{page}");
    assert!(page.contains("simulated"));
    // Nothing to resend: it was read.
    assert!(!page.contains("id=\"resend\""));

    // The support lead sees the message, but not the raw payloads.
    let lead_page = s.lead.get_html(&format!("/messages/{public_id}")).await;
    assert!(lead_page.contains(&provider_id));
    assert!(!lead_page.contains("What the provider said"));
    assert!(!lead_page.contains("simulated"), "{lead_page}");
}

/// A Meta status webhook about `wamid`, with an error and fields no provider should send but a
/// hostile or buggy one might: a token and a signature inside the status object.
fn failed_status(wamid: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [{"id": wamid, "status": "failed", "timestamp": "1767225600",
                "recipient_id": "16505551234",
                "access_token": META_ACCESS_TOKEN,
                "errors": [{"code": 131047, "title": "Re-engagement message",
                    "message": format!("Re-engagement message (token {META_ACCESS_TOKEN})"),
                    "error_data": {"details": "More than 24 hours have passed since the customer last replied."}}]}]}}]}]})
    .to_string()
}

async fn a_webhook_status_payload_shows_to_admins_only_and_keeps_no_secret(app: TestApp) {
    let (admin, key) = crate::fixtures::admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "http://127.0.0.1:9"),
    )
    .await;
    let ch = channel(&app, created["id"].as_str().expect("id"));
    let hook = created["webhook_url"].as_str().expect("webhook").to_owned();
    let ada = contact_id(&app, &new_contact(&app, &key, "+16505551234").await);
    let wamid = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBIyRkY1MDUzMDM4QzMwNjk5AA==";
    let (id, public_id) = insert_message(&app, ch.id, ada, "+16505551234", "sent", Some(wamid));

    let body = failed_status(wamid);
    let signature = whatsapp::sign(META_APP_SECRET, body.as_bytes());
    let res = reqwest::Client::new()
        .post(&hook)
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", &signature)
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(res.status(), StatusCode::OK);
    let row = message(&app, id);
    assert_eq!(row.status, "failed");
    let error_text = row.error_message.unwrap_or_default();
    assert!(error_text.contains("Re-engagement message"), "{error_text}");
    assert!(!error_text.contains(META_ACCESS_TOKEN), "{error_text}");

    // Stored: the status object about this message, with no secret in it.
    let stored = payloads(&app, id);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].contains("131047") && stored[0].contains(wamid));
    assert!(
        !stored[0].contains("15550783881"),
        "only the status object is kept"
    );
    for secret in [
        META_ACCESS_TOKEN,
        META_APP_SECRET,
        META_VERIFY_TOKEN,
        signature.as_str(),
    ] {
        assert!(
            !stored[0].contains(secret),
            "{secret} stored: {}",
            stored[0]
        );
    }
    assert!(stored[0].contains("[redacted]"));

    // The admin sees it on the page, escaped, with the error code and text.
    let page = admin.get_html(&format!("/messages/{public_id}")).await;
    assert!(page.contains("What the provider said"));
    assert!(page.contains("&quot;131047&quot;") || page.contains("131047"));
    assert!(!page.contains(META_ACCESS_TOKEN));
    let error = crate::helpers::texts(&page, "#message-error").join(" ");
    assert!(
        error.contains("131047") && error.contains("Re-engagement"),
        "{error}"
    );
    // A marketer sees the message and the error, not the payload.
    let marketer = app
        .user_with_role(&admin, "mo@example.com", "marketer")
        .await;
    let page = marketer.get_html(&format!("/messages/{public_id}")).await;
    assert!(page.contains("Re-engagement"));
    assert!(!page.contains("What the provider said"));
    assert!(!page.contains("recipient_id"), "{page}");
}

/// A one-route Twilio stand-in that refuses every send with `body` (status `status`), reading
/// each request in full first.
async fn refusing_provider(status: u16, body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn a_refused_send_keeps_the_answer_without_secrets_and_is_resent_from_its_page(app: TestApp) {
    let s = setup(&app).await;
    // Twilio answers with its error and, as a badly behaved proxy might, echoes the
    // credentials it was sent.
    let basic = format!("Basic {TWILIO_SID}:{TWILIO_TOKEN}");
    let answer = json!({"code": 21211, "message": "The 'To' number is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400,
        "auth_token": TWILIO_TOKEN, "echo": format!("Authorization: {basic} token {TWILIO_TOKEN}")})
    .to_string();
    let base = refusing_provider(400, answer).await;
    let created = create_channel(&app, &s.key, twilio_channel("Shop SMS", &base)).await;
    let sms = created["id"].as_str().expect("id").to_owned();
    let (status, sent) = api(
        &app,
        Method::POST,
        "/api/v1/messages",
        &s.key,
        Some(&json!({"to": "+16505551234", "channel": sms, "text": "Your order shipped."})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let public_id = sent["id"].as_str().expect("id").to_owned();
    let id = internal_id(&app, &public_id);
    let row = wait_for_status(&app, id, "failed").await;
    assert_eq!(row.error_code.as_deref(), Some("21211"));

    // The answer is on the failed event, without the auth token.
    let stored = payloads(&app, id);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].contains("21211"), "{}", stored[0]);
    assert!(!stored[0].contains(TWILIO_TOKEN), "{}", stored[0]);
    let texts = format!("{:?} {:?}", row.error_message, row.error_code);
    assert!(!texts.contains(TWILIO_TOKEN), "{texts}");
    let failed_event: Option<String> = message_events::table
        .filter(message_events::message_id.eq(id))
        .filter(message_events::status.eq("failed"))
        .select(message_events::payload)
        .first(&mut *app.db())
        .expect("a failed event");
    assert_eq!(failed_event.as_deref(), Some(stored[0].as_str()));

    // The page says why, and offers the resend (with a confirmation).
    let page = s.admin.get_html(&format!("/messages/{public_id}")).await;
    let error = crate::helpers::texts(&page, "#message-error").join(" ");
    assert!(
        error.contains("21211") && error.contains("not a valid phone number"),
        "{error}"
    );
    assert!(page.contains("id=\"resend\""), "{page}");
    assert!(page.contains("data-confirm=\"Send this message again"));
    assert!(!page.contains(TWILIO_TOKEN));

    let res = s
        .admin
        .post_form(&format!("/messages/{public_id}/resend?back=message"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/messages/{public_id}"));
    let resent: Vec<String> = messages::table
        .filter(messages::resend_of.eq(id))
        .select(messages::public_id)
        .load(&mut *app.db())
        .expect("resends");
    assert_eq!(resent.len(), 1);
    let page = s.admin.get_html(&format!("/messages/{public_id}")).await;
    assert!(
        page.contains(&format!("Queued again as message {}", resent[0])),
        "{page}"
    );
    assert_eq!(
        crate::helpers::texts(&page, "#resent-as"),
        [resent[0].clone()]
    );
    assert!(!page.contains("id=\"resend\""), "resent once");
    // The resend went out through the same path (and was refused the same way).
    wait_for_status(&app, internal_id(&app, &resent[0]), "failed").await;
}

async fn an_unknown_message_is_a_404_page(app: TestApp) {
    let admin = app.admin().await;
    for id in ["no-such-message", "0"] {
        let res = admin.get(&format!("/messages/{id}")).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "/messages/{id}");
        let body = res.text().await.expect("body");
        assert!(
            body.contains("<html") || body.contains("<main"),
            "an error page: {body}"
        );
    }
    // Signed out: the sign-in page, not the message.
    let res = app.client().get("/messages/no-such-message").await;
    assert_ne!(res.status(), StatusCode::OK);
}
