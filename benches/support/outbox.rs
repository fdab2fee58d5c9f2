//! The outbox as the dispatcher benchmarks drive it (`dispatch`, `callbacks`): a channel
//! pointing at the fake provider, messages queued in bulk, dispatchers draining them, and the
//! CPU each part used.

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

pub use super::SECRET;
pub const IN_FLIGHT: usize = 256;

pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds in a `/proc/…/stat` text.
fn stat_seconds(stat: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // Fields after the command name: state is the 3rd, utime the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (n(11) + n(12)) / tick
}

fn read(p: impl AsRef<std::path::Path>) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// CPU seconds used so far by `[this process minus the fake provider and the callback receiver,
/// the fake provider's and the receiver's threads (named `actix…` and `receiver…`),
/// PostgreSQL's server processes]`: where each message's work goes.
pub fn cpu_seconds() -> [f64; 3] {
    let process = stat_seconds(&read("/proc/self/stat"));
    let mut fake = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = read(task.path().join("comm"));
        if comm.starts_with("actix") || comm.starts_with("receiver") {
            fake += stat_seconds(&read(task.path().join("stat")));
        }
    }
    let mut postgres = 0.0;
    for proc in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if read(proc.path().join("comm")).trim() == "postgres" {
            postgres += stat_seconds(&read(proc.path().join("stat")));
        }
    }
    [process - fake, fake, postgres]
}

/// CPU seconds the main thread used so far (in a `#[tokio::main]` benchmark it runs only the
/// harness's own future: spawned tasks run on the runtime's worker threads).
pub fn main_thread_seconds() -> f64 {
    stat_seconds(&read(format!(
        "/proc/self/task/{}/stat",
        std::process::id()
    )))
}

/// Microseconds of CPU per message between two `cpu_seconds` readings.
pub fn per_message(before: [f64; 3], after: [f64; 3], n: usize) -> [f64; 3] {
    let mut out = [0.0; 3];
    for i in 0..3 {
        out[i] = (after[i] - before[i]) * 1e6 / n as f64;
    }
    out
}

pub fn phone(i: usize) -> String {
    let area = 201 + (i / 8_000_000) % 700;
    let exchange = 200 + (i / 10_000) % 800;
    format!("+1{area}{exchange}{:04}", i % 10_000)
}

pub fn channel(db: &Db, name: &str, base_url: &str, rate: i32) -> Channel {
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

pub const CONTENT: &str = r#"{"type":"template","name":"order_update","language":"en_US","provider_template_id":null,"parameter_format":"positional","header":[],"body":[{"name":null,"value":"1234"}],"buttons":[],"rendered":"Your order 1234 shipped."}"#;

/// Queues `n` messages fast (bulk SQL: the benchmark is about sending, not queueing).
pub fn queue(db: &Db, channel: &Channel, from: usize, n: usize) {
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

pub fn dispatcher(db: &Db) -> Dispatcher {
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

pub fn count(db: &Db, status: &str) -> i64 {
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
pub async fn drain(
    db: &Db,
    fake: &FakeProviderHandle,
    expected: u64,
    sample: impl FnMut(u64),
) -> Duration {
    drain_with(db, fake, expected, 1, sample).await
}

/// [`drain`] with `workers` dispatchers sharing the database, as separate `herald worker`
/// processes would.
pub async fn drain_with(
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
    let mut last_look = Instant::now();
    loop {
        let sent = fake.sends_accepted() - base;
        sample(sent);
        if sent >= expected {
            break;
        }
        // A send whose connection failed after the request went out is `unknown` (never sent
        // again), so the fake may never see `expected`: every half second, stop once nothing
        // is left to send.
        if last_look.elapsed() >= Duration::from_millis(500) {
            last_look = Instant::now();
            if count(db, "queued") == 0 && count(db, "sending") == 0 {
                break;
            }
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
pub fn lean_fake() -> FakeConfig {
    FakeConfig {
        workers: 1,
        keep_last: 1,
        ..FakeConfig::default()
    }
}

pub async fn start_fake(config: FakeConfig) -> FakeProviderHandle {
    FakeProvider::start(config).await.expect("fake provider")
}

/// The ceiling: the same fake provider driven by a bare HTTP client, `IN_FLIGHT` at a time.
pub async fn ceiling(fake: &FakeProviderHandle, n: usize) -> f64 {
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

pub fn max_per_second(times_ms: &[u64]) -> usize {
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

pub fn open_db(label: &str, url: &str) -> Db {
    let db = Db::connect(url, 8).unwrap_or_else(|e| panic!("{label}: {e}"));
    storage::run_migrations(&mut db.get().expect("conn")).expect("migrate");
    db
}
