//! A broadcast's timing and content per recipient at send time: each recipient's local time,
//! quiet hours in the recipient's local time (messages wait, never dropped), WhatsApp's
//! window-aware mode, and a template the provider refuses pausing the broadcast. The
//! arithmetic across DST changes is unit-tested in `domain::local_time`; these tests put real
//! zones on each side of "now".

use std::time::Duration;

use chrono::{Timelike, Utc};
use diesel::prelude::*;
use herald::storage::schema::{broadcasts, messages};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::{Setup, contact, customer_replies, setup, spawn};
use crate::helpers::TestApp;
use crate::provider_kit::api;

async fn create(app: &TestApp, s: &Setup, body: &Value) -> (StatusCode, Value) {
    api(app, Method::POST, "/api/v1/broadcasts", &s.key, Some(body)).await
}

async fn launch(app: &TestApp, s: &Setup, id: &str) -> Value {
    let (status, b) = api(
        app,
        Method::POST,
        &format!("/api/v1/broadcasts/{id}/launch"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b
}

/// Polls the broadcast until `done` holds (or fails after `secs`).
async fn until(
    app: &TestApp,
    s: &Setup,
    id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, b) = api(
            app,
            Method::GET,
            &format!("/api/v1/broadcasts/{id}"),
            &s.key,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        if done(&b) {
            return b;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The phone numbers the broadcast's messages went to.
fn sent_to(app: &TestApp) -> Vec<String> {
    let mut to: Vec<String> = messages::table
        .filter(messages::campaign_id.is_not_null())
        .select(messages::to_address)
        .load(&mut *app.db())
        .expect("messages");
    to.sort();
    to
}

/// Three recipients in three places: Tokyo (the contact's own zone, UTC+9 all year), London
/// (from the +44 number) and the broadcast's zone (a +1 number, whose country has many zones).
async fn three_places(app: &TestApp, s: &Setup) {
    for (phone, zone) in [
        ("+819012345678", "Asia/Tokyo"),
        ("+447911123456", ""),
        ("+14155550123", ""),
    ] {
        contact(
            app,
            &s.key,
            json!({"phone": phone, "time_zone": zone, "lists": ["World"]}),
        )
        .await;
    }
}

async fn each_recipient_gets_it_at_their_local_time(app: TestApp) {
    let s = setup(&app).await;
    three_places(&app, &s).await;
    // Five minutes ago on Tokyo's clock: come in Tokyo, still hours away in London and in
    // the broadcast's zone (New York).
    let tokyo_now = Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .naive_local();
    let local = (tokyo_now - chrono::Duration::minutes(5)).format("%Y-%m-%dT%H:%M");
    let (status, b) = create(
        &app,
        &s,
        &json!({
            "name": "Local morning",
            "channel": s.sms.name,
            "audience": {"lists": ["World"]},
            "message": {"text": "Good morning from us."},
            "schedule": {"at": local.to_string(), "time_zone": "America/New_York", "recipient_local_time": true},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["schedule"]["recipient_local_time"], true, "{b}");
    assert_eq!(b["schedule"]["local_time"], local.to_string(), "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    launch(&app, &s, &id).await;

    // Tokyo's recipient gets it; the other two wait, and the broadcast says until when.
    let waiting = until(&app, &s, &id, 30, |b| {
        b["state"] == "running"
            && b["counts"]["pending"] == 2
            && b["pause_reason"]
                .as_str()
                .is_some_and(|r| r.contains("in their local time"))
    })
    .await;
    assert_eq!(sent_to(&app), vec!["+819012345678".to_owned()], "{waiting}");
    // It started at Tokyo's time (the first zone's), five minutes ago.
    let started = chrono::DateTime::parse_from_rfc3339(waiting["schedule"]["at"].as_str().unwrap())
        .expect("at");
    let ago = Utc::now() - started.with_timezone(&Utc);
    assert!(
        ago > chrono::Duration::minutes(4) && ago < chrono::Duration::minutes(7),
        "{waiting}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sent_to(&app).len(), 1, "nobody else before their time");

    // The zones found at launch: the contact's, the number's country's, the broadcast's.
    let timing: Option<String> = broadcasts::table
        .select(broadcasts::timing)
        .first(&mut *app.db())
        .expect("timing");
    let timing: Value = serde_json::from_str(&timing.expect("stored")).expect("JSON");
    let mut zones: Vec<String> = serde_json::from_value(timing["zones"].clone()).expect("zones");
    zones.sort();
    assert_eq!(
        zones,
        vec!["America/New_York", "Asia/Tokyo", "Europe/London"]
    );

    // Local time without a start is refused at the field.
    let (status, err) = create(
        &app,
        &s,
        &json!({
            "name": "No time",
            "channel": s.sms.name,
            "audience": {"lists": ["World"]},
            "message": {"text": "Hello."},
            "schedule": {"recipient_local_time": true},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(err["error"]["fields"]["schedule.at"].is_string(), "{err}");
}

async fn quiet_hours_hold_recipients_until_they_end(app: TestApp) {
    let s = setup(&app).await;
    three_places(&app, &s).await;
    // Quiet hours from an hour ago to an hour ahead on Tokyo's clock: quiet there now, not in
    // London or New York (8 to 14 hours behind).
    let tokyo_hour = Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).hour();
    let from = format!("{:02}:00", (tokyo_hour + 23) % 24);
    let to = format!("{:02}:00", (tokyo_hour + 2) % 24);
    let (status, err) = create(
        &app,
        &s,
        &json!({
            "name": "Bad quiet",
            "channel": s.sms.name,
            "audience": {"lists": ["World"]},
            "message": {"text": "Hello."},
            "schedule": {"quiet_hours": {"from": "22:00", "to": "22:00"}},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["fields"]["schedule.quiet_hours"].is_string(),
        "{err}"
    );
    let (status, b) = create(
        &app,
        &s,
        &json!({
            "name": "Considerate",
            "channel": s.sms.name,
            "audience": {"lists": ["World"]},
            "message": {"text": "Our news."},
            "schedule": {"time_zone": "America/New_York", "quiet_hours": {"from": from, "to": to}},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["schedule"]["quiet_hours"]["from"], from, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    launch(&app, &s, &id).await;

    let waiting = until(&app, &s, &id, 30, |b| {
        b["counts"]["pending"] == 1
            && b["pause_reason"]
                .as_str()
                .is_some_and(|r| r.contains("quiet hours"))
    })
    .await;
    assert_eq!(
        sent_to(&app),
        vec!["+14155550123".to_owned(), "+447911123456".to_owned()],
        "{waiting}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sent_to(&app).len(),
        2,
        "Tokyo waits while it is quiet there"
    );

    // Quiet hours over in Tokyo (the stored hours moved to another part of its day): the
    // recipient who waited gets it, and the broadcast completes with everyone sent to once.
    let later = format!(
        r#"{{"quiet_hours":{{"from":"{:02}:00:00","to":"{:02}:00:00"}},"zones":["America/New_York","Asia/Tokyo","Europe/London"]}}"#,
        (tokyo_hour + 3) % 24,
        (tokyo_hour + 4) % 24
    );
    diesel::update(broadcasts::table)
        .set(broadcasts::timing.eq(later))
        .execute(&mut *app.db())
        .expect("timing");
    let done = until(&app, &s, &id, 30, |b| b["state"] == "completed").await;
    assert_eq!(done["counts"]["pending"], 0, "{done}");
    assert!(done["pause_reason"].is_null(), "{done}");
    assert_eq!(sent_to(&app).len(), 3);
}

async fn window_aware_sends_free_text_where_the_window_is_open(app: TestApp) {
    let s = setup(&app).await;
    crate::fixtures::approved_template(&app, &s, "news_tpl", "Hi {{1}}, we have news.").await;
    let open = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550201", "name": "Ada", "lists": ["Mixed"]}),
    )
    .await;
    contact(
        &app,
        &s.key,
        json!({"phone": "+14155550202", "name": "Bo", "lists": ["Mixed"]}),
    )
    .await;
    customer_replies(&s.admin, &open, &s.wa, "Any news?").await;
    let body = |channel: &str| {
        json!({
            "name": "Aware",
            "channel": channel,
            "audience": {"lists": ["Mixed"]},
            "message": {
                "template": {"name": "news_tpl", "language": "en_US",
                             "variables": {"1": {"source": "attribute", "key": "name"}}},
                "window_text": "Thanks for writing: our news is on the site."
            },
        })
    };
    let (status, b) = create(&app, &s, &body(&s.wa.name)).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(
        b["message"]["template"]["window_text"], "Thanks for writing: our news is on the site.",
        "{b}"
    );
    let id = b["id"].as_str().expect("id").to_owned();
    launch(&app, &s, &id).await;
    until(&app, &s, &id, 30, |b| b["state"] == "completed").await;
    let mut sent: Vec<(String, String, String)> = messages::table
        .filter(messages::campaign_id.is_not_null())
        .select((messages::to_address, messages::content_kind, messages::body))
        .load(&mut *app.db())
        .expect("messages");
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                "+14155550201".to_owned(),
                "text".to_owned(),
                "Thanks for writing: our news is on the site.".to_owned()
            ),
            (
                "+14155550202".to_owned(),
                "template".to_owned(),
                "Hi Bo, we have news.".to_owned()
            ),
        ]
    );
    // Only WhatsApp has a window.
    let (status, err) = create(&app, &s, &body(&s.sms.name)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
}

async fn a_template_the_provider_refuses_pauses_the_broadcast(app: TestApp) {
    let s = setup(&app).await;
    crate::fixtures::approved_template(&app, &s, "promo_tpl", "Hi {{1}}, a promotion.").await;
    let (status, ch) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{}", s.wa.public_id),
        &s.key,
        Some(&json!({"rate_limit_per_second": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ch}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..12 {
        contact(
            &app,
            &s.key,
            json!({"phone": format!("+141555503{i:02}"), "name": "Pat", "lists": ["Promo"]}),
        )
        .await;
    }
    let (status, b) = create(
        &app,
        &s,
        &json!({
            "name": "Promo",
            "channel": s.wa.name,
            "audience": {"lists": ["Promo"]},
            "message": {"template": {"name": "promo_tpl", "language": "en_US",
                        "variables": {"1": {"source": "attribute", "key": "name"}}}},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    launch(&app, &s, &id).await;
    // A message's status report says Meta paused the template (what the webhook records for a
    // status with error 132015): the broadcast pauses, naming it. Written over a message the
    // sandbox has finished reporting on (`read`), so that no later report of its moves it.
    let first = loop {
        let sent: Option<i64> = messages::table
            .filter(messages::campaign_id.is_not_null())
            .filter(messages::status.eq("read"))
            .select(messages::id)
            .first(&mut *app.db())
            .optional()
            .expect("first");
        if let Some(id) = sent {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    diesel::update(messages::table.find(first))
        .set((
            messages::status.eq("failed"),
            messages::error_code.eq("132015"),
            messages::error_message.eq("Template is paused due to low quality"),
        ))
        .execute(&mut *app.db())
        .expect("failed");
    let paused = until(&app, &s, &id, 30, |b| b["state"] == "paused").await;
    let reason = paused["pause_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("132015"), "{paused}");
    assert!(
        paused["counts"]["pending"].as_i64().unwrap() > 0,
        "{paused}"
    );
    // Resumed once the template can be sent again: it goes on to the end, nobody twice.
    let (status, resumed) = api(
        &app,
        Method::POST,
        &format!("/api/v1/broadcasts/{id}/resume"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let done = until(&app, &s, &id, 60, |b| b["state"] == "completed").await;
    assert_eq!(done["counts"]["failed"], 1, "{done}");
    let to = sent_to(&app);
    let mut unique = to.clone();
    unique.dedup();
    assert_eq!((to.len(), unique.len()), (12, 12));
}

async fn the_form_takes_local_time_and_quiet_hours(app: TestApp) {
    let s = setup(&app).await;
    three_places(&app, &s).await;
    let form = |quiet_to: &'static str| {
        vec![
            ("name", "Evening news"),
            ("channel", s.sms.public_id.as_str()),
            ("text", "Our evening news."),
            ("send_at", "2030-06-01T09:00"),
            ("time_zone", "Europe/Paris"),
            ("local_time", "on"),
            ("quiet_from", "21:00"),
            ("quiet_to", quiet_to),
            ("next", "review"),
        ]
    };
    // Quiet hours that end when they start are refused at the field, with what was typed kept.
    let res = s.admin.post_form("/broadcasts", &form("21:00")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("Quiet hours must start and end"), "{html}");
    assert!(
        html.contains("name=\"local_time\" value=\"on\" checked"),
        "{html}"
    );

    let res = s.admin.post_form("/broadcasts", &form("08:00")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = crate::helpers::location(&res);
    let html = s.admin.get_html(&page).await;
    assert!(
        html.contains("2030-06-01 09:00 in each recipient&#39;s local time"),
        "{html}"
    );
    assert!(html.contains("quiet hours 21:00–08:00"), "{html}");
    let edit = s.admin.get_html(&format!("{page}/edit")).await;
    assert!(edit.contains("value=\"21:00\""), "{edit}");
    assert!(edit.contains("value=\"08:00\""), "{edit}");
}

crate::both_backends!(
    spawn = spawn;
    each_recipient_gets_it_at_their_local_time,
    quiet_hours_hold_recipients_until_they_end,
    window_aware_sends_free_text_where_the_window_is_open,
    a_template_the_provider_refuses_pauses_the_broadcast,
    the_form_takes_local_time_and_quiet_hours,
);
