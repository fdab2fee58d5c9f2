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

use std::time::Duration;

use herald::testkit::fake_provider::FakeConfig;
use support::arg;
use support::outbox::*;

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
