//! The send history (issue 18): `/history`, its CSV export and `GET /api/v1/messages`, checked
//! against a seeded mix of messages (channels, statuses, a broadcast, a template, API and
//! people's sends, days apart): every filter narrows to exactly the messages a model of the
//! seed says, pages walk every message once in order, bad input is named at its field (400 on
//! the API), the CSV holds every row with formulas neutralised, and only admins get in.

use std::collections::HashSet;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use herald::domain::message::MessageSource;
use herald::domain::phone::E164;
use herald::storage::contacts::{self, ContactPatch};
use herald::storage::outbox::{self, NewMessage};
use herald::storage::schema::{broadcasts, messages, templates};
use herald::storage::{DbConnection, history};
use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::fixtures::channel_named;
use crate::helpers::{Client, TestApp, api_get, create_api_key};

/// One seeded message, as the model the assertions filter.
#[derive(Debug, Clone)]
struct Seeded {
    id: i64,
    public_id: String,
    channel_id: i64,
    contact: usize,
    status: &'static str,
    broadcast: bool,
    template: bool,
    source: MessageSource,
    error: Option<&'static str>,
    created_at: NaiveDateTime,
}

struct World {
    admin: Client,
    key: String,
    /// `(id, public id, phone)` of each contact.
    contacts: Vec<(i64, String, String)>,
    /// Sandbox WhatsApp, SMS and Viber: `(id, public id, name)`.
    channels: Vec<(i64, String, String)>,
    broadcast: (i64, String),
    template: (i64, String),
    messages: Vec<Seeded>,
}

const COUNT: usize = 60;
const STATUSES: [&str; 6] = ["delivered", "read", "failed", "sent", "queued", "unknown"];
/// Contact 1's name is a formula: the CSV must neutralise it.
const NAMES: [&str; 4] = [
    "Ann Lee",
    "=HYPERLINK(\"http://x.test\",\"y\")",
    "Cy Brown",
    "Dee",
];
const PHONES: [&str; 4] = [
    "+14155550101",
    "+14155550102",
    "+442079460018",
    "+14155550104",
];

fn base_time() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 1)
        .unwrap()
        .and_hms_opt(8, 0, 0)
        .unwrap()
}

/// When message `i` was created: five hours apart, except that 10 and 11 share an instant
/// (the page order then falls back on the id).
fn created(i: usize) -> NaiveDateTime {
    let i = if i == 11 { 10 } else { i };
    base_time() + Duration::hours(5 * i as i64)
}

/// A broadcast row (completed, made at [`base_time`]): `(id, public id)`.
fn insert_broadcast(conn: &mut DbConnection, name: &str, channel_id: i64) -> (i64, String) {
    let public_id = uuid::Uuid::new_v4().to_string();
    let id: i64 = diesel::insert_into(broadcasts::table)
        .values((
            broadcasts::public_id.eq(&public_id),
            broadcasts::name.eq(name),
            broadcasts::channel_id.eq(channel_id),
            broadcasts::state.eq("completed"),
            broadcasts::audience.eq("{}"),
            broadcasts::message.eq("{}"),
            broadcasts::time_zone.eq("UTC"),
            broadcasts::created_by_label.eq("Ada"),
            broadcasts::recipients.eq(0_i64),
            broadcasts::created_at.eq(base_time()),
            broadcasts::updated_at.eq(base_time()),
        ))
        .returning(broadcasts::id)
        .get_result(conn)
        .unwrap();
    (id, public_id)
}

fn seed_rows(conn: &mut DbConnection, w: &mut World) {
    let now = base_time();
    for (i, (name, phone)) in NAMES.iter().zip(PHONES).enumerate() {
        let (c, _) = contacts::upsert(
            conn,
            &E164::parse(phone, None).unwrap(),
            &ContactPatch {
                name: Some((*name).to_owned()),
                ..ContactPatch::default()
            },
        )
        .unwrap();
        assert_eq!(w.contacts.len(), i);
        w.contacts.push((c.id, c.public_id, phone.to_owned()));
    }
    w.broadcast = insert_broadcast(conn, "Winter sale", w.channels[0].0);
    let broadcast_id = w.broadcast.0;
    let template_public = uuid::Uuid::new_v4().to_string();
    let template_id: i64 = diesel::insert_into(templates::table)
        .values((
            templates::public_id.eq(&template_public),
            templates::channel_id.eq(w.channels[0].0),
            templates::name.eq("order_shipped"),
            templates::language.eq("en_US"),
            templates::category.eq("utility"),
            templates::created_at.eq(now),
            templates::updated_at.eq(now),
        ))
        .returning(templates::id)
        .get_result(conn)
        .unwrap();
    w.template = (template_id, template_public);

    let mut recipients = 0;
    for i in 0..COUNT {
        let channel = &w.channels[i % 3];
        let source = match i % 5 {
            0 => MessageSource::Api,
            1 | 2 => MessageSource::Broadcast,
            _ => MessageSource::Person,
        };
        // A broadcast sends once per contact: each of its messages goes to a recipient of
        // its own.
        let contact = if source == MessageSource::Broadcast {
            let phone = format!("+141555501{}", 10 + recipients);
            recipients += 1;
            let (c, _) = contacts::upsert(
                conn,
                &E164::parse(&phone, None).unwrap(),
                &ContactPatch {
                    name: Some(format!("Recipient {recipients}")),
                    ..ContactPatch::default()
                },
            )
            .unwrap();
            w.contacts.push((c.id, c.public_id, phone));
            w.contacts.len() - 1
        } else {
            i % 4
        };
        let template = i % 4 == 3;
        let status = STATUSES[i % 6];
        let error = (status == "failed").then_some(if i % 4 == 2 { "131026" } else { "470" });
        let body = if i == 7 {
            "=1+1 is not a formula here".to_owned()
        } else {
            format!("Message {i}: your order has shipped.")
        };
        let requested_by = match source {
            MessageSource::Api => "API key \"Shop\"".to_owned(),
            MessageSource::Broadcast => "Broadcast \"Winter sale\"".to_owned(),
            MessageSource::Person => "Ada Admin <ada@example.com>".to_owned(),
            MessageSource::Trigger => "Trigger \"Orders\"".to_owned(),
            MessageSource::Reminder => "Reminder \"Visits\"".to_owned(),
        };
        let row = outbox::enqueue(
            conn,
            &NewMessage {
                channel_id: channel.0,
                contact_id: w.contacts[contact].0,
                to_address: &w.contacts[contact].2,
                campaign_id: (source == MessageSource::Broadcast).then_some(broadcast_id),
                template_id: template.then_some(template_id),
                content_kind: if template { "template" } else { "text" },
                body: &body,
                content: "{}",
                idempotency_key: None,
                requested_by: &requested_by,
                resend_of: None,
                not_before: created(i),
                request_hash: None,
                source,
            },
        )
        .unwrap();
        diesel::update(messages::table.find(row.id))
            .set((
                messages::status.eq(status),
                messages::error_code.eq(error),
                messages::error_message.eq(error.map(|_| "The provider refused it")),
                messages::created_at.eq(created(i)),
            ))
            .execute(conn)
            .unwrap();
        w.messages.push(Seeded {
            id: row.id,
            public_id: row.public_id,
            channel_id: channel.0,
            contact,
            status,
            broadcast: source == MessageSource::Broadcast,
            template,
            source,
            error,
            created_at: created(i),
        });
    }
}

/// The seeded history (also the browser test's).
pub async fn seed_history(app: &TestApp) -> usize {
    let w = seed(app).await;
    w.messages.iter().filter(|m| m.status == "failed").count()
}

async fn seed(app: &TestApp) -> World {
    let admin = app.admin().await;
    let key = create_api_key(&admin, "History tests", "admin").await;
    let channels = ["Sandbox WhatsApp", "Sandbox SMS", "Sandbox Viber"]
        .iter()
        .map(|n| {
            let c = channel_named(app, n);
            (c.id, c.public_id, c.name)
        })
        .collect();
    let mut w = World {
        admin,
        key,
        contacts: Vec::new(),
        channels,
        broadcast: (0, String::new()),
        template: (0, String::new()),
        messages: Vec::new(),
    };
    seed_rows(&mut app.db(), &mut w);
    w
}

/// The model's answer: the public ids of the seeded messages `keep` keeps, newest first.
fn expected(w: &World, keep: impl Fn(&Seeded) -> bool) -> Vec<String> {
    let mut kept: Vec<&Seeded> = w.messages.iter().filter(|m| keep(m)).collect();
    kept.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
    kept.iter().map(|m| m.public_id.clone()).collect()
}

/// Every message the API lists for `query`, following `next_cursor` with pages of `limit`.
async fn api_all(app: &TestApp, key: &str, query: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/v1/messages?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = api_get(app, &path, Some(key)).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        let body: Value = res.json().await.unwrap();
        let data = body["data"].as_array().expect("data");
        assert!(data.len() <= limit, "{body}");
        ids.extend(data.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
    panic!("the pages of {query} never ended");
}

/// The message ids of a history page's rows (from their detail links), in order.
fn row_ids(html: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse("#history-table tbody tr td:last-child a").unwrap();
    doc.select(&sel)
        .filter_map(|a| a.value().attr("href"))
        .map(|h| h.trim_start_matches("/messages/").to_owned())
        .collect()
}

fn attr(html: &str, selector: &str, name: &str) -> Option<String> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse(selector).unwrap();
    doc.select(&sel)
        .next()
        .and_then(|e| e.value().attr(name))
        .map(|v| v.replace("&amp;", "&"))
}

fn text_of(html: &str, selector: &str) -> String {
    crate::helpers::texts(html, selector).join(" ")
}

async fn filters_each_narrow_the_history(app: TestApp) {
    let w = seed(&app).await;
    let (wa, wa_public, wa_name) = w.channels[0].clone();
    let sms = w.channels[1].0;
    let b = &w.broadcast.1;
    let t = &w.template.1;
    let day = |d: u32| {
        NaiveDate::from_ymd_opt(2026, 11, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    };
    let checks: Vec<(String, Vec<String>)> = vec![
        (String::new(), expected(&w, |_| true)),
        (
            format!("channel={wa_public}"),
            expected(&w, |m| m.channel_id == wa),
        ),
        // By name too, and by the number the database gives it.
        (
            format!("channel={}", wa_name.replace(' ', "+")),
            expected(&w, |m| m.channel_id == wa),
        ),
        (
            format!("channel={sms}"),
            expected(&w, |m| m.channel_id == sms),
        ),
        (
            "status=failed".into(),
            expected(&w, |m| m.status == "failed"),
        ),
        (
            "status=failed,unknown".into(),
            expected(&w, |m| m.status == "failed" || m.status == "unknown"),
        ),
        (format!("broadcast={b}"), expected(&w, |m| m.broadcast)),
        (
            format!("broadcast={b}&status=read"),
            expected(&w, |m| m.broadcast && m.status == "read"),
        ),
        (format!("template={t}"), expected(&w, |m| m.template)),
        // A phone in another format, and a contact id.
        (
            "contact=%2B1+(415)+555-0101".into(),
            expected(&w, |m| m.contact == 0),
        ),
        (
            format!("contact={}", w.contacts[2].1),
            expected(&w, |m| m.contact == 2),
        ),
        (
            "source=api".into(),
            expected(&w, |m| m.source == MessageSource::Api),
        ),
        (
            "source=person".into(),
            expected(&w, |m| m.source == MessageSource::Person),
        ),
        (
            "source=broadcast".into(),
            expected(&w, |m| m.source == MessageSource::Broadcast),
        ),
        (
            "error=131026".into(),
            expected(&w, |m| m.error == Some("131026")),
        ),
        // Dates: `until` takes its whole day.
        (
            "since=2026-11-03&until=2026-11-06".into(),
            expected(&w, |m| m.created_at >= day(3) && m.created_at < day(7)),
        ),
        (
            "since=2026-11-03T10:00:00%2B02:00".into(),
            expected(&w, |m| m.created_at >= day(3) + Duration::hours(8)),
        ),
        (
            format!("channel={wa_public}&status=delivered&since=2026-11-02&until=2026-11-10"),
            expected(&w, |m| {
                m.channel_id == wa
                    && m.status == "delivered"
                    && m.created_at >= day(2)
                    && m.created_at < day(11)
            }),
        ),
        (
            format!("contact={}&status=failed", w.contacts[0].1),
            expected(&w, |m| m.contact == 0 && m.status == "failed"),
        ),
    ];
    for (query, want) in &checks {
        assert!(
            query.is_empty() || want.len() < COUNT,
            "{query} narrows nothing: a weak check"
        );
        assert!(!want.is_empty(), "{query} matches nothing: a weak check");
        let got = api_all(&app, &w.key, query, 7).await;
        assert_eq!(&got, want, "GET /api/v1/messages?{query}");
    }

    // The page applies the same filters, with the count and the values kept in the form.
    let html = w
        .admin
        .get_html("/history?status=failed&source=person")
        .await;
    let want = expected(&w, |m| {
        m.status == "failed" && m.source == MessageSource::Person
    });
    assert_eq!(row_ids(&html), want);
    assert_eq!(
        text_of(&html, "#history-total"),
        format!("{} messages match these filters.", want.len())
    );
    assert_eq!(
        attr(&html, "#history-status option[selected]", "value").as_deref(),
        Some("failed")
    );
    assert_eq!(
        attr(&html, "#history-clear", "href").as_deref(),
        Some("/history")
    );
    assert_eq!(
        attr(&html, "#history-export", "href").as_deref(),
        Some("/history/export.csv?status=failed&source=person")
    );
    let html = w.admin.get_html("/history?contact=%2B14155550101").await;
    assert_eq!(row_ids(&html), expected(&w, |m| m.contact == 0));
    assert_eq!(
        attr(&html, "#history-contact", "value").as_deref(),
        Some("+14155550101")
    );
    // Rows name the contact (linked), the channel, the source (a broadcast linked).
    let html = w.admin.get_html(&format!("/history?broadcast={b}")).await;
    assert_eq!(
        attr(&html, "#history-broadcast option[selected]", "value").as_deref(),
        Some(b.as_str())
    );
    let sources = crate::helpers::texts(&html, "#history-table td.history-source");
    assert!(
        !sources.is_empty() && sources.iter().all(|s| s == "Winter sale"),
        "{sources:?}"
    );
    assert_eq!(
        attr(&html, "#history-table td.history-source a", "href"),
        Some(format!("/broadcasts/{b}"))
    );
    let contact_links: HashSet<String> = {
        let doc = scraper::Html::parse_document(&html);
        let sel = scraper::Selector::parse("#history-table td.history-contact a").unwrap();
        doc.select(&sel)
            .filter_map(|a| a.value().attr("href").map(str::to_owned))
            .collect()
    };
    let want_links: HashSet<String> = w
        .messages
        .iter()
        .filter(|m| m.broadcast)
        .map(|m| format!("/contacts/{}", w.contacts[m.contact].1))
        .collect();
    assert_eq!(contact_links, want_links);
    let (viber, viber_public) = (w.channels[2].0, w.channels[2].1.clone());
    // Whole days, channel and status: counted exactly by the database's counters; the
    // index walk stops at its cap.
    let html = w
        .admin
        .get_html(&format!(
            "/history?channel={viber_public}&status=failed&since=2026-11-02&until=2026-11-10"
        ))
        .await;
    let want = expected(&w, |m| {
        m.channel_id == viber
            && m.status == "failed"
            && m.created_at >= day(2)
            && m.created_at < day(11)
    });
    assert!(want.len() > 1);
    assert_eq!(row_ids(&html), want);
    assert_eq!(
        text_of(&html, "#history-total"),
        format!("{} messages match these filters.", want.len())
    );
    let everything = history::HistoryFilter::default();
    assert_eq!(
        history::count_up_to(&mut app.db(), &everything, 5).unwrap(),
        5
    );
    assert_eq!(
        history::count_up_to(&mut app.db(), &everything, 1_000).unwrap(),
        i64::try_from(COUNT).unwrap()
    );
    // Nothing matches: the empty state, not an error.
    let html = w
        .admin
        .get_html(&format!("/history?channel={wa_public}&status=cancelled"))
        .await;
    assert!(row_ids(&html).is_empty());
    assert!(text_of(&html, "#history-empty").contains("No messages match these filters"));
    assert_eq!(
        text_of(&html, "#history-total"),
        "0 messages match these filters."
    );
}

async fn paging_returns_every_message_once_in_order(app: TestApp) {
    let w = seed(&app).await;
    let all = expected(&w, |_| true);
    // The API, a few at a time (the tie at 10/11 falls across no special boundary but is
    // ordered by id), then in one page.
    for limit in [1, 7, 10, 500] {
        let got = api_all(&app, &w.key, "", limit).await;
        assert_eq!(got, all, "limit {limit}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), COUNT);
    }
    // The page: 50, then the 10 older, then back.
    let first = w.admin.get_html("/history").await;
    assert_eq!(row_ids(&first), all[..50].to_vec());
    assert_eq!(
        text_of(&first, "#history-total"),
        format!("{COUNT} messages.")
    );
    assert!(attr(&first, "#history-newer", "href").is_none());
    assert!(attr(&first, "#history-newest", "href").is_none());
    let older = attr(&first, "#history-older", "href").expect("an older page");
    let second = w.admin.get_html(&older).await;
    assert_eq!(row_ids(&second), all[50..].to_vec());
    assert!(attr(&second, "#history-older", "href").is_none());
    assert_eq!(
        attr(&second, "#history-newest", "href").as_deref(),
        Some("/history")
    );
    let newer = attr(&second, "#history-newer", "href").expect("a newer page");
    let back = w.admin.get_html(&newer).await;
    assert_eq!(row_ids(&back), all[..50].to_vec());
    // Filtered pages keep their filter in the links.
    let html = w.admin.get_html("/history?source=broadcast").await;
    let want = expected(&w, |m| m.broadcast);
    assert_eq!(row_ids(&html), want);
    assert!(attr(&html, "#history-older", "href").is_none());
}

async fn bad_input_is_named_at_its_field(app: TestApp) {
    let w = seed(&app).await;
    let first = w.admin.get_html("/history").await;
    let older = attr(&first, "#history-older", "href").expect("an older page");
    let cursor = older.split("cursor=").nth(1).unwrap().to_owned();
    // One character changed, and the other filters' cursor.
    let mut tampered: Vec<char> = cursor.chars().collect();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "since=2026-11-09&until=2026-11-02".into(),
            "until",
            "invalid_filter",
        ),
        ("status=lost".into(), "status", "invalid_filter"),
        ("since=yesterday".into(), "since", "invalid_filter"),
        ("channel=Carrier+pigeon".into(), "channel", "invalid_filter"),
        (
            format!("broadcast={}", uuid::Uuid::new_v4()),
            "broadcast",
            "invalid_filter",
        ),
        ("template=99999".into(), "template", "invalid_filter"),
        ("contact=%2B19995550100".into(), "contact", "invalid_filter"),
        ("contact=not+a+phone".into(), "contact", "invalid_filter"),
        ("source=robot".into(), "source", "invalid_filter"),
        ("cursor=garbage".into(), "cursor", "invalid_cursor"),
        (format!("cursor={tampered}"), "cursor", "invalid_cursor"),
        (
            format!("status=failed&cursor={cursor}"),
            "cursor",
            "invalid_cursor",
        ),
        (
            format!("error={}", "x".repeat(300)),
            "error",
            "invalid_filter",
        ),
    ];
    for (query, field, code) in &cases {
        let res = w.admin.get(&format!("/history?{query}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "/history?{query}");
        let html = res.text().await.unwrap();
        let shown = text_of(&html, &format!("#history-{field}-error"));
        assert!(
            !shown.is_empty(),
            "/history?{query}: no error at {field}: {html}"
        );
        // The form is still there, keeping what was typed.
        assert!(html.contains("id=\"history-filters\""));

        let res = api_get(&app, &format!("/api/v1/messages?{query}"), Some(&w.key)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "API ?{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], *code, "{query}: {body}");
        assert!(
            body["error"]["fields"][field]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{query}: {body}"
        );
        // The export refuses it before streaming anything.
        let res = w.admin.get(&format!("/history/export.csv?{query}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "export ?{query}");
    }
    // The inverted range says which end is wrong.
    let res = api_get(
        &app,
        "/api/v1/messages?since=2026-11-09&until=2026-11-02",
        Some(&w.key),
    )
    .await;
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["fields"]["until"]
            .as_str()
            .unwrap()
            .contains("before its start")
    );
    // A limit out of range.
    for limit in ["0", "501", "ten"] {
        let res = api_get(
            &app,
            &format!("/api/v1/messages?limit={limit}"),
            Some(&w.key),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "limit {limit}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_limit");
    }
    // A NUL: refused naming the field, on the page (the edge's 422, as everywhere) and the API.
    let res = w.admin.get("/history?contact=%00").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("contact: contains a NUL")
    );
    let res = api_get(&app, "/api/v1/messages?error=a%00b", Some(&w.key)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("error: contains a NUL"),
        "{body}"
    );
    // The same cursor with its own filters still works.
    let res = w.admin.get(&older).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn csv_export_streams_every_row_with_formulas_neutralised(app: TestApp) {
    let w = seed(&app).await;
    let res = w.admin.get("/history/export.csv").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = res.text().await.unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let ids: Vec<String> = records.iter().map(|r| r[col("id")].to_owned()).collect();
    assert_eq!(ids, expected(&w, |_| true));
    for r in &records {
        for cell in r.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {cell:?}"
            );
        }
    }
    let formula = records
        .iter()
        .find(|r| r[col("contact_name")].contains("HYPERLINK"))
        .unwrap();
    assert_eq!(
        &formula[col("contact_name")],
        "'=HYPERLINK(\"http://x.test\",\"y\")"
    );
    assert_eq!(&formula[col("phone")], "'+14155550102");
    let seventh = &w.messages[7].public_id;
    let body_cell = records.iter().find(|r| &r[col("id")] == seventh).unwrap();
    assert_eq!(&body_cell[col("body")], "'=1+1 is not a formula here");
    let failed = records
        .iter()
        .find(|r| &r[col("status")] == "failed")
        .unwrap();
    assert!(!failed[col("error_code")].is_empty());
    assert_eq!(&failed[col("error_message")], "The provider refused it");

    // A filtered export holds that view only.
    let b = &w.broadcast.1;
    let body = w
        .admin
        .get(&format!("/history/export.csv?broadcast={b}&status=read"))
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    let want = expected(&w, |m| m.broadcast && m.status == "read");
    assert!(!want.is_empty());
    assert_eq!(ids, want);
    let html = w
        .admin
        .get_html(&format!("/history?broadcast={b}&status=read"))
        .await;
    assert_eq!(
        attr(&html, "#history-export", "href"),
        Some(format!("/history/export.csv?status=read&broadcast={b}"))
    );
}

/// More rows than one export batch: the CSV walks batch after batch, every row once.
async fn csv_export_walks_across_batches(app: TestApp) {
    let mut w = seed(&app).await;
    let extra = usize::try_from(herald::service::history::EXPORT_BATCH).unwrap() + 5;
    {
        let mut conn = app.db();
        let contact = w.contacts[0].clone();
        let channel = w.channels[1].0;
        let rows: Vec<NewMessage<'_>> = (0..extra)
            .map(|_| NewMessage {
                channel_id: channel,
                contact_id: contact.0,
                to_address: &contact.2,
                campaign_id: None,
                template_id: None,
                content_kind: "text",
                body: "bulk",
                content: "{}",
                idempotency_key: None,
                requested_by: "bulk",
                resend_of: None,
                not_before: base_time(),
                request_hash: None,
                source: MessageSource::Person,
            })
            .collect();
        assert_eq!(outbox::enqueue_many(&mut conn, &rows).unwrap(), extra);
    }
    w.messages.clear();
    let body = w
        .admin
        .get("/history/export.csv")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(ids.len(), COUNT + extra);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), COUNT + extra);
    // The page counts them through the index up to its cap, exactly below it.
    let html = w.admin.get_html("/history").await;
    assert_eq!(
        text_of(&html, "#history-total"),
        format!(
            "{} messages.",
            herald::web::format::thousands(i64::try_from(COUNT + extra).unwrap())
        )
    );
}

async fn only_admins_see_the_history(app: TestApp) {
    let w = seed(&app).await;
    for role in ["marketer", "support_lead"] {
        let person = app
            .user_with_role(&w.admin, &format!("{role}@example.com"), role)
            .await;
        for path in ["/history", "/history/export.csv", "/history?status=failed"] {
            let res = person.get(path).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role} {path}");
        }
        // Not in their navigation either.
        let home = person.get_html("/contacts").await;
        assert!(!home.contains("href=\"/history\""), "{role}");
        let key = create_api_key(&w.admin, &format!("{role} key"), role).await;
        let res = api_get(&app, "/api/v1/messages", Some(&key)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role} key");
    }
    let res = api_get(&app, "/api/v1/messages", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.client().get("/history").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The admin has it in the navigation.
    let home = w.admin.get_html("/contacts").await;
    assert!(home.contains("href=\"/history\""));
}

/// Each way of sending records where the message came from, and the API says it.
async fn sources_are_recorded_at_enqueue(app: TestApp) {
    let w = seed(&app).await;
    let sms = &w.channels[1].1;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", app.address))
        .bearer_auth(&w.key)
        .json(&serde_json::json!({"to": "+14155550199", "channel": sms, "text": "From the shop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let sent: Value = res.json().await.unwrap();
    assert_eq!(sent["source"], "api", "{sent}");
    let id = sent["id"].as_str().unwrap();
    let (_, got) =
        crate::provider_kit::get_json(&app, &w.key, &format!("/api/v1/messages/{id}")).await;
    assert_eq!(got["source"], "api");

    // A resend from the dashboard is a person's, even of a broadcast's message; through the
    // API, the key's.
    let failed_broadcast = w
        .messages
        .iter()
        .find(|m| m.broadcast && m.status == "failed")
        .unwrap();
    let res = w
        .admin
        .post_form(
            &format!("/messages/{}/resend", failed_broadcast.public_id),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let failed_other = w
        .messages
        .iter()
        .find(|m| !m.broadcast && m.status == "failed")
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/messages/{}/resend",
            app.address, failed_other.public_id
        ))
        .bearer_auth(&w.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let resent: Vec<(Option<i64>, String, Option<i64>)> = messages::table
        .filter(messages::resend_of.is_not_null())
        .select((messages::resend_of, messages::source, messages::campaign_id))
        .order(messages::id)
        .load(&mut *app.db())
        .unwrap();
    assert_eq!(
        resent,
        vec![
            (
                Some(failed_broadcast.id),
                "person".to_owned(),
                Some(w.broadcast.0)
            ),
            (Some(failed_other.id), "api".to_owned(), None),
        ]
    );
    // The history's source filter finds the resend among people's sends.
    let people = api_all(&app, &w.key, "source=person", 100).await;
    assert!(people.len() > expected(&w, |m| m.source == MessageSource::Person).len());
}

/// Every filter the page offers reads an index in page order: no sort of the matching rows
/// and no scan of the whole table (SQLite's `EXPLAIN QUERY PLAN`; PostgreSQL's `EXPLAIN` with
/// sequential scans and sorts priced out, so a plan without them exists).
async fn filters_are_served_by_indexes(app: TestApp) {
    let w = seed(&app).await;
    let mut conn = app.db();
    let postgres = matches!(&*conn, DbConnection::Postgres(_));
    if postgres {
        for setting in ["enable_seqscan", "enable_sort", "enable_bitmapscan"] {
            diesel::sql_query(format!("SET {setting} = off"))
                .execute(&mut *conn)
                .unwrap();
        }
    }
    let at = |d: u32| {
        NaiveDate::from_ymd_opt(2026, 11, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    };
    let (wa, contact, broadcast, template) = (
        w.channels[0].0,
        w.contacts[0].0,
        w.broadcast.0,
        w.template.0,
    );
    let failed = || vec!["failed".to_owned()];
    let filter = |edit: &dyn Fn(&mut history::HistoryFilter)| {
        let mut f = history::HistoryFilter::default();
        edit(&mut f);
        f
    };
    let filters = vec![
        filter(&|_| {}),
        filter(&|f| (f.since, f.until) = (Some(at(2)), Some(at(9)))),
        filter(&|f| f.channel_id = Some(wa)),
        filter(&|f| f.statuses = failed()),
        filter(&|f| {
            (f.channel_id, f.statuses) = (Some(wa), failed());
            (f.since, f.until) = (Some(at(2)), Some(at(9)));
        }),
        filter(&|f| f.contact_id = Some(contact)),
        filter(&|f| f.broadcast_id = Some(broadcast)),
        filter(&|f| (f.broadcast_id, f.statuses) = (Some(broadcast), failed())),
        filter(&|f| f.template_id = Some(template)),
        filter(&|f| f.error_code = Some("131026".into())),
        filter(&|f| f.source = Some(MessageSource::Api)),
        filter(&|f| f.source = Some(MessageSource::Person)),
    ];
    for f in &filters {
        let plan = history::explain(&mut conn, f).unwrap();
        let text = plan.join("\n");
        if postgres {
            assert!(!text.contains("Sort"), "{f:?} sorts:\n{text}");
            assert!(
                !text.contains("Seq Scan on messages"),
                "{f:?} scans:\n{text}"
            );
            assert!(text.contains("Index"), "{f:?}:\n{text}");
        } else {
            assert!(!text.contains("TEMP B-TREE"), "{f:?} sorts:\n{text}");
            let messages_step = plan
                .iter()
                .find(|l| l.contains(" m ") || l.ends_with(" m"))
                .unwrap_or_else(|| panic!("{f:?}: no step for messages:\n{text}"));
            assert!(
                messages_step.contains("INDEX"),
                "{f:?} scans the table:\n{text}"
            );
        }
    }
}

/// The filter form's choices (one statement): every channel in the channel list's order
/// (disabled last), the newest broadcasts first, templates by name and language.
async fn the_filter_form_offers_channels_broadcasts_and_templates_in_order(app: TestApp) {
    let w = seed(&app).await;
    let mut conn = app.db();
    let now = base_time();
    {
        use herald::storage::schema::channels;
        diesel::update(channels::table.find(w.channels[0].0))
            .set(channels::disabled_at.eq(Some(now)))
            .execute(&mut *conn)
            .unwrap();
    }
    let (spring, _) = insert_broadcast(&mut conn, "Spring sale", w.channels[1].0);
    for language in ["en", "de"] {
        diesel::insert_into(templates::table)
            .values((
                templates::public_id.eq(uuid::Uuid::new_v4().to_string()),
                templates::channel_id.eq(w.channels[1].0),
                templates::name.eq("appointment_reminder"),
                templates::language.eq(language),
                templates::category.eq("utility"),
                templates::created_at.eq(now),
                templates::updated_at.eq(now),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    let choices = history::choices(&mut conn).unwrap();
    let listed: Vec<(i64, String, String)> = herald::storage::channels::list(&mut conn)
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.public_id, c.name))
        .collect();
    assert_eq!(choices.channels, listed);
    assert_eq!(choices.channels.last().map(|c| c.0), Some(w.channels[0].0));
    let ids: Vec<i64> = choices.broadcasts.iter().map(|b| b.0).collect();
    assert_eq!(ids, vec![spring, w.broadcast.0]);
    let names: Vec<&str> = choices.templates.iter().map(|t| t.2.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "appointment_reminder (de)",
            "appointment_reminder (en)",
            "order_shipped (en_US)"
        ]
    );
}

both_backends!(
    filters_each_narrow_the_history,
    paging_returns_every_message_once_in_order,
    bad_input_is_named_at_its_field,
    csv_export_streams_every_row_with_formulas_neutralised,
    csv_export_walks_across_batches,
    only_admins_see_the_history,
    sources_are_recorded_at_enqueue,
    filters_are_served_by_indexes,
    the_filter_form_offers_channels_broadcasts_and_templates_in_order,
);
