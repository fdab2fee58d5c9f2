//! Issue 20, Automations › Reminders (the pages): an admin makes a reminder rule through the
//! form (a bad one comes back 422 naming the field), finds it in the list, sees on its page
//! the reminder due next for a contact whose date is set, disables it and deletes it (behind a
//! confirmation); nobody else gets in. A trigger's page shares those buttons.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::fixtures::{Setup, approved_template, contact, setup, spawn};
use crate::helpers::{Client, TestApp, location, texts};
use crate::provider_kit::api;

crate::both_backends!(
    spawn = spawn;
    an_admin_makes_a_reminder_rule_sees_it_due_disables_and_deletes_it,
    only_admins_see_the_reminder_pages,
    a_trigger_page_has_the_same_enable_and_delete_buttons,
    a_rules_page_shows_what_was_sent_and_what_was_skipped_and_why,
    the_list_of_rules_pages,
    an_admin_maps_the_templates_variables_in_rows,
    a_rules_due_and_activity_lists_page_past_fifty,
);

/// The form for "1 day before appointment_at" as text on the SMS channel, with `extra`
/// fields replacing the defaults.
fn rule_form<'a>(
    s: &'a Setup,
    name: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("name", name),
        ("channel", s.sms.public_id.as_str()),
        ("template", ""),
        ("text", "See you tomorrow!"),
        ("attribute", "appointment_at"),
        ("timing", "offset"),
        ("amount", "1"),
        ("unit", "days"),
        ("direction", "before"),
        ("at_time", "09:00"),
        ("days", "1"),
        ("day_direction", "before"),
        ("time_zone", "Europe/Berlin"),
        ("grace_minutes", "60"),
    ];
    for (k, v) in extra {
        fields.retain(|(f, _)| f != k);
        fields.push((k, v));
    }
    fields
}

/// Creates the rule of [`rule_form`] through the form; its page's path.
async fn create_rule(s: &Setup, name: &str) -> String {
    create_rule_with(s, name, &[]).await
}

async fn create_rule_with(s: &Setup, name: &str, extra: &[(&str, &str)]) -> String {
    let res = s
        .admin
        .post_form("/automations/reminders", &rule_form(s, name, extra))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let path = location(&res);
    assert!(path.starts_with("/automations/reminders/"), "{path}");
    path
}

/// Sets a contact's `appointment_at` through the API.
async fn appointment(app: &TestApp, s: &Setup, phone: &str, at: chrono::DateTime<Utc>) {
    set_appointment(
        app,
        s,
        phone,
        json!(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    )
    .await;
}

async fn set_appointment(app: &TestApp, s: &Setup, phone: &str, value: serde_json::Value) {
    let (st, b) = api(
        app,
        Method::POST,
        "/api/v1/contacts",
        &s.key,
        Some(&json!({"phone": phone, "attributes": {"appointment_at": value}})),
    )
    .await;
    assert!(st.is_success(), "{st} {b}");
}

/// Enables or disables the rule through its button; its page afterwards.
async fn switch(admin: &Client, path: &str, enabled: &str) -> String {
    let res = admin
        .post_form(&format!("{path}/enabled"), &[("enabled", enabled)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    admin.get_html(path).await
}

/// The rule's page once the background step (it runs each second) lists `phone` as due next.
async fn page_once_due(admin: &Client, path: &str, phone: &str) -> String {
    page_once(
        admin,
        path,
        &format!("#rule-due tr[data-contact='{phone}']"),
    )
    .await
}

/// The page once it shows something matching `selector`.
async fn page_once(admin: &Client, path: &str, selector: &str) -> String {
    for _ in 0..300 {
        let page = admin.get_html(path).await;
        if !texts(&page, selector).is_empty() {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing matched {selector} on {path}");
}

async fn an_admin_makes_a_reminder_rule_sees_it_due_disables_and_deletes_it(app: TestApp) {
    let s = setup(&app).await;

    // No rules yet: the empty state, and Automations shows Triggers and Reminders as tabs.
    let page = s.admin.get_html("/automations/reminders").await;
    assert!(page.contains("No reminder rules yet."), "{page}");
    assert_eq!(texts(&page, "nav.tabs a"), ["Triggers", "Reminders"]);
    assert_eq!(texts(&page, "nav.tabs a.active"), ["Reminders"]);
    let triggers = s.admin.get_html("/automations").await;
    assert_eq!(texts(&triggers, "nav.tabs a.active"), ["Triggers"]);

    // Bad forms come back 422 with the problem beside its field and what was typed kept.
    for (extra, field, words) in [
        (
            vec![("at_time", "25:00"), ("timing", "at_time")],
            "#r-at-time-error",
            "HH:MM",
        ),
        (vec![("amount", "soon")], "#r-amount-error", "whole number"),
        (
            vec![("time_zone", "Mars/Base")],
            "#r-time-zone-error",
            "time zone",
        ),
        (vec![("name", "")], "#r-name-error", "name"),
    ] {
        let res = s
            .admin
            .post_form(
                "/automations/reminders",
                &rule_form(&s, "Day before", &extra),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{extra:?}");
        let html = res.text().await.expect("body");
        let error = texts(&html, field).join(" ");
        assert!(error.contains(words), "{extra:?}: {error:?} in {html}");
        assert!(html.contains("See you tomorrow!"), "the text is kept");
    }

    // A contact with an appointment in three days; then the rule, made through the form.
    let phone = "+14155550181";
    let at = Utc::now() + chrono::Duration::days(3);
    appointment(&app, &s, phone, at).await;
    let path = create_rule(&s, "Day before").await;

    // The same name again is refused on the name.
    let res = s
        .admin
        .post_form("/automations/reminders", &rule_form(&s, "Day before", &[]))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.expect("body");
    assert!(texts(&html, "#r-name-error").join(" ").contains("already"));

    // The list shows it, its timing in words.
    let page = s.admin.get_html("/automations/reminders").await;
    let row = texts(&page, "tr[data-rule='Day before']").join(" ");
    assert!(row.contains("1 day before appointment_at"), "{row}");
    assert!(row.contains("Text: See you tomorrow!"), "{row}");
    assert!(row.contains("Enabled"), "{row}");

    // Its page: the contact due next, a day before the appointment, in the rule's zone.
    let page = page_once_due(&s.admin, &path, phone).await;
    let due = texts(&page, &format!("#rule-due tr[data-contact='{phone}']")).join(" ");
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("zone");
    let expected = (at - chrono::Duration::days(1))
        .with_timezone(&berlin)
        .format("%-d %b %Y, %H:%M")
        .to_string();
    assert!(due.contains(&expected), "{due} should say {expected}");
    assert!(
        due.contains(&at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "{due}"
    );
    assert!(page.contains("Nothing sent, skipped or cancelled yet."));
    let list = s.admin.get_html("/automations/reminders").await;
    assert_eq!(
        texts(&list, "tr[data-rule='Day before'] td[data-due-next]"),
        ["1"]
    );

    // Edited through the same form: two hours before.
    let res = s
        .admin
        .post_form(
            &path,
            &rule_form(&s, "Day before", &[("unit", "hours"), ("amount", "2")]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = s.admin.get_html(&path).await;
    assert_eq!(
        texts(&page, "#rule-timing"),
        ["2 hours before appointment_at"]
    );
    let res = s
        .admin
        .post_form(
            &path,
            &rule_form(&s, "Day before", &[("grace_minutes", "-1")]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.expect("body");
    assert!(!texts(&html, "#r-grace-error").is_empty(), "{html}");

    // Disabled (the list says so), then enabled again.
    let page = switch(&s.admin, &path, "false").await;
    assert!(page.contains("id=\"enable-rule\""), "{page}");
    let list = s.admin.get_html("/automations/reminders").await;
    assert!(
        texts(&list, "tr[data-rule='Day before']")
            .join(" ")
            .contains("Disabled")
    );
    let page = switch(&s.admin, &path, "true").await;
    assert!(page.contains("id=\"disable-rule\""), "{page}");
    assert!(page.contains("is enabled."), "the flash says so: {page}");

    // Delete asks first (the form carries the question), needs the CSRF token, and removes it.
    let delete_form = format!("form[action='{path}/delete'][data-confirm]");
    assert_eq!(texts(&page, &delete_form).len(), 1, "{page}");
    let res = s.admin.post_form_raw(&format!("{path}/delete"), &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = s.admin.post_form(&format!("{path}/delete"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/automations/reminders");
    assert_eq!(s.admin.get(&path).await.status(), StatusCode::NOT_FOUND);
    let page = s.admin.get_html("/automations/reminders").await;
    assert!(page.contains("No reminder rules yet."), "{page}");
}

async fn only_admins_see_the_reminder_pages(app: TestApp) {
    let s = setup(&app).await;
    let path = create_rule(&s, "Day before").await;
    for get in ["/automations/reminders", path.as_str()] {
        assert_eq!(
            s.lead.get(get).await.status(),
            StatusCode::FORBIDDEN,
            "{get}"
        );
    }
    for post in [format!("{path}/delete"), format!("{path}/enabled")] {
        let res = s.lead.post_form(&post, &[("enabled", "false")]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{post}");
    }
    let res = s
        .lead
        .post_form("/automations/reminders", &rule_form(&s, "Sneaky", &[]))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The delete question names the rule as typed (escaped once, not twice).
    let tricky = create_rule(&s, "Tom & Jerry's \"visit\"").await;
    let page = s.admin.get_html(&tricky).await;
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("form[data-confirm]").expect("selector");
    let question = doc
        .select(&sel)
        .next()
        .and_then(|f| f.value().attr("data-confirm"))
        .expect("the delete form asks");
    assert!(question.contains("“Tom & Jerry's \"visit\"”"), "{question}");
    // Signed out: to the sign-in page.
    let res = app.client().get("/automations/reminders").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/login"), "{}", location(&res));
    // The rule is still there, still enabled.
    let page = s.admin.get_html("/automations/reminders").await;
    assert!(
        texts(&page, "tr[data-rule='Day before']")
            .join(" ")
            .contains("Enabled")
    );
}

async fn a_rules_page_shows_what_was_sent_and_what_was_skipped_and_why(app: TestApp) {
    let s = setup(&app).await;
    // A minute before an appointment 62 seconds away: sent within seconds, with its message;
    // a date that is not one: skipped, with why.
    let sent = "+14155550184";
    appointment(&app, &s, sent, Utc::now() + chrono::Duration::seconds(62)).await;
    let skipped = "+14155550185";
    set_appointment(&app, &s, skipped, json!("next tuesday")).await;
    let path = create_rule_with(&s, "Minute before", &[("unit", "minutes"), ("amount", "1")]).await;

    let page = page_once(&s.admin, &path, "#rule-activity tr[data-state='sent']").await;
    let page = if texts(&page, "#rule-activity tr[data-state='skipped']").is_empty() {
        page_once(&s.admin, &path, "#rule-activity tr[data-state='skipped']").await
    } else {
        page
    };
    let row = texts(&page, "#rule-activity tr[data-state='sent']").join(" ");
    assert!(row.contains(sent), "{row}");
    let doc = scraper::Html::parse_document(&page);
    let link =
        scraper::Selector::parse("#rule-activity tr[data-state='sent'] a[href^='/messages/']")
            .expect("selector");
    let message = doc
        .select(&link)
        .next()
        .and_then(|a| a.value().attr("href"))
        .expect("a link to the message");
    assert_eq!(s.admin.get(message).await.status(), StatusCode::OK);
    let row = texts(&page, "#rule-activity tr[data-state='skipped']").join(" ");
    assert!(row.contains(skipped), "{row}");
    assert!(row.contains("not a date"), "the reason: {row}");
}

async fn the_list_of_rules_pages(app: TestApp) {
    let s = setup(&app).await;
    for n in 1..=51 {
        let (st, b) = api(
            &app,
            Method::POST,
            "/api/v1/reminders",
            &s.key,
            Some(
                &json!({"name": format!("Rule {n:02}"), "channel": s.sms.name,
                "text": "Soon!", "attribute": "appointment_at", "offset_minutes": -60}),
            ),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
    }
    let first = s.admin.get_html("/automations/reminders").await;
    let names = texts(&first, "tr[data-rule] td:first-child");
    assert_eq!(names.len(), 50);
    assert_eq!(names[0], "Rule 01");
    let doc = scraper::Html::parse_document(&first);
    let next = scraper::Selector::parse("a[rel=next]").expect("selector");
    let next = doc
        .select(&next)
        .next()
        .and_then(|a| a.value().attr("href"))
        .expect("a next page")
        .to_owned();
    let second = s.admin.get_html(&next).await;
    assert_eq!(texts(&second, "tr[data-rule] td:first-child"), ["Rule 51"]);
    assert!(texts(&second, "a[rel=next]").is_empty(), "the last page");
    assert_eq!(texts(&second, ".pager a"), ["First page"]);
}

/// The `attr` of each element matching `selector`.
fn attrs(html: &str, selector: &str, attr: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse(selector).expect("selector");
    doc.select(&sel)
        .filter_map(|e| e.value().attr(attr).map(str::to_owned))
        .collect()
}

/// The variables the form shows a row for (`{{1}}`, ...).
fn variable_rows(html: &str) -> Vec<String> {
    texts(html, "#r-variables tr[data-variable] th")
}

/// Two approved WhatsApp templates: `visit_soon` ({{1}} and {{2}}) and `visit_thanks` ({{1}}).
async fn visit_templates(app: &TestApp, s: &Setup) {
    let body = "Hi {{1}}, we see you at {{2}} for your visit.";
    approved_template(app, s, "visit_soon", body).await;
    approved_template(app, s, "visit_thanks", "Thanks {{1}}, see you again soon.").await;
}

async fn an_admin_maps_the_templates_variables_in_rows(app: TestApp) {
    let s = setup(&app).await;
    visit_templates(&app, &s).await;
    let visit = "visit_soon|en_US";
    let wa = s.wa.public_id.as_str();

    // The new rule's form offers no rows until a template is chosen.
    let page = s.admin.get_html("/automations/reminders").await;
    assert!(variable_rows(&page).is_empty(), "{page}");
    assert_eq!(
        attrs(&page, "#r-variables", "hx-trigger"),
        ["change from:#r-template"]
    );

    // Choosing a template (htmx posts the form): its variables block alone, a row each, with
    // what was typed for a variable of the same name kept.
    let mut typed = rule_form(&s, "Visit", &[("channel", wa), ("template", visit)]);
    typed.push(("var.1.source", "fallback"));
    typed.push(("var.1.text", "friend"));
    let res = s
        .admin
        .post_form("/automations/reminders/variables", &typed)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let block = res.text().await.expect("body");
    assert!(!block.contains("<html"), "a fragment: {block}");
    assert_eq!(variable_rows(&block), ["{{1}}", "{{2}}"]);
    assert_eq!(attrs(&block, "#v-1-text", "value"), ["friend"]);
    typed.retain(|(k, _)| *k != "template");
    typed.push(("template", "visit_thanks|en_US"));
    let res = s
        .admin
        .post_form("/automations/reminders/variables", &typed)
        .await;
    let block = res.text().await.expect("body");
    assert_eq!(variable_rows(&block), ["{{1}}"], "{block}");

    // Without JavaScript: "Show the template's variables" shows the form again (not saved).
    let page = s.admin.get_html("/automations/reminders").await;
    assert!(
        page.contains(
            "<noscript><button type=\"submit\" name=\"show_variables\" value=\"1\" \
             class=\"secondary\">Show the template's variables</button></noscript>"
        ),
        "{page}"
    );
    let mut shown = rule_form(&s, "Visit", &[("channel", wa), ("template", visit)]);
    shown.push(("show_variables", "1"));
    let res = s.admin.post_form("/automations/reminders", &shown).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.expect("body");
    assert_eq!(variable_rows(&page), ["{{1}}", "{{2}}"]);
    assert_eq!(attrs(&page, "#r-name", "value"), ["Visit"]);
    assert!(page.contains("No reminder rules yet."), "nothing saved");

    // A row left incomplete: 422, its problem beside its row, every row's values kept.
    let mut rows = rule_form(&s, "Visit", &[("channel", wa), ("template", visit)]);
    rows.extend([
        ("var.1.source", "fallback"),
        ("var.1.key", "name"),
        ("var.1.text", "there"),
        ("var.2.source", "fixed"),
        ("var.2.key", ""),
        ("var.2.text", ""),
    ]);
    let res = s.admin.post_form("/automations/reminders", &rows).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.expect("body");
    assert!(
        texts(&html, "tr[data-variable='2'] #v-2-error")
            .join(" ")
            .contains("Enter the text"),
        "{html}"
    );
    assert!(texts(&html, "#v-1-error").is_empty());
    assert_eq!(attrs(&html, "#v-1-text", "value"), ["there"]);
    assert_eq!(
        attrs(&html, "#v-1-source option[selected]", "value"),
        ["fallback"]
    );
    assert_eq!(attrs(&html, "#v-1-key option[selected]", "value"), ["name"]);
    assert_eq!(
        attrs(&html, "#v-2-source option[selected]", "value"),
        ["fixed"]
    );

    // Filled in: the rule is made (no JSON typed), its page reads the mapping in words.
    rows.retain(|(k, _)| *k != "var.2.text");
    rows.push(("var.2.text", "10:00"));
    let res = s.admin.post_form("/automations/reminders", &rows).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let path = location(&res);
    let page = s.admin.get_html(&path).await;
    assert_eq!(
        texts(&page, "#rule-variables li"),
        [
            "{{1}}: contact attribute name, else \"there\"",
            "{{2}}: always \"10:00\""
        ]
    );

    // Its edit form shows the mapping in the rows.
    assert_eq!(variable_rows(&page), ["{{1}}", "{{2}}"]);
    assert_eq!(
        attrs(&page, "#v-1-source option[selected]", "value"),
        ["fallback"]
    );
    assert_eq!(attrs(&page, "#v-1-key option[selected]", "value"), ["name"]);
    assert_eq!(attrs(&page, "#v-1-text", "value"), ["there"]);
    assert_eq!(attrs(&page, "#v-2-text", "value"), ["10:00"]);

    // The API reads the same mapping, as JSON.
    let id = path.rsplit('/').next().expect("id");
    let (st, rule) = api(
        &app,
        Method::GET,
        &format!("/api/v1/reminders/{id}"),
        &s.key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{rule}");
    assert_eq!(
        rule["template"]["variables"]["2"],
        json!({"source": "fixed", "text": "10:00"}),
        "{rule}"
    );

    // Edited through the rows; without JavaScript the other template's rows come first.
    let mut edit = rows.clone();
    edit.retain(|(k, _)| *k != "var.1.text" && *k != "template");
    edit.extend([("var.1.text", "you"), ("template", "visit_thanks|en_US")]);
    let mut show = edit.clone();
    show.push(("show_variables", "1"));
    let res = s.admin.post_form(&path, &show).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.expect("body");
    assert_eq!(variable_rows(&page), ["{{1}}"]);
    edit.retain(|(k, _)| !k.starts_with("var.2."));
    let res = s.admin.post_form(&path, &edit).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = s.admin.get_html(&path).await;
    assert_eq!(
        texts(&page, "#rule-variables li"),
        ["{{1}}: contact attribute name, else \"you\""]
    );
}

async fn a_rules_due_and_activity_lists_page_past_fifty(app: TestApp) {
    let s = setup(&app).await;
    // A disabled rule (the background step leaves it alone) with 51 reminders due and 51 sent.
    let path = create_rule(&s, "Paged").await;
    switch(&s.admin, &path, "false").await;
    let contact_id = contact(&app, &s.key, json!({"phone": "+14155550190"})).await;
    let mut db = app.db();
    let rule = herald::storage::reminders::find_by_public_id(
        &mut db,
        path.rsplit('/').next().expect("id"),
    )
    .expect("read")
    .expect("the rule");
    let contact = herald::storage::contacts::find_by_public_id(&mut db, &contact_id)
        .expect("read")
        .expect("the contact");
    let start = Utc::now() + chrono::Duration::days(1);
    for n in 1..=51 {
        let due = start + chrono::Duration::hours(n);
        herald::storage::reminders::insert_reminder(
            &mut db,
            rule.id,
            contact.id,
            &format!("due-{n:02}"),
            Some(due.naive_utc()),
            "pending",
            None,
        )
        .expect("due");
        herald::storage::reminders::insert_reminder(
            &mut db,
            rule.id,
            contact.id,
            &format!("sent-{n:02}"),
            None,
            "sent",
            None,
        )
        .expect("sent");
    }
    let values = |html: &str, list: &str| texts(html, &format!("#{list} tbody td.hide-narrow"));

    // The first page of each, the count of all due, and a Next link for each.
    let page = s.admin.get_html(&path).await;
    assert_eq!(texts(&page, "#due-count"), ["51 due"]);
    let due = values(&page, "rule-due");
    assert_eq!(due.len(), 50);
    assert_eq!((due[0].as_str(), due[49].as_str()), ("due-01", "due-50"));
    let recent = values(&page, "rule-activity");
    assert_eq!(recent.len(), 50);
    assert!(texts(&page, "#due-first, #activity-first").is_empty());

    // Due next, page two: the last one; the activity stays on its first page.
    let next = attrs(&page, "#due-next", "href").pop().expect("due next");
    let second = s.admin.get_html(&next).await;
    assert_eq!(values(&second, "rule-due"), ["due-51"]);
    assert!(texts(&second, "#due-next").is_empty(), "the last page");
    assert_eq!(texts(&second, "#due-first"), ["Soonest first"]);
    assert_eq!(texts(&second, "#due-count"), ["51 due"]);
    assert_eq!(values(&second, "rule-activity"), recent);

    // Recent activity, page two (from there): the oldest; due next stays where it was.
    let next = attrs(&second, "#activity-next", "href")
        .pop()
        .expect("activity next");
    let third = s.admin.get_html(&next).await;
    assert_eq!(values(&third, "rule-activity"), ["sent-01"]);
    assert_eq!(values(&third, "rule-due"), ["due-51"]);
    assert!(texts(&third, "#activity-next").is_empty());
    let mut all: Vec<String> = recent;
    all.extend(values(&third, "rule-activity"));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 51, "each once");

    // A cursor Herald did not give is refused.
    let res = s.admin.get(&format!("{path}?due_cursor=nonsense")).await;
    assert!(res.status().is_client_error(), "{}", res.status());
}

/// Triggers share the Enable/Disable and Delete buttons (and their handlers) with reminder rules.
async fn a_trigger_page_has_the_same_enable_and_delete_buttons(app: TestApp) {
    let s = setup(&app).await;
    let (st, t) = api(
        &app,
        Method::POST,
        "/api/v1/triggers",
        &s.key,
        Some(&json!({
            "name": "Orders",
            "channel": s.sms.name,
            "text": "Thanks for your order!",
            "verification": {"scheme": "api_key"},
            "mapping": {"phone": "/phone"},
        })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let path = format!("/automations/triggers/{}", t["id"].as_str().expect("id"));
    let page = switch(&s.admin, &path, "false").await;
    assert!(page.contains("id=\"enable-trigger\""), "{page}");
    assert!(
        page.contains("deliveries get 410"),
        "the flash says what it means: {page}"
    );
    let page = switch(&s.admin, &path, "true").await;
    assert!(page.contains("id=\"disable-trigger\""), "{page}");
    let delete_form = format!("form[action='{path}/delete'][data-confirm]");
    assert_eq!(texts(&page, &delete_form).len(), 1, "{page}");
    let res = s.admin.post_form(&format!("{path}/delete"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/automations");
    assert_eq!(s.admin.get(&path).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn in_the_browser_an_admin_makes_a_day_before_reminder_and_sees_it_due() {
    let app = spawn(crate::helpers::Backend::Sqlite).await;
    let s = setup(&app).await;
    let phone = "+14155550182";
    let at = Utc::now() + chrono::Duration::days(3);
    appointment(&app, &s, phone, at).await;
    visit_templates(&app, &s).await;
    let b = crate::browser::Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    b.wait_for_text("Hello, Ada").await;

    // Automations › Reminders: the form starts at "1 day before appointment_at".
    b.click("a[href='/automations']").await;
    b.wait_for_text("New trigger").await;
    b.click("nav.tabs a[href='/automations/reminders']").await;
    b.wait_for_text("No reminder rules yet.").await;
    b.fill("#r-name", "Appointment tomorrow").await;

    // Choosing a template shows a row per variable in place (htmx); another template, its own.
    let rows = || b.text("#r-variables");
    crate::broadcasts::select(&b, "#r-template", "visit_soon|en_US").await;
    crate::broadcasts::wait_in(&b, "#r-variables", "{{2}}", 10).await;
    assert!(rows().await.contains("{{1}}"));
    crate::broadcasts::select(&b, "#r-template", "visit_thanks|en_US").await;
    for _ in 0..100 {
        if !rows().await.contains("{{2}}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = rows().await;
    assert!(
        shown.contains("{{1}}") && !shown.contains("{{2}}"),
        "{shown}"
    );
    let name = b
        .client
        .find(fantoccini::Locator::Css("#r-name"))
        .await
        .expect("the name")
        .prop("value")
        .await
        .expect("its value");
    assert_eq!(
        name.as_deref(),
        Some("Appointment tomorrow"),
        "kept as typed"
    );
    crate::broadcasts::select(&b, "#r-template", "").await;
    crate::broadcasts::select(&b, "#r-channel", &s.sms.public_id).await;
    b.fill("#r-text", "See you tomorrow!").await;
    b.click("#reminder-form button.primary").await;
    b.wait_for_text("it sends 1 day before appointment_at")
        .await;
    assert_eq!(
        b.text("#rule-timing").await.trim(),
        "1 day before appointment_at"
    );

    // Due next: the contact, once the background step has looked (the page is read again).
    let path = b.path().await;
    let mut due = String::new();
    for _ in 0..100 {
        due = b.text("#rule-due").await;
        if due.contains(phone) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.goto(&path).await;
    }
    assert!(due.contains(phone), "{due}");
    let when = (at - chrono::Duration::days(1))
        .format("%-d %b %Y")
        .to_string();
    assert!(due.contains(&when), "{due} should say {when}");
    b.finish().await;
}
