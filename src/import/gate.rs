//! How many contact imports run at once. An import holds a database connection and writes a
//! thousand rows per transaction for as long as its upload lasts: twenty at once took every
//! pooled connection (the rest of Herald, `/healthz` included, waited for one) and, on SQLite,
//! starved some writers of the lock until they failed with "database is locked". A few run
//! at once; the next ones queue in arrival order for a bounded time, and past that (or past a
//! bounded queue) the import is refused before it writes anything, with a time to retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::storage::Backend;

/// Imports queued beyond those running; more are refused at once.
const MAX_WAITING: usize = 32;
/// How long a queued import waits for its turn.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub struct ImportGate {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
}

/// The right to run one import; dropping it lets the next one in.
#[derive(Debug)]
pub struct ImportPermit {
    _running: OwnedSemaphorePermit,
}

/// Too many imports at once: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "Other imports are running; this one could not start within {} seconds. Try again in {} seconds.",
    .waited.as_secs(),
    .retry_after.as_secs()
)]
pub struct Busy {
    pub waited: Duration,
    pub retry_after: Duration,
}

impl ImportGate {
    pub fn new(at_once: usize, max_waiting: usize, max_wait: Duration) -> Self {
        ImportGate {
            running: Arc::new(Semaphore::new(at_once.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    /// SQLite has one writer at a time: two imports keep it busy (one parses while the other
    /// writes). PostgreSQL takes four. Either way they use at most a quarter of the pool, so
    /// pages, the API and the dispatcher always find connections.
    pub fn for_database(backend: Backend, pool_size: u32) -> Self {
        let preferred = match backend {
            Backend::Sqlite => 2,
            Backend::Postgres => 4,
        };
        let quarter = usize::try_from(pool_size / 4).unwrap_or(1);
        ImportGate::new(preferred.min(quarter), MAX_WAITING, MAX_WAIT)
    }

    /// Waits for a turn (in arrival order, at most `max_wait`), or says when to try again.
    pub async fn enter(&self) -> Result<ImportPermit, Busy> {
        if let Ok(permit) = self.running.clone().try_acquire_owned() {
            return Ok(ImportPermit { _running: permit });
        }
        let busy = Busy {
            waited: self.max_wait,
            retry_after: self.max_wait,
        };
        let queued = Queued::join(&self.waiting);
        if queued.ahead >= self.max_waiting {
            return Err(Busy {
                waited: Duration::ZERO,
                ..busy
            });
        }
        match tokio::time::timeout(self.max_wait, self.running.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(ImportPermit { _running: permit }),
            // Timed out (or the semaphore closed, which Herald never does).
            _ => Err(busy),
        }
    }
}

/// One place in the queue, left when dropped (also when the request goes away).
struct Queued<'a> {
    counter: &'a AtomicUsize,
    ahead: usize,
}

impl<'a> Queued<'a> {
    fn join(counter: &'a AtomicUsize) -> Self {
        let ahead = counter.fetch_add(1, Ordering::SeqCst);
        Queued { counter, ahead }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn imports_beyond_the_limit_wait_their_turn_then_are_refused() {
        let gate = ImportGate::new(1, 1, Duration::from_millis(200));
        let first = gate.enter().await.unwrap();
        // A second waits, and gets in when the first finishes.
        let (second, ()) = tokio::join!(gate.enter(), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(first);
        });
        let second = second.unwrap();
        // A third waits its bounded time and is refused; a fourth, beyond the queue, at once.
        let started = std::time::Instant::now();
        let (third, fourth) = tokio::join!(gate.enter(), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            gate.enter().await
        });
        assert_eq!(third.unwrap_err().retry_after, Duration::from_millis(200));
        assert_eq!(fourth.unwrap_err().waited, Duration::ZERO);
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(second);
        assert!(gate.enter().await.is_ok(), "the queue empties");
    }

    #[test]
    fn imports_use_at_most_a_quarter_of_the_pool() {
        let at_once = |g: ImportGate| g.running.available_permits();
        assert_eq!(at_once(ImportGate::for_database(Backend::Sqlite, 16)), 2);
        assert_eq!(at_once(ImportGate::for_database(Backend::Postgres, 16)), 4);
        assert_eq!(at_once(ImportGate::for_database(Backend::Postgres, 4)), 1);
        assert_eq!(at_once(ImportGate::for_database(Backend::Sqlite, 1)), 1);
    }
}
