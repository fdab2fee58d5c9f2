//! Settings › Channels and `/api/v1/channels` on both backends: adding channels of each kind,
//! field-level validation, secrets sealed and never shown again, edits that keep or replace
//! them, test connection, disable/enable, delete only when unused, audit entries.

use herald::testkit::fake_provider::{FakeConfig, FakeProvider, Scripted};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::admin_and_key;
use crate::helpers::{TestApp, api_get, location, texts};
use crate::provider_kit::*;

crate::both_backends!(
    admins_add_a_channel_from_the_providers_settings_form,
    secrets_are_sealed_and_never_shown_again,
    test_connection_shows_the_providers_answer_and_saves_nothing,
    channels_are_disabled_enabled_and_deleted_only_when_unused,
    the_api_creates_reads_changes_and_deletes_channels,
    only_admins_manage_channels,
    the_api_authenticates_and_authorises_before_it_reads_the_input,
    a_new_address_never_receives_the_saved_secret,
    the_messaging_limit_is_read_from_meta_and_audited,
);

async fn the_messaging_limit_is_read_from_meta_and_audited(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;
    let fake = FakeProvider::start(FakeConfig::default()).await.unwrap();
    let created = create_channel(
        &app,
        &key,
        whatsapp_channel("Shop WhatsApp", &fake.base_url),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (registry, _events) = registry(&app, "https://herald.example");
    // Set by hand first; Meta's answer (the fake's number is on the 2,000 tier) replaces it.
    let (status, ch) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{id}"),
        &key,
        Some(&json!({"settings": {"messaging_limit": "250"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ch}");
    let db = herald::storage::Db::connect(&app.database_url, 2).expect("db");
    let changed = herald::service::channels::refresh_messaging_limits(&db, &registry)
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let settings: Value = serde_json::from_str(&channel(&app, &id).settings).unwrap();
    assert_eq!(settings["messaging_limit"], "2000", "{settings}");
    let call = fake.last_request().unwrap();
    assert_eq!(call.method, "GET");
    assert!(
        call.query
            .contains("whatsapp_business_manager_messaging_limit"),
        "{call:?}"
    );
    // Unchanged next time: nothing written, nothing audited twice.
    let again = herald::service::channels::refresh_messaging_limits(&db, &registry)
        .await
        .unwrap();
    assert_eq!(again, 0);
    let (_, audit) = api(&app, Method::GET, "/api/v1/audit?limit=200", &key, None).await;
    let entries: Vec<&Value> = audit["data"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "channel.messaging_limit_read")
        .collect();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["details"]["before"], "250", "{audit}");
}

async fn admins_add_a_channel_from_the_providers_settings_form(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;

    // Pick the kind and the provider: each kind through its real provider or the sandbox.
    let page = admin.get_html("/settings/channels/new").await;
    for link in [
        "kind=whatsapp&amp;provider=whatsapp_cloud",
        "kind=sms&amp;provider=twilio",
        "kind=viber&amp;provider=infobip",
        "kind=sms&amp;provider=sandbox",
    ] {
        assert!(page.contains(link), "{link}");
    }
    let res = admin
        .get("/settings/channels/new?kind=sms&provider=infobip")
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The form comes from Twilio's settings: labels, defaults, help, secrets as passwords.
    let form = admin
        .get_html("/settings/channels/new?kind=sms&provider=twilio")
        .await;
    let labels = texts(&form, "fieldset.settings-fields label");
    assert_eq!(labels.len(), 5, "{labels:?}");
    assert!(labels[0].starts_with("Base URL"));
    assert!(labels[2].starts_with("Auth token") && labels[2].contains("never shown again"));
    assert!(form.contains("value=\"https://api.twilio.com\""));
    assert!(form.contains("Twilio Console › Account info"));
    assert!(form.contains("name=\"settings.auth_token\" type=\"password\""));
    assert!(
        form.contains("placeholder=\"10\""),
        "Twilio's documented rate"
    );

    // Every bad field is named at the field; what was typed stays, secrets do not come back.
    let res = admin
        .post_form(
            "/settings/channels",
            &[
                ("kind", "sms"),
                ("provider", "twilio"),
                ("name", ""),
                ("rate_limit_per_second", "0"),
                ("settings.base_url", "ftp://twilio"),
                ("settings.account_sid", "AB123"),
                ("settings.auth_token", "typed-secret-1"),
                ("settings.from", ""),
                ("settings.messaging_service_sid", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    let errors = texts(&body, ".field-error");
    for expected in [
        "Give the channel a name",
        "from 1 to 10000, not \"0\"",
        "Base URL must be an http:// or https:// address",
        "Account SID is AC followed by 32 hexadecimal characters",
        "Give a sender (From) or a messaging service SID",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }
    assert!(body.contains("value=\"AB123\""));
    assert!(
        !body.contains("typed-secret-1"),
        "a typed secret is not sent back"
    );
    assert!(body.contains("type them again"));

    // A good form: saved, and the channel's page shows where to paste the webhook URL.
    let res = admin
        .post_form(
            "/settings/channels",
            &[
                ("kind", "sms"),
                ("provider", "twilio"),
                ("name", "Shop SMS"),
                ("sender", ""),
                ("rate_limit_per_second", ""),
                ("settings.base_url", "https://api.twilio.com"),
                ("settings.account_sid", TWILIO_SID),
                ("settings.auth_token", TWILIO_TOKEN),
                ("settings.from", "+15005550006"),
                ("settings.messaging_service_sid", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let url = location(&res);
    assert!(url.starts_with("/settings/channels/"), "{url}");
    let id = url.trim_start_matches("/settings/channels/").to_owned();
    let page = admin.get_html(&url).await;
    assert!(page.contains("Shop SMS was added."));
    let webhook = texts(&page, "#webhook-url")[0].clone();
    assert_eq!(webhook, format!("{}/webhooks/twilio/{id}", app.address));
    assert!(page.contains("data-copy=\"#webhook-url\""));
    assert!(page.contains("A message comes in"));
    assert!(
        page.contains("Providers only call public"),
        "http:// is flagged"
    );

    let listed: Value = api_get(&app, "/api/v1/channels", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    let c = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(c["kind"], "sms");
    assert_eq!(c["provider"], "twilio");
    assert_eq!(c["sender"], "+15005550006", "taken from the settings");
    assert_eq!(c["rate_limit_per_second"], 10);
    assert_eq!(c["webhook_url"], webhook);

    // A sandbox of another kind, and a name in use (whatever its case) is refused at the field.
    let res = admin
        .post_form(
            "/settings/channels",
            &[
                ("kind", "viber"),
                ("provider", "sandbox"),
                ("name", "shop sms"),
                ("settings.delivered_after_ms", "100"),
                ("settings.read_after_ms", "200"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(
        texts(&body, ".field-error")
            .iter()
            .any(|e| e.contains("A channel named \"Shop SMS\" already exists")),
        "{body}"
    );
    let res = admin
        .post_form(
            "/settings/channels",
            &[
                ("kind", "viber"),
                ("provider", "sandbox"),
                ("name", "Viber trial"),
                ("settings.delivered_after_ms", "100"),
                ("settings.read_after_ms", "200"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html(&location(&res)).await;
    assert!(page.contains("It needs no account"));
    assert!(page.contains("None needed: the sandbox"));

    // The list links every channel to its page.
    let list = admin.get_html("/settings/channels").await;
    assert!(list.contains(&format!("href=\"/settings/channels/{id}\"")));
    assert!(list.contains("Viber trial") && list.contains("Add a channel"));

    let created = audit(&app, &key, "channel.created").await;
    assert_eq!(created.len(), 2);
    let details = &created[1]["details"];
    assert_eq!(details["name"], "Shop SMS");
    assert_eq!(details["secrets_set"], json!(["auth_token"]));
    assert_eq!(details["settings"]["account_sid"], TWILIO_SID);
}

async fn secrets_are_sealed_and_never_shown_again(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        whatsapp_channel("Support WhatsApp", "https://graph.facebook.com"),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (registry, _rx) = registry(&app, &app.address);

    // Sealed at rest: the row holds no secret in clear, and opens with Herald's key.
    let stored = channel(&app, &id);
    let sealed = stored.secrets.clone().expect("sealed secrets");
    for secret in [META_ACCESS_TOKEN, META_APP_SECRET, META_VERIFY_TOKEN] {
        assert!(!sealed.contains(secret) && !stored.settings.contains(secret));
    }
    let opened = registry.open_secrets(&stored).unwrap();
    assert_eq!(opened["app_secret"], META_APP_SECRET);

    // Never shown: not on the page, not in the API, not in the audit log.
    let page = admin.get_html(&format!("/settings/channels/{id}")).await;
    let (_, one) = get_json(&app, &key, &format!("/api/v1/channels/{id}")).await;
    let list = api_get(&app, "/api/v1/channels", Some(&key))
        .await
        .text()
        .await
        .unwrap();
    let audit_page = admin.get_html("/settings/audit").await;
    let (_, audit_json) = get_json(&app, &key, "/api/v1/audit").await;
    for text in [
        &page,
        &one.to_string(),
        &list,
        &created.to_string(),
        &audit_page,
        &audit_json.to_string(),
    ] {
        for secret in [META_ACCESS_TOKEN, META_APP_SECRET, META_VERIFY_TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    assert_eq!(
        one["secrets_set"],
        json!(["access_token", "app_secret", "verify_token"])
    );
    assert_eq!(one["settings"]["phone_number_id"], "106540352242922");
    assert_eq!(
        page.matches("placeholder=\"saved — leave empty to keep\"")
            .count(),
        3,
        "each saved secret says so"
    );
    assert!(page.contains("Verify token"), "the verify token reminder");

    // Editing with the secrets left empty keeps them; a new value replaces just that one.
    let edit = |access_token: &'static str, name: &'static str| {
        let admin = &admin;
        let id = id.clone();
        async move {
            admin
                .post_form(
                    &format!("/settings/channels/{id}"),
                    &[
                        ("name", name),
                        ("sender", ""),
                        ("rate_limit_per_second", "40"),
                        ("settings.base_url", "https://graph.facebook.com"),
                        ("settings.api_version", "v23.0"),
                        ("settings.phone_number_id", "106540352242922"),
                        ("settings.waba_id", "102290129340398"),
                        ("settings.access_token", access_token),
                        ("settings.app_secret", ""),
                        ("settings.verify_token", ""),
                    ],
                )
                .await
        }
    };
    let res = edit("", "Support WhatsApp").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        admin
            .get_html(&location(&res))
            .await
            .contains("Support WhatsApp was saved.")
    );
    let kept = channel(&app, &id);
    assert_eq!(kept.rate_limit_per_second, 40);
    assert_eq!(
        kept.secrets,
        Some(sealed.clone()),
        "untouched secrets are not re-sealed"
    );

    let res = edit("EAAG-new-access-token-0002", "Support WhatsApp").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let replaced = registry.open_secrets(&channel(&app, &id)).unwrap();
    assert_eq!(replaced["access_token"], "EAAG-new-access-token-0002");
    assert_eq!(replaced["app_secret"], META_APP_SECRET);
    assert_eq!(replaced["verify_token"], META_VERIFY_TOKEN);

    // The same form again changes nothing and says so.
    let res = edit("", "Support WhatsApp").await;
    assert!(
        admin
            .get_html(&location(&res))
            .await
            .contains("Nothing changed.")
    );

    // A bad edit is refused at the field and changes nothing.
    let res = admin
        .post_form(
            &format!("/settings/channels/{id}"),
            &[
                ("name", "Support WhatsApp"),
                ("settings.api_version", "23"),
                ("settings.phone_number_id", "+1 555 0100"),
                ("settings.waba_id", "102290129340398"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let errors = texts(&res.text().await.unwrap(), ".field-error");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("API version looks like v23.0")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("not the phone number")),
        "{errors:?}"
    );
    assert_eq!(
        registry.open_secrets(&channel(&app, &id)).unwrap()["access_token"],
        "EAAG-new-access-token-0002"
    );

    let updates = audit(&app, &key, "channel.updated").await;
    assert_eq!(updates.len(), 2, "the no-op edit is not recorded");
    assert_eq!(
        updates[0]["details"]["secrets_replaced"],
        json!(["access_token"])
    );
    assert_eq!(
        updates[1]["details"]["changed"],
        json!(["rate_limit_per_second"])
    );
    assert!(
        !updates[0]
            .to_string()
            .contains("EAAG-new-access-token-0002")
    );
}

async fn test_connection_shows_the_providers_answer_and_saves_nothing(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let fake = FakeProvider::start(FakeConfig::default()).await.unwrap();
    let created = create_channel(&app, &key, twilio_channel("Shop SMS", &fake.base_url)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let before = channel(&app, &id);

    // The provider's answer, as it gave it.
    let answer = press_test(&admin, &id).await;
    assert!(answer.contains("test-ok"), "{answer}");
    assert!(answer.contains("Connected to Twilio account Herald fake account (active)"));
    let call = fake.last_request().unwrap();
    assert_eq!(call.method, "GET");
    assert_eq!(call.path, format!("/2010-04-01/Accounts/{TWILIO_SID}.json"));
    assert!(call.header("Authorization").unwrap().starts_with("Basic "));

    // A refusal, classified, with the provider's code and words.
    fake.script(Scripted::json(
        401,
        json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
    ));
    let answer = press_test(&admin, &id).await;
    assert!(answer.contains("test-failed"), "{answer}");
    // In words, with what to check; the provider's code, words and link beneath.
    assert!(
        answer.contains("Twilio refused the credentials"),
        "{answer}"
    );
    assert!(answer.contains("The Account SID (AC followed by 32 characters) and the Auth token"));
    assert!(
        answer.contains("<code class=\"test-code\">20003</code>"),
        "{answer}"
    );
    assert!(answer.contains("<span class=\"test-said\">Authenticate</span>"));
    assert!(answer.contains("href=\"https://www.twilio.com/docs/errors/20003\""));
    assert!(!answer.contains("permanent"), "{answer}");

    // Nothing was saved; the audit log says who tested, without secrets.
    let after = channel(&app, &id);
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(after.secrets, before.secrets);
    let tested = audit(&app, &key, "channel.tested").await;
    assert_eq!(tested.len(), 2);
    assert_eq!(tested[0]["details"]["ok"], false);
    assert_eq!(tested[0]["details"]["error_code"], "20003");
    assert_eq!(tested[1]["details"]["ok"], true);

    // The sandbox is always there.
    let sandbox = api_get(&app, "/api/v1/channels", Some(&key))
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Sandbox SMS")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = admin.csrf_token().await;
    let answer = admin
        .http
        .post(admin.url(&format!("/settings/channels/{sandbox}/test")))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        answer.contains("The sandbox is always connected"),
        "{answer}"
    );
}

async fn channels_are_disabled_enabled_and_deleted_only_when_unused(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let created = create_channel(
        &app,
        &key,
        twilio_channel("Shop SMS", "https://api.twilio.com"),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let page = admin.get_html(&format!("/settings/channels/{id}")).await;
    assert!(page.contains("data-confirm=\"Disable Shop SMS?"));
    assert!(page.contains("id=\"delete-channel\""));

    let res = admin
        .post_form(&format!("/settings/channels/{id}/disable"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html(&location(&res)).await;
    assert!(page.contains("Shop SMS is disabled: nothing is sent through it."));
    assert!(page.contains("id=\"enable-channel\""));
    let (_, one) = get_json(&app, &key, &format!("/api/v1/channels/{id}")).await;
    assert_eq!(one["enabled"], false);
    let list = admin.get_html("/settings/channels").await;
    assert!(texts(&list, &format!("tr[data-channel=\"{id}\"]"))[0].contains("Disabled"));

    let res = admin
        .post_form(&format!("/settings/channels/{id}/enable"), &[])
        .await;
    assert!(
        admin
            .get_html(&location(&res))
            .await
            .contains("Shop SMS is enabled again.")
    );
    assert_eq!(audit(&app, &key, "channel.disabled").await.len(), 1);
    assert_eq!(audit(&app, &key, "channel.enabled").await.len(), 1);

    // A channel messages went through stays: the page explains and offers disabling.
    let contact = new_contact(&app, &key, "+12015550123").await;
    let ch = channel(&app, &id);
    insert_message(
        &app,
        ch.id,
        contact_id(&app, &contact),
        "+12015550123",
        "sent",
        Some("SM1"),
    );
    let page = admin.get_html(&format!("/settings/channels/{id}")).await;
    assert!(!page.contains("id=\"delete-channel\""));
    assert!(texts(&page, "#cannot-delete")[0].contains("1 message was sent through it"));
    let res = admin
        .post_form(&format!("/settings/channels/{id}/delete"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html(&location(&res)).await;
    assert!(page.contains("Shop SMS cannot be deleted: 1 message was sent through it"));
    assert!(page.contains("Disable it instead"));
    let (status, err) = delete_json(&app, &key, &format!("/api/v1/channels/{id}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "channel_in_use");

    // An unused channel goes, with its windows and receipts.
    let spare = create_channel(
        &app,
        &key,
        twilio_channel("Spare SMS", "https://api.twilio.com"),
    )
    .await;
    let spare = spare["id"].as_str().unwrap();
    let res = admin
        .post_form(&format!("/settings/channels/{spare}/delete"), &[])
        .await;
    assert_eq!(location(&res), "/settings/channels");
    assert!(
        admin
            .get_html("/settings/channels")
            .await
            .contains("Spare SMS was deleted.")
    );
    assert_eq!(
        admin
            .get(&format!("/settings/channels/{spare}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let deleted = audit(&app, &key, "channel.deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["details"]["name"], "Spare SMS");
}

async fn the_api_creates_reads_changes_and_deletes_channels(app: TestApp) {
    let (_admin, key) = admin_and_key(&app).await;

    // 201 with the id and the webhook URL; secrets go in and never come out.
    let (status, created) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&infobip_channel(
            "Viber promos",
            "https://xyz.api.infobip.com",
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["webhook_url"],
        format!("{}/webhooks/infobip/{id}", app.address)
    );
    assert_eq!(created["kind"], "viber");
    assert_eq!(created["provider"], "infobip");
    assert_eq!(created["rate_limit_per_second"], 20);
    assert_eq!(created["sender"], "HeraldShop");
    assert_eq!(created["secrets_set"], json!(["api_key", "webhook_secret"]));
    assert!(!created.to_string().contains(INFOBIP_SECRET));

    // Field errors name the keys; several at once.
    let (status, err) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(
            &json!({"kind": "whatsapp", "name": "WA", "rate_limit_per_second": 80,
            "settings": {"phone_number_id": "abc", "acess_token": "x"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "invalid_channel");
    let fields = &err["error"]["fields"];
    assert!(
        fields["settings.phone_number_id"]
            .as_str()
            .unwrap()
            .contains("numeric ID")
    );
    assert!(
        fields["settings.acess_token"]
            .as_str()
            .unwrap()
            .contains("no setting \"acess_token\"")
    );
    for required in ["waba_id", "access_token", "app_secret", "verify_token"] {
        assert!(
            fields[format!("settings.{required}")]
                .as_str()
                .unwrap()
                .contains("required"),
            "{required}: {err}"
        );
    }
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("settings.waba_id: ")
    );
    let (status, err) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&json!({"kind": "fax", "name": "F"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err["error"]["fields"]["kind"]
            .as_str()
            .unwrap()
            .contains("not \"fax\"")
    );
    let (status, err) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&json!({"kind": "sms", "name": "S", "rate_limit_per_second": 1.5})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err["error"]["fields"]["rate_limit_per_second"]
            .as_str()
            .unwrap()
            .contains("whole number")
    );

    // A duplicate name is a conflict that says which.
    let (status, err) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&infobip_channel(
            "VIBER PROMOS",
            "https://xyz.api.infobip.com",
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "name_taken");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"Viber promos\" already exists")
    );

    // Sandboxes: whatsapp by default, or the kind they simulate.
    let sandbox = create_channel(&app, &key, json!({"kind": "sandbox", "name": "Demo"})).await;
    assert_eq!(sandbox["kind"], "whatsapp");
    assert_eq!(sandbox["provider"], "sandbox");
    assert!(sandbox["webhook_url"].is_null());
    let sms = create_channel(
        &app,
        &key,
        json!({"kind": "sandbox", "simulates": "sms", "name": "Demo SMS",
        "settings": {"delivered_after_ms": 10, "read_after_ms": 20}}),
    )
    .await;
    assert_eq!(sms["kind"], "sms");
    let (status, err) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&json!({"kind": "sandbox", "simulates": "fax", "name": "X"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(err["error"]["fields"]["simulates"].is_string());
    let (status, _) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &key,
        Some(&json!({"kind": "sms", "simulates": "sms", "name": "X"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // PATCH changes what it names and keeps the rest (secrets included).
    let (status, patched) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{id}"),
        &key,
        Some(&json!({"name": "Viber news", "rate_limit_per_second": "15",
            "settings": {"sender": "HeraldNews", "api_key": ""}, "enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Viber news");
    assert_eq!(patched["rate_limit_per_second"], 15);
    assert_eq!(
        patched["sender"], "HeraldNews",
        "a sender from the settings follows them"
    );
    assert_eq!(patched["enabled"], false);
    assert_eq!(
        patched["settings"]["base_url"],
        "https://xyz.api.infobip.com"
    );
    let (registry, _rx) = registry(&app, &app.address);
    let secrets = registry.open_secrets(&channel(&app, &id)).unwrap();
    assert_eq!(secrets["api_key"], INFOBIP_KEY);
    let (status, err) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{id}"),
        &key,
        Some(&json!({"settings": {"webhook_secret": "short"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err["error"]["fields"]["settings.webhook_secret"]
            .as_str()
            .unwrap()
            .contains("at least 16")
    );
    let (status, err) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{id}"),
        &key,
        Some(&json!({"name": "Demo"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");

    // GET one; anyone may list, only admins see settings.
    let (status, one) = get_json(&app, &key, &format!("/api/v1/channels/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["name"], "Viber news");
    let (status, _) = get_json(&app, &key, "/api/v1/channels/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // DELETE an unused channel.
    let demo = sandbox["id"].as_str().unwrap();
    let (status, _) = delete_json(&app, &key, &format!("/api/v1/channels/{demo}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get_json(&app, &key, &format!("/api/v1/channels/{demo}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(audit(&app, &key, "channel.created").await.len(), 3);
    assert_eq!(
        audit(&app, &key, "channel.deleted").await[0]["actor"]["kind"],
        "api_key"
    );
}

async fn only_admins_manage_channels(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let marketer = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let marketer_key = crate::helpers::create_api_key(&admin, "Marketing", "marketer").await;
    let created = create_channel(
        &app,
        &key,
        twilio_channel("Shop SMS", "https://api.twilio.com"),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    assert_eq!(
        marketer.get("/settings/channels/new").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        marketer
            .get(&format!("/settings/channels/{id}"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let res = marketer
        .post_form(&format!("/settings/channels/{id}/disable"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = marketer
        .post_form(
            "/settings/channels",
            &[("kind", "sms"), ("provider", "sandbox"), ("name", "Mine")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let (status, _) = api(
        &app,
        Method::POST,
        "/api/v1/channels",
        &marketer_key,
        Some(&json!({"kind": "sandbox", "name": "Mine"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/channels/{id}"),
        &marketer_key,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Anyone may read: without the settings.
    let (status, one) = get_json(&app, &marketer_key, &format!("/api/v1/channels/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        one.get("settings").is_none() && one.get("secrets_set").is_none(),
        "{one}"
    );
    assert!(channel(&app, id).is_enabled());
}

/// Sends `body` as JSON (well-formed or not) to an API route with `key`; returns the status.
async fn raw_api(app: &TestApp, method: Method, path: &str, key: &str, body: &str) -> StatusCode {
    reqwest::Client::new()
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(key)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

/// Extractors run together: a malformed body used to be answered (422) before the key was
/// looked up, now and then. A wrong key is a 401 and a missing permission a 403, every time.
async fn the_api_authenticates_and_authorises_before_it_reads_the_input(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let marketer_key = crate::helpers::create_api_key(&admin, "Marketing", "marketer").await;
    let created = create_channel(
        &app,
        &key,
        twilio_channel("Shop SMS", "https://api.twilio.com"),
    )
    .await;
    let channel = format!("/api/v1/channels/{}", created["id"].as_str().unwrap());
    let random_key = format!("hrld_{}", uuid::Uuid::new_v4().simple());
    let malformed = [
        (Method::POST, "/api/v1/messages", "{\"to\":"),
        (Method::POST, "/api/v1/contacts", "[1,"),
        (Method::POST, "/api/v1/channels", "{\"kind\": 5}"),
        (Method::PATCH, channel.as_str(), "{\"settings\": \"x\""),
        (Method::GET, "/api/v1/contacts?limit=many", ""),
        (Method::GET, "/api/v1/audit?before=%00", ""),
    ];
    for round in 0..40 {
        for (method, path, body) in &malformed {
            let status = raw_api(&app, method.clone(), path, &random_key, body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "round {round}: {method} {path} with a random key"
            );
        }
        let status = raw_api(
            &app,
            Method::PATCH,
            &channel,
            &marketer_key,
            "{\"settings\": ",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "round {round}: a marketer's PATCH"
        );
        let status = raw_api(
            &app,
            Method::GET,
            "/api/v1/audit?limit=x",
            &marketer_key,
            "",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "round {round}: the audit log"
        );
    }
    // The same bodies with the right key are judged on what they say.
    assert_eq!(
        raw_api(&app, Method::PATCH, &channel, &key, "{\"settings\": ").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        raw_api(&app, Method::GET, "/api/v1/contacts?limit=many", &key, "").await,
        StatusCode::BAD_REQUEST
    );
}

/// Presses "Test connection" on a channel's page; returns the answer's HTML.
async fn press_test(admin: &crate::helpers::Client, id: &str) -> String {
    let token = admin.csrf_token().await;
    let res = admin
        .http
        .post(admin.url(&format!("/settings/channels/{id}/test")))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// Changing only the base URL and pressing "Test connection" sent the saved auth token to the
/// new address. Pointing a channel elsewhere now takes its secrets typed again, on the page
/// and in the API; until then it keeps talking to where it was.
async fn a_new_address_never_receives_the_saved_secret(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let old = FakeProvider::start(FakeConfig::default()).await.unwrap();
    let new = FakeProvider::start(FakeConfig::default()).await.unwrap();
    let created = create_channel(&app, &key, twilio_channel("Shop SMS", &old.base_url)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/channels/{id}");
    let before = channel(&app, &id);

    // The API: a new base URL (or account) without the secret is refused at the secret.
    for settings in [
        json!({"base_url": new.base_url}),
        json!({"base_url": new.base_url, "auth_token": ""}),
        json!({"account_sid": format!("AC{}", "e".repeat(32))}),
    ] {
        let (status, body) = api(
            &app,
            Method::PATCH,
            &path,
            &key,
            Some(&json!({ "settings": settings })),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["fields"]["settings.auth_token"]
                .as_str()
                .unwrap()
                .contains("never sends a saved secret to a new address"),
            "{body}"
        );
    }

    // The page: the same, shown at the field.
    let res = admin
        .post_form(
            &format!("/settings/channels/{id}"),
            &[
                ("name", "Shop SMS"),
                ("sender", ""),
                ("rate_limit_per_second", "5"),
                ("settings.base_url", new.base_url.as_str()),
                ("settings.account_sid", TWILIO_SID),
                ("settings.auth_token", ""),
                ("settings.from", "+15005550006"),
                ("settings.messaging_service_sid", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    let errors = texts(&page, "[data-setting=\"auth_token\"] .field-error");
    assert_eq!(errors.len(), 1, "{page}");
    assert!(errors[0].contains("Enter it again: the Base URL changed"));

    // Nothing was saved: "Test connection" still goes to the old address.
    let after = channel(&app, &id);
    assert_eq!(after.settings, before.settings);
    assert_eq!(after.secrets, before.secrets);
    assert!(press_test(&admin, &id).await.contains("test-ok"));
    assert_eq!(old.requests().len(), 1);
    assert!(new.requests().is_empty(), "the new address heard nothing");

    // With the secret typed again, the channel moves, and the new address gets the new one.
    let (status, body) = api(
        &app,
        Method::PATCH,
        &path,
        &key,
        Some(&json!({"settings": {"base_url": new.base_url, "auth_token": "7d0a4c1f2b3e4d5a6b7c8d9e0f1a2b99"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    press_test(&admin, &id).await;
    let calls = new.requests();
    assert_eq!(calls.len(), 1);
    use base64::Engine;
    let basic = |token: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{token}"))
        )
    };
    assert_eq!(
        calls[0].header("Authorization"),
        Some(basic("7d0a4c1f2b3e4d5a6b7c8d9e0f1a2b99").as_str())
    );
    for call in &calls {
        assert!(!format!("{call:?}").contains(TWILIO_TOKEN));
        assert_ne!(
            call.header("Authorization"),
            Some(basic(TWILIO_TOKEN).as_str())
        );
    }
}
