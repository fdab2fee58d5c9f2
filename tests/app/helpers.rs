//! The test harness: the real server on port 0 with its own database (a fresh SQLite file, or
//! a fresh PostgreSQL database when `HERALD_TEST_DATABASE_URL` is set), and HTTP clients with
//! their own cookie jars.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use diesel::{Connection, RunQueryDsl};
use herald::config::{LogFormat, Settings};
use herald::startup::Application;
use reqwest::StatusCode;
use reqwest::redirect::Policy;

pub const ADMIN_EMAIL: &str = "ada@example.com";
pub const ADMIN_NAME: &str = "Ada Admin";
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs tests once per backend: `mod sqlite` always, `mod postgres` when
/// `HERALD_TEST_DATABASE_URL` was set at build time (otherwise reported as ignored, with why).
///
/// - `both_backends!(a, b)`: each test takes a [`TestApp`] made by `TestApp::spawn`;
/// - `both_backends!(spawn = make; a, b)`: the same, made by the calling module's
///   `make(Backend)` (for example with the in-process dispatcher on);
/// - `both_backends!(with_backend name: test)`: one test that makes its own server, given the
///   [`Backend`], run as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    (@each [$make:path] $($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($make($crate::helpers::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(herald_pg_tests), ignore = "set HERALD_TEST_DATABASE_URL to run on PostgreSQL")]
                async fn $name() {
                    super::$name($make($crate::helpers::Backend::Postgres).await).await;
                }
            )*
        }
    };
    (with_backend $module:ident: $test:ident) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(herald_pg_tests),
                ignore = "set HERALD_TEST_DATABASE_URL to run on PostgreSQL"
            )]
            async fn postgres() {
                super::$test($crate::helpers::Backend::Postgres).await;
            }
        }
    };
    (spawn = $spawn:ident; $($name:ident),* $(,)?) => {
        $crate::both_backends!(@each [super::$spawn] $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::both_backends!(@each [$crate::helpers::TestApp::spawn] $($name),*);
    };
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            herald::telemetry::init(&filter, LogFormat::Text);
        }
    });
}

/// A database made for one test and removed afterwards.
pub enum TestDatabase {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDatabase {
    pub fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("herald.db");
                TestDatabase::Sqlite { _dir: dir, path }
            }
            Backend::Postgres => {
                let admin_url = std::env::var("HERALD_TEST_DATABASE_URL").expect(
                    "HERALD_TEST_DATABASE_URL was set when the tests were built but is not set now",
                );
                let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = diesel::PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!("cannot reach PostgreSQL at HERALD_TEST_DATABASE_URL: {e}")
                });
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create test database");
                let url = replace_database(&admin_url, &name);
                TestDatabase::Postgres {
                    admin_url,
                    name,
                    url,
                }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            TestDatabase::Postgres { url, .. } => url.clone(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
            && let Ok(mut conn) = diesel::PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
    }
}

/// `postgres://u@h:p/db?x` with the database name replaced.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("default settings");
    settings.database_url = database_url.to_owned();
    settings.bind = "127.0.0.1:0".into();
    settings.secret_key = Some("test-secret-key-of-sufficient-length-0123456789".into());
    settings.workers = 1;
    settings.db_pool_size = 4;
    // Tests that send turn the in-process worker on (or drive one themselves).
    settings.run_worker = false;
    settings
}

/// One running server, stopped when dropped.
pub struct RunningServer {
    pub address: String,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    pub async fn start(settings: Settings) -> RunningServer {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The server runs on its own runtime and thread, so dropping it stops it cleanly.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match Application::build(settings).await {
                    Ok(app) => {
                        let _ = tx.send(Ok((app.port(), app.handle())));
                        let _ = app.run_until_stopped().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:#}")));
                    }
                }
            });
        });
        let (port, handle) = rx
            .await
            .expect("server thread")
            .unwrap_or_else(|e| panic!("Herald did not start: {e}"));
        RunningServer {
            address: format!("http://127.0.0.1:{port}"),
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running Herald with its own database; stopped and cleaned up when dropped.
pub struct TestApp {
    pub address: String,
    pub database_url: String,
    // Fields drop in order: the server stops before its database is removed.
    _server: RunningServer,
    _db: TestDatabase,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        init_logs();
        let db = TestDatabase::create(backend);
        let mut settings = test_settings(&db.url());
        adjust(&mut settings);
        let database_url = settings.database_url.clone();
        let server = RunningServer::start(settings).await;
        TestApp {
            address: server.address.clone(),
            database_url,
            _server: server,
            _db: db,
        }
    }

    /// Another Herald process on the same database (as behind a load balancer).
    pub async fn second_instance(&self) -> RunningServer {
        RunningServer::start(test_settings(&self.database_url)).await
    }

    /// A new visitor with an empty cookie jar.
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: self.address.clone(),
        }
    }

    /// Creates the first admin through the setup page and returns their signed-in client.
    pub async fn admin(&self) -> Client {
        let c = self.client();
        let res = c
            .post_form(
                "/setup",
                &[
                    ("name", ADMIN_NAME),
                    ("email", ADMIN_EMAIL),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "setup failed: {}",
            res.text().await.unwrap_or_default()
        );
        c
    }

    /// Has the admin create an account with `role`; returns a client signed in as that person
    /// (who has already replaced the temporary password).
    pub async fn user_with_role(&self, admin: &Client, email: &str, role: &str) -> Client {
        let temporary = "temporary password 1";
        let res = admin
            .post_form(
                "/settings/users",
                &[
                    ("name", "Test Person"),
                    ("email", email),
                    ("role", role),
                    ("password", temporary),
                ],
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let c = self.client();
        let res = c.login(email, temporary).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let res = c
            .post_form(
                "/account/password",
                &[
                    ("current_password", temporary),
                    ("new_password", PASSWORD),
                    ("new_password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            res.text().await.unwrap_or_default()
        );
        c
    }

    /// Runs the real `herald` binary against this test's database.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env(
                "HERALD_SECRET_KEY",
                "test-secret-key-of-sufficient-length-0123456789",
            )
            .env("HERALD_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run herald");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("herald output")
    }

    /// A direct database connection, for assertions on what was stored.
    pub fn db(&self) -> herald::storage::PooledDb {
        herald::storage::Db::connect(&self.database_url, 1)
            .expect("connect")
            .get()
            .expect("connection")
    }
}

/// An HTTP client with its own session, that sends the CSRF token with every form.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_html(&self, path: &str) -> String {
        let res = self.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.text().await.expect("body")
    }

    /// The session's CSRF token, read from the layout (any page carries it, even a 404).
    pub async fn csrf_token(&self) -> String {
        let mut res = self.get("/__no_such_page__").await;
        if res.status() == StatusCode::SEE_OTHER {
            let to = res.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            res = self.get(&to).await;
        }
        let body = res.text().await.expect("body");
        extract_csrf(&body).unwrap_or_else(|| panic!("no CSRF token in page: {body}"))
    }

    /// POSTs a form with the session's CSRF token added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf_token().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.post_form_raw(path, &all).await
    }

    /// POSTs exactly these fields (no CSRF token added).
    pub async fn post_form_raw(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .expect("POST")
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_form("/login", &[("email", email), ("password", password)])
            .await
    }
}

/// The `Location` header of a redirect, or "".
pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .map(|v| v.to_str().expect("ASCII location").to_owned())
        .unwrap_or_default()
}

pub fn extract_csrf(html: &str) -> Option<String> {
    let start = html.find("\"X-CSRF-Token\": \"")? + "\"X-CSRF-Token\": \"".len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// Calls the API with a bearer key.
pub async fn api_get(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", app.address));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.expect("API GET")
}

/// Creates an API key through the admin page and returns the secret shown once.
pub async fn create_api_key(admin: &Client, name: &str, role: &str) -> String {
    let res = admin
        .post_form("/settings/api-keys", &[("name", name), ("role", role)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html("/settings/api-keys").await;
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("#revealed-secret").expect("selector");
    doc.select(&sel)
        .next()
        .map(|e| e.text().collect::<String>())
        .expect("the new key is shown once")
}

/// Text of every element matching `selector`.
pub fn texts(html: &str, selector: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse(selector).expect("selector");
    doc.select(&sel)
        .map(|e| {
            e.text()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        replace_database("postgres://u@h:5/postgres", "t1"),
        "postgres://u@h:5/t1"
    );
    assert_eq!(
        replace_database("postgres://u@h:5", "t1"),
        "postgres://u@h:5/t1"
    );
    assert_eq!(
        replace_database("postgresql://u:p@h/db?sslmode=disable", "t1"),
        "postgresql://u:p@h/t1?sslmode=disable"
    );
}
