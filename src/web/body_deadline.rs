//! A time limit on reading every request's body, whichever extractor, middleware or handler
//! reads it. actix-web bounds only the wait for the request head (`client_request_timeout`)
//! and idle keep-alive connections; a client that sends its headers and then trickles the body
//! (a byte every few seconds) would otherwise hold a connection and a handler for ever.
//!
//! The rule (Apache's `mod_reqtimeout` `body=20,MinRate=500`): from the moment the body is
//! first read, it has [`BodyDeadline::timeout`] to arrive, extended by one second for every
//! [`BodyDeadline::min_rate`] bytes received, so a large upload on a working connection is never
//! cut while a trickle is. Only waiting on the client counts: bytes already received are handed
//! over whatever the clock says. When the time is up, the reader gets an error and the answer
//! is `408 Request Timeout` with `Connection: close` (the rest of the body is never read).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONNECTION, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use futures_util::stream::Stream;
use tokio::time::{Instant, Sleep};

use crate::startup::AppState;

/// How long a request body may take to arrive (`HERALD_BODY_TIMEOUT_SECS`,
/// `HERALD_BODY_MIN_RATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadline {
    /// The time the body has, from its first read.
    pub timeout: Duration,
    /// Each this many bytes received add a second (0: a fixed time, whatever the size).
    pub min_rate: u64,
}

impl BodyDeadline {
    /// The time allowed for a body of which `received` bytes arrived so far.
    pub fn allowed(&self, received: u64) -> Duration {
        if self.min_rate == 0 {
            return self.timeout;
        }
        // Whole seconds only: cheap, and a second either way does not matter here.
        self.timeout
            .saturating_add(Duration::from_secs(received / self.min_rate))
    }
}

/// A request body with a deadline (see the module documentation).
struct TimedBody {
    inner: Payload,
    limit: BodyDeadline,
    started: Option<Instant>,
    received: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
    done: bool,
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the timer is boxed).
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received = this.received.saturating_add(chunk.len() as u64);
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(other) => {
                if !matches!(other, Some(Ok(_))) {
                    this.done = true;
                }
                return Poll::Ready(other);
            }
            Poll::Pending => {}
        }
        let deadline = started + this.limit.allowed(this.received);
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.done = true;
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The middleware: wraps the body of every request that has one, and answers 408 with
/// `Connection: close` when its time ran out, whatever the reader made of the error.
pub async fn bound(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.body_deadline());
    let payload = req.take_payload();
    let expired = Arc::new(AtomicBool::new(false));
    match (limit, payload) {
        (_, Payload::None) => req.set_payload(Payload::None),
        (Some(limit), payload) => {
            let timed = TimedBody {
                inner: payload,
                limit,
                started: None,
                received: 0,
                sleep: None,
                expired: expired.clone(),
                done: false,
            };
            req.set_payload(Payload::from(
                Box::pin(timed) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
            ));
        }
        (None, payload) => req.set_payload(payload),
    }
    let res = next.call(req).await;
    if !expired.load(Ordering::Relaxed) {
        return res.map(ServiceResponse::map_into_left_body);
    }
    let req = match res {
        Ok(res) => res.into_parts().0,
        Err(e) => {
            // The reader's error is already logged by whoever made it; the answer is ours.
            tracing::debug!(error = %e, "request body timed out");
            return Err(e);
        }
    };
    tracing::warn!(path = %req.path(), "a request body did not arrive in time; the connection is closed");
    let mut answer = crate::error::json_error(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "The request body did not arrive in time.",
    );
    answer
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    answer
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(ServiceResponse::new(req, answer).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_bodies_earn_time_and_trickles_do_not() {
        let d = BodyDeadline {
            timeout: Duration::from_secs(20),
            min_rate: 500,
        };
        assert_eq!(d.allowed(0), Duration::from_secs(20));
        assert_eq!(d.allowed(499), Duration::from_secs(20));
        // 50 MB at any working speed: far more time than it needs.
        assert_eq!(d.allowed(50_000_000), Duration::from_secs(100_020));
        let fixed = BodyDeadline { min_rate: 0, ..d };
        assert_eq!(fixed.allowed(50_000_000), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_at_its_deadline_and_what_arrived_is_kept() {
        use futures_util::StreamExt;
        // One byte, then nothing more: a client that stopped sending.
        let trickle = futures_util::stream::iter([Ok::<_, PayloadError>(Bytes::from_static(b"a"))])
            .chain(futures_util::stream::pending());
        let expired = Arc::new(AtomicBool::new(false));
        let mut body = TimedBody {
            inner: Payload::from(
                Box::pin(trickle) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
            ),
            limit: BodyDeadline {
                timeout: Duration::from_secs(2),
                min_rate: 0,
            },
            started: None,
            received: 0,
            sleep: None,
            expired: expired.clone(),
            done: false,
        };
        assert_eq!(
            body.next().await.unwrap().unwrap(),
            Bytes::from_static(b"a")
        );
        let started = Instant::now();
        let cut = body.next().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(cut.to_string().contains("did not arrive in time"), "{cut}");
        assert!(expired.load(Ordering::Relaxed));
        assert!(body.next().await.is_none());
    }
}
