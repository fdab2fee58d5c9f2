//! Contacts, lists, consent, CSV import and export, on both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixtures::admin_and_key;
use crate::helpers::{Backend, Client, TestApp, api_get, create_api_key, location, texts};

crate::both_backends!(
    contacts_are_created_edited_and_deleted_in_the_dashboard,
    search_filters_and_keyset_pages,
    the_browser_import_maps_columns_and_reports_bad_rows,
    a_messy_csv_keeps_every_good_row,
    imports_upsert_by_phone_and_never_erase,
    the_api_upserts_reads_and_finds_contacts,
    stop_opts_out_start_opts_back_in_and_replies_open_the_window,
    consent_changes_in_the_dashboard_respect_roles,
    only_an_admin_reverses_an_opt_out_by_simulated_reply,
    lists_and_bulk_actions,
    exports_stream_the_filtered_view,
    exports_neutralise_formulas_and_import_back_unchanged,
    nul_characters_are_refused_at_the_edges_naming_the_field,
    roles_for_contacts,
    the_api_lists_contacts_with_the_page_filters,
    concurrent_contact_writes_bulk_actions_and_an_import_never_answer_500,
);

/// A valid US number for index `i`.
fn phone(i: usize) -> String {
    format!("+1201555{:04}", i % 10_000)
}

async fn api_post(app: &TestApp, key: &str, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", app.address))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("API POST")
}

pub(crate) async fn api_import(
    app: &TestApp,
    key: &str,
    query: &str,
    csv: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/contacts/import{query}", app.address))
        .bearer_auth(key)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import");
    let status = res.status();
    (status, res.json().await.expect("JSON"))
}

async fn find_contact(app: &TestApp, key: &str, phone: &str) -> Option<Value> {
    let res = api_get(
        app,
        &format!("/api/v1/contacts?phone={}", urlencode(phone)),
        Some(key),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    v["data"].as_array().unwrap().first().cloned()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

/// Creates a contact named `name` through the API; returns the API's answer.
async fn new_contact(app: &TestApp, key: &str, phone: &str, name: &str) -> Value {
    api_post(
        app,
        key,
        "/api/v1/contacts",
        &json!({"phone": phone, "name": name}),
    )
    .await
    .json()
    .await
    .expect("the contact as JSON")
}

/// The id of `contact`'s channel of `kind` (`sms`, `whatsapp`, `viber`), as the API lists it.
fn channel_of(contact: &Value, kind: &str) -> String {
    contact["channels"]
        .as_array()
        .expect("the contact's channels")
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} channel in {contact}"))["channel_id"]
        .as_str()
        .expect("a channel id")
        .to_owned()
}

async fn contacts_are_created_edited_and_deleted_in_the_dashboard(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let page = admin.get_html("/contacts").await;
    assert!(page.contains("No contacts yet."));

    // Bad input is refused at the field, what was typed is kept.
    let res = admin
        .post_form(
            "/contacts",
            &[
                ("phone", "555"),
                ("name", "Ada"),
                ("email", "nope"),
                ("attr_key", "Phone"),
                ("attr_value", "x"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    let errors = texts(&body, ".field-error");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"555\" is not a valid phone number in US")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"nope\" is not a valid e-mail address")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("clashes with the contact's own phone field")),
        "{errors:?}"
    );
    assert!(body.contains("value=\"Ada\""));

    // A national number with the default country, attributes, and the contact page.
    let res = admin
        .post_form(
            "/contacts",
            &[
                ("phone", "(201) 555-0123"),
                ("name", "Ada Lovelace"),
                ("email", "ADA@example.com"),
                ("language", "en-gb"),
                ("time_zone", "europe/london"),
                ("attr_key", "Loyalty Tier"),
                ("attr_value", "gold"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let url = location(&res);
    let page = admin.get_html(&url).await;
    assert!(page.contains("Ada Lovelace was added."));
    assert!(page.contains("+12015550123"));
    assert!(page.contains("value=\"loyalty_tier\"") && page.contains("value=\"gold\""));
    assert!(page.contains("value=\"en_GB\"") && page.contains("value=\"Europe/London\""));

    // The same number again leads to the existing contact, unchanged.
    let res = admin
        .post_form(
            "/contacts",
            &[("phone", "+1 201 555 0123"), ("name", "Someone else")],
        )
        .await;
    assert_eq!(location(&res), url);
    assert!(
        admin
            .get_html(&url)
            .await
            .contains("already belongs to Ada Lovelace")
    );

    // Edit: change the name, drop the attribute, add another.
    let res = admin
        .post_form(
            &url,
            &[
                ("name", "Ada King"),
                ("email", "ada@example.com"),
                ("language", ""),
                ("time_zone", ""),
                ("attr_key", "loyalty_tier"),
                ("attr_value", ""),
                ("attr_key", "city"),
                ("attr_value", "London"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let c = find_contact(&app, &key, "+12015550123").await.unwrap();
    assert_eq!(c["name"], "Ada King");
    assert_eq!(c["attributes"], json!({"city": "London"}));
    assert_eq!(c["language"], "");

    let res = admin.post_form(&format!("{url}/delete"), &[]).await;
    assert_eq!(location(&res), "/contacts");
    assert!(find_contact(&app, &key, "+12015550123").await.is_none());
    assert_eq!(admin.get(&url).await.status(), StatusCode::NOT_FOUND);
    let audit = admin.get_html("/settings/audit").await;
    for action in ["contact.created", "contact.updated", "contact.deleted"] {
        assert!(audit.contains(action), "{action}");
    }
}

async fn search_filters_and_keyset_pages(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let mut csv = String::from("phone,name,tier\n");
    for i in 0..120 {
        csv.push_str(&format!(
            "{},Person {i},{}\n",
            phone(i),
            if i % 10 == 0 { "platinum" } else { "basic" }
        ));
    }
    let (status, _) = api_import(&app, &key, "?list=Tens", csv.clone()).await;
    assert_eq!(status, StatusCode::OK);

    let page = admin.get_html("/contacts").await;
    assert!(page.contains("120 contacts"));
    assert_eq!(texts(&page, "tbody tr").len(), 50);
    assert!(
        texts(&page, "tbody tr")[0].contains("Person 119"),
        "newest first"
    );
    let older = texts(&page, ".pager a").join(" ");
    assert!(older.contains("Older"));
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse(".pager a").unwrap();
    let next = doc
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    let page2 = admin.get_html(&next).await;
    let rows2 = texts(&page2, "tbody tr");
    assert_eq!(rows2.len(), 50);
    assert!(rows2[0].contains("Person 69"));
    let page3_href = {
        let d = scraper::Html::parse_document(&page2);
        d.select(&sel)
            .find(|a| a.text().any(|t| t.contains("Older")))
            .unwrap()
            .value()
            .attr("href")
            .unwrap()
            .to_owned()
    };
    let page3 = admin.get_html(&page3_href).await;
    assert_eq!(texts(&page3, "tbody tr").len(), 20);
    assert!(
        !texts(&page3, ".pager a").join(" ").contains("Older"),
        "the last page has no older link"
    );
    let back = {
        let d = scraper::Html::parse_document(&page3);
        d.select(&sel)
            .find(|a| a.text().any(|t| t.contains("Newer")))
            .unwrap()
            .value()
            .attr("href")
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        texts(&admin.get_html(&back).await, "tbody tr")[0],
        rows2[0],
        "newer goes back a page"
    );

    // Search by phone digits (any format), name, attribute value.
    let hits = texts(
        &admin.get_html("/contacts?q=%2B1+(201)+555-0042").await,
        "tbody tr",
    );
    assert_eq!(hits.len(), 1);
    assert!(hits[0].contains("Person 42"));
    let hits = texts(&admin.get_html("/contacts?q=person+11").await, "tbody tr");
    assert_eq!(hits.len(), 11, "Person 11 and 110..119: {hits:?}");
    let page = admin.get_html("/contacts?q=platinum").await;
    assert!(page.contains("12 contacts match"));
    let page = admin.get_html("/contacts?q=100%25_off").await;
    assert!(page.contains("No contacts match."), "wildcards are literal");

    // htmx asks for the results only.
    let res = admin
        .http
        .get(admin.url("/contacts?q=platinum"))
        .header("HX-Request", "true")
        .header("HX-Target", "contacts-results")
        .send()
        .await
        .unwrap();
    let partial = res.text().await.unwrap();
    assert!(!partial.contains("<title>") && partial.contains("12 contacts match"));

    // The list filter and the consent filter.
    let lists_page = admin.get_html("/contacts/lists").await;
    assert!(texts(&lists_page, "tr[data-list=\"Tens\"]")[0].contains("120"));
    let c = find_contact(&app, &key, &phone(7)).await.unwrap();
    let res = api_post(
        &app,
        &key,
        "/api/v1/contacts",
        &json!({"phone": phone(7), "consent": {"sms": "opted_out"}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = admin.get_html("/contacts?opted_out=sms").await;
    assert!(page.contains("1 contact matches"));
    assert!(page.contains(c["name"].as_str().unwrap()));
    assert!(page.contains("Opted out of SMS"));
}

async fn the_browser_import_maps_columns_and_reports_bad_rows(app: TestApp) {
    let admin = app.admin().await;
    let csv = "Mobile;Nom;Courriel;Fidélité;Consentement SMS\n\
               +33 6 12 34 56 78;Zoë Müller;zoe@example.com;or;opted_in\n\
               06 98 76 54 32;René;rene@example.com;argent;opted_out\n\
               +1 555 0100;Bad;bad@example.com;or;\n";
    // The preview: the browser sends the start of the file and gets the mapping form.
    let token = admin.csrf_token().await;
    let form = reqwest::multipart::Form::new()
        .text("file_name", "clients.csv")
        .part(
            "sample",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("clients.csv"),
        );
    let res = admin
        .http
        .post(admin.url("/contacts/import/preview"))
        .header("X-CSRF-Token", &token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mapping = res.text().await.unwrap();
    assert!(mapping.contains("Separated by semicolons; 5 columns"));
    assert!(mapping.contains("Zoë Müller"));
    let doc = scraper::Html::parse_fragment(&mapping);
    let selected = |name: &str| {
        let sel =
            scraper::Selector::parse(&format!("select[name={name}] option[selected]")).unwrap();
        doc.select(&sel)
            .next()
            .map(|o| o.value().attr("value").unwrap().to_owned())
    };
    assert_eq!(selected("target_0").as_deref(), Some("phone"));
    let import_id = {
        let sel = scraper::Selector::parse("input[name=import_id]").unwrap();
        doc.select(&sel)
            .next()
            .unwrap()
            .value()
            .attr("value")
            .unwrap()
            .to_owned()
    };

    // The person maps the columns (the French headers were not all guessed) and imports
    // into a new list, with French numbers as the default country.
    let form = reqwest::multipart::Form::new()
        .text("import_id", import_id.clone())
        .text("columns", "5")
        .text("header_0", "Mobile")
        .text("target_0", "phone")
        .text("header_1", "Nom")
        .text("target_1", "name")
        .text("header_2", "Courriel")
        .text("target_2", "email")
        .text("header_3", "Fidélité")
        .text("target_3", "attribute")
        .text("attribute_3", "Loyalty")
        .text("header_4", "Consentement SMS")
        .text("target_4", "consent:sms")
        .text("new_list", "Clients FR")
        .text("default_country", "FR")
        .text("delimiter", "semicolon")
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("clients.csv"),
        );
    let res = admin
        .http
        .post(admin.url("/contacts/import"))
        .header("X-CSRF-Token", &token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let result_url = location(&res);
    assert_eq!(result_url, format!("/contacts/imports/{import_id}"));
    let page = admin.get_html(&result_url).await;
    assert!(
        page.contains("3 rows read: 2 new contacts, 0 updated, 1 rejected."),
        "{page}"
    );
    assert!(page.contains("See the list Clients FR"));

    let report = admin.get(&format!("{result_url}/rejected.csv")).await;
    assert_eq!(report.headers()["content-type"], "text/csv; charset=utf-8");
    let report = report.text().await.unwrap();
    assert_eq!(
        report,
        "line,reason,Mobile,Nom,Courriel,Fidélité,Consentement SMS\n4,\"Mobile: \"\"+1 555 0100\"\" is not a valid phone number\",'+1 555 0100,Bad,bad@example.com,or,\n"
    );

    let key = create_api_key(&admin, "Reader", "marketer").await;
    let rene = find_contact(&app, &key, "+33698765432")
        .await
        .expect("national French number imported");
    assert_eq!(rene["attributes"]["loyalty"], "argent");
    assert_eq!(rene["lists"], json!(["Clients FR"]));
    assert_eq!(rene["consent"]["sms"]["status"], "opted_out");
    assert_eq!(rene["consent"]["sms"]["source"], "import");
    let zoe = find_contact(&app, &key, "+33612345678").await.unwrap();
    assert_eq!(zoe["name"], "Zoë Müller");
    assert_eq!(zoe["consent"]["sms"]["status"], "opted_in");

    // The same form again (a double click) does not import twice.
    let form = reqwest::multipart::Form::new()
        .text("import_id", import_id.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("clients.csv"),
        );
    let res = admin
        .http
        .post(admin.url("/contacts/import"))
        .header("X-CSRF-Token", &token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // A mapping without a phone column is refused before anything is imported.
    let form = reqwest::multipart::Form::new()
        .text("columns", "1")
        .text("header_0", "Mobile")
        .text("target_0", "name")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"Mobile\n+33612345678\n".to_vec()).file_name("x.csv"),
        );
    let res = admin
        .http
        .post(admin.url("/contacts/import"))
        .header("X-CSRF-Token", &token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("choose the column that holds the phone number")
    );

    // Without the CSRF token nothing happens.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("c.csv"),
    );
    let res = admin
        .http
        .post(admin.url("/contacts/import"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let imports = admin.get_html("/contacts/import").await;
    assert!(imports.contains("clients.csv"));
}

async fn a_messy_csv_keeps_every_good_row(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    // BOM, quoted fields with delimiters, quotes and a line break, UTF-8 names, a ragged row,
    // invalid and duplicate numbers, a Latin-1 row, an attribute too long.
    let mut csv: Vec<u8> = b"\xef\xbb\xbfphone,name,note\n".to_vec();
    csv.extend(b"+12015550001,\"Lovelace, Ada\",\"said \"\"hi\"\"\nthen left\"\n");
    csv.extend("+12015550002,Zoë Müller,ok\n".as_bytes());
    csv.extend(b"+12015550003,Ragged\n");
    csv.extend(b"+1 555 0100,Bad Number,x\n");
    csv.extend(b"+12015550002,Duplicate,y\n");
    csv.extend(b"+12015550004,Ren\xe9,latin-1\n");
    csv.extend(format!("+12015550005,Long,{}\n", "x".repeat(1500)).as_bytes());
    csv.extend(b"+12015550006,Last,row without newline");
    let (status, body) = api_import(&app, &key, "", csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], 8);
    assert_eq!(body["imported"], 3, "{body}");
    assert_eq!(body["rejected_total"], 5);
    let rejected = body["rejected"].as_array().unwrap();
    let reason = |row: u64| {
        rejected
            .iter()
            .find(|r| r["row"] == row)
            .map(|r| {
                (
                    r["value"].as_str().unwrap().to_owned(),
                    r["reason"].as_str().unwrap().to_owned(),
                )
            })
            .unwrap_or_else(|| panic!("row {row} not reported: {body}"))
    };
    // Line numbers count the header as 1 and the quoted line break.
    assert!(
        reason(5)
            .1
            .contains("this row has 2 fields but the header has 3")
    );
    assert_eq!(
        reason(6),
        (
            "+1 555 0100".into(),
            "phone: \"+1 555 0100\" is not a valid phone number".into()
        )
    );
    assert!(
        reason(7).1.contains("is already on row 4 of this file"),
        "{:?}",
        reason(7)
    );
    assert!(reason(8).1.contains("not UTF-8"));
    assert!(
        reason(9)
            .1
            .contains("note: attribute note has more than 1000 characters")
    );
    let ada = find_contact(&app, &key, "+12015550001").await.unwrap();
    assert_eq!(ada["name"], "Lovelace, Ada");
    assert_eq!(ada["attributes"]["note"], "said \"hi\"\nthen left");
    assert_eq!(
        find_contact(&app, &key, "+12015550002").await.unwrap()["name"],
        "Zoë Müller"
    );
    assert_eq!(
        find_contact(&app, &key, "+12015550006").await.unwrap()["attributes"]["note"],
        "row without newline"
    );

    // A 50 MB single field: that row is rejected, the rows around it imported, nothing blows up.
    let mut big = b"phone;name;note\n+12015550010;Before;a\n+12015550011;Huge;".to_vec();
    big.extend(std::iter::repeat_n(b'z', 50 * 1024 * 1024));
    big.extend(b"\n+12015550012;After;b\n");
    let (status, body) = api_import(&app, &key, "", big).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["imported"], 2);
    assert_eq!(body["rejected"][0]["row"], 3);
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("52428800 bytes")
    );

    // Duplicates far apart (in different batches) are caught too.
    let mut many = String::from("phone\tname\n");
    for i in 0..2500 {
        many.push_str(&format!("{}\tP{i}\n", phone(2000 + i)));
    }
    many.push_str(&format!("{}\tAgain\n", phone(2000)));
    let (_, body) = api_import(&app, &key, "", many).await;
    assert_eq!(body["imported"], 2500);
    assert_eq!(body["rejected"][0]["row"], 2502);
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("appears earlier in this file")
    );
    assert_eq!(
        find_contact(&app, &key, &phone(2000)).await.unwrap()["name"],
        "P0",
        "the first occurrence wins"
    );

    // Files that cannot be imported at all say why.
    for (csv, expected) in [
        (&b""[..], "the file is empty"),
        (&b"phone,name\n"[..], "the file has a header but no rows"),
        (
            &b"name,email\nAda,a@example.com\n"[..],
            "choose the column that holds the phone number",
        ),
        (&b"phone,\xe9tat\n+12015550099,x\n"[..], "not UTF-8"),
        (
            &b"phone,Phone Number\n+12015550099,+12015550098\n"[..],
            "both mapped to the phone number",
        ),
    ] {
        let (status, body) = api_import(&app, &key, "", csv.to_vec()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_csv");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{body}"
        );
    }
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/contacts/import", app.address))
        .bearer_auth(&key)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn imports_upsert_by_phone_and_never_erase(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let (_, body) = api_import(
        &app,
        &key,
        "?list=First",
        "phone,name,email,tier,city\n+12015550001,Ada,ada@example.com,gold,Paris\n",
    )
    .await;
    assert_eq!(body["imported"], 1);
    // The second file: the same person with an empty e-mail and a new attribute; a new person.
    let (_, body) = api_import(
        &app,
        &key,
        "?list=Second",
        "mobile,full name,email,tier,zip\n+1 201 555 0001,Ada Lovelace,,platinum,75001\n+12015550002,Bob,,,\n",
    )
    .await;
    assert_eq!(body["imported"], 1);
    assert_eq!(body["updated"], 1);
    let ada = find_contact(&app, &key, "+12015550001").await.unwrap();
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(
        ada["email"], "ada@example.com",
        "an empty cell does not erase"
    );
    assert_eq!(
        ada["attributes"],
        json!({"city": "Paris", "tier": "platinum", "zip": "75001"})
    );
    assert_eq!(ada["lists"], json!(["First", "Second"]));
}

async fn the_api_upserts_reads_and_finds_contacts(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let res = api_post(
        &app,
        &key,
        "/api/v1/contacts",
        &json!({"phone": "+44 20 7946 0018", "name": "Grace", "attributes": {"tier": "gold", "orders": 3}, "lists": ["VIP"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["phone"], "+442079460018");
    assert_eq!(
        created["attributes"],
        json!({"orders": "3", "tier": "gold"})
    );
    assert_eq!(created["lists"], json!(["VIP"]));
    let id = created["id"].as_str().unwrap().to_owned();
    // Every channel with its window and consent.
    let chans = created["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 3);
    for c in chans {
        assert_eq!(c["opted_out"], false);
        assert!(c["channel_id"].as_str().unwrap().len() > 30);
        let expected_open = c["kind"] == "sms";
        assert_eq!(c["window"]["open"], expected_open, "{c}");
        assert!(c["window"]["expires_at"].is_null());
    }

    let res = api_post(&app, &key, "/api/v1/contacts", &json!({"phone": "+442079460018", "email": "grace@example.com", "attributes": {"tier": ""}})).await;
    assert_eq!(res.status(), StatusCode::OK, "an update");
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["name"], "Grace");
    assert_eq!(updated["attributes"], json!({"orders": "3"}));

    let res = api_get(&app, &format!("/api/v1/contacts/{id}"), Some(&key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["email"],
        "grace@example.com"
    );
    let res = api_get(&app, "/api/v1/contacts/nope", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(find_contact(&app, &key, "+442079460019").await.is_none());

    for (body, code, words) in [
        (json!({"phone": "12"}), "invalid_phone", "\"12\" is not a"),
        (
            json!({"phone": "+442079460018", "email": "x"}),
            "invalid_field",
            "email:",
        ),
        (
            json!({"phone": "+442079460018", "attributes": {"name": "x"}}),
            "invalid_field",
            "clashes",
        ),
        (
            json!({"phone": "+442079460018", "consent": {"fax": "opted_out"}}),
            "invalid_field",
            "fax",
        ),
        (
            json!({"phone": "+442079460018", "nickname": "x"}),
            "invalid_json",
            "nickname",
        ),
        (json!({"name": "no phone"}), "invalid_json", "phone"),
    ] {
        let res = api_post(&app, &key, "/api/v1/contacts", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(words),
            "{err}"
        );
    }
    let res = api_get(&app, "/api/v1/contacts?phone=abc", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Paging through contacts.
    for i in 0..5 {
        api_post(&app, &key, "/api/v1/contacts", &json!({"phone": phone(i)})).await;
    }
    let page: Value = api_get(&app, "/api/v1/contacts?limit=4", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
    let next = page["next_before"].as_str().unwrap();
    let page2: Value = api_get(
        &app,
        &format!("/api/v1/contacts?limit=4&before={next}"),
        Some(&key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page2["data"].as_array().unwrap().len(), 2);
    assert!(page2["next_before"].is_null());
}

async fn stop_opts_out_start_opts_back_in_and_replies_open_the_window(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let contact = new_contact(&app, &key, &phone(1), "Sam").await;
    let id = contact["id"].as_str().unwrap().to_owned();
    let (sms, whatsapp) = (
        channel_of(&contact, "sms"),
        channel_of(&contact, "whatsapp"),
    );
    let reply = |channel: String, text: &'static str| {
        let admin = &admin;
        let id = id.clone();
        async move {
            let res = admin
                .post_form(
                    &format!("/contacts/{id}/simulate-reply"),
                    &[("channel", &channel), ("text", text)],
                )
                .await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
            admin.get_html(&format!("/contacts/{id}")).await
        }
    };
    let state = |kind: &'static str| {
        let id = id.clone();
        let app = &app;
        let key = key.clone();
        async move {
            let c: Value = api_get(app, &format!("/api/v1/contacts/{id}"), Some(&key))
                .await
                .json()
                .await
                .unwrap();
            c["channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["kind"] == kind)
                .unwrap()
                .clone()
        }
    };

    // A reply on WhatsApp opens its window for 24 hours.
    let page = reply(whatsapp.clone(), "Hello, where is my parcel?").await;
    assert!(page.contains("The 24-hour window is open."));
    assert!(
        texts(&page, "tr[data-channel=\"Sandbox WhatsApp\"] .window")[0]
            .starts_with("open, 23 h 59 min left")
    );
    let wa = state("whatsapp").await;
    assert_eq!(wa["window"]["open"], true);
    let expires =
        chrono::DateTime::parse_from_rfc3339(wa["window"]["expires_at"].as_str().unwrap()).unwrap();
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "{hours}");
    assert!(
        page.contains("Hello, where is my parcel?"),
        "the timeline shows it"
    );

    // "STOP please" is not a keyword; "stop" is, on that kind of channel only.
    reply(sms.clone(), "STOP please").await;
    assert_eq!(state("sms").await["opted_out"], false);
    let page = reply(sms.clone(), "  stop ").await;
    assert!(page.contains("That is an opt-out keyword: no more SMS messages go to them."));
    assert_eq!(state("sms").await["opted_out"], true);
    assert_eq!(state("whatsapp").await["opted_out"], false);
    let consent = texts(&page, "tr[data-consent=\"sms\"]")[0].clone();
    assert!(
        consent.contains("Opted out") && consent.contains("by keyword (STOP on Sandbox SMS)"),
        "{consent}"
    );
    let list = admin.get_html("/contacts?opted_out=sms").await;
    assert!(list.contains("1 contact matches"));

    // START brings them back.
    let page = reply(sms.clone(), "START").await;
    assert!(page.contains("That is an opt-in keyword"));
    assert_eq!(state("sms").await["opted_out"], false);

    // A new number writing in becomes a contact.
    let res = admin
        .post_form(
            &format!("/contacts/{id}/simulate-reply"),
            &[("channel", &sms), ("text", "")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn consent_changes_in_the_dashboard_respect_roles(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let marketer = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let c: Value = api_post(&app, &key, "/api/v1/contacts", &json!({"phone": phone(3)}))
        .await
        .json()
        .await
        .unwrap();
    let id = c["id"].as_str().unwrap();
    let url = format!("/contacts/{id}/consent");

    let res = marketer
        .post_form(&url, &[("kind", "whatsapp"), ("status", "opted_out")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = marketer.get_html(&format!("/contacts/{id}")).await;
    assert!(page.contains("is now opted out of WhatsApp messages."));
    assert!(texts(&page, "tr[data-consent=\"whatsapp\"]")[0].contains("in the dashboard"));
    // Only an admin may reverse an opt-out.
    let res = marketer
        .post_form(&url, &[("kind", "whatsapp"), ("status", "opted_in")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("only an admin may opt them back in")
    );
    let res = admin
        .post_form(&url, &[("kind", "whatsapp"), ("status", "opted_in")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin
        .post_form(&url, &[("kind", "fax"), ("status", "opted_in")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Through the API with a marketer's key: the same rule.
    let mkey = create_api_key(&admin, "Marketing", "marketer").await;
    api_post(
        &app,
        &mkey,
        "/api/v1/contacts",
        &json!({"phone": phone(3), "consent": {"viber": "opted_out"}}),
    )
    .await;
    let res = api_post(
        &app,
        &mkey,
        "/api/v1/contacts",
        &json!({"phone": phone(3), "consent": {"viber": "opted_in"}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let audit = admin.get_html("/settings/audit").await;
    assert!(audit.contains("contact.consent_changed"));
}

/// The audit entries of consent changes, newest first.
async fn consent_audit(app: &TestApp, key: &str) -> Vec<Value> {
    let page: Value = api_get(app, "/api/v1/audit", Some(key))
        .await
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "contact.consent_changed")
        .cloned()
        .collect()
}

async fn simulate(who: &Client, url: &str, channel: &str, text: &str) -> reqwest::Response {
    who.post_form(url, &[("channel", channel), ("text", text)])
        .await
}

/// A marketer's simulated "START" re-subscribed an opted-out contact (consent is per kind:
/// on every WhatsApp channel), with no audit entry, while every direct route refuses it.
async fn only_an_admin_reverses_an_opt_out_by_simulated_reply(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let marketer = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let contact = new_contact(&app, &key, &phone(5), "Sam").await;
    let id = contact["id"].as_str().unwrap().to_owned();
    let whatsapp = channel_of(&contact, "whatsapp");
    let opted_out = || async {
        let c: Value = api_get(&app, &format!("/api/v1/contacts/{id}"), Some(&key))
            .await
            .json()
            .await
            .unwrap();
        c["consent"]["whatsapp"]["status"] == "opted_out"
    };
    let url = format!("/contacts/{id}/simulate-reply");

    // Anyone may simulate STOP; the change is audited with who typed it.
    let res = simulate(&marketer, &url, &whatsapp, "STOP").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(opted_out().await);
    let audit = consent_audit(&app, &key).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["details"]["status"], "opted_out");
    assert!(
        audit[0]["actor"]["label"]
            .as_str()
            .unwrap()
            .contains("mia@example.com")
    );

    // A marketer's simulated START is refused, and the contact stays opted out.
    for text in ["START", "unstop", "Yes!"] {
        let res = simulate(&marketer, &url, &whatsapp, text).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{text}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("does not opt them back in: only an admin may"),
            "{body}"
        );
        assert!(opted_out().await, "{text} reversed the opt-out");
    }
    assert_eq!(consent_audit(&app, &key).await.len(), 1);

    // An admin's simulated START opts them back in, audited as the admin's act.
    let res = simulate(&admin, &url, &whatsapp, "START").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html(&location(&res)).await;
    assert!(
        page.contains("as an admin you opted them back in"),
        "{page}"
    );
    assert!(!opted_out().await);
    let audit = consent_audit(&app, &key).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0]["details"]["status"], "opted_in");
    assert_eq!(audit[0]["details"]["kind"], "whatsapp");
    assert!(
        audit[0]["details"]["detail"]
            .as_str()
            .unwrap()
            .contains("simulated reply \"START\""),
        "{audit:?}"
    );
    assert!(
        audit[0]["actor"]["label"]
            .as_str()
            .unwrap()
            .contains(crate::helpers::ADMIN_EMAIL)
    );

    // Opted in already, a marketer's START changes nothing and is not refused.
    let res = simulate(&marketer, &url, &whatsapp, "START").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!opted_out().await);
}

async fn lists_and_bulk_actions(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let mut csv = String::from("phone,name,tier\n");
    for i in 0..30 {
        csv.push_str(&format!(
            "{},P{i},{}\n",
            phone(i),
            if i < 10 { "gold" } else { "basic" }
        ));
    }
    api_import(&app, &key, "", csv).await;

    let res = admin
        .post_form("/contacts/lists", &[("name", "Gold")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin
        .post_form("/contacts/lists", &[("name", "Gold")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        texts(&res.text().await.unwrap(), ".field-error"),
        ["There is already a list called \"Gold\"."]
    );
    let res = admin.post_form("/contacts/lists", &[("name", "  ")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = admin.get_html("/contacts/lists").await;
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("tr[data-list=\"Gold\"] a").unwrap();
    let list_id = doc
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .trim_start_matches("/contacts?list=")
        .to_owned();

    // All contacts matching a search, added at once.
    let res = admin
        .post_form(
            "/contacts/bulk",
            &[
                ("action", "add_to_list"),
                ("target_list", &list_id),
                ("scope", "all"),
                ("q", "gold"),
            ],
        )
        .await;
    assert_eq!(location(&res), "/contacts?q=gold");
    assert!(
        admin
            .get_html("/contacts?q=gold")
            .await
            .contains("Added 10 contacts to Gold.")
    );
    assert!(
        texts(
            &admin.get_html("/contacts/lists").await,
            "tr[data-list=\"Gold\"]"
        )[0]
        .contains("10")
    );

    // Selected ones removed.
    let members = admin.get_html(&format!("/contacts?list={list_id}")).await;
    let doc = scraper::Html::parse_document(&members);
    let sel = scraper::Selector::parse("input[name=ids]").unwrap();
    let ids: Vec<String> = doc
        .select(&sel)
        .take(3)
        .map(|e| e.value().attr("value").unwrap().to_owned())
        .collect();
    let mut fields = vec![
        ("action", "remove_from_list"),
        ("target_list", list_id.as_str()),
        ("scope", "selected"),
        ("list", list_id.as_str()),
    ];
    for id in &ids {
        fields.push(("ids", id));
    }
    admin.post_form("/contacts/bulk", &fields).await;
    assert!(
        admin
            .get_html(&format!("/contacts?list={list_id}"))
            .await
            .contains("7 contacts match")
    );

    // Nothing selected, or no action: a clear message and nothing done.
    admin
        .post_form(
            "/contacts/bulk",
            &[("action", "delete"), ("scope", "selected")],
        )
        .await;
    assert!(
        admin
            .get_html("/contacts")
            .await
            .contains("Select at least one contact")
    );

    // Rename, then delete the list: its contacts stay.
    admin
        .post_form(
            &format!("/contacts/lists/{list_id}/rename"),
            &[("name", "Gold members")],
        )
        .await;
    assert!(
        admin
            .get_html("/contacts/lists")
            .await
            .contains("Gold members")
    );
    admin
        .post_form(&format!("/contacts/lists/{list_id}/delete"), &[])
        .await;
    let page = admin.get_html("/contacts/lists").await;
    assert!(
        page.contains("deleted; its contacts are still there") && page.contains("No lists yet.")
    );
    assert!(admin.get_html("/contacts").await.contains("30 contacts"));

    // Bulk delete of everything matching, confirmed in the page.
    admin
        .post_form(
            "/contacts/bulk",
            &[("action", "delete"), ("scope", "all"), ("q", "basic")],
        )
        .await;
    assert!(
        admin
            .get_html("/contacts")
            .await
            .contains("Deleted 20 contacts.")
    );
    assert!(admin.get_html("/contacts").await.contains("10 contacts"));
}

async fn exports_stream_the_filtered_view(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let mut csv = String::from("phone,name,tier,city\n");
    for i in 0..2300 {
        csv.push_str(&format!(
            "{},\"Name, {i}\",{},Lyon\n",
            phone(i),
            if i % 2 == 0 { "even" } else { "odd" }
        ));
    }
    api_import(&app, &key, "", csv).await;
    api_post(
        &app,
        &key,
        "/api/v1/contacts",
        &json!({"phone": phone(4), "consent": {"whatsapp": "opted_out"}}),
    )
    .await;

    let res = admin.get("/contacts/export.csv?q=even").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"contacts-")
    );
    let body = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
            "phone",
            "name",
            "email",
            "language",
            "time_zone",
            "consent_whatsapp",
            "consent_sms",
            "consent_viber",
            "created_at",
            "updated_at",
            "city",
            "tier"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1150);
    assert!(rows.iter().all(|r| &r[11] == "even"));
    // Phone numbers carry the quote that keeps spreadsheets from evaluating them.
    let four = rows
        .iter()
        .find(|r| r[0] == format!("'{}", phone(4)))
        .unwrap();
    assert_eq!(&four[1], "Name, 4");
    assert_eq!(&four[5], "opted_out");
    let all = admin
        .get("/contacts/export.csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(all.lines().count(), 2301);
}

/// Cells a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn csv_cells(body: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

async fn exports_neutralise_formulas_and_import_back_unchanged(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let evil = "=HYPERLINK(\"http://evil.test\",\"Click me\")";
    let res = api_post(
        &app,
        &key,
        "/api/v1/contacts",
        &json!({
            "phone": phone(7),
            "name": evil,
            "attributes": {"note": "@SUM(1+1)", "balance": "-5", "quoted": "'=kept", "city": "Lyon"},
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // The export: every formula cell starts with a quote, the rest of its value kept; phone
    // numbers too (a spreadsheet would turn +1… into a number).
    let res = admin.get("/contacts/export.csv").await;
    assert_eq!(res.status(), StatusCode::OK);
    let exported = res.text().await.unwrap();
    let cells = csv_cells(&exported);
    let header = &cells[0];
    let row = &cells[1];
    let cell = |name: &str| row[header.iter().position(|h| h == name).unwrap()].as_str();
    assert_eq!(cell("phone"), format!("'{}", phone(7)));
    assert_eq!(cell("name"), format!("'{evil}"));
    assert_eq!(cell("note"), "'@SUM(1+1)");
    assert_eq!(cell("balance"), "'-5");
    assert_eq!(
        cell("quoted"),
        "''=kept",
        "a quote before a formula is doubled"
    );
    assert_eq!(cell("city"), "Lyon");
    for c in cells.iter().flatten() {
        assert!(!c.starts_with(FORMULA_STARTS), "{c:?} would be evaluated");
    }

    // The export imports back as it is: same contact (updated, not new), same values.
    let (status, result) = api_import(&app, &key, "", exported).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["updated"], 1, "{result}");
    assert_eq!(result["imported"], 0, "{result}");
    assert_eq!(result["rejected"], json!([]), "{result}");
    let c = find_contact(&app, &key, &phone(7)).await.unwrap();
    assert_eq!(c["name"], evil);
    assert_eq!(c["attributes"]["note"], "@SUM(1+1)");
    assert_eq!(c["attributes"]["balance"], "-5");
    assert_eq!(c["attributes"]["quoted"], "'=kept");

    // The rejected-rows report quotes the bad values the same way.
    let (status, result) = api_import(
        &app,
        &key,
        "",
        "phone,name\n\"=cmd|' /C calc'!A0\",Eve\n-2+3,Mallory\n@x,Trudy\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["rejected"].as_array().unwrap().len(), 3, "{result}");
    let report = result["report_url"].as_str().unwrap();
    let path = &report[report.find("/contacts/imports/").unwrap()..];
    let res = admin.get(path).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cells = csv_cells(&res.text().await.unwrap());
    // Line, reason, then the file's own columns: `phone` is the third.
    assert_eq!(cells[0], ["line", "reason", "phone", "name"]);
    let values: Vec<&str> = cells[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(values, ["'=cmd|' /C calc'!A0", "'-2+3", "'@x"]);
    for c in cells.iter().flatten() {
        assert!(!c.starts_with(FORMULA_STARTS), "{c:?} would be evaluated");
    }
}

/// A 422 whose message names `field` and says what is wrong with it.
async fn refused_for_nul(res: reqwest::Response, field: &str) {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
    assert!(
        body.contains(&format!("{field}: contains a NUL character")),
        "{field}: {body}"
    );
}

/// PostgreSQL refuses NUL in text: each of these gave a 500 there. Now every edge refuses it
/// with a 422 naming the field, and an import rejects only the row that holds one.
async fn nul_characters_are_refused_at_the_edges_naming_the_field(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let contact = new_contact(&app, &key, &phone(1), "Sam").await;
    let id = contact["id"].as_str().unwrap().to_owned();
    let sms = channel_of(&contact, "sms");

    // The sign-in form.
    let visitor = app.client();
    refused_for_nul(visitor.login("ada\0@example.com", "x").await, "email").await;

    // Searches and filters: the contacts page, its export, the API.
    refused_for_nul(admin.get("/contacts?q=a%00b").await, "q").await;
    refused_for_nul(admin.get("/contacts?list=%00").await, "list").await;
    refused_for_nul(admin.get("/contacts/export.csv?q=%00").await, "q").await;
    refused_for_nul(
        api_get(&app, "/api/v1/contacts?q=%00", Some(&key)).await,
        "q",
    )
    .await;

    // Message text: the API and the send page.
    let res = api_post(
        &app,
        &key,
        "/api/v1/messages",
        &json!({"to": phone(1), "channel": sms, "text": "hello\u{0}"}),
    )
    .await;
    refused_for_nul(res, "text").await;
    let res = api_post(
        &app,
        &key,
        "/api/v1/contacts",
        &json!({"phone": phone(2), "attributes": {"city": "Ly\u{0}on"}}),
    )
    .await;
    refused_for_nul(res, "attributes.city").await;
    assert!(find_contact(&app, &key, &phone(2)).await.is_none());
    let res = admin
        .post_form(
            "/send",
            &[
                ("contact", id.as_str()),
                ("channel", sms.as_str()),
                ("mode", "text"),
                ("text", "hello\0"),
                ("idempotency_key", "nul-1"),
            ],
        )
        .await;
    refused_for_nul(res, "text").await;

    // A simulated reply.
    let res = admin
        .post_form(
            &format!("/contacts/{id}/simulate-reply"),
            &[("channel", sms.as_str()), ("text", "\0")],
        )
        .await;
    refused_for_nul(res, "text").await;

    // An address with a NUL names nothing.
    assert_eq!(
        admin.get("/contacts/%00").await.status(),
        StatusCode::NOT_FOUND
    );

    // An import: only the row with a NUL is rejected, with the reason; a NUL in `?list=` is
    // refused.
    let csv = format!(
        "phone,name,city\n{},Ada,Paris\n{},Bo\0b,Lyon\n{}\0,Cy,Nice\n{},Di,Rome\n",
        phone(10),
        phone(11),
        phone(12),
        phone(13)
    );
    let (status, result) = api_import(&app, &key, "", csv).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["imported"], 2, "{result}");
    let rejected = result["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{result}");
    assert_eq!(rejected[0]["row"], 3);
    assert_eq!(
        rejected[0]["reason"],
        "name: the value contains a NUL character (U+0000); remove it"
    );
    assert_eq!(rejected[0]["value"], "Bo\u{FFFD}b");
    assert_eq!(rejected[1]["row"], 4);
    assert!(
        rejected[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("phone: ")
    );
    assert!(find_contact(&app, &key, &phone(13)).await.is_some());
    assert!(find_contact(&app, &key, &phone(11)).await.is_none());
    let (status, result) = api_import(&app, &key, "?list=%00", "phone\n+12015550100\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{result}");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("list: contains a NUL character"),
        "{result}"
    );
}

crate::both_backends!(with_backend parallel_imports: parallel_imports_with_the_production_pool);

/// `parallel_imports_complete_or_answer_busy` with the production pool size (16), where the
/// imports outnumber no connections but one another.
async fn parallel_imports_with_the_production_pool(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.db_pool_size = 16).await;
    parallel_imports_complete_or_answer_busy(app).await;
}

/// Twenty imports at once: on SQLite one answered 500 "database is locked" and the rest of
/// the server stalled. Each import now either completes fully or is refused with 503 and
/// `Retry-After` before it wrote anything; none fails half-way.
async fn parallel_imports_complete_or_answer_busy(app: TestApp) {
    const IMPORTS: usize = 20;
    const ROWS: usize = 5000;
    let (_admin, key) = admin_and_key(&app).await;
    let imports = (0..IMPORTS).map(|n| {
        let mut csv = String::from("phone,name,tier\n");
        for r in 0..ROWS {
            let i = n * ROWS + r;
            csv.push_str(&format!(
                "+1201{}{:04},Person {i},t{n}\n",
                200 + i / 10_000,
                i % 10_000
            ));
        }
        let url = format!("{}/api/v1/contacts/import", app.address);
        let key = key.clone();
        async move {
            let res = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .header("Content-Type", "text/csv")
                .body(csv)
                .send()
                .await
                .expect("import");
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = res.json().await.expect("JSON");
            (status, retry_after, body)
        }
    });
    // Watch how many run at once while they go.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let url = app.database_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = herald::storage::Db::connect(&url, 1)
                .unwrap()
                .get()
                .unwrap();
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let running = herald::storage::imports::recent(&mut conn, 100)
                    .unwrap()
                    .iter()
                    .filter(|i| i.is_running())
                    .count();
                most = most.max(running);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            most
        })
    };
    let results = futures_util::future::join_all(imports).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let most_at_once = watcher.await.unwrap();
    // A quarter of the pool of 16 at most (two on SQLite, four on PostgreSQL).
    assert!(most_at_once <= 4, "{most_at_once} imports ran at once");
    let mut completed = 0;
    for (status, retry_after, body) in &results {
        match *status {
            StatusCode::OK => {
                assert_eq!(body["imported"], ROWS, "{body}");
                assert_eq!(body["rejected"], json!([]), "{body}");
                completed += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after.is_some_and(|s| s > 0), "{body}");
            }
            other => panic!("an import answered {other}: {body}"),
        }
    }
    assert!(completed > 0, "no import completed");
    // What completed is all there; what was refused left nothing behind.
    let mut conn = app.db();
    let contacts = herald::storage::contacts::count(
        &mut conn,
        &herald::storage::contacts::ContactFilter::default(),
    )
    .unwrap();
    assert_eq!(contacts, (completed * ROWS) as i64);
    let recent = herald::storage::imports::recent(&mut conn, 50).unwrap();
    assert_eq!(recent.len(), completed);
    assert!(recent.iter().all(|i| i.status == "done"), "{recent:?}");
}

async fn roles_for_contacts(app: TestApp) {
    let admin = app.admin().await;
    let lead = app
        .user_with_role(&admin, "sam@example.com", "support_lead")
        .await;
    assert_eq!(lead.get("/contacts").await.status(), StatusCode::OK);
    assert_eq!(
        lead.get("/contacts/import").await.status(),
        StatusCode::FORBIDDEN
    );
    let res = lead
        .post_form(
            "/contacts",
            &[("phone", "+12015550001"), ("name", "From lead")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let lead_key = create_api_key(&admin, "Helpdesk", "support_lead").await;
    let (status, body) = api_import(&app, &lead_key, "", "phone\n+12015550002\n").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        api_get(&app, "/api/v1/contacts", Some(&lead_key))
            .await
            .status(),
        StatusCode::OK
    );
    let page = lead.get_html("/contacts").await;
    assert!(
        !page.contains("Import CSV"),
        "no import button for support leads"
    );
}

/// The phone numbers of an API page of contacts, and its `next_before`.
async fn api_phones(app: &TestApp, key: &str, query: &str) -> (Vec<String>, Value) {
    let res = api_get(app, &format!("/api/v1/contacts{query}"), Some(key)).await;
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    let page: Value = res.json().await.unwrap();
    let mut phones: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phone"].as_str().unwrap().to_owned())
        .collect();
    phones.sort();
    (phones, page["next_before"].clone())
}

/// `GET /api/v1/contacts` filters as the contacts page does: `list` (id or name), `opted_out`
/// (a kind of channel), `language`, with `q`, and pages through a filtered view.
async fn the_api_lists_contacts_with_the_page_filters(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    for i in 0..6 {
        let mut body = json!({
            "phone": phone(i),
            "name": format!("Filter {i}"),
            "language": if i % 2 == 0 { "fr" } else { "en" },
        });
        if i < 3 {
            body["lists"] = json!(["VIP"]);
        }
        if i == 1 || i == 4 {
            body["consent"] = json!({"sms": "opted_out"});
        }
        let res = api_post(&app, &key, "/api/v1/contacts", &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let all = |is: &[usize]| is.iter().map(|i| phone(*i)).collect::<Vec<_>>();

    assert_eq!(api_phones(&app, &key, "").await.0, all(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(api_phones(&app, &key, "?list=VIP").await.0, all(&[0, 1, 2]));
    // The list's id works as on the page.
    let lists = admin.get_html("/contacts/lists").await;
    let doc = scraper::Html::parse_document(&lists);
    let sel = scraper::Selector::parse("tr[data-list=\"VIP\"] a").unwrap();
    let list_id = doc
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .trim_start_matches("/contacts?list=")
        .to_owned();
    assert_eq!(
        api_phones(&app, &key, &format!("?list={list_id}")).await.0,
        all(&[0, 1, 2])
    );
    assert_eq!(
        api_phones(&app, &key, "?opted_out=sms").await.0,
        all(&[1, 4])
    );
    assert_eq!(
        api_phones(&app, &key, "?language=fr").await.0,
        all(&[0, 2, 4])
    );
    assert_eq!(
        api_phones(&app, &key, "?list=VIP&language=fr&opted_out=")
            .await
            .0,
        all(&[0, 2])
    );
    assert_eq!(
        api_phones(&app, &key, "?q=Filter%205&language=en").await.0,
        all(&[5])
    );
    // Empty filters filter nothing; the page agrees on what matches.
    assert_eq!(
        api_phones(&app, &key, "?list=&opted_out=&language=")
            .await
            .0,
        all(&[0, 1, 2, 3, 4, 5])
    );
    assert!(
        admin
            .get_html("/contacts?opted_out=sms")
            .await
            .contains("2 contacts match")
    );

    // A filtered view pages by `before` with the same filters.
    let (first, next) = api_phones(&app, &key, "?list=VIP&limit=2").await;
    assert_eq!(first, all(&[1, 2]), "newest first");
    let next = next.as_str().expect("a next page").to_owned();
    let (rest, last) = api_phones(&app, &key, &format!("?list=VIP&limit=2&before={next}")).await;
    assert_eq!(rest, all(&[0]));
    assert!(last.is_null());

    // Filters that name nothing.
    let res = api_get(&app, "/api/v1/contacts?opted_out=fax", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_filter", "{body}");
    assert!(body["error"]["fields"]["opted_out"].is_string(), "{body}");
    let res = api_get(&app, "/api/v1/contacts?list=Nobody", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    // The page keeps answering 400 for a kind of channel that is none.
    assert_eq!(
        admin.get("/contacts?opted_out=fax").await.status(),
        StatusCode::BAD_REQUEST
    );
}

/// Contact updates (page and API), consent changes, bulk actions over every matching contact
/// and a CSV import, all at once through the real server: every write waits its turn (on
/// SQLite `BEGIN IMMEDIATE`), none answers 500 ("database is locked").
async fn concurrent_contact_writes_bulk_actions_and_an_import_never_answer_500(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let mut csv = String::from("phone,name,tier\n");
    for i in 0..300 {
        csv.push_str(&format!("{},Busy {i},t{}\n", phone(i), i % 3));
    }
    let (status, _) = api_import(&app, &key, "", csv).await;
    assert_eq!(status, StatusCode::OK);
    let res = admin
        .post_form("/contacts/lists", &[("name", "Crowd")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let lists = admin.get_html("/contacts/lists").await;
    let doc = scraper::Html::parse_document(&lists);
    let sel = scraper::Selector::parse("tr[data-list=\"Crowd\"] a").unwrap();
    let list_id = doc
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .trim_start_matches("/contacts?list=")
        .to_owned();
    let ids: Vec<String> = {
        let res = api_get(&app, "/api/v1/contacts?limit=20", Some(&key)).await;
        let page: Value = res.json().await.unwrap();
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let token = admin.csrf_token().await;

    let mut tasks: Vec<tokio::task::JoinHandle<(String, StatusCode)>> = Vec::new();
    // A second import of fresh numbers, running while everything else writes.
    {
        let (app_address, key) = (app.address.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut csv = String::from("phone,name\n");
            for i in 1000..4000 {
                csv.push_str(&format!("{},Imported {i}\n", phone(i)));
            }
            let res = reqwest::Client::new()
                .post(format!("{app_address}/api/v1/contacts/import?list=Crowd"))
                .bearer_auth(&key)
                .header("Content-Type", "text/csv")
                .body(csv)
                .send()
                .await
                .expect("import");
            ("import".into(), res.status())
        }));
    }
    for round in 0..4 {
        // API upserts of existing contacts, with consent and lists.
        for i in 0..5 {
            let (app_address, key) = (app.address.clone(), key.clone());
            let n = round * 5 + i;
            tasks.push(tokio::spawn(async move {
                let res = reqwest::Client::new()
                    .post(format!("{app_address}/api/v1/contacts"))
                    .bearer_auth(&key)
                    .json(&json!({
                        "phone": phone(n),
                        "name": format!("Updated {n}"),
                        "consent": {"sms": if n % 2 == 0 { "opted_out" } else { "opted_in" }},
                        "lists": ["Crowd"],
                    }))
                    .send()
                    .await
                    .expect("upsert");
                (format!("upsert {n}"), res.status())
            }));
        }
        // Page updates, consent changes and bulk actions, with the admin's session.
        for (i, id) in ids.iter().enumerate().skip(round * 5).take(5) {
            let (http, base, csrf, contact) = (
                admin.http.clone(),
                admin.base.clone(),
                token.clone(),
                id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let (token, id) = (csrf, contact);
                let name = format!("Page {i}");
                let res = http
                    .post(format!("{base}/contacts/{id}"))
                    .form(&[
                        ("name", name.as_str()),
                        ("attr_key", "tier"),
                        ("attr_value", "gold"),
                        ("csrf_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("update");
                (format!("update {id}"), res.status())
            }));
            let (http, base, token, id) = (
                admin.http.clone(),
                admin.base.clone(),
                token.clone(),
                id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let res = http
                    .post(format!("{base}/contacts/{id}/consent"))
                    .form(&[
                        ("kind", "whatsapp"),
                        ("status", "opted_out"),
                        ("csrf_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("consent");
                (format!("consent {id}"), res.status())
            }));
        }
        for action in ["add_to_list", "remove_from_list"] {
            let (http, base, token, list_id) = (
                admin.http.clone(),
                admin.base.clone(),
                token.clone(),
                list_id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let res = http
                    .post(format!("{base}/contacts/bulk"))
                    .form(&[
                        ("action", action),
                        ("target_list", list_id.as_str()),
                        ("scope", "all"),
                        ("q", "Busy"),
                        ("csrf_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("bulk");
                (format!("bulk {action}"), res.status())
            }));
        }
    }
    // And a bulk delete of a slice nobody else touches (Busy 25 and Busy 250 to 259).
    {
        let (http, base, token) = (admin.http.clone(), admin.base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(format!("{base}/contacts/bulk"))
                .form(&[
                    ("action", "delete"),
                    ("scope", "all"),
                    ("q", "Busy 25"),
                    ("csrf_token", token.as_str()),
                ])
                .send()
                .await
                .expect("bulk delete");
            ("bulk delete".into(), res.status())
        }));
    }

    let mut failures = Vec::new();
    for task in tasks {
        let (what, status) = task.await.expect("task");
        if status.is_server_error() || status.is_client_error() {
            failures.push(format!("{what}: {status}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");

    // Everything landed: the import, the updates, the deletions.
    assert!(
        find_contact(&app, &key, &phone(3999)).await.is_some(),
        "imported"
    );
    assert!(
        find_contact(&app, &key, &phone(255)).await.is_none(),
        "deleted"
    );
    assert!(
        find_contact(&app, &key, &phone(25)).await.is_none(),
        "deleted"
    );
    let updated = find_contact(&app, &key, &phone(3)).await.unwrap();
    assert_eq!(updated["name"], "Updated 3");
}
