//! `ReplayExecution` and `RetryExecution`: request checks and replies.

use tonic::Status;

use super::error::invalid;
use super::{pb, validate};
use crate::engine::{ReplayReport, RetryRequest};
use crate::machine::ReplayError;

/// Checks a retry request.
pub(crate) fn retry_request(
    r: pb::RetryExecutionRequest,
    limits: &validate::Limits,
) -> Result<RetryRequest, Status> {
    let id = validate::id("id", &r.id)?;
    let from_seq = validate::seq("from_seq", r.from_seq)?;
    let mut size = 0;
    for (turn, prompt) in &r.prompts {
        if *turn == 0 || *turn as usize > validate::limits::MAX_TURNS {
            return Err(invalid(format!(
                "prompts are keyed by turn number, from 1 to {}; got {turn}",
                validate::limits::MAX_TURNS
            )));
        }
        if prompt.trim().is_empty() {
            return Err(invalid(format!("the new prompt of turn {turn} is empty")));
        }
        validate::no_nul(&format!("the new prompt of turn {turn}"), prompt)?;
        size += prompt.len();
    }
    if size > limits.max_prompt_bytes {
        return Err(invalid(format!(
            "the new prompts are {size} bytes; the limit is {} bytes",
            limits.max_prompt_bytes
        )));
    }
    Ok(RetryRequest {
        id,
        from_seq: (from_seq > 0).then_some(from_seq),
        prompts: r.prompts.into_iter().collect(),
        retry_policy: validate::quota::retry_policy(
            limits,
            r.retry_policy.map(TryInto::try_into).transpose()?,
        )?,
        force: r.force,
    })
}

/// The reply to a replay: OK with the status reached, or where code and history part ways. The
/// CLI answers `cairn exec replay --file` with it too, so both read the same.
pub fn replay_response(report: ReplayReport) -> Result<pb::ReplayExecutionResponse, Status> {
    let diverged =
        |seq, kind: &str, history_has, code_would, message| pb::ReplayExecutionResponse {
            ok: false,
            events: report.events,
            status: String::new(),
            divergence: Some(pb::Divergence {
                seq,
                kind: kind.into(),
                history_has,
                code_would,
                message,
            }),
        };
    match &report.verdict {
        Ok(replayed) => Ok(pb::ReplayExecutionResponse {
            ok: true,
            events: report.events,
            status: replayed
                .status
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            divergence: None,
        }),
        Err(e @ ReplayError::Nondeterminism(n)) => Ok(diverged(
            n.seq,
            "nondeterminism",
            n.found.clone(),
            n.expected.clone(),
            e.to_string(),
        )),
        Err(e @ ReplayError::Invalid { seq, source }) => Ok(diverged(
            *seq,
            "invalid_transition",
            source.event.clone(),
            format!("no transition for it in state {}", source.state),
            e.to_string(),
        )),
    }
}
