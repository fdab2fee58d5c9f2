//! The layout at a desktop's and a phone's width (issue 15): signed in as each role, no page
//! Herald shows is wider than the window at 1,280 or 375 px, with data in every page (a contact
//! with a long name and long attributes, a conversation, a list, an import, an approved
//! template, an API key); and at 375 px the navigation sits behind a menu button. Browser tests
//! run in headless Chromium when HERALD_TEST_CHROMEDRIVER is set; the markup check runs always.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::json;

use crate::browser::Browser;
use crate::fixtures;
use crate::helpers::{ADMIN_EMAIL, Backend, PASSWORD, TestApp};

const WIDTHS: [u32; 2] = [1280, 375];

const LONG_NAME: &str =
    "Maximiliana Wolfeschlegelsteinhausenbergerdorff-Ødegaard von Württemberg-Hohenzollern";

/// Free text to a contact whose WhatsApp window is open, through the API.
async fn answer_on_whatsapp(app: &TestApp, key: &str, contact: &str, text: &str) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", app.address))
        .bearer_auth(key)
        .json(&json!({"contact_id": contact, "channel": "Sandbox WhatsApp", "text": text}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

/// Puts something on every page; returns the pages to visit beyond the navigation's links.
async fn seed(app: &TestApp, s: &fixtures::Setup) -> Vec<String> {
    let template = fixtures::approved_template(app, s, "order_update", fixtures::WA_BODY).await;
    let contact = fixtures::contact(
        app,
        &s.key,
        json!({
            "phone": "+14155550100",
            "name": LONG_NAME,
            "email": "maximiliana.wolfeschlegelsteinhausenbergerdorff@a-rather-long-company-domain.example.com",
            "attributes": {
                "loyalty_programme_membership_reference": "LOYALTY-0000-1111-2222-3333-4444-5555-6666-7777-8888",
                "delivery_instructions": "Leave it with the neighbour at number forty-two unless it is raining heavily",
            },
            "lists": ["Spring customers who bought something in the first week"],
        }),
    )
    .await;
    fixtures::customer_replies(
        &s.admin,
        &contact,
        &s.wa,
        "Hello! Could you tell me where my order https://shop.example.com/orders/0123456789abcdef0123456789abcdef is?",
    )
    .await;
    answer_on_whatsapp(
        app,
        &s.key,
        &contact,
        "It left our warehouse this morning: https://tracking.example.com/parcels/ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    )
    .await;
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/contacts/import?list=Imported%20in%20spring",
            app.address
        ))
        .bearer_auth(&s.key)
        .header("Content-Type", "text/csv")
        .body(format!(
            "phone,name,customer_reference\n+14155550101,Ada Short,REF-00000000000000000000000000000001\n+1555,{LONG_NAME},bad\n"
        ))
        .send()
        .await
        .expect("import");
    assert_eq!(res.status(), StatusCode::OK);
    let import = {
        let mut db = app.db();
        herald::storage::imports::recent(&mut db, 1)
            .expect("imports")
            .into_iter()
            .next()
            .expect("an import")
            .public_id
    };
    let list = s
        .admin
        .get_html("/contacts/lists")
        .await
        .split("href=\"/contacts?list=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a list link")
        .to_owned();
    // Issue 20: a reminder rule with a long name, on the Reminders list and its own page.
    let (status, rule) = crate::provider_kit::api(
        app,
        reqwest::Method::POST,
        "/api/v1/reminders",
        &s.key,
        Some(
            &json!({"name": LONG_NAME, "channel": "Sandbox SMS", "text": "See you tomorrow!",
            "attribute": "loyalty_programme_membership_reference", "offset_minutes": -1440}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    // And one sending the template, its variables in rows (long keys and fallbacks).
    let (status, templated) = crate::provider_kit::api(
        app,
        reqwest::Method::POST,
        "/api/v1/reminders",
        &s.key,
        Some(
            &json!({"name": "Order update reminder", "channel": "Sandbox WhatsApp",
            "template": {"name": "order_update", "language": "en_US", "variables": {
                "1": {"source": "attribute_with_fallback",
                      "key": "loyalty_programme_membership_reference", "fallback": LONG_NAME},
                "2": {"source": "fixed", "text": "REF-00000000000000000000000000000001"}}},
            "attribute": "loyalty_programme_membership_reference", "offset_minutes": -1440}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{templated}");
    vec![
        "/automations/reminders".into(),
        format!(
            "/automations/reminders/{}",
            rule["id"].as_str().expect("id")
        ),
        format!(
            "/automations/reminders/{}",
            templated["id"].as_str().expect("id")
        ),
        format!("/contacts/{contact}"),
        format!("/contacts?list={list}"),
        "/contacts/lists".into(),
        "/contacts/new".into(),
        "/contacts/import".into(),
        format!("/contacts/imports/{import}"),
        template.clone(),
        format!("{template}/edit"),
        "/templates/new".into(),
        format!("/send?contact={contact}"),
        format!("/settings/channels/{}", s.wa.public_id),
        "/settings/channels/new".into(),
        "/account/password".into(),
    ]
}

/// Sets the window so that the page's viewport is `width` px wide.
async fn viewport(b: &Browser, width: u32) {
    b.client
        .set_window_size(width, 900)
        .await
        .expect("window size");
    let inner = b
        .client
        .execute("return window.innerWidth", vec![])
        .await
        .expect("innerWidth");
    assert_eq!(inner, json!(width), "the browser did not take the width");
}

/// How wide the page is against its window, once it has loaded.
async fn widths(b: &Browser) -> (i64, i64) {
    let v = b
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            vec![],
        )
        .await
        .expect("widths");
    (
        v[0].as_i64().expect("scrollWidth"),
        v[1].as_i64().expect("innerWidth"),
    )
}

/// The innermost elements that reach past the window's right edge, for the failure message.
async fn past_the_edge(b: &Browser) -> String {
    let found = b
        .client
        .execute(
            r##"
            var w = window.innerWidth, out = [];
            document.querySelectorAll("body *").forEach(function (el) {
              if (el.getBoundingClientRect().right <= w + 1) return;
              var inner = Array.prototype.some.call(el.children, function (c) {
                return c.getBoundingClientRect().right > w + 1;
              });
              if (!inner) out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                (el.className && el.className.baseVal === undefined ? "." + el.className.trim().split(/\s+/).join(".") : "") +
                " (" + Math.round(el.getBoundingClientRect().right) + ")");
            });
            return out.slice(0, 6).join(", ");
            "##,
            vec![],
        )
        .await
        .expect("elements past the edge");
    found.as_str().unwrap_or_default().to_owned()
}

/// The navigation's links for the signed-in person.
async fn nav_links(b: &Browser) -> Vec<String> {
    let mut out = Vec::new();
    for a in b
        .client
        .find_all(Locator::Css(".sidebar nav a"))
        .await
        .expect("links")
    {
        if let Some(href) = a.attr("href").await.expect("href") {
            out.push(href);
        }
    }
    out
}

async fn displayed(b: &Browser, css: &str) -> bool {
    b.client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .is_displayed()
        .await
        .expect("displayed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn no_page_is_wider_than_the_window_for_any_role() {
    let app = fixtures::spawn(Backend::Sqlite).await;
    let s = fixtures::setup(&app).await;
    let _mia = app
        .user_with_role(&s.admin, "mia@example.com", "marketer")
        .await;
    let extra = seed(&app, &s).await;

    let b = Browser::start(&app.address).await;
    let mut too_wide = Vec::new();
    let mut visited = 0;
    // Signed out: the sign-in page.
    for width in WIDTHS {
        viewport(&b, width).await;
        b.goto("/login").await;
        b.wait_for_text("Sign in").await;
        let (scroll, inner) = widths(&b).await;
        visited += 1;
        if scroll > inner {
            too_wide.push(format!("/login at {width} px: {scroll} px wide"));
        }
    }
    for email in [ADMIN_EMAIL, "sam@example.com", "mia@example.com"] {
        viewport(&b, 1280).await;
        b.sign_in(email, PASSWORD).await;
        b.wait_for_text("Sign out").await;
        let mut pages = nav_links(&b).await;
        assert!(pages.len() >= 3, "{email}: {pages:?}");
        pages.extend(extra.iter().cloned());
        for width in WIDTHS {
            viewport(&b, width).await;
            for page in &pages {
                b.goto(page).await;
                b.wait_for_text("Herald").await;
                let (scroll, inner) = widths(&b).await;
                visited += 1;
                if scroll > inner {
                    too_wide.push(format!(
                        "{email} {page} at {width} px: {scroll} px wide, past the edge: {}",
                        past_the_edge(&b).await
                    ));
                }
            }
        }
        viewport(&b, 1280).await;
        b.sign_out().await;
    }
    assert!(visited >= 3 * 2 * 15, "only {visited} pages visited");
    assert!(
        too_wide.is_empty(),
        "pages wider than the window:\n{}",
        too_wide.join("\n")
    );
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn at_a_phones_width_the_navigation_opens_from_a_menu_button() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let _admin = app.admin().await;
    let b = Browser::start(&app.address).await;
    b.sign_in(ADMIN_EMAIL, PASSWORD).await;
    b.wait_for_text("Getting started").await;
    let contacts_link = ".sidebar nav a[href='/contacts']";

    // Desktop: no menu button, the navigation is there.
    viewport(&b, 1280).await;
    assert!(!displayed(&b, "#menu-button").await);
    assert!(displayed(&b, contacts_link).await);

    // Phone: the button shows, the navigation is closed until it is pressed.
    viewport(&b, 375).await;
    b.goto("/").await;
    b.wait_for_text("Getting started").await;
    assert!(displayed(&b, "#menu-button").await);
    assert_eq!(menu_attr(&b, "aria-controls").await, "sidebar-menu");
    assert_eq!(menu_attr(&b, "aria-expanded").await, "false");
    assert!(!displayed(&b, contacts_link).await);
    assert!(!displayed(&b, "form[action='/logout'] button").await);

    b.click("#menu-button").await;
    assert_eq!(menu_attr(&b, "aria-expanded").await, "true");
    assert!(displayed(&b, contacts_link).await);
    assert!(displayed(&b, "form[action='/logout'] button").await);

    // Pressing it again closes it.
    b.click("#menu-button").await;
    assert_eq!(menu_attr(&b, "aria-expanded").await, "false");
    assert!(!displayed(&b, contacts_link).await);

    // Choosing a page from the open menu goes there (htmx swaps the sidebar in anew) and the
    // menu is closed on arrival.
    b.click("#menu-button").await;
    b.click(contacts_link).await;
    b.wait_for_text("in all. Search by phone").await;
    assert_eq!(b.path().await, "/contacts");
    for _ in 0..50 {
        if menu_attr(&b, "aria-expanded").await == "false" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(menu_attr(&b, "aria-expanded").await, "false");
    assert!(!displayed(&b, contacts_link).await);

    // Back to a desktop's width: the navigation shows again without the button, and what
    // stays in view on a desktop (the sidebar, the template editor's preview) still does.
    viewport(&b, 1280).await;
    assert!(!displayed(&b, "#menu-button").await);
    assert!(displayed(&b, ".sidebar nav a[href='/templates']").await);
    b.goto("/templates/new").await;
    b.click("a[data-channel='Sandbox WhatsApp']").await;
    b.wait_for_text("Preview").await;
    let positions = b
        .client
        .execute(
            "return [document.querySelector('.sidebar'), document.querySelector('.preview-card')]\
             .map(function (e) { return e ? getComputedStyle(e).position : 'missing'; })",
            vec![],
        )
        .await
        .expect("positions");
    assert_eq!(positions, json!(["sticky", "sticky"]));
    b.finish().await;
}

/// An attribute of the menu button ("" when absent).
async fn menu_attr(b: &Browser, name: &str) -> String {
    b.client
        .find(Locator::Css("#menu-button"))
        .await
        .expect("menu button")
        .attr(name)
        .await
        .expect("attribute")
        .unwrap_or_default()
}

/// Without script the navigation is reachable: the page arrives with the menu open and the
/// button (which only script can work) hidden; app.js closes it on narrow screens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_script_the_navigation_arrives_open() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.admin().await;
    let page = admin.get_html("/").await;
    let doc = scraper::Html::parse_document(&page);
    let one = |css: &str| {
        let sel = scraper::Selector::parse(css).expect("selector");
        doc.select(&sel).next().map(|e| e.value().clone())
    };
    let button = one("button#menu-button").expect("a menu button");
    assert_eq!(button.attr("type"), Some("button"));
    assert_eq!(button.attr("aria-controls"), Some("sidebar-menu"));
    assert_eq!(button.attr("aria-expanded"), Some("true"));
    assert!(button.attr("hidden").is_some(), "hidden until script runs");
    let sidebar = one("aside.sidebar").expect("sidebar");
    assert!(!sidebar.classes().any(|c| c == "menu-closed"));
    assert!(one("#sidebar-menu nav a[href='/contacts']").is_some());
    assert!(one("#sidebar-menu form[action='/logout']").is_some());
    // No inline script: the behaviour is in app.js, which the CSP allows.
    assert!(!page.contains("<script>") && !page.contains("onclick="));
    assert!(page.contains("/assets/app.js"));
}

/// The README's screenshots: the dashboard, the contacts page and a contact's page, with a few
/// contacts and a conversation in them, written to docs/screenshots/ (each under 150 KB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/*.png: cargo test --test app readme_screenshots -- --ignored"]
async fn readme_screenshots() {
    let app = fixtures::spawn(Backend::Sqlite).await;
    let s = fixtures::setup(&app).await;
    fixtures::approved_template(&app, &s, "order_update", fixtures::WA_BODY).await;
    let people = [
        ("+14155550131", "Amélie Laurent", "Lyon", "gold"),
        ("+14155550132", "Jonas Becker", "Zürich", "silver"),
        ("+14155550133", "Priya Natarajan", "New York", "gold"),
        ("+14155550134", "Łukasz Nowak", "Kraków", "bronze"),
        ("+14155550135", "Zoë Kravitz", "São Paulo", "silver"),
        ("+14155550136", "Sam Okafor", "Lagos", "gold"),
    ];
    let mut last = String::new();
    for (phone, name, city, tier) in people {
        last = fixtures::contact(
            &app,
            &s.key,
            json!({"phone": phone, "name": name, "email": format!("{}@example.com", name.split(' ').next().unwrap_or("someone").to_lowercase()),
                "attributes": {"city": city, "tier": tier}, "lists": ["Spring customers"]}),
        )
        .await;
    }
    fixtures::customer_replies(&s.admin, &last, &s.wa, "Hi! Any news on my order #1234?").await;
    answer_on_whatsapp(
        &app,
        &s.key,
        &last,
        "Hi Sam, it left our warehouse this morning and arrives tomorrow.",
    )
    .await;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    let b = Browser::start(&app.address).await;
    b.client.set_window_size(1280, 800).await.expect("size");
    b.sign_in(ADMIN_EMAIL, PASSWORD).await;
    b.wait_for_text("Getting started").await;
    let contact = format!("/contacts/{last}");
    for (name, path, wait) in [
        ("dashboard", "/", "Getting started"),
        ("contacts", "/contacts", "6 contacts"),
        ("contact", contact.as_str(), "it left our warehouse"),
    ] {
        b.goto(path).await;
        b.wait_for_text(wait).await;
        // Past the sandbox's delivered and read, so the page shows a settled state.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let png = b.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        assert!(
            png.len() < 150 * 1024,
            "{name}.png is {} KB",
            png.len() / 1024
        );
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write png");
    }
    b.finish().await;
}
