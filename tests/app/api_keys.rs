//! API keys: created on the page or the command line, shown once, stored hashed, revocable,
//! and checked against the role table on every `/api/v1` route.

use reqwest::StatusCode;

use crate::auth::{browser_with_visible_cookie, copy_cookie, replay};
use crate::helpers::{ADMIN_EMAIL, PASSWORD, TestApp, api_get, create_api_key, texts};

crate::both_backends!(
    api_keys_authenticate_show_their_last_use_and_can_be_revoked,
    api_key_roles_are_enforced,
    the_command_line_creates_keys_and_users,
    sandbox_channels_exist_after_the_first_start,
    a_new_key_is_shown_once_whatever_cookie_comes_back,
);

async fn error_code(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let json: serde_json::Value = res.json().await.expect("JSON error body");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    (status, json["error"]["code"].as_str().unwrap().to_owned())
}

async fn api_keys_authenticate_show_their_last_use_and_can_be_revoked(app: TestApp) {
    let admin = app.admin().await;
    let page = admin.get_html("/settings/api-keys").await;
    assert!(page.contains("No API keys yet."));

    let key = create_api_key(&admin, "Order system", "marketer").await;
    assert!(key.starts_with("hrld_"));
    // Stored as a hash only.
    {
        use diesel::prelude::*;
        use herald::storage::schema::api_keys;
        let hashes: Vec<String> = api_keys::table
            .select(api_keys::key_hash)
            .load(&mut *app.db())
            .unwrap();
        assert_eq!(hashes.len(), 1);
        assert_ne!(hashes[0], key);
        assert!(!hashes[0].contains(&key[5..]));
    }
    let page = admin.get_html("/settings/api-keys").await;
    assert!(
        texts(&page, "#revealed-secret").is_empty(),
        "shown once only"
    );
    assert!(
        page.contains(&format!("{}…", &key[..13])),
        "the prefix identifies it"
    );
    let row = texts(&page, "tr[data-key=\"Order system\"]").pop().unwrap();
    assert!(row.contains("never"), "{row}");

    let res = api_get(&app, "/api/v1/channels", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = admin.get_html("/settings/api-keys").await;
    let row = texts(&page, "tr[data-key=\"Order system\"]").pop().unwrap();
    assert!(row.contains("just now"), "last use is shown: {row}");

    for bad in [None, Some("hrld_notarealkey"), Some("Basic abc"), Some("")] {
        let res = api_get(&app, "/api/v1/channels", bad).await;
        assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"herald\"");
        assert_eq!(
            error_code(res).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            "{bad:?}"
        );
    }

    let public_id = {
        use diesel::prelude::*;
        use herald::storage::schema::api_keys;
        api_keys::table
            .select(api_keys::public_id)
            .first::<String>(&mut *app.db())
            .unwrap()
    };
    let res = admin
        .post_form(&format!("/settings/api-keys/{public_id}/revoke"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/api-keys").await;
    assert!(page.contains("is revoked; calls with it now get 401."));
    assert!(
        texts(&page, "tr[data-key=\"Order system\"]")
            .pop()
            .unwrap()
            .contains("Revoked")
    );
    let res = api_get(&app, "/api/v1/channels", Some(&key)).await;
    assert_eq!(
        error_code(res).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    let res = admin
        .post_form(&format!("/settings/api-keys/{public_id}/revoke"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        admin
            .get_html("/settings/api-keys")
            .await
            .contains("was already revoked")
    );

    let audit = admin.get_html("/settings/audit").await;
    assert!(audit.contains("api_key.created") && audit.contains("api_key.revoked"));
}

async fn api_key_roles_are_enforced(app: TestApp) {
    let admin = app.admin().await;
    let marketer = create_api_key(&admin, "Marketing site", "marketer").await;
    let lead = create_api_key(&admin, "Helpdesk", "support_lead").await;
    let root = create_api_key(&admin, "Ops", "admin").await;

    // Every role may list channels; only admins may read the audit log.
    for key in [&marketer, &lead, &root] {
        assert_eq!(
            api_get(&app, "/api/v1/channels", Some(key)).await.status(),
            StatusCode::OK
        );
    }
    for key in [&marketer, &lead] {
        let res = api_get(&app, "/api/v1/audit", Some(key)).await;
        assert_eq!(
            error_code(res).await,
            (StatusCode::FORBIDDEN, "forbidden".into())
        );
    }
    let res = api_get(&app, "/api/v1/audit", Some(&root)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = res.json().await.unwrap();
    let actions: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "api_key.created").count(),
        3
    );

    // Unknown API paths answer in JSON too.
    let res = api_get(&app, "/api/v1/nothing-here", Some(&root)).await;
    assert_eq!(
        error_code(res).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    // An API key is not a session: pages stay closed to it.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/settings/users", app.address))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

async fn the_command_line_creates_keys_and_users(app: TestApp) {
    let out = app.cli(
        &[
            "api-key",
            "create",
            "--name",
            "Warehouse",
            "--role",
            "support_lead",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.trim_end_matches('\n');
    assert!(
        key.starts_with("hrld_") && !key.contains(char::is_whitespace),
        "the key alone on stdout: {stdout:?}"
    );
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(
        api_get(&app, "/api/v1/channels", Some(key)).await.status(),
        StatusCode::OK
    );
    let res = api_get(&app, "/api/v1/audit", Some(key)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let out = app.cli(
        &["api-key", "create", "--name", "X", "--role", "owner"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role \"owner\""));
    assert!(out.stdout.is_empty());

    // The shell can create the first admin instead of the setup page.
    let out = app.cli(
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--name",
            "Root",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = app.client();
    assert_eq!(
        c.get("/setup").await.status(),
        StatusCode::NOT_FOUND,
        "setup is gone"
    );
    assert_eq!(
        c.login("root@example.com", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(c.get("/settings/users").await.status(), StatusCode::OK);

    let out = app.cli(
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--name",
            "Root",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has an account"));
    let out = app.cli(
        &[
            "user",
            "create",
            "--email",
            "weak@example.com",
            "--name",
            "Weak",
            "--role",
            "marketer",
            "--password-stdin",
        ],
        Some("short"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));

    let audit = c.get_html("/settings/audit").await;
    assert!(audit.contains("command line"));
}

async fn sandbox_channels_exist_after_the_first_start(app: TestApp) {
    let admin = app.admin().await;
    let key = create_api_key(&admin, "Lister", "marketer").await;
    let res = api_get(&app, "/api/v1/channels", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = res.json().await.unwrap();
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let mut kinds: Vec<&str> = data.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["sms", "viber", "whatsapp"]);
    for c in data {
        assert_eq!(c["provider"], "sandbox");
        assert_eq!(c["sandbox"], true);
        assert_eq!(c["enabled"], true);
        assert!(c["id"].as_str().unwrap().len() >= 32);
        assert!(c["webhook_url"].is_null());
    }
    let page = admin.get_html("/settings/channels").await;
    assert!(
        page.contains("Sandbox WhatsApp")
            && page.contains("Sandbox SMS")
            && page.contains("Sandbox Viber")
    );
}

async fn a_new_key_is_shown_once_whatever_cookie_comes_back(app: TestApp) {
    let _admin = app.admin().await;
    let (c, jar) = browser_with_visible_cookie(&app);
    c.login(ADMIN_EMAIL, PASSWORD).await;
    let res = c
        .post_form(
            "/settings/api-keys",
            &[("name", "Shop"), ("role", "marketer")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    // The cookie as it stood between creating the key and seeing it.
    let older = copy_cookie(&jar, &app.address);
    let shown = texts(&c.get_html("/settings/api-keys").await, "#revealed-secret");
    assert_eq!(shown.len(), 1);
    assert!(shown[0].starts_with("hrld_"), "{shown:?}");

    let res = replay(&app.address, &older, "/settings/api-keys").await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(texts(&page, "#revealed-secret").is_empty(), "shown again");
    assert!(!page.contains(&shown[0]));
    // Nothing of it is left to show to anyone.
    use diesel::prelude::*;
    use herald::storage::schema::session_reveals;
    let kept: i64 = session_reveals::table
        .count()
        .get_result(&mut *app.db())
        .unwrap();
    assert_eq!(kept, 0);
}
