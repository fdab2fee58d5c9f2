//! The overview (the home page): what was sent in the last 30 days and what became of it,
//! what is running, what waits for a person. Every figure comes from counters or small indexed
//! reads (`storage::message_counts`), so the page costs the same with a million messages as
//! with ten.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::{ServiceResult, Services};
use crate::domain::broadcast::BroadcastState;
use crate::domain::role::{Permission, Role};
use crate::storage::broadcasts::{self, BroadcastRow, Counts};
use crate::storage::channels::Channel;
use crate::storage::message_counts::{self, DayCount, FailureCount};
use crate::storage::schema::{consent_events, contact_windows, template_versions, templates};
use crate::storage::{Db, DbConnection, now};

/// How many days the overview looks back, today included.
pub const DAYS: i64 = 30;

/// Broadcasts that have not finished, newest first, at most this many.
const ACTIVE_BROADCASTS: i64 = 10;

/// The overview's figures, in UTC days.
#[derive(Debug, Clone)]
pub struct Overview {
    pub since: NaiveDate,
    pub until: NaiveDate,
    /// Messages per day, channel and status (days without messages left out).
    pub daily: Vec<DayCount>,
    /// Failed messages per channel and error code, most first.
    pub failures: Vec<FailureCount>,
    /// Broadcasts scheduled, running, paused or waiting for approval, with their counts.
    pub broadcasts: Vec<(BroadcastRow, Counts)>,
    /// Templates whose newest version waits for review; `None` for who does not review.
    pub templates_in_review: Option<i64>,
    /// Contacts whose 24-hour window is open now, per channel id.
    pub windows_open: Vec<(i64, i64)>,
    /// Opt-outs in the last 7 days, per kind of channel.
    pub opt_outs_week: Vec<(String, i64)>,
}

/// What an admin still has to set up (the home page's checklist).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupFacts {
    pub has_marketer: bool,
    pub has_support_lead: bool,
    /// A real (not sandbox) channel answered "Test connection".
    pub has_tested_channel: bool,
    pub has_api_key: bool,
}

/// Everything the home page shows, read in one trip to the pool.
#[derive(Debug, Clone)]
pub struct Home {
    pub overview: Overview,
    pub channels: Vec<Channel>,
    /// For admins only.
    pub setup: Option<SetupFacts>,
}

/// Reads the home page for someone with `role`: the overview, the channels and (for admins)
/// what is left to set up.
pub async fn home(svc: &Services, role: Role) -> ServiceResult<Home> {
    svc.read(move |conn| {
        let overview = read(conn, role, now())?;
        let channels = crate::storage::channels::list(conn)?;
        let setup = if role == Role::Admin {
            let people = crate::storage::users::list(conn)?;
            let has_role = |r: Role| people.iter().any(|u| u.role == r && u.is_active());
            Some(SetupFacts {
                has_marketer: has_role(Role::Marketer),
                has_support_lead: has_role(Role::SupportLead),
                has_tested_channel: channels
                    .iter()
                    .any(|c| !c.is_sandbox() && c.tested_ok_at.is_some()),
                has_api_key: !crate::storage::api_keys::list(conn)?.is_empty(),
            })
        } else {
            None
        };
        Ok(Home {
            overview,
            channels,
            setup,
        })
    })
    .await
}

fn read(conn: &mut DbConnection, role: Role, at: NaiveDateTime) -> QueryResult<Overview> {
    let until = at.date();
    let since = until - Duration::days(DAYS - 1);
    let (daily, failures) = message_counts::days_and_failures(conn, since, until)?;

    let mut broadcasts = Vec::new();
    if role.can(Permission::ViewBroadcasts) {
        let active = crate::storage::schema::broadcasts::table
            .filter(crate::storage::schema::broadcasts::state.eq_any([
                BroadcastState::Running.as_str(),
                BroadcastState::Scheduled.as_str(),
                BroadcastState::Paused.as_str(),
                BroadcastState::PendingApproval.as_str(),
            ]))
            .order(crate::storage::schema::broadcasts::id.desc())
            .limit(ACTIVE_BROADCASTS)
            .select(BroadcastRow::as_select())
            .load::<BroadcastRow>(conn)?;
        for b in active {
            let counts = broadcasts::counts(conn, b.id)?;
            broadcasts.push((b, counts));
        }
    }

    let templates_in_review = if role.can(Permission::ReviewTemplates) {
        Some(
            templates::table
                .inner_join(
                    template_versions::table.on(template_versions::id
                        .nullable()
                        .eq(templates::current_version_id)),
                )
                .filter(template_versions::stage.eq("in_review"))
                .count()
                .get_result(conn)?,
        )
    } else {
        None
    };

    let window_start = at - Duration::hours(24);
    let windows_open = contact_windows::table
        .filter(contact_windows::last_inbound_at.gt(window_start))
        .group_by(contact_windows::channel_id)
        .select((contact_windows::channel_id, diesel::dsl::count_star()))
        .load::<(i64, i64)>(conn)?;

    let week_start = at - Duration::days(7);
    let opt_outs_week = consent_events::table
        .filter(consent_events::status.eq("opted_out"))
        .filter(consent_events::occurred_at.ge(week_start))
        .group_by(consent_events::channel_kind)
        .select((consent_events::channel_kind, diesel::dsl::count_star()))
        .order(consent_events::channel_kind)
        .load::<(String, i64)>(conn)?;

    Ok(Overview {
        since,
        until,
        daily,
        failures,
        broadcasts,
        templates_in_review,
        windows_open,
        opt_outs_week,
    })
}

/// How often the counters' deltas are folded on PostgreSQL.
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Deltas folded per statement.
const FOLD_BATCH: i64 = 20_000;

/// Keeps PostgreSQL's counter deltas folded into the counters (`storage::message_counts`), so
/// reads stay small however much was sent. Any number of instances may run it. Returns at once
/// on SQLite, whose triggers write the counters directly.
pub async fn run_count_folding(db: Db) {
    if db.backend() != crate::storage::Backend::Postgres {
        return;
    }
    let mut ticks = tokio::time::interval(FOLD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let folded = db
            .run(|conn| {
                // A bounded number of batches a tick, so a flood of changes cannot keep
                // one connection busy for ever.
                let mut total = 0;
                for _ in 0..50 {
                    let n = message_counts::fold(conn, FOLD_BATCH)?;
                    total += n;
                    if n == 0 {
                        break;
                    }
                }
                Ok::<_, super::ServiceError>(total)
            })
            .await;
        if let Err(e) = folded {
            tracing::warn!(error = ?e, "folding the message counters failed");
        }
    }
}
