//! A broadcast's timing in its recipients' own time: "at 09:00 where each recipient lives", and
//! quiet hours ("never between 21:00 and 08:00 their time"). A recipient's zone is the contact's
//! time zone, else the zone of its number's country when that country keeps one zone, else the
//! broadcast's zone. Everything here is pure: the scheduler asks [`zone_state`] about each zone
//! its pending recipients are in, once per step.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::broadcast::local_to_utc;

/// A broadcast's timing beyond its start (stored as JSON on the broadcast).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Each recipient gets it at this wall-clock time in their own zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_time: Option<NaiveDateTime>,
    /// Recipients wait while it is quiet hours where they are (never dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// The zones the recipients were found in at launch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
}

impl Timing {
    /// Whether recipients need a zone (anything here is used).
    pub fn is_used(&self) -> bool {
        self.local_time.is_some() || self.quiet_hours.is_some()
    }
}

/// From `from` until `to`, in the recipient's local time; wraps past midnight when `to` comes
/// before `from` (21:00-08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub from: NaiveTime,
    pub to: NaiveTime,
}

impl QuietHours {
    /// Reads "21:00" and "08:00"; refuses an empty span.
    pub fn parse(from: &str, to: &str) -> Result<QuietHours, String> {
        let time = |raw: &str| {
            NaiveTime::parse_from_str(raw.trim(), "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(raw.trim(), "%H:%M:%S"))
                .map_err(|_| {
                    format!(
                        "\"{}\" is not a time of day: write it as 21:00.",
                        raw.trim()
                    )
                })
        };
        let q = QuietHours {
            from: time(from)?,
            to: time(to)?,
        };
        if q.from == q.to {
            return Err("Quiet hours must start and end at different times.".into());
        }
        Ok(q)
    }

    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.from < self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }

    /// "21:00–08:00".
    pub fn label(&self) -> String {
        format!("{}–{}", self.from.format("%H:%M"), self.to.format("%H:%M"))
    }

    /// When the quiet hours that hold at `now` in `zone` end (the next `to` there, found on
    /// the local calendar so that a DST change in between is counted right).
    fn end_after(&self, now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        let local = now.with_timezone(&zone).naive_local();
        let today = local.date().and_time(self.to);
        let end = if today > local {
            today
        } else {
            today + Duration::days(1)
        };
        local_to_utc(end, zone)
    }
}

/// Whether a zone's recipients may be sent to now, or until when they wait and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Ready,
    /// Their local time has not come yet.
    NotYet(DateTime<Utc>),
    /// Quiet hours there, until then.
    Quiet(DateTime<Utc>),
}

impl ZoneState {
    pub fn waits_until(self) -> Option<DateTime<Utc>> {
        match self {
            ZoneState::Ready => None,
            ZoneState::NotYet(t) | ZoneState::Quiet(t) => Some(t),
        }
    }
}

/// Whether recipients in `zone` may get the broadcast at `now`.
pub fn zone_state(timing: &Timing, zone: Tz, now: DateTime<Utc>) -> ZoneState {
    if let Some(local) = timing.local_time {
        let due = local_to_utc(local, zone);
        if due > now {
            return ZoneState::NotYet(due);
        }
    }
    if let Some(quiet) = timing.quiet_hours {
        let here = now.with_timezone(&zone).time();
        if quiet.contains(here) {
            return ZoneState::Quiet(quiet.end_after(now, zone));
        }
    }
    ZoneState::Ready
}

/// When the first recipient's local time comes, over the zones given.
pub fn first_start(local: NaiveDateTime, zones: &[Tz]) -> Option<DateTime<Utc>> {
    zones.iter().map(|z| local_to_utc(local, *z)).min()
}

fn country_zones() -> &'static [(&'static str, &'static str)] {
    static TABLE: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("country_zones.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .collect()
    })
}

/// The zone of a country (ISO 3166 code) whose zones all keep the same time.
pub fn country_zone(country: &str) -> Option<Tz> {
    let table = country_zones();
    let i = table.binary_search_by(|(c, _)| (*c).cmp(country)).ok()?;
    table[i].1.parse().ok()
}

/// The zone of the country an E.164 number's calling code belongs to (its main country for a
/// code several share), when that country keeps a single zone. `prefix` is the number's start:
/// "+" and at least the calling code's digits (calling codes are prefix-free, so the first
/// three digits always hold the whole code).
pub fn zone_of_number(prefix: &str) -> Option<Tz> {
    let digits = prefix.strip_prefix('+')?;
    (1..=3.min(digits.len())).find_map(|n| {
        let code: u16 = digits.get(..n)?.parse().ok()?;
        let regions = phonenumber::metadata::DATABASE.region(&code)?;
        country_zone(regions.first()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn quiet_hours_wrap_past_midnight() {
        let q = QuietHours::parse("21:00", "08:00").unwrap();
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert!(q.contains(t("21:00")) && q.contains(t("23:59")) && q.contains(t("07:59")));
        assert!(!q.contains(t("08:00")) && !q.contains(t("12:00")) && !q.contains(t("20:59")));
        let day = QuietHours::parse("12:00", "14:00").unwrap();
        assert!(day.contains(t("13:00")) && !day.contains(t("14:00")) && !day.contains(t("11:00")));
        assert!(QuietHours::parse("09:00", "09:00").is_err());
        assert!(
            QuietHours::parse("25:00", "09:00")
                .unwrap_err()
                .contains("25:00")
        );
    }

    #[test]
    fn local_time_follows_each_zone_across_a_dst_change() {
        // Clocks in Berlin go forward at 01:00 UTC on 29 March 2026; Tokyo keeps UTC+9.
        let timing = Timing {
            local_time: Some(local("2026-03-29 09:00")),
            ..Timing::default()
        };
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 09:00 in Berlin that morning is 07:00 UTC (summer time), not 08:00.
        assert_eq!(
            zone_state(&timing, berlin, at("2026-03-29T06:59:00Z")),
            ZoneState::NotYet(at("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            zone_state(&timing, berlin, at("2026-03-29T07:00:00Z")),
            ZoneState::Ready
        );
        // Tokyo's 09:00 came long before.
        assert_eq!(
            zone_state(&timing, tokyo, at("2026-03-29T00:00:00Z")),
            ZoneState::Ready
        );
        assert_eq!(
            first_start(local("2026-03-29 09:00"), &[berlin, tokyo]),
            Some(at("2026-03-29T00:00:00Z"))
        );
    }

    #[test]
    fn quiet_hours_end_at_local_time_across_a_dst_change() {
        let timing = Timing {
            quiet_hours: Some(QuietHours::parse("21:00", "08:00").unwrap()),
            ..Timing::default()
        };
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 23:30 UTC on 28 March is 00:30 CET: quiet. The night the clocks go forward, 08:00 CEST
        // is 06:00 UTC (it would be 07:00 UTC a day earlier).
        assert_eq!(
            zone_state(&timing, berlin, at("2026-03-28T23:30:00Z")),
            ZoneState::Quiet(at("2026-03-29T06:00:00Z"))
        );
        assert_eq!(
            zone_state(&timing, berlin, at("2026-03-29T06:00:00Z")),
            ZoneState::Ready
        );
        // In autumn 08:00 CET is 07:00 UTC again (clocks went back on 25 October).
        assert_eq!(
            zone_state(&timing, berlin, at("2026-10-25T05:00:00Z")),
            ZoneState::Quiet(at("2026-10-25T07:00:00Z"))
        );
        // 20:00 UTC is 21:00 CET: quiet from the minute it starts, until 08:00 the next day.
        assert_eq!(
            zone_state(
                &timing,
                berlin,
                Utc.with_ymd_and_hms(2026, 12, 3, 20, 0, 0).unwrap()
            ),
            ZoneState::Quiet(at("2026-12-04T07:00:00Z"))
        );
    }

    #[test]
    fn a_number_gives_the_zone_of_its_country_when_it_has_one() {
        assert_eq!(zone_of_number("+4930"), Some(chrono_tz::Europe::Berlin));
        assert_eq!(zone_of_number("+447"), Some(chrono_tz::Europe::London));
        assert_eq!(zone_of_number("+819"), Some(chrono_tz::Asia::Tokyo));
        // Portugal keeps three (Lisbon, Madeira, the Azores).
        assert_eq!(zone_of_number("+3519"), None);
        // The United States and Russia span many zones: no guess.
        assert_eq!(zone_of_number("+1212"), None);
        assert_eq!(zone_of_number("+7495"), None);
        assert_eq!(zone_of_number("4930"), None);
        assert_eq!(country_zone("FR"), Some(chrono_tz::Europe::Paris));
        assert_eq!(country_zone("US"), None);
    }
}
