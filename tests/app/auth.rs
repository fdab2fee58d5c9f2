//! First-run setup, sign-in, sign-out, throttling and CSRF.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::cookie::CookieStore;

use reqwest::StatusCode;

use crate::helpers::{ADMIN_EMAIL, Client, PASSWORD, TestApp, location, texts};

crate::both_backends!(
    setup_creates_the_first_admin_exactly_once,
    sign_in_and_sign_out,
    unknown_emails_and_wrong_passwords_get_the_same_answer,
    failed_sign_ins_are_throttled_per_account,
    failed_sign_ins_are_throttled_per_address,
    parallel_wrong_passwords_for_one_account_are_counted_before_they_are_checked,
    parallel_wrong_passwords_from_one_address_are_counted_before_they_are_checked,
    a_successful_sign_in_clears_the_accounts_count_and_uncounts_itself,
    the_current_password_check_is_throttled_like_sign_in,
    state_changing_forms_need_the_sessions_csrf_token,
    anonymous_visitors_are_rejected_everywhere,
    sign_in_returns_to_the_page_asked_for_but_never_off_site,
    control_characters_in_next_lead_home_never_off_site_nor_to_an_error,
    signing_in_renews_the_session,
    signing_out_ends_the_session_for_every_copy_of_the_cookie,
    sessions_end_when_they_expire_and_are_pruned,
);

fn count_users(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use herald::storage::schema::users;
    users::table.count().get_result(&mut *app.db()).unwrap()
}

async fn setup_creates_the_first_admin_exactly_once(app: TestApp) {
    let visitor = app.client();
    for path in ["/", "/login", "/settings/users"] {
        let res = visitor.get(path).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&res), "/setup", "{path} leads to setup");
    }
    let page = visitor.get_html("/setup").await;
    assert!(page.contains("Create the first admin"));

    // Bad input is refused at the field and nothing is created.
    let res = visitor
        .post_form(
            "/setup",
            &[
                ("name", ""),
                ("email", "not-an-email"),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("Enter a name."));
    assert!(
        texts(&body, ".field-error")
            .contains(&"\"not-an-email\" is not a valid e-mail address.".to_owned())
    );
    assert!(body.contains("Use at least 10 characters (this one has 5)."));
    let res = visitor
        .post_form(
            "/setup",
            &[
                ("name", "Ada"),
                ("email", ADMIN_EMAIL),
                ("password", PASSWORD),
                ("password_confirm", "something else"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("The two passwords differ.")
    );
    assert_eq!(count_users(&app), 0);

    let admin = app.admin().await;
    let home = admin.get_html("/").await;
    assert!(home.contains("Hello, Ada"), "{home}");
    assert_eq!(count_users(&app), 1);

    // Gone for good, for everyone.
    let other = app.client();
    assert_eq!(other.get("/setup").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(admin.get("/setup").await.status(), StatusCode::NOT_FOUND);
    let res = other
        .post_form(
            "/setup",
            &[
                ("name", "Mallory"),
                ("email", "mallory@example.com"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(count_users(&app), 1);
    assert_eq!(location(&other.get("/").await), "/login");
}

async fn sign_in_and_sign_out(app: TestApp) {
    let admin = app.admin().await;
    let res = admin.post_form("/logout", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login");
    let login = admin.get_html("/login").await;
    assert!(login.contains("You have signed out."));
    assert_eq!(location(&admin.get("/").await), "/login");

    let res = admin.login(ADMIN_EMAIL, "wrong password here").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("The e-mail address or password is not right.")
    );
    assert_eq!(location(&admin.get("/").await), "/login");

    // E-mails are matched case-insensitively.
    let res = admin.login("  ADA@example.com ", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
    assert_eq!(admin.get("/").await.status(), StatusCode::OK);
}

async fn unknown_emails_and_wrong_passwords_get_the_same_answer(app: TestApp) {
    let _admin = app.admin().await;
    let c = app.client();
    let unknown = c.login("nobody@example.com", PASSWORD).await;
    let unknown_status = unknown.status();
    let unknown_errors = texts(&unknown.text().await.unwrap(), ".flash-error");
    let wrong = c.login(ADMIN_EMAIL, "not the password").await;
    let wrong_status = wrong.status();
    let wrong_errors = texts(&wrong.text().await.unwrap(), ".flash-error");
    assert_eq!(unknown_status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_status, wrong_status);
    assert_eq!(unknown_errors, wrong_errors);
    assert_eq!(unknown_errors.len(), 1);
}

/// A 429 that says how long to wait (a second to fifteen minutes); returns its page.
async fn refused_for_a_while(res: reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    res.text().await.unwrap()
}

async fn failed_sign_ins_are_throttled_per_account(app: TestApp) {
    let _admin = app.admin().await;
    let c = app.client();
    for attempt in 1..=5 {
        let res = c.login(ADMIN_EMAIL, "wrong password!").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Now even the right password is refused for a while, with how long to wait.
    let body = refused_for_a_while(c.login(ADMIN_EMAIL, PASSWORD).await).await;
    assert!(
        body.contains("Too many failed sign-ins for this account."),
        "{body}"
    );
    // From another browser too: the limit belongs to the account.
    assert_eq!(
        app.client().login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Once the window has passed, the account opens again.
    {
        use diesel::prelude::*;
        use herald::storage::schema::login_attempts;
        let old = herald::storage::now() - chrono::Duration::minutes(16);
        diesel::update(login_attempts::table)
            .set(login_attempts::attempted_at.eq(old))
            .execute(&mut *app.db())
            .unwrap();
    }
    assert_eq!(
        c.login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
}

async fn failed_sign_ins_are_throttled_per_address(app: TestApp) {
    let _admin = app.admin().await;
    let c = app.client();
    // Spread over many e-mails so no account reaches its own limit.
    for i in 0..20 {
        let res = c
            .login(&format!("guess{i}@example.com"), "wrong password!")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let res = c.login(ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Too many failed sign-ins for your address.")
    );
}

async fn state_changing_forms_need_the_sessions_csrf_token(app: TestApp) {
    let admin = app.admin().await;
    let fields = [
        ("name", "Eve"),
        ("email", "eve@example.com"),
        ("role", "admin"),
        ("password", ""),
    ];
    let count_before = count_users(&app);

    // No token.
    let res = admin.post_form_raw("/settings/users", &fields).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("This form has expired or did not come from Herald.")
    );
    // A made-up token, and a token from another session.
    let mut forged = fields.to_vec();
    forged.push(("csrf_token", "forged"));
    assert_eq!(
        admin
            .post_form_raw("/settings/users", &forged)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let stranger_token = app.client().csrf_token().await;
    let mut stolen = fields.to_vec();
    stolen.push(("csrf_token", &stranger_token));
    assert_eq!(
        admin
            .post_form_raw("/settings/users", &stolen)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    // Sign-out is protected too.
    assert_eq!(
        admin.post_form_raw("/logout", &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin.get("/").await.status(),
        StatusCode::OK,
        "still signed in"
    );
    assert_eq!(count_users(&app), count_before, "nothing changed");

    // htmx sends the token as a header.
    let token = admin.csrf_token().await;
    let res = admin
        .http
        .post(admin.url("/settings/users"))
        .header("X-CSRF-Token", token)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(count_users(&app), count_before + 1);
}

async fn anonymous_visitors_are_rejected_everywhere(app: TestApp) {
    let _admin = app.admin().await;
    let visitor = app.client();
    for path in [
        "/",
        "/account/password",
        "/settings/users",
        "/settings/api-keys",
        "/settings/channels",
        "/settings/audit",
    ] {
        let res = visitor.get(path).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "GET {path}");
        assert!(
            location(&res).starts_with("/login"),
            "GET {path} -> {}",
            location(&res)
        );
    }
    for path in [
        "/account/password",
        "/settings/users",
        "/settings/users/1/role",
        "/settings/users/1/disable",
        "/settings/users/1/enable",
        "/settings/users/1/reset-password",
        "/settings/api-keys",
        "/settings/api-keys/x/revoke",
    ] {
        // Even with a valid (anonymous) CSRF token.
        let res = visitor.post_form(path, &[("role", "admin")]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "POST {path}");
        assert_eq!(location(&res), "/login", "POST {path}");
    }
    // htmx requests are told to navigate to sign in.
    let res = visitor
        .http
        .get(visitor.url("/settings/users"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["hx-redirect"],
        "/login?next=%2Fsettings%2Fusers"
    );
    for path in ["/api/v1/channels", "/api/v1/audit"] {
        let res = visitor.get(path).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let json: serde_json::Value = res.json().await.unwrap();
        assert_eq!(json["error"]["code"], "unauthorized");
    }
    assert_eq!(count_users(&app), 1);
}

async fn sign_in_returns_to_the_page_asked_for_but_never_off_site(app: TestApp) {
    let admin = app.admin().await;
    admin.post_form("/logout", &[]).await;
    let res = admin.get("/settings/api-keys").await;
    assert_eq!(location(&res), "/login?next=%2Fsettings%2Fapi-keys");
    let page = admin.get_html("/login?next=%2Fsettings%2Fapi-keys").await;
    assert!(page.contains("value=\"/settings/api-keys\""));
    let res = admin
        .post_form(
            "/login",
            &[
                ("email", ADMIN_EMAIL),
                ("password", PASSWORD),
                ("next", "/settings/api-keys"),
            ],
        )
        .await;
    assert_eq!(location(&res), "/settings/api-keys");

    admin.post_form("/logout", &[]).await;
    for evil in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
    ] {
        let res = admin
            .post_form(
                "/login",
                &[
                    ("email", ADMIN_EMAIL),
                    ("password", PASSWORD),
                    ("next", evil),
                ],
            )
            .await;
        assert_eq!(location(&res), "/", "{evil}");
        admin.post_form("/logout", &[]).await;
    }
}

async fn signing_in_renews_the_session(app: TestApp) {
    let _admin = app.admin().await;
    let c = app.client();
    let before = c.csrf_token().await;
    let res = c.login(ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        res.headers().get("set-cookie").is_some(),
        "a new cookie is issued"
    );
    let after = c.csrf_token().await;
    assert_ne!(before, after, "the pre-login token is replaced");
    // The old token no longer works.
    let res = c.post_form_raw("/logout", &[("csrf_token", &before)]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

async fn control_characters_in_next_lead_home_never_off_site_nor_to_an_error(app: TestApp) {
    let admin = app.admin().await;
    // `/%09/evil.test` arrives decoded as "/<TAB>/evil.test", which browsers read as
    // `//evil.test`; CR, LF, VT and NUL cannot even go into a Location header.
    let raw = [
        "/%09/evil.test",
        "/%0d/evil.test",
        "/%0a/evil.test",
        "/%0b/evil.test",
        "/%00/evil.test",
        "/contacts%0d%0aSet-Cookie:%20x=y",
        "/%2509/evil.test",
    ];
    // Signed in, the sign-in page sends the person on at once.
    for next in raw {
        let res = admin.get(&format!("/login?next={next}")).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "GET next={next}");
        assert_eq!(location(&res), "/", "GET next={next}");
    }
    admin.post_form("/logout", &[]).await;
    let page = admin.get_html("/login?next=/%09/evil.test").await;
    assert!(page.contains("name=\"next\" value=\"/\""), "{page}");
    for next in [
        "/\t/evil.test",
        "/\r/evil.test",
        "/\n/evil.test",
        "/\u{b}/evil.test",
        "/\0/evil.test",
        "/%09/evil.test",
        "/\t\t//evil.test",
    ] {
        let res = admin
            .post_form(
                "/login",
                &[
                    ("email", ADMIN_EMAIL),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "POST next={next:?}");
        assert_eq!(location(&res), "/", "POST next={next:?}");
        admin.post_form("/logout", &[]).await;
    }
}

/// Posts `n` wrong sign-ins at once from one browser (so one address), the e-mail of each
/// chosen by `email`; returns how many got each status.
async fn parallel_wrong_sign_ins(
    c: &Client,
    n: usize,
    email: impl Fn(usize) -> String,
) -> BTreeMap<u16, usize> {
    let token = c.csrf_token().await;
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, url, token, email) = (c.http.clone(), c.url("/login"), token.clone(), email(i));
        all.spawn(async move {
            http.post(url)
                .form(&[
                    ("email", email.as_str()),
                    ("password", "wrong password!"),
                    ("csrf_token", token.as_str()),
                ])
                .send()
                .await
                .expect("POST /login")
                .status()
                .as_u16()
        });
    }
    let mut counts = BTreeMap::new();
    while let Some(status) = all.join_next().await {
        *counts.entry(status.expect("task")).or_default() += 1;
    }
    counts
}

fn failures_recorded(app: &TestApp, key: &str) -> i64 {
    use diesel::prelude::*;
    use herald::storage::schema::login_attempts;
    login_attempts::table
        .filter(login_attempts::throttle_key.eq(key))
        .count()
        .get_result(&mut *app.db())
        .unwrap()
}

async fn parallel_wrong_passwords_for_one_account_are_counted_before_they_are_checked(
    app: TestApp,
) {
    let _admin = app.admin().await;
    let c = app.client();
    let counts = parallel_wrong_sign_ins(&c, 30, |_| ADMIN_EMAIL.to_owned()).await;
    // 401 means the password was checked; the limit is 5 per account.
    let checked = counts.get(&401).copied().unwrap_or(0);
    assert!((1..=5).contains(&checked), "{counts:?}");
    assert!(
        counts.keys().all(|s| [401, 429, 503].contains(s)),
        "{counts:?}"
    );
    assert!(failures_recorded(&app, &format!("account:{ADMIN_EMAIL}")) <= 5);
    assert_eq!(
        c.login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn parallel_wrong_passwords_from_one_address_are_counted_before_they_are_checked(
    app: TestApp,
) {
    let _admin = app.admin().await;
    let c = app.client();
    // A different e-mail each time, so only the address limit (20) applies.
    let counts = parallel_wrong_sign_ins(&c, 100, |i| format!("guess{i}@example.com")).await;
    let checked = counts.get(&401).copied().unwrap_or(0);
    assert!((1..=20).contains(&checked), "{counts:?}");
    assert!(
        counts.keys().all(|s| [401, 429, 503].contains(s)),
        "{counts:?}"
    );
    assert!(failures_recorded(&app, "address:127.0.0.1") <= 20);
}

async fn a_successful_sign_in_clears_the_accounts_count_and_uncounts_itself(app: TestApp) {
    let _admin = app.admin().await;
    let c = app.client();
    for _ in 0..4 {
        assert_eq!(
            c.login(ADMIN_EMAIL, "wrong password!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        c.login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        failures_recorded(&app, &format!("account:{ADMIN_EMAIL}")),
        0
    );
    // The 4 failures still count against the address, the success does not.
    assert_eq!(failures_recorded(&app, "address:127.0.0.1"), 4);
    for _ in 0..4 {
        assert_eq!(
            app.client()
                .login(ADMIN_EMAIL, "wrong password!")
                .await
                .status(),
            StatusCode::UNAUTHORIZED,
            "the account starts again from zero"
        );
    }
    // People behind one address sign in all day: successes never fill the address's count.
    for _ in 0..20 {
        assert_eq!(
            app.client().login(ADMIN_EMAIL, PASSWORD).await.status(),
            StatusCode::SEE_OTHER
        );
    }
    assert_eq!(failures_recorded(&app, "address:127.0.0.1"), 8);
}

async fn the_current_password_check_is_throttled_like_sign_in(app: TestApp) {
    let admin = app.admin().await;
    let change = |current: &'static str| {
        let admin = &admin;
        async move {
            admin
                .post_form(
                    "/account/password",
                    &[
                        ("current_password", current),
                        ("new_password", "a brand new password"),
                        ("new_password_confirm", "a brand new password"),
                    ],
                )
                .await
        }
    };
    for attempt in 1..=5 {
        let res = change("not my password").await;
        assert_eq!(
            res.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "attempt {attempt}"
        );
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("This is not your current password.")
        );
    }
    // Even the right password is refused for a while now, with how long to wait.
    let body = refused_for_a_while(change(PASSWORD).await).await;
    assert!(
        texts(&body, ".field-error")
            .iter()
            .any(|e| e.starts_with("Too many wrong passwords for this account.")),
        "{body}"
    );
    // It is the account's count: signing in is throttled too, and nothing was changed.
    assert_eq!(
        app.client().login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(admin.get("/").await.status(), StatusCode::OK);
}

/// A browser whose cookie can be copied (what an attacker with a stolen cookie replays).
pub(crate) fn browser_with_visible_cookie(app: &TestApp) -> (Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (
        Client {
            http,
            base: app.address.clone(),
        },
        jar,
    )
}

pub(crate) fn copy_cookie(jar: &reqwest::cookie::Jar, base: &str) -> String {
    jar.cookies(&base.parse().unwrap())
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

/// GET `path` on `base` with exactly this Cookie header, as a replayed copy would be sent.
pub(crate) async fn replay(base: &str, cookie: &str, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn signing_out_ends_the_session_for_every_copy_of_the_cookie(app: TestApp) {
    let _admin = app.admin().await;
    let (c, jar) = browser_with_visible_cookie(&app);
    assert_eq!(
        c.login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let copied = copy_cookie(&jar, &app.address);
    let second = app.second_instance().await;
    for base in [&app.address, &second.address] {
        let res = replay(base, &copied, "/contacts").await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "the copy works while signed in"
        );
    }

    let res = c.post_form("/logout", &[]).await;
    assert_eq!(location(&res), "/login");
    // The copy taken before signing out opens nothing, on any instance.
    for base in [&app.address, &second.address] {
        let res = replay(base, &copied, "/contacts").await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{base}");
        assert_eq!(location(&res), "/login?next=%2Fcontacts", "{base}");
    }
    use diesel::prelude::*;
    use herald::storage::schema::sessions;
    let left: i64 = sessions::table.count().get_result(&mut *app.db()).unwrap();
    assert_eq!(left, 1, "only the setup client's session is left");
}

async fn sessions_end_when_they_expire_and_are_pruned(app: TestApp) {
    use diesel::prelude::*;
    use herald::storage::schema::sessions;
    let admin = app.admin().await;
    let past = herald::storage::now() - chrono::Duration::minutes(1);
    diesel::update(sessions::table)
        .set(sessions::expires_at.eq(past))
        .execute(&mut *app.db())
        .unwrap();
    let res = admin.get("/contacts").await;
    assert_eq!(location(&res), "/login?next=%2Fcontacts");
    let page = admin.get_html("/login").await;
    assert!(
        page.contains("Your session expired. Sign in again."),
        "{page}"
    );
    // The next sign-in prunes the expired row.
    assert_eq!(
        admin.login(ADMIN_EMAIL, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let rows: Vec<chrono::NaiveDateTime> = sessions::table
        .select(sessions::expires_at)
        .load(&mut *app.db())
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0] > herald::storage::now());
    assert_eq!(admin.get("/contacts").await.status(), StatusCode::OK);
}
