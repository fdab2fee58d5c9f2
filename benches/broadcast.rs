//! A broadcast end to end: `cargo bench --bench broadcast` (SQLite; set
//! HERALD_BENCH_DATABASE_URL=postgres://… to add PostgreSQL in a fresh database on that server).
//! Options after `--`:
//!   --contacts N   contacts in the database (default 1,000,000; half of them in the list)
//!   --conns N      concurrent page and API readers during the broadcast (default 4)
//!   --every-ms M   one single send through the API every M ms during the broadcast (default 50)
//!   --read-every-ms M  each reader's pause between two requests (default 1,000)
//!   --only NAME    `sqlite` or `postgres`
//!
//! The real `herald serve` runs as its own process (its memory is measured apart); a fake
//! provider (Twilio's API) runs in this one. Before the server starts, N contacts are written
//! with bulk SQL straight into the database (not the import path): attributes `tier`, `city` and
//! `age`, every second contact in the list "Bench half", 1 in 194 opted out of SMS (all in the list), then
//! `ANALYZE` of those tables (not of the empty `messages`, whose foreign-key checks PostgreSQL
//! would then plan for an empty table). Two Twilio SMS channels on the fake provider, each limited to 20,000/s so that the
//! dispatcher is the bound: the broadcast's, and a second one for the single-send baseline.
//!
//! 1. Freeze: a draft through the API (the list, plus `attributes.age >= 20`, SMS text), launched
//!    through the API (`POST …/launch` freezes the audience) and timed; beside it, in the same run
//!    on the same database, a bare `INSERT INTO <scratch> SELECT …` of the same rows (same WHERE),
//!    into a table defined like `broadcast_recipients` (its keys and indexes) and into one with
//!    its columns only.
//! 2. The reach estimate of a draft over every contact with a two-group filter.
//! 3. Sending: the broadcast's rate at the fake provider, first to last send; beside it the
//!    dispatcher's single-send rate: as many ordinary messages queued (held) on the second
//!    channel with `storage::outbox::enqueue`, released with one UPDATE and timed the same way.
//! 4. During the broadcast: a single send through the API on the broadcast's channel every
//!    `--every-ms`, timed from its 202 to the fake provider having it; `--conns` readers (a
//!    signed-in admin's session, and the API key), each pausing `--read-every-ms` between two
//!    requests.
//! 5. The server's RSS, sampled every 50 ms through the launch and the sending.
//!
//! Then the broadcast must complete and every recipient must have exactly one message at the
//! fake provider. Nothing here asserts a time.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use herald::domain::content::MessageContent;
use herald::storage::channels::Channel;
use herald::storage::outbox::{self, NewMessage};
use herald::storage::{self, Db, DbConnection};
use herald::testkit::fake_provider::{FakeConfig, FakeProvider, FakeProviderHandle};
use serde_json::{Value, json};
use support::{Percentiles, RssSampler, Server, arg_or};

const ADMIN_EMAIL: &str = "bench-admin@example.com";
const PASSWORD: &str = "bench password of some length";
const RATE: i32 = 20_000;
const TS: &str = "2026-01-01 00:00:00";

struct Options {
    contacts: usize,
    conns: usize,
    every: Duration,
    read_every: Duration,
}

/// One line of a backend's table: what, the figure, the target and whether it is met.
struct Row {
    what: String,
    figure: String,
    target: String,
}

fn row(rows: &mut Vec<Row>, what: impl Into<String>, figure: impl Into<String>, target: &str) {
    let (what, figure) = (what.into(), figure.into());
    println!(
        "  {what}: {figure}{}",
        if target.is_empty() { "" } else { " " }
    );
    if !target.is_empty() {
        println!("    target: {target}");
    }
    rows.push(Row {
        what,
        figure,
        target: target.to_owned(),
    });
}

fn verdict(met: bool, target: &str) -> String {
    format!("{target}: {}", if met { "met" } else { "**not met**" })
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres")
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut DbConnection, sql: &str) -> i64 {
    let n: N = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(sql).get_result(c),
        DbConnection::Postgres(c) => diesel::sql_query(sql).get_result(c),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n.n
}

fn exec(conn: &mut DbConnection, sql: &str) {
    conn.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The contacts, the list (every second contact), the opt-outs (1 in 194, all in the list) and
/// the attribute names, in bulk SQL; then `ANALYZE` of those tables. Returns the list's id and public id.
fn load_contacts(conn: &mut DbConnection, n: usize, postgres: bool) -> (i64, String) {
    let pad = |expr: &str, width: usize| {
        if postgres {
            format!("lpad(({expr})::text, {width}, '0')")
        } else {
            format!("substr('0000' || ({expr}), -{width})")
        }
    };
    let source = if postgres {
        format!("generate_series(0, {}) AS s(i)", n.max(1) - 1)
    } else {
        "s".to_owned()
    };
    let prefix = if postgres {
        String::new()
    } else {
        format!(
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) ",
            n.max(1) - 1
        )
    };
    // Valid North American numbers, as the other benchmarks make them.
    let phone = format!(
        "'+1' || (201 + i / 8000000 % 700) || {} || {}",
        pad("200 + i / 10000 % 800", 3),
        pad("i % 10000", 4)
    );
    exec(
        conn,
        &format!(
            "{prefix}INSERT INTO contacts (public_id, phone, name, email, attributes, created_at, updated_at) \
             SELECT 'bench' || i, {phone}, 'Person ' || i, 'p' || i || '@example.com', \
             '{{\"tier\":\"' || (CASE i % 3 WHEN 0 THEN 'gold' WHEN 1 THEN 'silver' ELSE 'bronze' END) \
             || '\",\"city\":\"' || (CASE i % 5 WHEN 0 THEN 'Lyon' WHEN 1 THEN 'Paris' WHEN 2 THEN 'Berlin' WHEN 3 THEN 'Kraków' ELSE 'New York' END) \
             || '\",\"age\":\"' || (18 + i % 60) || '\"}}', '{TS}', '{TS}' FROM {source}"
        ),
    );
    exec(
        conn,
        &format!(
            "INSERT INTO lists (public_id, name, created_at, updated_at) VALUES ('benchhalf', 'Bench half', '{TS}', '{TS}');
             INSERT INTO list_members (list_id, contact_id, added_at) \
               SELECT l.id, c.id, '{TS}' FROM contacts c, lists l WHERE l.public_id = 'benchhalf' AND c.id % 2 = 0;
             INSERT INTO contact_consents (contact_id, channel_kind, status, source, detail, changed_at) \
               SELECT id, 'sms', 'opted_out', 'import', '', '{TS}' FROM contacts WHERE id % 194 = 2;
             INSERT INTO attribute_keys (key, created_at) VALUES ('tier', '{TS}'), ('city', '{TS}'), ('age', '{TS}');
             ANALYZE contacts; ANALYZE lists; ANALYZE list_members; ANALYZE contact_consents;"
        ),
    );
    let list_id = count(
        conn,
        "SELECT id AS n FROM lists WHERE public_id = 'benchhalf'",
    );
    (list_id, "benchhalf".to_owned())
}

/// The broadcast's audience as SQL, written out by hand: the rows the launch freezes.
fn audience_where(list_id: i64, postgres: bool) -> String {
    let age = if postgres {
        "(CASE WHEN (c.attributes::jsonb ->> 'age') ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' \
         THEN CAST((c.attributes::jsonb ->> 'age') AS DOUBLE PRECISION) END)"
    } else {
        "(CASE WHEN trim(json_extract(c.attributes, '$.\"age\"')) GLOB '[0-9-]*' \
         THEN CAST(json_extract(c.attributes, '$.\"age\"') AS REAL) END)"
    };
    format!(
        "FROM contacts c WHERE EXISTS (SELECT 1 FROM list_members lm WHERE lm.contact_id = c.id AND lm.list_id IN ({list_id})) \
         AND {age} >= 20"
    )
}

/// A bare `INSERT INTO scratch SELECT` of the audience's rows: into a table defined like
/// `broadcast_recipients` (`like_recipients`) or with its columns only. Dropped afterwards.
/// "Like" means every index the launch fills: the pair, the pending and status indexes, and the
/// recipient table's `(broadcast_id, id)` order (issue 18); the partial indexes that stay empty
/// at launch (replies, local-time zones) are left out.
fn bare_insert(conn: &mut DbConnection, list_id: i64, postgres: bool, like: bool) -> Duration {
    let id = if postgres {
        "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    } else {
        "id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL"
    };
    let (refs_b, refs_c) = if like {
        (
            " REFERENCES broadcasts (id) ON DELETE CASCADE",
            " REFERENCES contacts (id) ON DELETE CASCADE",
        )
    } else {
        ("", "")
    };
    let mut ddl = format!(
        "DROP TABLE IF EXISTS bench_scratch; CREATE TABLE bench_scratch ({id}, broadcast_id BIGINT NOT NULL{refs_b}, \
         contact_id BIGINT NOT NULL{refs_c}, status TEXT NOT NULL, reason TEXT);"
    );
    let broadcast = if like {
        // A broadcast row for the foreign key to name.
        exec(
            conn,
            &format!(
                "INSERT INTO broadcasts (public_id, name, channel_id, state, audience, message, created_by_label, created_at, updated_at) \
                 SELECT 'bench-scratch', 'scratch', id, 'draft', '{{}}', '{{}}', 'bench', '{TS}', '{TS}' FROM channels ORDER BY id LIMIT 1"
            ),
        );
        ddl.push_str(
            "CREATE UNIQUE INDEX bench_scratch_pair ON bench_scratch (broadcast_id, contact_id); \
             CREATE INDEX bench_scratch_pending ON bench_scratch (broadcast_id, id) WHERE status = 'pending'; \
             CREATE INDEX bench_scratch_status ON bench_scratch (broadcast_id, status); \
             CREATE INDEX bench_scratch_order ON bench_scratch (broadcast_id, id);",
        );
        count(
            conn,
            "SELECT id AS n FROM broadcasts WHERE public_id = 'bench-scratch'",
        )
    } else {
        0
    };
    exec(conn, &ddl);
    let sql = format!(
        "INSERT INTO bench_scratch (broadcast_id, contact_id, status, reason) SELECT {broadcast}, c.id, 'pending', NULL {}",
        audience_where(list_id, postgres)
    );
    let started = Instant::now();
    exec(conn, &sql);
    let took = started.elapsed();
    exec(
        conn,
        "DROP TABLE bench_scratch; DELETE FROM broadcasts WHERE public_id = 'bench-scratch';",
    );
    took
}

/// Queues `n` ordinary messages on `channel` with `outbox::enqueue`, 1,000 per transaction, to
/// contacts outside the list (so none of them is a broadcast recipient), held until released.
fn queue_held(db: &Db, channel: &Channel, n: i64) -> Duration {
    #[derive(QueryableByName)]
    struct Who {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        phone: String,
    }
    let mut conn = db.get().expect("conn");
    let sql = format!("SELECT id, phone FROM contacts WHERE id % 2 = 1 ORDER BY id LIMIT {n}");
    let who: Vec<Who> = match &mut *conn {
        DbConnection::Sqlite(c) => diesel::sql_query(&sql).load(c),
        DbConnection::Postgres(c) => diesel::sql_query(&sql).load(c),
    }
    .expect("contacts outside the list");
    assert_eq!(who.len() as i64, n, "not enough contacts outside the list");
    let body = "Your order has shipped.";
    let content = serde_json::to_string(&MessageContent::Text {
        body: body.to_owned(),
    })
    .expect("content");
    let held = storage::broadcasts::held_until();
    let started = Instant::now();
    for chunk in who.chunks(1000) {
        conn.transaction::<_, diesel::result::Error, _>(|c| {
            for w in chunk {
                outbox::enqueue(
                    c,
                    &NewMessage {
                        channel_id: channel.id,
                        contact_id: w.id,
                        to_address: &w.phone,
                        campaign_id: None,
                        template_id: None,
                        content_kind: "text",
                        body,
                        content: &content,
                        idempotency_key: None,
                        requested_by: "bench",
                        resend_of: None,
                        not_before: held,
                        request_hash: None,
                        source: herald::domain::message::MessageSource::Person,
                    },
                )?;
            }
            Ok(())
        })
        .expect("queue");
    }
    started.elapsed()
}

/// When the first send arrived at the fake provider after `base`, when the last did, and how
/// many arrived (and when the count passed `half`): watched every 10 ms until `done(count -
/// base)` holds, or until `settled()` (asked every second) says nothing more of it will come (a
/// message whose connection failed after it was sent is `unknown` and never sent again). Single
/// sends arriving in that last second can move "last" by up to a second.
async fn first_to_last(
    fake: &FakeProviderHandle,
    base: u64,
    half: u64,
    done: impl Fn(u64) -> bool,
    settled: impl Fn() -> bool,
) -> Option<(Instant, Instant, u64, Instant)> {
    let (mut first, mut last, mut got) = (None, Instant::now(), 0);
    let mut halfway = None;
    let mut asked = Instant::now();
    loop {
        let now = Instant::now();
        let count = fake.sends_accepted() - base;
        if count > got {
            got = count;
            last = now;
            first.get_or_insert(now);
            if got >= half {
                halfway.get_or_insert(now);
            }
        }
        if got > 0 && done(got) {
            return first.map(|f| (f, last, got, halfway.unwrap_or(last)));
        }
        if now - asked >= Duration::from_secs(1) {
            asked = now;
            if settled() {
                return first.map(|f| (f, last, got, halfway.unwrap_or(last)));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many of `sql`'s count, on a connection of its own.
fn count_now(db: &Db, sql: &str) -> i64 {
    count(&mut db.get().expect("conn"), sql)
}

fn pid_status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Api {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.bearer);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// A browser-like session signed in as the bench's admin.
async fn signed_in(base: &str) -> reqwest::Client {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let page = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET /login")
        .text()
        .await
        .expect("login page");
    support::post_login(&http, base, &page, None, ADMIN_EMAIL, PASSWORD).await;
    http
}

/// Latencies (ms) by what was asked, and the answers that were not 200.
type Latencies = Arc<Mutex<BTreeMap<String, (Vec<f64>, usize)>>>;

/// `conns` readers, each asking for the next of `targets`, pausing `every` between two, until
/// `stop`.
fn readers(
    conns: usize,
    every: Duration,
    targets: Vec<(String, reqwest::RequestBuilder)>,
    stop: Arc<AtomicBool>,
) -> (Latencies, Vec<tokio::task::JoinHandle<()>>) {
    let seen: Latencies = Arc::default();
    let targets = Arc::new(targets);
    let tasks = (0..conns)
        .map(|k| {
            let (seen, targets, stop) = (seen.clone(), targets.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let (name, req) = &targets[i % targets.len()];
                    i += 1;
                    let Some(req) = req.try_clone() else { break };
                    let started = Instant::now();
                    let ok = match req.send().await {
                        Ok(r) => r.status().as_u16() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    {
                        let mut s = seen.lock().expect("latencies");
                        let e = s.entry(name.clone()).or_default();
                        if ok {
                            e.0.push(ms);
                        } else {
                            e.1 += 1;
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            })
        })
        .collect();
    (seen, tasks)
}

/// What the single sends during the broadcast measured.
#[derive(Default)]
struct Singles {
    /// From the 202 to the fake provider having it (ms).
    to_provider: Vec<f64>,
    /// The API's answer (ms).
    answer: Vec<f64>,
    refused: usize,
    lost: usize,
}

/// A single send through the API every `every` until `stop`; each one timed from its 202 until
/// the fake provider has it (looked up every 2 ms). `seen` counts those the provider has.
fn single_sends(
    api: Arc<Api>,
    fake: Arc<FakeProviderHandle>,
    channel: String,
    every: Duration,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Singles> {
    tokio::spawn(async move {
        let out = Arc::new(Mutex::new(Singles::default()));
        let mut watchers = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let to = format!("+1305{}{:04}", 200 + i / 10_000, i % 10_000);
            i += 1;
            let (api, fake, out, seen, channel) = (
                api.clone(),
                fake.clone(),
                out.clone(),
                seen.clone(),
                channel.clone(),
            );
            watchers.push(tokio::spawn(async move {
                let body = json!({"to": to, "channel": channel, "text": "Your code is 123456."});
                let asked = Instant::now();
                // A failed connection counts as refused (no panic in the watcher).
                let status = api
                    .http
                    .post(format!("{}/api/v1/messages", api.base))
                    .header("authorization", &api.bearer)
                    .json(&body)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                let answered = Instant::now();
                if status != 202 {
                    out.lock().expect("singles").refused += 1;
                    return;
                }
                let give_up = answered + Duration::from_secs(120);
                loop {
                    if fake.accepted_for(&to) > 0 {
                        seen.fetch_add(1, Ordering::Relaxed);
                        let mut o = out.lock().expect("singles");
                        o.to_provider
                            .push(answered.elapsed().as_secs_f64() * 1000.0);
                        o.answer.push((answered - asked).as_secs_f64() * 1000.0);
                        return;
                    }
                    if Instant::now() > give_up {
                        out.lock().expect("singles").lost += 1;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        for w in watchers {
            let _ = w.await;
        }
        Arc::try_unwrap(out)
            .ok()
            .and_then(|m| m.into_inner().ok())
            .unwrap_or_default()
    })
}

fn pct(p: &Percentiles) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        p.p50, p.p99, p.max, p.n
    )
}

async fn run_backend(label: &str, database_url: &str, opts: &Options) -> Vec<Row> {
    println!("{label}:");
    let postgres = is_postgres(database_url);
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::connect(database_url, 2).expect("database");
    let mut conn = db.get().expect("conn");
    storage::run_migrations(&mut conn).expect("migrations");

    let n = opts.contacts;
    let started = Instant::now();
    let (list_id, list_public_id) = load_contacts(&mut conn, n, postgres);
    row(
        &mut rows,
        "contacts loaded (bulk SQL before the server starts, then ANALYZE of the tables written)",
        format!("{n} in {}", secs(started.elapsed())),
        "",
    );
    let frozen_expected = count(
        &mut conn,
        &format!("SELECT count(*) AS n {}", audience_where(list_id, postgres)),
    );
    let pending_expected = count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n {} AND NOT EXISTS (SELECT 1 FROM contact_consents cc WHERE cc.contact_id = c.id \
             AND cc.channel_kind = 'sms' AND cc.status = 'opted_out')",
            audience_where(list_id, postgres)
        ),
    );

    let fake = Arc::new(
        FakeProvider::start(FakeConfig {
            workers: 1,
            keep_last: 1,
            count_recipients: true,
            ..FakeConfig::default()
        })
        .await
        .expect("fake provider"),
    );
    let twilio = |name: &str| {
        support::insert_channel(
            &db,
            herald::domain::channel::ChannelKind::Sms,
            herald::domain::channel::Provider::Twilio,
            name,
            json!({"base_url": fake.base_url, "account_sid": support::TWILIO_SID, "from": "+14155550100"}),
            json!({"auth_token": support::TWILIO_TOKEN}),
            RATE,
        )
    };
    let sms = twilio("Bench SMS");
    let baseline = twilio("Bench SMS baseline");
    let took = queue_held(&db, &baseline, pending_expected);
    row(
        &mut rows,
        "ordinary messages queued for the single-send baseline (outbox::enqueue, 1,000 a transaction, held)",
        format!(
            "{pending_expected} in {} ({:.0}/s)",
            secs(took),
            pending_expected as f64 / took.as_secs_f64()
        ),
        "",
    );

    support::create_user(database_url, ADMIN_EMAIL, PASSWORD, "admin");
    let settings = herald::config::Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.to_owned()),
        "HERALD_SECRET_KEY" => Some(support::SECRET.to_owned()),
        _ => None,
    })
    .expect("settings");
    let key = herald::commands::create_api_key(&settings, "Bench", "admin", None).expect("key");
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server::start_on(
        database_url,
        dir.path(),
        &[
            ("HERALD_BIND", &format!("127.0.0.1:{port}")),
            ("HERALD_PUBLIC_URL", &base),
        ],
        &[],
    );
    let pid = server.pid();
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(900))
            .build()
            .expect("client"),
        base: base.clone(),
        bearer: format!("Bearer {key}"),
    });
    let session = signed_in(&base).await;

    // 2. The reach estimate over every contact, two groups.
    let estimate_draft = json!({
        "name": "Estimate",
        "channel": sms.name,
        "audience": {"filter": {"match": "all", "conditions": [
            {"match": "any", "conditions": [
                {"field": "attributes.tier", "op": "eq", "value": "gold"},
                {"field": "attributes.tier", "op": "eq", "value": "silver"}
            ]},
            {"match": "any", "conditions": [
                {"field": "attributes.city", "op": "eq", "value": "Lyon"},
                {"field": "attributes.age", "op": "gte", "value": "40"}
            ]}
        ]}},
        "message": {"text": "Our winter sale starts today."},
    });
    let (status, draft) = api.post("/api/v1/broadcasts", &estimate_draft).await;
    assert_eq!(status, 201, "{draft}");
    let estimate_id = draft["id"].as_str().expect("id").to_owned();
    let mut times = Vec::new();
    let mut answer = Value::Null;
    for _ in 0..3 {
        let started = Instant::now();
        let (status, e) = api
            .get(&format!("/api/v1/broadcasts/{estimate_id}/estimate"))
            .await;
        times.push(started.elapsed());
        assert_eq!(status, 200, "{e}");
        answer = e;
    }
    let worst = times.iter().max().copied().unwrap_or_default();
    // The floor: the same filter counted by the database alone, no exclusions.
    let attr = |key: &str| {
        if postgres {
            format!("(c.attributes::jsonb ->> '{key}')")
        } else {
            format!("json_extract(c.attributes, '$.\"{key}\"')")
        }
    };
    let age = if postgres {
        format!(
            "(CASE WHEN {a} ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN CAST({a} AS DOUBLE PRECISION) END)",
            a = attr("age")
        )
    } else {
        format!(
            "(CASE WHEN trim({a}) GLOB '[0-9-]*' THEN CAST({a} AS REAL) END)",
            a = attr("age")
        )
    };
    let bare_filter = format!(
        "SELECT count(*) AS n FROM contacts c WHERE ((lower({t}) = 'gold' OR lower({t}) = 'silver') \
         AND (lower({c}) = 'lyon' OR {age} >= 40))",
        t = attr("tier"),
        c = attr("city")
    );
    let started = Instant::now();
    let bare_matched = count(&mut conn, &bare_filter);
    let bare_estimate = started.elapsed();
    row(
        &mut rows,
        format!("2. reach estimate over {n} contacts, filter of two groups (3 calls)"),
        format!(
            "{} ({}; matched {}, reach {}, excluded {})",
            times
                .iter()
                .map(|t| secs(*t))
                .collect::<Vec<_>>()
                .join(", "),
            "first to last",
            answer["matched"],
            answer["reach"],
            answer["excluded"]
        ),
        &verdict(worst <= Duration::from_secs(1), "<= 1 s"),
    );
    row(
        &mut rows,
        "   the same filter counted by a bare SELECT count(*) (no exclusions, no API)",
        format!("{} ({bare_matched} matched)", secs(bare_estimate)),
        "",
    );

    // 1. The bare inserts, then the launch.
    let bare_cols = bare_insert(&mut conn, list_id, postgres, false);
    let bare_like = bare_insert(&mut conn, list_id, postgres, true);
    let draft = json!({
        "name": "Winter sale",
        "channel": sms.name,
        "audience": {"lists": [list_public_id], "filter": {"match": "all", "conditions": [
            {"field": "attributes.age", "op": "gte", "value": "20"}
        ]}},
        "message": {"text": "Our winter sale starts today."},
    });
    let (status, b) = api.post("/api/v1/broadcasts", &draft).await;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();

    // 3a. The single-send baseline on the second channel: release the held messages, time the
    // drain.
    let rss_drain = RssSampler::start(pid, Duration::from_millis(50));
    let before = fake.sends_accepted();
    let released = diesel::update(
        storage::schema::messages::table
            .filter(storage::schema::messages::channel_id.eq(baseline.id))
            .filter(storage::schema::messages::status.eq("queued")),
    )
    .set(storage::schema::messages::next_attempt_at.eq(storage::now()))
    .execute(&mut *conn)
    .expect("release");
    assert_eq!(released as i64, pending_expected);
    let goal = released as u64;
    let unsent = format!(
        "SELECT count(*) AS n FROM messages WHERE channel_id = {} AND status IN ('queued', 'sending')",
        baseline.id
    );
    let drain = first_to_last(
        &fake,
        before,
        goal / 2,
        |got| got >= goal,
        || count_now(&db, &unsent) == 0,
    )
    .await
    .expect("the baseline drained");
    let drain_peak = rss_drain.finish().await;
    let drain_span = drain.1 - drain.0;
    let single_rate = drain.2 as f64 / drain_span.as_secs_f64();
    let drain_unknown = count_now(
        &db,
        &format!(
            "SELECT count(*) AS n FROM messages WHERE channel_id = {} AND status = 'unknown'",
            baseline.id
        ),
    );
    // Let what is in flight be recorded before the broadcast starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. Launch (it freezes the audience), with memory sampled from here to the end.
    let rss = RssSampler::start(pid, Duration::from_millis(50));
    let rss_before = pid_status_mib(pid, "VmRSS:");
    let before = fake.sends_accepted();
    let stop = Arc::new(AtomicBool::new(false));
    let singles_seen = Arc::new(AtomicU64::new(0));
    let launched_at = Instant::now();
    let (status, launched) = api
        .post(&format!("/api/v1/broadcasts/{id}/launch"), &json!({}))
        .await;
    let launch = launched_at.elapsed();
    assert_eq!(status, 200, "{launched}");
    let rss_after_launch = pid_status_mib(pid, "VmHWM:");
    let frozen = launched["counts"]["recipients"].as_i64().unwrap_or(-1);
    assert_eq!(frozen, frozen_expected, "{launched}");
    // 4. During the broadcast: single sends and readers.
    let singles = single_sends(
        api.clone(),
        fake.clone(),
        sms.name.clone(),
        opts.every,
        stop.clone(),
        singles_seen.clone(),
    );
    let auth = api.bearer.clone();
    let mut targets = vec![
        (
            "GET /api/v1/broadcasts/{id}".to_owned(),
            api.http
                .get(format!("{base}/api/v1/broadcasts/{id}"))
                .header("authorization", &auth),
        ),
        (
            "GET /contacts (page, signed in)".to_owned(),
            session.get(format!("{base}/contacts")),
        ),
    ];
    let pages = session
        .get(format!("{base}/broadcasts"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    if pages == 200 {
        targets.push((
            "GET /broadcasts (page)".to_owned(),
            session.get(format!("{base}/broadcasts")),
        ));
        targets.push((
            "GET /broadcasts/{id} (page)".to_owned(),
            session.get(format!("{base}/broadcasts/{id}")),
        ));
    } else {
        println!(
            "    (GET /broadcasts answers {pages}: the broadcast pages are not in this build; measured the API and /contacts)"
        );
    }
    let (latencies, reader_tasks) = readers(opts.conns, opts.read_every, targets, stop.clone());

    let goal = pending_expected as u64;
    let seen = singles_seen.clone();
    let finished = format!(
        "SELECT count(*) AS n FROM broadcasts WHERE public_id = '{id}' AND state = 'completed'"
    );
    let sending = first_to_last(
        &fake,
        before,
        goal / 2,
        move |got| got.saturating_sub(seen.load(Ordering::Relaxed)) >= goal,
        || count_now(&db, &finished) == 1,
    )
    .await;
    let rss_sending_hwm = pid_status_mib(pid, "VmHWM:");
    stop.store(true, Ordering::Relaxed);
    for t in reader_tasks {
        let _ = t.await;
    }
    let singles = singles.await.unwrap_or_default();
    let last_send = Instant::now();
    // The broadcast completes once every message has its outcome.
    let completed = loop {
        let (_, b) = api.get(&format!("/api/v1/broadcasts/{id}")).await;
        if b["state"] == "completed" || last_send.elapsed() > Duration::from_secs(600) {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let peak = rss.finish().await;
    // The bare inserts once more, after the broadcast (the order of big writes matters to
    // SQLite's WAL): each ratio is taken against the faster of its two runs.
    let (bare_cols_before, bare_like_before) = (bare_cols, bare_like);
    let bare_cols_after = bare_insert(&mut conn, list_id, postgres, false);
    let bare_like_after = bare_insert(&mut conn, list_id, postgres, true);
    let bare_cols = bare_cols_before.min(bare_cols_after);
    let bare_like = bare_like_before.min(bare_like_after);
    let ratio_like = launch.as_secs_f64() / bare_like.as_secs_f64();
    let ratio_cols = launch.as_secs_f64() / bare_cols.as_secs_f64();
    row(
        &mut rows,
        format!(
            "1. launch through the API: freezes {frozen} recipients ({pending_expected} pending, the rest skipped as opted out)"
        ),
        secs(launch),
        "",
    );
    row(
        &mut rows,
        "   bare INSERT ... SELECT of the same rows, into a table like broadcast_recipients (its keys, foreign keys and indexes)",
        format!(
            "{} (before the broadcast {}, after it {}) -> launch / bare = {ratio_like:.2}x",
            secs(bare_like),
            secs(bare_like_before),
            secs(bare_like_after)
        ),
        &verdict(ratio_like <= 1.5, "launch <= 1.5x the bare insert"),
    );
    row(
        &mut rows,
        "   bare INSERT ... SELECT of the same rows, into a table of its columns only (no index)",
        format!(
            "{} (before the broadcast {}, after it {}) -> launch / bare = {ratio_cols:.2}x",
            secs(bare_cols),
            secs(bare_cols_before),
            secs(bare_cols_after)
        ),
        "",
    );

    match sending {
        Some((first, last, got, half)) => {
            let span = last - first;
            let halves = (
                (goal / 2) as f64 / (half - first).as_secs_f64(),
                (goal - goal / 2) as f64 / (last - half).as_secs_f64(),
            );
            let got = got.saturating_sub(singles_seen.load(Ordering::Relaxed));
            let rate = got as f64 / span.as_secs_f64();
            let share = rate / single_rate;
            row(
                &mut rows,
                format!("3. broadcast of {goal}: {got} at the fake provider, first to last send"),
                format!(
                    "{} = {rate:.0} msg/s = {share:.2}x the single-send rate (first half {:.0}/s, second half {:.0}/s)",
                    secs(span),
                    halves.0,
                    halves.1
                ),
                &verdict(share >= 0.9, ">= 0.9x"),
            );
        }
        None => row(
            &mut rows,
            "3. broadcast",
            format!("not all sent within an hour: {completed}"),
            ">= 0.9x: **not met**",
        ),
    }
    row(
        &mut rows,
        format!(
            "   single-send rate: {goal} ordinary messages drained by the dispatcher (second channel, same fake provider): {} at the fake provider, first to last",
            drain.2
        ),
        format!(
            "{} = {single_rate:.0} msg/s ({drain_unknown} unknown: the connection failed after the request was sent; server RSS peak {drain_peak:.1} MiB)",
            secs(drain_span)
        ),
        "",
    );

    let to_provider = Percentiles::of(singles.to_provider.clone(), singles.lost);
    let mut line = format!(
        "{} [API answer p50 {:.1} ms, p99 {:.1} ms]",
        pct(&to_provider),
        Percentiles::of(singles.answer.clone(), 0).p50,
        Percentiles::of(singles.answer.clone(), 0).p99
    );
    if singles.refused + singles.lost > 0 {
        line.push_str(&format!(
            " ({} refused or no answer, {} never reached the provider)",
            singles.refused, singles.lost
        ));
    }
    row(
        &mut rows,
        format!(
            "4. single sends through the API on the same channel, one every {} ms: 202 -> at the fake provider",
            opts.every.as_millis()
        ),
        line,
        &verdict(
            to_provider.p99 <= 2000.0 && singles.lost == 0 && singles.refused == 0,
            "p99 <= 2 s",
        ),
    );
    let latencies = latencies.lock().expect("latencies").clone();
    for (what, (ms, failed)) in latencies {
        let p = Percentiles::of(ms, failed);
        let mut figure = pct(&p);
        if failed > 0 {
            figure.push_str(&format!(" ({failed} not 200)"));
        }
        row(
            &mut rows,
            format!(
                "   {what}, {} readers each pausing {} ms between requests",
                opts.conns,
                opts.read_every.as_millis()
            ),
            figure,
            &verdict(p.p99 <= 200.0 && failed == 0, "p99 <= 200 ms"),
        );
    }
    row(
        &mut rows,
        "5. server RSS: before the launch / peak (VmHWM) after the launch / sampled peak through launch and sending / VmHWM at the end",
        format!("{rss_before:.1} / {rss_after_launch:.1} / {peak:.1} / {rss_sending_hwm:.1} MiB"),
        &verdict(peak.max(rss_sending_hwm) < 150.0, "< 150 MB"),
    );

    // Every recipient exactly once.
    let stats = fake.stats();
    #[derive(QueryableByName)]
    struct Phone {
        #[diesel(sql_type = Text)]
        phone: String,
    }
    let sql = format!(
        "SELECT c.phone FROM broadcast_recipients r JOIN contacts c ON c.id = r.contact_id \
         JOIN broadcasts b ON b.id = r.broadcast_id WHERE b.public_id = '{id}' AND r.status = 'queued'"
    );
    let phones: Vec<Phone> = match &mut *conn {
        DbConnection::Sqlite(c) => diesel::sql_query(&sql).load(c),
        DbConnection::Postgres(c) => diesel::sql_query(&sql).load(c),
    }
    .expect("recipients");
    let (mut once, mut missing, mut twice) = (0, 0, 0);
    for p in &phones {
        match stats
            .accepted_per_recipient
            .get(&p.phone)
            .copied()
            .unwrap_or(0)
        {
            0 => missing += 1,
            1 => once += 1,
            _ => twice += 1,
        }
    }
    let counts = &completed["counts"];
    row(
        &mut rows,
        "completion: state / recipients with exactly one message at the fake provider / missing / more than one / duplicates to anyone",
        format!(
            "{} / {once} of {pending_expected} / {missing} / {twice} / {} (counts: sent {}, failed {}, skipped {}, unknown {}, pending {})",
            completed["state"].as_str().unwrap_or("?"),
            stats.duplicates().len(),
            counts["sent"],
            counts["failed"],
            counts["skipped"],
            counts["unknown"],
            counts["pending"]
        ),
        &verdict(
            completed["state"] == "completed"
                && once as i64 == pending_expected
                && missing + twice == 0
                && stats.duplicates().is_empty(),
            "completed, each exactly once",
        ),
    );

    drop(server);
    support::print_log_gist(dir.path());
    rows
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = Options {
        contacts: arg_or("--contacts", 1_000_000),
        conns: arg_or("--conns", 4),
        every: Duration::from_millis(arg_or("--every-ms", 50)),
        read_every: Duration::from_millis(arg_or("--read-every-ms", 1000)),
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut results: Vec<(&str, Vec<Row>)> = Vec::new();
    // Each PostgreSQL database is dropped once its run is over.
    for (label, url, _pg) in support::databases(dir.path(), "broadcast.db") {
        results.push((label, run_backend(label, &url, &opts).await));
    }

    println!();
    for (label, rows) in &results {
        println!(
            "| {label}, {} contacts | measured | target |",
            opts.contacts
        );
        println!("|---|---|---|");
        for r in rows {
            println!("| {} | {} | {} |", r.what.trim(), r.figure, r.target);
        }
        println!();
    }
}
