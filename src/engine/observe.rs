//! Metrics and logs from committed transitions: what a transition's events say about its
//! execution (started, an attempt's outcome and usage, closed), recorded once the commit
//! succeeded, so a conflicting or fenced transition that is recomputed counts once.
//!
//! The runtime, model and queue are the machine state's (its agent's runtime and model and its
//! queue, as the transition leaves it; a team has no agent: `team`). An
//! execution's duration runs from its id's UUIDv7 timestamp (its creation; a team child's id
//! carries its parent's) to the closing transition's time.
//!
//! Schedule-to-start latency needs when the attempt became ready, which no row keeps: this server
//! remembers when it committed each attempt's `ActivityScheduled` and records the latency when
//! the attempt's `ActivityStarted` (written with its outcome) commits. Attempts scheduled by
//! another server, or before a restart, are not measured.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::domain::{HistoryEvent, Millis, TimeoutKind, Usage};
use crate::machine::ExecutionState;
use crate::store::Transition;
use crate::telemetry::metrics::{self, Closed};

/// The most attempts remembered as scheduled and not yet started; past it new ones go unmeasured.
const MAX_PENDING: usize = 100_000;

/// An attempt: (execution, activity, attempt).
type AttemptKey = (Uuid, String, u32);

/// When this server committed each attempt's `ActivityScheduled`.
static SCHEDULED: Mutex<Option<HashMap<AttemptKey, Millis>>> = Mutex::new(None);

/// Remembers (`Some(at)`) or forgets (`None`) when an attempt became ready; returns what was
/// remembered before.
fn scheduled_at(key: AttemptKey, at: Option<Millis>) -> Option<Millis> {
    let mut pending = SCHEDULED.lock().unwrap_or_else(|e| e.into_inner());
    let pending = pending.get_or_insert_with(HashMap::new);
    match at {
        Some(at) if pending.len() < MAX_PENDING => pending.insert(key, at),
        Some(_) => None,
        None => pending.remove(&key),
    }
}

/// What one transition (and the children it starts) will record once committed.
pub(crate) struct Observed {
    executions: Vec<Execution>,
}

/// The facts of one execution's transition that metrics count.
struct Execution {
    id: Uuid,
    runtime: String,
    model: String,
    queue: String,
    now: Millis,
    facts: Vec<Fact>,
}

/// An event, reduced to what metrics need (no prompts, outputs or checkpoints are copied).
enum Fact {
    Started,
    Scheduled {
        activity: String,
        attempt: u32,
    },
    AttemptStarted {
        activity: String,
        attempt: u32,
        at: Millis,
    },
    Completed(Usage),
    Failed(String),
    TimedOut {
        activity: String,
        attempt: u32,
        kind: TimeoutKind,
    },
    Canceled {
        activity: String,
        attempt: u32,
    },
    Closed(Ending),
}

/// How an execution closed.
enum Ending {
    Completed,
    Failed(String),
    Canceled,
}

impl Fact {
    fn of(event: &HistoryEvent) -> Option<Fact> {
        Some(match event {
            HistoryEvent::ExecutionStarted { .. } | HistoryEvent::TeamStarted { .. } => {
                Fact::Started
            }
            HistoryEvent::ActivityScheduled {
                activity_id,
                attempt,
                ..
            } => Fact::Scheduled {
                activity: activity_id.clone(),
                attempt: *attempt,
            },
            HistoryEvent::ActivityStarted {
                activity_id,
                attempt,
                started_at,
                ..
            } => Fact::AttemptStarted {
                activity: activity_id.clone(),
                attempt: *attempt,
                at: *started_at,
            },
            HistoryEvent::ActivityCompleted { usage, .. } => Fact::Completed(*usage),
            HistoryEvent::ActivityFailed { failure, .. } => Fact::Failed(failure.code.clone()),
            HistoryEvent::ActivityTimedOut {
                activity_id,
                attempt,
                kind,
                ..
            } => Fact::TimedOut {
                activity: activity_id.clone(),
                attempt: *attempt,
                kind: *kind,
            },
            HistoryEvent::ActivityCanceled {
                activity_id,
                attempt,
                ..
            } => Fact::Canceled {
                activity: activity_id.clone(),
                attempt: *attempt,
            },
            HistoryEvent::ExecutionCompleted { .. } => Fact::Closed(Ending::Completed),
            HistoryEvent::ExecutionFailed { failure } => {
                Fact::Closed(Ending::Failed(failure.code.clone()))
            }
            HistoryEvent::ExecutionCanceled { .. } => Fact::Closed(Ending::Canceled),
            _ => return None,
        })
    }
}

impl Observed {
    /// Takes what it needs from `transition` before it is committed: its events, labelled from
    /// `state`, the state it leaves, and what its `children` (the child executions it starts)
    /// observed.
    pub(super) fn of(
        transition: &Transition,
        state: &ExecutionState,
        children: Vec<Observed>,
    ) -> Observed {
        let facts: Vec<Fact> = transition.events.iter().filter_map(Fact::of).collect();
        let mut executions = Vec::new();
        if !facts.is_empty() {
            let (runtime, model, queue) = match state {
                ExecutionState::Agent(s) => (&*s.agent.runtime, &*s.agent.model_id, &s.queue),
                ExecutionState::Team(s) => ("team", "", &s.queue),
            };
            executions.push(Execution {
                id: transition.execution_id,
                runtime: runtime.into(),
                model: model.into(),
                queue: queue.clone(),
                now: transition.now,
                facts,
            });
        }
        executions.extend(children.into_iter().flat_map(|c| c.executions));
        Observed { executions }
    }

    /// Records the metrics and logs of a committed transition.
    pub(super) fn record(self) {
        for execution in self.executions {
            execution.record();
        }
    }
}

fn seconds_between(from: Millis, to: Millis) -> f64 {
    to.saturating_sub(from).max(0) as f64 / 1000.0
}

impl Execution {
    fn record(mut self) {
        let facts = std::mem::take(&mut self.facts);
        let runtime = self.runtime.as_str();
        let mut started_at = None;
        let ended = |outcome, started_at: Option<Millis>| {
            if let Some(at) = started_at {
                metrics::attempt_ended(runtime, outcome, seconds_between(at, self.now));
            }
        };
        for fact in facts {
            match fact {
                Fact::Started => metrics::execution_started(runtime),
                Fact::Scheduled { activity, attempt } => {
                    metrics::activity_scheduled(runtime, &self.queue, attempt > 1);
                    scheduled_at((self.id, activity, attempt), Some(self.now));
                }
                Fact::AttemptStarted {
                    activity,
                    attempt,
                    at,
                } => {
                    started_at = Some(at);
                    if let Some(ready) = scheduled_at((self.id, activity, attempt), None) {
                        let seconds = seconds_between(ready, at);
                        metrics::schedule_to_start(runtime, &self.queue, seconds);
                    }
                }
                Fact::Completed(usage) => {
                    metrics::turn_usage(
                        runtime,
                        &self.model,
                        usage.input_tokens,
                        usage.output_tokens,
                        usage.cost_usd,
                        usage.tool_calls,
                    );
                    ended("completed", started_at);
                }
                Fact::Failed(code) => {
                    metrics::activity_failed(runtime, &code);
                    ended("failed", started_at);
                }
                Fact::TimedOut {
                    activity,
                    attempt,
                    kind,
                } => {
                    scheduled_at((self.id, activity, attempt), None);
                    metrics::activity_failed(runtime, kind.code());
                    metrics::activity_timed_out(
                        runtime,
                        kind.code(),
                        kind == TimeoutKind::Heartbeat,
                    );
                    ended("timed_out", started_at);
                }
                Fact::Canceled { activity, attempt } => {
                    scheduled_at((self.id, activity, attempt), None);
                    ended("canceled", started_at);
                }
                Fact::Closed(ending) => self.closed(&ending),
            }
        }
    }

    fn closed(&self, ending: &Ending) {
        let created = self.id.get_timestamp().map(|t| {
            let (secs, nanos) = t.to_unix();
            (secs * 1000 + u64::from(nanos) / 1_000_000) as Millis
        });
        let seconds = created.map(|at| seconds_between(at, self.now));
        let (how, status) = match ending {
            Ending::Completed => (Closed::Completed, "completed"),
            Ending::Failed(code) => (Closed::Failed(code), "failed"),
            Ending::Canceled => (Closed::Canceled, "canceled"),
        };
        metrics::execution_closed(&self.runtime, how, seconds);
        tracing::info!(execution_id = %self.id, runtime = %self.runtime, status, duration_s = seconds, "execution closed");
    }
}
