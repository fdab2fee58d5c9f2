//! Status-callback benchmark (issue 19): `cargo bench --bench callbacks` (on SQLite; set
//! HERALD_BENCH_DATABASE_URL=postgres://… to add PostgreSQL). Options after `--`:
//!   --messages N   messages per run (default 30,000)
//!   --rate R       the channel's rate limit, so status changes flow at R a second (default 5,000)
//!   --runs LIST    which runs with callbacks, of `fast`, `slow`, `dead` (default all three),
//!                  and `bare`: Herald's HTTP client alone, posting to the fast receiver
//!
//! Each run dispatches N queued messages to the fake provider at R a second; every send is a
//! status change (`message.sent`). Runs, in one process and one go, after a warm-up run of a
//! fifth as many messages that is not compared (a fresh database's first run is slower):
//!   1. no endpoint (the baseline), run first and again last: the others are compared with
//!      the mean of the two, as the database grows with every run;
//!   2. an endpoint wanting `message.sent`, answered at once by a receiver on loopback: the
//!      deliveries must keep up (the largest queue of events + deliveries seen is printed) and
//!      Herald's CPU per message is compared with run 1 (goal: at most 1.2x);
//!   3. a receiver that answers after 5 s, and 4. one that never answers: the send rate is
//!      compared with run 1 (goal: within 5%).
//!
//! CPU is Herald's: this process minus the fake provider's and the receiver's threads and
//! minus the main thread (which only runs this harness: queueing, watching the sends and
//! counting the backlog), plus the PostgreSQL server's on PostgreSQL only (on SQLite the
//! server's processes are other programs' work). Nothing here asserts a time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::auth::keys::Keys;
use herald::auth::sealed;
use herald::dispatch::callbacks::{CallbackConfig, CallbackWorker};
use herald::domain::callbacks::new_secret;
use herald::storage::callbacks::{self as store, EndpointFields};
use herald::storage::{Backend, Db};
use support::arg;
use support::outbox::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
enum Receiver {
    Fast,
    After(Duration),
    Never,
}

/// A receiver on its own thread (named `receiver`, so its CPU is not counted as Herald's),
/// speaking just enough HTTP/1.1, keep-alive included. Returns its URL and a count of requests.
fn start_receiver(how: Receiver) -> (String, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((mut stream, _)) = listener.accept().await {
                    let counted = counted.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::with_capacity(4096);
                        let mut chunk = [0u8; 8192];
                        loop {
                            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                                match stream.read(&mut chunk).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                                continue;
                            };
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            while buf.len() < end + 4 + length {
                                match stream.read(&mut chunk).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            buf.drain(..end + 4 + length);
                            counted.fetch_add(1, Ordering::Relaxed);
                            match how {
                                Receiver::Fast => {}
                                Receiver::After(d) => tokio::time::sleep(d).await,
                                Receiver::Never => {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                    return;
                                }
                            }
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        })
        .expect("receiver thread");
    (url, count)
}

fn endpoint(db: &Db, url: &str) {
    let key = Keys::derive(SECRET).expect("keys").webhook_secrets;
    let sealed_secret = sealed::seal(&key, &new_secret()).expect("seal");
    let mut conn = db.get().expect("conn");
    for e in store::list_endpoints(&mut conn).expect("endpoints") {
        store::delete_endpoint(&mut conn, e.id).expect("delete");
    }
    store::insert_endpoint(
        &mut conn,
        &herald::storage::new_public_id(),
        &EndpointFields {
            url,
            description: "bench",
            events: &["message.sent"],
            enabled: true,
            allow_private_network: true,
        },
        &sealed_secret,
    )
    .expect("endpoint");
}

fn clear_endpoints(db: &Db) {
    let mut conn = db.get().expect("conn");
    for e in store::list_endpoints(&mut conn).expect("endpoints") {
        store::delete_endpoint(&mut conn, e.id).expect("delete");
    }
}

/// Events waiting plus deliveries not yet done.
fn backlog(db: &Db) -> i64 {
    let mut conn = db.get().expect("conn");
    store::waiting_events(&mut conn).unwrap_or(0)
        + store::pending_deliveries(&mut conn).unwrap_or(0)
}

/// Leaves nothing from earlier runs for this one to pay for: on PostgreSQL the dead rows of the
/// runs before (deliveries deleted with their endpoint, messages updated) vacuumed and the WAL
/// checkpointed, so that autovacuum and the checkpointer do not start inside a measured run; on
/// SQLite the WAL checkpointed.
fn quiesce(db: &Db) {
    use diesel::connection::SimpleConnection;
    let mut conn = db.get().expect("conn");
    // One statement each: VACUUM cannot run in the transaction a multi-statement string is.
    let statements: &[&str] = match db.backend() {
        Backend::Postgres => &["VACUUM (ANALYZE)", "CHECKPOINT"],
        Backend::Sqlite => &["PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for sql in statements {
        conn.batch_execute(sql).expect("quiesce");
    }
}

struct Run {
    rate: f64,
    cpu_us: f64,
    max_backlog: i64,
    drained_after: Option<Duration>,
}

/// Queues `n` messages, dispatches them (with the callback worker running when `callbacks`),
/// and, when `wait_for_callbacks`, waits for every delivery too.
async fn run(
    db: &Db,
    rate_limit: i32,
    n: usize,
    from: usize,
    callbacks: bool,
    wait_for_callbacks: bool,
) -> Run {
    let fake = start_fake(lean_fake()).await;
    let ch = channel(db, &format!("Bench {from}"), &fake.base_url, rate_limit);
    queue(db, &ch, from, n);
    quiesce(db);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = callbacks.then(|| {
        CallbackWorker {
            db: db.clone(),
            keys: Keys::derive(SECRET).expect("keys"),
            config: CallbackConfig {
                retry_base: Duration::from_secs(5),
                timeout: Duration::from_secs(10),
                per_endpoint: 16,
                overall: 256,
                poll: Duration::from_millis(200),
            },
        }
        .spawn(stop_rx.clone())
    });
    let before = (cpu_seconds(), main_thread_seconds());
    let mut max_backlog = 0i64;
    let mut last_look = Instant::now();
    let started = Instant::now();
    let elapsed = drain(db, &fake, n as u64, |_| {
        if callbacks && last_look.elapsed() >= Duration::from_millis(500) {
            last_look = Instant::now();
            max_backlog = max_backlog.max(backlog(db));
        }
    })
    .await;
    let mut drained_after = None;
    if wait_for_callbacks {
        loop {
            let b = backlog(db);
            max_backlog = max_backlog.max(b);
            if b == 0 {
                drained_after = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let cpu = per_message(before.0, cpu_seconds(), n);
    let harness = (main_thread_seconds() - before.1) * 1e6 / n as f64;
    let server = if db.backend() == Backend::Postgres {
        cpu[2]
    } else {
        0.0
    };
    let _ = stop_tx.send(true);
    if let Some(w) = worker {
        // A receiver that never answers holds calls until their timeout: do not wait for them.
        let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
    }
    Run {
        rate: n as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu[0] - harness + server,
        max_backlog,
        drained_after,
    }
}

/// Herald's HTTP client alone: `n` posts of a callback-sized body (1 KB) to a receiver that
/// answers at once, 16 at a time, each on a task of its own as the worker makes them; the CPU
/// per request (this process minus the receiver's thread and the main thread) is the floor of
/// what a callback can cost.
async fn bare_client(n: usize) -> f64 {
    let (url, received) = start_receiver(Receiver::Fast);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let body = "x".repeat(1024);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let before = (cpu_seconds(), main_thread_seconds());
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let res = client.post(url).body(body).send().await;
            if let Ok(res) = res {
                let _ = res.bytes().await;
            }
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let cpu = per_message(before.0, cpu_seconds(), n);
    let harness = (main_thread_seconds() - before.1) * 1e6 / n as f64;
    assert!(
        received.load(Ordering::Relaxed) >= n as u64,
        "every post arrived"
    );
    cpu[0] - harness
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let rate: i32 = arg("--rate").and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let runs: Vec<String> = arg("--runs")
        .unwrap_or_else(|| "fast,slow,dead".into())
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let mut backends: Vec<(String, String)> = vec![(
        "SQLite".into(),
        format!("sqlite://{}", dir.path().join("bench.db").display()),
    )];
    let pg = std::env::var("HERALD_BENCH_DATABASE_URL")
        .ok()
        .map(|url| support::PgDatabase::create(&url));
    if let Some(pg) = &pg {
        backends.push(("PostgreSQL".into(), pg.url.clone()));
    }
    println!(
        "Status-callback benchmark: {n} messages a run at {rate} status changes a second, {} cores",
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    println!();
    println!(
        "| backend | run | send rate (msg/s) | vs no callbacks | Herald CPU per message (µs) | vs no callbacks | largest backlog (events + deliveries) | all delivered after |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    if runs.iter().any(|r| r == "bare") {
        println!(
            "(Herald's HTTP client alone, {n} posts of 1 KB, 16 at a time: {:.0} µs of CPU a post)",
            bare_client(n).await
        );
        println!();
    }
    for (label, url) in &backends {
        let db = open_db(label, url);
        clear_endpoints(&db);
        // A fresh database's first run pays for warming up (pages allocated, caches and
        // prepared statements filled), and every run leaves the database larger for the next:
        // a warm-up run is not compared, and the baseline runs both first and last, the
        // callbacks' runs compared with the mean of the two.
        run(&db, rate, (n / 5).max(1), 4_000_000, false, false).await;
        let base_first = run(&db, rate, n, 0, false, false).await;
        let mut measured: Vec<(&str, Run)> = Vec::new();
        for which in &runs {
            let (name, how, from) = match which.as_str() {
                "bare" => continue,
                "fast" => (
                    "callbacks, receiver answers at once",
                    Receiver::Fast,
                    1_000_000,
                ),
                "slow" => (
                    "callbacks, receiver answers after 5 s",
                    Receiver::After(Duration::from_secs(5)),
                    2_000_000,
                ),
                "dead" => (
                    "callbacks, receiver never answers",
                    Receiver::Never,
                    3_000_000,
                ),
                other => panic!("--runs takes bare, fast, slow and dead, not {other:?}"),
            };
            let (url, received) = start_receiver(how);
            endpoint(&db, &url);
            let wait = matches!(how, Receiver::Fast);
            let unknown_before = count(&db, "unknown");
            let r = run(&db, rate, n, from, true, wait).await;
            if wait {
                // A message whose send ended `unknown` reports no `message.sent`.
                let unknown = (count(&db, "unknown") - unknown_before) as u64;
                assert!(
                    received.load(Ordering::Relaxed) + unknown >= n as u64,
                    "every callback arrived"
                );
            }
            clear_endpoints(&db);
            measured.push((name, r));
        }
        let base_last = run(&db, rate, n, 5_000_000, false, false).await;
        let base = Run {
            rate: (base_first.rate + base_last.rate) / 2.0,
            cpu_us: (base_first.cpu_us + base_last.cpu_us) / 2.0,
            max_backlog: 0,
            drained_after: None,
        };
        let row = |name: &str, r: &Run| {
            println!(
                "| {label} | {name} | {:.0} | {:+.1}% | {:.0} | {:.2}x | {} | {} |",
                r.rate,
                (r.rate / base.rate - 1.0) * 100.0,
                r.cpu_us,
                r.cpu_us / base.cpu_us,
                r.max_backlog,
                r.drained_after
                    .map_or("—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            );
        };
        row("no callbacks, first", &base_first);
        row("no callbacks, last", &base_last);
        for (name, r) in &measured {
            row(name, r);
        }
    }
}
