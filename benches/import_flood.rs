//! Import flood benchmark: `cargo bench --bench import_flood` (SQLite; set
//! HERALD_BENCH_DATABASE_URL=postgres://… to add PostgreSQL). Options after `--`:
//!   --imports N   imports started at once (default 20)
//!   --rows R      rows in each (default 20,000)
//!
//! Starts a real Herald (production pool of 16 connections), measures `GET /healthz` while
//! idle (the baseline), then starts N CSV imports through `POST /api/v1/contacts/import` at
//! once and measures `/healthz` every 20 ms until they are all answered. Prints the health
//! latencies (p50, p99, max) of both phases, their ratio, and what each import answered (done,
//! 503 with Retry-After, or anything else). Nothing here asserts a time.

mod support;

use std::time::{Duration, Instant};

use herald::config::Settings;
use herald::startup::Application;
use support::{HealthProbe, SECRET, arg_or};

/// Every 20 ms, on a fresh connection each time.
const PROBE_EVERY: Duration = Duration::from_millis(20);

fn settings(database_url: &str) -> Settings {
    let mut s = Settings::from_lookup(|_| None).expect("default settings");
    s.database_url = database_url.to_owned();
    s.bind = "127.0.0.1:0".into();
    s.secret_key = Some(SECRET.into());
    s.db_pool_size = 16;
    s.run_worker = false;
    s
}

/// Starts Herald on its own runtime and thread; returns its address and a stop handle.
fn start(settings: Settings) -> (String, actix_web::dev::ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = Application::build(settings).await.expect("Herald starts");
            tx.send((format!("http://127.0.0.1:{}", app.port()), app.handle()))
                .expect("send");
            let _ = app.run_until_stopped().await;
        });
    });
    rx.recv().expect("started")
}

fn csv(import: usize, rows: usize) -> String {
    let mut out = String::from("phone,name,tier\n");
    for r in 0..rows {
        let i = import * rows + r;
        let area = 201 + (i / 8_000_000) % 700;
        let exchange = 200 + (i / 10_000) % 800;
        out.push_str(&format!(
            "+1{area}{exchange}{:04},Person {i},t{import}\n",
            i % 10_000
        ));
    }
    out
}

async fn run(label: &str, database_url: &str, imports: usize, rows: usize) {
    let settings = settings(database_url);
    let (base, handle) = start(settings.clone());
    let key = herald::commands::create_api_key(&settings, "Benchmark", "admin", None).expect("key");
    let idle = HealthProbe::baseline(&base, PROBE_EVERY, Duration::from_secs(4)).await;

    let bodies: Vec<String> = (0..imports).map(|n| csv(n, rows)).collect();
    let import_client = reqwest::Client::new();
    let started = Instant::now();
    let flood = bodies.into_iter().map(|body| {
        let (client, url, key) = (
            import_client.clone(),
            format!("{base}/api/v1/contacts/import"),
            key.clone(),
        );
        tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(key)
                .header("Content-Type", "text/csv")
                .body(body)
                .send()
                .await;
            match res {
                Ok(r) => (r.status().as_u16(), r.headers().contains_key("retry-after")),
                Err(_) => (0, false),
            }
        })
    });
    let flood: Vec<_> = flood.collect();
    let probe = HealthProbe::start(&base, PROBE_EVERY);
    while flood.iter().any(|f| !f.is_finished()) {
        tokio::time::sleep(PROBE_EVERY).await;
    }
    let during = probe.finish().await;
    let elapsed = started.elapsed().as_secs_f64();
    let (mut done, mut busy, mut other) = (0, 0, 0);
    for f in flood {
        match f.await.unwrap_or((0, false)) {
            (200, _) => done += 1,
            (503, true) => busy += 1,
            _ => other += 1,
        }
    }
    println!(
        "| {label:<10} | idle     | {:>6} | {:>8.1} | {:>8.1} | {:>8.1} |",
        idle.n + idle.failed,
        idle.p50,
        idle.p99,
        idle.max
    );
    println!(
        "| {label:<10} | imports  | {:>6} | {:>8.1} | {:>8.1} | {:>8.1} |",
        during.n + during.failed,
        during.p50,
        during.p99,
        during.max
    );
    println!(
        "|            | p99 ratio (imports / idle): {:.1}x; probes failed: {} idle, {} during; {imports} imports of {rows} rows in {elapsed:.1} s: {done} done, {busy} answered 503 with Retry-After, {other} other |",
        during.p99 / idle.p99.max(0.001),
        idle.failed,
        during.failed
    );
    drop(handle.stop(false));
}

#[tokio::main]
async fn main() {
    let imports: usize = arg_or("--imports", 20);
    let rows: usize = arg_or("--rows", 20_000);
    println!(
        "/healthz during {imports} parallel imports of {rows} rows; {} cores, pool of 16",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!("| database   | phase    | probes | p50 (ms) | p99 (ms) | max (ms) |");
    println!("|------------|----------|-------:|---------:|---------:|---------:|");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = format!("sqlite://{}", dir.path().join("flood.db").display());
    run("SQLite", &sqlite, imports, rows).await;
    if let Ok(url) = std::env::var("HERALD_BENCH_DATABASE_URL") {
        // A fresh database on that server, dropped afterwards.
        use diesel::connection::SimpleConnection;
        let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = herald::storage::Db::connect(&url, 1).expect("postgres");
        let sql = |q: String| admin.get().expect("conn").batch_execute(&q);
        sql(format!("CREATE DATABASE {name}")).expect("create database");
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        run("PostgreSQL", &format!("{base}/{name}"), imports, rows).await;
        // The server stops in the background: FORCE closes what it still holds.
        let _ = sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}
