//! Counters the database keeps as messages and broadcast recipients change (migration
//! `20261204130000_message_counts`): messages per UTC day, channel, broadcast, status and error
//! code; a broadcast's recipients per state. The overview, the history's count and a broadcast's
//! counts read these few hundred rows instead of visiting every message.
//!
//! On SQLite row triggers update the counters in the writer's own transaction. On PostgreSQL
//! statement triggers append each statement's changes to `*_deltas` tables (nothing shared is
//! locked, so concurrent senders never wait on a counter row) and [`fold`] moves them into the
//! counters; every read here adds the deltas not folded yet, in one statement, so a count is
//! exact as soon as the change commits, on either database.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Text};

use super::DbConnection;
use super::prepared::fixed;

/// Which messages to count. Every field narrows; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountFilter {
    /// First UTC day counted (messages are counted on the day they were created).
    pub since_day: Option<NaiveDate>,
    /// Last UTC day counted, inclusive.
    pub until_day: Option<NaiveDate>,
    pub channel_id: Option<i64>,
    /// A broadcast's id (`messages.campaign_id`).
    pub campaign_id: Option<i64>,
    pub status: Option<String>,
    pub error_code: Option<String>,
}

/// Messages created on one day on one channel with one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    pub day: NaiveDate,
    pub channel_id: i64,
    pub status: String,
    pub n: i64,
}

/// Failed messages with one error code on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    pub channel_id: i64,
    pub error_code: String,
    pub n: i64,
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = Nullable<BigInt>)]
    n: Option<i64>,
}

/// The counters and the deltas not folded yet, as one relation (`{where}` is applied to both).
fn counted(columns: &str, condition: &str) -> String {
    counted_in("message_counts", columns, condition)
}

/// `counters` (the counters, or PostgreSQL's totals per status) and the deltas not folded yet.
fn counted_in(counters: &str, columns: &str, condition: &str) -> String {
    format!(
        "SELECT {columns} FROM {counters} WHERE {condition} \
         UNION ALL SELECT {columns} FROM message_count_deltas WHERE {condition}"
    )
}

/// How many messages match: exact, from the counters. The statement names only the columns
/// `filter` narrows (one text per combination): with `$n IS NULL OR …` for every column,
/// PostgreSQL's one plan for all of them could use no index.
pub fn total(conn: &mut DbConnection, filter: &CountFilter) -> QueryResult<i64> {
    let f = filter;
    let mut conditions = Vec::new();
    let mut narrow = |given: bool, condition: &str| {
        if given {
            conditions.push(format!("{condition} ${}", conditions.len() + 1));
        }
    };
    narrow(f.since_day.is_some(), "day >=");
    narrow(f.until_day.is_some(), "day <=");
    narrow(f.channel_id.is_some(), "channel_id =");
    narrow(f.campaign_id.is_some(), "campaign_id =");
    narrow(f.status.is_some(), "status =");
    narrow(f.error_code.is_some(), "error_code =");
    let condition = if conditions.is_empty() {
        "TRUE".to_owned()
    } else {
        conditions.join(" AND ")
    };
    // Over all time and every channel, PostgreSQL answers from its totals per status
    // (migration `20261206110000`) rather than from every counter row.
    let all_time = f.since_day.is_none()
        && f.until_day.is_none()
        && f.channel_id.is_none()
        && f.campaign_id.is_none()
        && f.error_code.is_none();
    let counters = if all_time && matches!(conn, DbConnection::Postgres(_)) {
        "message_status_totals"
    } else {
        "message_counts"
    };
    let rows = counted_in(counters, "n", &condition);
    let sql = format!("SELECT CAST(sum(n) AS BIGINT) AS n FROM ({rows}) c");
    macro_rules! run {
        ($c:expr) => {{
            let mut q = fixed(&sql);
            if let Some(v) = f.since_day {
                q = q.bind::<Date, _>(v);
            }
            if let Some(v) = f.until_day {
                q = q.bind::<Date, _>(v);
            }
            if let Some(v) = f.channel_id {
                q = q.bind::<BigInt, _>(v);
            }
            if let Some(v) = f.campaign_id {
                q = q.bind::<BigInt, _>(v);
            }
            if let Some(v) = &f.status {
                q = q.bind::<Text, _>(v);
            }
            if let Some(v) = &f.error_code {
                q = q.bind::<Text, _>(v);
            }
            q.load::<Total>($c)
        }};
    }
    let rows = match conn {
        DbConnection::Sqlite(c) => run!(c)?,
        DbConnection::Postgres(c) => run!(c)?,
    };
    Ok(rows.into_iter().next().and_then(|t| t.n).unwrap_or(0))
}

/// One counter row as stored (or one delta not folded yet), without its day.
#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    error_code: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A counter row on PostgreSQL, its day a `DATE`.
#[derive(QueryableByName)]
struct PgCountRow {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(embed)]
    counted: Counted,
}

/// A counter row on SQLite, whose `DATE` is ISO text: read as text and parsed once per day
/// (decoding it as a date on every row was a twentieth of the overview's time).
#[derive(QueryableByName)]
struct SqliteCountRow {
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(embed)]
    counted: Counted,
}

/// Messages per day, channel and status from `since` to `until` (inclusive), in day order, and
/// the failed among them per channel and error code, most first; keys whose count is zero are
/// left out. One range scan of the counters in key order: the sums are made here rather than
/// by a `GROUP BY`, which cannot follow the key's order across the counters and their deltas
/// and so sorted twice per call (most of the overview's time in the database).
pub fn days_and_failures(
    conn: &mut DbConnection,
    since: NaiveDate,
    until: NaiveDate,
) -> QueryResult<(Vec<DayCount>, Vec<FailureCount>)> {
    const SQL: &str = "SELECT day, channel_id, status, error_code, n FROM message_counts \
         WHERE day >= $1 AND day <= $2 \
         UNION ALL SELECT day, channel_id, status, error_code, n FROM message_count_deltas \
         WHERE day >= $1 AND day <= $2";
    let rows: Vec<(NaiveDate, Counted)> = match conn {
        DbConnection::Sqlite(c) => {
            let rows: Vec<SqliteCountRow> = fixed(SQL)
                .bind::<Date, _>(since)
                .bind::<Date, _>(until)
                .load(c)?;
            let mut last: Option<(String, NaiveDate)> = None;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let day = match &last {
                    Some((text, day)) if *text == r.day => *day,
                    _ => {
                        let day = r.day.parse::<NaiveDate>().map_err(|e| {
                            diesel::result::Error::DeserializationError(Box::new(e))
                        })?;
                        last = Some((r.day, day));
                        day
                    }
                };
                out.push((day, r.counted));
            }
            out
        }
        DbConnection::Postgres(c) => {
            let rows: Vec<PgCountRow> = fixed(SQL)
                .bind::<Date, _>(since)
                .bind::<Date, _>(until)
                .load(c)?;
            rows.into_iter().map(|r| (r.day, r.counted)).collect()
        }
    };
    let mut days: BTreeMap<(NaiveDate, i64, String), i64> = BTreeMap::new();
    let mut failed: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for (day, c) in rows {
        let Counted {
            channel_id,
            status,
            error_code,
            n,
        } = c;
        if status == "failed" {
            *failed.entry((channel_id, error_code)).or_default() += n;
        }
        *days.entry((day, channel_id, status)).or_default() += n;
    }
    let daily = days
        .into_iter()
        .filter(|&(_, n)| n != 0)
        .map(|((day, channel_id, status), n)| DayCount {
            day,
            channel_id,
            status,
            n,
        })
        .collect();
    let mut failures: Vec<FailureCount> = failed
        .into_iter()
        .filter(|&(_, n)| n != 0)
        .map(|((channel_id, error_code), n)| FailureCount {
            channel_id,
            error_code,
            n,
        })
        .collect();
    // Most first; the map's order (channel, code) breaks ties, as the code did in SQL.
    failures.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.error_code.cmp(&b.error_code)));
    Ok((daily, failures))
}

fn load_statuses(conn: &mut DbConnection, sql: &str, id: i64) -> QueryResult<Vec<(String, i64)>> {
    let rows: Vec<StatusCount> = match conn {
        DbConnection::Sqlite(c) => fixed(sql).bind::<BigInt, _>(id).load(c)?,
        DbConnection::Postgres(c) => fixed(sql).bind::<BigInt, _>(id).load(c)?,
    };
    Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
}

/// A broadcast's messages by status (resends included: they carry the broadcast too).
pub fn campaign_statuses(
    conn: &mut DbConnection,
    campaign_id: i64,
) -> QueryResult<Vec<(String, i64)>> {
    let sql = format!(
        "SELECT status, CAST(sum(n) AS BIGINT) AS n FROM ({}) c GROUP BY status HAVING sum(n) <> 0",
        counted("status, n", "campaign_id = $1")
    );
    load_statuses(conn, &sql, campaign_id)
}

/// A broadcast's recipients by state.
pub fn recipient_statuses(
    conn: &mut DbConnection,
    broadcast_id: i64,
) -> QueryResult<Vec<(String, i64)>> {
    let sql = "SELECT status, CAST(sum(n) AS BIGINT) AS n FROM (\
               SELECT status, n FROM broadcast_recipient_counts WHERE broadcast_id = $1 \
               UNION ALL SELECT status, n FROM broadcast_recipient_count_deltas WHERE broadcast_id = $1\
               ) c GROUP BY status HAVING sum(n) <> 0";
    load_statuses(conn, sql, broadcast_id)
}

/// Writes a broadcast's first recipient counts, right after its freeze inserted the rows (the
/// triggers follow only later changes; see the migration). Call it in the freeze's transaction.
pub fn count_frozen_recipients(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<usize> {
    let sql = "INSERT INTO broadcast_recipient_counts (broadcast_id, status, n) \
               SELECT broadcast_id, status, count(*) FROM broadcast_recipients \
               WHERE broadcast_id = $1 GROUP BY broadcast_id, status \
               ON CONFLICT (broadcast_id, status) DO UPDATE SET n = excluded.n";
    match conn {
        DbConnection::Sqlite(c) => fixed(sql).bind::<BigInt, _>(broadcast_id).execute(c),
        DbConnection::Postgres(c) => fixed(sql).bind::<BigInt, _>(broadcast_id).execute(c),
    }
}

/// Moves up to `batch` deltas of each kind into the counters (PostgreSQL; nothing to do on
/// SQLite, whose triggers write the counters directly); the counters' own triggers carry the
/// messages' deltas on into the totals per status (migration `20261206110000`). Safe to run on several instances at
/// once: each takes the deltas it locked (`SKIP LOCKED`) and adds them in key order in one
/// statement, so two folds never wait on each other in a cycle. Returns how many counter rows it changed (0: nothing was waiting).
pub fn fold(conn: &mut DbConnection, batch: i64) -> QueryResult<usize> {
    let DbConnection::Postgres(c) = conn else {
        return Ok(0);
    };
    let messages = "WITH taken AS (DELETE FROM message_count_deltas WHERE id IN (\
                      SELECT id FROM message_count_deltas ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
                      RETURNING day, channel_id, campaign_id, status, error_code, n) \
                    INSERT INTO message_counts (day, channel_id, campaign_id, status, error_code, n) \
                    SELECT day, channel_id, campaign_id, status, error_code, sum(n) FROM taken \
                    GROUP BY day, channel_id, campaign_id, status, error_code \
                    ORDER BY day, channel_id, campaign_id, status, error_code \
                    ON CONFLICT (day, channel_id, campaign_id, status, error_code) \
                    DO UPDATE SET n = message_counts.n + excluded.n";
    let recipients = "WITH taken AS (DELETE FROM broadcast_recipient_count_deltas WHERE id IN (\
                        SELECT id FROM broadcast_recipient_count_deltas ORDER BY id LIMIT $1 \
                        FOR UPDATE SKIP LOCKED) RETURNING broadcast_id, status, n) \
                      INSERT INTO broadcast_recipient_counts (broadcast_id, status, n) \
                      SELECT broadcast_id, status, sum(n) FROM taken GROUP BY broadcast_id, status \
                      ORDER BY broadcast_id, status \
                      ON CONFLICT (broadcast_id, status) \
                      DO UPDATE SET n = broadcast_recipient_counts.n + excluded.n";
    let a = fixed(messages).bind::<BigInt, _>(batch).execute(c)?;
    let b = fixed(recipients).bind::<BigInt, _>(batch).execute(c)?;
    Ok(a + b)
}
