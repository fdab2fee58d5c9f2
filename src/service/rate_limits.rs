//! Issue 19: per-key rate limits of the API. A key may make `limit` requests in each fixed
//! one-minute window (aligned to the clock's minutes); its own limit beats the default in the
//! settings, and 0 (or no limit anywhere) means unlimited.
//!
//! On SQLite (one instance) the windows are counted in memory. On PostgreSQL every instance
//! shares the key's budget: each counted request is one `INSERT ... ON CONFLICT DO UPDATE ...
//! RETURNING` on the key's window row. A key that spent its window is refused from memory for
//! the rest of the window, so refused requests never reach the database, and unlimited keys
//! never count at all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use super::{Change, ServiceError, ServiceResult, Services};
use crate::storage::{Backend, api_keys, rate_limits, settings};

/// The length of a window, in seconds.
pub const WINDOW_SECS: i64 = 60;
/// The setting holding the default limit (requests a minute; absent or 0: unlimited).
pub const DEFAULT_SETTING: &str = "api_rate_limit_per_minute";
/// The largest limit accepted (a million requests a minute).
pub const MAX_PER_MINUTE: i32 = 1_000_000;
/// Keys whose windows are remembered at most; beyond it old windows are dropped.
const MAX_TRACKED_KEYS: usize = 4096;

/// What the limit says about one request, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window ends and the budget is whole again.
    pub reset_secs: u64,
    pub allowed: bool,
}

/// This process's view of the windows, and the default limit as last read.
#[derive(Default)]
pub struct RateLimiter {
    /// Per key: the window's start and the requests counted in it (on PostgreSQL, the shared
    /// total as last seen).
    windows: Mutex<HashMap<i64, (i64, u32)>>,
    default: Mutex<Option<(u32, Instant)>>,
    /// The window whose old rows this instance last cleared (PostgreSQL).
    swept: AtomicI64,
}

impl RateLimiter {
    /// Counts one request in memory; `None` when `limit` is 0 (unlimited).
    fn count_locally(&self, key_id: i64, limit: u32, now: i64) -> Option<Quota> {
        if limit == 0 {
            return None;
        }
        let start = window_start(now);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED_KEYS {
            windows.retain(|_, (s, _)| *s == start);
        }
        let entry = windows.entry(key_id).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        let allowed = entry.1 < limit;
        if allowed {
            entry.1 += 1;
        }
        Some(quota(limit, entry.1, allowed, now))
    }

    /// True when this process already saw the key spend the window that `now` is in.
    fn spent(&self, key_id: i64, limit: u32, now: i64) -> bool {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows
            .get(&key_id)
            .is_some_and(|(s, n)| *s == window_start(now) && *n >= limit)
    }

    fn remember(&self, key_id: i64, start: i64, total: u32) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED_KEYS {
            windows.retain(|_, (s, _)| *s == start);
        }
        windows.insert(key_id, (start, total));
    }

    /// Forgets the cached default (it was just changed here).
    fn forget_default(&self) {
        *self.default.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn window_start(now: i64) -> i64 {
    now - now.rem_euclid(WINDOW_SECS)
}

fn quota(limit: u32, used: u32, allowed: bool, now: i64) -> Quota {
    Quota {
        limit,
        remaining: limit.saturating_sub(used),
        reset_secs: (window_start(now) + WINDOW_SECS - now).max(1) as u64,
        allowed,
    }
}

/// The default limit: read from the settings at most every couple of seconds.
async fn default_limit(svc: &Services) -> ServiceResult<u32> {
    if let Some((limit, at)) = *svc
        .rate_limiter
        .default
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        && at.elapsed() < super::api_keys::KEY_FRESH_FOR
    {
        return Ok(limit);
    }
    let limit = svc
        .read(|conn| Ok(settings::get(conn, DEFAULT_SETTING)?))
        .await?
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    *svc.rate_limiter
        .default
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some((limit, Instant::now()));
    Ok(limit)
}

/// Counts one request by `key` and says whether it may go on; `None` when the key is unlimited.
pub async fn check(svc: &Services, key: &api_keys::ApiKey) -> ServiceResult<Option<Quota>> {
    let limit = match key.rate_limit_per_minute {
        Some(own) => u32::try_from(own).unwrap_or(0),
        None => default_limit(svc).await?,
    };
    let now = chrono::Utc::now().timestamp();
    if svc.db.backend() == Backend::Sqlite {
        return Ok(svc.rate_limiter.count_locally(key.id, limit, now));
    }
    if limit == 0 {
        return Ok(None);
    }
    if svc.rate_limiter.spent(key.id, limit, now) {
        return Ok(Some(quota(limit, limit, false, now)));
    }
    let start = window_start(now);
    let sweep = svc.rate_limiter.swept.swap(start, Ordering::Relaxed) != start;
    let key_id = key.id;
    let total = svc
        .read(move |conn| {
            if sweep {
                rate_limits::forget_before(conn, start - WINDOW_SECS)?;
            }
            Ok(rate_limits::hit(conn, key_id, start, 1)?)
        })
        .await?;
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    svc.rate_limiter.remember(key_id, start, total);
    Ok(Some(quota(limit, total, total <= limit, now)))
}

/// Parses a limit typed into a form or given on the command line: blank is `None`.
pub fn parse_limit(raw: &str) -> Result<Option<i32>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<i32>() {
        Ok(n) if (0..=MAX_PER_MINUTE).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "\"{raw}\" is not a limit: give a number of requests a minute from 0 (unlimited) to {MAX_PER_MINUTE}, or leave it blank."
        )),
    }
}

fn invalid(field: &str, problem: String) -> ServiceError {
    let mut fields = super::FieldProblems::new();
    fields.add(field, problem);
    ServiceError::invalid_fields("invalid_rate_limit", fields)
}

/// The default limit as stored (`None`: unlimited).
pub async fn default_setting(svc: &Services) -> ServiceResult<Option<i32>> {
    svc.read(|conn| Ok(settings::get(conn, DEFAULT_SETTING)?))
        .await
        .map(|v| v.and_then(|v| v.parse().ok()).filter(|n: &i32| *n > 0))
}

/// Sets the default limit from what was typed (blank or 0: unlimited), with its audit entry.
pub async fn set_default(
    svc: &Services,
    actor: crate::domain::audit::Actor,
    raw: &str,
) -> ServiceResult<Option<i32>> {
    let limit = parse_limit(raw)
        .map_err(|p| invalid("default_rate_limit", p))?
        .filter(|n| *n > 0);
    svc.write(actor, move |change: &mut Change<'_>| {
        match limit {
            Some(n) => settings::set(change.conn, DEFAULT_SETTING, &n.to_string())?,
            None => settings::remove(change.conn, DEFAULT_SETTING)?,
        };
        change.audit(
            "api_rate_limit.default_set",
            "setting",
            Some(DEFAULT_SETTING),
            serde_json::json!({"per_minute": limit}),
        )
    })
    .await?;
    svc.rate_limiter.forget_default();
    Ok(limit)
}

/// Sets key `public_id`'s own limit from what was typed (blank: the default applies).
pub async fn set_for_key(
    svc: &Services,
    actor: crate::domain::audit::Actor,
    public_id: String,
    raw: &str,
) -> ServiceResult<(api_keys::ApiKey, Option<i32>)> {
    let limit = parse_limit(raw).map_err(|p| invalid("rate_limit", p))?;
    let done = svc
        .write(actor, move |change| {
            let key = api_keys::find_by_public_id(change.conn, &public_id)?
                .ok_or_else(|| ServiceError::not_found("This API key"))?;
            api_keys::set_rate_limit(change.conn, key.id, limit)?;
            change.audit(
                "api_key.rate_limit_set",
                "api_key",
                Some(&key.public_id),
                serde_json::json!({"name": key.name, "per_minute": limit}),
            )?;
            Ok((key, limit))
        })
        .await;
    // The cached keys carry their limit: read them again.
    svc.api_key_cache.clear();
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_limit_then_refuses_until_the_next_minute() {
        let limiter = RateLimiter::default();
        // Ten seconds into a window (1,800,000,000 is a whole number of minutes).
        let t = 1_800_000_010;
        for n in 1..=3 {
            let q = limiter.count_locally(7, 3, t).expect("limited");
            assert!(q.allowed, "request {n}");
            assert_eq!(q.remaining, 3 - n);
            assert_eq!(q.reset_secs, 50);
        }
        let refused = limiter.count_locally(7, 3, t + 5).expect("limited");
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(limiter.spent(7, 3, t + 5));
        // Another key has its own budget; the next window starts whole.
        assert!(limiter.count_locally(8, 3, t).expect("limited").allowed);
        let next = limiter.count_locally(7, 3, t + 50).expect("limited");
        assert!(next.allowed);
        assert_eq!(next.remaining, 2);
    }

    #[test]
    fn a_zero_limit_is_unlimited() {
        let limiter = RateLimiter::default();
        assert_eq!(limiter.count_locally(1, 0, 0), None);
    }

    #[test]
    fn limits_parse_with_blank_as_the_default() {
        assert_eq!(parse_limit(" "), Ok(None));
        assert_eq!(parse_limit("0"), Ok(Some(0)));
        assert_eq!(parse_limit("120"), Ok(Some(120)));
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("ten").is_err());
        assert!(parse_limit("99999999999").is_err());
    }
}
