//! Signed trigger events as a shop sends them: `cargo bench --bench triggers` (SQLite; set
//! HERALD_BENCH_DATABASE_URL=postgres://… to add PostgreSQL in a fresh database on that server,
//! `--only sqlite|postgres` to keep one). Options after `--`:
//!   --rate R    events a second (default 1,000)
//!   --secs S    how long (default 60)
//!   --conns N   sender connections (default 100)
//!
//! The real `herald serve` (with its dispatcher) runs as its own process, an SMS channel sends
//! to a fake Twilio in this process, and a trigger is made through the API: Shopify's signature
//! (`X-Shopify-Hmac-Sha256`), the phone at `/customer/phone`, a condition on
//! `/financial_status`. The open-loop sender (`support::load::paced`) posts order `i` when it is
//! due, at `--rate` a second, whether or not the earlier ones were answered; latency counts from
//! when a request was due. Every twentieth request repeats the order before it with the same
//! `X-Shopify-Webhook-Id`, as Shopify does when it retries. Then it waits until the fake
//! provider has every distinct order's message and checks each number got exactly one. Nothing
//! here asserts a time.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::prelude::*;
use herald::domain::channel::{ChannelKind, Provider};
use herald::domain::trigger::{Scheme, sign};
use herald::storage::schema::{messages, trigger_events};
use herald::storage::{self, Db};
use herald::testkit::fake_provider::{FakeConfig, FakeProvider};
use support::load;
use support::{SECRET, Server, TWILIO_SID, TWILIO_TOKEN, arg_or, free_port};

const SHOP_SECRET: &str = "shpss_bench_0123456789abcdef";

/// Order `i`'s customer's number.
fn phone(i: usize) -> String {
    format!("+1{}", 2_125_550_000u64 + i as u64)
}

/// Request `i` carries order `order(i)`: every twentieth repeats the one before it.
fn order(i: usize) -> usize {
    if i % 20 == 19 { i - 1 } else { i }
}

fn order_body(n: usize) -> String {
    serde_json::json!({
        "id": 820_982_911_946_154_508u64 + n as u64,
        "name": format!("#{}", 1000 + n),
        "financial_status": "paid",
        "customer": {"first_name": "Ada", "phone": phone(n)},
        "line_items": [{"title": "Tea", "quantity": 1}]
    })
    .to_string()
}

fn count(db: &Db, sql_count: impl FnOnce(&mut storage::DbConnection) -> i64) -> i64 {
    sql_count(&mut db.get().expect("conn"))
}

async fn run(label: &str, database_url: &str, rate: f64, span: Duration, conns: usize) {
    println!("{label}:");
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::connect(database_url, 2).expect("database");
    storage::run_migrations(&mut db.get().expect("conn")).expect("migrations");
    let settings = herald::config::Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.to_owned()),
        "HERALD_SECRET_KEY" => Some(SECRET.to_owned()),
        _ => None,
    })
    .expect("settings");
    let api_key = herald::commands::create_api_key(&settings, "Bench", "admin", None).expect("key");

    let fake = FakeProvider::start(FakeConfig {
        workers: 1,
        keep_last: 0,
        count_recipients: true,
        ..FakeConfig::default()
    })
    .await
    .expect("fake provider");
    support::insert_channel(
        &db,
        ChannelKind::Sms,
        Provider::Twilio,
        "Bench SMS",
        serde_json::json!({"base_url": fake.base_url, "account_sid": TWILIO_SID, "from": "+14155550100"}),
        serde_json::json!({"auth_token": TWILIO_TOKEN}),
        1_000_000,
    );

    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let _server = Server::start_on(
        database_url,
        dir.path(),
        &[
            ("HERALD_BIND", &format!("127.0.0.1:{port}")),
            ("HERALD_PUBLIC_URL", &public),
        ],
        &[],
    );
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{public}/api/v1/triggers"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({
            "name": "Shop orders",
            "channel": "Bench SMS",
            "text": "Thank you for your order.",
            "verification": {"scheme": "shopify", "secret": SHOP_SECRET},
            "mapping": {
                "phone": "/customer/phone",
                "default_country": "US",
                "name": "/customer/first_name",
                "conditions": [{"path": "/financial_status", "equals": "paid"}]
            }
        }))
        .send()
        .await
        .expect("create trigger")
        .json()
        .await
        .expect("trigger JSON");
    let url = created["url"]
        .as_str()
        .expect("the trigger's url")
        .to_owned();
    let path: Arc<str> = url[url.find("/hooks/").expect("hook path")..].into();
    let full: Arc<str> = url.into();

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let total = (rate * span.as_secs_f64()).round() as usize;
    let distinct = (0..total).filter(|&i| order(i) == i).count();
    println!(
        "  {total} signed events at {rate:.0}/s for {} s ({distinct} orders, {} retried deliveries), {conns} connections",
        span.as_secs(),
        total - distinct
    );
    let make: Arc<load::MakeRequest> = Arc::new(move |i| {
        let n = order(i);
        let body = order_body(n);
        let headers = sign(
            Scheme::Shopify,
            SHOP_SECRET,
            "POST",
            &full,
            body.as_bytes(),
            &format!("bench-delivery-{n}"),
            Utc::now(),
        );
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        load::request("POST", &path, &pairs, Some("application/json"), body)
    });
    let started = Instant::now();
    let o = load::paced(addr, conns, rate, span, make).await;
    println!(
        "  acknowledged: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms [{}]",
        o.answered() as f64 / o.elapsed.as_secs_f64(),
        o.latency.p50,
        o.latency.p99,
        o.latency.max,
        o.status_summary()
    );

    // Every distinct order's message at the provider, and no more.
    let give_up = Instant::now() + Duration::from_secs(120);
    while fake.sends_accepted() < distinct as u64 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = fake.stats();
    let twice = stats
        .accepted_per_recipient
        .values()
        .filter(|&&n| n > 1)
        .count();
    let missing = (0..total)
        .filter(|&i| order(i) == i)
        .filter(|&i| fake.accepted_for(&phone(i)) == 0)
        .count();
    let stored = count(&db, |c| {
        messages::table.count().get_result(c).expect("messages")
    });
    let events = count(&db, |c| {
        trigger_events::table.count().get_result(c).expect("events")
    });
    println!(
        "  at the fake provider: {} messages for {distinct} orders ({missing} missing, {twice} numbers twice), the last {:.1} s after the first event; {stored} messages and {events} events stored (a retried delivery stores nothing)",
        stats.sends_accepted,
        last_at.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let rate: f64 = arg_or("--rate", 1_000.0);
    let secs: u64 = arg_or("--secs", 60);
    let conns: usize = arg_or("--conns", 100);
    let dir = tempfile::tempdir().expect("dir");
    for (label, url, _pg) in support::databases(dir.path(), "triggers.db") {
        run(label, &url, rate, Duration::from_secs(secs), conns).await;
    }
}
