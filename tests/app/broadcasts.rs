//! Broadcasts through the API on the sandbox: a draft from JSON (idempotent), the reach
//! estimate, a launch that happens once however often it is asked, every recipient sent to
//! once, pause and resume without repeats, cancel, launch approval, and a schedule.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use diesel::prelude::*;
use herald::storage::schema::{message_events, messages};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::{Setup, contact, setup, spawn};
use crate::helpers::{TestApp, create_api_key};
use crate::provider_kit::api;

/// A text broadcast on the sandbox SMS channel to `audience`.
fn draft(s: &Setup, name: &str, audience: Value) -> Value {
    json!({
        "name": name,
        "channel": s.sms.name,
        "audience": audience,
        "message": {"text": "Our winter sale starts today."},
    })
}

/// Sets the channel's rate; the dispatcher's lane reads it again within 2 seconds.
async fn set_rate(app: &TestApp, s: &Setup, rate: i64) {
    let (status, ch) = api(
        app,
        Method::PATCH,
        &format!("/api/v1/channels/{}", s.sms.public_id),
        &s.key,
        Some(&json!({"rate_limit_per_second": rate})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ch}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

async fn post_draft(
    app: &TestApp,
    key: &str,
    body: &Value,
    idem: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/broadcasts", app.address))
        .bearer_auth(key)
        .json(body);
    if let Some(k) = idem {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.expect("POST");
    let status = res.status();
    (status, res.json().await.expect("JSON"))
}

pub(crate) async fn broadcast(app: &TestApp, key: &str, id: &str) -> Value {
    let (status, b) = api(
        app,
        Method::GET,
        &format!("/api/v1/broadcasts/{id}"),
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b
}

/// A draft's reach estimate (answered 200).
pub(crate) async fn estimate_of(app: &TestApp, key: &str, id: &str) -> Value {
    let (status, estimate) = api(
        app,
        Method::GET,
        &format!("/api/v1/broadcasts/{id}/estimate"),
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{estimate}");
    estimate
}

pub(crate) async fn control(app: &TestApp, key: &str, id: &str, what: &str) -> (StatusCode, Value) {
    api(
        app,
        Method::POST,
        &format!("/api/v1/broadcasts/{id}/{what}"),
        key,
        None,
    )
    .await
}

pub(crate) async fn wait_for_state(
    app: &TestApp,
    key: &str,
    id: &str,
    state: &str,
    secs: u64,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let b = broadcast(app, key, id).await;
        if b["state"] == state {
            return b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broadcast never became {state}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many messages of any broadcast each contact (by internal id) has.
fn campaign_messages_per_contact(app: &TestApp) -> HashMap<i64, i64> {
    let rows: Vec<(i64, i64)> = messages::table
        .filter(messages::campaign_id.is_not_null())
        .group_by(messages::contact_id)
        .select((messages::contact_id, diesel::dsl::count_star()))
        .load(&mut *app.db())
        .expect("counts");
    rows.into_iter().collect()
}

async fn contacts(app: &TestApp, key: &str, n: usize, first: u32, lists: &[&str], city: &str) {
    for i in 0..n {
        contact(
            app,
            key,
            json!({
                "phone": format!("+1415555{:04}", first as usize + i),
                "name": format!("Person {}", first as usize + i),
                "attributes": {"city": city},
                "lists": lists,
            }),
        )
        .await;
    }
}

async fn a_broadcast_reaches_its_audience_once(app: TestApp) {
    let s = setup(&app).await;
    // The audience: VIPs not in Berlin, minus staff. 6 in Paris, 3 in Berlin, 2 staff in
    // Paris, 4 not VIPs; one Paris VIP opted out of SMS.
    contacts(&app, &s.key, 6, 0, &["VIP"], "Paris").await;
    contacts(&app, &s.key, 3, 100, &["VIP"], "Berlin").await;
    contacts(&app, &s.key, 2, 200, &["VIP", "Staff"], "Paris").await;
    contacts(&app, &s.key, 4, 300, &[], "Paris").await;
    contact(
        &app,
        &s.key,
        json!({"phone": "+14155550000", "consent": {"sms": "opted_out"}}),
    )
    .await;
    let audience = json!({
        "lists": ["VIP"],
        "exclude_lists": ["Staff"],
        "filter": {"match": "all", "conditions": [
            {"field": "attributes.city", "op": "ne", "value": "berlin"}
        ]}
    });
    let body = draft(&s, "Winter sale", audience.clone());

    // Refusals say what is wrong and where, and store nothing.
    let mut bad = body.clone();
    bad["audience"]["lists"] = json!(["No such list"]);
    bad["schedule"] = json!({"at": "2020-01-01T09:00:00Z"});
    let (status, err) = post_draft(&app, &s.key, &bad, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let fields = &err["error"]["fields"];
    assert!(
        fields["audience.lists"]
            .as_str()
            .unwrap_or_default()
            .contains("No such list"),
        "{err}"
    );
    assert!(
        fields["schedule.at"]
            .as_str()
            .unwrap_or_default()
            .contains("passed"),
        "{err}"
    );
    let mut wa_text = body.clone();
    wa_text["channel"] = json!(s.wa.name);
    let (status, err) = post_draft(&app, &s.key, &wa_text, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("template"),
        "{err}"
    );

    // A draft, idempotently.
    let (status, b) = post_draft(&app, &s.key, &body, Some("sale-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["state"], "draft");
    let id = b["id"].as_str().expect("id").to_owned();
    let (status, again) = post_draft(&app, &s.key, &body, Some("sale-1")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id.as_str());
    let (status, other) =
        post_draft(&app, &s.key, &draft(&s, "Other", audience), Some("sale-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused");

    // The estimate: 6 Paris VIPs (the 2 staff and 3 in Berlin are not matched), one opted out.
    let estimate = estimate_of(&app, &s.key, &id).await;
    assert_eq!(estimate["matched"], 6, "{estimate}");
    assert_eq!(estimate["reach"], 5, "{estimate}");
    assert_eq!(estimate["excluded"]["opted_out"], 1, "{estimate}");

    // Equality tests of one attribute in an "any" group are read as one IN, ignoring case
    // like one test; the group's other conditions still count. 8 VIPs in Paris, 3 in Berlin.
    for (conditions, matched) in [
        (
            json!([
                {"field": "attributes.city", "op": "eq", "value": "PARIS"},
                {"field": "attributes.city", "op": "eq", "value": "Berlin"}
            ]),
            11,
        ),
        (
            json!([
                {"field": "attributes.city", "op": "eq", "value": "lyon"},
                {"field": "name", "op": "contains", "value": "person 10"},
                {"field": "attributes.city", "op": "eq", "value": "BERLIN"}
            ]),
            3,
        ),
        (
            json!([
                {"field": "attributes.city", "op": "eq", "value": "lyon"},
                {"field": "name", "op": "eq", "value": "person 1"},
                {"field": "attributes.city", "op": "eq", "value": "Rome"}
            ]),
            1,
        ),
    ] {
        let any = json!({"lists": ["VIP"], "filter": {"match": "any", "conditions": conditions}});
        let (status, other) = post_draft(&app, &s.key, &draft(&s, "Any city", any), None).await;
        assert_eq!(status, StatusCode::CREATED, "{other}");
        let other_id = other["id"].as_str().expect("id");
        let e = estimate_of(&app, &s.key, other_id).await;
        assert_eq!(e["matched"], matched, "{conditions}: {e}");
    }

    // Launched from two clients at once: exactly one launch.
    let (a, b2) = tokio::join!(
        control(&app, &s.key, &id, "launch"),
        control(&app, &s.key, &id, "launch")
    );
    let oks = [&a, &b2]
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    assert_eq!(oks, 1, "{a:?} {b2:?}");
    let refused = if a.0 == StatusCode::OK { &b2 } else { &a };
    assert_eq!(refused.0, StatusCode::CONFLICT, "{refused:?}");

    let done = wait_for_state(&app, &s.key, &id, "completed", 60).await;
    let counts = &done["counts"];
    assert_eq!(counts["recipients"], 6, "{done}");
    assert_eq!(counts["skipped"], 1, "{done}");
    assert_eq!(counts["pending"], 0, "{done}");
    let reached = counts["sent"].as_i64().unwrap()
        + counts["delivered"].as_i64().unwrap()
        + counts["read"].as_i64().unwrap();
    assert_eq!(reached, 5, "{done}");
    let per_contact = campaign_messages_per_contact(&app);
    assert_eq!(per_contact.len(), 5);
    assert!(per_contact.values().all(|n| *n == 1), "{per_contact:?}");

    // Each message has a public id of its own, and its timeline starts with its queueing by
    // the broadcast (on SQLite the database writes a text batch from the recipients' rows).
    let written: Vec<(i64, String, String)> = messages::table
        .filter(messages::campaign_id.is_not_null())
        .select((messages::id, messages::public_id, messages::to_address))
        .load(&mut *app.db())
        .expect("messages");
    let public_ids: HashSet<&str> = written.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(public_ids.len(), 5, "{written:?}");
    for (message_id, _, to) in &written {
        assert!(to.starts_with('+'), "{written:?}");
        let first: (String, String) = message_events::table
            .filter(message_events::message_id.eq(message_id))
            .order(message_events::id.asc())
            .select((message_events::status, message_events::detail))
            .first(&mut *app.db())
            .expect("a timeline");
        assert_eq!(
            first,
            ("queued".to_owned(), "Broadcast \"Winter sale\"".to_owned())
        );
    }

    // A broadcast's message names its broadcast.
    let message_id: String = messages::table
        .filter(messages::campaign_id.is_not_null())
        .select(messages::public_id)
        .first(&mut *app.db())
        .expect("a message");
    let (_, m) = api(
        &app,
        Method::GET,
        &format!("/api/v1/messages/{message_id}"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(m["broadcast_id"], id.as_str(), "{m}");
    assert_eq!(m["source"], "broadcast", "{m}");

    // Nothing changes a completed broadcast.
    let (status, _) = control(&app, &s.key, &id, "cancel").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/broadcasts/{id}"),
        &s.key,
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, list) = api(
        &app,
        Method::GET,
        "/api/v1/broadcasts?state=completed",
        &s.key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

async fn pause_and_resume_never_send_twice(app: TestApp) {
    let s = setup(&app).await;
    // Slow enough to pause during: 60 recipients at 20 a second.
    contacts(&app, &s.key, 60, 0, &["All"], "Paris").await;
    set_rate(&app, &s, 20).await;
    let (status, b) = post_draft(
        &app,
        &s.key,
        &draft(&s, "Paced", json!({"lists": ["All"]})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (status, launched) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::OK, "{launched}");
    assert_eq!(launched["state"], "running");

    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, paused) = control(&app, &s.key, &id, "pause").await;
        assert_eq!(status, StatusCode::OK, "round {round}: {paused}");
        assert!(
            paused["counts"]["pending"].as_i64().unwrap() > 0,
            "paused before the end: {paused}"
        );
        // A second pause is answered with the paused broadcast, not an error.
        let (status, again) = control(&app, &s.key, &id, "pause").await;
        assert_eq!(
            (status, again["state"].clone()),
            (StatusCode::OK, json!("paused"))
        );
        // What was in flight finishes (messages claimed before the pause wait for their rate
        // slots, at most the dispatcher's look-ahead); then nothing moves while paused.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = broadcast(&app, &s.key, &id).await["counts"].clone();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let after = broadcast(&app, &s.key, &id).await["counts"].clone();
        assert_eq!(
            before["pending"], after["pending"],
            "round {round}: {before} {after}"
        );
        let (status, resumed) = control(&app, &s.key, &id, "resume").await;
        assert_eq!(status, StatusCode::OK, "{resumed}");
    }
    let done = wait_for_state(&app, &s.key, &id, "completed", 60).await;
    assert_eq!(done["counts"]["recipients"], 60);
    assert_eq!(done["counts"]["pending"], 0, "{done}");
    let per_contact = campaign_messages_per_contact(&app);
    assert_eq!(per_contact.len(), 60);
    assert!(per_contact.values().all(|n| *n == 1), "{per_contact:?}");
}

async fn cancel_approval_and_schedule(app: TestApp) {
    let s = setup(&app).await;
    contacts(&app, &s.key, 5, 0, &["All"], "Paris").await;
    // Cancelling a draft.
    let (_, b) = post_draft(
        &app,
        &s.key,
        &draft(&s, "Dropped", json!({"lists": ["All"]})),
        None,
    )
    .await;
    let id = b["id"].as_str().unwrap().to_owned();
    let (status, c) = control(&app, &s.key, &id, "cancel").await;
    assert_eq!(
        (status, c["state"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (status, _) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::CONFLICT);

    // An empty audience is refused at launch and leaves the draft as it was.
    let (_, b) = post_draft(
        &app,
        &s.key,
        &draft(
            &s,
            "Nobody",
            json!({"filter": {"conditions": [{"field": "attributes.city", "op": "eq", "value": "Atlantis"}]}}),
        ),
        None,
    )
    .await;
    let empty = b["id"].as_str().unwrap().to_owned();
    let (status, err) = control(&app, &s.key, &empty, "launch").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "empty_audience");
    assert_eq!(broadcast(&app, &s.key, &empty).await["state"], "draft");

    // Launch approval: the author's launch waits; the author cannot approve it; a support
    // lead can.
    herald::storage::settings::set(&mut app.db(), "broadcasts.launch_approval", "on").unwrap();
    let marketer = create_api_key(&s.admin, "Marketing", "marketer").await;
    let lead = create_api_key(&s.admin, "Lead", "support_lead").await;
    let (status, b) = post_draft(
        &app,
        &marketer,
        &draft(&s, "Needs a yes", json!({"lists": ["All"]})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (status, pending) = control(&app, &marketer, &id, "launch").await;
    assert_eq!(
        (status, pending["state"].clone()),
        (StatusCode::OK, json!("pending_approval"))
    );
    let (status, _) = control(&app, &marketer, &id, "approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "marketers do not approve");
    let (status, rejected) = api(
        &app,
        Method::POST,
        &format!("/api/v1/broadcasts/{id}/reject"),
        &lead,
        Some(&json!({"note": ""})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a rejection says why: {rejected}"
    );
    let (status, approved) = control(&app, &lead, &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert!(
        ["running", "completed"].contains(&approved["state"].as_str().unwrap()),
        "{approved}"
    );
    wait_for_state(&app, &s.key, &id, "completed", 60).await;
    herald::storage::settings::set(&mut app.db(), "broadcasts.launch_approval", "off").unwrap();

    // A schedule in a time zone: scheduled, then running on time, then completed.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let mut later = draft(&s, "Later", json!({"lists": ["All"]}));
    later["schedule"] = json!({"at": at, "time_zone": "America/New_York"});
    let (status, b) = post_draft(&app, &s.key, &later, None).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (status, scheduled) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(
        (status, scheduled["state"].clone()),
        (StatusCode::OK, json!("scheduled")),
        "{scheduled}"
    );
    assert_eq!(scheduled["counts"]["sent"], 0);
    let done = wait_for_state(&app, &s.key, &id, "completed", 60).await;
    let started =
        chrono::DateTime::parse_from_rfc3339(done["started_at"].as_str().unwrap()).unwrap();
    let planned =
        chrono::DateTime::parse_from_rfc3339(done["schedule"]["at"].as_str().unwrap()).unwrap();
    assert!(started >= planned, "started {started} before {planned}");
}

async fn a_disabled_channel_pauses_the_broadcast_with_the_reason(app: TestApp) {
    let s = setup(&app).await;
    contacts(&app, &s.key, 40, 0, &["All"], "Paris").await;
    set_rate(&app, &s, 5).await;
    let (_, b) = post_draft(
        &app,
        &s.key,
        &draft(&s, "Interrupted", json!({"lists": ["All"]})),
        None,
    )
    .await;
    let id = b["id"].as_str().unwrap().to_owned();
    let (status, _) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{}", s.sms.public_id),
        &s.key,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let paused = wait_for_state(&app, &s.key, &id, "paused", 30).await;
    assert!(
        paused["pause_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled"),
        "{paused}"
    );
    // Resuming before the channel is back is refused with the reason.
    let (status, err) = control(&app, &s.key, &id, "resume").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (status, _) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{}", s.sms.public_id),
        &s.key,
        Some(&json!({"enabled": true, "rate_limit_per_second": 100})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = control(&app, &s.key, &id, "resume").await;
    assert_eq!(status, StatusCode::OK);
    let done = wait_for_state(&app, &s.key, &id, "completed", 60).await;
    assert_eq!(done["counts"]["pending"], 0, "{done}");
    assert!(
        campaign_messages_per_contact(&app)
            .values()
            .all(|n| *n == 1)
    );
}

async fn the_pages_compose_review_test_launch_and_follow_a_broadcast(app: TestApp) {
    let s = setup(&app).await;
    contacts(&app, &s.key, 4, 0, &["All"], "Paris").await;
    contacts(&app, &s.key, 2, 100, &["All"], "Berlin").await;
    let list = herald::storage::lists::find_by_name(&mut app.db(), "All")
        .unwrap()
        .expect("the list");
    let html = s.admin.get_html("/broadcasts").await;
    assert!(html.contains("No broadcasts yet"), "{html}");

    // A refused draft keeps what was typed and says what is wrong, by field.
    let res = s
        .admin
        .post_form(
            "/broadcasts",
            &[
                ("name", ""),
                ("channel", &s.sms.public_id),
                ("text", "Hello"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("Give the broadcast a name."), "{html}");
    assert!(html.contains(">Hello</textarea>"), "{html}");

    let res = s
        .admin
        .post_form(
            "/broadcasts",
            &[
                ("name", "Paris sale"),
                ("channel", &s.sms.public_id),
                ("list", &list.public_id),
                ("match", "all"),
                ("c0.field", "attributes.city"),
                ("c0.op", "eq"),
                ("c0.value", "Paris"),
                ("c1.field", ""),
                ("c1.op", "eq"),
                ("c1.value", ""),
                ("text", "Sale in Paris today."),
                ("time_zone", "Europe/Paris"),
                ("next", "review"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = crate::helpers::location(&res);
    let id = page.trim_start_matches("/broadcasts/").to_owned();
    let html = s.admin.get_html(&page).await;
    assert!(html.contains("data-reach>4<"), "the reach: {html}");
    assert!(html.contains("Sale in Paris today."), "the preview: {html}");
    assert!(
        html.contains("1 segment per message"),
        "SMS segments: {html}"
    );
    // The form comes back with what was saved.
    let form = s.admin.get_html(&format!("{page}/edit")).await;
    assert!(form.contains("value=\"Paris\""), "{form}");

    // A test send goes through the usual path, marked as a test and outside the broadcast.
    let res = s
        .admin
        .post_form(&format!("{page}/test"), &[("phones", "+14155550001")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let tests: Vec<Option<i64>> = messages::table
        .filter(messages::requested_by.like("%test of broadcast%"))
        .select(messages::campaign_id)
        .load(&mut *app.db())
        .unwrap();
    assert_eq!(tests, vec![None]);
    let res = s
        .admin
        .post_form(&format!("{page}/test"), &[("phones", "+19999")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Launch, then the live page follows it to the end.
    let res = s.admin.post_form(&format!("{page}/launch"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    wait_for_state(&app, &s.key, &id, "completed", 60).await;
    let html = s.admin.get_html(&page).await;
    assert!(html.contains("sse-connect=\"/broadcasts/"), "{html}");
    assert!(html.contains("Completed"), "{html}");
    assert_eq!(
        crate::helpers::texts(&html, "#recipients tbody tr").len(),
        4,
        "{html}"
    );
    let mut events = s.admin.get(&format!("{page}/events")).await;
    let first = events.chunk().await.unwrap().expect("an event");
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("event: progress"), "{first}");
    assert!(first.contains("data-count=\"sent\""), "{first}");
    let list_html = s.admin.get_html("/broadcasts?state=completed").await;
    assert!(list_html.contains("Paris sale"), "{list_html}");

    // Support leads see broadcasts but do not compose them; settings are for admins.
    let html = s.lead.get_html("/broadcasts").await;
    assert!(
        html.contains("Paris sale") && !html.contains("New broadcast"),
        "{html}"
    );
    let res = s.lead.post_form("/broadcasts", &[("name", "x")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = s
        .admin
        .post_form("/broadcasts/settings", &[("frequency_cap", "lots")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = s
        .admin
        .post_form(
            "/broadcasts/settings",
            &[
                ("launch_approval", "on"),
                ("frequency_cap", "3"),
                ("failure_pause_percent", "20"),
                ("reply_window_hours", "72"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let settings =
        herald::storage::settings::get(&mut app.db(), "broadcasts.frequency_cap").unwrap();
    assert_eq!(settings.as_deref(), Some("3"));
}

async fn a_template_broadcast_fills_each_recipient_and_honours_the_frequency_cap(app: TestApp) {
    let s = setup(&app).await;
    crate::fixtures::approved_template(&app, &s, "order_news", crate::fixtures::WA_BODY).await;
    for (i, (name, order)) in [("Ada", Some("#1")), ("", Some("#2")), ("Cy", None)]
        .iter()
        .enumerate()
    {
        let mut attributes = json!({});
        if let Some(o) = order {
            attributes["order"] = json!(o);
        }
        contact(
            &app,
            &s.key,
            json!({"phone": format!("+1415555010{i}"), "name": name, "attributes": attributes, "lists": ["Buyers"]}),
        )
        .await;
    }
    let body = json!({
        "name": "Order news",
        "channel": s.wa.name,
        "audience": {"lists": ["Buyers"]},
        "message": {"template": {"name": "order_news", "language": "en_US", "variables": {
            "1": {"source": "attribute_with_fallback", "key": "name", "fallback": "there"},
            "2": {"source": "attribute", "key": "order"}
        }}},
    });
    // A variable the template does not have is refused at the field.
    let mut wrong = body.clone();
    wrong["message"]["template"]["variables"]["3"] = json!("x");
    let (status, err) = post_draft(&app, &s.key, &wrong, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["fields"]["message.variables.3"].is_string(),
        "{err}"
    );

    let (status, b) = post_draft(&app, &s.key, &body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (_, estimate) = api(
        &app,
        Method::GET,
        &format!("/api/v1/broadcasts/{id}/estimate"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(estimate["reach"], 2, "{estimate}");
    assert_eq!(estimate["excluded"]["missing_variable"], 1, "{estimate}");
    let (status, _) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::OK);
    let done = wait_for_state(&app, &s.key, &id, "completed", 60).await;
    assert_eq!(done["counts"]["skipped"], 1, "{done}");
    let mut bodies: Vec<String> = messages::table
        .filter(messages::campaign_id.is_not_null())
        .select(messages::body)
        .load(&mut *app.db())
        .unwrap();
    bodies.sort();
    assert_eq!(
        bodies,
        vec![
            "Hi Ada, your order #1 has shipped.".to_owned(),
            "Hi there, your order #2 has shipped.".to_owned()
        ]
    );

    // With a cap of one broadcast message a week, the two reached are left out next time.
    herald::storage::settings::set(&mut app.db(), "broadcasts.frequency_cap", "1").unwrap();
    let mut again = body.clone();
    again["name"] = json!("More news");
    let (_, b) = post_draft(&app, &s.key, &again, None).await;
    let id = b["id"].as_str().unwrap();
    let (_, estimate) = api(
        &app,
        Method::GET,
        &format!("/api/v1/broadcasts/{id}/estimate"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(estimate["reach"], 0, "{estimate}");
    assert_eq!(estimate["excluded"]["frequency_cap"], 2, "{estimate}");
}

async fn the_messaging_limit_holds_a_broadcast_and_lets_it_go_on(app: TestApp) {
    let s = setup(&app).await;
    crate::fixtures::approved_template(&app, &s, "limited", "Hi {{1}}, news for you.").await;
    let limit = |n: &str| json!({"settings": {"messaging_limit": n}});
    let (status, ch) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{}", s.wa.public_id),
        &s.key,
        Some(&limit("3")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ch}");
    contacts(&app, &s.key, 5, 0, &["Five"], "Paris").await;
    let (_, b) = post_draft(
        &app,
        &s.key,
        &json!({"name": "Limited", "channel": s.wa.name, "audience": {"lists": ["Five"]},
                "message": {"template": {"name": "limited", "language": "en_US",
                            "variables": {"1": {"source": "attribute", "key": "name"}}}}}),
        None,
    )
    .await;
    let id = b["id"].as_str().expect("id").to_owned();
    let (status, _) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::OK);
    // Three go out; the other two wait, and the page says why and until when.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let held = loop {
        let b = broadcast(&app, &s.key, &id).await;
        if b["pause_reason"]
            .as_str()
            .is_some_and(|r| r.contains("messaging limit"))
            && b["counts"]["pending"] == 2
        {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never held by the limit: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(held["state"], "running", "{held}");
    // The page's projected duration counts the limit: 5 customers at 3 a day.
    let html = s.admin.get_html(&format!("/broadcasts/{id}")).await;
    assert!(
        html.contains("messaging limit (3 customers per 24 hours) spreads it over about 2 days"),
        "{html}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broadcast(&app, &s.key, &id).await["counts"]["pending"],
        2,
        "still held"
    );
    assert_eq!(campaign_messages_per_contact(&app).len(), 3);
    // A higher limit lets it go on to the end.
    let (status, _) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{}", s.wa.public_id),
        &s.key,
        Some(&limit("250")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let done = wait_for_state(&app, &s.key, &id, "completed", 30).await;
    assert!(done["pause_reason"].is_null(), "{done}");
    assert_eq!(campaign_messages_per_contact(&app).len(), 5);
}

crate::both_backends!(
    spawn = spawn;
    the_messaging_limit_holds_a_broadcast_and_lets_it_go_on,
    a_template_broadcast_fills_each_recipient_and_honours_the_frequency_cap,
    the_pages_compose_review_test_launch_and_follow_a_broadcast,
    a_broadcast_reaches_its_audience_once,
    pause_and_resume_never_send_twice,
    cancel_approval_and_schedule,
    a_disabled_channel_pauses_the_broadcast_with_the_reason,
);

/// `n` (at most 10,000) contacts in the list `list_id`, every other one in Paris, straight into the database.
fn bulk_contacts(app: &TestApp, n: i64, list_id: i64) {
    use diesel::connection::SimpleConnection;
    let postgres = app.database_url.starts_with("postgres");
    let (series, phone, city) = if postgres {
        (
            format!("SELECT i FROM generate_series(0, {}) AS i", n - 1),
            "'+1415555' || lpad(i::text, 4, '0')",
            "CASE WHEN i % 2 = 0 THEN '{\"city\":\"Paris\"}' ELSE '{\"city\":\"Lyon\"}' END",
        )
    } else {
        (
            format!(
                "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {}) SELECT i FROM seq",
                n - 1
            ),
            "'+1415555' || printf('%04d', i)",
            "CASE WHEN i % 2 = 0 THEN '{\"city\":\"Paris\"}' ELSE '{\"city\":\"Lyon\"}' END",
        )
    };
    let now = "2026-01-01 00:00:00";
    app.db()
        .batch_execute(&format!(
            "INSERT INTO contacts (public_id, phone, name, email, language, time_zone, attributes, created_at, updated_at) \
             SELECT 'bulk-' || i, {phone}, 'Person ' || i, '', '', '', {city}, '{now}', '{now}' FROM ({series}) s; \
             INSERT INTO list_members (list_id, contact_id, added_at) SELECT {list_id}, id, '{now}' FROM contacts WHERE public_id LIKE 'bulk-%'; \
             INSERT INTO attribute_keys (key, created_at) VALUES ('city', '{now}');"
        ))
        .expect("bulk contacts");
}

pub(crate) async fn select(b: &crate::browser::Browser, css: &str, value: &str) {
    b.client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|_| panic!("{css} = {value}"));
}

pub(crate) async fn wait_in(b: &crate::browser::Browser, css: &str, text: &str, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if b.text(css).await.contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{css} never showed {text:?}; the page:\n{}",
        b.text("main").await
    );
}

/// Clicks a button that asks first, and says yes.
pub(crate) async fn click_and_confirm(b: &crate::browser::Browser, css: &str) {
    b.click(css).await;
    for _ in 0..50 {
        if b.client.accept_alert().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} asked nothing");
}

/// The whole flow in Chromium: a marketer builds a 10,000-contact broadcast from a list
/// and a filter, previews real recipients, test-sends, schedules it a minute ahead and asks for
/// approval; a support lead approves; the marketer watches it run live, pauses and resumes it,
/// and sees it complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_a_marketer_runs_a_scheduled_approved_broadcast() {
    let app = spawn(crate::helpers::Backend::Sqlite).await;
    let s = setup(&app).await;
    let marketer_email = "mia@example.com";
    app.user_with_role(&s.admin, marketer_email, "marketer")
        .await;
    let list = herald::storage::lists::create(&mut app.db(), "Newsletter").expect("list");
    bulk_contacts(&app, 10_000, list.id);
    herald::storage::settings::set(&mut app.db(), "broadcasts.launch_approval", "on").unwrap();
    set_rate(&app, &s, 150).await;

    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(marketer_email, crate::helpers::PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.goto("/broadcasts").await;
    b.wait_for_text("No broadcasts yet").await;
    b.click("a[href='/broadcasts/new']").await;
    b.fill("#b-name", "Paris newsletter").await;
    select(&b, "#b-channel", &s.sms.public_id).await;
    b.click(&format!("input[name=list][value='{}']", list.public_id))
        .await;
    select(&b, "#c0-field", "attributes.city").await;
    select(&b, "#c0-op", "eq").await;
    b.fill("#c0-value", "Paris").await;
    b.fill("#b-text", "Bonjour! Our Paris store opens on Sunday.")
        .await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(65))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    b.client
        .execute(
            "document.getElementById('b-at').value = arguments[0];",
            vec![json!(at)],
        )
        .await
        .expect("set the start");
    b.fill("#b-zone", "UTC").await;
    b.click("button[name=next][value=review]").await;

    // Review: the reach, a preview for real recipients, a test send.
    wait_in(&b, "#estimate", "5,000", 10).await;
    wait_in(&b, "#preview", "Person 0", 5).await;
    wait_in(&b, "#preview", "Our Paris store opens on Sunday.", 5).await;
    b.click("#preview a.button").await;
    wait_in(&b, "#preview", "Person 2", 5).await;
    b.fill("#test-phones", "+14155550000").await;
    b.click("#test button[type=submit]").await;
    b.wait_for_text("Test sent to 1 contact.").await;
    click_and_confirm(&b, "form[action$='/launch'] button").await;
    b.wait_for_text("Sent for approval").await;
    let page = b.path().await;
    b.sign_out().await;

    // The support lead approves.
    b.sign_in("sam@example.com", crate::helpers::PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.goto(&page).await;
    b.wait_for_text("Waiting for approval").await;
    click_and_confirm(&b, "button[name=decision][value=approve]").await;
    b.wait_for_text("Approved and launched.").await;
    wait_in(&b, "#live", "Scheduled", 5).await;
    b.sign_out().await;

    // The marketer watches it start on time and run live, pauses and resumes it.
    b.sign_in(marketer_email, crate::helpers::PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.goto(&page).await;
    wait_in(&b, "#live", "Running", 90).await;
    let done = |text: String| -> i64 {
        text.split_whitespace()
            .zip(text.split_whitespace().skip(1))
            .find(|(_, next)| *next == "done")
            .and_then(|(n, _)| n.trim_end_matches('%').parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while done(b.text("#live").await) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no progress shown live: {}",
            b.text("#live").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(done(b.text("#live").await) < 100, "paused before the end");
    b.click("form[action$='/pause'] button").await;
    b.wait_for_text("Paused: nothing new goes out").await;
    wait_in(&b, "#live", "Paused", 5).await;
    b.click("form[action$='/resume'] button").await;
    b.wait_for_text("Resumed where it stopped.").await;
    wait_in(&b, "#live", "Completed", 90).await;
    wait_in(&b, "#live", "100% done", 5).await;
    let per_contact = campaign_messages_per_contact(&app);
    assert_eq!(per_contact.len(), 5_000);
    assert!(per_contact.values().all(|n| *n == 1));
    b.finish().await;
}
