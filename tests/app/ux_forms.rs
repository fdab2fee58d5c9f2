//! Issue 15, part B: what a newcomer trips over in forms and reports. Channel settings refused
//! at their field, "Test connection" in words, the send form (defaults, prefill, Send disabled
//! with its reason, emptied after a send), the import report in line order with the file's
//! columns, the audit log's names, links and filters, and the small wording fixes. Browser
//! tests check what a person notices: focus, the disabled button, errors tied to fields, and
//! no sideways scrolling.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::fixtures::{approved_template, channel_named, contact, customer_replies, setup, spawn};
use crate::helpers::{ADMIN_EMAIL, Backend, Client, PASSWORD, TestApp, location, texts};
use crate::provider_kit::{TWILIO_SID, TWILIO_TOKEN, api};
use crate::send::{attr, htmx_post};

crate::both_backends!(
    channel_settings_that_cannot_work_are_refused_at_their_field,
    a_connection_test_says_what_to_check_and_only_a_passed_one_ticks_the_checklist,
    rejected_rows_are_shown_in_line_order_and_downloaded_with_the_files_columns,
    the_audit_log_names_links_and_filters_with_paging_kept,
    setup_counts_as_the_first_sign_in_and_small_wordings_follow_the_facts,
);

/// With the in-process dispatcher on (messages go out).
mod dispatching {
    use super::{
        send_defaults_to_the_channel_of_the_last_conversation, spawn,
        the_send_form_waits_for_every_variable_and_starts_again_after_a_send,
    };
    crate::both_backends!(
        spawn = spawn;
        send_defaults_to_the_channel_of_the_last_conversation,
        the_send_form_waits_for_every_variable_and_starts_again_after_a_send,
    );
}

/// POSTs a form as htmx does; the status and the HTML answered.
async fn htmx_html(
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
    trigger: Option<&str>,
) -> (StatusCode, String) {
    let res = htmx_post(client, path, fields, trigger).await;
    (res.status(), res.text().await.expect("body"))
}

fn twilio_form<'a>(name: &'a str, base_url: &'a str, token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("kind", "sms"),
        ("provider", "twilio"),
        ("name", name),
        ("rate_limit_per_second", ""),
        ("settings.base_url", base_url),
        ("settings.account_sid", TWILIO_SID),
        ("settings.auth_token", token),
        ("settings.from", "+15005550006"),
        ("settings.messaging_service_sid", ""),
    ]
}

async fn channel_settings_that_cannot_work_are_refused_at_their_field(app: TestApp) {
    let admin = app.admin().await;
    // A one-character Twilio auth token is refused at its field, tied to it for screen readers.
    let res = admin
        .post_form(
            "/settings/channels",
            &twilio_form("Shop SMS", "https://api.twilio.com", "x"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.expect("body");
    let error = texts(&body, "#error-setting-auth_token").join(" ");
    assert!(error.contains("32 letters and digits"), "{body}");
    assert_eq!(
        attr(&body, "#setting-auth_token", "aria-describedby").as_deref(),
        Some("error-setting-auth_token")
    );
    assert_eq!(
        attr(&body, "#setting-auth_token", "aria-invalid").as_deref(),
        Some("true")
    );
    // Twilio's From is the sender: no second "sender" field beside it.
    assert!(attr(&body, "#sender", "name").is_none(), "one sender field");

    // The API refuses the same at the field: a WhatsApp phone number ID that is a phone
    // number, a base URL that is not http(s), an access token of a few characters.
    let key = crate::helpers::create_api_key(&admin, "Setup", "admin").await;
    let (status, body) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&json!({"kind": "whatsapp", "name": "Shop WhatsApp", "settings": {
            "base_url": "ftp://graph.facebook.com", "api_version": "v23.0",
            "phone_number_id": "+1 415 555 0100", "waba_id": "102290129340398",
            "access_token": "EAA1", "app_secret": "meta-app-secret-0001", "verify_token": "verify-me-0001"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields = &body["error"]["fields"];
    assert!(
        fields["settings.phone_number_id"]
            .as_str()
            .is_some_and(|m| m.contains("not the phone number")),
        "{body}"
    );
    assert!(fields["settings.base_url"].as_str().is_some(), "{body}");
    assert!(
        fields["settings.access_token"]
            .as_str()
            .is_some_and(|m| m.contains("has 4 characters")),
        "{body}"
    );
    // A well-formed token is taken.
    let res = admin
        .post_form(
            "/settings/channels",
            &twilio_form("Shop SMS", "https://api.twilio.com", TWILIO_TOKEN),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

fn checklist_done(page: &str) -> bool {
    let doc = scraper::Html::parse_document(page);
    let sel = scraper::Selector::parse(".checklist li.done").expect("selector");
    doc.select(&sel)
        .any(|e| e.text().collect::<String>().contains("Connect a real"))
}

async fn a_connection_test_says_what_to_check_and_only_a_passed_one_ticks_the_checklist(
    app: TestApp,
) {
    use herald::testkit::fake_provider::{FakeConfig, FakeProvider};
    let admin = app.admin().await;
    // Nothing listens on this port: the connection is refused.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    let res = admin
        .post_form(
            "/settings/channels",
            &twilio_form("Shop SMS", &nowhere, TWILIO_TOKEN),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let path = location(&res);
    assert!(
        !checklist_done(&admin.get_html("/").await),
        "added is not connected"
    );

    let (status, result) = htmx_html(&admin, &format!("{path}/test"), &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let headline = texts(&result, ".test-error").join(" ");
    assert!(
        headline.contains("Herald could not reach Twilio at 127.0.0.1: nothing answered at that address (connection refused)."),
        "{result}"
    );
    let checks = texts(&result, ".test-checks li").join("\n");
    assert!(
        checks.contains("network, firewall, proxy and DNS"),
        "{checks}"
    );
    assert!(
        checks.contains("it should be https://api.twilio.com"),
        "{checks}"
    );
    for internal in [
        "retryable",
        "client error",
        "Connect)",
        "error sending request",
    ] {
        assert!(!result.contains(internal), "{internal} in {result}");
    }
    assert!(!checklist_done(&admin.get_html("/").await), "a failed test");

    // Pointed at a provider that answers: the test passes and the checklist ticks.
    let fake = FakeProvider::start(FakeConfig::default())
        .await
        .expect("fake provider");
    let mut edit = twilio_form("Shop SMS", &fake.base_url, TWILIO_TOKEN);
    edit.retain(|(k, _)| !matches!(*k, "kind" | "provider"));
    let res = admin.post_form(&path, &edit).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, result) = htmx_html(&admin, &format!("{path}/test"), &[], None).await;
    assert!(result.contains("Connected."), "{result}");
    assert!(checklist_done(&admin.get_html("/").await));
    // Changing where it connects asks for a new test.
    let mut moved = twilio_form("Shop SMS", &nowhere, TWILIO_TOKEN);
    moved.retain(|(k, _)| !matches!(*k, "kind" | "provider"));
    let res = admin.post_form(&path, &moved).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        !checklist_done(&admin.get_html("/").await),
        "settings changed"
    );
}

async fn send_defaults_to_the_channel_of_the_last_conversation(app: TestApp) {
    let s = setup(&app).await;
    let viber = channel_named(&app, "Sandbox Viber");
    let selected = |page: &str| {
        let doc = scraper::Html::parse_document(page);
        let sel = scraper::Selector::parse("#send-channel option[selected]").expect("selector");
        doc.select(&sel)
            .next()
            .and_then(|e| e.value().attr("value").map(str::to_owned))
    };
    // The customer wrote on WhatsApp after being written to on SMS: WhatsApp.
    let alex = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550140", "name": "Alex"}),
    )
    .await;
    let (status, body) = api(
        &app,
        Method::POST,
        "/api/v1/messages",
        &s.key,
        Some(
            &json!({"contact_id": alex, "channel": s.sms.public_id, "text": "Your order shipped"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    customer_replies(&s.admin, &alex, &s.wa, "Where is it?").await;
    let page = s.admin.get_html(&format!("/send?contact={alex}")).await;
    assert_eq!(selected(&page), Some(s.wa.public_id.clone()));
    // Later they write on Viber: Viber.
    customer_replies(&s.admin, &alex, &viber, "Hello on Viber").await;
    let page = s.admin.get_html(&format!("/send?contact={alex}")).await;
    assert_eq!(selected(&page), Some(viber.public_id.clone()));

    // Never wrote, written to on SMS: SMS (not the first channel of the list).
    let bo = contact(&app, &s.key, json!({"phone": "+14155550141", "name": "Bo"})).await;
    let (status, _) = api(
        &app,
        Method::POST,
        "/api/v1/messages",
        &s.key,
        Some(&json!({"contact_id": bo, "channel": s.sms.public_id, "text": "Welcome"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let page = s.admin.get_html(&format!("/send?contact={bo}")).await;
    assert_eq!(selected(&page), Some(s.sms.public_id.clone()));
    // Choosing a recipient in the form offers their channel too.
    let (_, compose) = htmx_html(
        &s.admin,
        "/send/compose",
        &[
            ("channel", viber.public_id.as_str()),
            ("contact", bo.as_str()),
        ],
        Some("contact"),
    )
    .await;
    assert_eq!(selected(&compose), Some(s.sms.public_id.clone()));
    // An explicit channel wins.
    let page = s
        .admin
        .get_html(&format!("/send?contact={bo}&channel={}", viber.public_id))
        .await;
    assert_eq!(selected(&page), Some(viber.public_id.clone()));
    crate::outbox::assert_outbox_drained(&app).await;
}

async fn the_send_form_waits_for_every_variable_and_starts_again_after_a_send(app: TestApp) {
    let s = setup(&app).await;
    approved_template(&app, &s, "order_ready", crate::fixtures::WA_BODY).await;
    let cleo = contact(
        &app,
        &s.key,
        json!({"phone": "+14155550150", "name": "Cleo Park", "attributes": {"order": "#12"}}),
    )
    .await;
    let wa = s.wa.public_id.as_str();
    let page = s
        .admin
        .get_html(&format!("/send?contact={cleo}&channel={wa}"))
        .await;
    let template = attr(&page, "#send-template option:nth-child(2)", "value").expect("template");
    let base = [
        ("contact", cleo.as_str()),
        ("channel", wa),
        ("mode", "template"),
        ("template", template.as_str()),
    ];
    // Picked: one box per variable, nothing said before a choice, Send disabled with why.
    let (_, compose) = htmx_html(&s.admin, "/send/compose", &base, Some("template")).await;
    assert!(attr(&compose, "#value-1", "name").is_some());
    assert!(attr(&compose, "#fallback-1", "name").is_none(), "one box");
    assert!(
        texts(&compose, ".variables .field-error").is_empty(),
        "{compose}"
    );
    assert!(
        texts(&compose, "#preview-problem").is_empty(),
        "a value not given yet is no error: {compose}"
    );
    assert!(attr(&compose, "#send-button", "disabled").is_some());
    assert_eq!(
        texts(&compose, "#send-note").join(""),
        "Give {{1}} a value first."
    );
    // "Contact field" chosen without a field yet: still nothing said.
    let mut fields: Vec<(&str, &str)> = base.to_vec();
    fields.extend([
        ("key.1", ""),
        ("value.1", ""),
        ("key.2", "order"),
        ("value.2", ""),
    ]);
    let (_, compose) = htmx_html(&s.admin, "/send/compose", &fields, Some("key.2")).await;
    assert!(
        texts(&compose, ".variables .field-error").is_empty(),
        "{compose}"
    );
    assert_eq!(
        attr(&compose, "#value-2", "value").as_deref(),
        Some("#12"),
        "prefilled"
    );
    assert!(
        attr(&compose, "#send-button", "disabled").is_some(),
        "{{1}} is empty"
    );
    // A field the contact lacks: said at the variable, tied to its box.
    let mut lacking = base.to_vec();
    lacking.extend([("key.1", "city"), ("value.1", ""), ("key.2", "order")]);
    let (_, compose) = htmx_html(&s.admin, "/send/compose", &lacking, Some("key.1")).await;
    assert_eq!(
        attr(&compose, "#value-1", "aria-describedby").as_deref(),
        Some("problem-1")
    );
    // The contact's own field prefills: name.
    let mut named = base.to_vec();
    named.extend([
        ("key.1", "name"),
        ("value.1", ""),
        ("key.2", "order"),
        ("value.2", "#12"),
    ]);
    let (_, compose) = htmx_html(&s.admin, "/send/compose", &named, Some("key.1")).await;
    assert_eq!(
        attr(&compose, "#value-1", "value").as_deref(),
        Some("Cleo Park")
    );
    assert!(
        attr(&compose, "#send-button", "disabled").is_none(),
        "{compose}"
    );
    assert_eq!(texts(&compose, "#send-note").join(""), "");

    // Sent: the answer carries the form emptied for the next message, Send disabled.
    let mut submit = named.clone();
    submit.extend([("value.1", "Cleo Park"), ("idempotency_key", "k-1")]);
    let (status, sent) = htmx_html(&s.admin, "/send", &submit, None).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert!(attr(&sent, "#sent-status", "data-message").is_some());
    assert_eq!(
        attr(&sent, "#compose", "hx-swap-oob").as_deref(),
        Some("true"),
        "the composer starts again"
    );
    assert!(attr(&sent, "#compose #send-button", "disabled").is_some());
    assert!(attr(&sent, "#compose #send-template option[selected]", "value").is_none());

    // A placeholder named like a contact field takes it at once, prefilled.
    let res = s
        .admin
        .post_form(
            "/templates",
            &[
                ("channel", wa),
                ("name", "greeting"),
                ("language", "en_US"),
                ("category", "utility"),
                (
                    "body",
                    "Hello {{first_name}}, your order {{order}} is ready.",
                ),
                ("sample.first_name", "Alex"),
                ("sample.order", "#1"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    crate::fixtures::submit_and_approve(&s, &location(&res)).await;
    assert!(crate::fixtures::sendable_within(&app, &s, "greeting", Duration::from_secs(30)).await);
    let page = s
        .admin
        .get_html(&format!("/send?contact={cleo}&channel={wa}"))
        .await;
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("#send-template option").expect("selector");
    let greeting = doc
        .select(&sel)
        .find(|o| o.text().collect::<String>().starts_with("greeting"))
        .and_then(|o| o.value().attr("value").map(str::to_owned))
        .expect("greeting");
    let mut pick = base.to_vec();
    pick.retain(|(k, _)| *k != "template");
    pick.push(("template", &greeting));
    let (_, compose) = htmx_html(&s.admin, "/send/compose", &pick, Some("template")).await;
    assert_eq!(
        attr(&compose, "#value-first_name", "value").as_deref(),
        Some("Cleo")
    );
    assert_eq!(
        attr(&compose, "#value-order", "value").as_deref(),
        Some("#12")
    );
    assert!(
        attr(&compose, "#send-button", "disabled").is_none(),
        "{compose}"
    );
    crate::outbox::assert_outbox_drained(&app).await;
}

async fn rejected_rows_are_shown_in_line_order_and_downloaded_with_the_files_columns(app: TestApp) {
    let admin = app.admin().await;
    let key = crate::helpers::create_api_key(&admin, "Import", "admin").await;
    // Line 3 repeats line 2 (found when writing), line 4 is not a number (found when reading):
    // the report lists them 3 then 4, each with the row as given.
    let csv = "Mobile,Name,Tier\n+14155550160,Ann,gold\n+1 415 555 0160,Ann again,silver\nnot a phone,Bad,=1+1\n+14155550161,Ben,gold\n";
    let (status, body) = crate::contacts::api_import(&app, &key, "", csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<i64> = body["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["row"].as_i64().expect("row"))
        .collect();
    assert_eq!(rows, vec![3, 4], "{body}");
    let id = body["id"].as_str().expect("id");

    let page = admin.get_html(&format!("/contacts/imports/{id}")).await;
    let lines = texts(&page, "#rejected-rows tbody td:first-child");
    assert_eq!(lines, vec!["3", "4"], "{page}");
    let first = texts(&page, "#rejected-rows tr[data-line='3']").join(" ");
    assert!(first.contains("already on row 2"), "{first}");
    assert!(
        first.contains("+1 415 555 0160, Ann again, silver"),
        "{first}"
    );
    assert_eq!(texts(&page, "#import-state"), vec!["Finished"]);
    let list = admin.get_html("/contacts/import").await;
    assert!(
        texts(&list, "tbody .badge").contains(&"Finished".to_owned()),
        "{list}"
    );

    let report = admin
        .get(&format!("/contacts/imports/{id}/rejected.csv"))
        .await
        .text()
        .await
        .expect("report");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "line,reason,Mobile,Name,Tier");
    assert!(
        lines[1].starts_with("3,phone: +14155550160 is already on row 2"),
        "{report}"
    );
    assert!(
        lines[1].ends_with(",'+1 415 555 0160,Ann again,silver"),
        "{report}"
    );
    assert!(lines[2].starts_with("4,\"Mobile: "), "{report}");
    assert!(
        lines[2].ends_with(",not a phone,Bad,'=1+1"),
        "formulas neutralised: {report}"
    );
    assert_eq!(lines.len(), 3, "{report}");

    // Many bad rows: 50 a page, in line order across pages.
    let mut many = String::from("Mobile,Name\n");
    for i in 0..55 {
        many.push_str(&format!("bad {i},Row {i}\n"));
    }
    let (status, body) = crate::contacts::api_import(&app, &key, "", many).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let many_id = body["id"].as_str().expect("id");
    let page = admin
        .get_html(&format!("/contacts/imports/{many_id}"))
        .await;
    let lines = texts(&page, "#rejected-rows tbody td:first-child");
    assert_eq!(lines.len(), 50);
    assert_eq!((lines[0].as_str(), lines[49].as_str()), ("2", "51"));
    let later = attr(&page, "#rejected-rows .pager a", "href").expect("later lines");
    assert_eq!(later, "?page=2#rejected-rows");
    let page = admin
        .get_html(&format!("/contacts/imports/{many_id}?page=2"))
        .await;
    assert_eq!(
        texts(&page, "#rejected-rows tbody td:first-child"),
        vec!["52", "53", "54", "55", "56"]
    );

    // An import cut off (here: left running by a server that went away) says what happened
    // and that the rows written before stay.
    let cut = herald::storage::imports::create(
        &mut app.db(),
        "cut-import-1",
        "big.csv",
        None,
        Some(1_000_000),
        "Ada Admin",
    )
    .expect("import");
    // While it runs: one bar and one word, the same on its page and the list.
    let running = admin
        .get_html(&format!("/contacts/imports/{}/progress", cut.public_id))
        .await;
    assert_eq!(texts(&running, "progress").len(), 1, "{running}");
    assert_eq!(texts(&running, "#import-state"), vec!["Importing"]);
    let list = admin.get_html("/contacts/import").await;
    assert!(texts(&list, "tbody .badge").contains(&"Importing".to_owned()));
    herald::storage::imports::fail_abandoned(
        &mut app.db(),
        (chrono::Utc::now() + chrono::Duration::seconds(5)).naive_utc(),
    )
    .expect("abandoned");
    let page = admin
        .get_html(&format!("/contacts/imports/{}", cut.public_id))
        .await;
    assert_eq!(texts(&page, "#import-state"), vec!["Stopped"]);
    let stopped = texts(&page, "#import-stopped").join(" ");
    assert!(
        stopped.contains("stopped before the end of the file")
            && stopped.contains("rows imported before it stopped stay imported"),
        "{stopped}"
    );
    assert!(texts(&page, "progress").is_empty(), "no bar once stopped");
}

async fn the_audit_log_names_links_and_filters_with_paging_kept(app: TestApp) {
    let admin = app.admin().await;
    let _mia = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let res = admin
        .post_form("/contacts/lists", &[("name", "List 00")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/audit").await;
    // Subjects and actors by name, with links; no raw "user 2".
    let invited = texts(&page, "tr[data-action='user.created'] .audit-subject").join(" ");
    assert_eq!(invited, "Person Test Person", "{page}");
    assert_eq!(
        attr(
            &page,
            "tr[data-action='user.created'] .audit-subject a",
            "href"
        )
        .as_deref(),
        Some("/settings/users")
    );
    let actor = texts(&page, "tr[data-action='list.created'] .audit-actor")
        .into_iter()
        .next()
        .expect("a list entry");
    assert_eq!(actor, "Ada Admin");
    assert!(
        texts(&page, "tr[data-action='list.created'] .audit-subject")
            .iter()
            .all(|s| s.starts_with("List List ")),
        "{page}"
    );

    for i in 1..53 {
        let res = admin
            .post_form("/contacts/lists", &[("name", &format!("List {i:02}"))])
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    // By action: 50 a page, the next page keeps the filter.
    let page = admin.get_html("/settings/audit?action=list.created").await;
    assert_eq!(texts(&page, "tbody tr").len(), 50);
    assert!(
        texts(&page, "tbody tr .audit-action")
            .iter()
            .all(|a| a == "list.created")
    );
    let older = attr(&page, "#audit-older", "href").expect("older link");
    assert!(
        older.contains("action=list.created") && older.contains("before="),
        "{older}"
    );
    let page = admin.get_html(&older).await;
    assert_eq!(texts(&page, "tbody tr").len(), 3);

    // By actor: Mia changed her password; only her entry.
    let mia_id: i64 = {
        use diesel::prelude::*;
        herald::storage::schema::users::table
            .filter(herald::storage::schema::users::email.eq("mia@example.com"))
            .select(herald::storage::schema::users::id)
            .first(&mut app.db())
            .expect("mia")
    };
    let page = admin
        .get_html(&format!("/settings/audit?actor=user:{mia_id}"))
        .await;
    assert_eq!(
        texts(&page, "tbody tr .audit-action"),
        vec!["user.password_changed"]
    );
    // By date: nothing from tomorrow on; everything up to today.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let page = admin
        .get_html(&format!("/settings/audit?since={tomorrow}"))
        .await;
    assert!(
        texts(&page, ".empty")
            .join(" ")
            .contains("No entries match")
    );
    let today = chrono::Utc::now().date_naive().to_string();
    let page = admin
        .get_html(&format!(
            "/settings/audit?since={today}&until={today}&action=user.created"
        ))
        .await;
    assert_eq!(texts(&page, "tbody tr").len(), 1);
    let page = admin.get_html("/settings/audit?since=yesterday").await;
    assert!(
        texts(&page, "#audit-problem")
            .join(" ")
            .contains("not a date")
    );
}

async fn setup_counts_as_the_first_sign_in_and_small_wordings_follow_the_facts(app: TestApp) {
    let admin = app.admin().await;
    let users = admin.get_html("/settings/users").await;
    let row = texts(&users, &format!("tr[data-user='{ADMIN_EMAIL}']")).join(" ");
    assert!(!row.contains("never"), "{row}");

    // A contact with no consent reads so; the sandbox's delay is its own.
    let key = crate::helpers::create_api_key(&admin, "Shop", "admin").await;
    let id = contact(&app, &key, json!({"phone": "+14155550170", "name": "Dee"})).await;
    let page = admin.get_html(&format!("/contacts/{id}")).await;
    let consent = texts(&page, "tr[data-consent='sms']").join(" ");
    assert!(consent.contains("No consent recorded"), "{consent}");
    assert!(!page.contains("Not recorded") && !page.contains("no record"));
    // The simulated reply goes to the channel whose window is listed first (not SMS).
    let first_window = texts(&page, "tr[data-channel]")
        .into_iter()
        .find(|r| !r.contains("SMS"))
        .expect("a channel with a window");
    let chosen = {
        let doc = scraper::Html::parse_document(&page);
        let sel = scraper::Selector::parse("#sim-channel option[selected]").expect("selector");
        doc.select(&sel)
            .next()
            .map(|e| e.text().collect::<String>())
            .expect("a default")
    };
    assert!(first_window.contains(&chosen), "{chosen} / {first_window}");
    assert!(attr(&page, "textarea#sim-text", "rows").is_some());

    // A queued message (nothing dispatches here) reads "Queued", not "Sent … · Queued".
    let (status, body) = api(
        &app,
        Method::POST,
        "/api/v1/messages",
        &key,
        Some(&json!({"contact_id": id, "channel": "Sandbox SMS", "text": "Hello Dee"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let page = admin.get_html(&format!("/contacts/{id}")).await;
    let meta = texts(&page, "#timeline li.out .meta").join("\n");
    assert!(meta.starts_with("Queued on Sandbox SMS · "), "{meta}");
    assert!(!meta.contains("Sent"), "{meta}");

    // The first sign-in with a temporary password: no other session to sign out.
    let res = admin
        .post_form(
            "/settings/users",
            &[
                ("name", "Nia"),
                ("email", "nia@example.com"),
                ("role", "marketer"),
                ("password", "temporary password 1"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let nia = app.client();
    nia.login("nia@example.com", "temporary password 1").await;
    let change = [
        ("current_password", "temporary password 1"),
        ("new_password", PASSWORD),
        ("new_password_confirm", PASSWORD),
    ];
    nia.post_form("/account/password", &change).await;
    let home = nia.get_html("/").await;
    let flash = texts(&home, ".flashes").join(" ");
    assert!(flash.contains("Your password has been changed."), "{flash}");
    assert!(!flash.contains("Other sessions"), "{flash}");
    // With a second session open, it says that one was signed out.
    let other = app.client();
    other.login("nia@example.com", PASSWORD).await;
    let again = [
        ("current_password", PASSWORD),
        ("new_password", "another long password"),
        ("new_password_confirm", "another long password"),
    ];
    nia.post_form("/account/password", &again).await;
    let flash = texts(&nia.get_html("/").await, ".flashes").join(" ");
    assert!(
        flash.contains("Other sessions have been signed out"),
        "{flash}"
    );
}

// ------------------------------------------------------------------------------------------
// In the browser
// ------------------------------------------------------------------------------------------

async fn active_id(b: &Browser) -> String {
    b.client
        .execute("return document.activeElement ? (document.activeElement.id || document.activeElement.tagName) : ''", vec![])
        .await
        .expect("script")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn wait_until(b: &Browser, script: &str, what: &str) {
    for _ in 0..100 {
        let v = b.client.execute(script, vec![]).await.expect("script");
        if v.as_bool() == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "never: {what}; the focus is on {}; the page shows:\n{}",
        active_id(b).await,
        b.text("main").await
    );
}

/// How much wider than the window the page is, in pixels.
async fn sideways(b: &Browser) -> i64 {
    b.client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .expect("script")
        .as_i64()
        .unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_the_send_form_prefills_waits_for_values_keeps_focus_and_empties() {
    let app = spawn(Backend::Sqlite).await;
    let s = setup(&app).await;
    approved_template(&app, &s, "order_ready", crate::fixtures::WA_BODY).await;
    contact(
        &app,
        &s.key,
        json!({"phone": "+14155550180", "name": "Finn Berg", "attributes": {"order": "#42"}}),
    )
    .await;
    let b = Browser::start(&app.address).await;
    b.sign_in(ADMIN_EMAIL, PASSWORD).await;
    b.wait_for_text("Hello, Ada").await;
    b.goto("/send").await;
    b.fill("#send-search", "Finn").await;
    b.click(".recipient-matches button").await;
    b.wait_for_text("Finn Berg").await;
    // Focus stays with the recipient just chosen, not the top of the page.
    wait_until(
        &b,
        "return document.activeElement && document.activeElement.id === 'recipient'",
        "focus on the recipient",
    )
    .await;

    b.client
        .find(Locator::Css("#send-channel"))
        .await
        .expect("channel")
        .select_by_value(&s.wa.public_id)
        .await
        .expect("WhatsApp");
    wait_until(
        &b,
        "return !!document.querySelector('#send-template')",
        "templates",
    )
    .await;
    assert_eq!(
        active_id(&b).await,
        "send-channel",
        "focus kept on the select"
    );
    b.client
        .find(Locator::Css("#send-template"))
        .await
        .expect("template")
        .select_by_index(1)
        .await
        .expect("pick");
    wait_until(
        &b,
        "return !!document.querySelector('#value-2')",
        "variables",
    )
    .await;
    // Send is disabled, with why; choosing the contact's order prefills it.
    assert!(
        b.text("#send-note")
            .await
            .contains("Give {{1}} a value first.")
    );
    b.client
        .find(Locator::Css("#key-2"))
        .await
        .expect("key 2")
        .select_by_value("order")
        .await
        .expect("order");
    wait_until(
        &b,
        "return document.querySelector('#value-2').value === '#42'",
        "#42 prefilled",
    )
    .await;
    assert_eq!(active_id(&b).await, "key-2");
    let disabled = "return document.querySelector('#send-button').disabled";
    assert_eq!(
        b.client.execute(disabled, vec![]).await.expect("script"),
        Value::Bool(true)
    );
    b.fill("#value-1", "Finn").await;
    wait_until(
        &b,
        "return !document.querySelector('#send-button').disabled",
        "Send enabled",
    )
    .await;
    assert_eq!(b.text("#send-note").await, "");
    b.click("#send-button").await;
    b.wait_for_text("The form is ready for the next message.")
        .await;
    // Emptied: no template chosen, Send disabled; focus on the sent message.
    wait_until(
        &b,
        "return !document.querySelector('#value-1')",
        "variables gone",
    )
    .await;
    assert_eq!(
        b.client.execute(disabled, vec![]).await.expect("script"),
        Value::Bool(true)
    );
    wait_until(
        &b,
        "return document.activeElement && document.activeElement.id === 'sent-card'",
        "focus on the sent message",
    )
    .await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_errors_are_tied_to_fields_reports_read_well_and_nothing_scrolls_sideways() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let b = Browser::start(&app.address).await;
    // Setup with passwords that differ: the error is tied to its field, which has the focus.
    b.goto("/setup").await;
    b.fill("#name", "Ada Admin").await;
    b.fill("#email", ADMIN_EMAIL).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password_confirm", "something else entirely").await;
    b.click("form[action='/setup'] button[type=submit]").await;
    b.wait_for_text("differ").await;
    assert_eq!(active_id(&b).await, "password_confirm");
    let described = b
        .client
        .execute(
            "var f = document.getElementById('password_confirm'); var d = document.getElementById(f.getAttribute('aria-describedby')); return [f.getAttribute('aria-invalid'), d ? d.textContent : ''];",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(described[0], "true");
    assert!(
        described[1].as_str().unwrap_or_default().contains("differ"),
        "{described}"
    );
    b.fill("#password", PASSWORD).await;
    b.fill("#password_confirm", PASSWORD).await;
    b.click("form[action='/setup'] button[type=submit]").await;
    b.wait_for_text("Hello, Ada").await;

    // Test connection on a Twilio channel that cannot be reached: words and what to check.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    b.goto("/settings/channels/new?kind=sms&provider=twilio")
        .await;
    b.fill("#name", "Shop SMS").await;
    b.fill("#setting-base_url", &nowhere).await;
    b.fill("#setting-account_sid", TWILIO_SID).await;
    b.fill("#setting-auth_token", "x").await;
    b.fill("#setting-from", "+15005550006").await;
    b.click("#channel-form button[type=submit]").await;
    b.wait_for_text("32 letters and digits").await;
    assert_eq!(
        active_id(&b).await,
        "setting-auth_token",
        "the first error has the focus"
    );
    b.fill("#setting-auth_token", TWILIO_TOKEN).await;
    b.click("#channel-form button[type=submit]").await;
    b.wait_for_text("Shop SMS was added.").await;
    b.click("#test-connection").await;
    b.wait_for_text("nothing answered at that address").await;
    let result = b.text("#test-result").await;
    assert!(
        result.contains("Check:") && result.contains("firewall"),
        "{result}"
    );
    assert!(
        !result.contains("retryable") && !result.contains("client error"),
        "{result}"
    );

    // An import with bad rows: the report on its page, in line order.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "Mobile,Name\n+14155550190,Gus\n+14155550190,Gus twice\nnope,Nobody\n",
    )
    .expect("csv");
    b.goto("/contacts/import").await;
    b.client
        .find(Locator::Css("#file"))
        .await
        .expect("file")
        .send_keys(&file.display().to_string())
        .await
        .expect("choose");
    b.wait_for_text("Match the columns of people.csv").await;
    b.click("#mapping button[type=submit]").await;
    b.wait_for_text("Rejected rows").await;
    assert_eq!(b.text("#import-state").await, "Finished");
    let lines = b.text("#rejected-rows tbody").await;
    let (three, four) = (lines.find("Gus twice"), lines.find("Nobody"));
    assert!(three.is_some() && three < four, "{lines}");
    let report_page = b.path().await;
    assert!(
        report_page.starts_with("/contacts/imports/"),
        "{report_page}"
    );

    // The audit log filters by action in the page, and neither it nor the import page
    // scrolls sideways at 1,280 or 375 px.
    b.goto("/settings/audit").await;
    b.client
        .find(Locator::Css("#audit-action"))
        .await
        .expect("action filter")
        .select_by_value("channel.tested")
        .await
        .expect("choose");
    b.click("#audit-filters button[type=submit]").await;
    wait_until(
        &b,
        "return location.search.indexOf('action=channel.tested') >= 0",
        "the filter in the URL",
    )
    .await;
    let actions = b.text("tbody").await;
    assert!(
        actions.contains("channel.tested") && !actions.contains("channel.created"),
        "{actions}"
    );
    for width in [1280, 375] {
        b.client.set_window_size(width, 900).await.expect("resize");
        for path in ["/settings/audit", "/contacts/import", report_page.as_str()] {
            b.goto(path).await;
            b.wait_for_text("Herald").await;
            assert!(
                sideways(&b).await <= 0,
                "{path} scrolls sideways at {width} px"
            );
            // Wide tables scroll inside their card: no card is wider than itself.
            let overflowing = b
                .client
                .execute(
                    "return Array.from(document.querySelectorAll('main .card')).filter(function (c) { return c.scrollWidth > c.clientWidth + 1; }).length",
                    vec![],
                )
                .await
                .expect("script");
            assert_eq!(
                overflowing,
                json!(0),
                "{path}: a card overflows at {width} px"
            );
        }
        b.goto("/settings/audit").await;
        let broken = b
            .client
            .execute(
                "return Array.from(document.querySelectorAll('code.audit-action')).some(function (c) { return c.getClientRects().length > 1; })",
                vec![],
            )
            .await
            .expect("script");
        assert_eq!(
            broken,
            Value::Bool(false),
            "an action name broke at {width} px"
        );
    }
    b.finish().await;
}
