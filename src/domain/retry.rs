//! When to try a send again after an error that proves the provider did not take the message
//! (connection refused, HTTP 429, a 5xx with no documented side effect). Errors that may have
//! reached the provider end as `unknown`, never here: see `domain/message.rs`.
//!
//! The policy is capped exponential backoff with full jitter (the delay is drawn uniformly
//! between zero and the exponential ceiling), so a burst of failures does not come back as a
//! burst of retries. The random draw is passed in, which keeps this a pure function.

use std::time::Duration;

/// WhatsApp's pair rate limit: one message every 6 seconds to the same user (Meta, *About the
/// platform*; exceeding it fails with 131056). Bursts are tolerated but borrow from later quota,
/// so Herald spaces messages to one recipient on one number by this much.
pub const PAIR_SPACING: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// How much the ceiling grows with each attempt.
    pub factor: u32,
    /// The ceiling never grows past this.
    pub cap: Duration,
    /// Attempts in all, the first send included; after this many the message fails.
    pub max_attempts: u32,
    /// The longest a provider's `Retry-After` is honoured for. A provider asking for hours is
    /// retried after this long instead; if it is still limiting, its next answer counts as
    /// another attempt, so the message still fails after `max_attempts`.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// 2 s, 4 s, 8 s, 16 s, 32 s ceilings (capped at 5 min for longer policies), 6 attempts in
    /// all, Retry-After honoured up to an hour.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(2),
        factor: 2,
        cap: Duration::from_secs(5 * 60),
        max_attempts: 6,
        max_retry_after: Duration::from_secs(60 * 60),
    };

    /// The longest the backoff waits after attempt number `attempt` (1 for the first send)
    /// failed: `base × factor^(attempt − 1)`, capped. Never decreases as attempts grow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let mut ceiling = self.base.min(self.cap);
        if self.factor <= 1 {
            return ceiling;
        }
        for _ in 1..attempt.max(1) {
            match ceiling.checked_mul(self.factor) {
                Some(next) if next < self.cap => ceiling = next,
                _ => return self.cap,
            }
        }
        ceiling
    }

    /// How long to wait before the next attempt, after attempt number `attempt` (1 for the
    /// first send) failed in a retryable way; `None` to give up and mark the message failed.
    ///
    /// `jitter` is a random draw in `[0, 1]` (out-of-range values are clamped; NaN waits the
    /// full ceiling). `retry_after` is the provider's `Retry-After` (HTTP 429, Twilio 20429,
    /// Meta 130429): the delay is never shorter than it, up to `max_retry_after`.
    pub fn next_attempt(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let ceiling = self.ceiling(attempt);
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let backoff =
            Duration::try_from_secs_f64(ceiling.as_secs_f64() * jitter).unwrap_or(ceiling);
        Some(match retry_after {
            Some(asked) => backoff.max(asked.min(self.max_retry_after)),
            None => backoff,
        })
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// [`RetryPolicy::next_attempt`] with the default policy.
pub fn next_attempt(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
    RetryPolicy::DEFAULT.next_attempt(attempt, retry_after, jitter)
}

/// The least time between two WhatsApp messages to the same recipient from one number.
pub fn pair_spacing() -> Duration {
    PAIR_SPACING
}

/// How long a message to a recipient must still wait, given how long ago the last message to
/// that recipient on the same number went out (`None`: never, or not recently).
pub fn pair_wait(since_last_to_recipient: Option<Duration>) -> Duration {
    since_last_to_recipient.map_or(Duration::ZERO, |since| PAIR_SPACING.saturating_sub(since))
}

/// Meta's suggested wait after the pair rate limit was hit (131056): 4^X seconds, X counting
/// the consecutive 131056 errors for this recipient from 0, capped at the default policy's
/// `max_retry_after`. The dispatcher passes it to [`next_attempt`] as the `retry_after`.
pub fn pair_limit_retry_after(consecutive_errors: u32) -> Duration {
    let cap = RetryPolicy::DEFAULT.max_retry_after;
    4u64.checked_pow(consecutive_errors)
        .map(Duration::from_secs)
        .map_or(cap, |wait| wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ceilings_double_from_two_seconds_up_to_the_cap() {
        let p = RetryPolicy::DEFAULT;
        let ceilings: Vec<u64> = (1..=10).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(p.ceiling(0), secs(2));
        assert_eq!(p.ceiling(u32::MAX), secs(300));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(next_attempt(3, None, 0.0), Some(Duration::ZERO));
        assert_eq!(next_attempt(3, None, 1.0), Some(secs(8)));
        assert_eq!(next_attempt(3, None, 0.5), Some(secs(4)));
        assert_eq!(next_attempt(3, None, 7.0), Some(secs(8)));
        assert_eq!(next_attempt(3, None, -1.0), Some(Duration::ZERO));
        assert_eq!(next_attempt(3, None, f64::NAN), Some(secs(8)));
    }

    #[test]
    fn gives_up_after_six_attempts() {
        assert!(next_attempt(5, None, 0.5).is_some());
        assert_eq!(next_attempt(6, None, 0.5), None);
        assert_eq!(next_attempt(6, Some(secs(1)), 0.5), None);
    }

    #[test]
    fn retry_after_is_never_cut_short_up_to_an_hour() {
        assert_eq!(next_attempt(1, Some(secs(30)), 0.9), Some(secs(30)));
        assert_eq!(next_attempt(4, Some(secs(1)), 1.0), Some(secs(16)));
        assert_eq!(next_attempt(1, Some(secs(7200)), 0.0), Some(secs(3600)));
    }

    #[test]
    fn a_policy_with_a_huge_cap_does_not_overflow() {
        let p = RetryPolicy {
            base: Duration::MAX,
            cap: Duration::MAX,
            max_attempts: u32::MAX,
            ..RetryPolicy::DEFAULT
        };
        assert_eq!(p.ceiling(40), Duration::MAX);
        assert!(p.next_attempt(40, None, 1.0).is_some());
        let flat = RetryPolicy {
            factor: 0,
            ..RetryPolicy::DEFAULT
        };
        assert_eq!(flat.ceiling(u32::MAX), secs(2));
    }

    #[test]
    fn pair_spacing_is_six_seconds() {
        assert_eq!(pair_spacing(), secs(6));
        assert_eq!(pair_wait(None), Duration::ZERO);
        assert_eq!(pair_wait(Some(secs(2))), secs(4));
        assert_eq!(pair_wait(Some(secs(60))), Duration::ZERO);
    }

    #[test]
    fn pair_limit_waits_grow_by_four() {
        let waits: Vec<u64> = (0..4)
            .map(|x| pair_limit_retry_after(x).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 4, 16, 64]);
        assert_eq!(pair_limit_retry_after(40), secs(3600));
    }

    fn any_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            1u64..10_000,
            0u32..10,
            1u64..1_000_000,
            1u32..20,
            1u64..10_000_000,
        )
            .prop_map(
                |(base_ms, factor, cap_ms, max_attempts, max_retry_after_ms)| RetryPolicy {
                    base: Duration::from_millis(base_ms),
                    factor,
                    cap: Duration::from_millis(cap_ms),
                    max_attempts,
                    max_retry_after: Duration::from_millis(max_retry_after_ms),
                },
            )
    }

    proptest! {
        #[test]
        fn the_delay_never_exceeds_the_cap(
            p in any_policy(), attempt in 0u32..100, jitter in -1.0f64..2.0,
        ) {
            if let Some(delay) = p.next_attempt(attempt, None, jitter) {
                prop_assert!(delay <= p.cap);
                prop_assert!(delay <= p.ceiling(attempt));
            }
        }

        #[test]
        fn the_ceiling_never_decreases(p in any_policy(), attempt in 0u32..100) {
            prop_assert!(p.ceiling(attempt) <= p.ceiling(attempt + 1));
            prop_assert!(p.ceiling(attempt) <= p.cap);
        }

        #[test]
        fn it_gives_up_exactly_after_max_attempts(
            p in any_policy(), attempt in 0u32..100, jitter in 0.0f64..=1.0,
            retry_after in prop::option::of(0u64..100_000),
        ) {
            let retry_after = retry_after.map(Duration::from_millis);
            let next = p.next_attempt(attempt, retry_after, jitter);
            prop_assert_eq!(next.is_none(), attempt >= p.max_attempts);
        }

        #[test]
        fn retry_after_is_honoured_within_its_limit(
            p in any_policy(), attempt in 0u32..100, jitter in 0.0f64..=1.0,
            asked_ms in 0u64..100_000_000,
        ) {
            let asked = Duration::from_millis(asked_ms);
            if let Some(delay) = p.next_attempt(attempt, Some(asked), jitter) {
                prop_assert!(delay >= asked.min(p.max_retry_after));
                prop_assert!(delay <= p.cap.max(p.max_retry_after));
            }
        }

        #[test]
        fn more_jitter_never_means_a_shorter_wait(
            p in any_policy(), attempt in 0u32..100, a in 0.0f64..=1.0, b in 0.0f64..=1.0,
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(p.next_attempt(attempt, None, low) <= p.next_attempt(attempt, None, high));
        }
    }
}
