//! What the benchmarks that drive a running Herald share: command-line options, the real
//! `herald` binary started as its own process (so its memory is measured apart from the load
//! generator), its resident memory, and a `/healthz` prober whose latencies are reported as
//! percentiles against a baseline taken in the same run.

#![allow(dead_code)] // Each benchmark uses the part it needs.

pub mod load;
// Issue 19: shared by the dispatch and callbacks benchmarks.
pub mod outbox;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const SECRET: &str = "bench-secret-key-of-sufficient-length-0123456789";
pub const TWILIO_SID: &str = "AC0000000000000000000000000000beef";
pub const TWILIO_TOKEN: &str = "bench-twilio-auth-token-0123456789";

/// The value after `name` on the command line (`cargo bench` passes `--bench`; the rest is ours).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

pub fn arg_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A channel written straight into the database, its secrets sealed with [`SECRET`]'s key.
pub fn insert_channel(
    db: &herald::storage::Db,
    kind: herald::domain::channel::ChannelKind,
    provider: herald::domain::channel::Provider,
    name: &str,
    settings: serde_json::Value,
    secrets: serde_json::Value,
    rate_limit_per_second: i32,
) -> herald::storage::channels::Channel {
    let key = herald::auth::keys::Keys::derive(SECRET)
        .expect("keys")
        .channel_secrets;
    herald::storage::channels::insert(
        &mut db.get().expect("conn"),
        &herald::storage::channels::NewChannel {
            kind,
            provider,
            name,
            sender: "+14155550100",
            settings: &settings.to_string(),
            secrets: Some(&herald::auth::sealed::seal(&key, &secrets.to_string()).expect("seal")),
            rate_limit_per_second,
        },
    )
    .expect("channel")
}

/// The first few distinct warnings and errors in the server's log in `dir` (without their
/// time stamps), for the report: the log is lost with the directory.
pub fn log_gist(dir: &std::path::Path) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join("herald.log")).unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| !l.contains("tracing_actix_web"))
    {
        let gist = line.get(28..).unwrap_or(line);
        let gist = gist.get(..gist.len().min(200)).unwrap_or(gist);
        if seen.len() < 5 && !seen.iter().any(|s| s.get(..60) == gist.get(..60)) {
            seen.push(gist.to_owned());
        }
    }
    seen
}

/// Prints [`log_gist`] under the report.
pub fn print_log_gist(dir: &std::path::Path) {
    for line in log_gist(dir) {
        println!("    log: …{line}");
    }
}

/// Resident memory of a process in MiB (0 when it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The `herald` binary to run: this build's, or the one `HERALD_BENCH_BIN` names (to measure
/// an older build with the same harness).
pub fn herald_binary() -> String {
    std::env::var("HERALD_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_herald").to_owned())
}

/// `herald serve` on a fresh SQLite database in `dir`, on a free port; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub database_url: String,
}

impl Server {
    /// Starts the binary with `env` added to a bench configuration, after running
    /// `herald user create` for each of `users` (e-mail, password).
    pub fn start(dir: &std::path::Path, env: &[(&str, &str)], users: &[(&str, &str)]) -> Server {
        let database_url = format!("sqlite://{}", dir.join("herald.db").display());
        Server::start_on(&database_url, dir, env, users)
    }

    /// The same, on the database `database_url` names (its log still goes to `dir`).
    pub fn start_on(
        database_url: &str,
        dir: &std::path::Path,
        env: &[(&str, &str)],
        users: &[(&str, &str)],
    ) -> Server {
        let database_url = database_url.to_owned();
        let base = |cmd: &mut Command| {
            cmd.env("DATABASE_URL", &database_url)
                .env("HERALD_SECRET_KEY", SECRET)
                .env("HERALD_BIND", "127.0.0.1:0")
                .env("HERALD_LOG", "warn")
                .env_remove("HERALD_PUBLIC_URL");
        };
        for (email, password) in users {
            create_user(&database_url, email, password, "marketer");
        }
        let mut cmd = Command::new(herald_binary());
        base(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its log (a flood logs every refusal) goes to a file beside the database.
        let log_path = dir.join("herald.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start herald");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("Herald is running at ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("herald exited before it was ready:\n{log}");
                }
            }
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            database_url,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.pid())
    }
}

/// Runs `herald user create` on `database_url` for a person with `role`.
pub fn create_user(database_url: &str, email: &str, password: &str, role: &str) {
    let mut cmd = Command::new(herald_binary());
    cmd.env("DATABASE_URL", database_url)
        .env("HERALD_SECRET_KEY", SECRET)
        .env("HERALD_LOG", "warn")
        .env_remove("HERALD_PUBLIC_URL")
        .args(["user", "create", "--email", email, "--name", "Bench Person"])
        .args(["--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run herald user create");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(password.as_bytes()).expect("password");
    }
    let out = child.wait_with_output().expect("herald user create");
    assert!(
        out.status.success(),
        "herald user create {email}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs in through the login form whose page `login_page` holds (its CSRF token), sending
/// `cookie` (the visitor's session) when given; asserts the redirect that means success.
pub async fn post_login(
    http: &reqwest::Client,
    base: &str,
    login_page: &str,
    cookie: Option<&str>,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let marker = "\"X-CSRF-Token\": \"";
    let start = login_page.find(marker).expect("a CSRF token on /login") + marker.len();
    let token = &login_page[start..start + login_page[start..].find('"').expect("token end")];
    let mut req = http.post(format!("{base}/login"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", token),
        ])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(res.status().as_u16(), 303, "signing in");
    res
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// Probes that failed (no answer, or not 200).
    pub failed: usize,
}

impl Percentiles {
    pub fn of(mut ms: Vec<f64>, failed: usize) -> Self {
        if ms.is_empty() {
            return Percentiles {
                failed,
                ..Percentiles::default()
            };
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        Percentiles {
            n: ms.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: ms[ms.len() - 1],
            failed,
        }
    }
}

/// Probes `GET /healthz` every `every` on a fresh connection each time (as a load balancer
/// would), until stopped; `finish` returns the latencies.
pub struct HealthProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<f64>, usize)>,
}

impl HealthProbe {
    pub fn start(base_url: &str, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{base_url}/healthz");
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let (mut ms, mut failed) = (Vec::new(), 0);
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ms.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => failed += 1,
                }
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
            (ms, failed)
        });
        HealthProbe { stop, task }
    }

    pub async fn finish(self) -> Percentiles {
        self.stop.store(true, Ordering::Relaxed);
        let (ms, failed) = self.task.await.unwrap_or_default();
        Percentiles::of(ms, failed)
    }

    /// Probes for `span` and returns the latencies: the baseline with no load.
    pub async fn baseline(base_url: &str, every: Duration, span: Duration) -> Percentiles {
        let probe = HealthProbe::start(base_url, every);
        tokio::time::sleep(span).await;
        probe.finish().await
    }
}

/// Samples a process's RSS every `every` until stopped; `finish` returns the peak in MiB.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                tokio::time::sleep(every).await;
            }
            peak.max(rss_mib(pid))
        });
        RssSampler { stop, task }
    }

    pub async fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0.0)
    }
}

/// The databases a benchmark runs on, in order: SQLite (a file `file` in `dir`), then
/// PostgreSQL in a fresh database when `HERALD_BENCH_DATABASE_URL` names a server; `--only
/// sqlite|postgres` keeps one. Each is (label, URL, the PostgreSQL database to drop afterwards).
pub fn databases(
    dir: &std::path::Path,
    file: &str,
) -> Vec<(&'static str, String, Option<PgDatabase>)> {
    let only = arg("--only").map(|o| o.to_ascii_lowercase());
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut out = Vec::new();
    if wants("sqlite") {
        let url = format!("sqlite://{}", dir.join(file).display());
        out.push(("SQLite", url, None));
    }
    if let Ok(admin_url) = std::env::var("HERALD_BENCH_DATABASE_URL")
        && wants("postgres")
    {
        let pg = PgDatabase::create(&admin_url);
        out.push(("PostgreSQL", pg.url.clone(), Some(pg)));
    }
    out
}

/// A fresh PostgreSQL database on the server `admin_url` names (`HERALD_BENCH_DATABASE_URL`),
/// dropped again when this is dropped.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create(admin_url: &str) -> PgDatabase {
        use diesel::connection::SimpleConnection;
        let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
        herald::storage::Db::connect(admin_url, 1)
            .expect("postgres")
            .get()
            .expect("conn")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create db");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.to_owned(), |(b, _)| b.to_owned());
        PgDatabase {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        let dropped = herald::storage::Db::connect(&self.admin_url, 1)
            .map_err(|e| e.to_string())
            .and_then(|db| db.get().map_err(|e| e.to_string()))
            .and_then(|mut c| {
                c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("could not drop the benchmark database {}: {e}", self.name);
        }
    }
}
