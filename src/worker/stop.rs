//! Why an attempt stopped running, and what that makes of it: a report, a release, or nothing.

use crate::contract::ActivityOutcome;
use crate::domain::Failure;
use crate::runtime::{RuntimeError, TurnOutput};

/// Why the worker fired the runtime's cancellation token, strongest last: a later, stronger
/// reason replaces a weaker one, never the other way round.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stopping {
    /// The token has not fired.
    No,
    /// The worker is draining: hand the attempt back.
    Draining,
    /// The server asked to cancel the execution; this wins over a drain, since a released
    /// attempt would only be cancelled by the next worker.
    CancelRequested,
    /// The attempt cannot be stored (output too large, a report refused): it ends as this
    /// failure whatever else happens.
    Failing(Failure),
}

impl Stopping {
    /// Whether `self` may be replaced by `other`.
    pub fn yields_to(&self, other: &Stopping) -> bool {
        other.rank() > self.rank()
    }

    fn rank(&self) -> u8 {
        match self {
            Stopping::No => 0,
            Stopping::Draining => 1,
            Stopping::CancelRequested => 2,
            Stopping::Failing(_) => 3,
        }
    }
}

/// How the runtime's task ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// It returned.
    Returned(Result<TurnOutput, RuntimeError>),
    /// It ignored its token past the grace period and was abandoned.
    Abandoned,
}

/// Why an attempt stopped, which decides what the worker tells the server.
#[derive(Debug, PartialEq)]
pub(super) enum Stop {
    /// The runtime returned a result.
    Completed(TurnOutput),
    /// The runtime failed on its own, or the worker ended the attempt as a failure.
    Failed(Failure, Option<u64>),
    /// Cancellation was requested and the runtime stopped (or was abandoned).
    Canceled {
        /// The runtime ignored its token and was abandoned.
        abandoned: bool,
    },
    /// The worker drained: release the attempt so another worker resumes it.
    Drained,
    /// The lease is gone: tell the server nothing more.
    LeaseLost,
}

impl Stop {
    /// The stop of a runtime that `ended` after the worker was `stopping` it.
    pub fn of(ended: Ended, stopping: Stopping) -> Stop {
        match (stopping, ended) {
            (Stopping::Failing(failure), _) => Stop::Failed(failure, None),
            // A result that arrived despite the token is still a result.
            (_, Ended::Returned(Ok(output))) => Stop::Completed(output),
            (Stopping::CancelRequested, Ended::Abandoned) => Stop::Canceled { abandoned: true },
            (Stopping::CancelRequested, Ended::Returned(Err(_))) => {
                Stop::Canceled { abandoned: false }
            }
            (Stopping::Draining, _) => Stop::Drained,
            (Stopping::No, Ended::Returned(Err(e))) if e.is_canceled() => {
                Stop::Canceled { abandoned: false }
            }
            (Stopping::No, Ended::Returned(Err(e))) => Stop::Failed(
                Failure {
                    code: e.code,
                    message: e.message,
                    retryable: e.retryable,
                    details: e.details,
                },
                e.retry_after.map(|d| d.as_millis() as u64),
            ),
            // Only a fired token starts the grace period; kept total for safety.
            (Stopping::No, Ended::Abandoned) => Stop::Canceled { abandoned: true },
        }
    }

    /// The outcome to report, or `None` when the attempt is released or its lease is lost. A
    /// failure's checkpoint is added when the report is sent.
    pub fn outcome(self) -> Option<ActivityOutcome> {
        match self {
            Stop::Completed(output) => Some(ActivityOutcome::Completed {
                output: output.output,
                usage: output.usage,
                checkpoint: output.checkpoint,
            }),
            Stop::Failed(failure, retry_after_ms) => Some(ActivityOutcome::Failed {
                failure,
                retry_after_ms,
                checkpoint: None,
            }),
            Stop::Canceled { abandoned } => Some(ActivityOutcome::Canceled { abandoned }),
            Stop::Drained | Stop::LeaseLost => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Ended {
        Ended::Returned(Err(RuntimeError::retryable("http_500", "boom")))
    }

    fn canceled() -> Ended {
        Ended::Returned(Err(RuntimeError::canceled()))
    }

    fn completed() -> Ended {
        Ended::Returned(Ok(TurnOutput::default()))
    }

    #[test]
    fn each_way_of_stopping_becomes_its_report() {
        let refused = Failure::new("report_refused", "no", false);
        let cases = [
            (completed(), Stopping::No, "completed"),
            (completed(), Stopping::CancelRequested, "completed"),
            (completed(), Stopping::Draining, "completed"),
            (failed(), Stopping::No, "failed"),
            (canceled(), Stopping::No, "canceled"),
            (canceled(), Stopping::CancelRequested, "canceled"),
            (failed(), Stopping::CancelRequested, "canceled"),
            (Ended::Abandoned, Stopping::CancelRequested, "abandoned"),
            (canceled(), Stopping::Draining, "drained"),
            (failed(), Stopping::Draining, "drained"),
            (Ended::Abandoned, Stopping::Draining, "drained"),
            (completed(), Stopping::Failing(refused.clone()), "refused"),
            (
                Ended::Abandoned,
                Stopping::Failing(refused.clone()),
                "refused",
            ),
        ];
        for (ended, stopping, expected) in cases {
            let case = format!("{ended:?} after {stopping:?}");
            let got = match Stop::of(ended, stopping) {
                Stop::Completed(_) => "completed",
                Stop::Failed(f, _) if f.code == "report_refused" => "refused",
                Stop::Failed(f, _) => {
                    assert!(f.retryable, "{case}: the runtime's own verdict is kept");
                    "failed"
                }
                Stop::Canceled { abandoned: false } => "canceled",
                Stop::Canceled { abandoned: true } => "abandoned",
                Stop::Drained => "drained",
                Stop::LeaseLost => "lost",
            };
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn a_stronger_reason_replaces_a_weaker_one_and_a_failure_stays() {
        let failing = Stopping::Failing(Failure::new("x", "y", false));
        assert!(Stopping::No.yields_to(&Stopping::Draining));
        assert!(Stopping::Draining.yields_to(&Stopping::CancelRequested));
        assert!(!Stopping::CancelRequested.yields_to(&Stopping::Draining));
        assert!(Stopping::CancelRequested.yields_to(&failing));
        assert!(!failing.yields_to(&Stopping::CancelRequested));
        assert!(!failing.yields_to(&Stopping::Failing(Failure::new("z", "w", false))));
    }
}
