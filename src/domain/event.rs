//! History events and the commands a machine emits.
//!
//! A history is an ordered list of events. Some events are *inputs* (facts from outside the
//! machine: the start, an attempt's result, a fired timer, a cancel request); the others are
//! *commands* the machine emitted in answer, recorded one event per command. Replay feeds the
//! inputs through the current machine and checks that it emits the recorded commands.

use serde::{Deserialize, Serialize};

use super::{
    AgentSpec, ExecutionStatus, Failure, Millis, Resume, RetryPolicy, ReusedChild, TeamSpec,
    Timeouts, Usage,
};

/// The queue tasks wait in when the start names none.
pub const DEFAULT_QUEUE: &str = "default";

fn default_queue() -> String {
    DEFAULT_QUEUE.into()
}

fn is_default_queue(queue: &str) -> bool {
    queue == DEFAULT_QUEUE
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    /// No worker claimed the task in time. Not retried.
    ScheduleToStart,
    /// The attempt ran longer than allowed.
    StartToClose,
    /// The attempt stopped reporting progress (its worker died, hung or lost the network).
    Heartbeat,
}

impl TimeoutKind {
    /// The failure code recorded for this timeout.
    pub fn code(self) -> &'static str {
        match self {
            TimeoutKind::ScheduleToStart => "schedule_to_start_timeout",
            TimeoutKind::StartToClose => "start_to_close_timeout",
            TimeoutKind::Heartbeat => "heartbeat_timeout",
        }
    }
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerPurpose {
    /// Back-off before the next attempt of an activity.
    RetryActivity {
        /// The activity to retry.
        activity_id: String,
        /// The attempt the timer starts.
        attempt: u32,
    },
}

/// Which member of a team a child runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemberSlot {
    /// `members[index]`.
    Member {
        /// Position in the team.
        index: u32,
    },
    /// The parallel strategy's aggregator.
    Aggregator,
    /// The supervisor strategy's leader.
    Leader,
}

/// How long a conversation waits for its next message when its start names no idle timeout.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// The most turns a conversation takes (its first prompts and its messages together), as many
/// as a start may give.
pub const MAX_CONVERSATION_TURNS: usize = 1_000;

/// What makes an agent execution a conversation: after each turn it waits for the next message
/// instead of completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// How long it waits for a message before it closes (completes) on its own.
    pub idle_timeout_ms: u64,
}

/// How a person answered a tool call a runtime asked about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Run the tool, with `updated_input` instead of the input asked about when given.
    Allow {
        /// The input to run the tool with instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        updated_input: Option<serde_json::Value>,
    },
    /// Do not run it; the model receives `message` as the tool's result.
    Deny {
        /// What the person said, handed to the model.
        message: String,
    },
}

/// Names an activity attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActivityRef {
    /// The activity, unique within its execution (`turn-1`, `turn-2`, ...).
    pub activity_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// One fact in a history. Stored as JSON with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HistoryEvent {
    /// Input: the execution was accepted.
    ExecutionStarted {
        /// The agent's definition as it was at start.
        agent: AgentSpec,
        /// One prompt per turn.
        prompts: Vec<String>,
        /// How activities are retried.
        retry_policy: RetryPolicy,
        /// Limits on each attempt.
        timeouts: Timeouts,
        /// Set when this execution retries another: the turns it reuses instead of running
        /// them again. Absent in histories written before retries existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
        /// The task queue its activities wait in; only workers serving it claim them. Absent in
        /// histories written before queues existed, which ran on the default queue.
        #[serde(default = "default_queue", skip_serializing_if = "is_default_queue")]
        queue: String,
        /// The W3C `traceparent` of the server span that accepted the start, handed to every
        /// turn. Absent when the start came without trace context (and in older histories).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
        /// Set for a conversation: it waits for messages after its turns (and may start with
        /// no prompt at all). Absent for an execution that runs its prompts and completes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<Conversation>,
        /// How long the whole execution may run, from this start, before it fails with
        /// `execution_timeout` (a durable timer row). Absent when it has no such limit (and in
        /// histories written before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution_timeout_ms: Option<u64>,
    },
    /// Input: a conversation received its next message, which becomes the prompt of the next
    /// turn (run at once when it waits, after the turns before it otherwise).
    MessageReceived {
        /// The message.
        text: String,
        /// The sender's idempotency key: a message sent twice with it is received once.
        request_id: String,
    },
    /// Input: a client closed a conversation; it completes after the turns it already received.
    CloseRequested,
    /// Input: a conversation waited for a message longer than its idle timeout.
    IdleTimedOut {
        /// The timeout that passed, as the conversation started with it.
        idle_timeout_ms: u64,
    },
    /// Input: the execution ran longer than the `execution_timeout_ms` it started with (its
    /// timer fired). It fails at once, naming `execution_timeout`; a running attempt loses its
    /// task (its next report is fenced, which stops it) and a team asks its children to stop.
    ExecutionTimedOut {
        /// The limit that passed, as the start recorded it.
        execution_timeout_ms: u64,
    },
    /// Input: the execution's next transition would have taken its history past the server's
    /// `--max-history-events`. It fails at once, naming `max_history_events`, instead: the few
    /// events of this failure are the only ones written past the limit.
    HistoryLimitReached {
        /// The server's limit when it was reached.
        max_history_events: u64,
    },
    /// Input: a running attempt asked whether a tool may run.
    ApprovalRequested {
        /// Unique within the execution; the same when an attempt resumed asks again.
        approval_id: String,
        /// The activity (`turn-N`) whose attempt asked.
        activity_id: String,
        /// The attempt that asked.
        attempt: u32,
        /// The tool, as the runtime names it (`Bash`, `mcp__files__write`).
        tool: String,
        /// The input the tool would run with.
        input: serde_json::Value,
    },
    /// Input: a person answered an approval.
    ApprovalResolved {
        /// The approval answered.
        approval_id: String,
        /// The answer.
        decision: ApprovalDecision,
        /// The answerer's idempotency key: the same answer sent again is taken once.
        request_id: String,
    },
    /// Input: the attempt stopped at a tool call nobody answered within its worker's
    /// `approval_hold`, with a checkpoint from which asking again is the next step. It ends
    /// nothing: the task waits without a lease (and consumes no retry) until the answer.
    ActivityHeld {
        /// The activity (`turn-N`) whose attempt stopped.
        activity_id: String,
        /// The attempt, which resumes under the same number.
        attempt: u32,
        /// The approval it waits for.
        approval_id: String,
    },
    /// Command: every approval a held attempt waited for is answered; it can be claimed again.
    ActivityResumed {
        /// The activity (`turn-N`).
        activity_id: String,
        /// The attempt, the same as held.
        attempt: u32,
    },
    /// Command: run a turn (or the next attempt of one).
    ActivityScheduled {
        /// `turn-N` for turn N (1-based); the same for every attempt of that turn.
        activity_id: String,
        /// The turn it runs.
        turn: u32,
        /// Which attempt this is.
        attempt: u32,
    },
    /// Input: a worker claimed the attempt. Recorded together with the attempt's outcome (as
    /// Temporal does), so a claim costs no history write; the live lease is on the task row.
    ActivityStarted {
        /// The activity the attempt belongs to (`turn-N`), as its `ActivityScheduled` named it.
        activity_id: String,
        /// Which attempt of that activity, 1-based, as its `ActivityScheduled` numbered it.
        attempt: u32,
        /// The worker that ran it.
        worker: String,
        /// When it was claimed.
        started_at: Millis,
        /// The directory it worked in on that worker; absent from histories recorded before
        /// attempts named it, and for attempts that ended without a report (a timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<String>,
    },
    /// Input: the attempt finished with a result.
    ActivityCompleted {
        /// The activity the attempt belongs to (`turn-N`), as its `ActivityScheduled` named it.
        activity_id: String,
        /// Which attempt of that activity, 1-based, as its `ActivityScheduled` numbered it.
        attempt: u32,
        /// What the runtime returned.
        output: serde_json::Value,
        /// Tokens, cost, tool calls.
        usage: Usage,
        /// The runtime's state at the end of the turn, handed to the next turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<serde_json::Value>,
    },
    /// Input: the attempt failed.
    ActivityFailed {
        /// The activity the attempt belongs to (`turn-N`), as its `ActivityScheduled` named it.
        activity_id: String,
        /// Which attempt of that activity, 1-based, as its `ActivityScheduled` numbered it.
        attempt: u32,
        /// Why.
        failure: Failure,
        /// The earliest time the runtime asked to be retried at (e.g. HTTP `retry-after`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// When the failure was recorded.
        at: Millis,
    },
    /// Input: the attempt ran out of time.
    ActivityTimedOut {
        /// The activity the attempt belongs to (`turn-N`), as its `ActivityScheduled` named it.
        activity_id: String,
        /// Which attempt of that activity, 1-based, as its `ActivityScheduled` numbered it.
        attempt: u32,
        /// Which limit.
        kind: TimeoutKind,
        /// When it was detected.
        at: Millis,
    },
    /// Command: ask the running attempt to stop.
    ActivityCancelRequested {
        /// The activity the attempt belongs to (`turn-N`), as its `ActivityScheduled` named it.
        activity_id: String,
        /// Which attempt of that activity, 1-based, as its `ActivityScheduled` numbered it.
        attempt: u32,
    },
    /// Input: the attempt stopped after being asked to.
    ActivityCanceled {
        /// The activity the attempt belongs to (`turn-N`), as its `ActivityScheduled` named it.
        activity_id: String,
        /// Which attempt of that activity, 1-based, as its `ActivityScheduled` numbered it.
        attempt: u32,
        /// True when the runtime ignored its token and the worker abandoned it.
        abandoned: bool,
    },
    /// Command: start a durable timer.
    TimerStarted {
        /// Unique within the execution.
        timer_id: String,
        /// When it fires.
        fire_at: Millis,
        /// What it is for.
        purpose: TimerPurpose,
        /// The back-off, jitter included.
        delay_ms: u64,
        /// The jitter part of the delay.
        jitter_ms: u64,
    },
    /// Input: a timer fired.
    TimerFired {
        /// Names the `TimerStarted` it refers to (`retry-turn-N-M` for the back-off before
        /// attempt M).
        timer_id: String,
    },
    /// Command: drop a timer that is no longer needed.
    TimerCanceled {
        /// Names the `TimerStarted` it refers to (`retry-turn-N-M` for the back-off before
        /// attempt M).
        timer_id: String,
    },
    /// Input: a client asked to cancel the execution.
    CancelRequested {
        /// Why, as the client said.
        reason: String,
    },
    /// Input: a team execution was accepted.
    TeamStarted {
        /// The team as it was at start, every member resolved (boxed: it is the largest event).
        team: Box<TeamSpec>,
        /// The team prompt.
        prompt: String,
        /// Retry policy for every child's activities.
        retry_policy: RetryPolicy,
        /// Timeouts for every child's activities.
        timeouts: Timeouts,
        /// For a retry: the failed team execution's completed children, reused, not run again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reused: Vec<ReusedChild>,
        /// The task queue every child's activities wait in. Omitted when it is the default, so
        /// histories written before teams had queues read and replay unchanged.
        #[serde(default = "default_queue", skip_serializing_if = "is_default_queue")]
        queue: String,
        /// How long the team may run, from this start, before it fails with
        /// `execution_timeout` and stops its children. Absent when it has no such limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution_timeout_ms: Option<u64>,
    },
    /// Command: start a child execution for a member step.
    ChildScheduled {
        /// Unique within the team execution (`1-analyst`, `leader-2`, ...).
        key: String,
        /// The member it runs (`member`, `aggregator` or `leader` role index: see `slot`).
        slot: MemberSlot,
        /// The child's prompt.
        prompt: String,
    },
    /// Command: ask a running child to stop.
    ChildCancelRequested {
        /// The `key` its `ChildScheduled` gave it.
        key: String,
    },
    /// Input: a child execution closed.
    ChildClosed {
        /// The `key` its `ChildScheduled` gave it.
        key: String,
        /// How it ended.
        status: ExecutionStatus,
        /// Its result, when it completed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        /// Its failure, when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<Failure>,
        /// What the child spent over all its turns; the team's usage adds it up.
        usage: Usage,
    },
    /// Command: the execution finished with a result.
    ExecutionCompleted {
        /// The last turn's output.
        result: serde_json::Value,
        /// Summed over all turns.
        usage: Usage,
    },
    /// Command: the execution failed.
    ExecutionFailed {
        /// Why.
        failure: Failure,
    },
    /// Command: the execution was cancelled.
    ExecutionCanceled {
        /// Why.
        reason: String,
    },
}

/// A command is a history event the machine emits; the engine performs it.
pub type Command = HistoryEvent;

/// The `type` name of an event.
pub type EventType = &'static str;

impl HistoryEvent {
    /// The stored `type` of the event.
    pub fn event_type(&self) -> EventType {
        match self {
            HistoryEvent::ExecutionStarted { .. } => "ExecutionStarted",
            HistoryEvent::ActivityScheduled { .. } => "ActivityScheduled",
            HistoryEvent::ActivityStarted { .. } => "ActivityStarted",
            HistoryEvent::ActivityCompleted { .. } => "ActivityCompleted",
            HistoryEvent::ActivityFailed { .. } => "ActivityFailed",
            HistoryEvent::ActivityTimedOut { .. } => "ActivityTimedOut",
            HistoryEvent::ActivityCancelRequested { .. } => "ActivityCancelRequested",
            HistoryEvent::ActivityCanceled { .. } => "ActivityCanceled",
            HistoryEvent::TimerStarted { .. } => "TimerStarted",
            HistoryEvent::TimerFired { .. } => "TimerFired",
            HistoryEvent::TimerCanceled { .. } => "TimerCanceled",
            HistoryEvent::CancelRequested { .. } => "CancelRequested",
            HistoryEvent::TeamStarted { .. } => "TeamStarted",
            HistoryEvent::ChildScheduled { .. } => "ChildScheduled",
            HistoryEvent::ChildCancelRequested { .. } => "ChildCancelRequested",
            HistoryEvent::ChildClosed { .. } => "ChildClosed",
            HistoryEvent::ExecutionCompleted { .. } => "ExecutionCompleted",
            HistoryEvent::ExecutionFailed { .. } => "ExecutionFailed",
            HistoryEvent::ExecutionCanceled { .. } => "ExecutionCanceled",
            HistoryEvent::MessageReceived { .. } => "MessageReceived",
            HistoryEvent::CloseRequested => "CloseRequested",
            HistoryEvent::IdleTimedOut { .. } => "IdleTimedOut",
            HistoryEvent::ExecutionTimedOut { .. } => "ExecutionTimedOut",
            HistoryEvent::HistoryLimitReached { .. } => "HistoryLimitReached",
            HistoryEvent::ApprovalRequested { .. } => "ApprovalRequested",
            HistoryEvent::ApprovalResolved { .. } => "ApprovalResolved",
            HistoryEvent::ActivityHeld { .. } => "ActivityHeld",
            HistoryEvent::ActivityResumed { .. } => "ActivityResumed",
        }
    }

    /// Whether the machine emits this event (a command) rather than receiving it (an input).
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            HistoryEvent::ActivityScheduled { .. }
                | HistoryEvent::ActivityResumed { .. }
                | HistoryEvent::ActivityCancelRequested { .. }
                | HistoryEvent::TimerStarted { .. }
                | HistoryEvent::TimerCanceled { .. }
                | HistoryEvent::ChildScheduled { .. }
                | HistoryEvent::ChildCancelRequested { .. }
                | HistoryEvent::ExecutionCompleted { .. }
                | HistoryEvent::ExecutionFailed { .. }
                | HistoryEvent::ExecutionCanceled { .. }
        )
    }
}
