//! Single sends: `POST /api/v1/messages` with every refusal code and idempotency, `GET
//! /api/v1/messages/{id}`, the send page's live form (htmx partials, CSRF, double submit), the
//! contact's timeline, and the live event stream.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixtures::{
    WA_BODY, approved_template, channel_named, contact, customer_replies, drafted_template, setup,
    spawn,
};
use crate::helpers::{Backend, Client, TestApp, create_api_key, location, texts};
use crate::provider_kit::get_json;
use herald::storage::channels::Channel;
use herald::storage::schema::messages;

// With the in-process dispatcher on (these tests watch messages go out).
crate::both_backends!(
    spawn = spawn;
    the_api_sends_by_the_rules_with_codes_and_idempotency,
    the_send_form_follows_the_rules_and_sends_once,
    the_event_stream_carries_inbound_replies_and_statuses,
);

async fn send(app: &TestApp, key: &str, body: Value, idem: Option<&str>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", app.address))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idem {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.expect("POST");
    let status = res.status();
    let json: Value = res.json().await.expect("JSON");
    (status, json)
}

fn message_count(app: &TestApp) -> i64 {
    messages::table
        .count()
        .get_result(&mut *app.db())
        .expect("count")
}

pub(crate) async fn wait_for_api_status(app: &TestApp, key: &str, id: &str, status: &str) -> Value {
    for _ in 0..100 {
        let (code, m) = get_json(app, key, &format!("/api/v1/messages/{id}")).await;
        assert_eq!(code, StatusCode::OK, "{m}");
        if m["status"] == status {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("message {id} never became {status}");
}

fn refused(status: StatusCode, body: &Value, code: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.len() > 10, "a human message: {body}");
}

async fn the_api_sends_by_the_rules_with_codes_and_idempotency(app: TestApp) {
    let s = setup(&app).await;
    approved_template(&app, &s, "order_shipped", WA_BODY).await;
    drafted_template(&s, "not_yet", "Hello {{1}}, this one is still a draft.").await;
    let marketer_key = create_api_key(&s.admin, "Marketing", "marketer").await;
    let wa = s.wa.name.as_str();
    let template =
        |vars: Value| json!({"name": "order_shipped", "language": "en_US", "variables": vars});

    // Every refusal comes before anything is queued, with its code and a sentence.
    let opted = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550102", "consent": {"sms": "opted_out"}}),
    )
    .await;
    let to = "+14155550101";
    let sms = s.sms.name.as_str();
    let cases = [
        (
            json!({"to": "+1 555", "channel": wa, "template": template(json!(["A", "B"]))}),
            "invalid_phone",
        ),
        (
            json!({"to": to, "channel": wa, "text": "Hi!"}),
            "window_closed",
        ),
        (
            json!({"to": to, "channel": wa, "template": {"name": "nope", "language": "en_US"}}),
            "unknown_template",
        ),
        (
            json!({"to": to, "channel": wa, "template": {"name": "not_yet", "language": "en_US", "variables": ["A"]}}),
            "template_not_approved",
        ),
        (
            json!({"to": to, "channel": wa, "template": template(json!(["Alex"]))}),
            "missing_variable",
        ),
        (
            json!({"to": to, "channel": wa, "template": template(json!({"1": "Alex"}))}),
            "missing_variable",
        ),
        (
            json!({"to": to, "channel": wa, "template": template(json!(["Alex", "x".repeat(1100)]))}),
            "too_long",
        ),
        (
            json!({"to": to, "channel": "Carrier pigeon", "text": "Hi"}),
            "unknown_channel",
        ),
        (
            json!({"to": to, "channel": sms, "text": "x".repeat(1601)}),
            "too_long",
        ),
        (json!({"to": to, "channel": wa}), "invalid_content"),
        (
            json!({"to": opted, "channel": sms, "text": "Sale!"}),
            "opted_out",
        ),
        (
            json!({"contact_id": "0190f0f0-0000-7000-8000-000000000000", "channel": wa, "text": "Hi"}),
            "unknown_contact",
        ),
    ];
    for (body, code) in cases {
        let (st, b) = send(&app, &s.key, body, None).await;
        refused(st, &b, code);
        match code {
            "window_closed" => assert!(
                b["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("24-hour window"),
                "{b}"
            ),
            "missing_variable" => assert!(
                b["error"]["message"].as_str().unwrap().contains("{{2}}"),
                "{b}"
            ),
            _ => {}
        }
    }
    // Disabled here, a channel the sends above looked up a moment ago refuses the next send at
    // once (the lookup is kept two seconds, but not across a change), and sends again once
    // enabled.
    let sms_id = s.sms.public_id.clone();
    for (action, after) in [("disable", "channel_disabled"), ("enable", "opted_out")] {
        let res = s
            .admin
            .post_form(&format!("/settings/channels/{sms_id}/{action}"), &[])
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let body = json!({"to": opted, "channel": sms, "text": "Sale!"});
        let (st, b) = send(&app, &s.key, body, None).await;
        refused(st, &b, after);
    }
    let (_, found) = get_json(&app, &s.key, "/api/v1/contacts?phone=%2B14155550101").await;
    assert_eq!(
        found["data"],
        json!([]),
        "a refused send creates no contact"
    );
    assert_eq!(message_count(&app), 0, "nothing was queued");

    // No key: 401 in the error shape.
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", app.address))
        .json(&json!({"to": "+14155550101", "channel": wa, "text": "x"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A template to a new number: 202, the contact is created, and the status moves to read.
    let body = json!({"to": "+1 (415) 555-0101", "channel": wa, "template": template(json!(["Alex", "#1234"]))});
    let (st, first) = send(&app, &marketer_key, body.clone(), Some("order-1234")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["status"], "queued");
    assert_eq!(first["to"], "+14155550101");
    assert_eq!(first["body"], "Hi Alex, your order #1234 has shipped.");
    let id = first["id"].as_str().expect("id").to_owned();
    // The same key and body: the same answer, one message (also once it has moved on).
    let (st, again) = send(&app, &marketer_key, body.clone(), Some("order-1234")).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(again["id"], id.as_str());
    // The same key with another body is refused; another client may use the same key.
    let other = json!({"to": "+14155550101", "channel": wa, "template": template(json!(["Alex", "#9999"]))});
    let (st, b) = send(&app, &marketer_key, other.clone(), Some("order-1234")).await;
    refused(st, &b, "idempotency_key_reused");
    let (st, theirs) = send(&app, &s.key, other, Some("order-1234")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{theirs}");
    assert_ne!(theirs["id"], id.as_str());
    assert_eq!(message_count(&app), 2);

    let read = wait_for_api_status(&app, &s.key, &id, "read").await;
    assert!(
        read["provider_message_id"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "{read}"
    );
    assert_eq!(read["error"], Value::Null);
    for stamp in ["created_at", "sent_at", "delivered_at", "read_at"] {
        assert!(read[stamp].as_str().is_some(), "{stamp}: {read}");
    }
    assert_eq!(read["channel"]["name"], wa);
    let (st, replay) = send(&app, &marketer_key, body, Some("order-1234")).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(replay["id"], id.as_str());
    assert_eq!(
        replay["status"], "read",
        "a replay answers with the message as it is now"
    );
    let (st, _) = get_json(&app, &s.key, "/api/v1/messages/no-such-id").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Free text: SMS has no window; WhatsApp once the customer wrote.
    let (st, b) = send(
        &app,
        &s.key,
        json!({"to": "+14155550101", "channel": s.sms.name, "text": "Your code is 1234"}),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (_, found) = get_json(&app, &s.key, "/api/v1/contacts?phone=%2B14155550101").await;
    let contact_id = found["data"][0]["id"].as_str().expect("contact").to_owned();
    customer_replies(&s.admin, &contact_id, &s.wa, "Where is my parcel?").await;
    let (st, b) = send(
        &app,
        &s.key,
        json!({"to": contact_id, "channel": s.wa.public_id, "text": "It arrives tomorrow."}),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["content"], "text");

    // Viber's session: five business messages in a row after the customer wrote, then no
    // more free text until they write again.
    let viber = channel_named(&app, "Sandbox Viber");
    customer_replies(&s.admin, &contact_id, &viber, "Hi on Viber").await;
    for i in 0..5 {
        let (st, b) = send(
            &app,
            &s.key,
            json!({"to": contact_id, "channel": viber.name, "text": format!("Update {i}")}),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    }
    let (st, b) = send(
        &app,
        &s.key,
        json!({"to": contact_id, "channel": viber.name, "text": "One more"}),
        None,
    )
    .await;
    refused(st, &b, "session_limit");
    customer_replies(&s.admin, &contact_id, &viber, "Thanks").await;
    let (st, b) = send(
        &app,
        &s.key,
        json!({"to": contact_id, "channel": viber.name, "text": "One more"}),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    crate::outbox::assert_outbox_drained(&app).await;
}

/// The send form's fields for a free text.
fn free_text<'a>(
    to: (&'a str, &'a str),
    channel: &'a Channel,
    text: &'a str,
    key: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        to,
        ("channel", channel.public_id.as_str()),
        ("mode", "text"),
        ("text", text),
        ("idempotency_key", key),
    ]
}

/// POSTs a form as htmx does (with the CSRF header and the trigger's name).
pub(crate) async fn htmx_post(
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
    trigger: Option<&str>,
) -> reqwest::Response {
    let token = client.csrf_token().await;
    let mut req = client
        .http
        .post(client.url(path))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", token)
        .form(fields);
    if let Some(t) = trigger {
        req = req.header("HX-Trigger-Name", t);
    }
    req.send().await.expect("POST")
}

/// The HTML an htmx POST answers with.
async fn htmx_html(
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
    trigger: Option<&str>,
) -> String {
    htmx_post(client, path, fields, trigger)
        .await
        .text()
        .await
        .expect("body")
}

pub(crate) fn attr(html: &str, selector: &str, name: &str) -> Option<String> {
    let doc = scraper::Html::parse_fragment(html);
    let sel = scraper::Selector::parse(selector).expect("selector");
    doc.select(&sel)
        .next()
        .and_then(|e| e.value().attr(name).map(str::to_owned))
}

async fn the_send_form_follows_the_rules_and_sends_once(app: TestApp) {
    let s = setup(&app).await;
    approved_template(&app, &s, "order_shipped", WA_BODY).await;
    let alex = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550110", "name": "Alex Doe", "attributes": {"order": "#77"}}),
    )
    .await;
    let wa_id = s.wa.public_id.as_str();

    // Send is a live area now, and the contact page links to it.
    let page = s.admin.get_html(&format!("/contacts/{alex}")).await;
    assert!(page.contains(&format!("href=\"/send?contact={alex}\"")));
    assert!(
        texts(&page, "td .window")
            .join(" ")
            .contains("closed, templates only")
    );
    assert!(page.contains(&format!("sse-connect=\"/events?contacts={alex}\"")));

    // WhatsApp, window closed: free text is disabled, with the reason.
    let page = s
        .admin
        .get_html(&format!("/send?contact={alex}&channel={wa_id}"))
        .await;
    assert!(texts(&page, "#recipient").join(" ").contains("Alex Doe"));
    assert!(
        attr(&page, "#mode-text", "disabled").is_some(),
        "free text is disabled"
    );
    let note = texts(&page, "#free-text-note").join(" ");
    assert!(note.contains("24-hour window is closed"), "{note}");
    assert!(
        texts(&page, "#selected-window")
            .join(" ")
            .contains("closed, templates only")
    );

    // Picking the template prefills its variables from the contact, per mapping.
    let pick = [
        ("contact", alex.as_str()),
        ("channel", wa_id),
        ("mode", "template"),
    ];
    let page = s
        .admin
        .get_html(&format!("/send?contact={alex}&channel={wa_id}"))
        .await;
    let template_id =
        attr(&page, "#send-template option:nth-child(2)", "value").expect("template option");
    let mut fields: Vec<(&str, &str)> = pick.to_vec();
    fields.push(("template", &template_id));
    let res = htmx_post(&s.admin, "/send/compose", &fields, Some("template")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let compose = res.text().await.expect("body");
    assert!(!compose.contains("<html"), "a partial");
    assert!(compose.contains("name=\"value.1\"") && compose.contains("name=\"value.2\""));
    fields.extend([
        ("source.1", "fallback"),
        ("key.1", "first_name"),
        ("fallback.1", "there"),
        ("source.2", "attribute"),
        ("key.2", "order"),
    ]);
    let res = htmx_post(&s.admin, "/send/compose", &fields, Some("key.2")).await;
    let compose = res.text().await.expect("body");
    assert_eq!(
        attr(&compose, "#value-2", "value").as_deref(),
        Some("#77"),
        "{compose}"
    );
    let res = htmx_post(&s.admin, "/send/compose", &fields, Some("template")).await;
    let compose = res.text().await.expect("body");
    assert_eq!(attr(&compose, "#value-1", "value").as_deref(), Some("Alex"));
    assert!(
        texts(&compose, "#preview-text")
            .join(" ")
            .contains("Hi Alex, your order #77 has shipped.")
    );
    // An attribute the contact lacks: said at the variable.
    let mut lacking = fields.clone();
    lacking.retain(|(k, _)| *k != "key.2");
    lacking.push(("key.2", "city"));
    let compose = htmx_html(&s.admin, "/send/compose", &lacking, Some("key.2")).await;
    assert!(
        compose.contains("The contact has no &#34;city&#34; for {{2}}."),
        "{compose}"
    );
    // Values are editable; the preview follows them as they are typed.
    let mut edited = fields.clone();
    edited.extend([("value.1", "Alexandra"), ("value.2", "#78")]);
    let preview = htmx_html(&s.admin, "/send/preview", &edited, Some("value.1")).await;
    assert!(
        texts(&preview, "#preview-text")
            .join(" ")
            .contains("Hi Alexandra, your order #78")
    );

    // Submitting: CSRF is required; a double submit with the form's key sends once.
    let mut submit = edited.clone();
    submit.push(("idempotency_key", "form-key-1"));
    let res = s.admin.post_form_raw("/send", &submit).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(message_count(&app), 0);
    let first = htmx_post(&s.admin, "/send", &submit, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.text().await.expect("body");
    let second = htmx_html(&s.admin, "/send", &submit, None).await;
    let id = attr(&first, "#sent-status", "data-message").expect("message id");
    assert_eq!(
        attr(&second, "#sent-status", "data-message").as_deref(),
        Some(id.as_str())
    );
    assert!(second.contains("already sent"), "{second}");
    assert_eq!(message_count(&app), 1, "one message for a double submit");
    // The next send of this template starts from the sources just used, for anyone.
    let bea = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550119", "name": "Bea Lind", "attributes": {"order": "#88"}}),
    )
    .await;
    let compose = htmx_html(
        &s.admin,
        "/send/compose",
        &[
            ("contact", bea.as_str()),
            ("channel", wa_id),
            ("mode", "template"),
            ("template", template_id.as_str()),
        ],
        Some("template"),
    )
    .await;
    assert_eq!(attr(&compose, "#value-1", "value").as_deref(), Some("Bea"));
    assert_eq!(attr(&compose, "#value-2", "value").as_deref(), Some("#88"));
    assert!(
        attr(&first, "#idempotency-key", "hx-swap-oob").is_some(),
        "a fresh key for the next message"
    );
    assert!(
        first.contains(&format!("message-{id}")),
        "the status follows live"
    );
    // Its status moves on; the contact's timeline shows it.
    wait_for_api_status(&app, &s.key, &id, "read").await;
    let page = s.admin.get_html(&format!("/contacts/{alex}")).await;
    let timeline = texts(&page, "#timeline li").join("\n");
    assert!(
        timeline.contains("Hi Alexandra, your order #78 has shipped.") && timeline.contains("Read"),
        "{timeline}"
    );
    let partial = s
        .admin
        .get_html(&format!("/contacts/{alex}/timeline"))
        .await;
    assert!(partial.contains(&format!("sse-swap=\"message-{id}\"")));

    // Free text outside the window is refused on the server too, with the reason.
    let text_fields = [
        ("contact", alex.as_str()),
        ("channel", wa_id),
        ("mode", "text"),
        ("text", "Hello there"),
        ("idempotency_key", "form-key-2"),
    ];
    let res = htmx_post(&s.admin, "/send", &text_fields, None).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.expect("body");
    assert_eq!(
        attr(&body, "#send-refused", "data-code").as_deref(),
        Some("window_closed")
    );
    assert_eq!(message_count(&app), 1);

    // The customer replies: free text is allowed, with the time left.
    customer_replies(&s.admin, &alex, &s.wa, "Thanks!").await;
    let compose = htmx_html(&s.admin, "/send/compose", &text_fields[..4], Some("mode")).await;
    assert!(
        attr(&compose, "#mode-text", "disabled").is_none(),
        "{compose}"
    );
    assert!(
        attr(&compose, "#send-text", "name").is_some(),
        "the text box is shown"
    );
    let note = texts(&compose, "#free-text-note").join(" ");
    assert!(
        note.contains("free text is allowed") && note.contains("23 h 59 min left"),
        "{note}"
    );
    let res = htmx_post(&s.admin, "/send", &text_fields, None).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap_or_default()
    );

    // SMS: encoding and segments as you type.
    let sms_fields = [
        ("contact", alex.as_str()),
        ("channel", s.sms.public_id.as_str()),
        ("mode", "text"),
        ("text", "ça va? Your order ships today."),
    ];
    let preview = htmx_html(&s.admin, "/send/preview", &sms_fields, Some("text")).await;
    let info = texts(&preview, "#sms-info").join(" ");
    assert!(info.contains("1 SMS segment"), "{info}");
    assert!(
        preview.contains("switched the message to Unicode"),
        "{preview}"
    );
    let long = "a".repeat(161);
    let preview = htmx_html(
        &s.admin,
        "/send/preview",
        &[
            ("contact", alex.as_str()),
            ("channel", s.sms.public_id.as_str()),
            ("mode", "text"),
            ("text", long.as_str()),
        ],
        Some("text"),
    )
    .await;
    assert!(
        texts(&preview, "#sms-info")
            .join(" ")
            .contains("2 SMS segments"),
        "{preview}"
    );

    // An opted-out contact cannot be sent to, and the form says so.
    let opted = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550111", "consent": {"sms": "opted_out"}}),
    )
    .await;
    let page = s
        .admin
        .get_html(&format!(
            "/send?contact={opted}&channel={}",
            s.sms.public_id
        ))
        .await;
    assert!(
        texts(&page, "#opted-out")
            .join(" ")
            .contains("opted out of SMS"),
        "{page}"
    );
    assert!(attr(&page, "#send-button", "disabled").is_some());
    let res = htmx_post(
        &s.admin,
        "/send",
        &[
            ("contact", opted.as_str()),
            ("channel", s.sms.public_id.as_str()),
            ("mode", "text"),
            ("text", "Sale"),
            ("idempotency_key", "form-key-3"),
        ],
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.expect("body").contains("opted_out"));

    // A typed number: searched, offered as a new contact, created when sent.
    let found = htmx_html(
        &s.admin,
        "/send/recipients",
        &[("search", "+1 415 555 0199")],
        Some("search"),
    )
    .await;
    assert_eq!(
        attr(&found, "button[name=phone]", "value").as_deref(),
        Some("+14155550199"),
        "{found}"
    );
    let found = htmx_html(
        &s.admin,
        "/send/recipients",
        &[("search", "Alex")],
        Some("search"),
    )
    .await;
    assert_eq!(
        attr(&found, "button[name=contact]", "value").as_deref(),
        Some(alex.as_str())
    );
    let res = htmx_post(
        &s.admin,
        "/send",
        &free_text(("phone", "+14155550199"), &s.sms, "Welcome!", "form-key-4"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.expect("body").contains("a new contact"));
    // Without JavaScript: the plain form redirects to the page with the result.
    let res = s
        .admin
        .post_form(
            "/send",
            &free_text(("phone", "+14155550199"), &s.sms, "Second", "form-key-5"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = s.admin.get_html(&location(&res)).await;
    assert!(page.contains("id=\"sent-status\""));
    // Bad input on a plain form: the page again, with the reason.
    let res = s
        .admin
        .post_form(
            "/send",
            &free_text(("phone", "12"), &s.sms, "Hi", "form-key-6"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        texts(&res.text().await.expect("body"), "#send-refused")
            .join(" ")
            .contains("Not sent")
    );
    crate::outbox::assert_outbox_drained(&app).await;
}

/// Reads the event stream until `want` appears (or `within` passes); returns what was read.
async fn read_until(res: &mut reqwest::Response, want: &str, within: Duration) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while !seen.contains(want) {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => break,
            Err(_) => break,
        }
    }
    seen
}

async fn the_event_stream_carries_inbound_replies_and_statuses(app: TestApp) {
    let s = setup(&app).await;
    let alex = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550120", "name": "Alex"}),
    )
    .await;
    let other = contact(&app, &s.key, json!({"phone": "+14155550121", "name": "Bo"})).await;

    // Anonymous visitors get no stream.
    let res = app.client().get("/events").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let mut stream = s
        .admin
        .http
        .get(s.admin.url(&format!("/events?contacts={alex}")))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let wa_event = format!("event: window-{alex}-{}", s.wa.public_id);
    let start = read_until(&mut stream, &wa_event, Duration::from_secs(5)).await;
    let start = start + &read_until(&mut stream, "\n\n", Duration::from_secs(1)).await;
    assert!(start.contains(&wa_event), "{start}");
    assert!(start.contains("closed, templates only"), "{start}");

    // Someone else's reply is not this page's business; Alex's is, within two seconds.
    customer_replies(&s.admin, &other, &s.wa, "Hi").await;
    customer_replies(&s.admin, &alex, &s.wa, "Hello?").await;
    let timeline = format!("event: timeline-{alex}");
    let seen = read_until(&mut stream, &timeline, Duration::from_secs(2)).await;
    assert!(seen.contains("open, 23 h 59 min left"), "{seen}");
    assert!(seen.contains(&format!("event: timeline-{alex}")), "{seen}");
    assert!(!seen.contains(&other), "only the followed contact: {seen}");

    // A message's statuses follow as the sandbox reports them.
    let (st, m) = send(
        &app,
        &s.key,
        json!({"to": alex, "channel": s.wa.name, "text": "Here is your update."}),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{m}");
    let id = m["id"].as_str().expect("id");
    let seen = read_until(
        &mut stream,
        "data-message-status=\"read\"",
        Duration::from_secs(5),
    )
    .await;
    assert!(seen.contains(&format!("event: message-{id}")), "{seen}");
    assert!(seen.contains("data-message-status=\"read\""), "{seen}");

    // On PostgreSQL, events cross instances: a page served by a second instance hears of a
    // reply that reached the first one.
    if app.database_url.starts_with("postgres") {
        let second = app.second_instance().await;
        let there = Client {
            http: s.admin.http.clone(),
            base: second.address.clone(),
        };
        let bo = contact(&app, &s.key, json!({"phone": "+14155550122", "name": "Bo"})).await;
        let mut far = there
            .http
            .get(there.url(&format!("/events?contacts={bo}")))
            .send()
            .await
            .expect("stream on the second instance");
        assert_eq!(far.status(), StatusCode::OK);
        let _ = read_until(&mut far, "closed, templates only", Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // its relay is listening
        customer_replies(&s.admin, &bo, &s.wa, "Hello from the other side").await;
        let seen = read_until(&mut far, "open, 23 h 59 min left", Duration::from_secs(2)).await;
        assert!(seen.contains("open, 23 h 59 min left"), "{seen}");
    }

    // Following too many contacts at once is refused.
    let many = (0..201)
        .map(|i| format!("x{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let res = s.admin.get(&format!("/events?contacts={many}")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    crate::outbox::assert_outbox_drained(&app).await;
}

/// Waits (up to `secs`) until the element's text contains `text`.
async fn wait_in(b: &crate::browser::Browser, css: &str, text: &str, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if b.text(css).await.contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{css} never showed {text:?}; it shows:\n{}\nthe page:\n{}",
        b.text(css).await,
        b.text("main").await
    );
}

async fn is_disabled(b: &crate::browser::Browser, css: &str) -> bool {
    let el = b
        .client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css}"));
    el.attr("disabled").await.expect("attr").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_the_window_opens_live_and_a_message_goes_out_to_read() {
    let app = spawn(Backend::Sqlite).await;
    let s = setup(&app).await;
    let viber = channel_named(&app, "Sandbox Viber");
    let alex = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550130", "name": "Alex Doe"}),
    )
    .await;
    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    b.wait_for_text("Hello, Ada").await;

    // The contact page: Viber's window flips to open when the customer writes there.
    b.goto(&format!("/contacts/{alex}")).await;
    let viber_row = "tr[data-channel='Sandbox Viber'] .window";
    wait_in(&b, viber_row, "closed, templates only", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the event stream connects
    customer_replies(&s.admin, &alex, &viber, "Hi on Viber").await;
    wait_in(&b, viber_row, "open, 23 h 59 min left", 2).await;
    wait_in(&b, "#timeline", "Hi on Viber", 5).await;

    // The send page, from the contact page: WhatsApp's window is closed, so no free text.
    b.click("#send-to-contact").await;
    wait_in(&b, "#recipient", "Alex Doe", 5).await;
    b.client
        .find(fantoccini::Locator::Css("#send-channel"))
        .await
        .expect("channel select")
        .select_by_value(&s.wa.public_id)
        .await
        .expect("select WhatsApp");
    wait_in(&b, "#selected-window", "closed, templates only", 5).await;
    assert!(is_disabled(&b, "#mode-text").await, "free text is disabled");
    wait_in(&b, "#free-text-note", "24-hour window is closed", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the event stream connects

    // The sandbox customer replies on WhatsApp: the badge flips within two seconds, and free
    // text becomes possible, without a reload.
    customer_replies(&s.admin, &alex, &s.wa, "Where is my parcel?").await;
    wait_in(&b, "#selected-window", "open, 23 h 59 min left", 2).await;
    wait_in(&b, "#free-text-note", "free text is allowed", 3).await;
    assert!(!is_disabled(&b, "#mode-text").await, "free text is allowed");
    b.click("#mode-text").await;
    b.fill("#send-text", "Your parcel arrives tomorrow.").await;
    wait_in(&b, "#preview-text", "Your parcel arrives tomorrow.", 5).await;
    b.click("#send-button").await;

    // The message goes out and its status moves to read, live.
    wait_in(&b, "#sent-status", "Read", 10).await;
    assert_eq!(message_count(&app), 1);
    b.goto(&format!("/contacts/{alex}")).await;
    wait_in(&b, "#timeline", "Your parcel arrives tomorrow.", 5).await;
    wait_in(&b, "#timeline", "Read", 5).await;

    // A window that ends in a few seconds: the countdown turns it closed at expiry, and the
    // send form takes free text away without a reload.
    let bo = contact(&app, &s.key, json!({"phone": "+14155550131", "name": "Bo"})).await;
    {
        let phone = herald::domain::phone::E164::parse("+14155550131", None).expect("phone");
        let wrote = chrono::Utc::now() - chrono::Duration::hours(24) + chrono::Duration::seconds(4);
        herald::storage::conversations::record_inbound(
            &mut app.db(),
            &s.wa,
            &herald::storage::conversations::Inbound {
                from: &phone,
                text: "Hello from yesterday",
                provider_message_id: Some("wamid.yesterday"),
                received_at: wrote.naive_utc(),
                profile_name: None,
            },
        )
        .expect("inbound");
    }
    b.goto(&format!("/send?contact={bo}&channel={}", s.wa.public_id))
        .await;
    wait_in(&b, "#selected-window", "open, less than a minute left", 5).await;
    assert!(
        !is_disabled(&b, "#mode-text").await,
        "free text while it lasts"
    );
    wait_in(&b, "#selected-window", "closed, templates only", 8).await;
    wait_in(&b, "#free-text-note", "24-hour window closed at", 3).await;
    assert!(
        is_disabled(&b, "#mode-text").await,
        "no free text after expiry"
    );

    // The contacts list shows the windows too.
    b.goto("/contacts").await;
    wait_in(
        &b,
        "tr[data-phone='+14155550130'] td[data-window-channel='Sandbox WhatsApp']",
        "open, 23 h 59 min left",
        5,
    )
    .await;
    b.finish().await;
}
