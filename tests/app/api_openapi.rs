//! Issue 19, API completeness: the OpenAPI 3.1 document (every registered route in it, valid
//! by `openapi-spec-validator`, and a `schemathesis` run against a live Herald that finds no
//! 5xx and no answer the document does not describe), the API reference page rendered from
//! it, and cursor pagination, the same on every list.
//!
//! The two PyPI tools run from the virtualenv `.ci/run` makes: `HERALD_TEST_OPENAPI_VALIDATOR`
//! and `HERALD_TEST_SCHEMATHESIS` name them; without them those two tests are listed as
//! ignored, naming the variables (`build.rs` sets `herald_openapi_tools`).

use std::collections::{BTreeSet, HashSet};
use std::process::Command;

use herald::web::api::ROUTES;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, api_get, create_api_key};

crate::both_backends!(
    the_document_describes_every_registered_route_and_nothing_else,
    every_registered_route_is_served_and_asks_for_a_key,
    contacts_page_through_next_cursor,
    the_audit_log_pages_through_next_cursor,
    every_list_pages_the_same_way_and_refuses_a_bad_limit_or_cursor,
    the_reference_page_renders_the_documents_operations,
);

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let res = api_get(app, "/api/v1/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK, "the document needs no key");
    assert!(
        res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    res.json().await.unwrap()
}

async fn admin_key(app: &TestApp) -> String {
    let admin = app.admin().await;
    create_api_key(&admin, "openapi", "admin").await
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `(method, path)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

async fn the_document_describes_every_registered_route_and_nothing_else(app: TestApp) {
    let doc = document(&app).await;
    assert_eq!(doc["openapi"].as_str().unwrap(), "3.1.0");
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), format!("/api/v1{}", r.path)))
        .collect();
    assert_eq!(
        registered.len(),
        ROUTES.len(),
        "a route is in the table twice"
    );
    let in_doc = documented(&doc);
    let missing: Vec<_> = registered.difference(&in_doc).collect();
    let extra: Vec<_> = in_doc.difference(&registered).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "registered but not documented: {missing:?}; documented but not registered: {extra:?}"
    );
    let mut ids = HashSet::new();
    for (method, path) in &in_doc {
        let op = &doc["paths"][path][method];
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        assert!(
            !op["summary"].as_str().unwrap_or_default().is_empty(),
            "{method} {path}: no summary"
        );
        let tag = op["tags"][0].as_str().unwrap();
        assert!(
            doc["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == tag),
            "{method} {path}: tag {tag} is not described"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success answer"
        );
        let public = path == "/api/v1/openapi.json";
        for code in ["401", "403"] {
            assert_eq!(
                responses.contains_key(code),
                !public,
                "{method} {path}: {code} (the shared answers of operations that need a key)"
            );
        }
        if path.contains("{id}") {
            assert!(responses.contains_key("404"), "{method} {path}: no 404");
        }
        if op.get("requestBody").is_some() {
            assert!(
                responses.contains_key("400") || responses.contains_key("422"),
                "{method} {path}: a body that cannot be refused"
            );
        }
    }
    // The shared pieces: bearer security, the error shape, and every reference resolves.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], json!([]));
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["error"]));
    let text = doc.to_string();
    let mut refs = 0;
    for piece in text.split("\"$ref\":\"").skip(1) {
        let target = &piece[..piece.find('"').unwrap()];
        assert!(
            doc.pointer(target.trim_start_matches('#')).is_some(),
            "{target} does not resolve"
        );
        refs += 1;
    }
    assert!(refs > 40, "{refs} references");
}

/// The document's routes are what actix serves: each, called without a key, asks for one
/// (a route missing from the router would be a 404 or 405 instead).
async fn every_registered_route_is_served_and_asks_for_a_key(app: TestApp) {
    let client = reqwest::Client::new();
    for route in ROUTES {
        let path = format!(
            "/api/v1{}",
            route
                .path
                .replace("{id}", "018f6f4e-0000-7000-8000-000000000000")
        );
        let method = Method::from_bytes(route.method.to_ascii_uppercase().as_bytes()).unwrap();
        let res = client
            .request(method, format!("{}{path}", app.address))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let expected = if route.path == "/openapi.json" {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(res.status(), expected, "{} {path}", route.method);
    }
    let res = api_get(&app, "/api/v1/no-such-thing", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// The command a variable names (`.ci/run` installs both tools and sets both variables).
fn tool(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| panic!("{var} names the tool (.ci/run sets it)"))
}

/// The two checks by the PyPI tools, on each database; ignored without the tools.
mod tools {
    use crate::helpers::{Backend, TestApp};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(herald_openapi_tools),
        ignore = "set HERALD_TEST_OPENAPI_VALIDATOR and HERALD_TEST_SCHEMATHESIS to run the OpenAPI tools"
    )]
    async fn sqlite_the_document_validates_as_openapi_3_1() {
        super::the_document_validates_as_openapi_3_1(TestApp::spawn(Backend::Sqlite).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(herald_openapi_tools),
        ignore = "set HERALD_TEST_OPENAPI_VALIDATOR and HERALD_TEST_SCHEMATHESIS to run the OpenAPI tools"
    )]
    async fn sqlite_schemathesis_finds_no_server_error_and_no_undocumented_answer() {
        super::schemathesis_finds_no_server_error_and_no_undocumented_answer(
            TestApp::spawn(Backend::Sqlite).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(all(herald_openapi_tools, herald_pg_tests)),
        ignore = "set HERALD_TEST_DATABASE_URL and the OpenAPI tools' variables to run on PostgreSQL"
    )]
    async fn postgres_schemathesis_finds_no_server_error_and_no_undocumented_answer() {
        super::schemathesis_finds_no_server_error_and_no_undocumented_answer(
            TestApp::spawn(Backend::Postgres).await,
        )
        .await;
    }
}

async fn the_document_validates_as_openapi_3_1(app: TestApp) {
    let validator = tool("HERALD_TEST_OPENAPI_VALIDATOR");
    let doc = document(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(&validator).arg(&file).output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("OK"), "{said}");
    // The validator does judge: a document that breaks the specification fails.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/messages"]["post"]["responses"] = json!("none");
    std::fs::write(&file, broken.to_string()).unwrap();
    let out = Command::new(&validator).arg(&file).output().unwrap();
    assert!(!out.status.success(), "a broken document passed");
}

async fn schemathesis_finds_no_server_error_and_no_undocumented_answer(app: TestApp) {
    let schemathesis = tool("HERALD_TEST_SCHEMATHESIS");
    let key = admin_key(&app).await;
    // Something to find: a contact, a broadcast draft and an endpoint.
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/contacts",
        &key,
        Some(json!({"phone": "+14155550100", "name": "Ada"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&schemathesis)
        .current_dir(dir.path())
        .args([
            "run",
            &format!("{}/api/v1/openapi.json", app.address),
            "--url",
            &app.address,
            "--header",
            &format!("Authorization: Bearer {key}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "15",
            "--workers",
            "2",
            "--seed",
            "19",
            "--no-color",
            "--generation-database",
            "none",
            "--request-timeout",
            "20",
        ])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // It ran the operations (a run that tested nothing would pass too); with a key given it
    // may leave out the one that takes none, the document itself.
    let tested: usize = said
        .split("Tested: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        tested + 1 >= ROUTES.len(),
        "tested {tested} of {}: {said}",
        ROUTES.len()
    );
}

/// Walks a list through `next_cursor`, `limit` at a time; the ids in order.
async fn walk(app: &TestApp, key: &str, path: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for _ in 0..1000 {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = call(app, Method::GET, &url, key, None).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit, "{url}: {} items", data.len());
        out.extend(data.iter().map(|d| d["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(data.len(), limit, "{url}: a short page before the last");
                cursor = Some(c.to_owned());
            }
            None => return out,
        }
    }
    panic!("{path}: the cursor never ended");
}

async fn contacts_page_through_next_cursor(app: TestApp) {
    let key = admin_key(&app).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let (status, c) = call(
            &app,
            Method::POST,
            "/api/v1/contacts",
            &key,
            Some(json!({"phone": format!("+1415555010{i}")})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        made.push(c["id"].clone());
    }
    made.reverse(); // newest first
    for limit in [1, 3, 7, 50] {
        assert_eq!(
            walk(&app, &key, "/api/v1/contacts", limit).await,
            made,
            "limit {limit}"
        );
    }
    // A filter holds across pages.
    let (_, all) = call(
        &app,
        Method::GET,
        "/api/v1/contacts?q=%2B14155550103",
        &key,
        None,
    )
    .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
    // The older `before` still pages, beside the cursor.
    let (_, first) = call(&app, Method::GET, "/api/v1/contacts?limit=4", &key, None).await;
    let before = first["next_before"].as_str().unwrap();
    let (_, rest) = call(
        &app,
        Method::GET,
        &format!("/api/v1/contacts?limit=4&before={before}"),
        &key,
        None,
    )
    .await;
    let rest: Vec<Value> = rest["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(rest, made[4..]);
}

async fn the_audit_log_pages_through_next_cursor(app: TestApp) {
    let key = admin_key(&app).await;
    for i in 0..5 {
        let (status, _) = call(
            &app,
            Method::POST,
            "/api/v1/contacts",
            &key,
            Some(json!({"phone": format!("+1415555020{i}")})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, everything) = call(&app, Method::GET, "/api/v1/audit?limit=200", &key, None).await;
    let all: Vec<Value> = everything["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert!(all.len() > 5, "{everything}");
    assert!(everything["next_cursor"].is_null());
    for limit in [1, 2, 5] {
        assert_eq!(
            walk(&app, &key, "/api/v1/audit", limit).await,
            all,
            "limit {limit}"
        );
    }
    // Newest first, and the older `before` form agrees with the cursor.
    let ids: Vec<i64> = all.iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let (_, first) = call(&app, Method::GET, "/api/v1/audit?limit=2", &key, None).await;
    assert_eq!(first["next_before"], all[1]);
}

async fn every_list_pages_the_same_way_and_refuses_a_bad_limit_or_cursor(app: TestApp) {
    let key = admin_key(&app).await;
    // A few of each so that the small lists span pages too.
    for i in 0..3 {
        let (status, body) = call(
            &app,
            Method::POST,
            "/api/v1/webhook-endpoints",
            &key,
            Some(json!({
            "url": format!("https://receiver{i}.example/hook"), "events": ["message.sent"]})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, channels) = call(&app, Method::GET, "/api/v1/channels?limit=200", &key, None).await;
    let channel_ids: Vec<Value> = channels["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert!(channel_ids.len() >= 2, "{channels}");
    assert_eq!(walk(&app, &key, "/api/v1/channels", 1).await, channel_ids);
    let endpoints = walk(&app, &key, "/api/v1/webhook-endpoints", 2).await;
    assert_eq!(endpoints.len(), 3);
    let lists = [
        "/api/v1/contacts",
        "/api/v1/audit",
        "/api/v1/channels",
        "/api/v1/templates",
        "/api/v1/broadcasts",
        "/api/v1/messages",
        "/api/v1/triggers",
        "/api/v1/webhook-endpoints",
    ];
    for list in lists {
        let (status, page) = call(&app, Method::GET, list, &key, None).await;
        assert_eq!(status, StatusCode::OK, "{list}: {page}");
        assert!(
            page["data"].is_array() && page.get("next_cursor").is_some(),
            "{list}: {page}"
        );
        for bad in ["0", "ten", "-3", "1000"] {
            let (status, body) = call(
                &app,
                Method::GET,
                &format!("{list}?limit={bad}"),
                &key,
                None,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{list}?limit={bad}: {body}"
            );
            assert_eq!(body["error"]["code"], "invalid_limit", "{list}: {body}");
            assert!(
                body["error"]["fields"]["limit"].is_string(),
                "{list}: {body}"
            );
        }
        for bad in ["zzz", "42", "%00"] {
            let (status, body) = call(
                &app,
                Method::GET,
                &format!("{list}?cursor={bad}"),
                &key,
                None,
            )
            .await;
            if bad == "%00" {
                // Refused naming the parameter (messages reads its query as the history does: 400).
                assert!(
                    status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
                    "{list}: {body}"
                );
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("cursor"),
                    "{list}: {body}"
                );
                continue;
            }
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{list}?cursor={bad}: {body}"
            );
            assert_eq!(body["error"]["code"], "invalid_cursor", "{list}: {body}");
        }
    }
    // The delivery log pages the same way.
    let endpoint = endpoints[0].as_str().unwrap();
    for _ in 0..3 {
        let (status, _) = call(
            &app,
            Method::POST,
            &format!("/api/v1/webhook-endpoints/{endpoint}/test"),
            &key,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let log = format!("/api/v1/webhook-endpoints/{endpoint}/deliveries");
    let (_, all) = call(&app, Method::GET, &log, &key, None).await;
    let all: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all.len(), 3);
    let (_, first) = call(&app, Method::GET, &format!("{log}?limit=2"), &key, None).await;
    let next = first["next_cursor"].as_str().unwrap();
    let (_, second) = call(
        &app,
        Method::GET,
        &format!("{log}?limit=2&cursor={next}"),
        &key,
        None,
    )
    .await;
    assert_eq!(second["data"][0]["webhook_id"].as_str().unwrap(), all[2]);
    assert!(second["next_cursor"].is_null());
    let (status, _) = call(&app, Method::GET, &format!("{log}?cursor=zzz"), &key, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn the_reference_page_renders_the_documents_operations(app: TestApp) {
    let doc = document(&app).await;
    let admin = app.admin().await;
    let html = admin.get_html("/settings/api-reference").await;
    // Every operation, with its method, path and summary, from the document.
    let page = scraper::Html::parse_document(&html);
    let ops = scraper::Selector::parse("details.api-op").unwrap();
    let shown: BTreeSet<String> = page
        .select(&ops)
        .filter_map(|e| e.value().attr("data-operation").map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = documented(&doc)
        .into_iter()
        .map(|(m, p)| format!("{} {p}", m.to_ascii_uppercase()))
        .collect();
    assert_eq!(shown, expected);
    let send = &doc["paths"]["/api/v1/messages"]["post"];
    assert!(html.contains(send["summary"].as_str().unwrap()));
    assert!(html.contains("Idempotency-Key"), "the header parameter");
    assert!(
        html.contains("+14155550100") && html.contains("order_update"),
        "the request example"
    );
    assert!(
        html.contains("href=\"/settings/api-reference\""),
        "the settings navigation links it"
    );
    // Any signed-in person reads it; nobody else.
    let marketer = app
        .user_with_role(&admin, "mo@example.com", "marketer")
        .await;
    let res = marketer.get("/settings/api-reference").await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.client().get("/settings/api-reference").await;
    assert!(res.status().is_redirection(), "{}", res.status());
}
