//! Retry policy, timeouts, and the persisted back-off schedule.
//!
//! `retry_delay` is part of the durable contract: the delay it returns is recorded in history, and
//! replay recomputes it, so it must never change for a given input. It is a small pure function of
//! our own rather than a library call for exactly that reason.

use serde::{Deserialize, Serialize};

/// The longest duration or interval a policy or timeout may hold: 365 days in milliseconds.
/// Added to any timestamp of this millennium it stays far below `i64::MAX`, so a deadline
/// computed from it can neither overflow nor wrap.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// The most attempts a retry policy may allow. A policy of 0 ("unlimited") that a client
/// sends is given the server's `--max-attempts`, at most this, before it is stored.
pub const MAX_ATTEMPTS: u32 = 10_000;

/// The most failure codes a retry policy may list as non-retryable.
pub const MAX_NON_RETRYABLE_CODES: usize = 64;

/// The longest failure code, in bytes.
pub const MAX_CODE_BYTES: usize = 64;

/// How an activity is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// The delay before the second attempt.
    pub initial_interval_ms: u64,
    /// Each delay is the previous one times this.
    #[serde(with = "crate::domain::float")]
    pub backoff_coefficient: f64,
    /// No delay is longer than this.
    pub maximum_interval_ms: u64,
    /// How many attempts in all; 0 means unlimited.
    pub maximum_attempts: u32,
    /// Failure codes that are never retried, whatever the runtime says.
    #[serde(default)]
    pub non_retryable_codes: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: 60_000,
            maximum_attempts: 5,
            non_retryable_codes: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// Checks the policy; the error says which field to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_interval_ms == 0 {
            return Err("retry_policy.initial_interval_ms must be at least 1".into());
        }
        for (field, ms) in [
            ("initial_interval_ms", self.initial_interval_ms),
            ("maximum_interval_ms", self.maximum_interval_ms),
        ] {
            if ms > MAX_DURATION_MS {
                return Err(format!(
                    "retry_policy.{field} is {ms} ms; the limit is {MAX_DURATION_MS} ms (365 days)"
                ));
            }
        }
        if self.maximum_attempts > MAX_ATTEMPTS {
            return Err(format!(
                "retry_policy.maximum_attempts {} is over the limit of {MAX_ATTEMPTS} (0 means unlimited)",
                self.maximum_attempts
            ));
        }
        if self.non_retryable_codes.len() > MAX_NON_RETRYABLE_CODES {
            return Err(format!(
                "retry_policy.non_retryable_codes lists {} codes; the limit is {MAX_NON_RETRYABLE_CODES}",
                self.non_retryable_codes.len()
            ));
        }
        if let Some(i) = self.non_retryable_codes.iter().position(|c| {
            c.is_empty() || c.len() > MAX_CODE_BYTES || c.chars().any(char::is_control)
        }) {
            return Err(format!(
                "retry_policy.non_retryable_codes[{i}] must be 1-{MAX_CODE_BYTES} bytes of printable characters"
            ));
        }
        if !(self.backoff_coefficient >= 1.0 && self.backoff_coefficient <= 100.0) {
            return Err(format!(
                "retry_policy.backoff_coefficient must be between 1 and 100, got {}",
                self.backoff_coefficient
            ));
        }
        if self.maximum_interval_ms < self.initial_interval_ms {
            return Err(format!(
                "retry_policy.maximum_interval_ms ({}) must not be below initial_interval_ms ({})",
                self.maximum_interval_ms, self.initial_interval_ms
            ));
        }
        Ok(())
    }

    /// Whether a failure on `attempt` may be followed by another attempt.
    pub fn allows_retry(&self, attempt: u32, code: &str, retryable: bool) -> bool {
        retryable
            && !self.non_retryable_codes.iter().any(|c| c == code)
            && (self.maximum_attempts == 0 || attempt < self.maximum_attempts)
    }
}

/// Limits on one attempt of an activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    /// How long a task may wait for a worker; 0 means forever. Not retried when it fires.
    pub schedule_to_start_ms: u64,
    /// How long one attempt may run; 0 means no limit.
    pub start_to_close_ms: u64,
    /// How long a running attempt may go without reporting progress before its lease expires.
    pub heartbeat_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            schedule_to_start_ms: 0,
            start_to_close_ms: 0,
            heartbeat_ms: 30_000,
        }
    }
}

impl Timeouts {
    /// Checks the timeouts; the error says which field to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms < 100 {
            return Err(format!(
                "timeouts.heartbeat_ms must be at least 100, got {}",
                self.heartbeat_ms
            ));
        }
        for (field, ms) in [
            ("schedule_to_start_ms", self.schedule_to_start_ms),
            ("start_to_close_ms", self.start_to_close_ms),
            ("heartbeat_ms", self.heartbeat_ms),
        ] {
            if ms > MAX_DURATION_MS {
                return Err(format!(
                    "timeouts.{field} is {ms} ms; the limit is {MAX_DURATION_MS} ms (365 days)"
                ));
            }
        }
        Ok(())
    }
}

/// The back-off before attempt `failed_attempt + 1`, and the jitter part of it.
///
/// The base delay is `initial * coefficient^(failed_attempt - 1)`, capped at the maximum. Jitter is
/// up to 10% of the base, derived from `seed` (a hash of the execution and activity) so that it is
/// deterministic, recorded in the event, and spreads retries of many executions apart.
pub fn retry_delay(policy: &RetryPolicy, failed_attempt: u32, seed: u64) -> (u64, u64) {
    let exponent = failed_attempt.saturating_sub(1).min(64) as i32;
    let base = (policy.initial_interval_ms as f64) * policy.backoff_coefficient.powi(exponent);
    let base = if base.is_finite() {
        (base as u64).min(policy.maximum_interval_ms)
    } else {
        policy.maximum_interval_ms
    };
    let spread = base / 10;
    let jitter = if spread == 0 {
        0
    } else {
        splitmix64(seed ^ u64::from(failed_attempt)) % (spread + 1)
    };
    let total = base
        .saturating_add(jitter)
        .min(policy.maximum_interval_ms.max(base));
    (total, total - base)
}

/// A small, well-known mixing function; stable forever because it is written here.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of a string (FNV-1a), for jitter seeds.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(initial: u64, coefficient: f64, max: u64) -> RetryPolicy {
        RetryPolicy {
            initial_interval_ms: initial,
            backoff_coefficient: coefficient,
            maximum_interval_ms: max,
            maximum_attempts: 0,
            non_retryable_codes: vec![],
        }
    }

    #[test]
    fn grows_by_the_coefficient_until_the_maximum() {
        let p = policy(100, 2.0, 1_000);
        let bases: Vec<u64> = (1..=6)
            .map(|a| {
                let (t, j) = retry_delay(&p, a, 7);
                t - j
            })
            .collect();
        assert_eq!(bases, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn attempts_are_limited_and_codes_excluded() {
        let mut p = policy(1, 1.0, 1);
        p.maximum_attempts = 3;
        p.non_retryable_codes = vec!["bad_request".into()];
        assert!(p.allows_retry(2, "x", true));
        assert!(!p.allows_retry(3, "x", true));
        assert!(!p.allows_retry(1, "x", false));
        assert!(!p.allows_retry(1, "bad_request", true));
    }

    proptest! {
        #[test]
        fn delay_is_deterministic_and_bounded(
            initial in 1u64..10_000, coefficient in 1.0f64..10.0, extra in 0u64..100_000,
            attempt in 1u32..200, seed in any::<u64>()
        ) {
            let p = policy(initial, coefficient, initial + extra);
            let (total, jitter) = retry_delay(&p, attempt, seed);
            prop_assert_eq!((total, jitter), retry_delay(&p, attempt, seed));
            prop_assert!(total >= initial);
            prop_assert!(total <= p.maximum_interval_ms);
            prop_assert!(jitter <= total / 10 + 1);
        }
    }
}
