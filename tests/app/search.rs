//! Contact search folds case and accents in every script (issue 15), on both backends, on the
//! contacts page and in the API, whichever way the contact was written: the API, the contact
//! form, a CSV import, an edit, a re-import that merges, a deletion, and rows written before
//! the search column existed (filled in when Herald starts).

use diesel::connection::SimpleConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixtures::admin_and_key;
use crate::helpers::{Client, TestApp, location, texts};

crate::both_backends!(
    search_folds_case_and_accents_however_a_contact_was_written,
    contacts_stored_before_the_search_column_are_found_after_a_start,
);

/// `q=…` with the value encoded as a browser would.
fn query(q: &str) -> String {
    let url = reqwest::Url::parse_with_params("http://herald.test/", &[("q", q)]).expect("url");
    url.query().unwrap_or_default().to_owned()
}

/// The names the contacts page lists for a search, sorted.
async fn page_names(admin: &Client, q: &str) -> Vec<String> {
    let page = admin.get_html(&format!("/contacts?{}", query(q))).await;
    let mut names = texts(&page, "tbody tr td:nth-child(2)");
    names.iter_mut().for_each(|n| *n = n.trim().to_owned());
    names.sort();
    names
}

/// The names `GET /api/v1/contacts?q=` answers with, sorted.
async fn api_names(app: &TestApp, key: &str, q: &str) -> Vec<String> {
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/contacts?{}", app.address, query(q)))
        .bearer_auth(key)
        .send()
        .await
        .expect("API GET");
    assert_eq!(res.status(), StatusCode::OK, "{q}");
    let body: Value = res.json().await.expect("json");
    let mut names: Vec<String> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// Both the page and the API find exactly `expected` for `q`.
async fn finds(app: &TestApp, admin: &Client, key: &str, q: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(page_names(admin, q).await, expected, "page, q={q:?}");
    assert_eq!(api_names(app, key, q).await, expected, "API, q={q:?}");
}

async fn api_upsert(app: &TestApp, key: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/contacts", app.address))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("API POST");
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.expect("json")
}

async fn api_import(app: &TestApp, key: &str, csv: &str) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/contacts/import", app.address))
        .bearer_auth(key)
        .header("Content-Type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .expect("import");
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.expect("json");
    assert_eq!(report["rejected"], json!([]), "{report}");
}

async fn search_folds_case_and_accents_however_a_contact_was_written(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;

    // Through the API, the contact form, a CSV import, and an API update of a contact.
    api_upsert(
        &app,
        &key,
        json!({"phone": "+12015550101", "name": "Łukasz Nowak"}),
    )
    .await;
    let res = admin
        .post_form(
            "/contacts",
            &[
                ("phone", "+12015550102"),
                ("name", "Anna Müller"),
                ("attr_key", "city"),
                ("attr_value", "Kraków"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let anna = location(&res);
    api_import(&app, &key, "phone,name\n+12015550103,Zoë Kravitz\n").await;
    api_upsert(
        &app,
        &key,
        json!({"phone": "+12015550104", "name": "Socrates"}),
    )
    .await;
    api_upsert(
        &app,
        &key,
        json!({"phone": "+12015550104", "name": "ΣΩΚΡΆΤΗΣ Παππάς"}),
    )
    .await;
    // Close, but not the same: never found by the searches above.
    api_upsert(
        &app,
        &key,
        json!({"phone": "+12015550105", "name": "Lucas Miller"}),
    )
    .await;

    finds(&app, &admin, &key, "łukasz", &["Łukasz Nowak"]).await;
    finds(&app, &admin, &key, "ŁUKASZ", &["Łukasz Nowak"]).await;
    finds(&app, &admin, &key, "lukasz", &["Łukasz Nowak"]).await;
    finds(&app, &admin, &key, "MÜLLER", &["Anna Müller"]).await;
    finds(&app, &admin, &key, "muller", &["Anna Müller"]).await;
    finds(&app, &admin, &key, "zoe", &["Zoë Kravitz"]).await;
    finds(&app, &admin, &key, "ZOË KRAV", &["Zoë Kravitz"]).await;
    finds(&app, &admin, &key, "σωκράτης", &["ΣΩΚΡΆΤΗΣ Παππάς"]).await;
    finds(&app, &admin, &key, "Σωκρατης", &["ΣΩΚΡΆΤΗΣ Παππάς"]).await;
    finds(&app, &admin, &key, "socrates", &[]).await;
    // Attribute values, and queries too short for a trigram index.
    finds(&app, &admin, &key, "krakow", &["Anna Müller"]).await;
    finds(&app, &admin, &key, "ZÖ", &["Zoë Kravitz"]).await;
    finds(
        &app,
        &admin,
        &key,
        "ł",
        &["Anna Müller", "Lucas Miller", "Łukasz Nowak"],
    )
    .await;
    finds(&app, &admin, &key, "nobody", &[]).await;
    // LIKE's wildcards and full-text query syntax are literal text.
    finds(&app, &admin, &key, "m_ller", &[]).await;
    finds(&app, &admin, &key, "krav*", &[]).await;
    finds(&app, &admin, &key, "\"zoe\" OR anna", &[]).await;
    finds(&app, &admin, &key, "NOT zoe", &[]).await;

    // An edit in the dashboard: the old name is no longer found, the new one is.
    let res = admin
        .post_form(
            &anna,
            &[
                ("name", "Anna Schäfer"),
                ("email", ""),
                ("language", ""),
                ("time_zone", ""),
                ("attr_key", "city"),
                ("attr_value", "Kraków"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    finds(&app, &admin, &key, "müller", &[]).await;
    finds(&app, &admin, &key, "SCHAFER", &["Anna Schäfer"]).await;

    // A re-import merges: the name stays (the file leaves it empty), the new value is found.
    api_import(&app, &key, "phone,name,city\n+12015550103,,São Paulo\n").await;
    finds(&app, &admin, &key, "sao paulo", &["Zoë Kravitz"]).await;
    finds(&app, &admin, &key, "zoe", &["Zoë Kravitz"]).await;

    // A deleted contact is no longer found.
    let res = admin.post_form(&format!("{anna}/delete"), &[]).await;
    assert_eq!(location(&res), "/contacts");
    finds(&app, &admin, &key, "schafer", &[]).await;
    finds(&app, &admin, &key, "krakow", &[]).await;
}

async fn contacts_stored_before_the_search_column_are_found_after_a_start(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    api_upsert(
        &app,
        &key,
        json!({"phone": "+12015550111", "name": "Zoë Müller", "attributes": {"city": "Łódź"}}),
    )
    .await;
    finds(&app, &admin, &key, "lodz", &["Zoë Müller"]).await;

    // As a database from before the search column: nothing folded stored for the row.
    app.db()
        .batch_execute("UPDATE contacts SET search_text = NULL")
        .expect("clear the search column");
    finds(&app, &admin, &key, "lodz", &[]).await;

    // A start (here a second instance on the same database) fills it in.
    let _second = app.second_instance().await;
    finds(&app, &admin, &key, "lodz", &["Zoë Müller"]).await;
    finds(&app, &admin, &key, "ZOE MULLER", &["Zoë Müller"]).await;
}
