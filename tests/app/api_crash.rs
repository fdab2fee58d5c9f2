//! A 202 from `POST /api/v1/messages` is a promise: the message is stored and goes out once,
//! even when the server dies right after answering. The real `herald serve` is killed (SIGKILL)
//! in the middle of a burst of API sends, started again, and every request that got no answer
//! is sent again with its `Idempotency-Key`, as a client retrying would.
//!
//! Only the HTTP API, the command line and the fake provider are used, so the test holds
//! whatever the send path does inside (one transaction per request or one commit for many).
//! The database is read only to learn which messages survived the crash (so the test knows
//! which retries must be replays) and to wait for the outbox to drain.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use herald::storage::schema::messages;
use herald::testkit::fake_provider::{FakeConfig, FakeProvider, FakeProviderHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::provider_kit::{create_channel, twilio_channel};

crate::both_backends!(every_message_that_got_a_202_before_a_crash_is_sent_once);

/// The same master secret as the test's in-process server, which sealed the channel's secrets.
const SECRET: &str = "test-secret-key-of-sufficient-length-0123456789";
const CHANNEL: &str = "Burst SMS";
/// Requests in the burst, each to its own new number (the fake counts sends per recipient).
const REQUESTS: usize = 1_200;
/// Clients sending at once.
const CLIENTS: usize = 32;
/// The server is killed once this many requests were answered 202.
const KILL_AFTER: usize = 300;

/// One request of the burst: its own number, text and idempotency key.
#[derive(Debug, Clone)]
struct SendCall {
    to: String,
    text: String,
    key: String,
}

impl SendCall {
    fn new(i: usize) -> Self {
        SendCall {
            to: format!("+1415555{i:04}"),
            text: format!("burst {i}"),
            key: format!("burst-{i}"),
        }
    }

    fn body(&self) -> Value {
        json!({"to": self.to, "channel": CHANNEL, "text": self.text})
    }
}

/// What a client learnt from one request.
#[derive(Clone)]
enum Outcome {
    /// The burst stopped (the server was dead) before this request was made.
    NotSent,
    /// The connection failed or was cut: the client cannot know whether it was stored.
    NoAnswer(String),
    Accepted {
        id: String,
        replayed: bool,
    },
    /// Any other answer (a refusal or a server error), which this test does not expect.
    Other(StatusCode, String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotSent => write!(f, "not sent"),
            Outcome::NoAnswer(why) => write!(f, "no answer ({why})"),
            Outcome::Accepted { id, replayed } => write!(f, "202 {id} (replayed: {replayed})"),
            Outcome::Other(status, body) => write!(f, "{status}: {body}"),
        }
    }
}

async fn post(client: &reqwest::Client, base: &str, api_key: &str, call: &SendCall) -> Outcome {
    let sent = client
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(api_key)
        .header("Idempotency-Key", &call.key)
        .json(&call.body())
        .send()
        .await;
    let res = match sent {
        Ok(res) => res,
        Err(e) => return Outcome::NoAnswer(e.to_string()),
    };
    let status = res.status();
    let replayed = res
        .headers()
        .get("Idempotent-Replayed")
        .is_some_and(|v| v == "true");
    let text = match res.text().await {
        Ok(text) => text,
        // The headers came but the body was cut: the 202 never reached the client whole.
        Err(e) => return Outcome::NoAnswer(format!("{status}, then {e}")),
    };
    if status != StatusCode::ACCEPTED {
        return Outcome::Other(status, text);
    }
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(json["to"], call.to.as_str(), "{json}");
    Outcome::Accepted {
        id: json["id"].as_str().expect("the message's id").to_owned(),
        replayed,
    }
}

/// Requests sent from [`CLIENTS`] tasks at once, each task taking the next request until none
/// is left; a task that finds `stop` set records the rest as not sent.
struct Burst {
    tasks: Vec<tokio::task::JoinHandle<Vec<(usize, Outcome)>>>,
}

impl Burst {
    /// Sends `calls` (indices into `all`), counting the 202s in `accepted` as they come.
    fn fire(
        base: &str,
        api_key: &str,
        all: &Arc<Vec<SendCall>>,
        calls: Vec<usize>,
        stop: &Arc<AtomicBool>,
        accepted: &Arc<AtomicUsize>,
    ) -> Burst {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let calls = Arc::new(calls);
        let next = Arc::new(AtomicUsize::new(0));
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (client, base, api_key) = (client.clone(), base.to_owned(), api_key.to_owned());
                let (all, calls, next) = (all.clone(), calls.clone(), next.clone());
                let (stop, accepted) = (stop.clone(), accepted.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while let Some(&i) = calls.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let outcome = if stop.load(Ordering::SeqCst) {
                            Outcome::NotSent
                        } else {
                            post(&client, &base, &api_key, &all[i]).await
                        };
                        if matches!(outcome, Outcome::Accepted { .. }) {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        outcomes.push((i, outcome));
                    }
                    outcomes
                })
            })
            .collect();
        Burst { tasks }
    }

    fn finished(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    /// Every request's outcome, once all were made.
    async fn outcomes(self) -> BTreeMap<usize, Outcome> {
        let mut all = BTreeMap::new();
        for t in self.tasks {
            all.extend(t.await.expect("a client task panicked"));
        }
        all
    }
}

async fn every_message_that_got_a_202_before_a_crash_is_sent_once(app: TestApp) {
    let fake = FakeProvider::start(FakeConfig {
        workers: 2,
        keep_last: REQUESTS * 2,
        ..FakeConfig::default()
    })
    .await
    .expect("fake provider");
    let out = app.cli(
        &["api-key", "create", "--name", "Burst", "--role", "admin"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api_key = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    let mut channel = twilio_channel(CHANNEL, &fake.base_url);
    // The channel's pace must not be what the test waits for.
    channel["rate_limit_per_second"] = json!(10_000);
    create_channel(&app, &api_key, channel).await;
    let calls: Arc<Vec<SendCall>> = Arc::new((0..REQUESTS).map(SendCall::new).collect());

    // The burst, against a server that stores but does not send, killed midway.
    let mut server = ServerProcess::start(&app, false).await;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let burst = Burst::fire(
        &server.url,
        &api_key,
        &calls,
        (0..REQUESTS).collect(),
        &stop,
        &accepted,
    );
    while accepted.load(Ordering::SeqCst) < KILL_AFTER {
        if burst.finished() {
            let outcomes = burst.outcomes().await;
            panic!(
                "the burst ended with {} of {KILL_AFTER} 202s before the kill; {}",
                accepted.load(Ordering::SeqCst),
                first_unexpected(outcomes.iter())
                    .map(|(i, a)| format!("request {i} was answered {a}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // No request starts after this, so those without an answer were in flight at the kill.
    stop.store(true, Ordering::SeqCst);
    server.kill();
    let before = burst.outcomes().await;
    assert_eq!(before.len(), REQUESTS);
    if let Some((i, a)) = first_unexpected(before.iter()) {
        panic!("request {i} was answered {a} before the crash");
    }
    let accepted_before: BTreeMap<usize, String> = before
        .iter()
        .filter_map(|(&i, a)| match a {
            Outcome::Accepted { id, .. } => Some((i, id.clone())),
            _ => None,
        })
        .collect();
    let unanswered: Vec<usize> = before
        .iter()
        .filter(|(_, a)| !matches!(a, Outcome::Accepted { .. }))
        .map(|(&i, _)| i)
        .collect();
    let cut = before
        .values()
        .filter(|a| matches!(a, Outcome::NoAnswer(_)))
        .count();
    assert!(
        cut > 0,
        "no request was in flight when the server was killed, so the crash proved nothing"
    );
    assert_eq!(fake.stats().requests, 0, "nothing is sent before the crash");

    // A commit the dead process sent just before dying may still land: let it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = stored_messages(&app);
    for (i, id) in &accepted_before {
        assert_eq!(
            stored.get(&calls[*i].to),
            Some(id),
            "request {i} got a 202 with message {id}, which the crash lost"
        );
    }
    let stored_unanswered = unanswered
        .iter()
        .filter(|&&i| stored.contains_key(&calls[i].to))
        .count();
    assert_eq!(
        stored.len(),
        accepted_before.len() + stored_unanswered,
        "only the burst's requests are stored, one message each"
    );

    // A new server that sends; clients retry what got no answer, with the same key and body.
    let server = ServerProcess::start(&app, true).await;
    let retried = Burst::fire(
        &server.url,
        &api_key,
        &calls,
        unanswered.clone(),
        &Arc::new(AtomicBool::new(false)),
        &Arc::new(AtomicUsize::new(0)),
    )
    .outcomes()
    .await;
    let mut ids = accepted_before.clone();
    for i in &unanswered {
        let (id, replayed) = match &retried[i] {
            Outcome::Accepted { id, replayed } => (id.clone(), *replayed),
            other => panic!("the retry of request {i} after the restart: {other}"),
        };
        match stored.get(&calls[*i].to) {
            Some(first) => {
                assert!(
                    replayed && id == *first,
                    "request {i} was stored as {first} before the crash; its retry must answer \
                     with it (Idempotent-Replayed), not {id} (replayed: {replayed})"
                );
            }
            None => assert!(
                !replayed,
                "request {i} was not stored before the crash, yet its retry was a replay of {id}"
            ),
        }
        ids.insert(*i, id);
    }

    wait_until_drained(&app, &fake).await;
    let statuses = api_statuses(&server.url, &api_key, &ids).await;
    for (i, id) in &ids {
        assert_eq!(
            statuses[i],
            "sent",
            "request {i}'s message {id} (202 before the crash: {})",
            accepted_before.contains_key(i)
        );
    }
    let distinct: std::collections::BTreeSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), REQUESTS, "one message per request");
    assert_eq!(
        stored_messages(&app).len(),
        REQUESTS,
        "one message per request"
    );

    // The provider got every request's text exactly once, at its number.
    let stats = fake.stats();
    assert!(
        stats.duplicates().is_empty(),
        "recipients got duplicates: {:?}",
        &stats.duplicates()[..stats.duplicates().len().min(5)]
    );
    assert_eq!(
        stats.sends_accepted, REQUESTS as u64,
        "sends the provider accepted ({} received)",
        stats.sends_received
    );
    let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in fake.requests().iter().filter(|r| r.outcome == "accepted") {
        let (Some(to), Some(body)) = (r.form_value("To"), r.form_value("Body")) else {
            continue;
        };
        texts.entry(body).or_default().push(to);
    }
    let expected: BTreeMap<String, Vec<String>> = calls
        .iter()
        .map(|c| (c.text.clone(), vec![c.to.clone()]))
        .collect();
    assert!(
        texts == expected,
        "the provider did not get each text once at its number; first difference: {:?}",
        expected
            .iter()
            .find(|(t, to)| texts.get(*t) != Some(to))
            .map(|(t, _)| (t, texts.get(t)))
    );
    eprintln!(
        "api_crash on {}: {} of {REQUESTS} answered 202 before the kill, {cut} cut in flight \
         ({stored_unanswered} of those already stored, answered as replays), {} first sent \
         after the restart",
        app.database_url.split(':').next().unwrap_or_default(),
        accepted_before.len(),
        unanswered.len() - cut,
    );
    drop(server);
    crate::outbox::assert_outbox_drained(&app).await;
}

/// The first answer that is neither a 202 nor a missing one.
fn first_unexpected<'a>(
    mut answers: impl Iterator<Item = (&'a usize, &'a Outcome)>,
) -> Option<(usize, Outcome)> {
    answers
        .find(|(_, a)| matches!(a, Outcome::Other(..)))
        .map(|(&i, a)| (i, a.clone()))
}

/// Every stored message: its number (one per request here) and its id.
fn stored_messages(app: &TestApp) -> HashMap<String, String> {
    let rows: Vec<(String, String)> = messages::table
        .select((messages::to_address, messages::public_id))
        .load(&mut *app.db())
        .expect("messages");
    let n = rows.len();
    let map: HashMap<String, String> = rows.into_iter().collect();
    assert_eq!(map.len(), n, "two messages to one number");
    map
}

/// Waits (at most a minute) until nothing is queued or sending.
async fn wait_until_drained(app: &TestApp, fake: &FakeProviderHandle) {
    let db = herald::storage::Db::connect(&app.database_url, 1).expect("connect");
    let started = Instant::now();
    loop {
        let left = crate::outbox::left_in_outbox(&db).len();
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{left} message(s) still queued or sending after a minute; the provider took {}",
            fake.sends_accepted()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each message's status as `GET /api/v1/messages/{id}` reports it, by request.
async fn api_statuses(
    base: &str,
    api_key: &str,
    ids: &BTreeMap<usize, String>,
) -> BTreeMap<usize, String> {
    let client = reqwest::Client::new();
    let ids: Arc<Vec<(usize, String)>> =
        Arc::new(ids.iter().map(|(i, id)| (*i, id.clone())).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, base, api_key) = (client.clone(), base.to_owned(), api_key.to_owned());
            let (ids, next) = (ids.clone(), next.clone());
            tokio::spawn(async move {
                let mut found = Vec::new();
                while let Some((i, id)) = ids.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let res = client
                        .get(format!("{base}/api/v1/messages/{id}"))
                        .bearer_auth(&api_key)
                        .send()
                        .await
                        .expect("GET message");
                    assert_eq!(res.status(), StatusCode::OK, "message {id}");
                    let m: Value = res.json().await.expect("JSON");
                    found.push((*i, m["status"].as_str().unwrap_or_default().to_owned()));
                }
                found
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for t in tasks {
        statuses.extend(t.await.expect("a status task panicked"));
    }
    statuses
}

/// The real `herald serve` on the test's database, on a free port; killed when dropped, so a
/// failing test leaves no server running.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) url: String,
    _log_dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary, the in-process dispatcher on or off, and waits for the line that
    /// gives its address.
    pub(crate) async fn start(app: &TestApp, run_worker: bool) -> ServerProcess {
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log_path = log_dir.path().join("herald.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .env("DATABASE_URL", &app.database_url)
            .env("HERALD_BIND", "127.0.0.1:0")
            .env("HERALD_SECRET_KEY", SECRET)
            .env("HERALD_LOG", "warn")
            .env("HERALD_RUN_WORKER", run_worker.to_string())
            .env("HERALD_WORKER_DEAD_AFTER_SECS", "2")
            .env_remove("HERALD_PUBLIC_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start herald");
        // From here on the guard kills the child on every way out, a panic included.
        let mut server = ServerProcess {
            child,
            url: String::new(),
            _log_dir: log_dir,
        };
        let stdout = server.child.stdout.take().expect("stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let url = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.strip_prefix("Herald is running at ")
                    .map(|u| u.trim().to_owned())
            });
            // Keep reading so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            url
        });
        let url = tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        match url {
            Some(url) => server.url = url,
            None => panic!(
                "herald serve did not say where it runs:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ),
        }
        server
    }

    /// SIGKILL: no shutdown, no finishing the requests under way.
    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
