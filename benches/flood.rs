//! Flood benchmark: `cargo bench --bench flood` runs every scenario, each against a fresh
//! `herald serve` process (the release binary, SQLite) so its memory is measured apart from
//! this load generator. Options after `--`:
//!   --only NAME        one scenario: `login`, `webhooks` or `slow`
//!   --secs S           length of the login flood (default 20)
//!   --webhook-secs S   length of the webhook flood (default 10)
//!   --connections N    concurrent connections of the login flood (default 200)
//!   --addresses N      client addresses the login flood spreads over (default 20; sent as
//!                      `X-Forwarded-For`, which the server reads with HERALD_TRUST_PROXY)
//!   --slow-secs S      how long the slow clients trickle before they are counted (default 60)
//!
//! Scenarios:
//!   login     N connections post wrong passwords to `POST /login`, for real accounts and for
//!             unknown e-mails, from `--addresses` addresses;
//!   webhooks  300 connections each posting just under 1 MiB to `/webhooks/nope/bogus`, over
//!             and over;
//!   slow      500 connections sending a webhook's headers, then one byte of its body every 5 s.
//!
//! For each: the server's RSS idle, at its peak during the flood and 5 s after it, and the
//! `/healthz` latency (a fresh connection every 50 ms) with no load (the baseline, same run)
//! and during the flood. Nothing here asserts a figure (benchmarks are not tests).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{HealthProbe, Percentiles, RssSampler, Server, arg, arg_or};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROBE_EVERY: Duration = Duration::from_millis(50);
const BASELINE_SPAN: Duration = Duration::from_secs(5);
const SETTLE: Duration = Duration::from_secs(5);
const REAL_PASSWORD: &str = "correct horse battery staple";

/// What one scenario measured.
struct Row {
    scenario: String,
    idle_mib: f64,
    peak_mib: f64,
    after_mib: f64,
    baseline: Percentiles,
    during: Percentiles,
    /// Answers by status (`error` when the connection failed), and anything else to say.
    outcome: String,
}

/// Counts answers by status code.
#[derive(Default)]
struct Tally(std::sync::Mutex<BTreeMap<String, usize>>);

impl Tally {
    fn add(&self, key: impl Into<String>) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key.into()).or_default() += 1;
        }
    }

    fn summary(&self) -> String {
        let m = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        let total: usize = m.values().sum();
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{total} requests ({})", parts.join(", "))
    }
}

fn csrf_token(html: &str) -> Option<String> {
    let start = html.find("\"X-CSRF-Token\": \"")? + "\"X-CSRF-Token\": \"".len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// Measures one flood: idle RSS and baseline health, then `flood` with RSS sampled and health
/// probed, then RSS once the server has had `SETTLE` to give memory back.
async fn measure<F>(scenario: &str, server: &Server, flood: F) -> Row
where
    F: Future<Output = String>,
{
    let idle_mib = server.rss_mib();
    let baseline = HealthProbe::baseline(&server.url, PROBE_EVERY, BASELINE_SPAN).await;
    let rss = RssSampler::start(server.pid(), Duration::from_millis(100));
    let probe = HealthProbe::start(&server.url, PROBE_EVERY);
    let outcome = flood.await;
    let during = probe.finish().await;
    let peak_mib = rss.finish().await;
    tokio::time::sleep(SETTLE).await;
    Row {
        scenario: scenario.to_owned(),
        idle_mib,
        peak_mib,
        after_mib: server.rss_mib(),
        baseline,
        during,
        outcome,
    }
}

async fn login_flood(secs: u64, connections: usize, addresses: usize) -> Row {
    let dir = tempfile::tempdir().expect("dir");
    let accounts: Vec<String> = (0..5).map(|i| format!("person{i}@example.com")).collect();
    let users: Vec<(&str, &str)> = accounts
        .iter()
        .map(|a| (a.as_str(), REAL_PASSWORD))
        .collect();
    let server = Server::start(dir.path(), &[("HERALD_TRUST_PROXY", "true")], &users);
    let url = server.url.clone();
    let flood = async move {
        let tally = Arc::new(Tally::default());
        let deadline = Instant::now() + Duration::from_secs(secs);
        let accounts = Arc::new(accounts);
        let mut tasks = Vec::with_capacity(connections);
        for i in 0..connections {
            let (tally, url, accounts) = (tally.clone(), url.clone(), accounts.clone());
            tasks.push(tokio::spawn(async move {
                // One visitor per connection: its own cookie (and CSRF token), one address.
                let client = reqwest::Client::builder()
                    .cookie_store(true)
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(120))
                    .build()
                    .expect("client");
                let address = format!("10.0.{}.{}", i % addresses / 250, i % addresses % 250 + 1);
                let token = match client.get(format!("{url}/login")).send().await {
                    Ok(r) => csrf_token(&r.text().await.unwrap_or_default()),
                    Err(_) => None,
                };
                let Some(token) = token else {
                    tally.add("no login form");
                    return;
                };
                let mut n = 0usize;
                while Instant::now() < deadline {
                    // Real accounts and unknown e-mails alternately, always a wrong password.
                    let email = if n.is_multiple_of(2) {
                        accounts[(i + n) % accounts.len()].clone()
                    } else {
                        format!("nobody{i}-{n}@example.com")
                    };
                    let password = format!("wrong password {n}");
                    let res = client
                        .post(format!("{url}/login"))
                        .header("X-Forwarded-For", &address)
                        .form(&[
                            ("email", email.as_str()),
                            ("password", password.as_str()),
                            ("csrf_token", token.as_str()),
                        ])
                        .send()
                        .await;
                    match res {
                        Ok(r) => {
                            tally.add(r.status().as_u16().to_string());
                            let _ = r.bytes().await;
                        }
                        Err(_) => tally.add("error"),
                    }
                    n += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        tally.summary()
    };
    measure(
        &format!("login: {connections} connections, {addresses} addresses, {secs} s"),
        &server,
        flood,
    )
    .await
}

async fn webhook_flood(secs: u64) -> Row {
    const CONNECTIONS: usize = 300;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[], &[]);
    let url = format!("{}/webhooks/nope/bogus", server.url);
    let flood = async move {
        let tally = Arc::new(Tally::default());
        let body = bytes::Bytes::from(vec![b'x'; (1 << 20) - 1]);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (tally, url, body) = (tally.clone(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(120))
                    .build()
                    .expect("client");
                while Instant::now() < deadline {
                    let res = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match res {
                        Ok(r) => {
                            tally.add(r.status().as_u16().to_string());
                            let _ = r.bytes().await;
                        }
                        Err(_) => {
                            tally.add("error");
                            // A server that closes early is not to be hammered in a tight loop.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        tally.summary()
    };
    measure(
        &format!("webhooks: {CONNECTIONS} connections × (1 MiB - 1 byte), {secs} s"),
        &server,
        flood,
    )
    .await
}

async fn slow_flood(secs: u64) -> Row {
    const CONNECTIONS: usize = 500;
    const TRICKLE: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[], &[]);
    let address = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let flood = async move {
        let tally = Arc::new(Tally::default());
        let open = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (tally, open, address) = (tally.clone(), open.clone(), address.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                    tally.add("connect failed");
                    return;
                };
                let head = format!(
                    "POST /webhooks/nope/bogus HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    tally.add("closed at once");
                    return;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 512];
                let ended = loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break None;
                    }
                    let wait = TRICKLE.min(deadline - now);
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            // The server answered or hung up: either way it is no longer held.
                            break Some(match read {
                                Ok(n) if n > 12 && buf.starts_with(b"HTTP/1.1 ") => {
                                    format!("answered {}", String::from_utf8_lossy(&buf[9..12]))
                                }
                                _ => "closed by the server".to_owned(),
                            });
                        }
                        _ = tokio::time::sleep(wait) => {
                            if Instant::now() < deadline && stream.write_all(b"x").await.is_err() {
                                break Some("closed by the server".to_owned());
                            }
                        }
                    }
                };
                match ended {
                    Some(how) => {
                        open.fetch_sub(1, Ordering::Relaxed);
                        tally.add(how);
                    }
                    None => tally.add("still open"),
                }
                // Held until every connection was counted, then dropped.
                drop(stream);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        format!(
            "{} of {CONNECTIONS} still open after {secs} s; {}",
            open.load(Ordering::Relaxed),
            tally.summary()
        )
    };
    measure(
        &format!("slow: {CONNECTIONS} connections, 1 byte / 5 s, {secs} s"),
        &server,
        flood,
    )
    .await
}

fn print(rows: &[Row]) {
    println!();
    println!(
        "| scenario | RSS idle (MiB) | RSS peak during | RSS 5 s after | /healthz p50 / p99 idle (ms) | p50 / p99 during (ms) | p99 during ÷ idle | probes failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1}× | {} of {} |",
            r.scenario,
            r.idle_mib,
            r.peak_mib,
            r.after_mib,
            r.baseline.p50,
            r.baseline.p99,
            r.during.p50,
            r.during.p99,
            r.during.p99 / r.baseline.p99.max(0.001),
            r.during.failed,
            r.during.n + r.during.failed,
        );
    }
    println!();
    for r in rows {
        println!("- {}: {}", r.scenario, r.outcome);
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let only = arg("--only").map(|o| o.to_ascii_lowercase());
    if let Some(o) = &only
        && !["login", "webhooks", "slow"].contains(&o.as_str())
    {
        eprintln!("--only takes login, webhooks or slow (not {o})");
        std::process::exit(2);
    }
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let secs: u64 = arg_or("--secs", 20);
    let connections: usize = arg_or("--connections", 200);
    let addresses: usize = arg_or::<usize>("--addresses", 20).max(1);
    let slow_secs: u64 = arg_or("--slow-secs", 60);

    println!(
        "Flood benchmark: herald serve (release, SQLite) in its own process, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut rows = Vec::new();
    if wants("login") {
        rows.push(login_flood(secs, connections, addresses).await);
    }
    if wants("webhooks") {
        rows.push(webhook_flood(arg_or("--webhook-secs", 10)).await);
    }
    if wants("slow") {
        rows.push(slow_flood(slow_secs).await);
    }
    print(&rows);
}
