//! Templates: drafting with validation at the field, four-eyes review, submission to the
//! provider (the sandbox, and a fake WhatsApp Cloud API speaking Meta's wire format), provider
//! verdicts by webhook and by sync, versions, and the API listing what is sendable.

use std::time::Duration;

use herald::dispatch::templates::{SyncBudget, SyncReport};
use herald::storage::channels::{self, Channel, NewChannel};
use herald::storage::templates::{self as store, TemplateLookup};
use herald::testkit::fake_provider::{
    FakeConfig, FakeProvider, FakeProviderHandle, Scripted, WebhookEndpoint,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixtures::channel_named;
use crate::helpers::{Client, TestApp, api_get, create_api_key, location, texts};

crate::both_backends!(
    a_marketer_drafts_a_lead_approves_and_the_sandbox_makes_it_sendable,
    the_author_cannot_approve_their_own_template,
    a_rejected_template_shows_why,
    bad_input_is_refused_at_the_field_and_the_draft_kept,
    editing_an_approved_template_makes_a_new_version_while_the_old_one_sends,
    a_fake_whatsapp_provider_approves_and_rejects_by_webhook,
    two_verdicts_in_one_second_both_apply_and_a_redelivery_once,
    a_status_answer_about_another_template_is_ignored,
    an_authentication_template_is_drafted_and_submitted_in_metas_shape,
    viber_and_sms_templates,
    filters_and_empty_states,
);

const TEST_SECRET: &str = "test-secret-key-of-sufficient-length-0123456789";
const WA_BODY: &str = "Hi {{1}}, your order {{2}} has shipped and arrives tomorrow.";

struct People {
    admin: Client,
    mia: Client,
    sam: Client,
    /// A marketer's API key.
    key: String,
}

async fn people(app: &TestApp) -> People {
    let admin = app.admin().await;
    let mia = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let sam = app
        .user_with_role(&admin, "sam@example.com", "support_lead")
        .await;
    let key = create_api_key(&admin, "Order system", "marketer").await;
    People {
        admin,
        mia,
        sam,
        key,
    }
}

/// Drafts a template with the form's fields; returns the response.
async fn draft(client: &Client, channel: &Channel, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut all = vec![("channel", channel.public_id.as_str())];
    all.extend_from_slice(fields);
    client.post_form("/templates", &all).await
}

/// Drafts a valid WhatsApp template with two variables; returns its page's path.
async fn draft_whatsapp(client: &Client, channel: &Channel, name: &str) -> String {
    let res = draft(
        client,
        channel,
        &[
            ("name", name),
            ("language", "en_US"),
            ("category", "utility"),
            ("header", ""),
            ("body", WA_BODY),
            ("footer", "Reply STOP to opt out"),
            ("button_kind", ""),
            ("button_text", ""),
            ("button_url", ""),
            ("button_phone", ""),
            ("sample.1", "Alex"),
            ("sample.2", "#1234"),
        ],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap_or_default()
    );
    location(&res)
}

/// Saves new content for version 1 of a WhatsApp template with two variables.
async fn edit_whatsapp(
    client: &Client,
    path: &str,
    wa: &Channel,
    name: &str,
    body: &str,
) -> reqwest::Response {
    let fields = [
        ("channel", wa.public_id.as_str()),
        ("version", "1"),
        ("name", name),
        ("language", "en_US"),
        ("category", "utility"),
        ("body", body),
        ("sample.1", "Alex"),
        ("sample.2", "#1234"),
    ];
    client.post_form(path, &fields).await
}

async fn act(
    client: &Client,
    path: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client.post_form(&format!("{path}/{action}"), fields).await
}

async fn submit(client: &Client, path: &str, version: &str) {
    let res = act(client, path, "submit", &[("version", version)]).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

async fn approve(client: &Client, path: &str, version: &str) -> String {
    let res = act(
        client,
        path,
        "approve",
        &[("version", version), ("note", "")],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap_or_default()
    );
    client.get_html(path).await
}

async fn sendable(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let res = api_get(app, &format!("/api/v1/templates{query}"), Some(key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("JSON");
    body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits (up to 15 s) until the API lists `name` as sendable.
async fn wait_until_sendable(app: &TestApp, key: &str, name: &str) -> Value {
    for _ in 0..150 {
        if let Some(t) = sendable(app, key, "")
            .await
            .into_iter()
            .find(|t| t["name"] == name)
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never became sendable");
}

fn stage(html: &str) -> String {
    texts(html, "#template-stage").join(" ")
}

fn attr(html: &str, selector: &str, name: &str) -> Option<String> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse(selector).expect("selector");
    doc.select(&sel)
        .next()
        .and_then(|e| e.value().attr(name).map(str::to_owned))
}

async fn poll(client: &Client, url: &str) -> reqwest::Response {
    client
        .http
        .get(client.url(url))
        .header("HX-Request", "true")
        .send()
        .await
        .expect("poll")
}

fn flashes(html: &str) -> String {
    texts(html, ".flashes").join(" ")
}

async fn a_marketer_drafts_a_lead_approves_and_the_sandbox_makes_it_sendable(app: TestApp) {
    let p = people(&app).await;
    let wa = channel_named(&app, "Sandbox WhatsApp");

    // The marketer chooses the channel, then gets the WhatsApp form.
    let page = p.mia.get_html("/templates/new").await;
    assert!(page.contains(&format!("/templates/new?channel={}", wa.public_id)));
    let form = p
        .mia
        .get_html(&format!("/templates/new?channel={}", wa.public_id))
        .await;
    for field in [
        "name=\"header\"",
        "name=\"footer\"",
        "name=\"button_kind\"",
        "name=\"category\"",
    ] {
        assert!(
            form.contains(field),
            "{field} missing from the WhatsApp form"
        );
    }

    let path = draft_whatsapp(&p.mia, &wa, "order_update").await;
    let page = p.mia.get_html(&path).await;
    assert!(flashes(&page).contains("order_update (en_US) is saved as a draft"));
    assert_eq!(stage(&page), "Draft");
    assert!(
        page.contains("Hi Alex, your order #1234 has shipped"),
        "the preview uses the samples"
    );
    assert!(sendable(&app, &p.key, "").await.is_empty());

    submit(&p.mia, &path, "1").await;
    let page = p.mia.get_html(&path).await;
    assert_eq!(stage(&page), "In review");
    assert!(page.contains("You wrote this version, so someone else must review it."));
    assert!(!page.contains("id=\"approve\""));
    // A marketer may not review at all.
    let res = act(&p.mia, &path, "approve", &[("version", "1")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The support lead approves; Herald submits it to the sandbox, which approves it shortly.
    let page = p.sam.get_html(&path).await;
    assert!(page.contains("id=\"approve\"") && page.contains("id=\"reject\""));
    let page = approve(&p.sam, &path, "1").await;
    let said = flashes(&page);
    assert!(said.contains("Version 1 approved in Herald."), "{said}");
    assert!(said.contains("Submitted to the sandbox"), "{said}");
    let listed = wait_until_sendable(&app, &p.key, "order_update").await;
    assert_eq!(listed["language"], "en_US");
    assert_eq!(listed["category"], "utility");
    assert_eq!(listed["kind"], "whatsapp");
    assert_eq!(listed["version"], 1);
    assert_eq!(listed["channel"]["name"], "Sandbox WhatsApp");
    assert_eq!(listed["channel"]["id"], wa.public_id.as_str());
    assert_eq!(listed["parameter_format"], "positional");
    assert_eq!(listed["variables"], json!(["1", "2"]));
    assert_eq!(listed["placeholders"][0]["placeholder"], "{{1}}");
    assert_eq!(listed["placeholders"][0]["sample"], "Alex");
    assert_eq!(listed["placeholders"][1]["sample"], "#1234");
    assert_eq!(listed["placeholders"][1]["location"]["component"], "body");

    let page = p.mia.get_html(&path).await;
    assert_eq!(stage(&page), "Sendable");
    let history = texts(&page, ".history li").join("\n");
    for line in [
        "Test Person <mia@example.com> drafted version 1",
        "Test Person <mia@example.com> submitted version 1 for review",
        "Test Person <sam@example.com> approved version 1",
        "version 1 submitted to the provider",
        "Sandbox (webhook) version 1: approved",
    ] {
        assert!(history.contains(line), "history lacks {line:?}:\n{history}");
    }

    // The API filters; a wrong channel is a 404; no key is a 401.
    let q = format!(
        "?channel={}&name=order_update&language=en-us",
        wa.name.replace(' ', "%20")
    );
    assert_eq!(sendable(&app, &p.key, &q).await.len(), 1);
    assert!(sendable(&app, &p.key, "?language=fr").await.is_empty());
    let res = api_get(&app, "/api/v1/templates?channel=nope", Some(&p.key)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = api_get(&app, "/api/v1/templates", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The send path's question, answered from storage.
    let mut conn = app.db();
    match store::sendable_by_name(&mut conn, &wa, "order_update", "en-US").expect("lookup") {
        TemplateLookup::Sendable(t) => {
            let rendered = t
                .render(&herald::domain::template::Variables::Positional(vec![
                    "Ada".into(),
                    "#9".into(),
                ]))
                .expect("render");
            assert!(
                rendered
                    .text
                    .starts_with("Hi Ada, your order #9 has shipped")
            );
        }
        other => panic!("not sendable: {other:?}"),
    }
    assert!(matches!(
        store::sendable_by_name(&mut conn, &wa, "nope", "en_US").expect("lookup"),
        TemplateLookup::NotFound
    ));
}

async fn the_author_cannot_approve_their_own_template(app: TestApp) {
    let p = people(&app).await;
    let wa = channel_named(&app, "Sandbox WhatsApp");
    let path = draft_whatsapp(&p.sam, &wa, "lead_wrote_this").await;
    submit(&p.sam, &path, "1").await;
    let page = p.sam.get_html(&path).await;
    assert!(page.contains("You wrote this version, so someone else must review it."));
    assert!(!page.contains("id=\"approve\""));

    let res = act(&p.sam, &path, "approve", &[("version", "1")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.expect("body");
    assert!(
        body.contains("You wrote this template, so someone else must review it."),
        "{body}"
    );
    let res = act(
        &p.sam,
        &path,
        "reject",
        &[("version", "1"), ("note", "mine")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(stage(&p.sam.get_html(&path).await), "In review");

    // Someone who edited it is an author too: the admin edits, then may not approve it.
    let res = edit_whatsapp(
        &p.admin,
        &path,
        &wa,
        "lead_wrote_this",
        "Hi {{1}}, your order {{2}} has shipped and arrives on Monday.",
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    submit(&p.sam, &path, "1").await;
    let res = act(&p.admin, &path, "approve", &[("version", "1")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A reviewer who wrote none of it approves.
    let other = app
        .user_with_role(&p.admin, "lee@example.com", "support_lead")
        .await;
    approve(&other, &path, "1").await;
    wait_until_sendable(&app, &p.key, "lead_wrote_this").await;
}

async fn a_rejected_template_shows_why(app: TestApp) {
    let p = people(&app).await;
    let wa = channel_named(&app, "Sandbox WhatsApp");
    let path = draft_whatsapp(&p.mia, &wa, "spring_sale").await;
    submit(&p.mia, &path, "1").await;

    // A rejection needs a reason, asked for at the note.
    let res = act(&p.sam, &path, "reject", &[("version", "1"), ("note", "  ")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.expect("body");
    let errors = texts(&body, "#review-note + .field-error");
    assert_eq!(
        errors,
        vec!["Say why the template is rejected, so its author can fix it."]
    );

    let why = "Too pushy: say when it arrives, not \"buy now\".";
    let res = act(&p.sam, &path, "reject", &[("version", "1"), ("note", why)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = p.mia.get_html(&path).await;
    assert_eq!(stage(&page), "Rejected in review");
    assert_eq!(texts(&page, "#review-reason"), vec![why]);
    assert!(texts(&page, ".history li").join("\n").contains(why));
    assert!(sendable(&app, &p.key, "").await.is_empty());
    let mut conn = app.db();
    match store::sendable_by_name(&mut conn, &wa, "spring_sale", "en_US").expect("lookup") {
        TemplateLookup::NotSendable { reason, .. } => assert!(reason.contains(why), "{reason}"),
        other => panic!("{other:?}"),
    }

    // The author fixes it (in place: it was never approved) and submits again.
    let res = edit_whatsapp(
        &p.mia,
        &path,
        &wa,
        "spring_sale",
        "Hi {{1}}, your order {{2}} arrives on Monday morning.",
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = p.mia.get_html(&path).await;
    assert!(flashes(&page).contains("Version 1 saved; it is a draft."));
    assert_eq!(stage(&page), "Draft");
    submit(&p.mia, &path, "1").await;
    assert_eq!(stage(&p.mia.get_html(&path).await), "In review");
}

/// Posts a WhatsApp draft whose body is `body` (everything else valid); returns the status and
/// the page.
async fn try_body(
    p: &People,
    wa: &Channel,
    name: &str,
    body: &str,
    samples: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut fields = vec![
        ("name", name),
        ("language", "en_US"),
        ("category", "marketing"),
        ("body", body),
    ];
    fields.extend_from_slice(samples);
    let res = draft(&p.mia, wa, &fields).await;
    (res.status(), res.text().await.expect("body"))
}

async fn bad_input_is_refused_at_the_field_and_the_draft_kept(app: TestApp) {
    let p = people(&app).await;
    let wa = channel_named(&app, "Sandbox WhatsApp");
    let body_errors = |html: &str| texts(html, "#body ~ .field-error").join(" | ");
    let kept = |html: &str, body: &str| {
        let textarea = texts(html, "textarea#body").join("");
        assert_eq!(
            textarea,
            body.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    };

    // Placeholders out of sequence.
    let body = "Hi {{1}}, your order {{3}} has shipped and arrives tomorrow.";
    let (status, html) = try_body(
        &p,
        &wa,
        "gap",
        body,
        &[("sample.1", "A"), ("sample.3", "B")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body_errors(&html).contains("without gaps: {{2}} is missing"),
        "{}",
        body_errors(&html)
    );
    kept(&html, body);
    assert!(html.contains("value=\"gap\""), "the name is kept");

    // A named parameter WhatsApp does not accept, and a sample for one that does not exist.
    let body = "Hello {{FirstName}}, your order has shipped and arrives tomorrow.";
    let (status, html) = try_body(&p, &wa, "named", body, &[("sample.first_nmae", "Alex")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body_errors(&html).contains(
            "{{FirstName}}: named placeholders use lowercase letters and underscores only"
        ),
        "{}",
        body_errors(&html)
    );
    assert!(
        texts(&html, ".preview-problems li").join(" ").contains(
            "Sample for first_nmae: There is no placeholder \"first_nmae\" in this template."
        ),
        "{}",
        texts(&html, ".preview-problems li").join(" ")
    );
    kept(&html, body);

    // 2,000 characters.
    let long = format!("Hello {}", "a".repeat(1994));
    let (status, html) = try_body(&p, &wa, "long", &long, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body_errors(&html)
            .contains("WhatsApp allows at most 1024 characters in the text; this one has 2000."),
        "{}",
        body_errors(&html)
    );
    assert!(html.contains(&long), "the long text is kept");
    assert!(
        texts(&html, "#preview-count")
            .join("")
            .contains("2000 / 1024")
    );

    // Markup.
    let body = "Our <b>spring sale</b> starts today, see you soon!";
    let (status, html) = try_body(&p, &wa, "markup", body, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body_errors(&html).contains("\"<b>\" looks like HTML"),
        "{}",
        body_errors(&html)
    );
    kept(&html, body);

    // A sample with a line break, a bad button, a bad name: each at its own field.
    let res = draft(
        &p.mia,
        &wa,
        &[
            ("name", "Order Update"),
            ("language", "en_US"),
            ("category", "utility"),
            ("body", WA_BODY),
            ("button_kind", "url"),
            ("button_text", "Track"),
            ("button_url", "shop.example/track"),
            ("button_phone", ""),
            ("sample.1", "Alex\nSmith"),
            ("sample.2", "#1"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.expect("body");
    assert!(
        texts(&html, "#name ~ .field-error")
            .join(" ")
            .contains("e.g. order_update")
    );
    assert!(
        texts(&html, "#sample-1 + .field-error")
            .join(" ")
            .contains("line breaks")
    );
    assert!(
        texts(&html, ".button-row .field-error")
            .join(" ")
            .contains("must start with https://")
    );

    // The same name and language twice on one channel.
    draft_whatsapp(&p.mia, &wa, "twice").await;
    let res = draft(
        &p.mia,
        &wa,
        &[
            ("name", "twice"),
            ("language", "en-us"),
            ("category", "utility"),
            ("body", WA_BODY),
            ("sample.1", "Alex"),
            ("sample.2", "#1234"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.expect("body");
    assert!(
        texts(&html, "#name ~ .field-error")
            .join(" ")
            .contains("There is already a template \"twice\" in en_US on this channel"),
        "{html}"
    );
    // The same name in another language is another template.
    let res = draft(
        &p.mia,
        &wa,
        &[
            ("name", "twice"),
            ("language", "pt_BR"),
            ("category", "utility"),
            (
                "body",
                "Oi {{1}}, seu pedido {{2}} foi enviado e chega amanha.",
            ),
            ("sample.1", "Alex"),
            ("sample.2", "#1234"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // The live preview renders whatever is typed, with the problems listed, and offers a
    // sample field per placeholder as they appear.
    let preview = p
        .mia
        .post_form(
            "/templates/preview",
            &[
                ("channel", &wa.public_id),
                ("header", "Order {{1}} update"),
                ("body", "Hi {{1}}, order {{2}}"),
                ("sample.1", "Alex"),
            ],
        )
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let html = preview.text().await.expect("preview");
    assert!(html.contains("Hi Alex, order {{2}}"), "{html}");
    assert!(
        html.contains("id=\"samples\"") && html.contains("hx-swap-oob"),
        "{html}"
    );
    assert!(html.contains("name=\"sample.header\"") && html.contains("name=\"sample.2\""));
    assert!(
        texts(&html, ".preview-problems li")
            .join(" ")
            .contains("Name:")
    );
}

async fn editing_an_approved_template_makes_a_new_version_while_the_old_one_sends(app: TestApp) {
    let p = people(&app).await;
    let sms = channel_named(&app, "Sandbox SMS");
    let res = draft(
        &p.mia,
        &sms,
        &[
            ("name", "pickup_ready"),
            ("language", "en"),
            ("body", "Hi {{name}}, your parcel is ready for pickup."),
            ("sample.name", "Alex"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let path = location(&res);
    submit(&p.mia, &path, "1").await;
    let page = approve(&p.sam, &path, "1").await;
    assert!(flashes(&page).contains("Version 1 approved: it is sendable."));
    assert_eq!(stage(&page), "Sendable", "SMS needs Herald's approval only");
    let listed = wait_until_sendable(&app, &p.key, "pickup_ready").await;
    assert_eq!(listed["version"], 1);
    assert_eq!(listed["kind"], "sms");
    assert_eq!(listed["category"], Value::Null);

    // The edit form says what saving will do; the name and language are locked now.
    let form = p.mia.get_html(&format!("{path}/edit")).await;
    assert!(form.contains("saving makes version 2"), "{form}");
    let v2_body = "Hi {{name}}, your parcel is ready: pick it up before 6 pm.";
    let edit = |name: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("channel", sms.public_id.clone()),
            ("version", "1".to_owned()),
            ("name", name.to_owned()),
            ("language", "en".to_owned()),
            ("body", v2_body.to_owned()),
            ("sample.name", "Alex".to_owned()),
        ]
    };
    let renamed = edit("parcel_ready");
    let renamed: Vec<(&str, &str)> = renamed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = p.mia.post_form(&path, &renamed).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .expect("body")
            .contains("its name and language stay")
    );

    let same = edit("pickup_ready");
    let same: Vec<(&str, &str)> = same.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = p.mia.post_form(&path, &same).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = p.mia.get_html(&path).await;
    assert!(flashes(&page).contains(
        "Saved as version 2, a draft. Version 1 keeps sending until version 2 is approved."
    ));
    assert_eq!(stage(&page), "Draft");
    assert!(page.contains("Version 1 is sendable and keeps sending until version 2 is approved."));

    // Saving again from a stale form (opened on version 1) is refused, the text kept.
    let res = p.mia.post_form(&path, &same).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let html = res.text().await.expect("body");
    assert!(
        html.contains("Someone saved version 2 of this template while you were editing version 1.")
    );
    assert!(html.contains("before 6 pm"));

    // Version 1 still sends.
    let listed = &sendable(&app, &p.key, "").await[0];
    assert_eq!(listed["version"], 1);
    assert_eq!(
        listed["body"],
        "Hi {{name}}, your parcel is ready for pickup."
    );
    let template_id = {
        let mut conn = app.db();
        let public_id = path.trim_start_matches("/templates/");
        store::find_by_public_id(&mut conn, public_id)
            .expect("find")
            .expect("template")
            .id
    };
    match store::sendable(&mut app.db(), template_id).expect("lookup") {
        TemplateLookup::Sendable(t) => assert_eq!(t.version, 1),
        other => panic!("{other:?}"),
    }

    // Version 2 approved replaces it.
    submit(&p.mia, &path, "2").await;
    let page = approve(&p.sam, &path, "2").await;
    assert_eq!(stage(&page), "Sendable");
    let listed = &sendable(&app, &p.key, "").await[0];
    assert_eq!(listed["version"], 2);
    assert_eq!(listed["body"], v2_body);
    let versions = texts(&page, "tr[data-version='1']").join(" ");
    assert!(
        versions.contains("Replaced by a newer version"),
        "{versions}"
    );
    assert!(
        texts(&page, "tr[data-version='2']")
            .join(" ")
            .contains("sends")
    );
    let history = texts(&page, ".history li").join("\n");
    assert!(history.contains("made a new draft, version 2"), "{history}");
}

/// The app secret Meta signs its webhooks with, in the fake and on the channel.
const META_APP_SECRET: &str = "meta-app-secret-for-tests";

/// A fake WhatsApp Cloud API and a channel pointed at it. Status lookups of templates no
/// webhook has judged yet answer: still in review.
async fn fake_meta(app: &TestApp) -> (FakeProviderHandle, Channel) {
    let fake = FakeProvider::start(FakeConfig {
        template_status: "PENDING".into(),
        ..FakeConfig::default()
    })
    .await
    .expect("fake provider");
    let wa = whatsapp_channel(app, &fake.base_url);
    (fake, wa)
}

/// A WhatsApp channel on the Cloud API, pointed at the fake provider, with sealed secrets.
fn whatsapp_channel(app: &TestApp, base_url: &str) -> Channel {
    let key = herald::auth::keys::Keys::derive(TEST_SECRET)
        .expect("keys")
        .channel_secrets;
    let secrets = json!({"access_token": "EAAG-test-token", "app_secret": META_APP_SECRET, "verify_token": "verify-me"});
    let sealed = herald::auth::sealed::seal(&key, &secrets.to_string()).expect("seal");
    let settings = json!({
        "base_url": base_url,
        "api_version": "v23.0",
        "phone_number_id": "106540352242922",
        "waba_id": "102290129340398",
    });
    channels::insert(
        &mut app.db(),
        &NewChannel {
            kind: herald::domain::channel::ChannelKind::Whatsapp,
            provider: herald::domain::channel::Provider::WhatsappCloud,
            name: "Shop WhatsApp",
            sender: "+1 555 010 0100",
            settings: &settings.to_string(),
            secrets: Some(&sealed),
            rate_limit_per_second: 80,
        },
    )
    .expect("insert channel")
}

/// Drafts `name` on `wa` and has it submitted and approved, so Herald submits it to Meta;
/// returns its page's path and Meta's id for it.
async fn submitted_to_meta(
    app: &TestApp,
    p: &People,
    wa: &Channel,
    name: &str,
) -> (String, String) {
    let path = draft_whatsapp(&p.mia, wa, name).await;
    submit(&p.mia, &path, "1").await;
    approve(&p.sam, &path, "1").await;
    let id = provider_id(app, &path);
    (path, id)
}

/// The periodic template sync, run by hand on this test's database through Herald's own
/// channel registry.
struct TemplateSync {
    db: herald::storage::Db,
    hub: herald::dispatch::hub::EventHub,
    registry: herald::dispatch::registry::ChannelRegistry,
    /// Where sandbox channels would post their events: kept open, never read.
    _events: tokio::sync::mpsc::Receiver<(String, herald::channels::ProviderEvent)>,
}

impl TemplateSync {
    fn new(app: &TestApp) -> Self {
        let db = herald::storage::Db::connect(&app.database_url, 2).expect("db");
        let (sink, events) = tokio::sync::mpsc::channel(16);
        let key = herald::auth::keys::Keys::derive(TEST_SECRET)
            .expect("keys")
            .channel_secrets;
        let registry = herald::dispatch::registry::ChannelRegistry::new(
            &app.address,
            key,
            sink,
            Duration::from_secs(5),
        )
        .expect("registry");
        TemplateSync {
            db,
            hub: herald::dispatch::hub::EventHub::new(),
            registry,
            _events: events,
        }
    }

    async fn run(&self, budget: &SyncBudget) -> SyncReport {
        herald::dispatch::templates::sync_pending(&self.db, &self.hub, &self.registry, budget)
            .await
            .expect("sync")
    }
}

fn provider_id(app: &TestApp, path: &str) -> String {
    let mut conn = app.db();
    let t = store::find_by_public_id(&mut conn, path.trim_start_matches("/templates/"))
        .expect("find")
        .expect("template");
    store::current_version(&mut conn, &t)
        .expect("version")
        .provider_template_id
        .expect("submitted to the provider")
}

async fn a_fake_whatsapp_provider_approves_and_rejects_by_webhook(app: TestApp) {
    let p = people(&app).await;
    let (fake, wa) = fake_meta(&app).await;
    let endpoint = WebhookEndpoint {
        url: format!("{}/webhooks/whatsapp/{}", app.address, wa.public_id),
        secret: META_APP_SECRET.to_owned(),
    };

    // Approved in Herald, Herald submits it to Meta's API as Meta documents it.
    let path = draft_whatsapp(&p.mia, &wa, "order_update").await;
    submit(&p.mia, &path, "1").await;
    let page = approve(&p.sam, &path, "1").await;
    assert!(
        flashes(&page).contains("Submitted to Meta"),
        "{}",
        flashes(&page)
    );
    assert_eq!(stage(&page), "Waiting for Meta");
    // The page polls for the verdict: nothing comes back while nothing changed.
    let poll_url = attr(&page, "#template-status", "hx-get").expect("the status card polls");
    let res = poll(&p.mia, &poll_url).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let created = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/102290129340398/message_templates"))
        .expect("a template creation");
    assert_eq!(created.method, "POST");
    assert_eq!(
        created.header("Authorization"),
        Some("Bearer EAAG-test-token")
    );
    let sent = created.json().expect("JSON");
    assert_eq!(sent["name"], "order_update");
    assert_eq!(sent["language"], "en_US");
    assert_eq!(sent["category"], "UTILITY");
    assert_eq!(sent["components"][0]["text"], WA_BODY);
    assert_eq!(
        sent["components"][0]["example"]["body_text"],
        json!([["Alex", "#1234"]])
    );
    assert_eq!(sent["components"][1]["type"], "FOOTER");
    assert!(sendable(&app, &p.key, "").await.is_empty());

    // Meta's review ends: a signed webhook approves it.
    let id = provider_id(&app, &path);
    let status = fake
        .send_template_status(&endpoint, &id, "APPROVED", None, None)
        .await
        .expect("webhook");
    assert_eq!(status, 200);
    let listed = wait_until_sendable(&app, &p.key, "order_update").await;
    // Now it changed: the poll has the page reload.
    let res = poll(&p.mia, &poll_url).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["HX-Refresh"], "true");
    assert_eq!(listed["channel"]["name"], "Shop WhatsApp");
    let page = p.mia.get_html(&path).await;
    assert_eq!(stage(&page), "Sendable");
    assert!(
        texts(&page, ".history li")
            .join("\n")
            .contains("WhatsApp Cloud API (webhook) version 1: approved")
    );
    // A forged webhook changes nothing.
    let forged = WebhookEndpoint {
        secret: "not-the-app-secret".into(),
        ..endpoint.clone()
    };
    let status = fake
        .send_template_status(&forged, &id, "DISABLED", None, None)
        .await
        .expect("webhook");
    assert_eq!(status, 401);
    assert_eq!(stage(&p.mia.get_html(&path).await), "Sendable");

    // A new version of a template Meta has: Meta's edit call on the same template (a second
    // creation with the same name and language is refused by Meta). Version 1 keeps sending
    // until Meta approves version 2.
    let v2_body = "Hi {{1}}, your order {{2}} is on its way.";
    let res = edit_whatsapp(&p.mia, &path, &wa, "order_update", v2_body).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    submit(&p.mia, &path, "2").await;
    let page = approve(&p.sam, &path, "2").await;
    assert!(
        flashes(&page).contains("Submitted to Meta"),
        "{}",
        flashes(&page)
    );
    let edit = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST")
        .expect("a submission");
    assert_eq!(
        (edit.method.as_str(), edit.path.as_str()),
        ("POST", format!("/v23.0/{id}").as_str())
    );
    let sent = edit.json().expect("JSON");
    assert_eq!(sent.get("name"), None);
    assert_eq!(sent["components"][0]["text"], v2_body);
    assert_eq!(fake.stats().templates_created, 1);
    assert_eq!(fake.stats().templates_edited, 1);
    assert_eq!(
        provider_id(&app, &path),
        id,
        "still the same template at Meta"
    );
    assert_eq!(
        wait_until_sendable(&app, &p.key, "order_update").await["version"],
        1
    );
    // Meta's status events are told apart by what they say and the second they were sent
    // (the envelope's `time`); its payload names no version, so the same verdict on the same
    // template in the same second is one event: version 2's approval comes a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.send_template_status(&endpoint, &id, "APPROVED", None, None)
        .await
        .expect("webhook");
    let mut version = Value::Null;
    for _ in 0..100 {
        version = wait_until_sendable(&app, &p.key, "order_update").await["version"].clone();
        if version == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(version, 2, "Meta approved version 2");

    // Another one: Meta rejects it, and says why, verbatim.
    let path = draft_whatsapp(&p.mia, &wa, "abandoned_cart").await;
    submit(&p.mia, &path, "1").await;
    approve(&p.sam, &path, "1").await;
    let id = provider_id(&app, &path);
    let why = "The template includes a variable at the start of the message body.";
    fake.send_template_status(
        &endpoint,
        &id,
        "REJECTED",
        Some("INVALID_FORMAT"),
        Some(why),
    )
    .await
    .expect("webhook");
    let page = p.mia.get_html(&path).await;
    assert_eq!(stage(&page), "Rejected by Meta");
    assert_eq!(
        texts(&page, "#provider-reason"),
        vec![format!("INVALID_FORMAT: {why}")]
    );
    assert!(
        !sendable(&app, &p.key, "")
            .await
            .iter()
            .any(|t| t["name"] == "abandoned_cart")
    );
    match store::sendable_by_name(&mut app.db(), &wa, "abandoned_cart", "en_US").expect("lookup") {
        TemplateLookup::NotSendable { reason, .. } => {
            assert_eq!(
                reason,
                format!("Meta rejected the template: INVALID_FORMAT: {why}")
            )
        }
        other => panic!("{other:?}"),
    }

    // Meta refuses a submission outright: what it writes for people is shown verbatim, with
    // the code beneath, and it can be submitted again.
    let path = draft_whatsapp(&p.mia, &wa, "back_in_stock").await;
    submit(&p.mia, &path, "1").await;
    let user_title = "Variables can't be at the start or end of the template";
    let user_msg = "Variables can't be at the start or end of the template. Make sure to add text before and after each variable.";
    fake.script(Scripted::json(
        400,
        json!({"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100,
            "error_subcode": 2388299, "is_transient": false,
            "error_user_title": user_title, "error_user_msg": user_msg,
            "error_data": {"details": "Content in this language already exists for this template name."},
            "fbtrace_id": "AfakeTrace"}}),
    ));
    let page = approve(&p.sam, &path, "1").await;
    let said = flashes(&page);
    assert!(
        said.contains(&format!(
            "Meta refused the submission: {user_title}: {user_msg}"
        )),
        "{said}"
    );
    assert!(
        said.contains("100: (#100) Invalid parameter (Content in this language already exists for this template name.)"),
        "{said}"
    );
    assert_eq!(stage(&page), "Approved, not yet at Meta");
    assert_eq!(
        texts(&page, "#provider-error .provider-said"),
        vec![format!("{user_title}: {user_msg}")]
    );
    assert_eq!(
        texts(&page, "#provider-error .provider-code"),
        vec![
            "100: (#100) Invalid parameter (Content in this language already exists for this template name.)"
        ]
    );
    let res = act(&p.sam, &path, "provider", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = p.sam.get_html(&path).await;
    assert_eq!(stage(&page), "Waiting for Meta");

    // "Sync now" asks Meta; the answer is recorded.
    fake.send_template_status(&endpoint, &provider_id(&app, &path), "APPROVED", None, None)
        .await
        .expect("webhook");
    let res = act(&p.mia, &path, "sync", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = p.mia.get_html(&path).await;
    assert!(
        flashes(&page).contains("Version 1: no change at Meta."),
        "{}",
        flashes(&page)
    );
    assert_eq!(stage(&page), "Sendable");

    // The periodic sync asks about what is still pending, and finds the verdicts webhooks
    // never brought.
    let path = draft_whatsapp(&p.mia, &wa, "delivery_window").await;
    submit(&p.mia, &path, "1").await;
    approve(&p.sam, &path, "1").await;
    let sync = TemplateSync::new(&app);
    let budget = SyncBudget {
        spacing: Duration::ZERO,
        ..Default::default()
    };
    // Meta answered "pending" to the submission a moment ago: not asked again so soon.
    let report = sync.run(&budget).await;
    assert_eq!(report.checked, 0);
    let later = SyncBudget {
        recheck_after: Duration::ZERO,
        ..budget
    };
    let report = sync.run(&later).await;
    assert_eq!(
        (report.checked, report.changed),
        (1, 0),
        "still pending at Meta"
    );
    // Meta approved it, but its webhook was lost; the next run (ten minutes later) finds out.
    let id = provider_id(&app, &path);
    let lost = WebhookEndpoint {
        url: format!("{}/webhooks/whatsapp/no-such-channel", app.address),
        ..endpoint.clone()
    };
    fake.send_template_status(&lost, &id, "APPROVED", None, None)
        .await
        .expect("webhook");
    let report = sync.run(&later).await;
    assert_eq!((report.checked, report.changed, report.failed), (1, 1, 0));
    wait_until_sendable(&app, &p.key, "delivery_window").await;
    let page = p.mia.get_html(&path).await;
    assert!(
        texts(&page, ".history li")
            .join("\n")
            .contains("Template status sync version 1: approved")
    );
}

/// Meta's template status events are told apart by what they say, not by the second they
/// were sent: two different verdicts within one second both apply; the same delivery twice
/// applies once.
async fn two_verdicts_in_one_second_both_apply_and_a_redelivery_once(app: TestApp) {
    let p = people(&app).await;
    let (_fake, wa) = fake_meta(&app).await;
    let hook = format!("{}/webhooks/whatsapp/{}", app.address, wa.public_id);
    let (path, id) = submitted_to_meta(&app, &p, &wa, "order_update").await;
    let time = chrono::Utc::now().timestamp();
    let verdict = |reason: &str, detail: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "time": time, "changes": [{"field": "message_template_status_update",
            "value": {"event": "REJECTED", "message_template_id": id.parse::<u64>().expect("numeric id"),
                "message_template_name": "order_update", "message_template_language": "en_US",
                "reason": reason, "rejection_info": {"reason": detail,
                    "recommendation": "Edit the template and submit it again."}}}]}]})
        .to_string()
    };
    let post = |body: String| {
        let hook = hook.clone();
        async move {
            let res = reqwest::Client::new()
                .post(hook)
                .header("Content-Type", "application/json")
                .header(
                    "X-Hub-Signature-256",
                    herald::channels::whatsapp::sign(META_APP_SECRET, body.as_bytes()),
                )
                .body(body)
                .send()
                .await
                .expect("webhook");
            assert_eq!(res.status(), StatusCode::OK);
        }
    };
    let rejections = |html: &str| {
        texts(html, ".history li")
            .iter()
            .filter(|l| l.contains("(webhook) version 1: rejected"))
            .count()
    };

    let first = verdict("INVALID_FORMAT", "A variable is at the start of the body.");
    let second = verdict(
        "TAG_CONTENT_MISMATCH",
        "The content is marketing, not utility.",
    );
    post(first).await;
    let page = p.mia.get_html(&path).await;
    assert_eq!(
        texts(&page, "#provider-reason"),
        vec!["INVALID_FORMAT: A variable is at the start of the body."]
    );
    // Another verdict in the same second (the envelope's `time` is the same): applied.
    post(second.clone()).await;
    let page = p.mia.get_html(&path).await;
    assert_eq!(
        texts(&page, "#provider-reason"),
        vec!["TAG_CONTENT_MISMATCH: The content is marketing, not utility."]
    );
    assert_eq!(rejections(&page), 2, "both verdicts are in the history");
    // Meta delivers the second again: nothing changes.
    let seen = crate::provider_kit::receipts(&app, wa.id);
    post(second).await;
    assert_eq!(crate::provider_kit::receipts(&app, wa.id), seen);
    assert_eq!(rejections(&p.mia.get_html(&path).await), 2);
}

/// A status query answered about another template (another id and name) is not our
/// template's verdict: "sync now" and the periodic sync ignore it and say so.
async fn a_status_answer_about_another_template_is_ignored(app: TestApp) {
    let p = people(&app).await;
    let (fake, wa) = fake_meta(&app).await;
    let (path, id) = submitted_to_meta(&app, &p, &wa, "order_update").await;
    let other = || {
        Scripted::json(
            200,
            json!({"id": "1689556908999999", "name": "spring_sale", "language": "en_US",
                "status": "APPROVED"}),
        )
    };

    // "Sync now": the answer names another template; nothing changes, and the page says why.
    fake.script(other());
    let res = act(&p.mia, &path, "sync", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = p.mia.get_html(&path).await;
    let said = flashes(&page);
    assert!(said.contains("about another template"), "{said}");
    assert!(said.contains("spring_sale"), "{said}");
    assert_eq!(stage(&page), "Waiting for Meta");
    let asked = fake.last_request().expect("a status query");
    assert_eq!(asked.path, format!("/v23.0/{id}"));

    // The periodic sync: the same.
    let sync = TemplateSync::new(&app);
    let budget = SyncBudget {
        spacing: Duration::ZERO,
        recheck_after: Duration::ZERO,
        ..Default::default()
    };
    fake.script(other());
    let report = sync.run(&budget).await;
    assert_eq!((report.checked, report.changed, report.failed), (1, 0, 1));
    assert_eq!(stage(&p.mia.get_html(&path).await), "Waiting for Meta");
    assert!(sendable(&app, &p.key, "").await.is_empty());

    // The answer about our template is taken.
    fake.script(Scripted::json(
        200,
        json!({"id": id, "name": "order_update", "language": "en_US", "status": "APPROVED"}),
    ));
    let report = sync.run(&budget).await;
    assert_eq!((report.checked, report.changed, report.failed), (1, 1, 0));
    wait_until_sendable(&app, &p.key, "order_update").await;
}

/// A WhatsApp authentication template, drafted in the form as Meta's reference shapes it (no
/// text of its own, options, a code button) and submitted that way.
async fn an_authentication_template_is_drafted_and_submitted_in_metas_shape(app: TestApp) {
    let p = people(&app).await;
    let (fake, wa) = fake_meta(&app).await;

    // The form shows the one-time-password options.
    let page = p
        .mia
        .get_html(&format!("/templates/new?channel={}", wa.public_id))
        .await;
    assert!(
        page.contains("name=\"otp_type\""),
        "the form offers the code button"
    );

    // Free text in an authentication template is refused at the field, and the draft kept.
    let base = [
        ("name", "login_code"),
        ("language", "en_US"),
        ("category", "authentication"),
        ("otp_type", "copy_code"),
        ("otp_button_text", "Copy code"),
        ("otp_security_recommendation", "on"),
        ("otp_code_expiration_minutes", "10"),
        ("otp_package_name", ""),
        ("otp_signature_hash", ""),
        ("otp_autofill_text", ""),
    ];
    let mut with_text = base.to_vec();
    with_text.push(("body", "Your code is {{1}}, do not share it with anybody."));
    let res = draft(&p.mia, &wa, &with_text).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("no text of your own"), "{html}");
    assert_eq!(
        attr(&html, "#otp_code_expiration_minutes", "value").as_deref(),
        Some("10")
    );

    // The live preview shows Meta's words and the code button.
    let mut fields = vec![("channel", wa.public_id.as_str())];
    fields.extend_from_slice(&base);
    fields.push(("body", ""));
    fields.push(("sample.1", "482913"));
    let res = p.mia.post_form("/templates/preview", &fields).await;
    assert_eq!(res.status(), StatusCode::OK);
    let preview = res.text().await.unwrap();
    assert!(
        preview.contains(
            "482913 is your verification code. For your security, do not share this code."
        ),
        "{preview}"
    );
    assert!(preview.contains("This code expires in 10 minutes."));

    // Saved, reviewed, approved: submitted as Meta's reference builds it.
    let mut ok = base.to_vec();
    ok.push(("body", ""));
    let res = draft(&p.mia, &wa, &ok).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let path = location(&res);
    submit(&p.mia, &path, "1").await;
    let page = approve(&p.sam, &path, "1").await;
    assert_eq!(stage(&page), "Waiting for Meta", "{}", flashes(&page));
    let created = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/message_templates"))
        .expect("a template creation");
    assert_eq!(
        created.json().expect("JSON"),
        json!({
            "name": "login_code",
            "language": "en_US",
            "category": "AUTHENTICATION",
            "components": [
                {"type": "BODY", "add_security_recommendation": true},
                {"type": "FOOTER", "code_expiration_minutes": 10},
                {"type": "BUTTONS", "buttons": [
                    {"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]}
            ]
        })
    );
    // The template page shows what the customer reads.
    let page = p.mia.get_html(&path).await;
    assert!(page.contains("is your verification code."), "{page}");
}

async fn viber_and_sms_templates(app: TestApp) {
    let p = people(&app).await;
    let viber = channel_named(&app, "Sandbox Viber");
    let form = p
        .mia
        .get_html(&format!("/templates/new?channel={}", viber.public_id))
        .await;
    assert!(!form.contains("name=\"header\"") && !form.contains("name=\"button_kind\""));
    assert!(form.contains("<option value=\"otp\""));
    // An OTP template needs {{pin}}.
    let res = draft(
        &p.mia,
        &viber,
        &[
            ("name", "login_code"),
            ("language", "en"),
            ("category", "otp"),
            ("body", "Your code is {{code}}, valid for ten minutes."),
            ("sample.code", "123456"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        texts(&res.text().await.expect("body"), "#body ~ .field-error")
            .join(" ")
            .contains("{{pin}}")
    );

    let res = draft(
        &p.mia,
        &viber,
        &[
            ("name", "shipped"),
            ("language", "en"),
            ("category", "transactional"),
            (
                "body",
                "Hello {{firstname}}, order {{orderno}} has shipped today.",
            ),
            ("sample.firstname", "John"),
            ("sample.orderno", "ORD-12345"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let path = location(&res);
    submit(&p.mia, &path, "1").await;
    approve(&p.admin, &path, "1").await;
    let listed = wait_until_sendable(&app, &p.key, "shipped").await;
    assert_eq!(listed["parameter_format"], "named");
    assert_eq!(listed["variables"], json!(["firstname", "orderno"]));
    // Infobip sends Viber templates by its id: the render carries it.
    match store::sendable_by_name(&mut app.db(), &viber, "shipped", "en").expect("lookup") {
        TemplateLookup::Sendable(t) => {
            let vars = herald::domain::template::Variables::Named(
                [("firstname", "Ann"), ("orderno", "ORD-9")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            );
            let rendered = t.render(&vars).expect("render");
            match rendered.content {
                herald::domain::content::MessageContent::Template(c) => {
                    assert!(
                        c.provider_template_id
                            .is_some_and(|id| id.starts_with("sandbox-tpl-"))
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }

    // SMS: the preview counts segments and names the characters that force Unicode.
    let sms = channel_named(&app, "Sandbox SMS");
    let res = p
        .mia
        .post_form(
            "/templates/preview",
            &[
                ("channel", &sms.public_id),
                ("body", "Hi {{name}}, we’re open till 6."),
                ("sample.name", "Zoë"),
            ],
        )
        .await;
    let html = res.text().await.expect("preview");
    assert_eq!(texts(&html, "#preview-encoding"), vec!["Unicode (UCS-2)"]);
    assert!(texts(&html, "#preview-segments").join("").starts_with("1 "));
    assert!(
        texts(&html, "#preview-unicode").join("").contains("’"),
        "{html}"
    );
    let long_gsm = format!("Hi {{{{name}}}}, {}", "x".repeat(200));
    let res = p
        .mia
        .post_form(
            "/templates/preview",
            &[
                ("channel", &sms.public_id),
                ("body", &long_gsm),
                ("sample.name", "Al"),
            ],
        )
        .await;
    let html = res.text().await.expect("preview");
    assert_eq!(texts(&html, "#preview-encoding"), vec!["GSM-7"]);
    assert!(texts(&html, "#preview-segments").join("").starts_with("2 "));
    assert!(texts(&html, "#preview-unicode").is_empty());
}

async fn filters_and_empty_states(app: TestApp) {
    let p = people(&app).await;
    let page = p.mia.get_html("/templates").await;
    assert!(page.contains("No templates yet."));
    assert!(page.contains("href=\"/templates/new\""));
    let wa = channel_named(&app, "Sandbox WhatsApp");
    let sms = channel_named(&app, "Sandbox SMS");
    let draft_path = draft_whatsapp(&p.mia, &wa, "just_a_draft").await;
    let res = draft(
        &p.mia,
        &sms,
        &[
            ("name", "reminder"),
            ("language", "es"),
            ("body", "Hola {{name}}, tu cita es mañana."),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let sms_path = location(&res);
    submit(&p.mia, &sms_path, "1").await;
    approve(&p.sam, &sms_path, "1").await;

    let names = |html: &str| texts(html, "tr[data-template] td:first-child a");
    let all = p.mia.get_html("/templates").await;
    assert_eq!(names(&all), vec!["reminder", "just_a_draft"]);
    assert_eq!(
        names(&p.mia.get_html("/templates?status=sendable").await),
        vec!["reminder"]
    );
    assert_eq!(
        names(&p.mia.get_html("/templates?status=draft").await),
        vec!["just_a_draft"]
    );
    assert_eq!(
        names(&p.mia.get_html("/templates?category=utility").await),
        vec!["just_a_draft"]
    );
    assert_eq!(
        names(&p.mia.get_html("/templates?language=es").await),
        vec!["reminder"]
    );
    assert_eq!(
        names(
            &p.mia
                .get_html(&format!("/templates?channel={}", wa.public_id))
                .await
        ),
        vec!["just_a_draft"]
    );
    let none = p.mia.get_html("/templates?status=paused").await;
    assert!(none.contains("No template matches these filters."));
    let res = p.mia.get("/templates?status=bogus").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // htmx asks for the results alone.
    let res = p
        .mia
        .http
        .get(p.mia.url("/templates?status=draft"))
        .header("HX-Request", "true")
        .header("HX-Target", "templates-results")
        .send()
        .await
        .expect("GET");
    let html = res.text().await.expect("body");
    assert!(!html.contains("<select") && names(&html) == vec!["just_a_draft"]);
    assert!(p.mia.get_html(&draft_path).await.contains("just_a_draft"));
    // The navigation offers Templates as a page now.
    assert!(all.contains("<a href=\"/templates\""));
}

/// Waits (up to 10 s) until the element's text contains `text`.
async fn wait_for_in(b: &crate::browser::Browser, css: &str, text: &str) {
    for _ in 0..100 {
        if b.text(css).await.contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{css} never showed {text:?}; it shows:\n{}",
        b.text(css).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_a_marketer_drafts_with_a_live_preview_and_a_lead_approves() {
    use fantoccini::Locator;

    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let p = people(&app).await;
    let b = crate::browser::Browser::start(&app.address).await;

    b.sign_in("mia@example.com", crate::helpers::PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.click(".sidebar a[href='/templates']").await;
    b.wait_for_text("No templates yet.").await;
    b.click(".header-actions a[href='/templates/new']").await;
    b.click("a[data-channel='Sandbox WhatsApp']").await;
    b.wait_for_text("New WhatsApp template").await;

    b.fill("#name", "order_update").await;
    b.fill("#language", "en_US").await;
    b.client
        .find(Locator::Css("#category"))
        .await
        .expect("category")
        .select_by_value("utility")
        .await
        .expect("choose utility");
    // The preview follows the typing, and a sample field appears for each placeholder.
    b.fill("#body", WA_BODY).await;
    wait_for_in(
        &b,
        "#preview .bubble-body",
        "Hi {{1}}, your order {{2}} has shipped",
    )
    .await;
    wait_for_in(&b, "#preview-count", "60 / 1024 characters").await;
    b.fill("#sample-1", "Alex").await;
    wait_for_in(&b, "#preview .bubble-body", "Hi Alex, your order {{2}}").await;
    b.fill("#sample-2", "#1234").await;
    wait_for_in(
        &b,
        "#preview .bubble-body",
        "Hi Alex, your order #1234 has shipped",
    )
    .await;
    b.fill("#footer", "Reply STOP to opt out").await;
    wait_for_in(&b, "#preview .bubble-footer", "Reply STOP to opt out").await;
    assert!(b.text("#preview").await.contains("With the samples"));
    if let Ok(png) = b.client.screenshot().await {
        let _ = std::fs::write(std::env::temp_dir().join("herald-template-form.png"), png);
    }

    b.click("#template-form button[type=submit].primary").await;
    b.wait_for_text("is saved as a draft").await;
    b.click("form[action$='/submit'] button[type=submit]").await;
    b.wait_for_text("Version 1 is in review").await;
    assert!(
        b.text("#template-status")
            .await
            .contains("You wrote this version")
    );
    let path = b.path().await;
    b.sign_out().await;

    // The support lead approves; the sandbox approves it a moment later, and the page shows it.
    b.sign_in("sam@example.com", crate::helpers::PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.goto(&path).await;
    b.wait_for_text("waiting for a support lead").await;
    b.fill("#review-note", "Clear and short. Thanks!").await;
    b.click("#approve").await;
    b.wait_for_text("Submitted to the sandbox").await;
    wait_for_in(&b, "#template-stage", "Sendable").await;
    if let Ok(png) = b.client.screenshot().await {
        let _ = std::fs::write(std::env::temp_dir().join("herald-template-page.png"), png);
    }
    let listed = wait_until_sendable(&app, &p.key, "order_update").await;
    assert_eq!(listed["variables"], json!(["1", "2"]));
    b.goto("/templates?status=sendable").await;
    b.wait_for_text("order_update").await;
    b.finish().await;
}
