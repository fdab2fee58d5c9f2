//! A broadcast survives crashes without sending anyone two messages: the real `herald serve` is
//! killed (SIGKILL) three times while a 20,000-recipient broadcast is going out, and started
//! again each time. At the fake provider every recipient got at most one message, and the
//! broadcast completes with every recipient accounted for (`unknown` only for what was in
//! flight at a kill). Also: two instances launching one broadcast at once launch it once.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use herald::testkit::fake_provider::{FakeConfig, FakeProvider};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_crash::ServerProcess;
use crate::helpers::TestApp;
use crate::provider_kit::{create_channel, twilio_channel};

crate::both_backends!(
    a_broadcast_killed_three_times_sends_each_recipient_at_most_once,
    two_instances_launch_a_broadcast_once,
);

const RECIPIENTS: i64 = 20_000;
const CHANNEL: &str = "Crash SMS";

/// Contacts +14150000000 … straight into the database (the API would take longer than the
/// test is about).
fn insert_contacts(app: &TestApp, n: i64) {
    let now = "2026-01-01 00:00:00";
    let sql = if app.database_url.starts_with("postgres") {
        format!(
            "INSERT INTO contacts (public_id, phone, name, email, language, time_zone, attributes, created_at, updated_at) \
             SELECT 'crash-' || i, '+1415' || lpad(i::text, 7, '0'), 'Person ' || i, '', '', '', '{{}}', \
             TIMESTAMP '{now}', TIMESTAMP '{now}' FROM generate_series(0, {}) AS i",
            n - 1
        )
    } else {
        format!(
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {}) \
             INSERT INTO contacts (public_id, phone, name, email, language, time_zone, attributes, created_at, updated_at) \
             SELECT 'crash-' || i, '+1415' || printf('%07d', i), 'Person ' || i, '', '', '', '{{}}', '{now}', '{now}' FROM seq",
            n - 1
        )
    };
    app.db().batch_execute(&sql).expect("insert contacts");
}

fn api_key(app: &TestApp) -> String {
    let out = app.cli(
        &["api-key", "create", "--name", "Crash", "--role", "admin"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

async fn call(
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key)
        .timeout(Duration::from_secs(30));
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(res) => {
            let status = res.status();
            (status, res.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

async fn a_broadcast_killed_three_times_sends_each_recipient_at_most_once(app: TestApp) {
    let fake = FakeProvider::start(FakeConfig {
        workers: 2,
        keep_last: 10,
        ..FakeConfig::default()
    })
    .await
    .expect("fake provider");
    let key = api_key(&app);
    let mut channel = twilio_channel(CHANNEL, &fake.base_url);
    channel["rate_limit_per_second"] = json!(4_000);
    create_channel(&app, &key, channel).await;
    insert_contacts(&app, RECIPIENTS);

    let mut server = ServerProcess::start(&app, true).await;
    let (status, b) = call(
        &server.url,
        &key,
        reqwest::Method::POST,
        "/api/v1/broadcasts",
        Some(json!({"name": "Crash test", "channel": CHANNEL, "message": {"text": "Hello from the crash test"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    let (status, launched) = call(
        &server.url,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/broadcasts/{id}/launch"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{launched}");
    assert_eq!(launched["counts"]["recipients"], RECIPIENTS);

    // Killed whenever another fifth of the recipients has reached the provider.
    for kill in 1..=3u64 {
        let target = kill * RECIPIENTS as u64 / 5;
        let started = Instant::now();
        while fake.sends_accepted() < target {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "only {} sends reached the provider before kill {kill}",
                fake.sends_accepted()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        server = ServerProcess::start(&app, true).await;
    }

    let started = Instant::now();
    let done = loop {
        let (status, b) = call(
            &server.url,
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/broadcasts/{id}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        if b["state"] == "completed" {
            break b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "not completed after three minutes: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = fake.stats();
    assert!(
        stats.duplicates().is_empty(),
        "recipients got two messages: {:?}",
        &stats.duplicates()[..stats.duplicates().len().min(5)]
    );
    let counts = &done["counts"];
    let n = |k: &str| counts[k].as_i64().unwrap_or(-1);
    assert_eq!(n("recipients"), RECIPIENTS, "{done}");
    assert_eq!(n("pending"), 0, "{done}");
    assert_eq!(
        n("sent") + n("delivered") + n("read") + n("unknown") + n("failed"),
        RECIPIENTS,
        "every recipient has an outcome: {done}"
    );
    // Every message Herald recorded as sent reached the provider; of the `unknown` ones (in
    // flight at a kill) some did and some did not, which is why they are not re-sent.
    let accepted = stats.sends_accepted as i64;
    let went = n("sent") + n("delivered") + n("read");
    assert!(
        went <= accepted && accepted <= went + n("unknown"),
        "the provider took {accepted}; Herald says {went} went out and {} are unknown",
        n("unknown")
    );
    // At most what the dispatcher holds in flight at each of the three kills is unknown.
    assert!(n("unknown") <= 3 * 2_000, "{done}");
    eprintln!(
        "broadcast_crash on {}: {} sent, {} unknown after three kills",
        app.database_url.split(':').next().unwrap_or_default(),
        n("sent"),
        n("unknown")
    );
}

async fn two_instances_launch_a_broadcast_once(app: TestApp) {
    let key = api_key(&app);
    insert_contacts(&app, 50);
    let second = app.second_instance().await;
    let (status, b) = call(
        &app.address,
        &key,
        reqwest::Method::POST,
        "/api/v1/broadcasts",
        Some(json!({"name": "Twice", "channel": "Sandbox SMS", "message": {"text": "Once only"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/broadcasts/{id}/launch");
    let (a, b) = tokio::join!(
        call(&app.address, &key, reqwest::Method::POST, &path, None),
        call(&second.address, &key, reqwest::Method::POST, &path, None)
    );
    let launched = [&a, &b]
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(launched, 1, "{a:?} {b:?}");
    let (_, b) = call(
        &app.address,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/broadcasts/{id}"),
        None,
    )
    .await;
    assert_eq!(b["counts"]["recipients"], 50, "frozen once: {b}");
}
