//! Issue 20, reminder rules (`/api/v1/reminders`): a reminder goes once when a contact's date
//! comes due, moves with the date, is dropped when the date is cleared, and is skipped (with
//! its reason) when it is already older than the rule's grace period.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use diesel::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::{setup, spawn};
use crate::helpers::TestApp;
use crate::provider_kit::{api, get_json};
use herald::storage::schema::{contacts, messages, reminders};

crate::both_backends!(
    spawn = spawn;
    a_reminder_goes_once_moves_with_the_date_and_is_dropped_when_cleared,
    reminder_rules_are_managed_through_the_api,
    three_workers_send_each_reminder_once,
);

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn set_date(app: &TestApp, key: &str, phone: &str, value: Value) {
    let (st, b) = api(
        app,
        Method::POST,
        "/api/v1/contacts",
        key,
        Some(&json!({"phone": phone, "attributes": {"appointment_at": value}})),
    )
    .await;
    assert!(st.is_success(), "{st} {b}");
}

/// The rule's reminders for the contact: (attribute value, state, reason, message id).
fn rows(app: &TestApp, phone: &str) -> Vec<(String, String, Option<String>, Option<i64>)> {
    reminders::table
        .inner_join(contacts::table)
        .filter(contacts::phone.eq(phone))
        .order(reminders::id.asc())
        .select((
            reminders::attribute_value,
            reminders::state,
            reminders::reason,
            reminders::message_id,
        ))
        .load(&mut *app.db())
        .expect("reminders")
}

/// Polls until `check` holds for the contact's reminders (the background step runs each second).
async fn wait_for(
    app: &TestApp,
    phone: &str,
    check: impl Fn(&[(String, String, Option<String>, Option<i64>)]) -> bool,
) -> Vec<(String, String, Option<String>, Option<i64>)> {
    for _ in 0..100 {
        let r = rows(app, phone);
        if check(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("reminders never got there: {:?}", rows(app, phone));
}

fn reminder_messages(app: &TestApp) -> i64 {
    messages::table
        .filter(messages::source.eq("reminder"))
        .count()
        .get_result(&mut *app.db())
        .expect("count")
}

async fn a_reminder_goes_once_moves_with_the_date_and_is_dropped_when_cleared(app: TestApp) {
    let s = setup(&app).await;
    let phone = "+14155550177";
    // The appointment 62 seconds ahead, the reminder a minute before it: due in 2 seconds.
    let soon = Utc::now() + chrono::Duration::seconds(62);
    set_date(&app, &s.key, phone, json!(rfc3339(soon))).await;
    let (st, rule) = api(
        &app,
        Method::POST,
        "/api/v1/reminders",
        &s.key,
        Some(&json!({
            "name": "Appointment tomorrow",
            "channel": s.sms.name,
            "text": "See you soon.",
            "attribute": "appointment_at",
            "offset_minutes": -1,
        })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    assert_eq!(rule["grace_minutes"], 60, "{rule}");

    let sent = wait_for(&app, phone, |r| r.iter().any(|x| x.1 == "sent")).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].3.is_some(),
        "the reminder links its message: {sent:?}"
    );
    // Once: later steps do not send it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reminder_messages(&app), 1);

    // The date moves: a new reminder is due at the new time; moving it again cancels that one.
    let later = Utc::now() + chrono::Duration::days(2);
    set_date(&app, &s.key, phone, json!(rfc3339(later))).await;
    wait_for(&app, phone, |r| r.iter().any(|x| x.1 == "pending")).await;
    let again = Utc::now() + chrono::Duration::days(3);
    set_date(&app, &s.key, phone, json!(rfc3339(again))).await;
    let moved = wait_for(&app, phone, |r| {
        r.iter().any(|x| x.1 == "cancelled") && r.iter().any(|x| x.0 == rfc3339(again))
    })
    .await;
    let pending: Vec<_> = moved.iter().filter(|x| x.1 == "pending").collect();
    assert_eq!(pending.len(), 1, "{moved:?}");
    assert_eq!(pending[0].0, rfc3339(again));

    // Cleared: nothing pending any more.
    set_date(&app, &s.key, phone, Value::Null).await;
    wait_for(&app, phone, |r| r.iter().all(|x| x.1 != "pending")).await;

    // Due three hours ago (grace one hour): skipped with the reason, never sent.
    let past = Utc::now() - chrono::Duration::hours(3);
    set_date(&app, &s.key, phone, json!(rfc3339(past))).await;
    let skipped = wait_for(&app, phone, |r| r.iter().any(|x| x.0 == rfc3339(past))).await;
    let row = skipped.iter().find(|x| x.0 == rfc3339(past)).expect("row");
    assert_eq!(row.1, "skipped");
    assert!(row.2.as_deref().unwrap_or("").contains("grace"), "{row:?}");

    // Not a date: skipped, with why.
    set_date(&app, &s.key, phone, json!("next tuesday")).await;
    let bad = wait_for(&app, phone, |r| r.iter().any(|x| x.0 == "next tuesday")).await;
    let row = bad.iter().find(|x| x.0 == "next tuesday").expect("row");
    assert_eq!(row.1, "skipped");
    assert!(
        row.2.as_deref().unwrap_or("").contains("not a date"),
        "{row:?}"
    );
    assert_eq!(reminder_messages(&app), 1);
}

async fn reminder_rules_are_managed_through_the_api(app: TestApp) {
    let s = setup(&app).await;
    let base = json!({"name": "Day before", "channel": s.sms.name, "text": "Tomorrow!", "attribute": "appointment_at"});
    // Refused with the field named: no timing, a bad time of day, both timings, a bad zone.
    for (extra, code, words) in [
        (json!({}), "invalid_timing", "offset_minutes"),
        (json!({"at_time": "25:00"}), "invalid_reminder", "HH:MM"),
        (
            json!({"at_time": "09:00", "offset_minutes": 5}),
            "invalid_timing",
            "not both",
        ),
        (
            json!({"offset_minutes": 5, "time_zone": "Mars/Base"}),
            "invalid_reminder",
            "time zone",
        ),
        (
            json!({"offset_minutes": 5, "grace_minutes": -1}),
            "invalid_reminder",
            "grace",
        ),
    ] {
        let mut body = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (st, b) = api(&app, Method::POST, "/api/v1/reminders", &s.key, Some(&body)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {b}");
        assert_eq!(b["error"]["code"], code, "{b}");
        assert!(b.to_string().contains(words), "{b}");
    }
    let mut body = base.clone();
    body["at_time"] = json!("09:00");
    body["day_offset"] = json!(-1);
    body["time_zone"] = json!("Europe/Berlin");
    let (st, rule) = api(&app, Method::POST, "/api/v1/reminders", &s.key, Some(&body)).await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    assert_eq!(rule["at_time"], "09:00");
    assert_eq!(rule["day_offset"], -1);
    let id = rule["id"].as_str().expect("id").to_owned();

    // With an Idempotency-Key, the same request twice makes one rule; the key reused for
    // another body is refused.
    let post_once = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/reminders", app.address))
            .bearer_auth(&s.key)
            .header("Idempotency-Key", "rule-week-before")
            .json(&body)
            .send()
    };
    let mut week = base.clone();
    week["name"] = json!("Week before");
    week["offset_minutes"] = json!(-7 * 24 * 60);
    let first: Value = post_once(week.clone())
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    let again = post_once(week.clone()).await.expect("POST");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again
            .headers()
            .get("Idempotent-Replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(again["id"], first["id"], "{again}");
    week["offset_minutes"] = json!(-60);
    let reused = post_once(week).await.expect("POST");
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (st, b) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/reminders/{}", first["id"].as_str().expect("id")),
        &s.key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");

    let (st, list) = get_json(&app, &s.key, "/api/v1/reminders").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(list["next_cursor"].is_null());

    let path = format!("/api/v1/reminders/{id}");
    let (st, b) = api(
        &app,
        Method::PATCH,
        &path,
        &s.key,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["enabled"], false);
    assert_eq!(b["at_time"], "09:00", "the rest stays: {b}");
    let (st, _) = api(&app, Method::DELETE, &path, &s.key, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b) = get_json(&app, &s.key, &path).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
}

/// Three workers on one database (the server's own and two more that run the same step as fast
/// as they can): every due reminder becomes exactly one message.
async fn three_workers_send_each_reminder_once(app: TestApp) {
    const N: usize = 40;
    let s = setup(&app).await;
    // Appointments 70 seconds ahead, reminders a minute before: due in about 10 seconds, after
    // the contacts and the rule are in and both extra workers are running.
    let soon = Utc::now() + chrono::Duration::seconds(70);
    let phones: Vec<String> = (0..N).map(|i| format!("+1415555{:04}", 2000 + i)).collect();
    for phone in &phones {
        set_date(&app, &s.key, phone, json!(rfc3339(soon))).await;
    }
    let (st, rule) = api(
        &app,
        Method::POST,
        "/api/v1/reminders",
        &s.key,
        Some(&json!({
            "name": "Soon",
            "channel": s.sms.name,
            "text": "See you soon.",
            "attribute": "appointment_at",
            "offset_minutes": -1,
        })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let url = app.database_url.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let db = herald::storage::Db::connect(&url, 1).expect("connect");
                let mut conn = db.get().expect("connection");
                let mut queued = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = Utc::now();
                    herald::service::automations::reminders::sync_in(&mut conn, at).expect("sync");
                    queued += herald::service::automations::reminders::send_due_in(&mut conn, at)
                        .expect("send")
                        .len();
                }
                queued
            })
        })
        .collect();
    for phone in &phones {
        wait_for(&app, phone, |r| r.iter().any(|x| x.1 != "pending")).await;
    }
    // A little longer, for any second send to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let by_extra: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();

    for phone in &phones {
        let r = rows(&app, phone);
        assert_eq!(r.len(), 1, "one reminder for {phone}: {r:?}");
        assert_eq!(r[0].1, "sent", "{phone}: {r:?}");
        assert!(r[0].3.is_some(), "{phone}: {r:?}");
    }
    assert_eq!(reminder_messages(&app), i64::try_from(N).unwrap());
    let per_contact: Vec<i64> = messages::table
        .filter(messages::source.eq("reminder"))
        .group_by(messages::contact_id)
        .select(diesel::dsl::count_star())
        .load(&mut *app.db())
        .expect("per contact");
    assert_eq!(per_contact.len(), N);
    assert!(per_contact.iter().all(|n| *n == 1), "{per_contact:?}");
    assert!(by_extra <= N, "the extra workers queued {by_extra}");
}
