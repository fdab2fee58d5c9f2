//! Issue 18: a broadcast's results on its page. A broadcast driven through the sandbox, with
//! some outcomes then rewritten as a provider would have reported them (failures with codes, a
//! message left at delivered, one left at sent): the funnel's bars equal the per-status counts
//! of its messages and link to the history filtered to them; failures are grouped by code and
//! reason with their links; the recipient table filters, pages and exports; replies are
//! attributed once, within the window after delivery; "Send again to..." freezes each choice's
//! audience, and only those who manage broadcasts may use it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use herald::storage::schema::{broadcast_follow_up_contacts, broadcasts, contacts, messages};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broadcasts::{broadcast, control, estimate_of, wait_for_state};
use crate::fixtures::{Setup, contact, customer_replies, setup, spawn};
use crate::helpers::{TestApp, create_api_key, location};
use crate::provider_kit::api;

/// A finished broadcast of 27 recipients (26 contacts of the list "All", and one who opted out
/// of SMS, skipped at launch), every message sent, delivered and read by the sandbox; then the
/// provider's later word on some: the first two failed with 30007, the third with 30003, the
/// fourth stayed delivered, the fifth stayed sent.
struct Mixed {
    s: Setup,
    /// The broadcast's public id and internal id.
    id: String,
    bid: i64,
    /// The 26 reachable contacts' internal ids, in the order above.
    people: Vec<i64>,
    /// Their public ids.
    public: Vec<String>,
}

fn internal_contact(app: &TestApp, public_id: &str) -> i64 {
    contacts::table
        .filter(contacts::public_id.eq(public_id))
        .select(contacts::id)
        .first(&mut *app.db())
        .expect("contact")
}

fn broadcast_id(app: &TestApp, public_id: &str) -> i64 {
    broadcasts::table
        .filter(broadcasts::public_id.eq(public_id))
        .select(broadcasts::id)
        .first(&mut *app.db())
        .expect("broadcast")
}

/// The broadcast's first messages (resends not counted) by status, from the database.
fn by_status(app: &TestApp, bid: i64) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = messages::table
        .filter(messages::campaign_id.eq(bid))
        .filter(messages::resend_of.is_null())
        .group_by(messages::status)
        .select((messages::status, diesel::dsl::count_star()))
        .load(&mut *app.db())
        .expect("by status");
    rows.into_iter().collect()
}

async fn launch_and_finish(app: &TestApp, s: &Setup, id: &str) -> i64 {
    let (status, launched) = control(app, &s.key, id, "launch").await;
    assert_eq!(status, StatusCode::OK, "{launched}");
    wait_for_state(app, &s.key, id, "completed", 60).await;
    let bid = broadcast_id(app, id);
    // The sandbox reports delivered then read; wait until it has said everything.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = by_status(app, bid);
        let unsettled: i64 = ["queued", "sending", "sent", "delivered"]
            .iter()
            .filter_map(|s| statuses.get(*s))
            .sum();
        if unsettled == 0 {
            return bid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never all read: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rewrites one recipient's message as the provider would have reported it.
fn set_outcome(app: &TestApp, bid: i64, contact_id: i64, status: &str, code: Option<(&str, &str)>) {
    let at = Utc::now().naive_utc();
    let target = messages::table
        .filter(messages::campaign_id.eq(bid))
        .filter(messages::contact_id.eq(contact_id));
    let none: Option<chrono::NaiveDateTime> = None;
    match status {
        "failed" => diesel::update(target)
            .set((
                messages::status.eq("failed"),
                messages::error_code.eq(code.map(|c| c.0)),
                messages::error_message.eq(code.map(|c| c.1)),
                messages::delivered_at.eq(none),
                messages::read_at.eq(none),
                messages::failed_at.eq(Some(at)),
            ))
            .execute(&mut *app.db()),
        "delivered" => diesel::update(target)
            .set((messages::status.eq("delivered"), messages::read_at.eq(none)))
            .execute(&mut *app.db()),
        "read" => diesel::update(target)
            .set((messages::status.eq("read"), messages::read_at.eq(Some(at))))
            .execute(&mut *app.db()),
        _ => diesel::update(target)
            .set((
                messages::status.eq(status),
                messages::delivered_at.eq(none),
                messages::read_at.eq(none),
            ))
            .execute(&mut *app.db()),
    }
    .expect("rewrite outcome");
}

async fn mixed(app: &TestApp) -> Mixed {
    let s = setup(app).await;
    let mut public = Vec::new();
    for i in 0..26 {
        public.push(
            contact(
                app,
                &s.key,
                json!({"phone": format!("+1415556{i:04}"), "name": format!("Reader {i:02}"), "lists": ["All"]}),
            )
            .await,
        );
    }
    contact(
        app,
        &s.key,
        json!({"phone": "+14155569999", "name": "Opted Out", "lists": ["All"], "consent": {"sms": "opted_out"}}),
    )
    .await;
    let (status, b) = api(
        app,
        Method::POST,
        "/api/v1/broadcasts",
        &s.key,
        Some(&json!({
            "name": "Spring offer",
            "channel": s.sms.name,
            "audience": {"lists": ["All"]},
            "message": {"text": "Spring offer: 20% off this week."},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let bid = launch_and_finish(app, &s, &id).await;
    let people: Vec<i64> = public.iter().map(|p| internal_contact(app, p)).collect();
    set_outcome(
        app,
        bid,
        people[0],
        "failed",
        Some(("30007", "Carrier filtered")),
    );
    set_outcome(
        app,
        bid,
        people[1],
        "failed",
        Some(("30007", "Carrier filtered")),
    );
    set_outcome(
        app,
        bid,
        people[2],
        "failed",
        Some(("30003", "Unreachable handset")),
    );
    set_outcome(app, bid, people[3], "delivered", None);
    set_outcome(app, bid, people[4], "sent", None);
    Mixed {
        s,
        id,
        bid,
        people,
        public,
    }
}

/// The funnel's bars on the page: label -> (count, link).
fn bars(html: &str) -> BTreeMap<String, (i64, String)> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse("svg.funnel a[data-bar]").unwrap();
    doc.select(&sel)
        .map(|a| {
            let e = a.value();
            let count = e
                .attr("data-count")
                .unwrap()
                .replace(',', "")
                .parse()
                .unwrap();
            (
                e.attr("data-bar").unwrap().to_owned(),
                (count, e.attr("href").unwrap().to_owned()),
            )
        })
        .collect()
}

/// The links and counts of the failures table: href -> count.
fn failure_links(html: &str) -> BTreeMap<String, i64> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse("#failures a").unwrap();
    doc.select(&sel)
        .map(|a| {
            (
                a.value().attr("href").unwrap().to_owned(),
                a.text()
                    .collect::<String>()
                    .replace(',', "")
                    .parse()
                    .unwrap(),
            )
        })
        .collect()
}

/// The broadcast's page with a query string.
async fn page(m: &Mixed, q: &str) -> String {
    m.s.admin
        .get_html(&format!("/broadcasts/{}?{q}", m.id))
        .await
}

fn rows(html: &str) -> usize {
    crate::helpers::texts(html, "tr[data-recipient]").len()
}

async fn the_funnel_failures_and_recipient_table_agree_with_the_messages(app: TestApp) {
    let m = mixed(&app).await;
    let db = by_status(&app, m.bid);
    let n = |s: &str| db.get(s).copied().unwrap_or(0);
    assert_eq!(
        (n("failed"), n("sent"), n("delivered"), n("read")),
        (3, 1, 1, 21)
    );

    let html = m.s.admin.get_html(&format!("/broadcasts/{}", m.id)).await;
    let bars = bars(&html);
    let h = |q: &str| format!("/history?broadcast={}{q}", m.id);
    // Each bar, as the module documents it, from the per-status counts of the messages.
    assert_eq!(bars["Targeted"], (27, h("")), "{bars:?}");
    assert_eq!(
        bars["Sent"],
        (n("sent") + n("delivered") + n("read"), h("&status=sent"))
    );
    assert_eq!(
        bars["Delivered"],
        (n("delivered") + n("read"), h("&status=delivered"))
    );
    assert_eq!(bars["Read"], (n("read"), h("&status=read")));
    assert_eq!(bars["Failed"], (n("failed"), h("&status=failed")));
    assert_eq!(bars["Replied"].0, 0);
    assert_eq!(bars["Opted out"].0, 1);
    assert!(bars["Opted out"].1.contains("reason=opted_out"), "{bars:?}");
    // The same figures in the API's counts.
    let b = broadcast(&app, &m.s.key, &m.id).await;
    assert_eq!(b["counts"]["read"], n("read"), "{b}");
    assert_eq!(b["counts"]["failed"], n("failed"), "{b}");
    // Readable without the chart: the numbers are text.
    assert!(
        html.contains("<title id=\"funnel-title\">Results of Spring offer"),
        "{html}"
    );

    // Failures grouped by code, each linking to the history filtered to it; the opted-out
    // recipient (never sent to) links to the recipient table.
    let failures = failure_links(&html);
    assert_eq!(
        failures.get(&h("&status=failed&error=30007")),
        Some(&2),
        "{failures:?}"
    );
    assert_eq!(
        failures.get(&h("&status=failed&error=30003")),
        Some(&1),
        "{failures:?}"
    );
    let skipped = format!(
        "/broadcasts/{}?status=skipped&reason=opted_out#recipients",
        m.id
    );
    assert_eq!(failures.get(&skipped), Some(&1), "{failures:?}");
    assert!(html.contains("Carrier filtered"));

    // The recipient table: filters, keyset pages, an empty state, a clear message for a bad
    // status (never a 500).
    assert_eq!(rows(&page(&m, "status=failed").await), 3);
    assert_eq!(rows(&page(&m, "reason=30007").await), 2);
    assert_eq!(rows(&page(&m, "status=skipped&reason=opted_out").await), 1);
    assert_eq!(rows(&page(&m, "status=delivered").await), 1);
    let none = page(&m, "status=expired").await;
    assert_eq!(rows(&none), 0);
    assert!(none.contains("No recipient matches this filter."), "{none}");
    let bad = page(&m, "status=bogus").await;
    assert!(bad.contains("is not a status"), "{bad}");
    let first = page(&m, "").await;
    assert_eq!(rows(&first), 25);
    let doc = scraper::Html::parse_document(&first);
    let next = doc
        .select(&scraper::Selector::parse("#recipients .pager a").unwrap())
        .next()
        .and_then(|a| a.value().attr("href"))
        .expect("a next page")
        .to_owned();
    let second = m.s.admin.get_html(&next).await;
    assert_eq!(rows(&second), 2);
    let ids = |html: &str| -> BTreeSet<String> {
        let doc = scraper::Html::parse_document(html);
        doc.select(&scraper::Selector::parse("tr[data-recipient]").unwrap())
            .map(|r| r.value().attr("data-recipient").unwrap().to_owned())
            .collect()
    };
    assert!(ids(&first).is_disjoint(&ids(&second)));

    // The CSV export of the filtered table, and of all of it.
    let res =
        m.s.admin
            .get(&format!(
                "/broadcasts/{}/recipients.csv?status=failed",
                m.id
            ))
            .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("phone,name,status"), "{csv}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("30007")).count(),
        2,
        "{csv}"
    );
    assert!(lines[1..].iter().all(|l| l.contains(",failed,")), "{csv}");
    let all =
        m.s.admin
            .get(&format!("/broadcasts/{}/recipients.csv", m.id))
            .await
            .text()
            .await
            .unwrap();
    assert_eq!(all.lines().count(), 28, "{all}");
}

/// When the recipient's reply to the broadcast was recorded, if it was.
fn replied_at(app: &TestApp, bid: i64, contact_id: i64) -> Option<chrono::NaiveDateTime> {
    use herald::storage::schema::broadcast_recipients as r;
    r::table
        .filter(r::broadcast_id.eq(bid))
        .filter(r::contact_id.eq(contact_id))
        .select(r::replied_at)
        .first(&mut *app.db())
        .unwrap()
}

async fn replies_count_once_within_the_window_after_delivery(app: TestApp) {
    let m = mixed(&app).await;
    // people[5] replies twice: one reply counted, at the first one's time.
    customer_replies(&m.s.admin, &m.public[5], &m.s.sms, "Yes please").await;
    let b = broadcast(&app, &m.s.key, &m.id).await;
    assert_eq!(b["counts"]["replied"], 1, "{b}");
    let first_at: Option<chrono::NaiveDateTime> =
        herald::storage::schema::broadcast_recipients::table
            .filter(herald::storage::schema::broadcast_recipients::broadcast_id.eq(m.bid))
            .filter(herald::storage::schema::broadcast_recipients::contact_id.eq(m.people[5]))
            .select(herald::storage::schema::broadcast_recipients::replied_at)
            .first(&mut *app.db())
            .unwrap();
    assert!(first_at.is_some());
    tokio::time::sleep(Duration::from_millis(50)).await;
    customer_replies(&m.s.admin, &m.public[5], &m.s.sms, "And another thing").await;
    let b = broadcast(&app, &m.s.key, &m.id).await;
    assert_eq!(
        b["counts"]["replied"], 1,
        "a second message is not a second reply: {b}"
    );
    let again = replied_at(&app, m.bid, m.people[5]);
    assert_eq!(again, first_at);

    // people[6]'s message was delivered 100 hours ago: outside the 72-hour window.
    let long_ago = Utc::now().naive_utc() - chrono::Duration::hours(100);
    diesel::update(
        messages::table
            .filter(messages::campaign_id.eq(m.bid))
            .filter(messages::contact_id.eq(m.people[6])),
    )
    .set((
        messages::sent_at.eq(Some(long_ago)),
        messages::delivered_at.eq(Some(long_ago)),
        messages::read_at.eq(Some(long_ago)),
    ))
    .execute(&mut *app.db())
    .unwrap();
    customer_replies(&m.s.admin, &m.public[6], &m.s.sms, "Late answer").await;
    // people[7] replies on another channel: not a reply to an SMS broadcast.
    customer_replies(&m.s.admin, &m.public[7], &m.s.wa, "Hi on WhatsApp").await;
    // people[4]'s message has no delivery report yet (sent): a reply still counts.
    customer_replies(&m.s.admin, &m.public[4], &m.s.sms, "Got it").await;
    let b = broadcast(&app, &m.s.key, &m.id).await;
    assert_eq!(b["counts"]["replied"], 2, "{b}");

    let page =
        m.s.admin
            .get_html(&format!("/broadcasts/{}?replied=yes", m.id))
            .await;
    assert_eq!(rows(&page), 2);
    assert!(
        page.contains("Reader 05") && page.contains("Reader 04"),
        "{page}"
    );
    assert_eq!(bars(&page)["Replied"].0, 2);
    let not =
        m.s.admin
            .get_html(&format!("/broadcasts/{}?replied=no&status=read", m.id))
            .await;
    assert_eq!(rows(&not), 20, "21 read, one of whom replied");
}

/// The contacts frozen for a follow-up.
fn frozen(app: &TestApp, public_id: &str) -> BTreeSet<i64> {
    let bid = broadcast_id(app, public_id);
    broadcast_follow_up_contacts::table
        .filter(broadcast_follow_up_contacts::broadcast_id.eq(bid))
        .select(broadcast_follow_up_contacts::contact_id)
        .load::<i64>(&mut *app.db())
        .unwrap()
        .into_iter()
        .collect()
}

/// The contacts a broadcast's messages went to.
fn sent_to(app: &TestApp, bid: i64) -> BTreeSet<i64> {
    messages::table
        .filter(messages::campaign_id.eq(bid))
        .select(messages::contact_id)
        .load::<i64>(&mut *app.db())
        .unwrap()
        .into_iter()
        .collect()
}

/// Posts the page's "Send again to..." form.
async fn send_again_form(who: &crate::helpers::Client, id: &str, to: &str) -> reqwest::Response {
    who.post_form(&format!("/broadcasts/{id}/send-again"), &[("to", to)])
        .await
}

/// How many follow-ups a broadcast has.
fn follow_ups_of(app: &TestApp, bid: i64) -> i64 {
    broadcasts::table
        .filter(broadcasts::follow_up_of.eq(bid))
        .count()
        .get_result(&mut *app.db())
        .unwrap()
}

async fn send_again(app: &TestApp, key: &str, id: &str, to: &str) -> (StatusCode, Value) {
    api(
        app,
        Method::POST,
        &format!("/api/v1/broadcasts/{id}/send-again"),
        key,
        Some(&json!({ "to": to })),
    )
    .await
}

async fn send_again_freezes_each_choice_for_those_who_manage_broadcasts(app: TestApp) {
    let m = mixed(&app).await;
    customer_replies(&m.s.admin, &m.public[5], &m.s.sms, "Yes").await;
    let p = &m.people;
    let set = |ids: &[i64]| ids.iter().copied().collect::<BTreeSet<i64>>();
    let reached: BTreeSet<i64> = p[3..].iter().copied().collect();
    let read: BTreeSet<i64> = p[5..].iter().copied().collect();
    let expected: Vec<(&str, BTreeSet<i64>)> = vec![
        ("failed", set(&p[0..3])),
        ("not_delivered", set(&[p[0], p[1], p[2], p[4]])),
        ("not_read", set(&[p[3], p[4]])),
        (
            "not_replied",
            reached.iter().copied().filter(|c| *c != p[5]).collect(),
        ),
        ("replied", set(&[p[5]])),
    ];
    // The page offers each choice with the count it would reach.
    let html = m.s.admin.get_html(&format!("/broadcasts/{}", m.id)).await;
    let offered = crate::helpers::texts(&html, "form.send-again button");
    assert_eq!(
        offered,
        [
            "failed (3)",
            "not delivered (4)",
            "not read (2)",
            "not replied (22)",
            "replied (1)"
        ]
    );
    assert_eq!(read.len(), 21);

    let first_message = broadcast(&app, &m.s.key, &m.id).await["message"].clone();
    let mut not_read_id = String::new();
    for (to, who) in &expected {
        let (status, draft) = send_again(&app, &m.s.key, &m.id, to).await;
        assert_eq!(status, StatusCode::CREATED, "{to}: {draft}");
        assert_eq!(draft["state"], "draft");
        assert_eq!(draft["channel"]["id"], json!(m.s.sms.public_id), "{draft}");
        assert_eq!(draft["message"], first_message, "the same message");
        assert_eq!(draft["audience"]["follow_up"]["of"], json!(m.id));
        assert_eq!(draft["audience"]["follow_up"]["contacts"], json!(who.len()));
        let new_id = draft["id"].as_str().unwrap().to_owned();
        assert_eq!(&frozen(&app, &new_id), who, "{to}");
        let first: Option<i64> = broadcasts::table
            .filter(broadcasts::public_id.eq(&new_id))
            .select(broadcasts::follow_up_of)
            .first(&mut *app.db())
            .unwrap();
        assert_eq!(first, Some(m.bid));
        if *to == "not_read" {
            assert_eq!(draft["name"], "Spring offer (again: not read)");
            not_read_id = new_id;
        }
    }

    // Frozen: the first broadcast changes (people[3] reads it now), the follow-up does not.
    set_outcome(&app, m.bid, p[3], "read", None);
    assert_eq!(frozen(&app, &not_read_id), set(&[p[3], p[4]]));
    assert_eq!(estimate_of(&app, &m.s.key, &not_read_id).await["reach"], 2);
    // Saving the draft through the API keeps its audience.
    let (status, saved) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/broadcasts/{not_read_id}"),
        &m.s.key,
        Some(&json!({
            "name": "Spring offer, second try",
            "channel": m.s.sms.name,
            "audience": {"lists": ["All"]},
            "message": {"text": "Last days of the spring offer."},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["audience"]["follow_up"]["contacts"], 2, "{saved}");

    // Links both ways.
    let first_page = m.s.admin.get_html(&format!("/broadcasts/{}", m.id)).await;
    assert!(first_page.contains(&format!("href=\"/broadcasts/{not_read_id}\"")));
    let follow_page =
        m.s.admin
            .get_html(&format!("/broadcasts/{not_read_id}"))
            .await;
    assert!(follow_page.contains("Follow-up of"), "{follow_page}");
    assert!(follow_page.contains(&format!("href=\"/broadcasts/{}\"", m.id)));

    // It launches like any draft, to exactly the frozen contacts.
    let fid = launch_and_finish(&app, &m.s, &not_read_id).await;
    assert_eq!(sent_to(&app, fid), set(&[p[3], p[4]]));

    // Refusals: an unknown choice, a broadcast that has not started, and a support lead (who
    // views broadcasts but does not compose them), through the API and the page.
    let (status, err) = send_again(&app, &m.s.key, &m.id, "everyone").await;
    assert!(status.is_client_error(), "{status} {err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not_read"),
        "{err}"
    );
    let (_, draft) = api(
        &app,
        Method::POST,
        "/api/v1/broadcasts",
        &m.s.key,
        Some(&json!({"name": "Unsent", "channel": m.s.sms.name, "audience": {"lists": ["All"]}, "message": {"text": "Hi"}})),
    )
    .await;
    let (status, err) = send_again(&app, &m.s.key, draft["id"].as_str().unwrap(), "failed").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "not_started");
    let lead_key = create_api_key(&m.s.admin, "Lead", "support_lead").await;
    let (status, _) = send_again(&app, &lead_key, &m.id, "failed").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let lead_page = m.s.lead.get_html(&format!("/broadcasts/{}", m.id)).await;
    assert!(
        !lead_page.contains("send-again"),
        "no offer to a support lead"
    );
    let res = send_again_form(&m.s.lead, &m.id, "failed").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The page's form creates the draft and opens it.
    let before = follow_ups_of(&app, m.bid);
    let res = send_again_form(&m.s.admin, &m.id, "failed").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = location(&res);
    assert!(
        to.starts_with("/broadcasts/") && to != format!("/broadcasts/{}", m.id),
        "{to}"
    );
    let opened = m.s.admin.get_html(&to).await;
    assert!(opened.contains("Spring offer (again: failed)"), "{opened}");
    assert!(
        opened.contains("Draft created for the 3 recipients"),
        "{opened}"
    );
    let after = follow_ups_of(&app, m.bid);
    assert_eq!(after, before + 1);
}

/// The marketer's flow in Chromium: a finished broadcast's funnel, then "Send again to: not
/// read", confirmed, and the follow-up launched to the two who did not read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_a_marketer_sends_a_finished_broadcast_again_to_those_who_did_not_read_it() {
    use crate::broadcasts::{click_and_confirm, wait_in};
    let app = spawn(crate::helpers::Backend::Sqlite).await;
    let m = mixed(&app).await;
    let marketer = "mia@example.com";
    app.user_with_role(&m.s.admin, marketer, "marketer").await;
    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(marketer, crate::helpers::PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.goto(&format!("/broadcasts/{}", m.id)).await;
    // The funnel's figures are text on the page.
    wait_in(&b, "#results", "Delivered", 5).await;
    let results = b.text("#results").await;
    for figure in ["Targeted", "27", "Read", "21", "Failed", "30007"] {
        assert!(results.contains(figure), "{figure} missing: {results}");
    }
    click_and_confirm(&b, "form.send-again button[value=not_read]").await;
    b.wait_for_text("Draft created for the 2 recipients who did not read it")
        .await;
    wait_in(&b, "h1", "Spring offer (again: not read)", 5).await;
    wait_in(&b, "main", "Follow-up of", 5).await;
    click_and_confirm(&b, "form[action$='/launch'] button").await;
    b.wait_for_text("Launched: sending to 2 recipients.").await;
    let follow_up = b.path().await;
    let id = follow_up.trim_start_matches("/broadcasts/").to_owned();
    wait_for_state(&app, &m.s.key, &id, "completed", 30).await;
    let fid = broadcast_id(&app, &id);
    assert_eq!(
        sent_to(&app, fid),
        [m.people[3], m.people[4]].into_iter().collect()
    );
    b.finish().await;
}

crate::both_backends!(
    spawn = spawn;
    the_funnel_failures_and_recipient_table_agree_with_the_messages,
    replies_count_once_within_the_window_after_delivery,
    send_again_freezes_each_choice_for_those_who_manage_broadcasts
);

/// The admin's path in Chromium: a customer says she never got last Tuesday's WhatsApp
/// broadcast. The admin filters the history by her phone (typed as she gave it) and that
/// broadcast, opens the message, reads why it failed and who approved the template, then
/// filters to every failure of that broadcast and exports them as CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_an_admin_finds_why_a_customer_missed_last_tuesdays_broadcast() {
    use chrono::{Datelike, Weekday};
    let app = spawn(crate::helpers::Backend::Sqlite).await;
    let s = setup(&app).await;
    crate::fixtures::approved_template(&app, &s, "spring_sale", crate::fixtures::WA_BODY).await;
    let mut people = Vec::new();
    for (phone, name) in [
        ("+16505550142", "Grace Hopper"),
        ("+16505550143", "Alan Turing"),
        ("+16505550144", "Ada Lovelace"),
        ("+16505550145", "=HYPERLINK(\"x\")"),
    ] {
        let id = contact(
            &app,
            &s.key,
            json!({"phone": phone, "name": name, "lists": ["Customers"]}),
        )
        .await;
        people.push(internal_contact(&app, &id));
    }
    let (status, b) = api(
        &app,
        Method::POST,
        "/api/v1/broadcasts",
        &s.key,
        Some(&json!({
            "name": "Tuesday spring sale",
            "channel": s.wa.name,
            "audience": {"lists": ["Customers"]},
            "message": {"template": {"name": "spring_sale", "language": "en_US",
                "variables": {"1": {"source": "attribute", "key": "name"}, "2": "SPRING"}}},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    let bid = launch_and_finish(&app, &s, &id).await;
    // What the provider said later: Grace's number is not on WhatsApp; the fourth person's
    // message was not delivered either.
    set_outcome(
        &app,
        bid,
        people[0],
        "failed",
        Some(("131026", "Message undeliverable")),
    );
    set_outcome(
        &app,
        bid,
        people[3],
        "failed",
        Some((
            "131049",
            "Not delivered to maintain healthy ecosystem engagement",
        )),
    );
    // It went out last Tuesday (a week ago when today is a Tuesday).
    let today = Utc::now().date_naive();
    let back =
        (today.weekday().num_days_from_monday() + 7 - Weekday::Tue.num_days_from_monday()) % 7;
    let tuesday = today - chrono::Duration::days(if back == 0 { 7 } else { back.into() });
    let at = tuesday.and_hms_opt(10, 0, 0).expect("time");
    diesel::update(messages::table.filter(messages::campaign_id.eq(bid)))
        .set(messages::created_at.eq(at))
        .execute(&mut *app.db())
        .expect("last Tuesday");

    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    b.wait_for_text("Sign out").await;
    b.click(".sidebar a[href='/history']").await;
    b.wait_for_text("Every message sent").await;
    // Her number as she says it, last Tuesday, that broadcast.
    b.fill("#history-contact", "(650) 555-0142").await;
    let day = tuesday.format("%Y-%m-%d").to_string();
    b.client
        .execute(
            "document.getElementById('history-since').value = arguments[0];
             document.getElementById('history-until').value = arguments[0];",
            vec![json!(day)],
        )
        .await
        .expect("dates");
    b.client
        .find(fantoccini::Locator::Css("#history-broadcast"))
        .await
        .expect("broadcast filter")
        .select_by_label("Tuesday spring sale")
        .await
        .expect("choose the broadcast");
    b.click("#history-filters button[type=submit]").await;
    b.wait_for_text("1 message match these filters.").await;
    let row = b.text("#history-table tbody tr").await;
    assert!(row.contains("Grace Hopper"), "{row}");
    assert!(row.contains("Failed"), "{row}");
    // Her message: why, and who approved the template it used.
    b.click("#history-table tbody tr a.nowrap").await;
    b.wait_for_text("131026").await;
    let page = b.text("main").await;
    assert!(page.contains("Message undeliverable"), "{page}");
    assert!(
        page.contains("Tuesday spring sale"),
        "its broadcast: {page}"
    );
    let template = b.text("#message-template").await;
    assert!(template.contains("spring_sale"), "{template}");
    assert!(
        template.contains("approved by Test Person"),
        "the support lead approved it: {template}"
    );
    // Every failure of that broadcast, exported.
    b.goto(&format!("/history?broadcast={id}&status=failed"))
        .await;
    b.wait_for_text("2 messages match these filters.").await;
    let href = b
        .client
        .find(fantoccini::Locator::Css("#history-export"))
        .await
        .expect("export link")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    assert!(
        href.contains("status=failed") && href.contains(&format!("broadcast={id}")),
        "{href}"
    );
    let csv = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.getElementById('history-export').href)
               .then(r => r.text()).then(done, e => done('error: ' + e));",
            vec![],
        )
        .await
        .expect("the export");
    let csv = csv.as_str().expect("text").to_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "a header and the two failures: {csv}");
    assert!(csv.contains("131026") && csv.contains("131049"), "{csv}");
    assert!(csv.contains("+16505550142"), "{csv}");
    assert!(
        !csv.contains(",=HYPERLINK") && !csv.contains(",\"=HYPERLINK"),
        "a formula is neutralised: {csv}"
    );
    b.finish().await;
}
