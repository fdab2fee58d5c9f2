//! Group commit: many small writes from concurrent requests share one transaction.
//!
//! A write handed to [`Db::write_grouped`](super::Db::write_grouped) goes to a *lane*: a thread
//! that takes every write waiting for it, runs them one after the other in one transaction,
//! each in its own savepoint (a write that fails rolls back alone and its caller gets its
//! error), commits once, and only then answers each caller. A caller's `Ok` therefore means
//! its write is committed, exactly as with a transaction of its own; what changes is that 32
//! requests arriving together cost one commit and one turn at SQLite's single write lock
//! instead of 32 turns spent waiting for each other. A lane never waits to fill a batch: a
//! write arriving at an idle lane runs at once, and writes that arrive while a batch commits
//! form the next one.
//!
//! When the batch as a whole fails (its transaction cannot begin or commit, or a fault broke
//! it), every write in it runs again, alone, in a transaction of its own, so one bad write
//! never fails the others. That is why a write is an `FnMut`: it must give the same answer
//! when run again on the database as it then is.
//!
//! SQLite has one lane (it has one writer anyway). PostgreSQL has several, and a write names
//! a `shard` (for example a hash of the recipient) so that writes touching the same rows take
//! the same lane and do not wait on each other's locks.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use tokio::sync::{mpsc, oneshot};

use super::{DbConnection, DbPool, StorageError, write_transaction};

/// The most writes one transaction carries.
const MAX_BATCH: usize = 256;
/// Writes waiting for a lane before callers wait to hand theirs over (backpressure).
const LANE_QUEUE: usize = 4096;

/// One caller's write, as a lane sees it.
trait Job: Send {
    /// Runs the write in a transaction of its own and keeps the outcome: a write alone, or each
    /// write again after its batch failed as a whole.
    fn run(&mut self, conn: &mut DbConnection);
    /// Runs the write in whatever transaction is open (the batch's, inside the savepoint the
    /// lane made for it) and keeps the outcome; true when it succeeded.
    fn run_bare(&mut self, conn: &mut DbConnection) -> bool;
    /// Hands the kept outcome to the caller (after the commit).
    fn answer(self: Box<Self>);
    /// Tells the caller the write could not run at all.
    fn fail(self: Box<Self>, err: StorageError);
}

struct Typed<F, T, E> {
    work: F,
    outcome: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for Typed<F, T, E>
where
    F: FnMut(&mut DbConnection) -> Result<T, E> + Send,
    T: Send,
    E: From<diesel::result::Error> + From<StorageError> + Send,
{
    fn run(&mut self, conn: &mut DbConnection) {
        let work = &mut self.work;
        self.outcome = Some(write_transaction(conn, |c| work(c)));
    }

    fn run_bare(&mut self, conn: &mut DbConnection) -> bool {
        let outcome = (self.work)(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>) {
        // The work (and what it holds) is dropped before the caller hears, so that the caller
        // may take back what it lent it.
        let Typed {
            work,
            outcome,
            reply,
        } = *self;
        drop(work);
        let outcome =
            outcome.unwrap_or_else(|| Err(StorageError::Lane("the write never ran").into()));
        let _ = reply.send(outcome);
    }

    fn fail(self: Box<Self>, err: StorageError) {
        let Typed { work, reply, .. } = *self;
        drop(work);
        let _ = reply.send(Err(err.into()));
    }
}

/// A shard for [`GroupWriter::write`]: the same key always takes the same lane.
pub fn shard_of(key: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The lanes of one pool. Cheap to clone; lanes stop when the last clone is dropped.
#[derive(Clone)]
pub struct GroupWriter {
    lanes: Arc<Vec<mpsc::Sender<Box<dyn Job>>>>,
    /// The lanes `shard` picks from; a lane after them, if any, is the dispatcher's own.
    sharded: usize,
}

impl GroupWriter {
    /// Starts `lanes` lane threads writing through `pool`, plus one more for
    /// [`GroupWriter::write_turn`] when `own_turn_lane`.
    pub fn start(pool: DbPool, lanes: usize, own_turn_lane: bool) -> GroupWriter {
        let sharded = lanes.max(1);
        let senders = (0..sharded + usize::from(own_turn_lane))
            .map(|n| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                let pool = pool.clone();
                std::thread::Builder::new()
                    .name(format!("herald-write-{n}"))
                    .spawn(move || lane(pool, rx))
                    .expect("start a write lane");
                tx
            })
            .collect();
        GroupWriter {
            lanes: Arc::new(senders),
            sharded,
        }
    }

    /// Runs `work` in the lane `shard` picks and answers once its transaction committed.
    pub async fn write<F, T, E>(&self, shard: u64, work: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<StorageError> + Send + 'static,
    {
        self.write_in((shard % self.sharded as u64) as usize, work)
            .await
    }

    /// Runs `work` in the dispatcher's own lane (the last one), or the first when there is
    /// no lane of its own.
    pub async fn write_turn<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<StorageError> + Send + 'static,
    {
        self.write_in(self.lanes.len() - 1, work).await
    }

    async fn write_in<F, T, E>(&self, lane: usize, work: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed {
            work,
            outcome: None,
            reply,
        });
        let lane = &self.lanes[lane];
        if lane.send(job).await.is_err() {
            return Err(StorageError::Lane("the write lane has stopped").into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StorageError::Lane("the write was lost to a fault").into()))
    }
}

/// A lane: batches until every sender is gone.
fn lane(pool: DbPool, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut conn = match pool.get() {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!(error = %e, "a write lane found no database connection");
                for job in batch {
                    job.fail(StorageError::Lane("no database connection available"));
                }
                continue;
            }
        };
        // A panicking write must not take the lane (and every later write) with it.
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| run_batch(&mut conn, &mut batch)));
        match ran {
            Ok(()) => batch.into_iter().for_each(|job| job.answer()),
            Err(_) => {
                tracing::error!(
                    writes = batch.len(),
                    "a write panicked; its batch was abandoned"
                );
                // The connection may be inside a transaction: r2d2 drops it as broken.
                drop(conn);
                for job in batch {
                    job.fail(StorageError::Lane("a write in the same batch panicked"));
                }
            }
        }
    }
}

/// The savepoint each write of a batch runs in, made by the lane (not by Diesel, whose
/// transaction manager would release it in a round trip of its own): between two writes the
/// last one's is released and the next one's made in one round trip, which on PostgreSQL is one
/// of the few a write costs.
const SAVEPOINT: &str = "SAVEPOINT lane_write";
const NEXT: &str = "RELEASE SAVEPOINT lane_write; SAVEPOINT lane_write";
const UNDO: &str = "ROLLBACK TO SAVEPOINT lane_write";

/// Runs the batch in one transaction; when that fails, each write alone.
fn run_batch(conn: &mut DbConnection, batch: &mut [Box<dyn Job>]) {
    if batch.len() == 1 {
        batch[0].run(conn);
        return;
    }
    let together = write_transaction(conn, |conn| {
        let mut step = SAVEPOINT;
        for job in batch.iter_mut() {
            conn.batch_execute(step)?;
            if !job.run_bare(conn) {
                // Undone alone; the savepoint stays, empty, for the next step to release.
                conn.batch_execute(UNDO)?;
            }
            step = NEXT;
        }
        // The last write's savepoint is released by the commit.
        Ok::<_, diesel::result::Error>(())
    });
    if let Err(e) = together {
        tracing::warn!(error = %e, writes = batch.len(), "a grouped transaction failed; its writes run one by one");
        for job in batch.iter_mut() {
            job.run(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    use crate::storage::{Db, DbConnection, StorageError};

    #[derive(Debug)]
    enum Failure {
        Db(diesel::result::Error),
        Storage,
    }

    impl From<diesel::result::Error> for Failure {
        fn from(e: diesel::result::Error) -> Self {
            Failure::Db(e)
        }
    }

    impl From<StorageError> for Failure {
        fn from(_: StorageError) -> Self {
            Failure::Storage
        }
    }

    /// A database with `parents` and `items` (name unique; its parent checked only at commit).
    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("group.db").display());
        let db = Db::connect(&url, 4).expect("db");
        db.get()
            .expect("conn")
            .batch_execute(
                "CREATE TABLE parents (id INTEGER PRIMARY KEY);
                 INSERT INTO parents (id) VALUES (1);
                 CREATE TABLE items (name TEXT NOT NULL UNIQUE,
                   parent INTEGER NOT NULL REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .expect("schema");
        (dir, db)
    }

    fn insert(conn: &mut DbConnection, name: &str, parent: i64) -> QueryResult<usize> {
        diesel::sql_query("INSERT INTO items (name, parent) VALUES ($1, $2)")
            .bind::<Text, _>(name)
            .bind::<BigInt, _>(parent)
            .execute(conn)
    }

    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }

    fn names(db: &Db) -> Vec<String> {
        let mut v: Vec<String> = diesel::sql_query("SELECT name FROM items")
            .load::<Name>(&mut *db.get().expect("conn"))
            .expect("names")
            .into_iter()
            .map(|n| n.name)
            .collect();
        v.sort();
        v
    }

    /// Holds the lane for a moment, so that the writes sent meanwhile form one batch.
    async fn hold_the_lane(db: &Db) -> tokio::task::JoinHandle<Result<(), Failure>> {
        let db = db.clone();
        let (started, wait) = tokio::sync::oneshot::channel::<()>();
        let mut started = Some(started);
        let task = tokio::spawn(async move {
            db.write_grouped(0, move |_conn| {
                if let Some(s) = started.take() {
                    let _ = s.send(());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                Ok::<_, Failure>(())
            })
            .await
        });
        wait.await.expect("the lane took the first write");
        task
    }

    #[tokio::test]
    async fn writes_sent_together_commit_together_and_a_failing_one_fails_alone() {
        let (_dir, db) = db();
        let first = hold_the_lane(&db).await;
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let db = db.clone();
                // Write 7 repeats write 3's name: the unique index refuses it.
                let name = format!("item {}", if i == 7 { 3 } else { i });
                tokio::spawn(async move {
                    db.write_grouped(0, move |conn| Ok::<_, Failure>(insert(conn, &name, 1)?))
                        .await
                })
            })
            .collect();
        first.await.expect("task").expect("first write");
        let mut refused = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if let Err(e) = t.await.expect("task") {
                assert!(
                    matches!(e, Failure::Db(ref d) if crate::storage::is_unique_violation(d)),
                    "{e:?}"
                );
                refused.push(i);
            }
        }
        // Exactly one of the two writes of "item 3" lost (whichever ran second).
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused == [3] || refused == [7], "{refused:?}");
        let mut expected: Vec<String> = (0..40)
            .filter(|i| *i != 7)
            .map(|i| format!("item {i}"))
            .collect();
        expected.sort();
        assert_eq!(names(&db), expected);
    }

    #[tokio::test]
    async fn when_a_batch_cannot_commit_each_write_runs_alone() {
        let (_dir, db) = db();
        let first = hold_the_lane(&db).await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let db = db.clone();
                // Write 5 names a parent that does not exist: only the commit finds out, and
                // it fails the whole batch.
                let parent = if i == 5 { 99 } else { 1 };
                tokio::spawn(async move {
                    db.write_grouped(0, move |conn| {
                        Ok::<_, Failure>(insert(conn, &format!("item {i:02}"), parent)?)
                    })
                    .await
                })
            })
            .collect();
        first.await.expect("task").expect("first write");
        for (i, t) in tasks.into_iter().enumerate() {
            let outcome = t.await.expect("task");
            assert_eq!(outcome.is_err(), i == 5, "write {i}: {outcome:?}");
        }
        let expected: Vec<String> = (0..20)
            .filter(|i| *i != 5)
            .map(|i| format!("item {i:02}"))
            .collect();
        // Each good write is there once: the failed batch left nothing behind.
        assert_eq!(names(&db), expected);
    }

    #[tokio::test]
    async fn a_write_that_fails_after_writing_is_undone_alone() {
        let (_dir, db) = db();
        let first = hold_the_lane(&db).await;
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write_grouped(0, move |conn| {
                        insert(conn, &format!("item {i}"), 1)?;
                        // Writes 3 and 4 (one after the other in the batch) change their mind.
                        if i == 3 || i == 4 {
                            insert(conn, &format!("more {i}"), 1)?;
                            return Err(Failure::Storage);
                        }
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        first.await.expect("task").expect("first write");
        for (i, t) in tasks.into_iter().enumerate() {
            let outcome = t.await.expect("task");
            assert_eq!(outcome.is_err(), i == 3 || i == 4, "write {i}: {outcome:?}");
        }
        let mut expected: Vec<String> = (0..10)
            .filter(|i| *i != 3 && *i != 4)
            .map(|i| format!("item {i}"))
            .collect();
        expected.sort();
        assert_eq!(names(&db), expected);
    }

    #[tokio::test]
    async fn an_answer_means_committed() {
        let (_dir, db) = db();
        db.write_grouped(0, |conn| Ok::<_, Failure>(insert(conn, "alone", 1)?))
            .await
            .expect("written");
        // Another connection sees it at once.
        assert_eq!(names(&db), ["alone"]);
    }
}
