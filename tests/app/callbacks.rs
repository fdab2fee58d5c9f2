//! Status callbacks to the business (issue 19): endpoints registered through the API, events
//! delivered to a receiver in the test and checked by an independent implementation of the
//! Standard Webhooks specification (the `standardwebhooks` package from PyPI, run with the
//! Python that `.ci/run` installs it into, `HERALD_TEST_PYTHON`), retries, 410, 4xx, the
//! refusal of private addresses, a worker killed while delivering, and two workers sharing
//! the deliveries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use herald::storage::schema::{webhook_attempts, webhook_deliveries};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::fixtures::{self, WA_BODY};
use crate::helpers::{Backend, TestApp};
use crate::provider_kit::api;

crate::both_backends!(spawn = spawn_fast; ssrf_refusals_and_admin_only);
crate::both_backends!(with_backend done_when: a_template_send_reports_signed_statuses);
crate::both_backends!(with_backend retries: failures_are_retried_410_disables_and_4xx_fails);
crate::both_backends!(with_backend crash: a_worker_killed_while_delivering_loses_nothing);
crate::both_backends!(with_backend two_workers: two_workers_deliver_each_attempt_once);
crate::both_backends!(with_backend slow_endpoint: a_hanging_endpoint_delays_neither_sending_nor_other_endpoints);

/// The test servers' master secret (`helpers::test_settings`): a worker started as a process
/// needs it to open the endpoints' sealed secrets.
const SECRET: &str = "test-secret-key-of-sufficient-length-0123456789";

async fn spawn_fast(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        s.run_worker = true;
        s.callback_retry_base = Duration::from_millis(50);
        s.callback_timeout = Duration::from_secs(2);
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// A receiver: answers each request as its script says, and keeps what it got.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Answer 200 after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// When the script is empty.
    default: Arc<Mutex<Option<Answer>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Listens on loopback; returns it and its URL.
    async fn start() -> (Receiver, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        let r = Receiver::default();
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(stream).await });
            }
        });
        (r, url)
    }

    fn then(&self, answers: &[Answer]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    fn by_default(&self, answer: Answer) {
        *self.default.lock().unwrap() = Some(answer);
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    async fn serve(&self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .or(*self.default.lock().unwrap())
            .unwrap_or(Answer::Status(200));
        self.got.lock().unwrap().push(Received { headers, body });
        let status = match answer {
            Answer::Drop => return,
            Answer::Slow(wait) => {
                tokio::time::sleep(wait).await;
                200
            }
            Answer::Status(s) => s,
        };
        let reply = format!(
            "HTTP/1.1 {status} Whatever\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nanswer\0\u{1}!"
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// Waits until `check` holds, up to `wait`.
async fn eventually(wait: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The independent verifier
// ---------------------------------------------------------------------------------------------

/// `HERALD_TEST_PYTHON`: a Python with the `standardwebhooks` package (`.ci/run` makes one).
fn python() -> Option<String> {
    match std::env::var("HERALD_TEST_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ => {
            eprintln!(
                "skipping the standardwebhooks check: HERALD_TEST_PYTHON is not set (.ci/run sets it)"
            );
            None
        }
    }
}

/// For each request, which of `secrets` the `standardwebhooks` package verifies it with, and
/// the event type it read. `None` when no Python is configured.
fn verify_with_python(requests: &[Received], secrets: &[&str]) -> Option<Vec<(Vec<bool>, String)>> {
    let python = python()?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/callbacks/verify_signatures.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the verifier");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for r in requests {
            let line = json!({"secrets": secrets, "headers": r.headers, "body": r.body});
            writeln!(stdin, "{line}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("verifier output");
    assert!(out.status.success(), "the verifier failed");
    let results: Vec<(Vec<bool>, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("verifier line");
            let verified = v["verified"]
                .as_array()
                .expect("verified")
                .iter()
                .map(|b| b.as_bool().unwrap_or(false))
                .collect();
            (verified, v["type"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(results.len(), requests.len());
    Some(results)
}

/// The signature check of the specification, written out here as well, so that the test
/// means something without Python too.
fn verifies(r: &Received, secret: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret");
    let signed = format!(
        "{}.{}.{}",
        r.headers["webhook-id"], r.headers["webhook-timestamp"], r.body
    );
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).expect("key");
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", engine.encode(mac.finalize().into_bytes()));
    r.headers["webhook-signature"]
        .split(' ')
        .any(|s| s == expected)
}

// ---------------------------------------------------------------------------------------------
// Helpers over the API
// ---------------------------------------------------------------------------------------------

async fn register(app: &TestApp, key: &str, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = api(
        app,
        Method::POST,
        "/api/v1/webhook-endpoints",
        key,
        Some(
            &json!({"url": url, "events": events, "description": "test receiver",
                     "allow_private_network": true}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    (body["id"].as_str().expect("id").to_owned(), secret)
}

async fn log(app: &TestApp, key: &str, endpoint: &str) -> Vec<Value> {
    let (status, body) = api(
        app,
        Method::GET,
        &format!("/api/v1/webhook-endpoints/{endpoint}/deliveries"),
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().expect("data").clone()
}

async fn send_test(app: &TestApp, key: &str, endpoint: &str) -> String {
    let (status, body) = api(
        app,
        Method::POST,
        &format!("/api/v1/webhook-endpoints/{endpoint}/test"),
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["webhook_id"].as_str().expect("id").to_owned()
}

/// Waits until the delivery `id` is no longer pending; returns it from the log.
async fn settled(app: &TestApp, key: &str, endpoint: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = log(app, key, endpoint)
            .await
            .into_iter()
            .find(|d| d["webhook_id"] == id);
        if let Some(d) = found
            && d["status"] != "pending"
        {
            return d;
        }
        assert!(Instant::now() < deadline, "delivery {id} never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// "Done when": a key, an endpoint, a template sent with the API; signed `message.sent`,
/// `message.delivered` and `message.read` arrive and verify; every attempt is in the log. Then
/// the secret is rotated: callbacks carry both signatures, each verifying.
async fn a_template_send_reports_signed_statuses(backend: Backend) {
    let app = spawn_fast(backend).await;
    let s = fixtures::setup(&app).await;
    fixtures::approved_template(&app, &s, "order_shipped", WA_BODY).await;
    let (receiver, url) = Receiver::start().await;
    let (endpoint, secret) = register(
        &app,
        &s.key,
        &url,
        &["message.sent", "message.delivered", "message.read"],
    )
    .await;

    let (status, sent) = api(
        &app,
        Method::POST,
        "/api/v1/messages",
        &s.key,
        Some(&json!({"to": "+14155550123", "channel": s.wa.public_id,
            "template": {"name": "order_shipped", "language": "en_US", "variables": ["Alex", "#42"]}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let message_id = sent["id"].as_str().expect("id").to_owned();

    eventually(Duration::from_secs(30), "three callbacks", || {
        receiver.got().len() >= 3
    })
    .await;
    let got = receiver.got();
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["message.delivered", "message.read", "message.sent"]);
    for r in &got {
        let body = r.json();
        assert_eq!(body["data"]["id"], message_id.as_str(), "{body}");
        assert_eq!(
            body["data"]["status"]
                .as_str()
                .map(|s| format!("message.{s}")),
            body["type"].as_str().map(str::to_owned),
            "the data carries the status the event reports"
        );
        assert!(body["timestamp"].as_str().is_some());
        assert!(r.headers["webhook-id"].starts_with("msg_"));
        assert!(verifies(r, &secret), "signed with the endpoint's secret");
    }
    if let Some(results) = verify_with_python(&got, &[&secret]) {
        for (verified, event_type) in &results {
            assert_eq!(verified, &[true], "standardwebhooks accepts it");
            assert!(event_type.starts_with("message."));
        }
    }
    // The log has every delivery, each with its one successful attempt.
    let deliveries = log(&app, &s.key, &endpoint).await;
    assert_eq!(deliveries.len(), 3);
    for d in &deliveries {
        assert_eq!(d["status"], "succeeded", "{d}");
        let attempts = d["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "{d}");
        assert_eq!(attempts[0]["status_code"], 200);
        assert_eq!(
            attempts[0]["response"], "answer\\0\u{1}!",
            "first bytes, NUL shown"
        );
    }

    // Rotation: the old secret keeps signing beside the new one.
    let (status, rotated) = api(
        &app,
        Method::POST,
        &format!("/api/v1/webhook-endpoints/{endpoint}/rotate-secret"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    let test_id = send_test(&app, &s.key, &endpoint).await;
    settled(&app, &s.key, &endpoint, &test_id).await;
    let test = receiver
        .got()
        .into_iter()
        .find(|r| r.headers["webhook-id"] == test_id)
        .expect("the test event arrived");
    assert_eq!(test.headers["webhook-signature"].split(' ').count(), 2);
    assert!(verifies(&test, &new_secret) && verifies(&test, &secret));
    if let Some(results) = verify_with_python(
        &[test],
        &[
            &new_secret,
            &secret,
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ],
    ) {
        assert_eq!(
            results[0].0,
            [true, true, false],
            "both secrets verify, another does not"
        );
        assert_eq!(results[0].1, "webhook.test");
    }
}

/// Retried on a 500 and on a dropped connection; a 4xx fails that delivery; a 410 disables the
/// endpoint, which its page, the API and the audit log then say.
async fn failures_are_retried_410_disables_and_4xx_fails(backend: Backend) {
    let app = spawn_fast(backend).await;
    let (admin, key) = fixtures::admin_and_key(&app).await;
    let (receiver, url) = Receiver::start().await;
    let (endpoint, _) = register(&app, &key, &url, &["message.failed"]).await;

    receiver.then(&[Answer::Status(500), Answer::Drop, Answer::Status(200)]);
    let id = send_test(&app, &key, &endpoint).await;
    let d = settled(&app, &key, &endpoint, &id).await;
    assert_eq!(d["status"], "succeeded", "{d}");
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{d}");
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[1]["status_code"], Value::Null);
    assert!(attempts[1]["error"].as_str().is_some(), "{d}");
    assert_eq!(attempts[2]["status_code"], 200);
    let ids: HashSet<String> = receiver
        .got()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "every try carries the same webhook-id");

    receiver.then(&[Answer::Status(400)]);
    let id = send_test(&app, &key, &endpoint).await;
    let d = settled(&app, &key, &endpoint, &id).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1));

    // Sending it again makes it due once more, with the same webhook-id.
    let (status, again) = api(
        &app,
        Method::POST,
        &format!("/api/v1/webhook-endpoints/{endpoint}/send-again"),
        &key,
        Some(&json!({"webhook_id": id})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["deliveries"], 1);
    let d = settled(&app, &key, &endpoint, &id).await;
    assert_eq!(d["status"], "succeeded", "{d}");

    receiver.then(&[Answer::Status(410)]);
    let id = send_test(&app, &key, &endpoint).await;
    let d = settled(&app, &key, &endpoint, &id).await;
    assert_eq!(d["status"], "failed");
    let (_, e) = api(
        &app,
        Method::GET,
        &format!("/api/v1/webhook-endpoints/{endpoint}"),
        &key,
        None,
    )
    .await;
    assert_eq!(e["enabled"], false, "{e}");
    assert!(
        e["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410"))
    );
    let page = admin
        .get_html(&format!("/settings/webhooks/{endpoint}"))
        .await;
    assert!(page.contains("endpoint-disabled") && page.contains("410"));
    let audit = admin.get_html("/settings/audit").await;
    assert!(
        audit.contains("webhook_endpoint.disabled"),
        "in the audit log"
    );
}

/// Loopback, private, link-local and mapped addresses are refused unless the endpoint allows
/// private networks; only admins manage endpoints.
async fn ssrf_refusals_and_admin_only(app: TestApp) {
    let (admin, key) = fixtures::admin_and_key(&app).await;
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.7/",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/",
        "http://[fd00::1]/",
    ] {
        let (status, body) = api(
            &app,
            Method::POST,
            "/api/v1/webhook-endpoints",
            &key,
            Some(&json!({"url": url, "events": ["message.sent"]})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_webhook_endpoint");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("url")),
            "{body}"
        );
    }
    let (status, body) = api(
        &app,
        Method::POST,
        "/api/v1/webhook-endpoints",
        &key,
        Some(&json!({"url": "ftp://example.com/", "events": ["message.nope"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (endpoint, _) = register(&app, &key, "http://127.0.0.1:9/hooks", &["message.sent"]).await;
    let (status, body) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/webhook-endpoints/{endpoint}"),
        &key,
        Some(&json!({"allow_private_network": false})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // The page form refuses it the same way, naming the field.
    let res = admin
        .post_form(
            "/settings/webhooks",
            &[
                ("url", "http://127.0.0.1/x"),
                ("events", "message.sent"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.expect("page");
    assert!(page.contains("error-url") && page.contains("loopback"));

    let marketer = crate::helpers::create_api_key(&admin, "Marketing", "marketer").await;
    let (status, _) = api(
        &app,
        Method::GET,
        "/api/v1/webhook-endpoints",
        &marketer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/webhook-endpoints/{endpoint}"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let page = admin.get_html("/settings/webhooks").await;
    assert!(page.contains("No webhook endpoints yet"));
}

/// A `herald worker` process.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(app: &TestApp) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("worker")
            .env("DATABASE_URL", &app.database_url)
            .env("HERALD_SECRET_KEY", SECRET)
            .env("HERALD_LOG", "warn")
            .env("HERALD_CALLBACK_RETRY_BASE_MS", "50")
            .env("HERALD_CALLBACK_TIMEOUT_SECS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start herald worker");
        WorkerProcess(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Queues `n` API sends while no worker runs, so that each writes a `message.queued` event.
async fn queue_sends(app: &TestApp, key: &str, n: usize) {
    for i in 0..n {
        let (status, body) = api(
            app,
            Method::POST,
            "/api/v1/messages",
            key,
            Some(&json!({"to": format!("+1415555{i:04}"), "channel": "Sandbox SMS", "text": "hi"})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
}

/// Per delivery: its status and how many attempts were logged.
fn deliveries_in_db(app: &TestApp) -> Vec<(i64, String, i64)> {
    let mut conn = app.db();
    let rows: Vec<(i64, String)> = webhook_deliveries::table
        .select((webhook_deliveries::id, webhook_deliveries::status))
        .load(&mut conn)
        .expect("deliveries");
    rows.into_iter()
        .map(|(id, status)| {
            let n: i64 = webhook_attempts::table
                .filter(webhook_attempts::delivery_id.eq(id))
                .count()
                .get_result(&mut conn)
                .expect("attempts");
            (id, status, n)
        })
        .collect()
}

/// A worker killed (SIGKILL) while its calls are under way: a new worker delivers every
/// event, none lost (a repeat carries the same webhook-id).
async fn a_worker_killed_while_delivering_loses_nothing(backend: Backend) {
    const N: usize = 30;
    // The in-process worker stays off: the worker processes deliver.
    let app = TestApp::spawn(backend).await;
    let (_admin, key) = fixtures::admin_and_key(&app).await;
    let (receiver, url) = Receiver::start().await;
    receiver.by_default(Answer::Slow(Duration::from_millis(300)));
    register(&app, &key, &url, &["message.queued"]).await;
    queue_sends(&app, &key, N).await;

    let mut first = WorkerProcess::start(&app);
    eventually(Duration::from_secs(30), "the first deliveries", || {
        receiver.got().len() >= 3
    })
    .await;
    first.kill();
    let before_restart = receiver.got().len();
    assert!(before_restart < N, "killed while delivering");
    receiver.by_default(Answer::Status(200));
    let _second = WorkerProcess::start(&app);
    eventually(Duration::from_secs(60), "every delivery", || {
        deliveries_in_db(&app)
            .iter()
            .all(|(_, status, _)| status == "succeeded")
    })
    .await;
    let ids: HashSet<String> = receiver
        .got()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(deliveries_in_db(&app).len(), N);
    assert_eq!(ids.len(), N, "every event reached the receiver");
}

/// Two workers on one database: each attempt is made once (no delivery is posted twice).
async fn two_workers_deliver_each_attempt_once(backend: Backend) {
    const N: usize = 60;
    let app = TestApp::spawn(backend).await;
    let (_admin, key) = fixtures::admin_and_key(&app).await;
    let (receiver, url) = Receiver::start().await;
    receiver.by_default(Answer::Slow(Duration::from_millis(20)));
    register(&app, &key, &url, &["message.queued"]).await;
    queue_sends(&app, &key, N).await;
    let _a = WorkerProcess::start(&app);
    let _b = WorkerProcess::start(&app);
    eventually(Duration::from_secs(60), "every delivery", || {
        let rows = deliveries_in_db(&app);
        rows.len() == N && rows.iter().all(|(_, status, _)| status == "succeeded")
    })
    .await;
    let got = receiver.got();
    let ids: HashSet<String> = got
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), N);
    assert_eq!(got.len(), N, "no delivery was posted twice");
    assert!(deliveries_in_db(&app).iter().all(|(_, _, n)| *n == 1));
}

/// An endpoint whose receiver never answers holds its own 16 calls and nothing more: while
/// they hang and more of its deliveries wait behind them, a message is still sent and its
/// `message.sent` reaches another endpoint.
async fn a_hanging_endpoint_delays_neither_sending_nor_other_endpoints(backend: Backend) {
    /// The calls one endpoint may have open (`CallbackConfig::per_endpoint`).
    const PER_ENDPOINT: usize = 16;
    const WAITING: usize = 24;
    let app = TestApp::spawn_with(backend, |s| {
        s.run_worker = true;
        s.callback_retry_base = Duration::from_millis(50);
        // Longer than the test: the hanging calls stay open throughout (and stopping the
        // app waits for them).
        s.callback_timeout = Duration::from_secs(30);
    })
    .await;
    let (_admin, key) = fixtures::admin_and_key(&app).await;
    let (hanging, hanging_url) = Receiver::start().await;
    hanging.by_default(Answer::Slow(Duration::from_secs(3600)));
    let (fast, fast_url) = Receiver::start().await;
    let (slow_endpoint, _) = register(&app, &key, &hanging_url, &["message.failed"]).await;
    register(&app, &key, &fast_url, &["message.sent"]).await;
    for _ in 0..PER_ENDPOINT + WAITING {
        send_test(&app, &key, &slow_endpoint).await;
    }
    eventually(
        Duration::from_secs(30),
        "the hanging endpoint's calls",
        || hanging.got().len() >= PER_ENDPOINT,
    )
    .await;

    queue_sends(&app, &key, 1).await;
    eventually(
        Duration::from_secs(30),
        "message.sent at the other endpoint",
        || {
            fast.got()
                .iter()
                .any(|r| r.json()["type"] == "message.sent")
        },
    )
    .await;
    assert_eq!(
        hanging.got().len(),
        PER_ENDPOINT,
        "the hanging endpoint never has more than its own calls open"
    );
    let log = log(&app, &key, &slow_endpoint).await;
    assert_eq!(log.len(), PER_ENDPOINT + WAITING);
    assert!(
        log.iter().all(|d| d["status"] == "pending"),
        "none of the hanging endpoint's deliveries settled"
    );
}

// ---------------------------------------------------------------------------------------------
// In the browser: Settings › Webhooks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_an_admin_adds_an_endpoint_and_sees_a_signed_test_event_arrive() {
    let app = spawn_fast(Backend::Sqlite).await;
    app.admin().await;
    let (receiver, url) = Receiver::start().await;
    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    b.goto("/settings/webhooks").await;
    b.wait_for_text("No webhook endpoints yet.").await;
    b.click(".empty a.button").await;
    b.wait_for_text("New webhook endpoint").await;

    // A receiver on loopback is refused at the URL until private networks are allowed.
    b.fill("#endpoint-url", &url).await;
    b.fill("#endpoint-description", "Order system").await;
    b.click("input[name=events][value='message.delivered']")
        .await;
    b.click("form[action='/settings/webhooks'] button[type=submit]")
        .await;
    b.wait_for_text("Herald posts only to public addresses")
        .await;
    assert!(b.text("#error-url").await.contains("public addresses"));
    b.click("input[name=allow_private_network]").await;
    b.click("form[action='/settings/webhooks'] button[type=submit]")
        .await;
    b.wait_for_text("Send test event").await;
    let secret = b.text("#revealed-secret").await;
    assert!(secret.starts_with("whsec_"), "shown once: {secret}");
    // What was typed survived the refusal.
    assert_eq!(b.text("h1").await, url);
    assert!(b.text(".page-header").await.contains("Order system"));
    let page = b.path().await;

    // The test event arrives signed with that secret, and the log says so.
    b.click("form[action$='/test'] button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        b.goto(&page).await;
        b.wait_for_text("Delivery log").await;
        let log = b.text("section[aria-labelledby='log-title']").await;
        if log.contains("Succeeded") {
            assert!(log.contains("webhook.test"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "no successful delivery: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = receiver.got();
    assert_eq!(got.len(), 1, "one delivery");
    assert!(verifies(&got[0], &secret), "signed with the secret shown");
    assert_eq!(got[0].json()["type"], "webhook.test");
    // The secret was shown once: the page no longer has it.
    assert!(
        !b.client
            .source()
            .await
            .expect("page source")
            .contains(&secret)
    );
    b.finish().await;
}
