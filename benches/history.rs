//! The send history and the overview with a large history: `cargo bench --bench history`
//! (SQLite). Options after `--`:
//!   --rows N     messages stored (default 1,000,000)
//!   --pg URL     PostgreSQL instead: a fresh database on the server URL names, dropped after
//!   --conns N    concurrent connections of each load run (default 32)
//!   --secs S     length of each load run (default 10)
//!   --seed-only  seed, print the database's URL and keep it (to look at plans by hand)
//!   --db URL     measure a database seeded before (`--seed-only`) instead of seeding one
//!   --only LIST  measure only these, comma-separated: healthz, first, filtered, overview, export
//!
//! Before the server starts, the messages are written through the storage layer
//! (`storage::outbox::enqueue_many`, as a broadcast's batches are, with their first timeline
//! event), 5,000 per transaction, each batch then moved to its final state (created over the
//! last 90 days in id order, a status, an error code for the failed, the timestamps of the
//! status) by one UPDATE over its id range. 20,000 contacts, the three sandbox channels, a
//! template per channel, broadcasts of 20,000 recipients (seven batches in ten are a
//! broadcast's; the others are single sends, half from an API key and half from people).
//! PostgreSQL gets `VACUUM ANALYZE` afterwards, as autovacuum would; SQLite keeps no
//! statistics.
//!
//! Then the real `herald serve` (its worker off) and `wrk` (/usr/bin/wrk, two threads, the
//! admin's session cookie as a header): `/healthz` first, then the history's first page, a
//! filtered page (channel + status + a 30-day range) and the overview `/`, each for `--secs`
//! with `--conns` connections, p50/p99 from wrk's latency distribution; then the CSV export
//! of every row on one connection: rows per second, and the server's RSS before and at its
//! peak (sampled every 50 ms). The plans of the two pages are printed. Nothing here asserts
//! a time.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use herald::domain::message::MessageSource;
use herald::domain::phone::E164;
use herald::storage::contacts::{self, ContactPatch};
use herald::storage::history::{self, HistoryFilter};
use herald::storage::outbox::{self, NewMessage};
use herald::storage::schema::{broadcasts, templates};
use herald::storage::{self, Db, DbConnection};
use support::{PgDatabase, RssSampler, Server, arg, arg_or};

const ADMIN_EMAIL: &str = "bench-admin@example.com";
const PASSWORD: &str = "bench password 123";
const CONTACTS: usize = 20_000;
const BATCH: usize = 5_000;
const DAYS: i64 = 90;

struct Seeded {
    /// The channels' ids and public ids (WhatsApp, SMS, Viber).
    channels: Vec<(i64, String)>,
}

fn contact_phone(i: usize) -> String {
    format!("+1{}", 2_025_550_000u64 + i as u64)
}

/// What the messages refer to.
struct Fixtures {
    /// `(id, public id)` of each channel.
    channels: Vec<(i64, String)>,
    /// `(id, phone)` of each contact.
    people: Vec<(i64, String)>,
    templates: Vec<i64>,
    broadcasts: Vec<i64>,
}

/// Contacts, channels, templates and the broadcasts' rows.
fn seed_fixtures(conn: &mut DbConnection, broadcasts_needed: usize) -> Fixtures {
    storage::channels::seed_sandbox(conn).expect("sandbox channels");
    let channels: Vec<(i64, String)> = storage::channels::list(conn)
        .expect("channels")
        .into_iter()
        .map(|c| (c.id, c.public_id))
        .collect();
    let mut people = Vec::with_capacity(CONTACTS);
    for chunk in (0..CONTACTS).collect::<Vec<_>>().chunks(5_000) {
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            for &i in chunk {
                let phone = contact_phone(i);
                let (c, _) = contacts::upsert(
                    conn,
                    &E164::from_trusted(phone.clone()),
                    &ContactPatch {
                        name: Some(format!("Customer {i}")),
                        ..ContactPatch::default()
                    },
                )?;
                people.push((c.id, phone));
            }
            Ok(())
        })
        .expect("contacts");
    }
    let now = Utc::now().naive_utc();
    let template_ids: Vec<i64> = channels
        .iter()
        .map(|(channel, _)| {
            diesel::insert_into(templates::table)
                .values((
                    templates::public_id.eq(storage::new_public_id()),
                    templates::channel_id.eq(channel),
                    templates::name.eq("order_shipped"),
                    templates::language.eq("en_US"),
                    templates::category.eq("utility"),
                    templates::created_at.eq(now),
                    templates::updated_at.eq(now),
                ))
                .returning(templates::id)
                .get_result(conn)
                .expect("template")
        })
        .collect();
    let broadcast_ids: Vec<i64> = (0..broadcasts_needed)
        .map(|b| {
            diesel::insert_into(broadcasts::table)
                .values((
                    broadcasts::public_id.eq(storage::new_public_id()),
                    broadcasts::name.eq(format!("Campaign {b}")),
                    broadcasts::channel_id.eq(channels[b % channels.len()].0),
                    broadcasts::state.eq("completed"),
                    broadcasts::audience.eq("{}"),
                    broadcasts::message.eq("{}"),
                    broadcasts::time_zone.eq("UTC"),
                    broadcasts::created_by_label.eq("Bench"),
                    broadcasts::recipients.eq(CONTACTS as i64),
                    broadcasts::created_at.eq(now),
                    broadcasts::updated_at.eq(now),
                ))
                .returning(broadcasts::id)
                .get_result(conn)
                .expect("broadcast")
        })
        .collect();
    Fixtures {
        channels,
        people,
        templates: template_ids,
        broadcasts: broadcast_ids,
    }
}

/// The UPDATE that moves batch rows `first..=last` (ids) to their final state: created at
/// `oldest` + `step` seconds per id, a status by the id, an error code for the failed.
fn finish_batch_sql(
    postgres: bool,
    first: i64,
    last: i64,
    oldest: NaiveDateTime,
    step: f64,
) -> String {
    let oldest = oldest.format("%Y-%m-%d %H:%M:%S");
    let created = if postgres {
        format!("TIMESTAMP '{oldest}' + (id * {step}) * INTERVAL '1 second'")
    } else {
        format!("strftime('%Y-%m-%d %H:%M:%S', julianday('{oldest}') + (id * {step}) / 86400.0)")
    };
    // 45% delivered, 25% read, 12% sent, 8% failed, 2% unknown, 4% skipped, 4% cancelled.
    let status = "CASE WHEN id % 100 < 45 THEN 'delivered' WHEN id % 100 < 70 THEN 'read' \
                  WHEN id % 100 < 82 THEN 'sent' WHEN id % 100 < 90 THEN 'failed' \
                  WHEN id % 100 < 92 THEN 'unknown' WHEN id % 100 < 96 THEN 'skipped' ELSE 'cancelled' END";
    let at_if = |cond: &str| format!("CASE WHEN {cond} THEN {created} ELSE NULL END");
    format!(
        "UPDATE messages SET created_at = {created}, updated_at = {created}, status = {status}, \
         error_code = CASE WHEN id % 100 >= 82 AND id % 100 < 90 THEN \
           (CASE (id / 100) % 5 WHEN 0 THEN '131026' WHEN 1 THEN '131047' WHEN 2 THEN '30007' WHEN 3 THEN '21610' ELSE 'EC_UNDELIVERABLE' END) \
           ELSE NULL END, \
         error_message = CASE WHEN id % 100 >= 82 AND id % 100 < 90 THEN 'The provider refused it' ELSE NULL END, \
         sent_at = {}, delivered_at = {}, read_at = {}, failed_at = {} \
         WHERE id BETWEEN {first} AND {last}",
        at_if("id % 100 < 90"),
        at_if("id % 100 < 70"),
        at_if("id % 100 >= 45 AND id % 100 < 70"),
        at_if("id % 100 >= 82 AND id % 100 < 90"),
    )
}

fn seed(db: &Db, rows: usize, postgres: bool) -> Seeded {
    let mut conn = db.get().expect("conn");
    let broadcast_batches = (rows / BATCH) * 7 / 10 + 1;
    let per_broadcast = CONTACTS / BATCH;
    let Fixtures {
        channels,
        people,
        templates: template_ids,
        broadcasts: broadcast_ids,
    } = seed_fixtures(&mut conn, broadcast_batches.div_ceil(per_broadcast) + 1);
    let oldest = Utc::now().naive_utc() - chrono::Duration::days(DAYS);
    // Ids start at 1 on a fresh database: seconds per id so that the last is about now.
    let step = (DAYS * 86_400) as f64 / rows.max(1) as f64;
    let content = r#"{"type":"text","body":"Seeded"}"#;
    let (mut done, mut batch_no, mut broadcast_batch) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    while done < rows {
        let n = BATCH.min(rows - done);
        let is_broadcast = batch_no % 10 < 7;
        let (campaign, first_contact, channel_at) = if is_broadcast {
            let b = broadcast_batch / per_broadcast;
            let first = (broadcast_batch % per_broadcast) * BATCH;
            broadcast_batch += 1;
            (Some(broadcast_ids[b]), first, b % channels.len())
        } else {
            (
                None,
                (batch_no * 7919) % CONTACTS,
                batch_no % channels.len(),
            )
        };
        let bodies: Vec<String> = (0..n)
            .map(|k| {
                format!(
                    "Hello Customer {}, your order #{} has shipped.",
                    k,
                    done + k
                )
            })
            .collect();
        let batch: Vec<NewMessage<'_>> = (0..n)
            .map(|k| {
                let (contact_id, phone) = &people[(first_contact + k) % CONTACTS];
                let channel = if is_broadcast {
                    channel_at
                } else {
                    (done + k) % channels.len()
                };
                let source = match (is_broadcast, k % 2) {
                    (true, _) => MessageSource::Broadcast,
                    (false, 0) => MessageSource::Api,
                    (false, _) => MessageSource::Person,
                };
                let template = (channel == 0).then_some(template_ids[0]);
                NewMessage {
                    channel_id: channels[channel].0,
                    contact_id: *contact_id,
                    to_address: phone,
                    campaign_id: campaign,
                    template_id: template,
                    content_kind: if template.is_some() {
                        "template"
                    } else {
                        "text"
                    },
                    body: &bodies[k],
                    content,
                    idempotency_key: None,
                    requested_by: match source {
                        MessageSource::Api => "API key \"Shop\"",
                        MessageSource::Person => "Bench Person <bench@example.com>",
                        MessageSource::Broadcast => "Broadcast",
                        MessageSource::Trigger => "Trigger \"Orders\"",
                        MessageSource::Reminder => "Reminder \"Visits\"",
                    },
                    resend_of: None,
                    not_before: oldest,
                    request_hash: None,
                    source,
                }
            })
            .collect();
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            use herald::storage::schema::messages;
            let last_id = |conn: &mut DbConnection| -> QueryResult<i64> {
                Ok(messages::table
                    .select(diesel::dsl::max(messages::id))
                    .first::<Option<i64>>(conn)?
                    .unwrap_or(0))
            };
            // One writer: the batch's ids follow the last one.
            let before = last_id(conn)?;
            outbox::enqueue_many(conn, &batch)?;
            let last = last_id(conn)?;
            conn.batch_execute(&finish_batch_sql(postgres, before + 1, last, oldest, step))
        })
        .expect("a batch of messages");
        done += n;
        batch_no += 1;
        if batch_no % 40 == 0 {
            println!(
                "    {done} messages ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if postgres {
        // What autovacuum does after a bulk change: each row was queued, then moved to its
        // final state, and the dead versions would otherwise sit at the top of the history's
        // index (their queued-at time is the newest) until it runs.
        conn.batch_execute("VACUUM ANALYZE").expect("vacuum");
    }
    Seeded { channels }
}

/// A signed-in admin's session cookie (`name=value`), for wrk's header.
async fn session_cookie(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie_of = |res: &reqwest::Response| -> String {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|c| c.starts_with("herald_session="))
            .expect("a session cookie")
            .to_owned()
    };
    let res = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET /login");
    let visitor = cookie_of(&res);
    let page = res.text().await.expect("login page");
    let res = support::post_login(&http, base, &page, Some(&visitor), ADMIN_EMAIL, PASSWORD).await;
    cookie_of(&res)
}

/// What wrk measured.
struct Wrk {
    rate: f64,
    p50: f64,
    p99: f64,
    errors: String,
}

/// `12.3ms`, `850.00us`, `1.02s` in milliseconds.
fn wrk_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * scale
}

fn wrk(url: &str, cookie: &str, conns: usize, secs: u64) -> Wrk {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "--timeout",
            "10s",
        ])
        .args(["-H", &format!("Cookie: {cookie}")])
        .arg(url)
        .output()
        .expect("run wrk (/usr/bin/wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    };
    let errors: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Non-2xx") || l.starts_with("Socket errors"))
        .map(str::to_owned)
        .collect();
    Wrk {
        rate: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50: field("50%").map_or(f64::NAN, |v| wrk_ms(&v)),
        p99: field("99%").map_or(f64::NAN, |v| wrk_ms(&v)),
        errors: errors.join("; "),
    }
}

/// Streams the CSV export of every message; `(rows, seconds, RSS before, RSS peak)`.
async fn export_all(server: &Server, cookie: &str) -> (usize, f64, f64, f64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("client");
    let before = server.rss_mib();
    let sampler = RssSampler::start(server.pid(), Duration::from_millis(50));
    let started = Instant::now();
    let res = http
        .get(format!("{}/history/export.csv", server.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET /history/export.csv");
    assert_eq!(res.status().as_u16(), 200, "the export");
    let mut res = res;
    let mut lines = 0usize;
    while let Some(chunk) = res.chunk().await.expect("a chunk of the export") {
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = sampler.finish().await;
    (lines.saturating_sub(1), elapsed, before, peak)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: usize = arg_or("--rows", 1_000_000);
    let conns: usize = arg_or("--conns", 32);
    let secs: u64 = arg_or("--secs", 10);
    let only: Option<Vec<String>> =
        arg("--only").map(|l| l.split(',').map(|s| s.trim().to_owned()).collect());
    let wanted = |key: &str| only.as_ref().is_none_or(|o| o.iter().any(|k| k == key));
    let dir = tempfile::tempdir().expect("dir");
    let existing = arg("--db");
    let pg = match &existing {
        Some(_) => None,
        None => arg("--pg").map(|url| PgDatabase::create(&url)),
    };
    let (label, database_url) = match (&existing, &pg) {
        (Some(url), _) if url.starts_with("postgres") => ("PostgreSQL", url.clone()),
        (Some(url), _) => ("SQLite", url.clone()),
        (None, Some(pg)) => ("PostgreSQL", pg.url.clone()),
        (None, None) => (
            "SQLite",
            format!("sqlite://{}", dir.path().join("history.db").display()),
        ),
    };
    let db = Db::connect(&database_url, 2).expect("database");
    storage::run_migrations(&mut db.get().expect("conn")).expect("migrations");
    let channels = if existing.is_some() {
        // Seeded before (`--seed-only`), the admin with it.
        println!("{label}, the database seeded before ({database_url}):");
        storage::channels::list(&mut db.get().expect("conn"))
            .expect("channels")
            .into_iter()
            .map(|c| (c.id, c.public_id))
            .collect()
    } else {
        println!("{label}, {rows} messages:");
        let started = Instant::now();
        let seeded = seed(&db, rows, pg.is_some());
        println!("  seeded in {:.1} s", started.elapsed().as_secs_f64());
        support::create_user(&database_url, ADMIN_EMAIL, PASSWORD, "admin");
        if std::env::args().any(|a| a == "--seed-only") {
            println!("  kept: {database_url}");
            std::mem::forget(pg);
            std::mem::forget(dir);
            return;
        }
        seeded.channels
    };

    let (wa_id, wa) = channels[0].clone();
    let since = (Utc::now() - chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let until = Utc::now().format("%Y-%m-%d").to_string();
    let filtered_query = format!("channel={wa}&status=delivered&since={since}&until={until}");
    {
        let mut conn = db.get().expect("conn");
        let day = |d: &str| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .expect("date")
                .and_hms_opt(0, 0, 0)
        };
        let filtered = HistoryFilter {
            channel_id: Some(wa_id),
            statuses: vec!["delivered".into()],
            since: day(&since),
            until: day(&until).map(|d| d + chrono::Duration::days(1)),
            ..HistoryFilter::default()
        };
        for (what, f) in [
            ("first page", HistoryFilter::default()),
            ("filtered page", filtered),
        ] {
            let plan = history::explain(&mut conn, &f).expect("explain");
            let messages_step: Vec<&String> = plan
                .iter()
                .filter(|l| l.contains("messages") || l.contains(" m ") || l.contains("Sort"))
                .collect();
            println!("  plan of the {what}: {messages_step:?}");
        }
    }

    let server = Server::start_on(
        &database_url,
        dir.path(),
        &[("HERALD_RUN_WORKER", "false")],
        &[],
    );
    println!("  server: pid {}", server.pid());
    let cookie = session_cookie(&server.url).await;
    let pages: Vec<(&str, String)> = [
        ("healthz", "/healthz", "/healthz".to_owned()),
        ("first", "history, first page", "/history".to_owned()),
        (
            "filtered",
            "history, channel + status + 30 days",
            format!("/history?{filtered_query}"),
        ),
        ("overview", "overview /", "/".to_owned()),
    ]
    .into_iter()
    .filter(|(key, _, _)| wanted(key))
    .map(|(_, what, path)| (what, path))
    .collect();
    let check = reqwest::Client::new();
    for (what, path) in &pages {
        let res = check
            .get(format!("{}{path}", server.url))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET");
        assert_eq!(res.status().as_u16(), 200, "{what}: {path}");
    }
    let mut table: Vec<(String, String)> = Vec::new();
    let mut healthz_rate = 0.0;
    for (what, path) in &pages {
        let w = wrk(&format!("{}{path}", server.url), &cookie, conns, secs);
        if *what == "/healthz" {
            healthz_rate = w.rate;
        }
        let figure = format!(
            "{:.0}/s ({:.2}x /healthz), p50 {:.1} ms, p99 {:.1} ms{}",
            w.rate,
            w.rate / healthz_rate.max(1.0),
            w.p50,
            w.p99,
            if w.errors.is_empty() {
                String::new()
            } else {
                format!(" [{}]", w.errors)
            }
        );
        println!("  {what}: {figure}");
        table.push(((*what).to_owned(), figure));
    }
    if wanted("export") {
        let (exported, elapsed, before, peak) = export_all(&server, &cookie).await;
        let figure = format!(
            "{exported} rows in {elapsed:.1} s: {:.0} rows/s; RSS {before:.0} MiB before, {peak:.0} MiB at peak (+{:.0} MiB)",
            exported as f64 / elapsed,
            peak - before
        );
        println!("  CSV export of every message: {figure}");
        table.push(("CSV export, every message".to_owned(), figure));
    }
    support::print_log_gist(dir.path());
    drop(server);

    println!();
    println!("| {label}, {conns} connections, {secs} s each | measured |");
    println!("|---|---|");
    for (what, figure) in &table {
        println!("| {what} | {figure} |");
    }
}
