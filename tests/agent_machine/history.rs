//! A small history builder: numbered events, the constructors of the events the scenarios use,
//! and a walk that checks a history step by step as the engine would produce it.

use cairn::domain::{
    AgentSpec, Failure, HistoryEvent, Millis, Resume, RetryPolicy, TimeoutKind, Timeouts,
    TimerPurpose, Usage,
};
use cairn::machine::{AgentState, MachineContext, ReplayError, activity_id_for_turn, replay, step};
use serde_json::json;
use uuid::Uuid;

/// The execution every scenario belongs to; it seeds retry jitter, so it is fixed.
pub const EXECUTION: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
/// When every scenario starts.
pub const T0: Millis = 1_700_000_000_000;

/// The context the scenarios run in.
pub fn ctx() -> MachineContext {
    MachineContext {
        execution_id: EXECUTION,
    }
}

/// The retry policy of every scenario: 1 s doubling up to 10 s, three attempts, and
/// `bad_request` never retried.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        initial_interval_ms: 1_000,
        backoff_coefficient: 2.0,
        maximum_interval_ms: 10_000,
        maximum_attempts: 3,
        non_retryable_codes: vec!["bad_request".into()],
    }
}

/// An ordered history whose events are numbered from 1, as they are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The events; `events[i]` has seq `i + 1`.
    pub events: Vec<HistoryEvent>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History { events: Vec::new() }
    }

    /// Appends an input (a fact from outside the machine) as event `seq`.
    pub fn input(self, seq: u64, event: HistoryEvent) -> History {
        assert!(
            !event.is_command(),
            "seq {seq}: {event:?} is a command, not an input"
        );
        self.push(seq, event)
    }

    /// Appends a command (an event the machine emits) as event `seq`.
    pub fn command(self, seq: u64, event: HistoryEvent) -> History {
        assert!(
            event.is_command(),
            "seq {seq}: {event:?} is an input, not a command"
        );
        self.push(seq, event)
    }

    fn push(mut self, seq: u64, event: HistoryEvent) -> History {
        assert_eq!(
            seq,
            self.events.len() as u64 + 1,
            "events are numbered 1, 2, ..."
        );
        self.events.push(event);
        self
    }

    /// The event at `seq`.
    pub fn at(&self, seq: u64) -> &HistoryEvent {
        &self.events[seq as usize - 1]
    }

    /// Feeds each input to `step`, as the engine does, and checks that it emits exactly the
    /// commands the history records after that input. Returns the state after each input's
    /// step, by the input's seq.
    pub fn step_through(&self) -> Steps {
        let mut states: Vec<(u64, AgentState)> = Vec::new();
        let mut state = None;
        let mut i = 0;
        while i < self.events.len() {
            let seq = i as u64 + 1;
            let input = &self.events[i];
            assert!(
                !input.is_command(),
                "seq {seq}: a command nothing asked for: {input:?}"
            );
            let (next, commands) =
                step(ctx(), state, input).unwrap_or_else(|e| panic!("seq {seq}: {e}"));
            let end = (i + 1 + commands.len()).min(self.events.len());
            assert_eq!(
                commands,
                self.events[i + 1..end],
                "seq {seq}: the commands step emits for {}",
                input.event_type()
            );
            states.push((seq, next.clone()));
            state = Some(next);
            i = end;
        }
        Steps { states }
    }

    /// Checks the history both ways: step by step (see [`History::step_through`]) and as a
    /// full replay, which must end in the same state. Returns both.
    pub fn check(&self) -> (Steps, AgentState) {
        let steps = self.step_through();
        let replayed = self
            .replay()
            .unwrap_or_else(|e| panic!("replay: {e}"))
            .expect("a history starts with ExecutionStarted");
        assert_eq!(&replayed, steps.last(), "replay ends where the steps ended");
        (steps, replayed)
    }

    /// Replays the whole history through the current machine.
    pub fn replay(&self) -> Result<Option<AgentState>, ReplayError> {
        replay(ctx(), &self.events)
    }

    /// The first `len` events.
    pub fn prefix(&self, len: usize) -> History {
        History {
            events: self.events[..len].to_vec(),
        }
    }

    /// The same history with event `seq` replaced.
    pub fn with(&self, seq: u64, event: HistoryEvent) -> History {
        let mut altered = self.clone();
        altered.events[seq as usize - 1] = event;
        altered
    }

    /// The same history with `event` put in as event `seq` (later events move down one).
    pub fn with_inserted(&self, seq: u64, event: HistoryEvent) -> History {
        let mut altered = self.clone();
        altered.events.insert(seq as usize - 1, event);
        altered
    }

    /// The same history without event `seq` (later events move up one).
    pub fn without(&self, seq: u64) -> History {
        let mut altered = self.clone();
        altered.events.remove(seq as usize - 1);
        altered
    }
}

/// The states a step-by-step walk went through.
pub struct Steps {
    states: Vec<(u64, AgentState)>,
}

impl Steps {
    /// The state after the input at `seq` and the commands it emitted.
    pub fn after(&self, seq: u64) -> &AgentState {
        let found = self.states.iter().find(|(s, _)| *s == seq);
        &found
            .unwrap_or_else(|| panic!("seq {seq} is not an input"))
            .1
    }

    /// The state at the end.
    pub fn last(&self) -> &AgentState {
        &self.states.last().expect("a history has inputs").1
    }
}

/// A usage that cost `cost_usd`.
pub fn usage(cost_usd: f64) -> Usage {
    Usage {
        input_tokens: 100,
        output_tokens: 20,
        cost_usd,
        tool_calls: 1,
    }
}

/// A failure with this code.
pub fn failure(code: &str, retryable: bool) -> Failure {
    Failure::new(code, format!("the runtime said {code}"), retryable)
}

fn activity(turn: u32) -> String {
    activity_id_for_turn(turn)
}

/// The timer id of the back-off before `attempt` of `turn`.
pub fn timer_id(turn: u32, attempt: u32) -> String {
    format!("retry-{}-{attempt}", activity(turn))
}

/// ExecutionStarted with one prompt per turn and the scenario [`policy`].
pub fn started(prompts: &[&str]) -> HistoryEvent {
    start_event(prompts, None)
}

/// ExecutionStarted of a retry: [`started`] with the turns it reuses.
pub fn retried(prompts: &[&str], resume: Resume) -> HistoryEvent {
    start_event(prompts, Some(resume))
}

fn start_event(prompts: &[&str], resume: Option<Resume>) -> HistoryEvent {
    HistoryEvent::ExecutionStarted {
        agent: AgentSpec {
            id: Uuid::from_u128(1),
            name: "writer".into(),
            runtime: "echo".into(),
            model_id: "m-1".into(),
            configuration: json!({ "runtime_config": { "chunks": ["hi"] } }),
        },
        prompts: prompts.iter().map(|p| p.to_string()).collect(),
        retry_policy: policy(),
        timeouts: Timeouts {
            schedule_to_start_ms: 60_000,
            start_to_close_ms: 0,
            heartbeat_ms: 30_000,
        },
        resume,
        queue: "default".into(),
        traceparent: None,
        conversation: None,
        execution_timeout_ms: None,
    }
}

/// ActivityScheduled of `attempt` of `turn` (0-based).
pub fn scheduled(turn: u32, attempt: u32) -> HistoryEvent {
    HistoryEvent::ActivityScheduled {
        activity_id: activity(turn),
        turn,
        attempt,
    }
}

/// ActivityStarted of `attempt` of `turn` on worker `w-1`.
pub fn activity_started(turn: u32, attempt: u32, started_at: Millis) -> HistoryEvent {
    HistoryEvent::ActivityStarted {
        activity_id: activity(turn),
        attempt,
        worker: "w-1".into(),
        started_at,
        workspace: None,
    }
}

/// ActivityCompleted with `{"text": text}`.
pub fn completed(
    turn: u32,
    attempt: u32,
    text: &str,
    usage: Usage,
    checkpoint: Option<serde_json::Value>,
) -> HistoryEvent {
    HistoryEvent::ActivityCompleted {
        activity_id: activity(turn),
        attempt,
        output: json!({ "text": text }),
        usage,
        checkpoint,
    }
}

/// ActivityFailed at `at`.
pub fn failed(turn: u32, attempt: u32, failure: Failure, at: Millis) -> HistoryEvent {
    HistoryEvent::ActivityFailed {
        activity_id: activity(turn),
        attempt,
        failure,
        retry_after_ms: None,
        at,
    }
}

/// ActivityTimedOut at `at`.
pub fn timed_out(turn: u32, attempt: u32, kind: TimeoutKind, at: Millis) -> HistoryEvent {
    HistoryEvent::ActivityTimedOut {
        activity_id: activity(turn),
        attempt,
        kind,
        at,
    }
}

/// TimerStarted for the back-off before `attempt` of `turn`.
pub fn timer_started(
    turn: u32,
    attempt: u32,
    fire_at: Millis,
    delay_ms: u64,
    jitter_ms: u64,
) -> HistoryEvent {
    HistoryEvent::TimerStarted {
        timer_id: timer_id(turn, attempt),
        fire_at,
        purpose: TimerPurpose::RetryActivity {
            activity_id: activity(turn),
            attempt,
        },
        delay_ms,
        jitter_ms,
    }
}

/// TimerFired for the back-off before `attempt` of `turn`.
pub fn timer_fired(turn: u32, attempt: u32) -> HistoryEvent {
    HistoryEvent::TimerFired {
        timer_id: timer_id(turn, attempt),
    }
}

/// TimerCanceled for the back-off before `attempt` of `turn`.
pub fn timer_canceled(turn: u32, attempt: u32) -> HistoryEvent {
    HistoryEvent::TimerCanceled {
        timer_id: timer_id(turn, attempt),
    }
}

/// A client's CancelRequested.
pub fn cancel_requested(reason: &str) -> HistoryEvent {
    HistoryEvent::CancelRequested {
        reason: reason.into(),
    }
}

/// ActivityCancelRequested of `attempt` of `turn`.
pub fn activity_cancel_requested(turn: u32, attempt: u32) -> HistoryEvent {
    HistoryEvent::ActivityCancelRequested {
        activity_id: activity(turn),
        attempt,
    }
}

/// ActivityCanceled of `attempt` of `turn`.
pub fn activity_canceled(turn: u32, attempt: u32) -> HistoryEvent {
    HistoryEvent::ActivityCanceled {
        activity_id: activity(turn),
        attempt,
        abandoned: false,
    }
}

/// ExecutionCompleted with `{"text": text}`.
pub fn execution_completed(text: &str, usage: Usage) -> HistoryEvent {
    HistoryEvent::ExecutionCompleted {
        result: json!({ "text": text }),
        usage,
    }
}

/// ExecutionFailed.
pub fn execution_failed(failure: Failure) -> HistoryEvent {
    HistoryEvent::ExecutionFailed { failure }
}

/// ExecutionCanceled.
pub fn execution_canceled(reason: &str) -> HistoryEvent {
    HistoryEvent::ExecutionCanceled {
        reason: reason.into(),
    }
}
