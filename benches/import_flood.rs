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

use std::time::{Duration, Instant};

use herald::config::Settings;
use herald::startup::Application;

const SECRET: &str = "bench-secret-key-of-sufficient-length-0123456789";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn health_ms(client: &reqwest::Client, base: &str) -> f64 {
    let started = Instant::now();
    let ok = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // A failed probe counts as the longest wait a probe allows.
    if ok { ms } else { 30_000.0 }
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

struct Phase {
    p50: f64,
    p99: f64,
    max: f64,
    probes: usize,
}

fn phase(mut samples: Vec<f64>) -> Phase {
    samples.sort_by(f64::total_cmp);
    Phase {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        max: samples.last().copied().unwrap_or(0.0),
        probes: samples.len(),
    }
}

async fn run(label: &str, database_url: &str, imports: usize, rows: usize) {
    let settings = settings(database_url);
    let (base, handle) = start(settings.clone());
    let key = herald::commands::create_api_key(&settings, "Benchmark", "admin").expect("key");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(health_ms(&client, &base).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let idle = phase(idle);

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
    let mut during = Vec::new();
    while flood.iter().any(|f| !f.is_finished()) {
        during.push(health_ms(&client, &base).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (mut done, mut busy, mut other) = (0, 0, 0);
    for f in flood {
        match f.await.unwrap_or((0, false)) {
            (200, _) => done += 1,
            (503, true) => busy += 1,
            _ => other += 1,
        }
    }
    let during = phase(during);
    println!(
        "| {label:<10} | idle     | {:>6} | {:>8.1} | {:>8.1} | {:>8.1} |",
        idle.probes, idle.p50, idle.p99, idle.max
    );
    println!(
        "| {label:<10} | imports  | {:>6} | {:>8.1} | {:>8.1} | {:>8.1} |",
        during.probes, during.p50, during.p99, during.max
    );
    println!(
        "|            | p99 ratio (imports / idle): {:.1}x; {imports} imports of {rows} rows in {elapsed:.1} s: {done} done, {busy} answered 503 with Retry-After, {other} other |",
        during.p99 / idle.p99.max(0.001)
    );
    drop(handle.stop(false));
}

#[tokio::main]
async fn main() {
    let imports: usize = arg("--imports").and_then(|v| v.parse().ok()).unwrap_or(20);
    let rows: usize = arg("--rows").and_then(|v| v.parse().ok()).unwrap_or(20_000);
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
