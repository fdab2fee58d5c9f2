//! The customer-service window: after a customer writes, free text is allowed on WhatsApp (and
//! in a Viber session) for 24 hours; every customer message starts the 24 hours again. This is
//! the one place that rule lives.

use chrono::{DateTime, Duration, Utc};

use crate::domain::channel::ChannelKind;

pub const WINDOW_HOURS: i64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Free text allowed until `until`.
    Open { until: DateTime<Utc> },
    /// Templates only; `closed_at` is when the last window ended (`None`: the customer never wrote).
    Closed { closed_at: Option<DateTime<Utc>> },
    /// This kind of channel has no window (SMS): free text is always allowed.
    NotApplicable,
}

impl WindowState {
    pub fn is_open(self) -> bool {
        matches!(self, WindowState::Open { .. } | WindowState::NotApplicable)
    }

    pub fn expires_at(self) -> Option<DateTime<Utc>> {
        match self {
            WindowState::Open { until } => Some(until),
            _ => None,
        }
    }
}

pub fn has_window(kind: ChannelKind) -> bool {
    matches!(kind, ChannelKind::Whatsapp | ChannelKind::Viber)
}

pub fn state(
    kind: ChannelKind,
    last_inbound: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> WindowState {
    if !has_window(kind) {
        return WindowState::NotApplicable;
    }
    match last_inbound {
        None => WindowState::Closed { closed_at: None },
        Some(at) => {
            let until = at + Duration::hours(WINDOW_HOURS);
            if now < until {
                WindowState::Open { until }
            } else {
                WindowState::Closed {
                    closed_at: Some(until),
                }
            }
        }
    }
}

/// "23 h 12 min left", "4 min left", "less than a minute left".
pub fn remaining_label(until: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let mins = (until - now).num_minutes();
    match mins {
        m if m < 1 => "less than a minute left".into(),
        m if m < 60 => format!("{m} min left"),
        m => format!("{} h {} min left", m / 60, m % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn window_opens_for_24_hours_after_the_last_inbound() {
        let k = ChannelKind::Whatsapp;
        assert_eq!(
            state(k, None, t(0)),
            WindowState::Closed { closed_at: None }
        );
        assert_eq!(
            state(k, Some(t(0)), t(1)),
            WindowState::Open { until: t(24) }
        );
        assert!(state(k, Some(t(0)), t(24) - Duration::seconds(1)).is_open());
        assert_eq!(
            state(k, Some(t(0)), t(24)),
            WindowState::Closed {
                closed_at: Some(t(24))
            }
        );
        assert!(state(ChannelKind::Viber, Some(t(0)), t(2)).is_open());
    }

    #[test]
    fn sms_has_no_window() {
        assert_eq!(
            state(ChannelKind::Sms, None, t(0)),
            WindowState::NotApplicable
        );
        assert!(WindowState::NotApplicable.is_open());
    }

    #[test]
    fn remaining_time_reads_well() {
        assert_eq!(
            remaining_label(t(24), t(0) + Duration::minutes(48)),
            "23 h 12 min left"
        );
        assert_eq!(
            remaining_label(t(1), t(1) - Duration::minutes(4)),
            "4 min left"
        );
        assert_eq!(
            remaining_label(t(1), t(1) - Duration::seconds(20)),
            "less than a minute left"
        );
    }
}
