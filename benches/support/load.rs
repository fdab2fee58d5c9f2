//! A lean HTTP/1.1 load generator: `conns` keep-alive connections, each sending its next request
//! as soon as the last answer is read, until `total` requests were sent or `span` passed. Built
//! on hyper's connection API (no pool, no redirects, no decompression), so that on this 2-core
//! machine the generator takes as little CPU as it can from the server it measures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::Percentiles;

/// Builds request number `i` (its URI is a path; the generator adds `Host`).
pub type MakeRequest = dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync;
/// Sees request `i`'s status and body.
pub type OnAnswer = dyn Fn(usize, u16, &Bytes) + Send + Sync;

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Answers by status code.
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no answer (connection refused, reset or closed).
    pub failed: usize,
    pub latency: Percentiles,
    pub mean_ms: f64,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn answered(&self) -> usize {
        self.statuses.values().sum()
    }

    pub fn with_status(&self, code: u16) -> usize {
        self.statuses.get(&code).copied().unwrap_or(0)
    }

    /// Answers per second over the run.
    pub fn rate(&self) -> f64 {
        self.answered() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// `200: 1234, 503: 2` for a report.
    pub fn status_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        if self.failed > 0 {
            parts.push(format!("no answer: {}", self.failed));
        }
        parts.join(", ")
    }
}

/// Runs the load. `total` bounds the requests, `span` the time (whichever comes first).
pub async fn drive(
    addr: SocketAddr,
    conns: usize,
    total: usize,
    span: Option<Duration>,
    make: Arc<MakeRequest>,
    on_answer: Option<Arc<OnAnswer>>,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = span.map(|s| started + s);
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (next, make, on_answer) = (next.clone(), make.clone(), on_answer.clone());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            let mut failed = 0;
            let mut sender = None;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if sender.is_none() {
                    sender = connect(addr).await;
                }
                let Some(s) = sender.as_mut() else {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let mut req = make(i);
                req.headers_mut()
                    .insert(hyper::header::HOST, "127.0.0.1".parse().expect("host"));
                let t = Instant::now();
                let answer = match s.send_request(req).await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        res.into_body()
                            .collect()
                            .await
                            .map(|b| (status, b.to_bytes()))
                            .ok()
                    }
                    Err(_) => None,
                };
                match answer {
                    Some((status, body)) => {
                        ms.push(t.elapsed().as_secs_f64() * 1000.0);
                        *statuses.entry(status).or_default() += 1;
                        if let Some(f) = &on_answer {
                            f(i, status, &body);
                        }
                    }
                    None => {
                        failed += 1;
                        sender = None;
                    }
                }
            }
            (ms, statuses, failed)
        }));
    }
    let mut all_ms = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failed = 0;
    for t in tasks {
        let (ms, s, f) = t.await.expect("load task");
        all_ms.extend(ms);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        failed += f;
    }
    let elapsed = started.elapsed();
    let mean_ms = all_ms.iter().sum::<f64>() / all_ms.len().max(1) as f64;
    Outcome {
        statuses,
        failed,
        latency: Percentiles::of(all_ms, failed),
        mean_ms,
        elapsed,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

/// A request with a body and content type.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if let Some(ct) = content_type {
        b = b.header(hyper::header::CONTENT_TYPE, ct);
    }
    b.body(Full::new(body.into())).expect("request")
}

/// An open-loop load: request `i` is due at `i / rate` seconds after the start, whatever became
/// of the ones before (a sender such as a shop does not wait for Herald), over `conns`
/// keep-alive connections, until `rate * span` requests were sent. A request's latency counts
/// from when it was due, so time spent waiting for a free connection is not hidden
/// (coordinated omission).
pub async fn paced(
    addr: SocketAddr,
    conns: usize,
    rate: f64,
    span: Duration,
    make: Arc<MakeRequest>,
) -> Outcome {
    let total = (rate * span.as_secs_f64()).round() as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (next, make) = (next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            let mut failed = 0;
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                if sender.is_none() {
                    sender = connect(addr).await;
                }
                let Some(s) = sender.as_mut() else {
                    failed += 1;
                    continue;
                };
                let mut req = make(i);
                req.headers_mut()
                    .insert(hyper::header::HOST, "127.0.0.1".parse().expect("host"));
                let answer = match s.send_request(req).await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        res.into_body().collect().await.map(|_| status).ok()
                    }
                    Err(_) => None,
                };
                match answer {
                    Some(status) => {
                        ms.push(due.elapsed().as_secs_f64() * 1000.0);
                        *statuses.entry(status).or_default() += 1;
                    }
                    None => {
                        failed += 1;
                        sender = None;
                    }
                }
            }
            (ms, statuses, failed)
        }));
    }
    let mut all_ms = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failed = 0;
    for t in tasks {
        let (ms, s, f) = t.await.expect("load task");
        all_ms.extend(ms);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        failed += f;
    }
    let elapsed = started.elapsed();
    let mean_ms = all_ms.iter().sum::<f64>() / all_ms.len().max(1) as f64;
    Outcome {
        statuses,
        failed,
        latency: Percentiles::of(all_ms, failed),
        mean_ms,
        elapsed,
    }
}
