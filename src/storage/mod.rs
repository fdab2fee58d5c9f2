//! Storage: the only place that writes SQL. One code base for SQLite and PostgreSQL through a
//! Diesel `MultiConnection`; where the dialects really differ, the function matches on the variant.

pub mod api_keys;
pub mod audit;
pub mod broadcast_csv;
// Issue 18: broadcast results (replies, failures, recipient table, follow-ups).
pub mod broadcast_results;
pub mod broadcast_zones;
pub mod broadcasts;
// Issue 19: status callbacks to the business.
pub mod callbacks;
pub mod channels;
pub mod consents;
pub mod contacts;
pub mod conversations;
pub mod group;
// issue 18: the send history
pub mod history;
// Issue 19: idempotency keys and the shared rate-limit counters.
pub mod idempotency;
pub mod imports;
pub mod lists;
pub mod login_attempts;
pub mod message_counts;
pub mod rate_limits;
// Issue 18: message detail reads and retention.
pub mod message_detail;
pub mod messages;
pub mod outbox;
pub mod prepared;
pub mod receipts;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod templates;
// Issue 20: triggers.
pub mod reminders;
pub mod triggers;
pub mod users;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Runs the same Diesel expression against whichever backend the connection is, for the
/// statements a MultiConnection cannot express (upserts, insert-or-ignore). The body is
/// type-checked once per backend.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::storage::DbConnection::Sqlite($c) => $body,
            $crate::storage::DbConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_backend;

/// A connection to whichever database `DATABASE_URL` names.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        }
    }
}

/// A database location parsed from a URL: `postgres://` / `postgresql://` for PostgreSQL;
/// `sqlite://path`, `sqlite:path` or a bare path for SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("DATABASE_URL is empty".into());
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            return Err(format!("DATABASE_URL \"{url}\" names no SQLite file"));
        }
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(format!(
                "DATABASE_URL scheme \"{scheme}\" is not supported: use postgres:// or sqlite://"
            ));
        }
        Ok(DatabaseUrl::Sqlite(path.to_owned()))
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Postgres(_) => Backend::Postgres,
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// r2d2 manager that opens the right connection for the URL and applies SQLite's pragmas.
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let mut conn =
                    diesel::PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                // Herald's statements are short. PostgreSQL compiles any plan whose estimated
                // cost passes `jit_above_cost`; while a big queue drained, stale statistics
                // pushed a 0.3 ms look-up over it and each call spent 8 ms compiling.
                conn.batch_execute("SET jit = off")
                    .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Postgres(conn))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(path)
                    .map_err(r2d2::Error::ConnectionError)?;
                // WAL is on already (see `Db::connect`); asking again is a cheap no-op that
                // also covers a file replaced under a running process.
                // temp_store = MEMORY keeps the savepoint journal (every page a grouped write
                // changes is copied there first) in memory rather than in a temporary file: in
                // a burst of API sends those writes were a fifth of the write lane's time.
                // cache_size = -512: each pooled connection keeps at most 512 KiB of pages
                // (SQLite's default is 2 MB) — with 16 connections the default alone could
                // hold 32 MB, and the server passed 150 MB during a broadcast of a million
                // (255 MiB, then 154 MiB once the lane took the broadcast's writes; 115 MiB
                // with this, sending no slower). The OS page cache still holds the file.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000;
                     PRAGMA journal_mode = WAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA temp_store = MEMORY;
                     PRAGMA cache_size = -512;",
                )
                .map_err(r2d2::Error::QueryError)?;
                // A new public id per call (never folded into one value per statement), so
                // that a statement can write many rows with ids of their own
                // (`broadcasts::queue_text`).
                herald_public_id_utils::register_nondeterministic_impl(&conn, new_public_id)
                    .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        match conn {
            DbConnection::Postgres(c) => c.is_broken(),
            DbConnection::Sqlite(c) => c.is_broken(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("grouped write failed: {0}")]
    Lane(&'static str),
}

pub type DbPool = Pool<ConnectionManager>;
pub type PooledDb = PooledConnection<ConnectionManager>;

/// The pool plus the knowledge of which backend it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    backend: Backend,
    /// The group-commit lanes, started on the first grouped write.
    writer: Arc<OnceLock<group::GroupWriter>>,
}

impl Db {
    /// Opens a pool. Blocking: call it before the runtime serves requests or in `spawn_blocking`.
    pub fn connect(url: &str, max_size: u32) -> anyhow::Result<Self> {
        let url = DatabaseUrl::parse(url).map_err(anyhow::Error::msg)?;
        let backend = url.backend();
        if let DatabaseUrl::Sqlite(path) = &url {
            // WAL is a property of the file: switch it once, alone, before the pool opens its
            // connections together (several switching at once is "database is locked").
            diesel::SqliteConnection::establish(path)?
                .batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?;
        }
        let pool = Pool::builder()
            .max_size(max_size)
            .connection_timeout(Duration::from_secs(10))
            // No `SELECT 1` before every use (the default): a broken connection fails its
            // query, r2d2 drops it, and the caller's error says so.
            .test_on_check_out(false)
            .build(ConnectionManager { url })
            .map_err(|e| anyhow::anyhow!("cannot open the {} database: {e}", backend.name()))?;
        Ok(Db {
            pool,
            backend,
            writer: Arc::new(OnceLock::new()),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for blocking code (CLI commands, the worker's blocking side).
    pub fn get(&self) -> Result<PooledDb, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking database work on the blocking thread pool.
    pub async fn run<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(StorageError::from)?;
            work(&mut conn)
        })
        .await
        .map_err(StorageError::from)?
    }

    /// Runs a small write together with others arriving at the same time, in one transaction
    /// (each in its own savepoint), and answers once it is committed: see [`group`]. `shard`
    /// keeps writes that touch the same rows on the same lane. `work` may run twice (once in
    /// its batch, once alone if the batch as a whole failed), each time in a transaction that
    /// is rolled back unless it returns `Ok`.
    pub async fn write_grouped<F, T, E>(&self, shard: u64, work: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<StorageError> + Send + 'static,
    {
        self.group_writer().write(shard, work).await
    }

    fn group_writer(&self) -> &group::GroupWriter {
        let (lanes, own_turn_lane) = match self.backend {
            // One writer at a time is all SQLite allows: everything shares its one lane.
            Backend::Sqlite => (1, false),
            // Enough to keep the server busy while each lane waits on its round trips, and one
            // more for the dispatcher's turns (see `write_turn`).
            Backend::Postgres => ((self.pool.max_size() as usize / 4).clamp(1, 4), true),
        };
        self.writer
            .get_or_init(|| group::GroupWriter::start(self.pool.clone(), lanes, own_turn_lane))
    }

    /// The dispatcher's claims and records, and other writes that must never wait for a turn
    /// in a busy database: they take their turn in the write lanes, with the grouped writes.
    /// On SQLite a connection that finds the write lock taken sleeps 1, 2, 5, 10… ms before
    /// trying again, stalling every request queued behind it; on PostgreSQL each claim takes
    /// its channel's schedule row, and claims committing one by one queued on that row lock
    /// (`pg_stat_statements`: a mean of 1.4 ms per update during a burst of API sends). On
    /// PostgreSQL the turns have a lane of their own: in a lane shared with sends, a claim held
    /// that row (and its messages) until up to 255 unrelated writes after it had run and the
    /// batch committed, and the next claim or re-slot waited for all of them (15 ms a schedule
    /// update on average during 1,000 trigger events a second).
    pub async fn write_turn<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<StorageError> + Send + 'static,
    {
        self.group_writer().write_turn(work).await
    }

    /// A background worker's batch write (a broadcast step, the status callbacks' fan-out,
    /// claims and records): on SQLite it takes its turn in the write lane ([`Db::write_turn`];
    /// its transaction is a savepoint in the lane's), because a batch written on a connection
    /// of its own beside the lane made each side wait for the other in SQLite's busy handler
    /// (1, 2, 5, 10… ms sleeps), stalling the dispatcher. PostgreSQL writers do not exclude
    /// each other: there it keeps a connection and transaction of its own ([`Db::run`]).
    pub async fn write_beside_lane<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<StorageError> + Send + 'static,
    {
        match self.backend {
            Backend::Sqlite => self.write_turn(work).await,
            Backend::Postgres => self.run(work).await,
        }
    }
}

/// Applies pending migrations and returns their names. On PostgreSQL an advisory lock keeps
/// several instances starting together from racing.
pub fn run_migrations(conn: &mut DbConnection) -> anyhow::Result<Vec<String>> {
    let applied = match conn {
        DbConnection::Sqlite(c) => {
            let applied = c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("SQLite migrations failed: {e}"))?
                .iter()
                .map(|v| v.to_string())
                .collect();
            backfill(conn)?;
            applied
        }
        DbConnection::Postgres(c) => {
            c.batch_execute("SELECT pg_advisory_lock(7243601)")?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|vs| vs.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                .map_err(|e| anyhow::anyhow!("PostgreSQL migrations failed: {e}"));
            let filled = match &result {
                Ok(_) => backfill(conn),
                Err(_) => Ok(()),
            };
            if let DbConnection::Postgres(c) = conn {
                c.batch_execute("SELECT pg_advisory_unlock(7243601)")?;
            }
            filled?;
            result?
        }
    };
    Ok(applied)
}

/// What a migration needs from Rust once its SQL ran: the folded search text of contacts
/// stored before the column existed (SQL cannot fold accents portably).
fn backfill(conn: &mut DbConnection) -> anyhow::Result<()> {
    let folded = contacts::backfill_search_text(conn)
        .map_err(|e| anyhow::anyhow!("folding the contacts' search text failed: {e}"))?;
    if folded > 0 {
        tracing::info!(
            contacts = folded,
            "folded the search text of existing contacts"
        );
    }
    Ok(())
}

/// Runs `work` in a transaction that writes. On SQLite it begins `IMMEDIATE`, taking the write
/// lock up front: a plain (deferred) transaction that reads and then writes fails at once with
/// "database is locked" when another connection wrote in between, whatever the busy timeout,
/// while an immediate one waits its turn. Inside another transaction it is a savepoint, and on
/// PostgreSQL it is an ordinary transaction.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let DbConnection::Sqlite(sqlite) = conn else {
        return conn.transaction(work);
    };
    if AnsiTransactionManager::transaction_manager_status_mut(sqlite)
        .transaction_depth()?
        .is_some()
    {
        return conn.transaction(work);
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    finish_transaction(conn, work)
}

/// Runs `work` in the transaction just begun, then commits it, or rolls it back on an error.
fn finish_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::TransactionManager;
    type Manager = <DbConnection as Connection>::TransactionManager;
    match work(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = Manager::rollback_transaction(conn) {
                tracing::warn!(error = %rollback, "rolling back a failed transaction failed");
            }
            Err(e)
        }
    }
}

/// Runs reads whose statements PostgreSQL should plan once per connection and keep: in a
/// read-only transaction with `plan_cache_mode = force_generic_plan` (one round trip opens
/// both, one commits). PostgreSQL otherwise plans a prepared statement again on every call
/// whenever its plan for the values given looks cheaper than its plan for any values; for the
/// history's filtered page (a five-table join walking an index to its first 51 rows) that was
/// always the case, and planning took about 1.2 ms a call where running took 0.3 ms. Use it
/// only for statements whose one plan is right for any values (the history's: each filter has
/// its own index). Inside another transaction, and on SQLite (which keeps no plans to choose
/// between), `work` just runs.
pub fn read_with_generic_plans<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::AnsiTransactionManager;
    if in_transaction(conn) {
        return work(conn);
    }
    let DbConnection::Postgres(pg) = conn else {
        return work(conn);
    };
    AnsiTransactionManager::begin_transaction_sql(
        pg,
        "BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_generic_plan",
    )?;
    finish_transaction(conn, work)
}

/// True inside a transaction (a write lane's, or one `write_transaction` opened).
pub fn in_transaction(conn: &mut DbConnection) -> bool {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let depth = match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()
        }
        DbConnection::Postgres(c) => {
            AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()
        }
    };
    matches!(depth, Ok(Some(_)))
}

/// Is this error a unique-constraint violation (a duplicate e-mail, name, key...)?
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Current UTC time as stored in the database.
pub fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// A new opaque public id (UUID v7: time-ordered, so inserts stay at the end of the index).
pub fn new_public_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

diesel::define_sql_function! {
    /// [`new_public_id`] inside SQLite's statements: registered on every pooled SQLite
    /// connection.
    fn herald_public_id() -> diesel::sql_types::Text;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres("postgres://u@h/db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://u@h/db").map(|u| u.backend()),
            Ok(Backend::Postgres)
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://herald.db"),
            Ok(DatabaseUrl::Sqlite("herald.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:/tmp/x.db"),
            Ok(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("data/herald.db"),
            Ok(DatabaseUrl::Sqlite("data/herald.db".into()))
        );
        assert!(
            DatabaseUrl::parse("mysql://x")
                .unwrap_err()
                .contains("mysql")
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse(" ").is_err());
    }

    #[test]
    fn migration_folders_have_identical_names() {
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let root = env!("CARGO_MANIFEST_DIR");
        let sqlite = names(&format!("{root}/migrations/sqlite"));
        let postgres = names(&format!("{root}/migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(
            sqlite, postgres,
            "migrations/sqlite and migrations/postgres drifted apart"
        );
        for name in &sqlite {
            for file in ["up.sql", "down.sql"] {
                for backend in ["sqlite", "postgres"] {
                    let path = format!("{root}/migrations/{backend}/{name}/{file}");
                    assert!(std::path::Path::new(&path).exists(), "{path} is missing");
                }
            }
        }
    }

    #[test]
    fn sqlite_migrations_apply_and_revert_cleanly() {
        let mut conn =
            DbConnection::Sqlite(diesel::SqliteConnection::establish(":memory:").unwrap());
        let applied = run_migrations(&mut conn).unwrap();
        assert!(!applied.is_empty());
        if let DbConnection::Sqlite(c) = &mut conn {
            c.revert_all_migrations(SQLITE_MIGRATIONS).unwrap();
            assert_eq!(
                c.run_pending_migrations(SQLITE_MIGRATIONS).unwrap().len(),
                applied.len()
            );
        }
    }
}
