//! Issue 20, automations: scheduled single sends (`send_at` on the API and the send page),
//! promoted when due by the background step and cancellable until then; triggers
//! (`/api/v1/triggers`, signed deliveries to `/hooks/{slug}`).

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use diesel::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::{WA_BODY, approved_template, setup, spawn};
use crate::helpers::{TestApp, location};
use crate::provider_kit::{api, audit, get_json};
use crate::send::wait_for_api_status;
use herald::domain::trigger::Scheme;
use herald::storage::message_counts::{self, CountFilter};
use herald::storage::schema::{contacts, message_events, messages, trigger_events};

crate::both_backends!(
    spawn = spawn;
    a_scheduled_send_waits_goes_at_its_time_and_can_be_cancelled,
    the_send_page_schedules_and_the_message_page_cancels,
    a_signed_shopify_order_sent_twice_makes_one_message_that_is_read,
    a_delayed_trigger_is_cancelled_by_a_later_event_with_its_key,
    a_send_the_policy_refuses_keeps_nothing_but_its_event_and_a_retry_is_a_duplicate,
);

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn post_message(
    app: &TestApp,
    key: &str,
    body: Value,
    idem: Option<&str>,
) -> (StatusCode, Value, bool) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", app.address))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idem {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.expect("POST");
    let status = res.status();
    let replayed = res.headers().contains_key("Idempotent-Replayed");
    (status, res.json().await.expect("JSON"), replayed)
}

/// Polls until the message has left `scheduled`, `queued` and `sending`.
async fn wait_until_gone(app: &TestApp, key: &str, id: &str) -> Value {
    for _ in 0..150 {
        let (code, m) = get_json(app, key, &format!("/api/v1/messages/{id}")).await;
        assert_eq!(code, StatusCode::OK, "{m}");
        if !["scheduled", "queued", "sending"].contains(&m["status"].as_str().unwrap_or("")) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("message {id} never went out");
}

fn status_of(app: &TestApp, id: &str) -> String {
    messages::table
        .filter(messages::public_id.eq(id))
        .select(messages::status)
        .first(&mut *app.db())
        .expect("message")
}

fn timeline(app: &TestApp, id: &str) -> Vec<String> {
    messages::table
        .inner_join(message_events::table)
        .filter(messages::public_id.eq(id))
        .order(message_events::id)
        .select(message_events::status)
        .load(&mut *app.db())
        .expect("timeline")
}

/// The counters the history and the overview read agree with the messages themselves.
fn assert_counters_match(app: &TestApp) {
    let mut conn = app.db();
    for status in ["scheduled", "queued", "cancelled"] {
        let counted = message_counts::total(
            &mut conn,
            &CountFilter {
                status: Some(status.into()),
                ..CountFilter::default()
            },
        )
        .expect("counters");
        let actual: i64 = messages::table
            .filter(messages::status.eq(status))
            .count()
            .get_result(&mut *conn)
            .expect("count");
        assert_eq!(
            counted, actual,
            "{status} counted as {counted}, there are {actual}"
        );
    }
}

async fn a_scheduled_send_waits_goes_at_its_time_and_can_be_cancelled(app: TestApp) {
    let s = setup(&app).await;
    let sms = s.sms.name.as_str();
    let to = "+14155550123";
    let now = Utc::now();

    // A time in the past, too far ahead, or not RFC 3339: 422 naming `send_at`, nothing kept.
    for (send_at, words) in [
        (rfc3339(now - chrono::Duration::minutes(1)), "in the future"),
        (rfc3339(now + chrono::Duration::days(31)), "within 30 days"),
        ("tomorrow at nine".to_owned(), "RFC 3339"),
        ("2026-12-24 09:00".to_owned(), "RFC 3339"),
    ] {
        let body = json!({"to": to, "channel": sms, "text": "Hi", "send_at": send_at});
        let (st, b, _) = post_message(&app, &s.key, body, None).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{send_at}: {b}");
        assert_eq!(b["error"]["code"], "invalid_send_at", "{b}");
        let message = b["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{message}");
    }
    let none: i64 = messages::table
        .count()
        .get_result(&mut *app.db())
        .expect("count");
    assert_eq!(none, 0, "a refused schedule writes nothing");

    // An hour ahead: `scheduled`, with its time; the same key again answers the same message.
    let later = now + chrono::Duration::hours(1);
    let body = json!({"to": to, "channel": sms, "text": "Your table is ready at 8.", "send_at": rfc3339(later)});
    let (st, first, replayed) = post_message(&app, &s.key, body.clone(), Some("table-1")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    assert!(!replayed);
    assert_eq!(first["status"], "scheduled");
    let id = first["id"].as_str().expect("id").to_owned();
    let at = chrono::DateTime::parse_from_rfc3339(first["send_at"].as_str().expect("send_at"))
        .expect("RFC 3339");
    assert_eq!(at.timestamp(), later.timestamp());
    let (st, again, replayed) = post_message(&app, &s.key, body, Some("table-1")).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert!(replayed);
    assert_eq!(again["id"], first["id"]);

    // Listed in the history (the API's list) as scheduled, counted by the counters.
    let (st, list) = get_json(&app, &s.key, "/api/v1/messages?status=scheduled").await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);
    assert_counters_match(&app);

    // The dispatcher leaves it alone before its time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status_of(&app, &id), "scheduled");

    // Its time comes (the test moves the message's clock rather than waiting an hour): queued
    // by the background step, sent, and the timeline says so.
    diesel::update(messages::table.filter(messages::public_id.eq(&id)))
        .set(messages::next_attempt_at.eq((Utc::now() - chrono::Duration::seconds(1)).naive_utc()))
        .execute(&mut *app.db())
        .expect("move the clock");
    let gone = wait_until_gone(&app, &s.key, &id).await;
    assert!(
        ["sent", "delivered"].contains(&gone["status"].as_str().unwrap_or("")),
        "{gone}"
    );
    let steps = timeline(&app, &id);
    assert_eq!(
        steps.get(..2),
        Some(&["scheduled".to_owned(), "queued".to_owned()][..]),
        "{steps:?}"
    );
    assert!(steps.contains(&"sent".to_owned()), "{steps:?}");

    // A send a few seconds ahead goes by itself, not before its time.
    let soon = Utc::now() + chrono::Duration::seconds(2);
    let body = json!({"to": to, "channel": sms, "text": "Soon.", "send_at": rfc3339(soon)});
    let (st, m, _) = post_message(&app, &s.key, body, None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{m}");
    let soon_id = m["id"].as_str().expect("id").to_owned();
    let gone = wait_until_gone(&app, &s.key, &soon_id).await;
    let sent_at = chrono::DateTime::parse_from_rfc3339(gone["sent_at"].as_str().expect("sent_at"))
        .expect("RFC 3339");
    assert!(
        sent_at.timestamp() >= soon.timestamp(),
        "sent at {sent_at}, due {soon}"
    );

    // Cancelled before it goes: 200 `cancelled`, audited; then nothing more to cancel.
    let body = json!({"to": to, "channel": sms, "text": "See you tomorrow.", "send_at": rfc3339(Utc::now() + chrono::Duration::days(1))});
    let (_, m, _) = post_message(&app, &s.key, body, None).await;
    let tomorrow = m["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/messages/{tomorrow}/cancel");
    let (st, cancelled) = api(&app, Method::POST, &path, &s.key, None).await;
    assert_eq!(st, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (st, again) = api(&app, Method::POST, &path, &s.key, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "not_scheduled");
    let (st, sent) = api(
        &app,
        Method::POST,
        &format!("/api/v1/messages/{soon_id}/cancel"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "a message that went cannot be cancelled: {sent}"
    );
    let (st, _) = api(
        &app,
        Method::POST,
        "/api/v1/messages/nope/cancel",
        &s.key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let entries = audit(&app, &s.key, "message.cancelled").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["subject"]["id"], tomorrow.as_str());
    // A cancelled message stays cancelled when its time comes.
    diesel::update(messages::table.filter(messages::public_id.eq(&tomorrow)))
        .set(messages::next_attempt_at.eq((Utc::now() - chrono::Duration::seconds(1)).naive_utc()))
        .execute(&mut *app.db())
        .expect("move the clock");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status_of(&app, &tomorrow), "cancelled");
    assert_counters_match(&app);
}

async fn the_send_page_schedules_and_the_message_page_cancels(app: TestApp) {
    let s = setup(&app).await;
    let send = |send_at: String, zone: &'static str, key: &'static str| {
        let channel = s.sms.public_id.clone();
        let admin = &s.admin;
        async move {
            admin
                .post_form(
                    "/send",
                    &[
                        ("phone", "+14155550124"),
                        ("channel", &channel),
                        ("mode", "text"),
                        ("text", "Your parcel arrives tomorrow."),
                        ("idempotency_key", key),
                        ("send_at", &send_at),
                        ("send_zone", zone),
                    ],
                )
                .await
        }
    };
    // A time in the past is refused on the page with the reason.
    let past = (Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let res = send(past, "UTC", "page-1").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.expect("body");
    assert!(html.contains("must be in the future"), "{html}");
    let res = send("next tuesday".into(), "UTC", "page-2").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = send("2026-12-24T09:00".into(), "Mars/Olympus", "page-3").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Tomorrow at this time in Tokyo: scheduled for the instant that names.
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().expect("zone");
    let local = (Utc::now() + chrono::Duration::days(1))
        .with_timezone(&tokyo)
        .naive_local();
    let typed = local.format("%Y-%m-%dT%H:%M").to_string();
    let res = send(typed, "Asia/Tokyo", "page-4").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let sent_id = location(&res)
        .split("sent=")
        .nth(1)
        .expect("the message in the redirect")
        .to_owned();
    let (status, due): (String, chrono::NaiveDateTime) = messages::table
        .filter(messages::public_id.eq(&sent_id))
        .select((messages::status, messages::next_attempt_at))
        .first(&mut *app.db())
        .expect("message");
    assert_eq!(status, "scheduled");
    let expected = herald::domain::broadcast::local_to_utc(
        chrono::NaiveDateTime::parse_from_str(
            &local.format("%Y-%m-%dT%H:%M").to_string(),
            "%Y-%m-%dT%H:%M",
        )
        .expect("minute"),
        tokyo,
    );
    assert_eq!(due.and_utc(), expected);

    // Its page offers to cancel it (behind a confirmation); cancelling it says so.
    let page = s.admin.get_html(&format!("/messages/{sent_id}")).await;
    assert!(page.contains("id=\"cancel-scheduled\""), "{page}");
    assert!(page.contains("data-confirm="), "{page}");
    let res = s
        .admin
        .post_form(&format!("/messages/{sent_id}/cancel"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&app, &sent_id), "cancelled");
    let page = s.admin.get_html(&format!("/messages/{sent_id}")).await;
    assert!(
        !page.contains("id=\"cancel-scheduled\""),
        "no cancel button once cancelled"
    );
    // Without the CSRF token nothing happens.
    let res = s
        .admin
        .post_form_raw(&format!("/messages/{sent_id}/cancel"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------------
// Triggers

const ORDER: &str = include_str!("../fixtures/shopify_orders_create.json");

fn order_mapping() -> Value {
    json!({
        "phone": "/customer/phone",
        "default_country": "US",
        "name": "/customer/first_name",
        "attributes": {"last_order": "/name"},
        "variables": {"1": "/customer/first_name", "2": {"path": "/name", "fallback": "your order"}},
        "conditions": [{"path": "/financial_status", "equals": "paid"}]
    })
}

/// Posts `body` to a trigger's URL, signed by `scheme` with `secret` (or with these headers).
async fn deliver(url: &str, headers: &[(String, String)], body: &str) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let res = req.send().await.expect("POST");
    let status = res.status();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn signed(
    scheme: Scheme,
    secret: &str,
    url: &str,
    body: &str,
    delivery: &str,
) -> Vec<(String, String)> {
    herald::domain::trigger::sign(
        scheme,
        secret,
        "POST",
        url,
        body.as_bytes(),
        delivery,
        Utc::now(),
    )
}

/// Creates a trigger through the API: its secret and the URL to deliver to.
async fn create_trigger(app: &TestApp, key: &str, body: &Value) -> (String, String) {
    let (st, created) = api(app, Method::POST, "/api/v1/triggers", key, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let secret = created["verification"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let url = created["url"].as_str().expect("url");
    let hook = format!(
        "{}{}",
        app.address,
        &url[url.find("/hooks/").expect("path")..]
    );
    (secret, hook)
}

fn count_events(app: &TestApp) -> i64 {
    trigger_events::table
        .count()
        .get_result(&mut *app.db())
        .expect("count")
}

async fn a_signed_shopify_order_sent_twice_makes_one_message_that_is_read(app: TestApp) {
    let s = setup(&app).await;
    approved_template(&app, &s, "order_shipped", WA_BODY).await;
    let template = json!({"name": "order_shipped", "language": "en_US"});
    let base = json!({
        "name": "Shopify orders",
        "channel": s.wa.name,
        "template": template,
        "verification": {"scheme": "shopify", "secret": "shpss_5e1f0c"},
    });
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };

    // A mapping naming a variable the template lacks (and leaving one out) is refused.
    let bad = with(
        json!({"mapping": {"phone": "/customer/phone", "variables": {"1": "/customer/first_name", "3": "/name"}}}),
    );
    let (st, b) = api(&app, Method::POST, "/api/v1/triggers", &s.key, Some(&bad)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "invalid_mapping", "{b}");
    let words = b["error"]["message"].as_str().unwrap_or_default();
    assert!(words.contains("no variable \"3\""), "{words}");
    // A pointer that is not one, a scheme nobody uses, Shopify without its secret.
    for (body, code) in [
        (
            with(
                json!({"mapping": {"phone": "customer.phone", "variables": {"1": "/a", "2": "/b"}}}),
            ),
            "invalid_mapping",
        ),
        (
            with(
                json!({"mapping": order_mapping(), "verification": {"scheme": "carrier-pigeon", "secret": "x"}}),
            ),
            "invalid_trigger",
        ),
        (
            with(json!({"mapping": order_mapping(), "verification": {"scheme": "shopify"}})),
            "invalid_trigger",
        ),
    ] {
        let (st, b) = api(&app, Method::POST, "/api/v1/triggers", &s.key, Some(&body)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["code"], code, "{b}");
    }
    // Only admins manage triggers.
    let marketer = crate::helpers::create_api_key(&s.admin, "Marketing", "marketer").await;
    let (st, _) = api(&app, Method::GET, "/api/v1/triggers", &marketer, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, created) = api(
        &app,
        Method::POST,
        "/api/v1/triggers",
        &s.key,
        Some(&with(json!({"mapping": order_mapping()}))),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let url = created["url"].as_str().expect("url").to_owned();
    assert!(url.contains("/hooks/"), "{url}");
    let id = created["id"].as_str().expect("id").to_owned();
    let hook = format!(
        "{}{}",
        app.address,
        &url[url.find("/hooks/").expect("path")..]
    );
    let (_, audited) = (0, audit(&app, &s.key, "trigger.created").await);
    assert_eq!(audited.len(), 1);

    // Try it: the sample order's recipient, variables and message; nothing is sent.
    let (st, trial) = api(
        &app,
        Method::POST,
        &format!("/api/v1/triggers/{id}/try"),
        &s.key,
        Some(&json!({"payload": serde_json::from_str::<Value>(ORDER).expect("fixture")})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{trial}");
    assert_eq!(trial["recipient"], "+14155550134");
    assert_eq!(trial["variables"]["1"], "John");
    assert_eq!(trial["rendered"], "Hi John, your order #9999 has shipped.");
    assert_eq!(count_events(&app), 0);

    // Unsigned, wrongly signed, or to an unknown URL: refused, nothing stored.
    let (st, _) = deliver(&hook, &[], ORDER).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, b) = deliver(
        &hook,
        &signed(Scheme::Shopify, "not-the-secret", &hook, ORDER, "d-0"),
        ORDER,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"]["code"], "invalid_signature");
    let (st, _) = deliver(&format!("{}/hooks/nope", app.address), &[], ORDER).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        count_events(&app),
        0,
        "nothing stored for a refused request"
    );

    // The signed order, delivered twice as Shopify retries: one message.
    let headers = signed(
        Scheme::Shopify,
        "shpss_5e1f0c",
        &hook,
        ORDER,
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    );
    let (st, first) = deliver(&hook, &headers, ORDER).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["outcome"], "queued", "{first}");
    let (st, again) = deliver(&hook, &headers, ORDER).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "duplicate", "{again}");
    let message_id = first["message_id"].as_str().expect("message").to_owned();
    let read = wait_for_api_status(&app, &s.key, &message_id, "read").await;
    assert_eq!(read["body"], "Hi John, your order #9999 has shipped.");
    assert_eq!(read["source"], "trigger");
    let made: i64 = messages::table
        .count()
        .get_result(&mut *app.db())
        .expect("count");
    assert_eq!(made, 1, "one message for two deliveries");
    // The contact got the mapped name and attribute.
    let (_, contact) = get_json(
        &app,
        &s.key,
        &format!(
            "/api/v1/contacts/{}",
            read["contact_id"].as_str().unwrap_or_default()
        ),
    )
    .await;
    assert_eq!(contact["name"], "John", "{contact}");
    assert_eq!(contact["attributes"]["last_order"], "#9999", "{contact}");

    // What Herald cannot use is acknowledged and logged with the reason.
    let mut pending: Value = serde_json::from_str(ORDER).expect("fixture");
    pending["financial_status"] = json!("pending");
    let pending = pending.to_string();
    let mut no_phone: Value = serde_json::from_str(ORDER).expect("fixture");
    no_phone["customer"]["phone"] = Value::Null;
    let no_phone = no_phone.to_string();
    let mut bad_phone: Value = serde_json::from_str(ORDER).expect("fixture");
    bad_phone["customer"]["phone"] = json!("12");
    let bad_phone = bad_phone.to_string();
    for (i, (body, outcome, words)) in [
        (pending.as_str(), "skipped", "pending, not paid"),
        (no_phone.as_str(), "refused", "no phone number"),
        (bad_phone.as_str(), "refused", "not a phone number"),
        ("this is not JSON", "refused", "not JSON"),
    ]
    .into_iter()
    .enumerate()
    {
        let (st, b) = deliver(
            &hook,
            &signed(
                Scheme::Shopify,
                "shpss_5e1f0c",
                &hook,
                body,
                &format!("d-{i}"),
            ),
            body,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["outcome"], outcome, "{b}");
        assert!(
            b["reason"].as_str().unwrap_or_default().contains(words),
            "{b}"
        );
    }
    assert_eq!(count_events(&app), 5);
    let made: i64 = messages::table
        .count()
        .get_result(&mut *app.db())
        .expect("count");
    assert_eq!(made, 1);

    // Disabled: the sender is told to stop (410), nothing stored.
    let (st, t) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/triggers/{id}"),
        &s.key,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["enabled"], false);
    let (st, _) = deliver(
        &hook,
        &signed(Scheme::Shopify, "shpss_5e1f0c", &hook, ORDER, "d-9"),
        ORDER,
    )
    .await;
    assert_eq!(st, StatusCode::GONE);
    assert_eq!(audit(&app, &s.key, "trigger.disabled").await.len(), 1);
    let (st, _) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/triggers/{id}"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = get_json(&app, &s.key, &format!("/api/v1/triggers/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn a_delayed_trigger_is_cancelled_by_a_later_event_with_its_key(app: TestApp) {
    let s = setup(&app).await;
    let body = json!({
        "name": "Abandoned carts",
        "channel": s.sms.name,
        "text": "You left something in your cart.",
        "verification": {"scheme": "standard_webhooks"},
        "mapping": {
            "phone": "/phone",
            "conditions": [{"path": "/status", "equals": "open"}],
            "delay_minutes": 120,
            "delay_key": "/cart",
            "dedup_key": "/event"
        }
    });
    let (secret, hook) = create_trigger(&app, &s.key, &body).await;
    assert!(
        secret.starts_with("whsec_"),
        "Herald made the secret: {secret}"
    );

    let open = json!({"event": "e1", "cart": "c-7", "status": "open", "phone": "+14155550125"})
        .to_string();
    let (st, first) = deliver(
        &hook,
        &signed(Scheme::StandardWebhooks, &secret, &hook, &open, "msg_1"),
        &open,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["outcome"], "scheduled", "{first}");
    let scheduled = first["message_id"].as_str().expect("message").to_owned();
    assert_eq!(status_of(&app, &scheduled), "scheduled");

    // The cart is bought before the delay ran out: the later event with the same cart cancels
    // the reminder (and is itself skipped by the condition).
    let bought =
        json!({"event": "e2", "cart": "c-7", "status": "converted", "phone": "+14155550125"})
            .to_string();
    let (st, second) = deliver(
        &hook,
        &signed(Scheme::StandardWebhooks, &secret, &hook, &bought, "msg_2"),
        &bought,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{second}");
    assert_eq!(second["outcome"], "skipped", "{second}");
    assert_eq!(status_of(&app, &scheduled), "cancelled");

    // A timestamp older than five minutes is refused.
    let old = herald::domain::trigger::sign(
        Scheme::StandardWebhooks,
        &secret,
        "POST",
        &hook,
        open.as_bytes(),
        "msg_3",
        Utc::now() - chrono::Duration::minutes(6),
    );
    let (st, _) = deliver(&hook, &old, &open).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_counters_match(&app);
}

/// The policy refuses the send after the contact was written (free text on WhatsApp with no
/// open window): the event is recorded as refused with the reason, the contact it would have
/// made is not kept, and the sender's retry is a duplicate.
async fn a_send_the_policy_refuses_keeps_nothing_but_its_event_and_a_retry_is_a_duplicate(
    app: TestApp,
) {
    let s = setup(&app).await;
    let body = json!({
        "name": "Order notes",
        "channel": s.wa.name,
        "text": "Your order is ready.",
        "verification": {"scheme": "standard_webhooks"},
        "mapping": {"phone": "/phone", "name": "/name"}
    });
    let (secret, hook) = create_trigger(&app, &s.key, &body).await;
    let secret = secret.as_str();
    let event = json!({"phone": "+14155550177", "name": "Nobody"}).to_string();
    let headers = signed(Scheme::StandardWebhooks, secret, &hook, &event, "msg_r1");
    let (st, first) = deliver(&hook, &headers, &event).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["outcome"], "refused", "{first}");
    assert!(
        first["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{first}"
    );
    let (st, again) = deliver(&hook, &headers, &event).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "duplicate", "{again}");

    assert_eq!(count_events(&app), 1, "the refusal is recorded once");
    let recorded: (String, Option<String>, Option<i64>) = trigger_events::table
        .select((
            trigger_events::outcome,
            trigger_events::reason,
            trigger_events::message_id,
        ))
        .first(&mut *app.db())
        .expect("event");
    assert_eq!(recorded.0, "refused");
    assert_eq!(recorded.1.as_deref(), first["reason"].as_str());
    assert_eq!(recorded.2, None);
    let made: i64 = messages::table
        .count()
        .get_result(&mut *app.db())
        .expect("count");
    assert_eq!(made, 0, "no message");
    let kept: i64 = contacts::table
        .filter(contacts::phone.eq("+14155550177"))
        .count()
        .get_result(&mut *app.db())
        .expect("count");
    assert_eq!(kept, 0, "the refused send's contact is rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_an_admin_makes_a_shopify_trigger_and_tries_an_order() {
    let app = spawn(crate::helpers::Backend::Sqlite).await;
    let s = setup(&app).await;
    approved_template(&app, &s, "order_shipped", WA_BODY).await;
    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    b.wait_for_text("Hello, Ada").await;

    // Automations › New trigger: Shopify, the approved template, the example mapping of an
    // orders/create payload as the form offers it.
    b.click("a[href='/automations']").await;
    b.wait_for_text("New trigger").await;
    b.fill("#t-name", "Shopify orders").await;
    crate::broadcasts::select(&b, "#t-channel", &s.wa.public_id).await;
    crate::broadcasts::select(&b, "#t-template", "order_shipped|en_US").await;
    crate::broadcasts::select(&b, "#t-scheme", "shopify").await;
    b.fill("#t-secret", "shpss_5e1f0c").await;
    b.click("#trigger-form button[type=submit]").await;
    b.wait_for_text("Paste its URL and secret").await;
    assert!(b.text("#trigger-url").await.contains("/hooks/"));

    // Try it: a real orders/create payload, pasted; the confirmation as John would read it.
    b.client
        .execute(
            "document.querySelector('#try-sample').value = arguments[0];",
            vec![json!(ORDER)],
        )
        .await
        .expect("paste the sample");
    b.click("#try-button").await;
    b.wait_for_text("Hi John, your order #9999 has shipped.")
        .await;
    assert!(b.text("#trial-recipient").await.contains("+14155550134"));
    assert!(
        b.text("#trigger-events")
            .await
            .contains("Nothing received yet")
    );
    b.finish().await;
}
