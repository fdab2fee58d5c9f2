//! Builds the application: database, keys, middleware, routes. Tests build it on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;

use actix_session::SessionMiddleware;
use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_web::cookie::SameSite;
use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::auth::keys::Keys;
use crate::auth::password;
use crate::config::{Settings, redact_url};
use crate::dispatch::hub::EventHub;
use crate::dispatch::metrics::Metrics;
use crate::dispatch::registry::ChannelRegistry;
use crate::dispatch::worker::{DispatchConfig, Dispatcher};
use crate::service::Services;
use crate::storage::{self, Db, channels, settings as app_settings};
use crate::web as routes;

/// Shared by every request handler: the application layer's context (reachable as if its
/// fields were this struct's, through `Deref`) and what only the web edge needs.
pub struct AppState {
    pub services: Arc<Services>,
    /// Set once an account exists; see `identity::setup_needed`.
    pub setup_done: AtomicBool,
    /// Turns true on SIGINT/SIGTERM, so live pages' event streams end and do not hold up a
    /// graceful shutdown.
    pub shutting_down: watch::Receiver<bool>,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// Watches for SIGINT and SIGTERM (as actix does for the server itself).
fn watch_shutdown_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = tx.send(true);
    });
    rx
}

pub struct Application {
    port: u16,
    url: String,
    server: Server,
    /// The outbox worker run beside the server (`HERALD_RUN_WORKER`, on by default).
    dispatcher: Option<Dispatcher>,
    /// Issue 19: the status-callback worker, run beside the outbox worker.
    callbacks: Option<crate::dispatch::callbacks::CallbackWorker>,
}

/// What runs behind the pages: the channel registry, the event hub, the sandbox's reports and
/// the outbox worker. `herald serve` and `herald worker` both build it.
pub struct Background {
    pub registry: Arc<ChannelRegistry>,
    pub hub: EventHub,
    pub metrics: Arc<Metrics>,
    pub dispatcher: Dispatcher,
    /// Issue 19: the status-callback worker, run wherever the outbox worker runs.
    pub callbacks: crate::dispatch::callbacks::CallbackWorker,
}

impl Background {
    /// Must run inside the Tokio runtime (it spawns the sandbox loop).
    pub fn start(
        db: &Db,
        settings: &Settings,
        public_url: &str,
        keys: &Keys,
    ) -> anyhow::Result<Self> {
        let hub = EventHub::new();
        if db.backend() == crate::storage::Backend::Postgres {
            crate::dispatch::relay::start(&settings.database_url, &hub)?;
        }
        let (sandbox_tx, sandbox_rx) = tokio::sync::mpsc::channel(4096);
        let registry = Arc::new(ChannelRegistry::new(
            public_url,
            keys.channel_secrets,
            sandbox_tx,
            settings.send_timeout,
        )?);
        tokio::spawn(crate::dispatch::sandbox::run(
            db.clone(),
            hub.clone(),
            sandbox_rx,
        ));
        // Webhooks carry template verdicts; this catches the ones that never arrived. Each
        // check is claimed in the database first, so every instance may run it.
        tokio::spawn(crate::dispatch::templates::run_periodic_sync(
            db.clone(),
            hub.clone(),
            registry.clone(),
            std::time::Duration::from_secs(600),
            crate::dispatch::templates::SyncBudget::default(),
        ));
        // The WhatsApp messaging limits, as Meta reports them (broadcasts wait under them).
        tokio::spawn(crate::service::channels::run_messaging_limit_refresh(
            db.clone(),
            registry.clone(),
        ));
        // PostgreSQL's message counters: fold the deltas the triggers append.
        tokio::spawn(crate::service::overview::run_count_folding(db.clone()));
        // Issue 18: retention purges old message content; each run is claimed in the database,
        // so every instance may look.
        tokio::spawn(crate::service::retention::run(db.clone()));
        let metrics = Arc::new(Metrics::new());
        let dispatcher = Dispatcher::new(
            db.clone(),
            registry.clone(),
            hub.clone(),
            metrics.clone(),
            DispatchConfig::from_settings(settings),
        );
        let callbacks = crate::dispatch::callbacks::CallbackWorker {
            db: db.clone(),
            keys: keys.clone(),
            config: crate::dispatch::callbacks::CallbackConfig::from_settings(settings),
        };
        Ok(Background {
            registry,
            hub,
            metrics,
            dispatcher,
            callbacks,
        })
    }
}

/// `herald worker`: the outbox worker alone (no pages), for scaling out on PostgreSQL.
pub struct Worker {
    pub background: Background,
}

impl Worker {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let prepared = settings.clone();
        let (db, master) =
            tokio::task::spawn_blocking(move || prepare_database(&prepared, false)).await??;
        let keys = Keys::derive(&master)?;
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", settings.bind));
        Ok(Worker {
            background: Background::start(&db, &settings, &public_url, &keys)?,
        })
    }

    /// Sends until `stop` turns true, then finishes what is in flight.
    pub async fn run_until(self, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let dispatcher = self.background.dispatcher;
        let broadcasts = tokio::spawn(crate::service::broadcasts::feed::run(
            dispatcher.db().clone(),
            dispatcher.clone(),
            stop.clone(),
        ));
        let callbacks = self.background.callbacks.spawn(stop.clone());
        let automations = tokio::spawn(crate::service::automations::run(
            dispatcher.clone(),
            stop.clone(),
        ));
        dispatcher.run(stop).await?;
        let _ = broadcasts.await;
        let _ = callbacks.await;
        let _ = automations.await;
        Ok(())
    }
}

/// The CSP allows scripts and styles from Herald itself only: no inline script anywhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Opens the pool, applies migrations and seeds what a first start needs. Blocking.
pub fn prepare_database(settings: &Settings, seed: bool) -> anyhow::Result<(Db, String)> {
    let db = Db::connect(&settings.database_url, settings.db_pool_size)?;
    let mut conn = db.get()?;
    let applied = storage::run_migrations(&mut conn)?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied database migrations");
    }
    let master = match &settings.secret_key {
        Some(k) => k.clone(),
        None => {
            let k = app_settings::get_or_insert_with(
                &mut conn,
                app_settings::SECRET_KEY,
                Keys::generate_master,
            )?;
            tracing::warn!(
                "HERALD_SECRET_KEY is not set: using the key generated on first start and kept in the \
                 database. Set HERALD_SECRET_KEY in production so the key is not stored beside the data."
            );
            k
        }
    };
    if seed {
        // Imports whose upload died with a previous process (no import runs for hours).
        let stale = storage::imports::fail_abandoned(
            &mut conn,
            storage::now() - chrono::Duration::hours(6),
        )?;
        if stale > 0 {
            tracing::warn!(
                count = stale,
                "marked imports interrupted by a restart as failed"
            );
        }
        let created = channels::seed_sandbox(&mut conn)?;
        if !created.is_empty() {
            tracing::info!(
                count = created.len(),
                "created sandbox channels for the first start"
            );
        }
    }
    Ok((db, master))
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        tracing::info!(
            database = %redact_url(&settings.database_url),
            bind = %settings.bind,
            "starting Herald"
        );
        let prepared = settings.clone();
        let (db, master) =
            tokio::task::spawn_blocking(move || prepare_database(&prepared, true)).await??;
        let keys = Keys::derive(&master)?;
        let dummy_hash = tokio::task::spawn_blocking(|| {
            // libphonenumber's metadata loads on first use (tens of milliseconds): pay it now,
            // not in the first person's request.
            let _ = crate::domain::phone::E164::parse("+14155550100", None);
            password::dummy_hash()
        })
        .await??;

        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let addr = listener.local_addr()?;
        let public_url = settings.public_url_for(addr);
        let workers = settings.workers;
        let background = Background::start(&db, &settings, &public_url, &keys)?;
        let run_worker = settings.run_worker;
        let callbacks = run_worker.then(|| background.callbacks.clone());
        let services = Arc::new(Services {
            channels: background.registry.clone(),
            hub: background.hub.clone(),
            dispatcher: background.dispatcher.clone(),
            metrics: background.metrics.clone(),
            imports: crate::import::gate::ImportGate::for_database(
                db.backend(),
                settings.db_pool_size,
            ),
            db,
            public_url: public_url.clone(),
            keys,
            settings,
            passwords: password::Passwords::per_core()?,
            dummy_hash,
            sign_in_turns: crate::service::sign_in::SignInTurns::per_core(),
            api_key_cache: crate::service::api_keys::key_cache(),
            channel_cache: crate::service::channels::channel_cache(),
            rate_limiter: Default::default(),
        });
        let state = web::Data::new(AppState {
            services,
            shutting_down: watch_shutdown_signals(),
            setup_done: AtomicBool::new(false),
        });

        let server = HttpServer::new(move || {
            let s = state.clone();
            App::new()
                .app_data(s.clone())
                .app_data(web::FormConfig::default().limit(256 * 1024))
                .app_data(web::PayloadConfig::new(1 << 20))
                .configure(routes::configure)
                .wrap(from_fn(routes::edge::refuse_nul))
                .wrap(from_fn(routes::csrf::protect))
                .wrap(from_fn(routes::identity::identify))
                .wrap(from_fn(routes::errors::render))
                .wrap(session_middleware(&s))
                .wrap(from_fn(routes::body_deadline::bound))
                .wrap(security_headers(&s.settings))
                .wrap(from_fn(routes::access_log))
                .wrap(TracingLogger::<crate::telemetry::RootSpan>::new())
        })
        .listen(listener)?
        .workers(workers)
        .shutdown_timeout(30)
        .run();

        Ok(Application {
            port: addr.port(),
            url: public_url,
            server,
            dispatcher: run_worker.then_some(background.dispatcher),
            callbacks,
        })
    }

    /// Stops the server from elsewhere (tests, or a supervisor).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The public URL (from `HERALD_PUBLIC_URL`, or the bound address).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until SIGINT/SIGTERM (or `handle().stop()`), then stops taking connections, lets
    /// requests in flight finish (up to 30 s), stops the worker's claiming and waits for the
    /// sends under way to be recorded.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let broadcasts = self.dispatcher.as_ref().map(|d| {
            tokio::spawn(crate::service::broadcasts::feed::run(
                d.db().clone(),
                d.clone(),
                stop_rx.clone(),
            ))
        });
        let callbacks = self.callbacks.map(|c| c.spawn(stop_rx.clone()));
        let automations = self
            .dispatcher
            .as_ref()
            .map(|d| tokio::spawn(crate::service::automations::run(d.clone(), stop_rx.clone())));
        let worker = self.dispatcher.map(|d| {
            tokio::spawn(async move {
                if let Err(e) = d.run(stop_rx).await {
                    tracing::error!(error = ?e, "the dispatcher stopped with an error");
                }
            })
        });
        let result = self.server.await;
        let _ = stop_tx.send(true);
        if let Some(w) = worker {
            let _ = w.await;
        }
        if let Some(b) = broadcasts {
            let _ = b.await;
        }
        if let Some(c) = callbacks {
            let _ = c.await;
        }
        if let Some(a) = automations {
            let _ = a.await;
        }
        result
    }
}

fn session_middleware(state: &AppState) -> SessionMiddleware<CookieSessionStore> {
    SessionMiddleware::builder(CookieSessionStore::default(), state.keys.cookie.clone())
        .cookie_name("herald_session".into())
        .cookie_content_security(CookieContentSecurity::Private)
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_secure(state.settings.secure_cookies())
        .session_lifecycle(PersistentSession::default().session_ttl(
            actix_web::cookie::time::Duration::seconds(
                i64::try_from(state.settings.session_ttl.as_secs()).unwrap_or(43_200),
            ),
        ))
        .build()
}

fn security_headers(settings: &Settings) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("Content-Security-Policy", CSP))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=()",
        ))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cache-Control", "no-store"));
    if settings.secure_cookies() {
        headers.add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        headers
    }
}
