//! Issue 18: retention. An admin may have Herald purge message bodies and raw provider payloads
//! after N days (off by default). A background loop in every process checks every few minutes;
//! the run itself is claimed in the database (a compare-and-set on its start time), so among
//! several processes one runs it. A run purges in small batches, each its own transaction with
//! a pause between, keeps every status, time, id, error code and count, and writes one audit
//! entry (`retention.purged`) saying how much it purged, when it purged anything. Each batch
//! adds what it purged to a tally in the same transaction, and the audit entry is written from
//! the tally: a run cut short by a crash is audited (marked `interrupted`) when the next starts.

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use serde_json::json;

use crate::domain::audit::Actor;
use crate::service::{ServiceError, ServiceResult, Services};
use crate::storage::message_detail::{self, PurgedBatch};
use crate::storage::{Db, DbConnection, settings};

/// The days an admin may choose.
pub const MIN_DAYS: i32 = 1;
pub const MAX_DAYS: i32 = 3650;

/// Rows per table per transaction, and the pause between transactions.
pub const BATCH: i64 = 1000;
pub const PAUSE: Duration = Duration::from_millis(200);

/// How often a run may start (across all processes), and how often each process looks.
pub const RUN_EVERY: chrono::Duration = chrono::Duration::hours(1);
const LOOK_EVERY: Duration = Duration::from_secs(300);

/// The label of retention's audit entries.
pub const ACTOR: &str = "Retention";

/// Reads the setting as typed: blank, `0` or `off` turn retention off; otherwise a whole
/// number of days from [`MIN_DAYS`] to [`MAX_DAYS`].
pub fn parse_days(input: &str) -> Result<Option<i32>, String> {
    let t = input.trim();
    if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match t.parse::<i64>() {
        Ok(n) if (i64::from(MIN_DAYS)..=i64::from(MAX_DAYS)).contains(&n) => Ok(Some(n as i32)),
        Ok(_) => Err(format!(
            "Choose from {MIN_DAYS} to {MAX_DAYS} days, or leave it empty to keep everything."
        )),
        Err(_) => Err(format!(
            "\"{t}\" is not a number of days: enter a whole number from {MIN_DAYS} to {MAX_DAYS}."
        )),
    }
}

/// Messages created before this time are purged under `days`.
pub fn cutoff(now: NaiveDateTime, days: i32) -> NaiveDateTime {
    now - chrono::Duration::days(i64::from(days))
}

pub(crate) fn stored_days(conn: &mut DbConnection) -> ServiceResult<Option<i32>> {
    Ok(settings::get(conn, settings::RETENTION_DAYS)?.and_then(|v| parse_days(&v).ok().flatten()))
}

/// The days set now (`None`: retention is off).
pub async fn days(svc: &Services) -> ServiceResult<Option<i32>> {
    svc.read(stored_days).await
}

/// Changes the setting (admins), with its audit entry (`retention.changed`).
pub async fn set_days(svc: &Services, actor: Actor, input: String) -> ServiceResult<Option<i32>> {
    let days = parse_days(&input).map_err(|message| {
        let mut fields = crate::service::FieldProblems::default();
        fields.add("retention_days", message);
        ServiceError::invalid_fields("invalid_retention", fields)
    })?;
    svc.write(actor, move |change| {
        let before = stored_days(change.conn)?;
        match days {
            Some(d) => settings::set(change.conn, settings::RETENTION_DAYS, &d.to_string())?,
            None => settings::remove(change.conn, settings::RETENTION_DAYS)?,
        };
        change.audit(
            "retention.changed",
            "settings",
            Some("retention"),
            json!({"days": days, "was": before}),
        )?;
        Ok(days)
    })
    .await
}

/// What one run purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionRun {
    pub days: i32,
    pub messages: usize,
    pub inbound: usize,
    pub payloads: usize,
    /// Transactions it took.
    pub batches: usize,
}

impl RetentionRun {
    pub fn purged_anything(&self) -> bool {
        self.messages + self.inbound + self.payloads > 0
    }
}

fn cursor(conn: &mut DbConnection, key: &str) -> ServiceResult<i64> {
    Ok(settings::get(conn, key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// One batch in its own transaction: the purge and where the walk goes on from.
fn purge_one(
    conn: &mut DbConnection,
    actor: &Actor,
    days: i32,
    cut: NaiveDateTime,
    batch: i64,
) -> ServiceResult<PurgedBatch> {
    crate::service::write(conn, actor, |change| {
        let messages_after = cursor(change.conn, settings::RETENTION_MESSAGES_AFTER)?;
        let inbound_after = cursor(change.conn, settings::RETENTION_INBOUND_AFTER)?;
        let done = message_detail::purge_batch(
            change.conn,
            cut,
            days,
            messages_after,
            inbound_after,
            batch,
        )?;
        if done.messages_after != messages_after {
            settings::set(
                change.conn,
                settings::RETENTION_MESSAGES_AFTER,
                &done.messages_after.to_string(),
            )?;
        }
        if done.inbound_after != inbound_after {
            settings::set(
                change.conn,
                settings::RETENTION_INBOUND_AFTER,
                &done.inbound_after.to_string(),
            )?;
        }
        if done.messages + done.inbound + done.payloads > 0 {
            let mut tally = tally(change.conn)?.unwrap_or(RetentionRun {
                days,
                ..RetentionRun::default()
            });
            tally.messages += done.messages;
            tally.inbound += done.inbound;
            tally.payloads += done.payloads;
            tally.batches += 1;
            let text = serde_json::to_string(&tally)
                .map_err(|e| ServiceError::Internal(anyhow::Error::new(e)))?;
            settings::set(change.conn, settings::RETENTION_RUN_TALLY, &text)?;
        }
        Ok(done)
    })
}

/// The tally of the run under way (or of one a crash cut short).
fn tally(conn: &mut DbConnection) -> ServiceResult<Option<RetentionRun>> {
    Ok(settings::get(conn, settings::RETENTION_RUN_TALLY)?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

/// Writes the audit entry for the tally left in the database, if any, and clears it, in one
/// transaction. `interrupted`: the tally is a crashed run's, found by the next run.
fn settle(conn: &mut DbConnection, actor: &Actor, interrupted: bool) -> ServiceResult<()> {
    crate::service::write(conn, actor, |change| {
        let Some(run) = tally(change.conn)? else {
            return Ok(());
        };
        change.audit(
            "retention.purged",
            "settings",
            Some("retention"),
            json!({
                "days": run.days,
                "messages": run.messages,
                "inbound_messages": run.inbound,
                "payloads": run.payloads,
                "batches": run.batches,
                "interrupted": interrupted,
            }),
        )?;
        settings::remove(change.conn, settings::RETENTION_RUN_TALLY)?;
        Ok(())
    })
}

/// Purges everything older than `days` before `now`, `batch` rows per table per transaction
/// with `pause` between them, then writes the run's audit entry when it purged anything (first
/// settling the tally of a run a crash cut short, if there is one).
/// Safe to run twice at once (a row is purged once; the second run finds nothing), though
/// [`run_due`] sees to it that one process runs it.
pub async fn purge(
    db: &Db,
    days: i32,
    now: NaiveDateTime,
    batch: i64,
    pause: Duration,
) -> ServiceResult<RetentionRun> {
    let actor = Actor::system(ACTOR);
    let cut = cutoff(now, days);
    let mut run = RetentionRun {
        days,
        ..RetentionRun::default()
    };
    let a = actor.clone();
    db.run(move |conn| settle(conn, &a, true)).await?;
    loop {
        let a = actor.clone();
        let done = db
            .run(move |conn| purge_one(conn, &a, days, cut, batch))
            .await?;
        run.batches += 1;
        run.messages += done.messages;
        run.inbound += done.inbound;
        run.payloads += done.payloads;
        if done.done {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    db.run(move |conn| settle(conn, &actor, false)).await?;
    Ok(run)
}

/// Claims this hour's run (one process wins among several) and runs it, when retention is on
/// and no run started within [`RUN_EVERY`]. `None` when there was nothing to do here.
pub async fn run_due(db: &Db, now: NaiveDateTime) -> ServiceResult<Option<RetentionRun>> {
    let claimed = db
        .run(move |conn| -> ServiceResult<Option<i32>> {
            let Some(days) = stored_days(conn)? else {
                return Ok(None);
            };
            let last = settings::get(conn, settings::RETENTION_LAST_RUN)?;
            let recent = last
                .as_deref()
                .and_then(|l| chrono::DateTime::parse_from_rfc3339(l).ok())
                .is_some_and(|l| now - l.naive_utc() < RUN_EVERY);
            if recent {
                return Ok(None);
            }
            let stamp = now.and_utc().to_rfc3339();
            let won = settings::compare_and_set(
                conn,
                settings::RETENTION_LAST_RUN,
                last.as_deref(),
                &stamp,
            )?;
            Ok(won.then_some(days))
        })
        .await?;
    match claimed {
        Some(days) => Ok(Some(purge(db, days, now, BATCH, PAUSE).await?)),
        None => Ok(None),
    }
}

/// The background loop every process runs (see the module).
pub async fn run(db: Db) {
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match run_due(&db, Utc::now().naive_utc()).await {
            Ok(Some(run)) if run.purged_anything() => tracing::info!(
                days = run.days,
                messages = run.messages,
                inbound = run.inbound,
                payloads = run.payloads,
                "retention purged old message content"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "retention run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_validated() {
        assert_eq!(parse_days(""), Ok(None));
        assert_eq!(parse_days(" 0 "), Ok(None));
        assert_eq!(parse_days("off"), Ok(None));
        assert_eq!(parse_days("1"), Ok(Some(1)));
        assert_eq!(parse_days("3650"), Ok(Some(3650)));
        assert!(parse_days("3651").unwrap_err().contains("1 to 3650"));
        assert!(parse_days("-5").is_err());
        assert!(parse_days("ten").unwrap_err().contains("\"ten\""));
        assert!(parse_days("99999999999999999999").is_err());
    }

    #[test]
    fn the_cut_off_is_n_whole_days_before_now() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 3, 31)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let cut = cutoff(now, 30);
        assert_eq!(cut.to_string(), "2026-03-01 12:00:00");
        assert_eq!(cutoff(now, 1), now - chrono::Duration::hours(24));
    }

    #[tokio::test]
    async fn one_claim_wins_a_run_and_an_off_setting_runs_nothing() {
        let (_dir, db) = crate::service::testing::sqlite_db();
        let now = Utc::now().naive_utc();
        // Off: nothing is claimed.
        assert_eq!(run_due(&db, now).await.unwrap(), None);
        settings::set(&mut db.get().unwrap(), settings::RETENTION_DAYS, "30").unwrap();
        let first = run_due(&db, now).await.unwrap();
        assert_eq!(first.map(|r| r.days), Some(30));
        // Within the hour, another process (or this one) finds it taken.
        assert_eq!(
            run_due(&db, now + chrono::Duration::minutes(5))
                .await
                .unwrap(),
            None
        );
        // A stale claim value loses the compare-and-set.
        let mut conn = db.get().unwrap();
        assert!(
            !settings::compare_and_set(&mut conn, settings::RETENTION_LAST_RUN, Some("x"), "y")
                .unwrap()
        );
        drop(conn);
        assert!(
            run_due(&db, now + chrono::Duration::hours(2))
                .await
                .unwrap()
                .is_some()
        );
    }
}
