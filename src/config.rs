//! Settings, read once from the environment at start and passed to whoever needs them.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_URL`: `sqlite://herald.db` (default) or `postgres://...`.
    pub database_url: String,
    /// `HERALD_BIND`: address to listen on; port 0 picks a free port.
    pub bind: String,
    /// `HERALD_SECRET_KEY`: master secret for cookies and channel secrets; generated and stored
    /// in the database on first start when absent.
    pub secret_key: Option<String>,
    /// `HERALD_PUBLIC_URL`: the base URL people and providers reach Herald at.
    pub public_url: Option<String>,
    /// `HERALD_WORKERS`: HTTP worker threads (default: one per core).
    pub workers: usize,
    /// `HERALD_DB_POOL_SIZE`: database connections per process.
    pub db_pool_size: u32,
    /// `HERALD_TRUST_PROXY`: take the client address from `X-Forwarded-For` / `Forwarded`.
    pub trust_proxy: bool,
    /// `HERALD_SESSION_HOURS`: how long a sign-in lasts.
    pub session_ttl: Duration,
    /// `HERALD_DEFAULT_COUNTRY`: the country assumed for phone numbers written without a
    /// country code (imports may choose another).
    pub default_country: crate::domain::phone::DefaultCountry,
    /// `HERALD_METRICS_TOKEN`: when set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// `HERALD_RUN_WORKER`: run the outbox worker inside `herald serve` (default true; set false
    /// for instances that only serve pages while `herald worker` processes send).
    pub run_worker: bool,
    /// `HERALD_MAX_IN_FLIGHT`: messages a worker may have between claim and recorded outcome,
    /// per channel (also the most a crash can leave `unknown`).
    pub max_in_flight: usize,
    /// `HERALD_WORKER_DEAD_AFTER_SECS`: a worker whose heartbeat is this old is dead; what it
    /// held becomes `unknown`.
    pub worker_dead_after: Duration,
    /// `HERALD_SEND_TIMEOUT_SECS`: how long a provider call may take before its outcome is
    /// treated as unknown.
    pub send_timeout: Duration,
    /// `HERALD_BODY_TIMEOUT_SECS` (default 20): how long a request body may take to arrive
    /// once reading it started; `HERALD_BODY_MIN_RATE` (default 500 bytes a second) adds a
    /// second per that many bytes received, so large uploads are not cut while a trickle is.
    /// Past it the answer is 408 and the connection is closed (`web::body_deadline`).
    pub body_timeout: Duration,
    pub body_min_rate: u64,
    /// `HERALD_CALLBACK_RETRY_BASE_MS` (default 5000): the first retry's delay ceiling for
    /// status callbacks (it doubles up to an hour; retries go on for 24 hours).
    pub callback_retry_base: Duration,
    /// `HERALD_CALLBACK_TIMEOUT_SECS` (default 10): how long a status callback may take.
    pub callback_timeout: Duration,
    /// `HERALD_LOG`: log filter, e.g. `info` or `herald=debug,actix_web=info`.
    pub log_filter: String,
    /// `HERALD_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("bind", &self.bind)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("public_url", &self.public_url)
            .field("workers", &self.workers)
            .field("db_pool_size", &self.db_pool_size)
            .field("trust_proxy", &self.trust_proxy)
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}

/// Hides a password in a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(
            name: &'static str,
            raw: Option<String>,
            default: T,
            what: &str,
        ) -> Result<T, ConfigError> {
            match raw {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError {
                    name,
                    message: format!("\"{v}\" is not {what}"),
                }),
            }
        }

        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let secret_key = get("HERALD_SECRET_KEY");
        if let Some(key) = &secret_key
            && key.len() < crate::auth::keys::MIN_SECRET_LEN
        {
            return Err(ConfigError {
                name: "HERALD_SECRET_KEY",
                message: format!(
                    "must be at least {} characters (it has {}); `openssl rand -base64 48` makes one",
                    crate::auth::keys::MIN_SECRET_LEN,
                    key.len()
                ),
            });
        }
        let public_url =
            get("HERALD_PUBLIC_URL").map(|u| u.trim().trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError {
                name: "HERALD_PUBLIC_URL",
                message: format!("\"{url}\" must start with http:// or https://"),
            });
        }
        let log_format = match get("HERALD_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    name: "HERALD_LOG_FORMAT",
                    message: format!("\"{other}\" is not text or json"),
                });
            }
        };
        let session_hours: u64 = parse(
            "HERALD_SESSION_HOURS",
            get("HERALD_SESSION_HOURS"),
            12,
            "a number of hours",
        )?;
        if session_hours == 0 {
            return Err(ConfigError {
                name: "HERALD_SESSION_HOURS",
                message: "must be at least 1".into(),
            });
        }
        let default_country = match get("HERALD_DEFAULT_COUNTRY") {
            None => crate::domain::phone::DefaultCountry::default(),
            Some(c) => {
                crate::domain::phone::DefaultCountry::parse(&c).map_err(|message| ConfigError {
                    name: "HERALD_DEFAULT_COUNTRY",
                    message,
                })?
            }
        };
        let send_timeout_secs: u64 = parse(
            "HERALD_SEND_TIMEOUT_SECS",
            get("HERALD_SEND_TIMEOUT_SECS"),
            15,
            "a number of seconds",
        )?;
        let max_in_flight: usize = parse(
            "HERALD_MAX_IN_FLIGHT",
            get("HERALD_MAX_IN_FLIGHT"),
            256,
            "a number",
        )?;
        let dead_after: u64 = parse(
            "HERALD_WORKER_DEAD_AFTER_SECS",
            get("HERALD_WORKER_DEAD_AFTER_SECS"),
            10,
            "a number of seconds",
        )?;
        let body_timeout_secs: u64 = parse(
            "HERALD_BODY_TIMEOUT_SECS",
            get("HERALD_BODY_TIMEOUT_SECS"),
            20,
            "a number of seconds",
        )?;
        if body_timeout_secs == 0 {
            return Err(ConfigError {
                name: "HERALD_BODY_TIMEOUT_SECS",
                message: "must be at least 1".into(),
            });
        }
        let body_min_rate: u64 = parse(
            "HERALD_BODY_MIN_RATE",
            get("HERALD_BODY_MIN_RATE"),
            500,
            "a number of bytes a second",
        )?;
        let callback_retry_base_ms: u64 = parse(
            "HERALD_CALLBACK_RETRY_BASE_MS",
            get("HERALD_CALLBACK_RETRY_BASE_MS"),
            5000,
            "a number of milliseconds",
        )?;
        let callback_timeout_secs: u64 = parse(
            "HERALD_CALLBACK_TIMEOUT_SECS",
            get("HERALD_CALLBACK_TIMEOUT_SECS"),
            10,
            "a number of seconds",
        )?;
        Ok(Settings {
            callback_retry_base: Duration::from_millis(callback_retry_base_ms.clamp(1, 3_600_000)),
            callback_timeout: Duration::from_secs(callback_timeout_secs.clamp(1, 120)),
            body_timeout: Duration::from_secs(body_timeout_secs.min(3600)),
            body_min_rate,
            max_in_flight: max_in_flight.clamp(1, 10_000),
            worker_dead_after: Duration::from_secs(dead_after.max(2)),
            metrics_token: get("HERALD_METRICS_TOKEN"),
            run_worker: parse(
                "HERALD_RUN_WORKER",
                get("HERALD_RUN_WORKER"),
                true,
                "true or false",
            )?,
            send_timeout: Duration::from_secs(send_timeout_secs.clamp(1, 300)),
            default_country,
            database_url: get("DATABASE_URL").unwrap_or_else(|| "sqlite://herald.db".into()),
            bind: get("HERALD_BIND").unwrap_or_else(|| "127.0.0.1:8080".into()),
            secret_key,
            public_url,
            workers: parse("HERALD_WORKERS", get("HERALD_WORKERS"), cores, "a number")?.max(1),
            db_pool_size: parse(
                "HERALD_DB_POOL_SIZE",
                get("HERALD_DB_POOL_SIZE"),
                16,
                "a number",
            )?
            .max(2),
            trust_proxy: parse(
                "HERALD_TRUST_PROXY",
                get("HERALD_TRUST_PROXY"),
                false,
                "true or false",
            )?,
            session_ttl: Duration::from_secs(session_hours * 3600),
            log_filter: get("HERALD_LOG").unwrap_or_else(|| "info".into()),
            log_format,
        })
    }

    /// The base URL for links and provider callbacks: `HERALD_PUBLIC_URL`, or `http://` plus
    /// the address actually bound.
    pub fn public_url_for(&self, bound: std::net::SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    /// How long request bodies may take (see `body_timeout`).
    pub fn body_deadline(&self) -> crate::web::body_deadline::BodyDeadline {
        crate::web::body_deadline::BodyDeadline {
            timeout: self.body_timeout,
            min_rate: self.body_min_rate,
        }
    }

    /// Cookies get the Secure flag when people reach Herald over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_run_on_sqlite_on_localhost() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, "sqlite://herald.db");
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert!(s.secret_key.is_none());
        assert_eq!(
            s.public_url_for("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert!(!s.secure_cookies());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = settings(&[("HERALD_WORKERS", "many")]).unwrap_err();
        assert_eq!(e.name, "HERALD_WORKERS");
        assert!(e.to_string().contains("\"many\""));
        assert_eq!(
            settings(&[("HERALD_SECRET_KEY", "short")])
                .unwrap_err()
                .name,
            "HERALD_SECRET_KEY"
        );
        assert_eq!(
            settings(&[("HERALD_PUBLIC_URL", "herald.example")])
                .unwrap_err()
                .name,
            "HERALD_PUBLIC_URL"
        );
        assert_eq!(
            settings(&[("HERALD_LOG_FORMAT", "xml")]).unwrap_err().name,
            "HERALD_LOG_FORMAT"
        );
        assert_eq!(
            settings(&[("HERALD_SESSION_HOURS", "0")]).unwrap_err().name,
            "HERALD_SESSION_HOURS"
        );
        assert_eq!(
            settings(&[("HERALD_BODY_TIMEOUT_SECS", "0")])
                .unwrap_err()
                .name,
            "HERALD_BODY_TIMEOUT_SECS"
        );
        assert_eq!(
            settings(&[("HERALD_BODY_MIN_RATE", "fast")])
                .unwrap_err()
                .name,
            "HERALD_BODY_MIN_RATE"
        );
    }

    #[test]
    fn request_bodies_have_twenty_seconds_plus_a_second_per_500_bytes() {
        let d = settings(&[]).unwrap().body_deadline();
        assert_eq!(d.timeout, Duration::from_secs(20));
        assert_eq!(d.min_rate, 500);
        let s = settings(&[
            ("HERALD_BODY_TIMEOUT_SECS", "5"),
            ("HERALD_BODY_MIN_RATE", "0"),
        ])
        .unwrap();
        assert_eq!(s.body_deadline().timeout, Duration::from_secs(5));
        assert_eq!(s.body_deadline().min_rate, 0);
    }

    #[test]
    fn public_url_is_normalised_and_drives_secure_cookies() {
        let s = settings(&[("HERALD_PUBLIC_URL", "https://herald.example.com/")]).unwrap();
        assert_eq!(s.public_url.as_deref(), Some("https://herald.example.com"));
        assert!(s.secure_cookies());
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact_url("postgres://me:secret@db/herald"),
            "postgres://me:***@db/herald"
        );
        assert_eq!(
            redact_url("postgres://me@db/herald"),
            "postgres://me@db/herald"
        );
        assert_eq!(redact_url("sqlite://herald.db"), "sqlite://herald.db");
    }
}
