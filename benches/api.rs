//! The API as its clients meet it: `cargo bench --bench api` (SQLite; set
//! HERALD_BENCH_DATABASE_URL=postgres://… to add PostgreSQL in a fresh database on that server).
//! Options after `--`:
//!   --sends N      API sends in the end-to-end run (default 20,000)
//!   --conns N      concurrent clients (default 32)
//!   --secs S       length of each fixed-time run (default 4)
//!   --statuses N   status webhooks per provider (default 20,000)
//!   --only NAME    `sqlite` or `postgres`
//!   --rate-limit N the bench key's rate limit a minute (default 0: unlimited, never counted);
//!                  a limit above the load (1000000, the most allowed) measures what counting costs
//!
//! The real `herald serve` binary runs as its own process; a fake provider (Twilio's and Meta's
//! APIs) runs in this one, and a lean HTTP/1.1 load generator (`support::load`) drives both.
//! End to end: `--sends` API sends (SMS, free text, each to a new number) from `--conns`
//! clients, until the fake provider has accepted them all; beside it, in the same run, the same
//! load generator sending the same number of Twilio requests straight to the fake provider (the
//! ceiling one HTTP hop allows on this machine). Status webhooks are signed as Twilio and Meta
//! sign them and are counted as applied only when the database shows them. Nothing here asserts
//! a time.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use diesel::connection::SimpleConnection;
use herald::domain::channel::{ChannelKind, Provider};
use herald::storage::channels::Channel;
use herald::storage::{self, Db};
use herald::testkit::fake_provider::{FakeConfig, FakeProvider, FakeProviderHandle};
use support::load::{self, Outcome};
use support::{SECRET, Server, TWILIO_SID, TWILIO_TOKEN, arg_or, free_port};

const META_SECRET: &str = "bench-meta-app-secret-0123456789";
const WA_NUMBER: &str = "106540352242922";

struct Options {
    sends: usize,
    conns: usize,
    span: Duration,
    statuses: usize,
    /// The bench key's requests a minute (0: unlimited).
    rate_limit: u32,
}

fn insert_channel(
    db: &Db,
    kind: ChannelKind,
    provider: Provider,
    name: &str,
    settings: serde_json::Value,
    secrets: serde_json::Value,
) -> Channel {
    support::insert_channel(db, kind, provider, name, settings, secrets, 1_000_000)
}

/// `n` messages already sent on `channel`, with provider ids `{prefix}{i}`, for the status
/// webhooks to report on.
fn seed_sent(db: &Db, channel: &Channel, prefix: &str, first_phone: usize, n: usize) {
    let mut conn = db.get().expect("conn");
    let ts = "2026-01-01 00:00:00";
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        let phone = |i: usize| format!("+1{}", 3_000_000_000u64 + (first_phone + i) as u64);
        let contacts: Vec<String> = (start..end)
            .map(|i| {
                format!(
                    "('{}','{}','{{}}','{ts}','{ts}')",
                    storage::new_public_id(),
                    phone(i)
                )
            })
            .collect();
        conn.batch_execute(&format!(
            "INSERT INTO contacts (public_id, phone, attributes, created_at, updated_at) VALUES {};",
            contacts.join(",")
        ))
        .expect("contacts");
        for i in start..end {
            conn.batch_execute(&format!(
                "INSERT INTO messages (public_id, channel_id, contact_id, to_address, content_kind, body, content, status, provider_message_id, attempts, next_attempt_at, requested_by, created_at, updated_at, sent_at) \
                 SELECT '{}', {}, c.id, c.phone, 'text', 'Seeded', '{{\"type\":\"text\",\"body\":\"Seeded\"}}', 'sent', '{prefix}{i}', 1, '{ts}', 'bench', '{ts}', '{ts}', '{ts}' FROM contacts c WHERE c.phone = '{}';",
                storage::new_public_id(),
                channel.id,
                phone(i)
            ))
            .expect("message");
        }
    }
}

fn count_delivered(db: &Db, channel: &Channel) -> i64 {
    use diesel::prelude::*;
    use herald::storage::schema::messages;
    messages::table
        .filter(messages::channel_id.eq(channel.id))
        .filter(messages::status.eq("delivered"))
        .count()
        .get_result(&mut *db.get().expect("conn"))
        .expect("count")
}

fn statuses(db: &Db) -> Vec<(String, i64)> {
    use diesel::dsl::count_star;
    use diesel::prelude::*;
    use herald::storage::schema::messages;
    messages::table
        .group_by(messages::status)
        .select((messages::status, count_star()))
        .load(&mut *db.get().expect("conn"))
        .expect("statuses")
}

fn any_message_ids(db: &Db, n: i64) -> Vec<String> {
    use diesel::prelude::*;
    use herald::storage::schema::messages;
    messages::table
        .select(messages::public_id)
        .limit(n)
        .load(&mut *db.get().expect("conn"))
        .expect("ids")
}

/// A new number for API send `i` of run `run`.
fn new_number(run: usize, i: usize) -> String {
    format!("+1{}{}{:04}", 201 + run, 200 + i / 10_000, i % 10_000)
}

/// Prints the first answer that is not `expected` (what went wrong, for the report).
fn first_surprise(expected: u16) -> Arc<load::OnAnswer> {
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move |i, status, body| {
        if status != expected && !seen.swap(true, std::sync::atomic::Ordering::Relaxed) {
            println!(
                "    (request {i} was answered {status}: {})",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
    })
}

/// A run of `opts.span` with `opts.conns` connections.
async fn for_a_while(addr: SocketAddr, opts: &Options, make: Arc<load::MakeRequest>) -> Outcome {
    load::drive(addr, opts.conns, usize::MAX, Some(opts.span), make, None).await
}

/// An API request with the key's `Authorization` header (and a JSON body when it has one).
fn with_key(
    method: &str,
    path: &str,
    bearer: &str,
    body: impl Into<bytes::Bytes>,
) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    let body = body.into();
    let json = (!body.is_empty()).then_some("application/json");
    load::request(method, path, &[("authorization", bearer)], json, body)
}

struct Row {
    what: String,
    figure: String,
}

fn row(rows: &mut Vec<Row>, what: impl Into<String>, figure: impl Into<String>) {
    let (what, figure) = (what.into(), figure.into());
    println!("  {what}: {figure}");
    rows.push(Row { what, figure });
}

fn rate_line(o: &Outcome, ok: u16) -> String {
    let mut s = format!(
        "{:.0}/s (p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms)",
        o.with_status(ok) as f64 / o.elapsed.as_secs_f64(),
        o.latency.p50,
        o.latency.p99,
        o.latency.max
    );
    if o.with_status(ok) != o.answered() || o.failed > 0 {
        s.push_str(&format!(" [{}]", o.status_summary()));
    }
    s
}

/// `n` Twilio sends to the fake provider from Herald's own HTTP client, `conns` at a time;
/// requests per second.
async fn bare_client(
    base_url: &str,
    basic: &str,
    conns: usize,
    n: usize,
    form: impl Fn(usize) -> String + Send + Sync + 'static,
) -> f64 {
    let client = herald::channels::http_client(Duration::from_secs(15)).expect("client");
    let url: Arc<str> = format!("{base_url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json").into();
    let (basic, form) = (Arc::<str>::from(basic), Arc::new(form));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (client, url, basic, form, next) = (
                client.clone(),
                url.clone(),
                basic.clone(),
                form.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut ok = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break ok;
                    }
                    let res = client
                        .post(&*url)
                        .header("authorization", &*basic)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form(i))
                        .send()
                        .await;
                    if let Ok(r) = res
                        && r.status().as_u16() == 201
                        && r.bytes().await.is_ok()
                    {
                        ok += 1;
                    }
                }
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("bare client task");
    }
    ok as f64 / started.elapsed().as_secs_f64()
}

/// Waits until the fake provider has accepted `goal` sends in all; the time it took.
async fn until_accepted(
    fake: &FakeProviderHandle,
    goal: u64,
    started: Instant,
) -> Option<Duration> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if fake.sends_accepted() >= goal {
            return Some(started.elapsed());
        }
        if Instant::now() > give_up {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn run_backend(label: &str, database_url: &str, opts: &Options) -> Vec<Row> {
    println!("{label}:");
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::connect(database_url, 4).expect("database");
    storage::run_migrations(&mut db.get().expect("conn")).expect("migrations");
    let settings = herald::config::Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.to_owned()),
        "HERALD_SECRET_KEY" => Some(SECRET.to_owned()),
        _ => None,
    })
    .expect("settings");
    let limit = opts.rate_limit.to_string();
    let api_key =
        herald::commands::create_api_key(&settings, "Bench", "admin", Some(&limit)).expect("key");
    let bearer: Arc<str> = format!("Bearer {api_key}").into();

    let fake = FakeProvider::start(FakeConfig {
        workers: 1,
        keep_last: 0,
        ..FakeConfig::default()
    })
    .await
    .expect("fake provider");
    let fake_addr: SocketAddr = fake
        .base_url
        .trim_start_matches("http://")
        .parse()
        .expect("fake address");
    let sms = insert_channel(
        &db,
        ChannelKind::Sms,
        Provider::Twilio,
        "Bench SMS",
        serde_json::json!({"base_url": fake.base_url, "account_sid": TWILIO_SID, "from": "+14155550100"}),
        serde_json::json!({"auth_token": TWILIO_TOKEN}),
    );
    let wa = insert_channel(
        &db,
        ChannelKind::Whatsapp,
        Provider::WhatsappCloud,
        "Bench WhatsApp",
        serde_json::json!({"base_url": fake.base_url, "api_version": "v23.0", "phone_number_id": WA_NUMBER, "waba_id": "2"}),
        serde_json::json!({"access_token": "t", "app_secret": META_SECRET, "verify_token": "v"}),
    );
    seed_sent(&db, &sms, "SMbench", 0, opts.statuses);
    seed_sent(&db, &wa, "wamid.bench", opts.statuses, opts.statuses);

    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let server = Server::start_on(
        database_url,
        dir.path(),
        &[
            ("HERALD_BIND", &format!("127.0.0.1:{port}")),
            ("HERALD_PUBLIC_URL", &public),
        ],
        &[],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut rows = Vec::new();
    let conns = opts.conns;

    // Reads.
    let o = for_a_while(
        addr,
        opts,
        Arc::new(|_| load::request("GET", "/healthz", &[], None, "")),
    )
    .await;
    row(
        &mut rows,
        format!("GET /healthz, {conns} connections"),
        rate_line(&o, 200),
    );
    let b = bearer.clone();
    let o = for_a_while(
        addr,
        opts,
        Arc::new(move |_| with_key("GET", "/api/v1/channels", &b, "")),
    )
    .await;
    row(
        &mut rows,
        format!("GET /api/v1/channels, {conns} connections"),
        rate_line(&o, 200),
    );
    let ids: Arc<Vec<String>> = Arc::new(any_message_ids(&db, 1000));
    let b = bearer.clone();
    let o = for_a_while(
        addr,
        opts,
        Arc::new(move |i| {
            let path = format!("/api/v1/messages/{}", ids[i % ids.len()]);
            with_key("GET", &path, &b, "")
        }),
    )
    .await;
    row(
        &mut rows,
        format!("GET /api/v1/messages/{{id}}, {conns} connections"),
        rate_line(&o, 200),
    );

    // A refused send: the number is not one.
    let b = bearer.clone();
    let o = for_a_while(
        addr,
        opts,
        Arc::new(move |_| {
            with_key(
                "POST",
                "/api/v1/messages",
                &b,
                r#"{"to":"not a number","channel":"Bench SMS","text":"Hello"}"#,
            )
        }),
    )
    .await;
    row(
        &mut rows,
        format!("POST /api/v1/messages refused (422), {conns} connections"),
        rate_line(&o, 422),
    );

    let send = |run: usize, bearer: Arc<str>| -> Arc<load::MakeRequest> {
        Arc::new(move |i| {
            let body = format!(
                r#"{{"to":"{}","channel":"Bench SMS","text":"Your order {i} has shipped."}}"#,
                new_number(run, i)
            );
            with_key("POST", "/api/v1/messages", &bearer, body)
        })
    };

    // One client, one request at a time.
    let single = 1000;
    let before = fake.sends_accepted();
    let o = load::drive(
        addr,
        1,
        single,
        None,
        send(1, bearer.clone()),
        Some(first_surprise(202)),
    )
    .await;
    row(
        &mut rows,
        "POST /api/v1/messages, one client, one at a time",
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms per request [{}]",
            o.latency.p50,
            o.latency.p99,
            o.mean_ms,
            o.status_summary()
        ),
    );
    until_accepted(&fake, before + single as u64, Instant::now()).await;

    // The ceiling: the same Twilio requests straight to the fake provider, from the HTTP
    // client Herald's dispatcher sends with (`channels::http_client`, `--conns` at once), and
    // for comparison from the lean load generator.
    let n = opts.sends;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    let form = |i: usize| {
        serde_urlencoded::to_string([
            ("To", new_number(2, i)),
            ("From", "+14155550100".to_owned()),
            ("Body", format!("Your order {i} has shipped.")),
        ])
        .expect("form")
    };
    let bare_rate = bare_client(&fake.base_url, &basic, conns, n, form).await;
    row(
        &mut rows,
        format!("bare client (Herald's HTTP client) to the fake provider, {conns} at once"),
        format!("{bare_rate:.0} req/s"),
    );
    let path: Arc<str> = format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json").into();
    let lean = load::drive(
        fake_addr,
        conns,
        n,
        None,
        Arc::new(move |i| {
            load::request(
                "POST",
                &path,
                &[("authorization", &basic)],
                Some("application/x-www-form-urlencoded"),
                form(i),
            )
        }),
        None,
    )
    .await;
    row(
        &mut rows,
        format!("the load generator to the fake provider, {conns} connections"),
        rate_line(&lean, 201),
    );

    // End to end.
    let before = fake.sends_accepted();
    let started = Instant::now();
    let o = load::drive(
        addr,
        conns,
        n,
        None,
        send(3, bearer.clone()),
        Some(first_surprise(202)),
    )
    .await;
    let accepted = o.with_status(202) as u64;
    row(
        &mut rows,
        format!("POST /api/v1/messages (new numbers, free text, SMS), {conns} connections"),
        format!("{} (mean {:.1} ms)", rate_line(&o, 202), o.mean_ms),
    );
    match until_accepted(&fake, before + accepted, started).await {
        Some(t) => {
            let rate = accepted as f64 / t.as_secs_f64();
            row(
                &mut rows,
                format!(
                    "end to end: {accepted} API sends until the fake provider has them all, {conns} clients"
                ),
                format!(
                    "{rate:.0} msg/s = {:.2}x the bare client ({bare_rate:.0} req/s)",
                    rate / bare_rate
                ),
            );
        }
        None => row(
            &mut rows,
            "end to end",
            format!(
                "the fake provider got {} of {accepted} in a minute; messages by status: {:?}",
                fake.sends_accepted() - before,
                statuses(&db)
            ),
        ),
    }

    // Signed status webhooks.
    for (provider, channel) in [("twilio", &sms), ("whatsapp", &wa)] {
        let path: Arc<str> = format!("/webhooks/{provider}/{}", channel.public_id).into();
        let url = format!("{public}{path}");
        let before = count_delivered(&db, channel);
        let total = opts.statuses;
        let started = Instant::now();
        let twilio = provider == "twilio";
        let o = load::drive(
            addr,
            conns,
            total,
            None,
            Arc::new(move |i| {
                if twilio {
                    let params: Vec<(String, String)> = [
                        ("AccountSid", TWILIO_SID.to_owned()),
                        ("ApiVersion", "2010-04-01".to_owned()),
                        ("From", "+14155550100".to_owned()),
                        ("MessageSid", format!("SMbench{i}")),
                        ("MessageStatus", "delivered".to_owned()),
                        ("SmsSid", format!("SMbench{i}")),
                        ("SmsStatus", "delivered".to_owned()),
                        ("To", new_number(9, i)),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                    let signature = herald::channels::twilio::sign(TWILIO_TOKEN, &url, &params);
                    let body = serde_urlencoded::to_string(&params).expect("form");
                    load::request(
                        "POST",
                        &path,
                        &[("x-twilio-signature", &signature)],
                        Some("application/x-www-form-urlencoded"),
                        body,
                    )
                } else {
                    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{
                        "id": "102290129340398", "time": 1767225600,
                        "changes": [{"field": "messages", "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550783881", "phone_number_id": WA_NUMBER},
                            "statuses": [{"id": format!("wamid.bench{i}"), "status": "delivered",
                                "timestamp": "1767225600", "recipient_id": "14155550100"}]}}]}]})
                    .to_string();
                    let signature = herald::channels::whatsapp::sign(META_SECRET, body.as_bytes());
                    load::request(
                        "POST",
                        &path,
                        &[("x-hub-signature-256", &signature)],
                        Some("application/json"),
                        body,
                    )
                }
            }),
            Some(first_surprise(200)),
        )
        .await;
        let answered = started.elapsed();
        let applied = count_delivered(&db, channel) - before;
        row(
            &mut rows,
            format!("signed {provider} status webhooks, {conns} connections"),
            format!(
                "{:.0} applied/s ({applied} of {total} applied; answers p99 {:.2} ms) [{}]",
                applied as f64 / answered.as_secs_f64(),
                o.latency.p99,
                o.status_summary()
            ),
        );
    }

    drop(server);
    fake.stop().await;
    // What Herald complained about, if anything (its log is lost with the directory).
    support::print_log_gist(dir.path());
    rows
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = Options {
        sends: arg_or("--sends", 20_000),
        conns: arg_or("--conns", 32),
        span: Duration::from_secs(arg_or("--secs", 4)),
        statuses: arg_or("--statuses", 20_000),
        rate_limit: arg_or("--rate-limit", 0),
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut results: Vec<(&str, Vec<Row>)> = Vec::new();
    // Each PostgreSQL database is dropped once its run is over.
    for (label, url, _pg) in support::databases(dir.path(), "api.db") {
        results.push((label, run_backend(label, &url, &opts).await));
    }

    println!();
    for (label, rows) in &results {
        println!("| request ({label}) | measured |");
        println!("|---|---|");
        for r in rows {
            println!("| {} | {} |", r.what, r.figure);
        }
        println!();
    }
}
