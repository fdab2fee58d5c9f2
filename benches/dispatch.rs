//! Dispatcher benchmark: `cargo bench --bench dispatch` (on SQLite; set
//! HERALD_BENCH_DATABASE_URL=postgres://… to add PostgreSQL). Options after `--`:
//!   --messages N     messages for the throughput run (default 50,000)
//!   --rate-secs S    length of each rate-accuracy run (default 30; 0 skips)
//!   --drain N        also drain N queued messages and report memory (default 0)
//!   --only NAME      run one backend only: `sqlite` or `postgres` (for profiling)
//!   --latency-ms L   also compare both senders against a provider answering after L ms, as
//!                    real APIs do (default 50; 0 skips)
//!
//! Throughput: the fake provider (in this process, on loopback) driven first by a bare HTTP
//! client with as many requests in flight as Herald uses (the ceiling), then by Herald's
//! dispatcher sending queued messages with no rate limit. Rate accuracy: a channel limited to
//! 80/s and to 1,000/s, and one limited to 80/s that two dispatchers share, measured at the
//! fake provider over the run (mean rate, and the most sends in any one-second window).
//! Nothing here asserts a time.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use herald::auth::keys::Keys;
use herald::auth::sealed;
use herald::dispatch::hub::EventHub;
use herald::dispatch::metrics::Metrics;
use herald::dispatch::registry::ChannelRegistry;
use herald::dispatch::worker::{DispatchConfig, Dispatcher};
use herald::domain::channel::{ChannelKind, Provider};
use herald::storage::channels::{self, Channel, NewChannel};
use herald::storage::{self, Db};
use herald::testkit::fake_provider::{FakeConfig, FakeProvider, FakeProviderHandle};
use support::arg;

const SECRET: &str = "bench-secret-key-of-sufficient-length-0123456789";
const IN_FLIGHT: usize = 256;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds used so far by `[this process minus the fake provider, the fake provider's
/// threads, PostgreSQL's server processes]`: where each message's work goes.
fn cpu_seconds() -> [f64; 3] {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = |stat: &str| -> f64 {
        // Fields after the command name: state is the 3rd, utime the 14th, stime the 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / tick
    };
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let process = ticks(&read("/proc/self/stat".into()));
    let mut fake = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if read(task.path().join("comm")).starts_with("actix") {
            fake += ticks(&read(task.path().join("stat")));
        }
    }
    let mut postgres = 0.0;
    for proc in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if read(proc.path().join("comm")).trim() == "postgres" {
            postgres += ticks(&read(proc.path().join("stat")));
        }
    }
    [process - fake, fake, postgres]
}

/// Microseconds of CPU per message between two `cpu_seconds` readings.
fn per_message(before: [f64; 3], after: [f64; 3], n: usize) -> [f64; 3] {
    let mut out = [0.0; 3];
    for i in 0..3 {
        out[i] = (after[i] - before[i]) * 1e6 / n as f64;
    }
    out
}

fn phone(i: usize) -> String {
    let area = 201 + (i / 8_000_000) % 700;
    let exchange = 200 + (i / 10_000) % 800;
    format!("+1{area}{exchange}{:04}", i % 10_000)
}

fn channel(db: &Db, name: &str, base_url: &str, rate: i32) -> Channel {
    let key = Keys::derive(SECRET).expect("keys").channel_secrets;
    let secrets = serde_json::json!({"access_token": "t", "app_secret": "app-secret-0123456789", "verify_token": "v"});
    let settings = serde_json::json!({"base_url": base_url, "api_version": "v23.0", "phone_number_id": "1", "waba_id": "2"});
    channels::insert(
        &mut db.get().expect("conn"),
        &NewChannel {
            kind: ChannelKind::Whatsapp,
            provider: Provider::WhatsappCloud,
            name,
            sender: "+15550001",
            settings: &settings.to_string(),
            secrets: Some(&sealed::seal(&key, &secrets.to_string()).expect("seal")),
            rate_limit_per_second: rate,
        },
    )
    .expect("channel")
}

const CONTENT: &str = r#"{"type":"template","name":"order_update","language":"en_US","provider_template_id":null,"parameter_format":"positional","header":[],"body":[{"name":null,"value":"1234"}],"buttons":[],"rendered":"Your order 1234 shipped."}"#;

/// Queues `n` messages fast (bulk SQL: the benchmark is about sending, not queueing).
fn queue(db: &Db, channel: &Channel, from: usize, n: usize) {
    let mut conn = db.get().expect("conn");
    let ts = "2026-01-01 00:00:00";
    for chunk_start in (from..from + n).step_by(1000) {
        let end = (chunk_start + 1000).min(from + n);
        let contacts: Vec<String> = (chunk_start..end)
            .map(|i| {
                format!(
                    "('{}','{}','{{}}','{ts}','{ts}')",
                    storage::new_public_id(),
                    phone(i)
                )
            })
            .collect();
        conn.batch_execute(&format!(
            "INSERT INTO contacts (public_id, phone, attributes, created_at, updated_at) VALUES {} ON CONFLICT (phone) DO NOTHING;",
            contacts.join(",")
        ))
        .expect("contacts");
        let phones: Vec<String> = (chunk_start..end)
            .map(|i| format!("'{}'", phone(i)))
            .collect();
        conn.batch_execute(&format!(
            "INSERT INTO messages (public_id, channel_id, contact_id, to_address, content_kind, body, content, status, attempts, next_attempt_at, requested_by, created_at, updated_at) \
             SELECT '{}-' || c.id, {}, c.id, c.phone, 'template', 'Your order 1234 shipped.', '{CONTENT}', 'queued', 0, '{ts}', 'bench', '{ts}', '{ts}' FROM contacts c WHERE c.phone IN ({});",
            storage::new_public_id(),
            channel.id,
            phones.join(",")
        ))
        .expect("messages");
    }
}

fn dispatcher(db: &Db) -> Dispatcher {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let registry = Arc::new(
        ChannelRegistry::new(
            "http://127.0.0.1:9",
            Keys::derive(SECRET).expect("keys").channel_secrets,
            tx,
            Duration::from_secs(15),
        )
        .expect("registry"),
    );
    drop(rx);
    let mut settings = herald::config::Settings::from_lookup(|_| None).expect("settings");
    settings.max_in_flight = IN_FLIGHT;
    let mut config = DispatchConfig::from_settings(&settings);
    config.idle_poll = Duration::from_millis(20);
    Dispatcher::new(
        db.clone(),
        registry,
        EventHub::new(),
        Arc::new(Metrics::new()),
        config,
    )
}

fn count(db: &Db, status: &str) -> i64 {
    use diesel::prelude::*;
    use herald::storage::schema::messages;
    messages::table
        .filter(messages::status.eq(status))
        .count()
        .get_result(&mut *db.get().expect("conn"))
        .expect("count")
}

/// Runs the dispatcher until the fake provider has accepted `expected` more sends (watched in
/// memory: counting rows in the database while it drains would load it), then until nothing is
/// in flight; returns the time to the last acceptance.
async fn drain(
    db: &Db,
    fake: &FakeProviderHandle,
    expected: u64,
    sample: impl FnMut(u64),
) -> Duration {
    drain_with(db, fake, expected, 1, sample).await
}

/// [`drain`] with `workers` dispatchers sharing the database, as separate `herald worker`
/// processes would.
async fn drain_with(
    db: &Db,
    fake: &FakeProviderHandle,
    expected: u64,
    workers: usize,
    mut sample: impl FnMut(u64),
) -> Duration {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let base = fake.sends_accepted();
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| tokio::spawn(dispatcher(db).run(stop_rx.clone())))
        .collect();
    loop {
        let sent = fake.sends_accepted() - base;
        sample(sent);
        if sent >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    while count(db, "sending") > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    elapsed
}

/// The fake provider as every run here uses it: one worker, keeping no requests.
fn lean_fake() -> FakeConfig {
    FakeConfig {
        workers: 1,
        keep_last: 1,
        ..FakeConfig::default()
    }
}

async fn start_fake(config: FakeConfig) -> FakeProviderHandle {
    FakeProvider::start(config).await.expect("fake provider")
}

/// The ceiling: the same fake provider driven by a bare HTTP client, `IN_FLIGHT` at a time.
async fn ceiling(fake: &FakeProviderHandle, n: usize) -> f64 {
    let client = reqwest::Client::new();
    let url = format!("{}/v23.0/1/messages", fake.base_url);
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": format!("+1999{i:07}"), "type": "template",
                "template": {"name": "order_update", "language": {"code": "en_US", "policy": "deterministic"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "1234"}]}]}});
            let _ = client.post(&url).bearer_auth("t").json(&body).send().await.map(|r| r.status());
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn max_per_second(times_ms: &[u64]) -> usize {
    let mut t = times_ms.to_vec();
    t.sort_unstable();
    let (mut best, mut start) = (0, 0);
    for end in 0..t.len() {
        while t[end] - t[start] >= 1000 {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn open_db(label: &str, url: &str) -> Db {
    let db = Db::connect(url, 8).unwrap_or_else(|e| panic!("{label}: {e}"));
    storage::run_migrations(&mut db.get().expect("conn")).expect("migrate");
    db
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let messages: usize = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rate_secs: u64 = arg("--rate-secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let drain_n: usize = arg("--drain").and_then(|v| v.parse().ok()).unwrap_or(0);
    let latency_ms: u64 = arg("--latency-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("dir");

    let only = arg("--only").map(|o| o.to_ascii_lowercase());
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut backends: Vec<(String, String)> = vec![(
        "SQLite".into(),
        format!("sqlite://{}", dir.path().join("bench.db").display()),
    )];
    if !wants("sqlite") {
        backends.clear();
    }
    // A fresh database on that server, dropped at the end.
    let pg = std::env::var("HERALD_BENCH_DATABASE_URL")
        .ok()
        .filter(|_| wants("postgres"))
        .map(|url| support::PgDatabase::create(&url));
    if let Some(pg) = &pg {
        backends.push(("PostgreSQL".into(), pg.url.clone()));
    }

    println!(
        "Dispatcher benchmark, {} cores, {IN_FLIGHT} requests in flight",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| backend | ceiling: bare HTTP client (req/s) | Herald dispatcher (msg/s) | share of ceiling |"
    );
    println!("|---|---:|---:|---:|");
    let mut cpu_rows = Vec::new();
    for (label, url) in &backends {
        let db = open_db(label, url);
        let fake = start_fake(lean_fake()).await;
        let before = cpu_seconds();
        let ceiling_rate = ceiling(&fake, messages).await;
        let ceiling_cpu = per_message(before, cpu_seconds(), messages);
        let ch = channel(&db, "Unlimited", &fake.base_url, 1_000_000);
        queue(&db, &ch, 0, messages);
        let before = cpu_seconds();
        let elapsed = drain(&db, &fake, messages as u64, |_| {}).await;
        let herald_cpu = per_message(before, cpu_seconds(), messages);
        let rate = messages as f64 / elapsed.as_secs_f64();
        let stats = fake.stats();
        assert!(stats.duplicates().is_empty(), "duplicates in the benchmark");
        println!(
            "| {label} | {ceiling_rate:.0} | {rate:.0} | {:.0}% |",
            rate / ceiling_rate * 100.0
        );
        cpu_rows.push((label.clone(), ceiling_cpu, herald_cpu));
    }
    println!();
    println!(
        "CPU per message (µs): the sender (bare client, or Herald), the fake provider, the PostgreSQL server"
    );
    println!();
    println!("| backend | run | sender | fake provider | PostgreSQL server |");
    println!("|---|---|---:|---:|---:|");
    for (label, ceiling_cpu, herald_cpu) in cpu_rows {
        for (run, cpu) in [("bare client", ceiling_cpu), ("Herald", herald_cpu)] {
            // On SQLite no PostgreSQL work is measured: its background processes come and go.
            let server = if label == "PostgreSQL" {
                format!("{:.0}", cpu[2])
            } else {
                "—".to_owned()
            };
            println!(
                "| {label} | {run} | {:.0} | {:.0} | {server} |",
                cpu[0], cpu[1]
            );
        }
    }

    if latency_ms > 0 {
        // A real provider answers in tens of milliseconds: then the requests in flight, not
        // the sender's CPU, set the pace, for the bare client and Herald alike.
        let n = messages.min(20_000);
        println!();
        println!(
            "| backend | provider answers after (ms) | bare HTTP client (req/s) | Herald dispatcher (msg/s) | share |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (label, url) in &backends {
            let db = open_db(label, url);
            let fake = start_fake(FakeConfig {
                latency: Duration::from_millis(latency_ms),
                ..lean_fake()
            })
            .await;
            let ceiling_rate = ceiling(&fake, n).await;
            let ch = channel(&db, "Slow provider", &fake.base_url, 1_000_000);
            queue(&db, &ch, 5_000_000, n);
            let rate = n as f64 / drain(&db, &fake, n as u64, |_| {}).await.as_secs_f64();
            println!(
                "| {label} | {latency_ms} | {ceiling_rate:.0} | {rate:.0} | {:.0}% |",
                rate / ceiling_rate * 100.0
            );
        }
    }

    if rate_secs > 0 {
        println!();
        println!(
            "| backend | limit (msg/s) | measured over {rate_secs} s (msg/s) | below the limit | most in any 1 s window |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (label, url) in &backends {
            let db = open_db(label, url);
            // The last run: two workers share the 80/s channel's schedule.
            for (i, (limit, workers)) in [(80i32, 1usize), (1000, 1), (80, 2)]
                .into_iter()
                .enumerate()
            {
                let fake = start_fake(FakeConfig {
                    record_times: true,
                    ..lean_fake()
                })
                .await;
                let name = format!("Limited {limit}, {workers} worker(s)");
                let ch = channel(&db, &name, &fake.base_url, limit);
                let n =
                    usize::try_from(limit).unwrap_or(0) * usize::try_from(rate_secs).unwrap_or(0);
                queue(&db, &ch, 1_000_000 * (i + 1), n);
                drain_with(&db, &fake, n as u64, workers, |_| {}).await;
                let times = fake.stats().accepted_at_ms;
                let span_s = (times.iter().max().copied().unwrap_or(0)
                    - times.iter().min().copied().unwrap_or(0)) as f64
                    / 1000.0;
                let measured = (times.len().saturating_sub(1)) as f64 / span_s.max(0.001);
                let limit_label = if workers > 1 {
                    format!("{limit} ({workers} workers)")
                } else {
                    limit.to_string()
                };
                println!(
                    "| {label} | {limit_label} | {measured:.1} | {:.1}% | {} |",
                    (1.0 - measured / f64::from(limit)) * 100.0,
                    max_per_second(&times)
                );
            }
        }
    }

    drop(pg);

    if drain_n > 0 {
        println!();
        println!("Draining {drain_n} queued messages (SQLite):");
        let db = open_db(
            "SQLite",
            &format!("sqlite://{}", dir.path().join("drain.db").display()),
        );
        let fake = start_fake(FakeConfig {
            count_recipients: false,
            ..lean_fake()
        })
        .await;
        let ch = channel(&db, "Drain", &fake.base_url, 1_000_000);
        queue(&db, &ch, 0, drain_n);
        let base = rss_mib();
        let mut samples: Vec<(u64, f64)> = Vec::new();
        let mut next_mark = (drain_n / 10) as u64;
        let elapsed = drain(&db, &fake, drain_n as u64, |sent| {
            if sent >= next_mark {
                samples.push((sent, rss_mib()));
                next_mark += (drain_n / 10) as u64;
            }
        })
        .await;
        println!("| sent | RSS (MiB) |");
        println!("|---:|---:|");
        println!("| 0 | {base:.1} |");
        for (sent, mib) in samples {
            println!("| {sent} | {mib:.1} |");
        }
        println!(
            "{:.0} msg/s over the whole drain",
            drain_n as f64 / elapsed.as_secs_f64()
        );
    }
}
