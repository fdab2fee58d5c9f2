//! The status-callback worker (issue 19): fans the events the triggers appended out into
//! deliveries, claims due deliveries per endpoint (a lease, so several workers never deliver
//! one attempt twice and a dead worker's claims come due again), posts them signed by the
//! Standard Webhooks scheme, and records each attempt in batches.
//!
//! A slow or dead endpoint holds at most [`CallbackConfig::per_endpoint`] requests of this
//! worker; the others and message sending go on (the calls run on their own tasks, and no
//! transaction is open during one). Requests never follow redirects, time out, and go only to
//! the address that was checked: names are resolved here, and an endpoint that does not allow
//! private networks never reaches a loopback, private or link-local address, whatever its DNS
//! says between the check and the call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};

use crate::auth::keys::Keys;
use crate::domain::callbacks::{self as rules, refused_address};
use crate::service::callbacks::{self as service, AttemptOutcome};
use crate::storage::callbacks::{self as store, DeliveryRow, Endpoint};
use crate::storage::{Db, now};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// Ceiling of the first retry's delay (it doubles up to an hour).
    pub retry_base: Duration,
    /// How long one request may take, answer included.
    pub timeout: Duration,
    /// Requests this worker has open to one endpoint at most.
    pub per_endpoint: usize,
    /// Requests this worker has open in all at most.
    pub overall: usize,
    /// How often it looks for events and due deliveries when nothing woke it.
    pub poll: Duration,
}

impl CallbackConfig {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        CallbackConfig {
            retry_base: settings.callback_retry_base,
            timeout: settings.callback_timeout,
            per_endpoint: 16,
            overall: 256,
            poll: Duration::from_millis(200),
        }
    }

    /// A claim lasts twice the request's timeout (and a second), so only a dead worker's
    /// claims come due again (if recording one took longer still, it is delivered again: at
    /// least once, with the same `webhook-id`).
    fn lease(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.timeout * 2 + Duration::from_secs(1))
            .unwrap_or(chrono::TimeDelta::minutes(5))
    }
}

/// What starts the worker: `herald serve` (with `HERALD_RUN_WORKER`) and `herald worker`.
#[derive(Clone)]
pub struct CallbackWorker {
    pub db: Db,
    pub keys: Keys,
    pub config: CallbackConfig,
}

impl CallbackWorker {
    pub fn spawn(&self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(
            self.db.clone(),
            self.keys.clone(),
            self.config.clone(),
            stop,
        ))
    }
}

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 500;
/// Attempts recorded per transaction at most.
const RECORD_BATCH: usize = 256;
/// How often finished deliveries past retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// A resolver that drops the addresses callbacks may not go to (and fails when none is left),
/// so the connection goes to an address that was checked (no DNS rebinding in between).
struct PublicOnly;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The addresses `host` resolves to that callbacks may go to.
async fn public_addresses(host: String) -> Result<reqwest::dns::Addrs, BoxError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| refused_address(a.ip()).is_none())
        .collect();
    if allowed.is_empty() {
        let why = found
            .first()
            .and_then(|a| refused_address(a.ip()))
            .unwrap_or("no address");
        return Err(rules::private_refusal(why).into());
    }
    Ok(Box::new(allowed.into_iter()))
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(public_addresses(name.as_str().to_owned()))
    }
}

/// The two HTTP clients: one that reaches public addresses only, one for endpoints that allow
/// private networks.
#[derive(Clone)]
struct Clients {
    public_only: reqwest::Client,
    any: reqwest::Client,
}

impl Clients {
    fn new(timeout: Duration) -> anyhow::Result<Self> {
        let build = |guarded: bool| {
            let mut b = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .user_agent("Herald-Webhooks/1");
            if guarded {
                b = b.dns_resolver(PublicOnly);
            }
            b.build()
        };
        Ok(Clients {
            public_only: build(true)?,
            any: build(false)?,
        })
    }
}

/// An endpoint as the calls need it, rebuilt when the endpoint changes.
struct Target {
    url: String,
    allow_private: bool,
    keys: Vec<Vec<u8>>,
    updated_at: chrono::NaiveDateTime,
    /// Until when the rotated-out secret still signs (the keys are rebuilt after).
    keys_until: Option<chrono::NaiveDateTime>,
}

/// Requests open per endpoint, shared with the recorder (which frees them).
type Open = Arc<Mutex<HashMap<i64, usize>>>;

/// Runs until `stop` turns true.
pub async fn run(db: Db, keys: Keys, config: CallbackConfig, mut stop: watch::Receiver<bool>) {
    let clients = match Clients::new(config.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = ?e, "status callbacks cannot start: no HTTP client");
            return;
        }
    };
    let open: Open = Arc::default();
    let wake = Arc::new(Notify::new());
    let (done_tx, done_rx) = mpsc::channel::<AttemptOutcome>(4096);
    let recorder = tokio::spawn(record(
        db.clone(),
        done_rx,
        open.clone(),
        wake.clone(),
        config.retry_base,
    ));
    let mut targets: HashMap<i64, Arc<Target>> = HashMap::new();
    let mut last_purge = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(e) = step(&db, &keys, &config, &clients, &open, &done_tx, &mut targets).await {
            tracing::warn!(error = ?e, "status callbacks: a step failed");
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            match db.run(service::purge).await {
                Ok(n) if n > 0 => tracing::info!(deliveries = n, "purged old callback deliveries"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "purging callback deliveries failed"),
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
    drop(done_tx);
    // Calls under way finish (within the timeout) and are recorded; a claim left unrecorded
    // comes due again when its lease ends.
    let _ = tokio::time::timeout(config.timeout + Duration::from_secs(5), recorder).await;
}

/// One round: fan out waiting events, then claim and start what each endpoint has room for.
async fn step(
    db: &Db,
    keys: &Keys,
    config: &CallbackConfig,
    clients: &Clients,
    open: &Open,
    done: &mpsc::Sender<AttemptOutcome>,
    targets: &mut HashMap<i64, Arc<Target>>,
) -> anyhow::Result<()> {
    loop {
        let taken = db.run(|conn| service::fan_out(conn, FAN_OUT_BATCH)).await?;
        if (taken as i64) < FAN_OUT_BATCH {
            break;
        }
    }
    let endpoints = db
        .run(|conn| Ok::<_, crate::service::ServiceError>(store::enabled_endpoints(conn)?))
        .await?;
    targets.retain(|id, _| endpoints.iter().any(|e| e.id == *id));
    for endpoint in endpoints {
        let (room, total) = {
            let open = open.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = open.values().sum();
            let mine = open.get(&endpoint.id).copied().unwrap_or(0);
            (
                config
                    .per_endpoint
                    .saturating_sub(mine)
                    .min(config.overall.saturating_sub(total)),
                total,
            )
        };
        if room == 0 || total >= config.overall {
            continue;
        }
        let target = match target_for(keys, &endpoint, targets) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(endpoint = %endpoint.public_id, error = ?e, "cannot sign for this endpoint");
                continue;
            }
        };
        let id = endpoint.id;
        let lease_until = now() + config.lease();
        let claimed = db
            .run(move |conn| {
                Ok::<_, crate::service::ServiceError>(store::claim(
                    conn,
                    id,
                    room as i64,
                    lease_until,
                )?)
            })
            .await?;
        if claimed.is_empty() {
            continue;
        }
        *open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default() += claimed.len();
        for delivery in claimed {
            let target = target.clone();
            let client = if target.allow_private {
                clients.any.clone()
            } else {
                clients.public_only.clone()
            };
            let done = done.clone();
            tokio::spawn(async move {
                let outcome = deliver(&client, &target, delivery).await;
                let _ = done.send(outcome).await;
            });
        }
    }
    Ok(())
}

fn target_for(
    keys: &Keys,
    endpoint: &Endpoint,
    targets: &mut HashMap<i64, Arc<Target>>,
) -> anyhow::Result<Arc<Target>> {
    let at = now();
    if let Some(t) = targets.get(&endpoint.id)
        && t.updated_at == endpoint.updated_at
        && t.keys_until.is_none_or(|until| until > at)
    {
        return Ok(t.clone());
    }
    let target = Arc::new(Target {
        url: endpoint.url.clone(),
        allow_private: endpoint.allows_private_network(),
        keys: service::signing_keys(keys, endpoint)?,
        updated_at: endpoint.updated_at,
        keys_until: endpoint.previous_secret_until.filter(|u| *u > at),
    });
    targets.insert(endpoint.id, target.clone());
    Ok(target)
}

/// Posts one delivery and says what came back. No database work here.
async fn deliver(client: &reqwest::Client, target: &Target, d: DeliveryRow) -> AttemptOutcome {
    let attempted_at = now();
    let started = Instant::now();
    let timestamp = chrono::Utc::now().timestamp();
    let signature =
        rules::signature_header(&target.keys, &d.webhook_id, timestamp, d.payload.as_bytes());
    let mut outcome = AttemptOutcome {
        delivery_id: d.id,
        endpoint_id: d.endpoint_id,
        attempts: d.attempts,
        created_at: d.created_at,
        attempted_at,
        status: None,
        duration_ms: 0,
        excerpt: String::new(),
        error: None,
        retry_after: None,
    };
    // A literal address is never resolved, so it is checked here.
    if !target.allow_private
        && let Some(why) = literal_refusal(&target.url)
    {
        outcome.error = Some(rules::private_refusal(why));
        return outcome;
    }
    let sent = client
        .post(&target.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload)
        .send()
        .await;
    match sent {
        Ok(mut res) => {
            outcome.status = Some(res.status().as_u16());
            outcome.retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::channels::wire::parse_retry_after);
            let mut head = Vec::new();
            while head.len() < rules::EXCERPT_BYTES {
                match res.chunk().await {
                    Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) => {
                        outcome.error = Some(format!("reading the answer failed: {e}"));
                        break;
                    }
                }
            }
            outcome.excerpt = rules::excerpt(&head);
        }
        Err(e) => outcome.error = Some(describe(&e)),
    }
    outcome.duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    outcome
}

fn literal_refusal(url: &str) -> Option<&'static str> {
    let parsed = url::Url::parse(url).ok()?;
    let ip: IpAddr = match parsed.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    refused_address(ip)
}

/// Words for a failed call, with the cause (reqwest's own message hides it).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut words = kind.to_owned();
    let mut cause = e.source();
    while let Some(c) = cause {
        words.push_str(": ");
        words.push_str(&c.to_string());
        cause = c.source();
    }
    words.chars().take(500).collect()
}

/// Records finished attempts a batch at a time, then frees their endpoints' room.
async fn record(
    db: Db,
    mut done: mpsc::Receiver<AttemptOutcome>,
    open: Open,
    wake: Arc<Notify>,
    retry_base: Duration,
) {
    while let Some(first) = done.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match done.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let endpoints: Vec<i64> = batch.iter().map(|o| o.endpoint_id).collect();
        let written = {
            let batch = batch.clone();
            db.run(move |conn| service::record_attempts(conn, &batch, retry_base))
                .await
        };
        if let Err(e) = written {
            // Left as claimed: each comes due again when its lease ends.
            tracing::warn!(error = ?e, attempts = batch.len(), "recording callback attempts failed");
        }
        {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            for id in endpoints {
                if let Some(n) = open.get_mut(&id) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        wake.notify_one();
    }
}
