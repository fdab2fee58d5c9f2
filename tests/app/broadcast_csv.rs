//! Issue 17: a CSV upload as a broadcast's audience. Through the API and the pages, on both
//! databases: bad rows (invalid numbers, duplicates, formulas) reported by line, value and
//! reason while good rows are kept; new numbers become contacts under the import's consent
//! rules; the estimate counts the file's rejections beside the usual exclusions; a launch
//! reaches exactly the good rows, each message rendered with its row's variables.

use std::collections::BTreeSet;

use diesel::prelude::*;
use herald::storage::schema::{
    broadcast_csv_rows, broadcast_recipients, contact_consents, contacts, messages,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broadcasts::{control, estimate_of, wait_for_state};
use crate::fixtures::{Setup, contact, setup, spawn};
use crate::helpers::TestApp;
use crate::provider_kit::api;

/// The file: a header, good rows (one existing contact, new numbers in several formats, a
/// phone guarded the way Herald's exports guard it, a formula as a variable), bad ones (an
/// invalid number, a formula as the number, a repeat), and rows the estimate leaves out
/// (opted out by the file, opted out before and not overridden by the file's opt-in, an
/// empty variable with no fallback).
const FILE: &str = "Phone,First,Order,WhatsApp consent\n\
    +14155550101,Ada,#1,\n\
    (415) 555-0102,Bo,#2,opted_in\n\
    not-a-number,Cy,#3,\n\
    +1 415 555 0101,Ada again,#4,\n\
    =1+2,Evil,#5,\n\
    '+14155550105,\"=HYPERLINK(\"\"http://x\"\")\",#6,\n\
    +14155550106,Di,,\n\
    +14155550107,Ed,#7,opted_out\n";

async fn upload(app: &TestApp, key: &str, id: &str, query: &str, csv: &str) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/broadcasts/{id}/audience.csv{query}",
            app.address
        ))
        .bearer_auth(key)
        .header("Content-Type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .expect("POST");
    let status = res.status();
    (status, res.json().await.expect("JSON"))
}

async fn patch(app: &TestApp, key: &str, id: &str, body: &Value) -> (StatusCode, Value) {
    let path = format!("/api/v1/broadcasts/{id}");
    api(app, Method::PATCH, &path, key, Some(body)).await
}

fn contact_id(app: &TestApp, phone: &str) -> Option<i64> {
    contacts::table
        .filter(contacts::phone.eq(phone))
        .select(contacts::id)
        .first(&mut *app.db())
        .optional()
        .unwrap()
}

/// A draft for the order template, saved before its CSV (a new draft has no upload yet).
async fn template_draft(app: &TestApp, s: &Setup) -> String {
    crate::fixtures::approved_template(app, s, "order_news", crate::fixtures::WA_BODY).await;
    let (status, b) = api(
        app,
        Method::POST,
        "/api/v1/broadcasts",
        &s.key,
        Some(&json!({
            "name": "CSV orders",
            "channel": s.wa.name,
            "audience": {},
            "message": {"template": {"name": "order_news", "language": "en_US",
                        "variables": ["x", "y"]}},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

fn with_columns(s: &Setup) -> Value {
    json!({
        "name": "CSV orders",
        "channel": s.wa.name,
        "audience": {"csv": {}},
        "message": {"template": {"name": "order_news", "language": "en_US", "variables": {
            "1": {"source": "attribute_with_fallback", "key": "column:First", "fallback": "there"},
            "2": {"source": "attribute", "key": "column:Order"}
        }}},
    })
}

async fn a_csv_audience_keeps_good_rows_reports_bad_ones_and_sends_with_its_variables(
    app: TestApp,
) {
    let s = setup(&app).await;
    // An existing contact (matched, not changed) and one who opted out of WhatsApp before.
    contact(
        &app,
        &s.key,
        json!({"phone": "+14155550101", "name": "Ada Lovelace", "attributes": {"tier": "gold"}}),
    )
    .await;
    contact(
        &app,
        &s.key,
        json!({"phone": "+14155550102", "consent": {"whatsapp": "opted_out"}}),
    )
    .await;
    let id = template_draft(&app, &s).await;

    // Columns are only for a CSV audience, and saving "the CSV" needs one uploaded.
    let (status, err) = patch(&app, &s.key, &id, &with_columns(&s)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(err["error"]["fields"]["audience.csv"].is_string(), "{err}");

    // A file without a phone column changes nothing and says why, at the field.
    let (status, err) = upload(&app, &s.key, &id, "", "Name,Order\nAda,#1\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let why = err["error"]["fields"]["audience.csv"].as_str().unwrap();
    assert!(why.contains("phone"), "{err}");

    // A first upload, then the real one replaces it.
    // (as the multipart field `file`, which names the file)
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"Mobile,Order\n+14155550201,#9\n".to_vec())
            .file_name("first.csv"),
    );
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/broadcasts/{id}/audience.csv",
            app.address
        ))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::OK);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["csv"]["good"], 1, "{first}");
    assert_eq!(first["csv"]["file_name"], "first.csv", "{first}");
    let (status, up) = upload(&app, &s.key, &id, "?phone_column=phone", FILE).await;
    assert_eq!(status, StatusCode::OK, "{up}");
    let csv = &up["csv"];
    assert_eq!(
        (
            &csv["rows"],
            &csv["good"],
            &csv["invalid_number"],
            &csv["duplicate"]
        ),
        (&json!(8), &json!(5), &json!(2), &json!(1)),
        "{up}"
    );
    assert_eq!(csv["phone_column"], "Phone");
    assert_eq!(csv["columns"], json!(["First", "Order"]));
    assert_eq!(up["broadcast"]["audience"]["csv"], *csv, "{up}");
    // Bad rows by line, value and reason.
    let rejected: Vec<(i64, String, String)> = up["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["value"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0].0, 4);
    assert_eq!(rejected[0].1, "not-a-number");
    assert_eq!(rejected[0].2, "Phone: \"not-a-number\" has no digits");
    assert_eq!(rejected[1].0, 5);
    assert!(
        rejected[1].2.starts_with("duplicate of line 2"),
        "{rejected:?}"
    );
    assert_eq!((rejected[2].0, rejected[2].1.as_str()), (6, "=1+2"));
    // The first upload's rows went with it.
    let kept: i64 = broadcast_csv_rows::table
        .count()
        .get_result(&mut *app.db())
        .unwrap();
    assert_eq!(kept, 5);

    // New numbers are contacts now, by the import's rules: the file's opt-out applies, its
    // opt-in does not override an opt-out on record; the existing contact is matched as is.
    let new = contact_id(&app, "+14155550105").expect("a new contact from the file");
    let ed = contact_id(&app, "+14155550107").expect("a new contact");
    let consents: Vec<(i64, String, String)> = contact_consents::table
        .filter(contact_consents::channel_kind.eq("whatsapp"))
        .select((
            contact_consents::contact_id,
            contact_consents::status,
            contact_consents::source,
        ))
        .load(&mut *app.db())
        .unwrap();
    assert!(
        consents.contains(&(ed, "opted_out".into(), "import".into())),
        "{consents:?}"
    );
    let bo = contact_id(&app, "+14155550102").unwrap();
    assert!(
        consents
            .iter()
            .any(|(c, st, _)| *c == bo && st == "opted_out"),
        "{consents:?}"
    );
    assert!(!consents.iter().any(|(c, _, _)| *c == new), "{consents:?}");
    let (name, attributes): (String, String) = contacts::table
        .filter(contacts::phone.eq("+14155550101"))
        .select((contacts::name, contacts::attributes))
        .first(&mut *app.db())
        .unwrap();
    assert_eq!(name, "Ada Lovelace");
    assert!(
        !attributes.contains("Order") && attributes.contains("gold"),
        "{attributes}"
    );

    // Variables from the columns; the estimate counts the file's rejections too.
    let (status, b) = patch(&app, &s.key, &id, &with_columns(&s)).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["audience"]["csv"]["upload"], csv["upload"], "kept: {b}");
    let mut wrong = with_columns(&s);
    wrong["message"]["template"]["variables"]["2"] =
        json!({"source": "attribute", "key": "column:Nope"});
    let (status, err) = patch(&app, &s.key, &id, &wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["fields"]["message.variables.2"]
            .as_str()
            .unwrap()
            .contains("no column \"Nope\""),
        "{err}"
    );
    let e = estimate_of(&app, &s.key, &id).await;
    assert_eq!(e["matched"], 8, "{e}");
    assert_eq!(e["reach"], 2, "{e}");
    assert_eq!(
        e["excluded"],
        json!({"duplicate": 1, "invalid_number": 2, "missing_variable": 1, "opted_out": 2}),
        "{e}"
    );

    // The review page previews a real recipient with their row's values.
    let html = s.admin.get_html(&format!("/broadcasts/{id}")).await;
    assert!(
        html.contains("Hi Ada, your order #1 has shipped."),
        "{html}"
    );

    // A file uploaded since the mapping was saved must still have its columns: the launch
    // says which, and launches nothing; the right file again, and it goes.
    let (status, _) = upload(&app, &s.key, &id, "", "Phone,First\n+14155550101,Ada\n").await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["fields"]["message.variables.2"].is_string(),
        "{err}"
    );
    let (status, again) = upload(&app, &s.key, &id, "", FILE).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["csv"]["good"], 5, "{again}");
    assert_eq!(again["csv"]["duplicate"], 1, "{again}");

    // Launch: exactly the good rows are recipients; two get a message, each with its values.
    let (status, b) = control(&app, &s.key, &id, "launch").await;
    assert_eq!(status, StatusCode::OK, "{b}");
    wait_for_state(&app, &s.key, &id, "completed", 60).await;
    let recipients: BTreeSet<i64> = broadcast_recipients::table
        .select(broadcast_recipients::contact_id)
        .load::<i64>(&mut *app.db())
        .unwrap()
        .into_iter()
        .collect();
    let good: BTreeSet<i64> = [
        "+14155550101",
        "+14155550102",
        "+14155550105",
        "+14155550106",
        "+14155550107",
    ]
    .iter()
    .map(|p| contact_id(&app, p).unwrap())
    .collect();
    assert_eq!(recipients, good);
    let mut sent: Vec<(String, String)> = messages::table
        .filter(messages::campaign_id.is_not_null())
        .select((messages::to_address, messages::body))
        .load(&mut *app.db())
        .unwrap();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                "+14155550101".to_owned(),
                "Hi Ada, your order #1 has shipped.".to_owned()
            ),
            (
                "+14155550105".to_owned(),
                "Hi =HYPERLINK(\"http://x\"), your order #6 has shipped.".to_owned()
            ),
        ]
    );
    // Launched, the upload no longer changes it.
    let (status, err) = upload(&app, &s.key, &id, "", "Phone\n+14155550301\n").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
}

/// Uploads `csv` through the draft form's upload (multipart, as the browser sends it).
async fn upload_in_form(s: &Setup, id: &str, phone_column: &str, csv: &str) -> reqwest::Response {
    let token = s.admin.csrf_token().await;
    let form = reqwest::multipart::Form::new()
        .text("phone_column", phone_column.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("orders.csv"),
        );
    s.admin
        .http
        .post(s.admin.url(&format!("/broadcasts/{id}/audience.csv")))
        .header("X-CSRF-Token", &token)
        .multipart(form)
        .send()
        .await
        .expect("POST")
}

/// Saves the draft form with this audience source, template and variable fields.
async fn save_form(
    s: &Setup,
    edit: &str,
    source: &str,
    template: &str,
    variables: &[(&str, &str)],
) -> reqwest::Response {
    let mut fields = vec![
        ("name", "CSV orders"),
        ("channel", s.wa.public_id.as_str()),
        ("audience_source", source),
        ("template", template),
        ("time_zone", "UTC"),
    ];
    fields.extend_from_slice(variables);
    s.admin.post_form(edit, &fields).await
}

async fn the_form_uploads_a_csv_reports_its_rows_and_maps_its_columns(app: TestApp) {
    let s = setup(&app).await;
    let id = template_draft(&app, &s).await;
    let edit = format!("/broadcasts/{id}/edit");
    let html = s.admin.get_html(&edit).await;
    assert!(
        html.contains("Upload a CSV") && html.contains("id=\"csv-upload\""),
        "{html}"
    );

    // A file the form cannot use: the reason at the field, nothing changed.
    let res = upload_in_form(&s, &id, "", "Name\nAda\n").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("id=\"b-csv-error\"") && html.contains("phone number"),
        "{html}"
    );

    let res = upload_in_form(&s, &id, "Phone", FILE).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::helpers::location(&res), edit);
    let html = s.admin.get_html(&edit).await;
    assert!(html.contains("data-csv=\"good\">5<"), "{html}");
    assert!(html.contains("data-csv=\"duplicate\">1<"), "{html}");
    assert!(html.contains("data-csv=\"invalid_number\">2<"), "{html}");
    let rows = crate::helpers::texts(&html, "#csv-rejected tbody tr");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].contains("not-a-number"), "{rows:?}");
    assert!(rows[1].contains("duplicate of line 2"), "{rows:?}");
    assert!(
        html.contains("<option value=\"column:First\"") && html.contains("CSV column: Order"),
        "the columns are offered for the variables: {html}"
    );
    assert!(
        html.contains("value=\"csv\" data-audience-source checked"),
        "{html}"
    );

    // Variables from the columns; on to the review with the reach and the file's exclusions.
    let template: String = herald::storage::schema::templates::table
        .filter(herald::storage::schema::templates::name.eq("order_news"))
        .select(herald::storage::schema::templates::public_id)
        .first(&mut *app.db())
        .unwrap();
    let mapped = [
        ("var.1.source", "fallback"),
        ("var.1.key", "column:First"),
        ("var.1.text", "there"),
        ("var.2.source", "field"),
        ("var.2.key", "column:Order"),
        ("next", "review"),
    ];
    let res = save_form(&s, &edit, "csv", &template, &mapped).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = crate::helpers::location(&res);
    let html = s.admin.get_html(&page).await;
    // 101, 102 and 105 (106 misses its order, 107 opted out in the file).
    assert!(html.contains("data-reach>3<"), "{html}");
    assert!(html.contains("Invalid phone number (CSV)"), "{html}");
    assert!(html.contains("Duplicate number (CSV)"), "{html}");
    assert!(
        html.contains("The CSV file orders.csv: 5 of its 8 rows kept"),
        "{html}"
    );
    assert!(
        html.contains("Hi Ada, your order #1 has shipped."),
        "{html}"
    );
    let form = s.admin.get_html(&edit).await;
    assert!(
        form.contains("<option value=\"column:Order\" selected>"),
        "{form}"
    );

    // A test send to a row's contact uses that row's values, outside the broadcast.
    let res = s
        .admin
        .post_form(&format!("{page}/test"), &[("phones", "+14155550105")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let tests: Vec<(Option<i64>, String)> = messages::table
        .filter(messages::requested_by.like("%test of broadcast%"))
        .select((messages::campaign_id, messages::body))
        .load(&mut *app.db())
        .unwrap();
    assert_eq!(
        tests,
        vec![(
            None,
            "Hi =HYPERLINK(\"http://x\"), your order #6 has shipped.".to_owned()
        )]
    );

    // Back to lists and filters: the uploaded rows go.
    let fixed = [
        ("var.1.source", "fixed"),
        ("var.1.text", "there"),
        ("var.2.source", "fixed"),
        ("var.2.text", "#0"),
    ];
    let res = save_form(&s, &edit, "lists", &template, &fixed).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let left: i64 = broadcast_csv_rows::table
        .count()
        .get_result(&mut *app.db())
        .unwrap();
    assert_eq!(left, 0);
}

async fn hostile_cells_reject_their_row_only(app: TestApp) {
    let s = setup(&app).await;
    let id = template_draft(&app, &s).await;
    let huge = "x".repeat(20 * 1024);
    let mut csv = format!(
        "Phone,Note\n+14155550301,a\u{0}b\n+14155550302,{huge}\n+14155550303,fine\n+14155550304,"
    )
    .into_bytes();
    csv.extend_from_slice(b"caf\xe9\n+14155550305,too,many\n");
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/broadcasts/{id}/audience.csv",
            app.address
        ))
        .bearer_auth(&s.key)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::OK);
    let up: Value = res.json().await.unwrap();
    assert_eq!(up["csv"]["good"], 1, "{up}");
    assert_eq!(up["csv"]["invalid_row"], 4, "{up}");
    let reasons: Vec<(i64, String)> = up["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reasons[0].0 == 2 && reasons[0].1.contains("NUL"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 3 && reasons[1].1.contains("bytes"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == 5 && reasons[2].1.contains("not UTF-8"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].0 == 6 && reasons[3].1.contains("fields"),
        "{reasons:?}"
    );
    // Only the good row's number became a contact.
    assert!(contact_id(&app, "+14155550303").is_some());
    assert!(contact_id(&app, "+14155550301").is_none());
}

crate::both_backends!(
    spawn = spawn;
    hostile_cells_reject_their_row_only,
    a_csv_audience_keeps_good_rows_reports_bad_ones_and_sends_with_its_variables,
    the_form_uploads_a_csv_reports_its_rows_and_maps_its_columns,
);

/// In Chromium: choosing "Upload a CSV" shows the upload (and hides the lists), and the
/// upload (its inputs belong to a form of their own, outside the draft's) reads the file and
/// comes back to the form with its report and the columns offered to the variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_a_csv_becomes_the_audience() {
    use fantoccini::Locator;
    let app = spawn(crate::helpers::Backend::Sqlite).await;
    let s = setup(&app).await;
    let id = template_draft(&app, &s).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("orders.csv");
    std::fs::write(&file, FILE).expect("write the file");

    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    b.wait_for_text("Hello").await;
    b.goto(&format!("/broadcasts/{id}/edit")).await;
    b.wait_for_text("Upload a CSV").await;
    let shown = |css: &'static str| {
        let client = b.client.clone();
        async move {
            client
                .find(Locator::Css(css))
                .await
                .expect(css)
                .is_displayed()
                .await
                .expect("displayed")
        }
    };
    assert!(
        !shown("#b-csv-file").await,
        "the upload waits for its choice"
    );
    b.click("input[name=audience_source][value=csv]").await;
    assert!(shown("#b-csv-file").await);
    assert!(!shown("#b-match").await, "the lists and filters hide");
    let input = b
        .client
        .find(Locator::Css("#b-csv-file"))
        .await
        .expect("file input");
    input
        .send_keys(&file.display().to_string())
        .await
        .expect("choose the file");
    b.click("button[form=csv-upload]").await;
    b.wait_for_text("CSV read: 8 rows, 5 kept, 3 left out.")
        .await;
    let report = b.text("#csv-rejected").await;
    assert!(
        report.contains("not-a-number") && report.contains("duplicate of line 2"),
        "{report}"
    );
    assert!(
        shown("#b-csv-file").await,
        "a CSV audience opens on its upload"
    );
    let options = b.text("#v-2-key").await;
    assert!(options.contains("CSV column: Order"), "{options}");
    b.finish().await;
}
