//! The frame around everything: health, headers, error pages, htmx partials, limits, assets,
//! restarts and the two database backends.

use reqwest::StatusCode;

use crate::helpers::{TestApp, texts};

crate::both_backends!(
    healthz_reports_the_database,
    pages_carry_security_headers,
    error_pages_keep_the_layout_and_speak_json_to_the_api,
    htmx_requests_get_partials,
    oversized_bodies_are_refused,
    assets_are_served_with_long_caching,
    a_second_start_on_the_same_database_keeps_everything,
);

async fn healthz_reports_the_database(app: TestApp) {
    let res = app.client().get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json, serde_json::json!({"status": "ok"}));
}

async fn pages_carry_security_headers(app: TestApp) {
    let admin = app.admin().await;
    for path in ["/", "/settings/users", "/nope", "/login"] {
        let res = admin.get(path).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("x-request-id"), "{path}");
    }
    // The session cookie is HttpOnly and SameSite=Lax.
    let c = app.client();
    let res = c.get("/login").await;
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("herald_session="));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // No inline script anywhere in the layout.
    let page = admin.get_html("/").await;
    let scripts = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("script").unwrap();
    for s in scripts.select(&sel) {
        assert!(s.value().attr("src").is_some(), "inline script found");
    }
    assert!(!page.contains(" onclick=") && !page.contains(" style="));
}

async fn error_pages_keep_the_layout_and_speak_json_to_the_api(app: TestApp) {
    let admin = app.admin().await;
    let res = admin.get("/no/such/page").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body = res.text().await.unwrap();
    assert!(body.contains("Page not found") && body.contains("There is no page at this address."));
    assert!(
        body.contains("id=\"sidebar\""),
        "signed-in people keep their navigation"
    );

    let anon = app.client().get("/no/such/page").await;
    assert_eq!(anon.status(), StatusCode::NOT_FOUND);
    let body = anon.text().await.unwrap();
    assert!(body.contains("Page not found") && body.contains("href=\"/login\""));

    // A method the route does not take.
    let res = admin
        .http
        .delete(admin.url("/settings/users"))
        .header("X-CSRF-Token", admin.csrf_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.text().await.unwrap().contains("Not allowed here"));

    let res = app.client().get("/api/v1/nope").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/json");

    // htmx gets a toast aimed at the flash area instead of a whole page.
    let res = admin
        .http
        .get(admin.url("/no/such/page"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["hx-retarget"], "#flash");
    let body = res.text().await.unwrap();
    assert!(body.contains("class=\"flash flash-error\"") && !body.contains("<html"));
}

async fn htmx_requests_get_partials(app: TestApp) {
    let admin = app.admin().await;
    let full = admin.get_html("/settings/users").await;
    assert!(full.starts_with("<!doctype html>"));
    let res = admin
        .http
        .get(admin.url("/settings/users"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let partial = res.text().await.unwrap();
    assert!(!partial.contains("<html") && !partial.contains("<head>"));
    assert!(partial.contains("<title>Users · Herald</title>"));
    assert!(
        partial.contains("hx-swap-oob=\"true\""),
        "the navigation is refreshed out of band"
    );
    assert_eq!(texts(&partial, "h1"), ["Users"]);
    // History restores need the whole page.
    let res = admin
        .http
        .get(admin.url("/settings/users"))
        .header("HX-Request", "true")
        .header("HX-History-Restore-Request", "true")
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().starts_with("<!doctype html>"));
}

async fn oversized_bodies_are_refused(app: TestApp) {
    let admin = app.admin().await;
    let token = admin.csrf_token().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let res = admin
        .http
        .post(admin.url("/settings/users"))
        .header("X-CSRF-Token", &token)
        .form(&[
            ("name", huge.as_str()),
            ("email", "big@example.com"),
            ("role", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("larger than Herald accepts")
    );
    // The form body limit also holds when the CSRF check reads the body.
    let res = admin
        .http
        .post(admin.url("/settings/users"))
        .form(&[("name", huge.as_str()), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/channels", app.address))
        .bearer_auth("hrld_x")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn assets_are_served_with_long_caching(app: TestApp) {
    let admin = app.admin().await;
    let page = admin.get_html("/").await;
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("script[src], link[rel=stylesheet]").unwrap();
    let urls: Vec<String> = doc
        .select(&sel)
        .map(|e| {
            e.value()
                .attr("src")
                .or(e.value().attr("href"))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        urls.iter().any(|u| u.contains("htmx-2.0.11.min.js?v=")),
        "{urls:?}"
    );
    for url in urls {
        let res = admin.get(&url).await;
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        assert!(
            res.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=31536000")
        );
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            ct.contains("javascript") || ct.contains("css"),
            "{url}: {ct}"
        );
    }
    assert_eq!(
        admin.get("/assets/nope.js").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.get("/assets/../Cargo.toml").await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn a_second_start_on_the_same_database_keeps_everything(app: TestApp) {
    let admin = app.admin().await;
    let second = app.second_instance().await;
    // Same users, same secret key (the session cookie works on either instance), no new sandbox channels.
    let res = admin
        .http
        .get(format!("{}/settings/channels", second.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    assert_eq!(body.matches("Sandbox WhatsApp").count(), 1);
    use diesel::prelude::*;
    use herald::storage::schema::channels;
    let n: i64 = channels::table.count().get_result(&mut *app.db()).unwrap();
    assert_eq!(n, 3);
}
