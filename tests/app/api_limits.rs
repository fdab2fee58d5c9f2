//! Issue 19: per-key rate limits (a default in the settings, an override per key, shared across
//! instances on PostgreSQL) and `Idempotency-Key` on the API's creating POSTs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, create_api_key};

crate::both_backends!(
    a_key_gets_its_limit_then_429_and_its_own_limit_beats_the_default,
    a_repeated_key_replays_and_a_different_body_is_refused,
    concurrent_twins_create_one_resource,
    posts_without_a_body_replay_by_their_path,
);

/// Waits while the clock is near the end of its minute, so that a test's requests all fall in
/// one rate-limit window (windows are aligned to the clock's minutes).
async fn early_in_a_minute() {
    let second = chrono::Utc::now().timestamp().rem_euclid(60);
    if second > 40 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
}

async fn call(
    base: &str,
    method: Method,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.expect("API call")
}

/// `GET /api/v1/templates`, a cheap call that counts against the key's limit.
async fn templates(base: &str, key: &str) -> reqwest::Response {
    call(base, Method::GET, "/api/v1/templates", key, None, None).await
}

/// A POST to `app` with the API key `key`, an optional `Idempotency-Key` and JSON body.
async fn post(
    app: &TestApp,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    call(&app.address, Method::POST, path, key, idempotency_key, body).await
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Calls `GET /api/v1/templates` until refused; returns how many answers were 200.
async fn spend(base: &str, key: &str, at_most: usize) -> usize {
    for n in 0..at_most {
        let res = templates(base, key).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            return n;
        }
        assert_eq!(res.status(), StatusCode::OK);
    }
    at_most
}

fn key_public_id(app: &TestApp, name: &str) -> String {
    use diesel::prelude::*;
    use herald::storage::schema::api_keys;
    api_keys::table
        .filter(api_keys::name.eq(name))
        .select(api_keys::public_id)
        .first(&mut app.db())
        .expect("the key")
}

async fn a_key_gets_its_limit_then_429_and_its_own_limit_beats_the_default(app: TestApp) {
    let admin = app.admin().await;
    // A limit that is not a number is refused, naming the field; nothing is created.
    let res = admin
        .post_form(
            "/settings/api-keys",
            &[("name", "Bad"), ("role", "marketer"), ("rate_limit", "ten")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("is not a limit"));

    let res = admin
        .post_form("/settings/api-keys/rate-limit", &[("rate_limit", "4")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let by_default = create_api_key(&admin, "Shop", "marketer").await;
    let res = admin
        .post_form(
            "/settings/api-keys",
            &[("name", "Batch"), ("role", "marketer"), ("rate_limit", "2")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/api-keys").await;
    let own = crate::helpers::texts(&page, "#revealed-secret")
        .pop()
        .expect("the new key is shown once");
    assert!(page.contains("value=\"2\""), "the key's own limit is shown");
    assert!(page.contains("id=\"default-rate-limit\" name=\"rate_limit\" value=\"4\""));

    early_in_a_minute().await;
    for n in 0..4u32 {
        let res = templates(&app.address, &by_default).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-limit").as_deref(), Some("4"));
        assert_eq!(
            header(&res, "ratelimit-remaining"),
            Some((3 - n).to_string())
        );
        let reset: u64 = header(&res, "ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let refused = templates(&app.address, &by_default).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(header(&refused, "ratelimit-limit").as_deref(), Some("4"));
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // The key's own limit beats the default.
    assert_eq!(spend(&app.address, &own, 10).await, 2);

    // An override set on the page applies at once: 0 is unlimited, and sends no headers.
    let id = key_public_id(&app, "Shop");
    let res = admin
        .post_form(
            &format!("/settings/api-keys/{id}/rate-limit"),
            &[("rate_limit", "0")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = templates(&app.address, &by_default).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "ratelimit-limit"), None);
    // Back to the default (blank): the window it spent still counts.
    let res = admin
        .post_form(
            &format!("/settings/api-keys/{id}/rate-limit"),
            &[("rate_limit", "")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(spend(&app.address, &by_default, 3).await, 0);
}

/// On PostgreSQL two instances behind a load balancer share one key's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_pg_tests),
    ignore = "set HERALD_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn instances_share_a_keys_budget_on_postgres() {
    let app = TestApp::spawn(crate::helpers::Backend::Postgres).await;
    let admin = app.admin().await;
    let res = admin
        .post_form(
            "/settings/api-keys",
            &[
                ("name", "Shared"),
                ("role", "marketer"),
                ("rate_limit", "6"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/api-keys").await;
    let key = crate::helpers::texts(&page, "#revealed-secret")
        .pop()
        .expect("the new key");
    let other = app.second_instance().await;

    early_in_a_minute().await;
    let mut allowed = 0;
    for n in 0..10 {
        let base = if n % 2 == 0 {
            &app.address
        } else {
            &other.address
        };
        let res = templates(base, &key).await;
        match res.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(
        allowed, 6,
        "the two instances together allow the key's limit"
    );
    // Both are refused now.
    for base in [&app.address, &other.address] {
        let res = templates(base, &key).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

async fn admin_key(app: &TestApp) -> String {
    let admin = app.admin().await;
    create_api_key(&admin, "Ops", "admin").await
}

async fn a_repeated_key_replays_and_a_different_body_is_refused(app: TestApp) {
    let key = admin_key(&app).await;
    let contact = json!({"phone": "+14155550100", "name": "Ada"});
    let first = post(&app, "/api/v1/contacts", &key, Some("c-1"), Some(&contact)).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let first: Value = first.json().await.unwrap();
    let again = post(&app, "/api/v1/contacts", &key, Some("c-1"), Some(&contact)).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["name"], "Ada");

    let other = json!({"phone": "+14155550100", "name": "Grace"});
    let reused = post(&app, "/api/v1/contacts", &key, Some("c-1"), Some(&other)).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(reused["error"]["code"], "idempotency_key_reused");
    // The same key on another route is another request too.
    let channel = json!({"kind": "sandbox", "name": "Replayed"});
    let res = post(&app, "/api/v1/channels", &key, Some("c-1"), Some(&channel)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The contact kept its first name: nothing ran for the refused requests.
    let got: Value = crate::helpers::api_get(
        &app,
        &format!("/api/v1/contacts/{}", first["id"].as_str().unwrap()),
        Some(&key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(got["name"], "Ada");

    // Another API key has its own keys.
    let admin = app.client();
    admin
        .login(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    let second = create_api_key(&admin, "Other", "admin").await;
    let res = post(&app, "/api/v1/contacts", &second, Some("c-1"), Some(&other)).await;
    assert_eq!(res.status(), StatusCode::OK, "an update, not a replay");
    assert_eq!(header(&res, "idempotent-replayed"), None);

    // A webhook endpoint: the replay is the same endpoint, without repeating its secret.
    let endpoint = json!({"url": "http://127.0.0.1:9/hook", "events": ["message.sent"],
                          "allow_private_network": true});
    let made = post(
        &app,
        "/api/v1/webhook-endpoints",
        &key,
        Some("e-1"),
        Some(&endpoint),
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.unwrap();
    assert!(
        made["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let replay = post(
        &app,
        "/api/v1/webhook-endpoints",
        &key,
        Some("e-1"),
        Some(&endpoint),
    )
    .await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], made["id"]);
    assert!(replay.get("secret").is_none_or(Value::is_null), "{replay}");

    // A malformed key is refused before anything runs.
    let res = post(
        &app,
        "/api/v1/contacts",
        &key,
        Some(&"k".repeat(300)),
        Some(&contact),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res: Value = res.json().await.unwrap();
    assert_eq!(res["error"]["code"], "invalid_idempotency_key");
}

/// Eight identical requests at once with one key: one resource, eight answers naming it.
async fn concurrent_twins_create_one_resource(app: TestApp) {
    let key = admin_key(&app).await;
    for (path, body) in [
        (
            "/api/v1/webhook-endpoints",
            json!({"url": "http://127.0.0.1:9/twins", "events": ["message.sent"],
                   "allow_private_network": true}),
        ),
        (
            "/api/v1/channels",
            json!({"kind": "sandbox", "name": "Twins"}),
        ),
    ] {
        let calls = (0..8).map(|_| post(&app, path, &key, Some(path), Some(&body)));
        let answers = futures_util::future::join_all(calls).await;
        let mut ids = Vec::new();
        for res in answers {
            assert_eq!(res.status(), StatusCode::CREATED, "{path}");
            let json: Value = res.json().await.unwrap();
            ids.push(json["id"].as_str().expect("an id").to_owned());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{path}: {ids:?}");
        let listed: Value = crate::helpers::api_get(&app, path, Some(&key))
            .await
            .json()
            .await
            .unwrap();
        let made = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["id"] == ids[0].as_str())
            .count();
        assert_eq!(made, 1);
        let same = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["url"] == body["url"] && e["name"] == body["name"])
            .count();
        assert_eq!(same, 1, "{path}: one resource, not {same}");
    }
}

async fn posts_without_a_body_replay_by_their_path(app: TestApp) {
    let key = admin_key(&app).await;
    let endpoint = json!({"url": "http://127.0.0.1:9/test", "events": ["message.sent"],
                          "allow_private_network": true});
    let made: Value = post(
        &app,
        "/api/v1/webhook-endpoints",
        &key,
        None,
        Some(&endpoint),
    )
    .await
    .json()
    .await
    .unwrap();
    let test = format!(
        "/api/v1/webhook-endpoints/{}/test",
        made["id"].as_str().unwrap()
    );
    let first = post(&app, &test, &key, Some("t-1"), None).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = post(&app, &test, &key, Some("t-1"), None).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["webhook_id"], first["webhook_id"]);
    // Without a key, each call is a new test event.
    let fresh: Value = post(&app, &test, &key, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(fresh["webhook_id"], first["webhook_id"]);
    let log: Value = crate::helpers::api_get(
        &app,
        &format!(
            "/api/v1/webhook-endpoints/{}/deliveries",
            made["id"].as_str().unwrap()
        ),
        Some(&key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(log["data"].as_array().map(Vec::len), Some(2), "{log}");
}
