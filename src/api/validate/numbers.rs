//! Checks of numeric fields: durations within [`MAX_DURATION_MS`], seqs within i64, usage that a
//! BIGINT and a JSON number can hold.

use tonic::Status;

use super::super::error::invalid;
use super::limits::{MAX_COST_USD, MAX_DURATION_MS, MAX_SEQ, MAX_TOKENS, MAX_TOOL_CALLS};
use crate::domain::Usage;

/// A duration in milliseconds within [`MAX_DURATION_MS`].
pub(crate) fn duration_ms(field: &str, ms: u64) -> Result<u64, Status> {
    if ms > MAX_DURATION_MS {
        return Err(invalid(format!(
            "{field} is {ms} ms; the limit is {MAX_DURATION_MS} ms (365 days)"
        )));
    }
    Ok(ms)
}

/// A seq a request names (`after_seq`, `from_seq`, a chunk index): seqs are stored as BIGINT.
pub(crate) fn seq(field: &str, seq: u64) -> Result<u64, Status> {
    if seq > MAX_SEQ {
        return Err(invalid(format!(
            "{field} {seq} is over the highest seq, {MAX_SEQ}"
        )));
    }
    Ok(seq)
}

/// A worker's usage report: counts within their limits, cost finite and not negative.
pub(crate) fn usage(u: Option<super::super::pb::Usage>) -> Result<Usage, Status> {
    let Some(u) = u else {
        return Ok(Usage::default());
    };
    for (field, value, max) in [
        ("usage.input_tokens", u.input_tokens, MAX_TOKENS),
        ("usage.output_tokens", u.output_tokens, MAX_TOKENS),
        ("usage.tool_calls", u.tool_calls, MAX_TOOL_CALLS),
    ] {
        if value > max {
            return Err(invalid(format!(
                "{field} {value} is over the limit of {max}"
            )));
        }
    }
    if !u.cost_usd.is_finite() || !(0.0..=MAX_COST_USD).contains(&u.cost_usd) {
        return Err(invalid(format!(
            "usage.cost_usd must be a finite number from 0 to {MAX_COST_USD}, got {}",
            u.cost_usd
        )));
    }
    Ok(u.into())
}
