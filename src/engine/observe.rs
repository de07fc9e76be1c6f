//! Metrics and logs from committed transitions: what a transition's events say about its
//! execution (started, an attempt's outcome and usage, closed), recorded once the commit
//! succeeded, so a conflicting or fenced transition that is recomputed counts once.
//!
//! The runtime, model and queue are read from the machine's snapshot the transition stores
//! (`agent.runtime`, `agent.model_id`, `queue`; a team's snapshot has no agent: `team`). An
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

use crate::domain::{HistoryEvent, Millis, TimeoutKind};
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
pub(super) struct Observed {
    executions: Vec<Execution>,
}

struct Execution {
    id: Uuid,
    runtime: String,
    model: String,
    queue: String,
    now: Millis,
    events: Vec<HistoryEvent>,
}

impl Observed {
    /// Takes what it needs from `transition` before it is committed.
    pub(super) fn of(transition: &Transition) -> Observed {
        let mut executions = Vec::new();
        collect(transition, &mut executions);
        Observed { executions }
    }

    /// Records the metrics and logs of a committed transition.
    pub(super) fn record(self) {
        for execution in self.executions {
            execution.record();
        }
    }
}

fn collect(transition: &Transition, into: &mut Vec<Execution>) {
    // Only the events metrics look at, without their (possibly large) outputs.
    let events: Vec<HistoryEvent> = transition
        .events
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::ActivityCompleted {
                activity_id,
                attempt,
                usage,
                ..
            } => Some(HistoryEvent::ActivityCompleted {
                activity_id: activity_id.clone(),
                attempt: *attempt,
                output: serde_json::Value::Null,
                usage: *usage,
                checkpoint: None,
            }),
            HistoryEvent::ExecutionCompleted { usage, .. } => {
                Some(HistoryEvent::ExecutionCompleted {
                    result: serde_json::Value::Null,
                    usage: *usage,
                })
            }
            HistoryEvent::ExecutionStarted { .. }
            | HistoryEvent::TeamStarted { .. }
            | HistoryEvent::ActivityScheduled { .. }
            | HistoryEvent::ActivityStarted { .. }
            | HistoryEvent::ActivityFailed { .. }
            | HistoryEvent::ActivityTimedOut { .. }
            | HistoryEvent::ActivityCanceled { .. }
            | HistoryEvent::ExecutionFailed { .. }
            | HistoryEvent::ExecutionCanceled { .. } => Some(e.clone()),
            _ => None,
        })
        .collect();
    if !events.is_empty() {
        let state = &transition.row.state;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let agent = state.get("agent");
        into.push(Execution {
            id: transition.execution_id,
            runtime: agent.map_or_else(|| "team".into(), |a| text(&a["runtime"])),
            model: agent.map(|a| text(&a["model_id"])).unwrap_or_default(),
            queue: state
                .get("queue")
                .map_or_else(|| crate::domain::DEFAULT_QUEUE.into(), text),
            now: transition.now,
            events,
        });
    }
    for child in &transition.children {
        collect(child, into);
    }
}

impl Execution {
    fn record(self) {
        let runtime = self.runtime.as_str();
        let mut started_at = None;
        let seconds_since = |at: Millis| (self.now.saturating_sub(at)).max(0) as f64 / 1000.0;
        for event in &self.events {
            match event {
                HistoryEvent::ExecutionStarted { .. } | HistoryEvent::TeamStarted { .. } => {
                    metrics::execution_started(runtime)
                }
                HistoryEvent::ActivityScheduled {
                    activity_id,
                    attempt,
                    ..
                } => {
                    metrics::activity_scheduled(runtime, &self.queue, *attempt > 1);
                    scheduled_at((self.id, activity_id.clone(), *attempt), Some(self.now));
                }
                HistoryEvent::ActivityStarted {
                    activity_id,
                    attempt,
                    started_at: at,
                    ..
                } => {
                    started_at = Some(*at);
                    if let Some(ready) =
                        scheduled_at((self.id, activity_id.clone(), *attempt), None)
                    {
                        let seconds = (at.saturating_sub(ready)).max(0) as f64 / 1000.0;
                        metrics::schedule_to_start(runtime, &self.queue, seconds);
                    }
                }
                HistoryEvent::ActivityCompleted { usage, .. } => {
                    metrics::turn_usage(
                        runtime,
                        &self.model,
                        usage.input_tokens,
                        usage.output_tokens,
                        usage.cost_usd,
                        usage.tool_calls,
                    );
                    attempt_ended(runtime, "completed", started_at.map(seconds_since));
                }
                HistoryEvent::ActivityFailed { failure, .. } => {
                    metrics::activity_failed(runtime, &failure.code);
                    attempt_ended(runtime, "failed", started_at.map(seconds_since));
                }
                HistoryEvent::ActivityTimedOut {
                    activity_id,
                    attempt,
                    kind,
                    ..
                } => {
                    scheduled_at((self.id, activity_id.clone(), *attempt), None);
                    metrics::activity_failed(runtime, kind.code());
                    metrics::activity_timed_out(
                        runtime,
                        kind.code(),
                        *kind == TimeoutKind::Heartbeat,
                    );
                    attempt_ended(runtime, "timed_out", started_at.map(seconds_since));
                }
                HistoryEvent::ActivityCanceled {
                    activity_id,
                    attempt,
                    ..
                } => {
                    scheduled_at((self.id, activity_id.clone(), *attempt), None);
                    attempt_ended(runtime, "canceled", started_at.map(seconds_since));
                }
                HistoryEvent::ExecutionCompleted { .. } => self.closed(Closed::Completed),
                HistoryEvent::ExecutionFailed { failure } => {
                    self.closed(Closed::Failed(&failure.code))
                }
                HistoryEvent::ExecutionCanceled { .. } => self.closed(Closed::Canceled),
                _ => {}
            }
        }
    }

    fn closed(&self, how: Closed<'_>) {
        let created = self.id.get_timestamp().map(|t| {
            let (secs, nanos) = t.to_unix();
            (secs * 1000 + u64::from(nanos) / 1_000_000) as Millis
        });
        let seconds = created.map(|at| (self.now.saturating_sub(at)).max(0) as f64 / 1000.0);
        metrics::execution_closed(&self.runtime, how, seconds);
        let status = match how {
            Closed::Completed => "completed",
            Closed::Failed(_) => "failed",
            Closed::Canceled => "canceled",
        };
        tracing::info!(execution_id = %self.id, runtime = %self.runtime, status, duration_s = seconds, "execution closed");
    }
}

fn attempt_ended(runtime: &str, outcome: &'static str, seconds: Option<f64>) {
    if let Some(seconds) = seconds {
        metrics::attempt_ended(runtime, outcome, seconds);
    }
}
