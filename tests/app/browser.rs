//! Browser tests in headless Chromium through chromedriver, run when HERALD_TEST_CHROMEDRIVER
//! names the chromedriver binary (HERALD_TEST_CHROMIUM may name the browser; default
//! /usr/bin/chromium). They do what a newcomer does on the first day.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::helpers::{Backend, PASSWORD, TestApp};

/// A chromedriver process with one Chromium session; both are killed when dropped.
pub struct Browser {
    pub client: Client,
    base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Browser {
    pub async fn start(base: &str) -> Browser {
        let driver_path = std::env::var("HERALD_TEST_CHROMEDRIVER").expect(
            "HERALD_TEST_CHROMEDRIVER was set when the tests were built but is not set now",
        );
        let chromium =
            std::env::var("HERALD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        // A session of its own (setsid(1) execs it in place, so the pid is chromedriver's and
        // its process group is ours to kill): Chromium's processes go with it, and nothing it
        // does reaches the terminal session that runs the tests.
        let driver = Command::new("setsid")
            .arg(&driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("tls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        base: base.to_owned(),
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => {
                    last_error = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("chromedriver did not answer: {last_error}");
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("goto");
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .expect(css);
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        let el = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .expect(css);
        el.click().await.expect("click");
    }

    /// Waits (up to 10 s) until the page body contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        for _ in 0..100 {
            let body = self.text("body").await;
            if body.contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "page never showed {text:?}; it shows:\n{}",
            self.text("body").await
        );
    }

    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
    }

    pub async fn sign_out(&self) {
        self.click("form[action='/logout'] button").await;
        self.wait_for_text("You have signed out.").await;
    }

    /// Ends the browser session cleanly; the processes are killed when `self` drops.
    pub async fn finish(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.driver.id()) {
            // SAFETY: killpg only sends a signal; `pgid` is the group setsid(1) made for
            // chromedriver, so Chromium's processes are the only ones in it. (Not the `kill`
            // binary: Debian's procps 4.0.2 reads `kill -KILL -12345` as `kill -KILL -1`.)
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn invite(b: &Browser, name: &str, email: &str, role: &str, temporary: &str) {
    b.fill("#new-name", name).await;
    b.fill("#new-email", email).await;
    b.client
        .find(Locator::Css("#new-role"))
        .await
        .expect("role select")
        .select_by_value(role)
        .await
        .expect("select role");
    b.fill("#new-password", temporary).await;
    b.click("#invite button[type=submit]").await;
    b.wait_for_text(&format!("{name} can now sign in")).await;
}

/// First sign-in with a temporary password: the person must choose their own first.
async fn first_sign_in(b: &Browser, email: &str, temporary: &str) {
    b.sign_in(email, temporary).await;
    b.wait_for_text("An admin set a temporary password for you.")
        .await;
    assert_eq!(b.path().await, "/account/password");
    b.fill("#current_password", temporary).await;
    b.fill("#new_password", PASSWORD).await;
    b.fill("#new_password_confirm", PASSWORD).await;
    b.click("form[action='/account/password'] button[type=submit]")
        .await;
    b.wait_for_text("Your password has been changed.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn a_newcomer_sets_up_herald_and_each_role_sees_its_pages() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let b = Browser::start(&app.address).await;

    // First run: every page leads to the setup page.
    b.goto("/settings/users").await;
    b.wait_for_text("Create the first admin").await;
    assert_eq!(b.path().await, "/setup");
    b.fill("#name", "Ada Admin").await;
    b.fill("#email", "ada@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password_confirm", PASSWORD).await;
    b.click("form[action='/setup'] button[type=submit]").await;
    b.wait_for_text("Hello, Ada").await;
    assert!(b.text(".flashes").await.contains("Herald is ready"));

    // Navigation is boosted by htmx: the content swaps in and the URL follows.
    b.click(".sidebar a[href='/settings/users']").await;
    b.wait_for_text("Invite someone").await;
    assert_eq!(b.path().await, "/settings/users");
    assert_eq!(b.client.title().await.expect("title"), "Users · Herald");
    invite(
        &b,
        "Mia Marketer",
        "mia@example.com",
        "marketer",
        "temporary pass 1",
    )
    .await;
    invite(
        &b,
        "Sam Lead",
        "sam@example.com",
        "support_lead",
        "temporary pass 2",
    )
    .await;
    b.sign_out().await;

    // A wrong password is refused with a clear message.
    b.sign_in("mia@example.com", "not the password").await;
    b.wait_for_text("The e-mail address or password is not right.")
        .await;

    // The marketer chooses a password, sees the marketer's navigation, and no admin pages.
    first_sign_in(&b, "mia@example.com", "temporary pass 1").await;
    let nav = b.text(".sidebar").await;
    assert!(nav.contains("Mia Marketer") && nav.contains("Marketer"));
    assert!(!nav.contains("Users") && !nav.contains("API keys"), "{nav}");
    b.goto("/settings/users").await;
    b.wait_for_text("Your role does not allow you to manage users.")
        .await;
    assert!(b.text("h1").await.contains("Not allowed"));
    b.sign_out().await;

    // The support lead likewise.
    first_sign_in(&b, "sam@example.com", "temporary pass 2").await;
    assert!(b.text(".sidebar").await.contains("Support lead"));
    b.goto("/settings/api-keys").await;
    b.wait_for_text("Your role does not allow you to manage API keys.")
        .await;
    b.sign_out().await;

    // The admin creates an API key, sees it once, and revokes it after confirming.
    b.sign_in("ada@example.com", PASSWORD).await;
    b.wait_for_text("Getting started").await;
    b.goto("/settings/api-keys").await;
    b.fill("#key-name", "Order system").await;
    b.click("form[action='/settings/api-keys'] button[type=submit]")
        .await;
    b.wait_for_text("Copy it now").await;
    let key = b.text("#revealed-secret").await;
    assert!(key.starts_with("hrld_"), "{key}");
    let res = crate::helpers::api_get(&app, "/api/v1/channels", Some(&key)).await;
    assert_eq!(res.status(), 200);
    b.click("tr[data-key='Order system'] button.danger").await;
    b.client.accept_alert().await.expect("confirm dialog");
    b.wait_for_text("is revoked").await;
    let res = crate::helpers::api_get(&app, "/api/v1/channels", Some(&key)).await;
    assert_eq!(res.status(), 401);

    b.sign_out().await;
    b.goto("/").await;
    b.wait_for_text("Sign in").await;
    assert!(b.path().await.starts_with("/login"));
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn declining_a_confirmation_changes_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.admin().await;
    let _mia = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;
    let b = Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, PASSWORD).await;
    b.wait_for_text("Getting started").await;
    b.goto("/settings/users").await;
    b.click("tr[data-user='mia@example.com'] button.danger")
        .await;
    b.client.dismiss_alert().await.expect("confirm dialog");
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.goto("/settings/users").await;
    let row = b.text("tr[data-user='mia@example.com']").await;
    assert!(row.contains("Active") && !row.contains("Disabled"), "{row}");
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn a_marketer_imports_a_messy_csv_and_a_stop_reply_opts_a_contact_out() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.admin().await;
    let _mia = app
        .user_with_role(&admin, "mia@example.com", "marketer")
        .await;

    // A messy real-world file: BOM, semicolons, quoted cells, accents, bad and repeated numbers.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("spring-customers.csv");
    let mut csv = String::from("\u{feff}Mobile;First name;Last name;E-mail;Tier\n");
    for i in 0..3000 {
        csv.push_str(&format!(
            "+1 201 555 {:04};Zoë{i};\"Müller; Jr\";z{i}@example.com;gold\n",
            i
        ));
    }
    csv.push_str("+1 555 0100;Bad;Number;bad@example.com;gold\n");
    csv.push_str("+1 201 555 0007;Again;Repeat;again@example.com;gold\n");
    std::fs::write(&path, csv).expect("write csv");

    let b = Browser::start(&app.address).await;
    b.sign_in("mia@example.com", PASSWORD).await;
    b.wait_for_text("Hello, Test").await;
    b.goto("/contacts/import").await;
    b.client
        .find(Locator::Css("#file"))
        .await
        .expect("file input")
        .send_keys(&path.display().to_string())
        .await
        .expect("choose file");
    // The preview shows the columns and guesses their meaning.
    b.wait_for_text("Match the columns of spring-customers.csv")
        .await;
    assert!(b.text("#mapping").await.contains("Zoë0"));
    b.fill("input[name=new_list]", "Spring").await;
    b.click("#mapping button[type=submit]").await;
    b.wait_for_text("Import finished.").await;
    let summary = b.text(".flashes").await;
    assert!(
        summary.contains("3,002 rows read: 3,000 new contacts, 0 updated, 2 rejected."),
        "{summary}"
    );
    assert!(b.path().await.starts_with("/contacts/imports/"));
    let report_link = b
        .client
        .find(Locator::Css("a[href$='/rejected.csv']"))
        .await
        .expect("report link")
        .attr("href")
        .await
        .expect("href")
        .expect("href value");
    let report = admin.get(&report_link).await.text().await.expect("report");
    // Values a spreadsheet would evaluate carry a quote (`csv_out`).
    assert!(
        report.starts_with("line,reason,Mobile,First name,Last name,E-mail,Tier\n"),
        "{report}"
    );
    assert!(
        report.contains(",'+1 555 0100,Bad,Number,bad@example.com,gold\n"),
        "{report}"
    );
    assert!(
        report.contains("3003,phone: +12015550007 appears earlier in this file; the first occurrence was imported,'+1 201 555 0007,Again,Repeat"),
        "{report}"
    );

    // The list holds them; search finds one at once.
    b.click("a[href^='/contacts?list=']").await;
    b.wait_for_text("3,000 contacts match in Spring").await;
    b.fill("#q", "+1 201 555 2999").await;
    b.wait_for_text("1 contact matches").await;
    b.click("#contacts-results tbody a").await;
    b.wait_for_text("Zoë2999 Müller; Jr").await;

    // The customer texts STOP on SMS: they are opted out of SMS, shown everywhere.
    b.client
        .find(Locator::Css("#sim-channel"))
        .await
        .expect("channel select")
        .select_by_label("Sandbox SMS")
        .await
        .expect("choose SMS");
    b.fill("#sim-text", "STOP").await;
    b.click(".simulate button[type=submit]").await;
    b.wait_for_text("That is an opt-out keyword").await;
    assert!(b.text("tr[data-consent='sms']").await.contains("Opted out"));
    b.goto("/contacts?opted_out=sms").await;
    b.wait_for_text("1 contact matches").await;
    assert!(
        b.text("#contacts-results")
            .await
            .contains("Opted out of SMS")
    );
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn an_admin_connects_twilio_tests_it_edits_it_and_disables_it() {
    use herald::testkit::fake_provider::{FakeConfig, FakeProvider};

    let app = TestApp::spawn(Backend::Sqlite).await;
    let _admin = app.admin().await;
    let fake = FakeProvider::start(FakeConfig::default())
        .await
        .expect("fake provider");
    let token = "b0a4c1f2b3e4d5a6b7c8d9e0f1a2b3c4";
    let b = Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, PASSWORD).await;
    b.wait_for_text("Getting started").await;

    // Settings › Channels › Add a channel › SMS through Twilio.
    b.click(".sidebar a[href='/settings/channels']").await;
    b.wait_for_text("Sandbox SMS").await;
    b.click(".header-actions a[href='/settings/channels/new']")
        .await;
    b.wait_for_text("Pick what kind of messages it carries")
        .await;
    b.click("li[data-kind='sms'] a[href$='provider=twilio']")
        .await;
    b.wait_for_text("New SMS channel").await;
    assert!(
        b.text("#channel-form")
            .await
            .contains("Twilio Console › Account info")
    );
    b.fill("#name", "Shop SMS").await;
    b.fill("#setting-base_url", &fake.base_url).await;
    b.fill("#setting-account_sid", crate::provider_kit::TWILIO_SID)
        .await;
    b.fill("#setting-auth_token", token).await;
    b.fill("#setting-from", "+15005550006").await;
    b.click("#channel-form button[type=submit]").await;
    b.wait_for_text("Shop SMS was added.").await;

    // The webhook URL to paste into Twilio's console.
    let webhook = b.text("#webhook-url").await;
    let id = b
        .path()
        .await
        .trim_start_matches("/settings/channels/")
        .to_owned();
    assert_eq!(webhook, format!("{}/webhooks/twilio/{id}", app.address));
    assert!(b.text("#webhook").await.contains("A message comes in"));

    // Test connection: the provider's answer, nothing saved.
    b.click("#test-connection").await;
    b.wait_for_text("Connected to Twilio account Herald fake account (active)")
        .await;
    assert!(
        b.text("#test-result").await.starts_with("Connected."),
        "{}",
        b.text("#test-result").await
    );

    // Edit: the secret is not shown, an empty field keeps it.
    let secret_field = b
        .client
        .find(Locator::Css("#setting-auth_token"))
        .await
        .expect("auth token field");
    assert_eq!(
        secret_field.prop("value").await.expect("value"),
        Some(String::new())
    );
    assert_eq!(
        secret_field
            .attr("placeholder")
            .await
            .expect("placeholder")
            .as_deref(),
        Some("saved — leave empty to keep")
    );
    assert!(!b.client.source().await.expect("source").contains(token));
    b.fill("#rate_limit_per_second", "3").await;
    b.click("#channel-form button[type=submit]").await;
    b.wait_for_text("Shop SMS was saved.").await;
    assert_eq!(
        b.client
            .find(Locator::Css("#rate_limit_per_second"))
            .await
            .expect("rate")
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("3")
    );
    b.click("#test-connection").await;
    b.wait_for_text("Connected to Twilio account").await;
    let (registry, _rx) = crate::provider_kit::registry(&app, &app.address);
    let stored = crate::provider_kit::channel(&app, &id);
    assert_eq!(
        registry.open_secrets(&stored).expect("secrets")["auth_token"],
        token
    );

    // Disable, after confirming.
    b.click("#disable-channel").await;
    b.client.accept_alert().await.expect("confirm dialog");
    b.wait_for_text("Shop SMS is disabled: nothing is sent through it.")
        .await;
    assert!(b.text("header").await.contains("Disabled"));
    assert!(!crate::provider_kit::channel(&app, &id).is_enabled());
    b.finish().await;
}

// --- issue 18: the history in a browser ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(herald_browser_tests),
    ignore = "set HERALD_TEST_CHROMEDRIVER to run browser tests"
)]
async fn an_admin_filters_the_history_and_pages_it_at_a_phones_width() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let failed = crate::history::seed_history(&app).await;
    let b = Browser::start(&app.address).await;
    b.sign_in(crate::helpers::ADMIN_EMAIL, PASSWORD).await;
    b.wait_for_text("Sign out").await;
    b.click(".sidebar a[href='/history']").await;
    b.wait_for_text("60 messages.").await;
    // The filter form swaps the results in and the address follows.
    b.client
        .find(Locator::Css("#history-status"))
        .await
        .expect("status filter")
        .select_by_value("failed")
        .await
        .expect("choose failed");
    b.click("#history-filters button[type=submit]").await;
    b.wait_for_text(&format!("{failed} messages match these filters."))
        .await;
    assert_eq!(b.path().await, "/history?status=failed");
    let rows = b
        .client
        .find_all(Locator::Css("#history-table tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), failed);
    // At a phone's width the page (filters and table) stays within the window.
    b.client.set_window_size(390, 844).await.expect("size");
    b.click("#history-clear").await;
    b.wait_for_text("60 messages.").await;
    b.click("#history-older").await;
    b.wait_for_text("Newest").await;
    let fits = b
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .expect("widths");
    assert_eq!(fits, serde_json::json!(true));
    b.finish().await;
}
// --- end issue 18 ---
