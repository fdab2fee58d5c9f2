//! Roles and the Users page.

use reqwest::StatusCode;

use crate::helpers::{ADMIN_EMAIL, PASSWORD, TestApp, location, texts};

crate::both_backends!(
    each_role_sees_what_it_may,
    admins_invite_people_who_then_choose_their_own_password,
    admins_change_roles_and_disable_and_enable_accounts,
    a_password_reset_ends_sessions_and_requires_a_new_password,
    bad_invitations_are_refused_at_the_field,
    admins_cannot_lock_everyone_out,
    the_command_line_creates_one_user_after_another,
    a_disabled_account_answers_its_right_password_as_a_wrong_one,
    temporary_passwords_are_shown_once_whatever_cookie_comes_back,
);

fn user_id(app: &TestApp, email: &str) -> i64 {
    use diesel::prelude::*;
    use herald::storage::schema::users;
    users::table
        .filter(users::email.eq(email))
        .select(users::id)
        .first(&mut *app.db())
        .unwrap()
}

async fn each_role_sees_what_it_may(app: TestApp) {
    let admin = app.admin().await;
    let marketer = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let lead = app
        .user_with_role(&admin, "sam@example.com", "support_lead")
        .await;

    let admin_only = [
        "/settings/users",
        "/settings/api-keys",
        "/settings/channels",
        "/settings/audit",
    ];
    for path in admin_only {
        assert_eq!(
            admin.get(path).await.status(),
            StatusCode::OK,
            "admin {path}"
        );
        for (who, c) in [("marketer", &marketer), ("support lead", &lead)] {
            let res = c.get(path).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{who} {path}");
            let body = res.text().await.unwrap();
            assert!(body.contains("Your role does not allow you to"), "{body}");
            assert!(
                body.contains("id=\"sidebar\""),
                "the 403 page keeps the layout"
            );
        }
    }
    // Forms too, not just pages.
    let res = marketer
        .post_form(
            "/settings/users",
            &[("name", "X"), ("email", "x@example.com"), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    for (c, role_label) in [
        (&admin, "Admin"),
        (&marketer, "Marketer"),
        (&lead, "Support lead"),
    ] {
        let home = c.get_html("/").await;
        assert!(home.contains(role_label), "{role_label}");
        let settings_links = texts(&home, ".sidebar .nav-list a");
        let has_settings = settings_links.iter().any(|t| t == "Users");
        assert_eq!(
            has_settings,
            role_label == "Admin",
            "{role_label}: {settings_links:?}"
        );
        let main = texts(&home, ".sidebar .nav-list li");
        let broadcasts = main.iter().any(|t| t.starts_with("Broadcasts"));
        let history = main.iter().any(|t| t.starts_with("History"));
        assert!(broadcasts, "everyone sees broadcasts");
        assert_eq!(
            history,
            role_label == "Admin",
            "only admins see the send history"
        );
    }
}

async fn admins_invite_people_who_then_choose_their_own_password(app: TestApp) {
    let admin = app.admin().await;
    let res = admin
        .post_form(
            "/settings/users",
            &[
                ("name", "Mia Marketer"),
                ("email", "Mia@Example.com"),
                ("role", "marketer"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/users").await;
    assert!(page.contains("Mia Marketer can now sign in as Marketer."));
    let secret = texts(&page, "#revealed-secret")
        .pop()
        .expect("generated password shown");
    let (email, temporary) = secret.split_once(" / ").unwrap();
    assert_eq!(email, "mia@example.com");
    assert_eq!(temporary.len(), 23);
    // Shown once only.
    assert!(texts(&admin.get_html("/settings/users").await, "#revealed-secret").is_empty());
    assert!(page.contains("Awaiting first sign-in"));

    let mia = app.client();
    assert_eq!(
        mia.login("mia@example.com", temporary).await.status(),
        StatusCode::SEE_OTHER
    );
    // Every page leads to the password change until it is done.
    for path in ["/", "/settings/users"] {
        let res = mia.get(path).await;
        assert_eq!(location(&res), "/account/password", "{path}");
    }
    let page = mia.get_html("/account/password").await;
    assert!(page.contains("An admin set a temporary password for you."));
    let res = mia
        .post_form(
            "/account/password",
            &[
                ("current_password", temporary),
                ("new_password", temporary),
                ("new_password_confirm", temporary),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Choose a password different from the current one.")
    );
    let res = mia
        .post_form(
            "/account/password",
            &[
                ("current_password", temporary),
                ("new_password", PASSWORD),
                ("new_password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        mia.get("/").await.status(),
        StatusCode::OK,
        "still signed in after the change"
    );
    let page = admin.get_html("/settings/users").await;
    assert!(!page.contains("Awaiting first sign-in"));

    let audit = admin.get_html("/settings/audit").await;
    assert!(audit.contains("user.created"));
    assert!(audit.contains("user.password_changed"));
}

async fn admins_change_roles_and_disable_and_enable_accounts(app: TestApp) {
    let admin = app.admin().await;
    let sam = app
        .user_with_role(&admin, "sam@example.com", "marketer")
        .await;
    let id = user_id(&app, "sam@example.com");
    assert_eq!(
        sam.get("/settings/users").await.status(),
        StatusCode::FORBIDDEN
    );

    let res = admin
        .post_form(&format!("/settings/users/{id}/role"), &[("role", "admin")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        admin
            .get_html("/settings/users")
            .await
            .contains("Test Person is now Admin.")
    );
    assert_eq!(
        sam.get("/settings/users").await.status(),
        StatusCode::OK,
        "the role applies at once"
    );
    let res = admin
        .post_form(&format!("/settings/users/{id}/role"), &[("role", "owner")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let res = admin
        .post_form(&format!("/settings/users/{id}/disable"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Their session ends on the next request.
    let res = sam.get("/").await;
    assert_eq!(location(&res), "/login");
    let login_page = sam.get_html("/login").await;
    assert!(
        login_page.contains("Your account has been disabled."),
        "{login_page}"
    );
    // Its right password gets the same answer as a wrong one (see
    // a_disabled_account_answers_its_right_password_as_a_wrong_one).
    let res = sam.login("sam@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = admin
        .post_form(&format!("/settings/users/{id}/enable"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sam.login("sam@example.com", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(sam.get("/").await.status(), StatusCode::OK);

    let audit = admin.get_html("/settings/audit").await;
    for action in ["user.role_changed", "user.disabled", "user.enabled"] {
        assert!(audit.contains(action), "{action}");
    }
}

async fn a_password_reset_ends_sessions_and_requires_a_new_password(app: TestApp) {
    let admin = app.admin().await;
    let sam = app
        .user_with_role(&admin, "sam@example.com", "support_lead")
        .await;
    let id = user_id(&app, "sam@example.com");
    let res = admin
        .post_form(&format!("/settings/users/{id}/reset-password"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/users").await;
    let secret = texts(&page, "#revealed-secret")
        .pop()
        .expect("temporary password shown");
    let temporary = secret.split_once(" / ").unwrap().1.to_owned();

    assert_eq!(
        location(&sam.get("/").await),
        "/login",
        "signed out everywhere"
    );
    assert_eq!(
        sam.login("sam@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sam.login("sam@example.com", &temporary).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(location(&sam.get("/").await), "/account/password");
}

async fn bad_invitations_are_refused_at_the_field(app: TestApp) {
    let admin = app.admin().await;
    let res = admin
        .post_form(
            "/settings/users",
            &[
                ("name", " "),
                ("email", "mia@"),
                ("role", "boss"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    let errors = texts(&body, ".field-error");
    assert!(errors.contains(&"Enter a name.".to_owned()), "{errors:?}");
    assert!(
        errors.contains(&"\"mia@\" is not a valid e-mail address.".to_owned()),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("unknown role \"boss\"")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("at least 10 characters")),
        "{errors:?}"
    );
    assert!(body.contains("value=\"mia@\""), "what was typed is kept");

    let res = admin
        .post_form(
            "/settings/users",
            &[
                ("name", "Again"),
                ("email", ADMIN_EMAIL),
                ("role", "marketer"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("ada@example.com already has an account.")
    );
}

async fn admins_cannot_lock_everyone_out(app: TestApp) {
    let admin = app.admin().await;
    let me = user_id(&app, ADMIN_EMAIL);
    for (path, fields) in [
        (
            format!("/settings/users/{me}/role"),
            vec![("role", "marketer")],
        ),
        (format!("/settings/users/{me}/disable"), vec![]),
        (format!("/settings/users/{me}/reset-password"), vec![]),
    ] {
        let res = admin.post_form(&path, &fields).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("You cannot change your own role or access")
        );
    }
    let res = admin.post_form("/settings/users/99999/disable", &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // With a second admin, the first can be demoted, but not the last one standing.
    let other = app.user_with_role(&admin, "bo@example.com", "admin").await;
    let bo = user_id(&app, "bo@example.com");
    let res = other
        .post_form(
            &format!("/settings/users/{me}/role"),
            &[("role", "marketer")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin
        .post_form(&format!("/settings/users/{bo}/disable"), &[])
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "ada is no longer an admin"
    );
    assert_eq!(other.get("/settings/users").await.status(), StatusCode::OK);
}

async fn the_command_line_creates_one_user_after_another(app: TestApp) {
    // The first account also marks setup as done; every later one finds that mark already
    // there, which on PostgreSQL once aborted the transaction ("current transaction is aborted").
    for (email, role) in [
        ("first@example.com", "admin"),
        ("second@example.com", "marketer"),
        ("third@example.com", "support_lead"),
    ] {
        let out = app.cli(
            &[
                "user",
                "create",
                "--email",
                email,
                "--name",
                "Shell Person",
                "--role",
                role,
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        );
        assert!(
            out.status.success(),
            "{email}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = app.client();
        assert_eq!(
            c.login(email, PASSWORD).await.status(),
            StatusCode::SEE_OTHER,
            "{email} signs in"
        );
    }
    use diesel::prelude::*;
    use herald::storage::schema::audit_log;
    let created: i64 = audit_log::table
        .filter(audit_log::action.eq("user.created"))
        .count()
        .get_result(&mut *app.db())
        .unwrap();
    assert_eq!(created, 3, "each with its audit entry");
}

async fn a_disabled_account_answers_its_right_password_as_a_wrong_one(app: TestApp) {
    let admin = app.admin().await;
    let _sam = app
        .user_with_role(&admin, "sam@example.com", "marketer")
        .await;
    let id = user_id(&app, "sam@example.com");
    let res = admin
        .post_form(&format!("/settings/users/{id}/disable"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let answer = |res: reqwest::Response| async move {
        let status = res.status();
        let body = res.text().await.unwrap();
        (status, texts(&body, ".flash-error"))
    };
    let c = app.client();
    let right = answer(c.login("sam@example.com", PASSWORD).await).await;
    let wrong = answer(c.login("sam@example.com", "wrong password!").await).await;
    let unknown = answer(c.login("nobody@example.com", PASSWORD).await).await;
    assert_eq!(right.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        right.1,
        ["The e-mail address or password is not right."],
        "{right:?}"
    );
    assert_eq!(right, wrong);
    assert_eq!(right, unknown);
    assert_eq!(location(&c.get("/").await), "/login", "not signed in");
}

async fn temporary_passwords_are_shown_once_whatever_cookie_comes_back(app: TestApp) {
    use crate::auth::{browser_with_visible_cookie, copy_cookie, replay};
    let _admin = app.admin().await;
    let (c, jar) = browser_with_visible_cookie(&app);
    c.login(ADMIN_EMAIL, PASSWORD).await;
    let invite = [
        ("name", "Mia Marketer"),
        ("email", "mia@example.com"),
        ("role", "marketer"),
        ("password", ""),
    ];
    assert_eq!(
        c.post_form("/settings/users", &invite).await.status(),
        StatusCode::SEE_OTHER
    );
    let id = user_id(&app, "mia@example.com");
    let reset = format!("/settings/users/{id}/reset-password");
    for (what, create) in [("invitation", None), ("reset", Some(reset.as_str()))] {
        if let Some(path) = create {
            assert_eq!(c.post_form(path, &[]).await.status(), StatusCode::SEE_OTHER);
        }
        let older = copy_cookie(&jar, &app.address);
        let shown = texts(&c.get_html("/settings/users").await, "#revealed-secret");
        assert_eq!(shown.len(), 1, "{what}");
        assert!(
            shown[0].starts_with("mia@example.com / "),
            "{what}: {shown:?}"
        );
        let res = replay(&app.address, &older, "/settings/users").await;
        assert_eq!(res.status(), StatusCode::OK, "{what}");
        let page = res.text().await.unwrap();
        assert!(
            texts(&page, "#revealed-secret").is_empty(),
            "{what} shown again"
        );
        assert!(!page.contains(&shown[0]), "{what}");
    }
}
