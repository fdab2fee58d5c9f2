//! The status-callback worker (issue 19): fans the events the triggers appended out into
//! deliveries and claims them ahead as it writes them, up to [`CLAIM_AHEAD`] per endpoint, then
//! fills the room left with deliveries already due, every endpoint in one statement (a lease,
//! so several workers never deliver one attempt twice and a dead worker's claims come due
//! again), posts them signed by the Standard Webhooks scheme, and settles the attempts in
//! batches, one transaction for many. On SQLite each of these writes takes its turn in the
//! write lane ([`Db::write_beside_lane`]) rather than waiting for the dispatcher's in SQLite's
//! busy handler.
//!
//! Each claimed delivery waits for a permit of its endpoint's semaphore
//! ([`CallbackConfig::per_endpoint`]) and one of the worker's ([`CallbackConfig::overall`]):
//! a slow or dead endpoint holds only its own permits, so the other endpoints and message
//! sending go on (the calls run on their own tasks, and no transaction is open during one).
//! Claims still waiting for their turn have their lease extended while it runs; one whose
//! lease ran out anyway, or whose endpoint went away, is given back untried. Requests never
//! follow redirects, time out, and go only to the address that was checked: names are resolved
//! here, and an endpoint that does not allow private networks never reaches a loopback, private
//! or link-local address, whatever its DNS says between the check and the call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

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

    /// The lease a claim must have left for its call to start: the call's timeout and a
    /// second to record it.
    fn lease_to_start(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.timeout + Duration::from_secs(1))
            .unwrap_or(chrono::TimeDelta::minutes(2))
    }

    /// A waiting claim's lease is extended once less than this is left (half-way between
    /// what a start needs and a whole lease).
    fn extend_below(&self) -> chrono::TimeDelta {
        (self.lease() + self.lease_to_start()) / 2
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
/// How long the recorder waits for more finished calls to settle in one transaction.
const RECORD_LINGER: Duration = Duration::from_millis(20);
/// Deliveries claimed ahead (waiting or under way) per endpoint at most.
pub const CLAIM_AHEAD: usize = 256;
/// Deliveries claimed ahead in all at most.
const HELD_MAX: usize = 1024;
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
    /// Parsed once, not per call.
    url: reqwest::Url,
    /// Why the URL's literal address is refused (checked once: it is never resolved).
    refused: Option<&'static str>,
    allow_private: bool,
    keys: Vec<Vec<u8>>,
    updated_at: chrono::NaiveDateTime,
    /// Until when the rotated-out secret still signs (the keys are rebuilt after).
    keys_until: Option<chrono::NaiveDateTime>,
}

/// What this worker holds claimed, shared by the claimer, the calls and the recorder.
#[derive(Default)]
struct Held {
    /// Claimed and not yet settled, per endpoint.
    per_endpoint: HashMap<i64, usize>,
    /// Claimed and waiting for their turn: each one's lease end, by delivery id. A call takes
    /// its claim out of here when it starts; the claimer extends the leases of the others.
    waiting: HashMap<i64, NaiveDateTime>,
}

type Shared = Arc<Mutex<Held>>;

fn held(shared: &Shared) -> std::sync::MutexGuard<'_, Held> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// What became of a claim.
enum Settled {
    Tried(AttemptOutcome),
    /// Given back untried: its endpoint went away, the worker is stopping, or its lease ran
    /// out before its turn.
    Untried {
        delivery_id: i64,
        endpoint_id: i64,
        attempts: i32,
    },
}

impl Settled {
    fn endpoint_id(&self) -> i64 {
        match self {
            Settled::Tried(o) => o.endpoint_id,
            Settled::Untried { endpoint_id, .. } => *endpoint_id,
        }
    }
}

/// The permits calls wait for: each endpoint's and the worker's. Closing one gives back the
/// claims still waiting on it.
struct Permits {
    overall: Arc<Semaphore>,
    per_endpoint: HashMap<i64, Arc<Semaphore>>,
}

/// Runs until `stop` turns true.
pub async fn run(db: Db, keys: Keys, config: CallbackConfig, mut stop: watch::Receiver<bool>) {
    let clients = match Clients::new(config.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = ?e, "status callbacks cannot start: no HTTP client");
            return;
        }
    };
    let shared: Shared = Arc::default();
    let wake = Arc::new(Notify::new());
    let (done_tx, done_rx) = mpsc::channel::<Settled>(HELD_MAX * 2);
    let recorder = tokio::spawn(record(
        db.clone(),
        done_rx,
        shared.clone(),
        wake.clone(),
        config.retry_base,
    ));
    let mut permits = Permits {
        overall: Arc::new(Semaphore::new(config.overall.max(1))),
        per_endpoint: HashMap::new(),
    };
    let mut targets: HashMap<i64, Arc<Target>> = HashMap::new();
    let mut last_purge = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        let round = Round {
            db: &db,
            keys: &keys,
            config: &config,
            clients: &clients,
            shared: &shared,
            done: &done_tx,
        };
        if let Err(e) = round.step(&mut permits, &mut targets).await {
            tracing::warn!(error = ?e, "status callbacks: a step failed");
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            match db.write_beside_lane(service::purge).await {
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
    // Claims still waiting are given back; calls under way finish (within the timeout) and
    // are recorded; a claim left unsettled comes due again when its lease ends.
    permits.overall.close();
    for p in permits.per_endpoint.values() {
        p.close();
    }
    drop(done_tx);
    let _ = tokio::time::timeout(config.timeout + Duration::from_secs(5), recorder).await;
}

/// What one round works with.
struct Round<'a> {
    db: &'a Db,
    keys: &'a Keys,
    config: &'a CallbackConfig,
    clients: &'a Clients,
    shared: &'a Shared,
    done: &'a mpsc::Sender<Settled>,
}

impl Round<'_> {
    /// Extends the leases of claims about to run out before their turn, then fans out waiting
    /// events, claiming their deliveries ahead for every endpoint with room as they are
    /// written, and the room left with deliveries already due (one statement more).
    async fn step(
        &self,
        permits: &mut Permits,
        targets: &mut HashMap<i64, Arc<Target>>,
    ) -> anyhow::Result<()> {
        let db = self.db;
        let endpoints = db
            .run(|conn| Ok::<_, crate::service::ServiceError>(store::enabled_endpoints(conn)?))
            .await?;
        targets.retain(|id, _| endpoints.iter().any(|e| e.id == *id));
        // An endpoint disabled or deleted: its waiting claims are given back.
        permits.per_endpoint.retain(|id, p| {
            let keep = endpoints.iter().any(|e| e.id == *id);
            if !keep {
                p.close();
            }
            keep
        });
        self.extend_leases().await?;
        let (mut room, mut room_left) = (HashMap::new(), {
            let held = held(self.shared);
            HELD_MAX.saturating_sub(held.per_endpoint.values().sum())
        });
        let mut ready = HashMap::new();
        for endpoint in &endpoints {
            let mine = held(self.shared)
                .per_endpoint
                .get(&endpoint.id)
                .copied()
                .unwrap_or(0);
            // Claim again once half of what was claimed ahead has gone.
            if mine > CLAIM_AHEAD / 2 || room_left == 0 {
                continue;
            }
            let target = match target_for(self.keys, endpoint, targets) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.public_id, error = ?e, "cannot sign for this endpoint");
                    continue;
                }
            };
            let n = (CLAIM_AHEAD - mine).min(room_left);
            room_left -= n;
            room.insert(endpoint.id, n);
            ready.insert(endpoint.id, target);
        }
        let lease_until = now() + self.config.lease();
        let mut claimed = Vec::new();
        loop {
            let offer = room.clone();
            let fanned = db
                .write_beside_lane(move |conn| {
                    service::fan_out(conn, FAN_OUT_BATCH, &offer, lease_until)
                })
                .await;
            // What earlier batches claimed still goes out.
            let fanned = match fanned {
                Ok(f) => f,
                Err(e) if claimed.is_empty() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = ?e, "status callbacks: a fan-out failed");
                    break;
                }
            };
            for d in &fanned.claimed {
                if let Some(n) = room.get_mut(&d.endpoint_id) {
                    *n = n.saturating_sub(1);
                }
            }
            claimed.extend(fanned.claimed);
            if (fanned.events as i64) < FAN_OUT_BATCH {
                break;
            }
        }
        {
            let mut held = held(self.shared);
            for d in &claimed {
                *held.per_endpoint.entry(d.endpoint_id).or_default() += 1;
                held.waiting.insert(d.id, lease_until);
            }
        }
        for delivery in claimed {
            let Some(target) = ready.get(&delivery.endpoint_id).cloned() else {
                // Not asked for (never happens): given back.
                held(self.shared).waiting.remove(&delivery.id);
                let _ = self
                    .done
                    .send(Settled::Untried {
                        delivery_id: delivery.id,
                        endpoint_id: delivery.endpoint_id,
                        attempts: delivery.attempts,
                    })
                    .await;
                continue;
            };
            let mine = permits
                .per_endpoint
                .entry(delivery.endpoint_id)
                .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_endpoint.max(1))))
                .clone();
            let client = if target.allow_private {
                self.clients.any.clone()
            } else {
                self.clients.public_only.clone()
            };
            let call = Call {
                shared: self.shared.clone(),
                done: self.done.clone(),
                lease_to_start: self.config.lease_to_start(),
            };
            tokio::spawn(call.run(mine, permits.overall.clone(), client, target, delivery));
        }
        Ok(())
    }

    /// Extends, in one statement, the leases of waiting claims that would soon be too short
    /// to start; a claim whose lease could not be extended (it ran out: another worker may hold
    /// it now) is dropped from the waiting, and its call gives it back untried.
    async fn extend_leases(&self) -> anyhow::Result<()> {
        let at = now();
        let before = at + self.config.extend_below();
        let due: Vec<i64> = held(self.shared)
            .waiting
            .iter()
            .filter(|(_, lease)| **lease < before)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let lease_until = at + self.config.lease();
        let ids = due.clone();
        let extended = self
            .db
            .write_beside_lane(move |conn| {
                Ok::<_, crate::service::ServiceError>(store::extend_leases(
                    conn,
                    &ids,
                    before,
                    lease_until,
                )?)
            })
            .await?;
        let extended: std::collections::HashSet<i64> = extended.into_iter().collect();
        let mut held = held(self.shared);
        for id in due {
            if extended.contains(&id) {
                if let Some(lease) = held.waiting.get_mut(&id) {
                    *lease = lease_until;
                }
            } else {
                held.waiting.remove(&id);
            }
        }
        Ok(())
    }
}

/// One claimed delivery on its way: waits for its permits, then makes the call if its claim
/// still holds, and hands what became of it to the recorder.
struct Call {
    shared: Shared,
    done: mpsc::Sender<Settled>,
    lease_to_start: chrono::TimeDelta,
}

impl Call {
    async fn run(
        self,
        mine: Arc<Semaphore>,
        overall: Arc<Semaphore>,
        client: reqwest::Client,
        target: Arc<Target>,
        d: DeliveryRow,
    ) {
        let permits = match mine.acquire_owned().await {
            Ok(m) => overall.acquire_owned().await.ok().map(|o| (m, o)),
            Err(_) => None,
        };
        let lease = held(&self.shared).waiting.remove(&d.id);
        let holds = lease.is_some_and(|until| until - now() >= self.lease_to_start);
        let settled = if permits.is_some() && holds {
            Settled::Tried(deliver(&client, &target, d).await)
        } else {
            Settled::Untried {
                delivery_id: d.id,
                endpoint_id: d.endpoint_id,
                attempts: d.attempts,
            }
        };
        let _ = self.done.send(settled).await;
        drop(permits);
    }
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
    let url = reqwest::Url::parse(&endpoint.url)?;
    let target = Arc::new(Target {
        refused: literal_refusal(&url).filter(|_| !endpoint.allows_private_network()),
        url,
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
    if let Some(why) = target.refused {
        outcome.error = Some(rules::private_refusal(why));
        return outcome;
    }
    let sent = client
        .post(target.url.clone())
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

fn literal_refusal(url: &reqwest::Url) -> Option<&'static str> {
    let ip: IpAddr = match url.host()? {
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

/// Settles finished calls and claims given back a batch at a time, in one transaction, then
/// frees their endpoints' room to claim ahead.
async fn record(
    db: Db,
    mut done: mpsc::Receiver<Settled>,
    shared: Shared,
    wake: Arc<Notify>,
    retry_base: Duration,
) {
    while let Some(first) = done.recv().await {
        // Calls finish one by one: what finishes within a short while joins the batch, so a
        // transaction settles many rather than a few.
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + RECORD_LINGER;
        while batch.len() < RECORD_BATCH {
            match tokio::time::timeout_at(until, done.recv()).await {
                Ok(Some(o)) => batch.push(o),
                Ok(None) | Err(_) => break,
            }
        }
        let endpoints: Vec<i64> = batch.iter().map(Settled::endpoint_id).collect();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut released = Vec::new();
        for s in batch {
            match s {
                Settled::Tried(o) => outcomes.push(o),
                Settled::Untried {
                    delivery_id,
                    attempts,
                    ..
                } => released.push((delivery_id, attempts)),
            }
        }
        let (tried, untried) = (outcomes.len(), released.len());
        let written = db
            .write_beside_lane(move |conn| service::settle(conn, &outcomes, &released, retry_base))
            .await;
        if let Err(e) = written {
            // Left as claimed: each comes due again when its lease ends.
            tracing::warn!(error = ?e, tried, untried, "settling callback attempts failed");
        }
        // The claimer is woken only when an endpoint may claim again (a round costs the
        // fan-out's transaction and two reads even when there is nothing to claim).
        let may_claim = {
            let mut held = held(&shared);
            let mut may_claim = false;
            for id in endpoints {
                if let Some(n) = held.per_endpoint.get_mut(&id) {
                    *n = n.saturating_sub(1);
                    may_claim |= *n <= CLAIM_AHEAD / 2;
                    if *n == 0 {
                        held.per_endpoint.remove(&id);
                    }
                }
            }
            may_claim
        };
        if may_claim {
            wake.notify_one();
        }
    }
}
