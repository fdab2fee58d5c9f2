//! The overview (the home page) and the counters the database keeps for it: after sends,
//! provider reports, a failure and a deletion, every count read from the counters equals the
//! same count taken over the messages themselves; the page shows the figures, the failure
//! reason and links into the history for admins only.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use herald::storage::message_counts::{self, CountFilter};
use herald::storage::schema::messages;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::fixtures::{contact, setup, spawn};
use crate::helpers::TestApp;
use crate::provider_kit::{api, get_json};

/// Counts straight from the messages, to compare with the counters.
fn counted(app: &TestApp, channel: Option<i64>, status: Option<&str>) -> i64 {
    let mut q = messages::table.into_boxed();
    if let Some(c) = channel {
        q = q.filter(messages::channel_id.eq(c));
    }
    if let Some(s) = status {
        q = q.filter(messages::status.eq(s.to_owned()));
    }
    q.count().get_result(&mut app.db()).expect("count")
}

fn from_counters(app: &TestApp, channel: Option<i64>, status: Option<&str>) -> i64 {
    let filter = CountFilter {
        channel_id: channel,
        status: status.map(str::to_owned),
        ..CountFilter::default()
    };
    message_counts::total(&mut app.db(), &filter).expect("total")
}

async fn the_counters_follow_every_change_and_the_overview_shows_them(app: TestApp) {
    let s = setup(&app).await;
    let mut ids = Vec::new();
    for (i, phone) in ["+14155550101", "+14155550102", "+14155550103"]
        .iter()
        .enumerate()
    {
        contact(
            &app,
            &s.key,
            json!({"phone": phone, "name": format!("C{i}")}),
        )
        .await;
        let (status, m) = api(
            &app,
            Method::POST,
            "/api/v1/messages",
            &s.key,
            Some(&json!({"to": phone, "channel": s.sms.public_id, "text": "Your order shipped"})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{m}");
        ids.push(m["id"].as_str().expect("id").to_owned());
    }
    // The sandbox reports delivered, then read. Every message is let reach `read` (its last
    // status) before counting, so no report lands between a count and its check.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            let (_, m) = get_json(&app, &s.key, &format!("/api/v1/messages/{id}")).await;
            if m["status"] == "read" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never read: {m}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A provider failure, written as the webhook path writes it (status and code together).
    diesel::update(messages::table.filter(messages::public_id.eq(&ids[0])))
        .set((
            messages::status.eq("failed"),
            messages::error_code.eq(Some("30007")),
        ))
        .execute(&mut app.db())
        .expect("fail one");

    let sms = Some(s.sms.id);
    for status in [
        None,
        Some("failed"),
        Some("read"),
        Some("delivered"),
        Some("queued"),
    ] {
        assert_eq!(
            from_counters(&app, sms, status),
            counted(&app, sms, status),
            "status {status:?}"
        );
        assert_eq!(
            from_counters(&app, None, status),
            counted(&app, None, status),
            "all channels, status {status:?}"
        );
    }
    assert_eq!(from_counters(&app, sms, Some("failed")), 1);
    let failed_with_code = CountFilter {
        error_code: Some("30007".into()),
        ..CountFilter::default()
    };
    assert_eq!(
        message_counts::total(&mut app.db(), &failed_with_code).unwrap(),
        1
    );
    let today = Utc::now().date_naive();
    let (days, failures) = message_counts::days_and_failures(&mut app.db(), today, today).unwrap();
    let daily: i64 = days.iter().map(|d| d.n).sum();
    assert_eq!(daily, counted(&app, None, None));
    assert_eq!(
        failures,
        vec![message_counts::FailureCount {
            channel_id: s.sms.id,
            error_code: "30007".into(),
            n: 1
        }]
    );
    // Folding the deltas (PostgreSQL) changes no count.
    message_counts::fold(&mut app.db(), 1000).expect("fold");
    assert_eq!(from_counters(&app, sms, Some("failed")), 1);
    assert_eq!(from_counters(&app, None, None), counted(&app, None, None));

    // A deleted message leaves the counts.
    diesel::delete(messages::table.filter(messages::public_id.eq(&ids[1])))
        .execute(&mut app.db())
        .expect("delete");
    assert_eq!(from_counters(&app, None, None), counted(&app, None, None));
    assert_eq!(from_counters(&app, sms, None), 2);

    // The page: the figures, the failure reason, links into the history for the admin.
    let page = s.admin.get_html("/").await;
    assert!(page.contains("Last 30 days"), "{page}");
    assert!(page.contains("<code>30007</code>"), "{page}");
    let since = today - chrono::Duration::days(29);
    let failures = format!(
        "/history?channel={}&#38;status=failed&#38;error=30007&#38;since={since}&#38;until={today}",
        s.sms.id
    );
    assert!(page.contains(&failures), "no link {failures} in {page}");
    assert!(page.contains("<svg"), "{page}");
    assert!(
        page.contains("Sandbox SMS: messages per day by outcome"),
        "{page}"
    );
    // One day's read segment links to that day's read messages on that channel.
    let read_day = format!(
        "/history?channel={}&#38;since={today}&#38;until={today}&#38;status=read",
        s.sms.id
    );
    assert!(page.contains(&read_day), "no link {read_day} in {page}");

    // A marketer sees the figures but not the history's links (admins only).
    let marketer = app
        .user_with_role(&s.admin, "mia@example.com", "marketer")
        .await;
    let theirs = marketer.get_html("/").await;
    assert!(theirs.contains("<code>30007</code>"), "{theirs}");
    assert!(!theirs.contains("/history?"), "{theirs}");
    // Templates to review are offered to those who review.
    assert!(page.contains("Templates waiting for your review"));
    assert!(!theirs.contains("Templates waiting for your review"));
}

async fn an_empty_overview_says_so(app: TestApp) {
    let admin = app.admin().await;
    let page = admin.get_html("/").await;
    assert!(page.contains("Nothing sent in the last 30 days."), "{page}");
    assert!(
        page.contains("No failed messages in the last 30 days."),
        "{page}"
    );
    assert!(!page.contains("<svg"), "{page}");
}

crate::both_backends!(
    spawn = spawn;
    the_counters_follow_every_change_and_the_overview_shows_them,
    an_empty_overview_says_so,
);
