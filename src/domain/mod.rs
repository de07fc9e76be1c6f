//! The nouns of Cairn: ids, agents, executions, history events, retry policies, failures.
//!
//! Architecture invariant: nothing here imports tokio, sqlx, tonic or prost, and nothing here reads
//! the clock or randomness. Times arrive as fields (milliseconds since the Unix epoch).

mod agent;
mod event;
mod execution;
mod failure;
pub mod float;
mod history;
mod policy;
mod resume;
mod retry;
mod team;
mod turn;

pub use agent::{Agent, AgentSpec, AgentStatus, DEFAULT_NAMESPACE};
pub use event::{
    ActivityRef, ApprovalDecision, Command, Conversation, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_QUEUE,
    EventType, HistoryEvent, MAX_CONVERSATION_TURNS, MemberSlot, TimeoutKind, TimerPurpose,
};
pub use execution::{ExecutionKind, ExecutionStatus, Usage};
pub use failure::Failure;
pub use history::{NumberedEvent, RecordedHistory};
pub use policy::{
    DEFAULT_PERMISSION_MODES, Refusal, WorkerPolicy, env_never_allowed, normalise as normalise_path,
};
pub use resume::{Resume, TurnResult};
pub use retry::{
    MAX_ATTEMPTS, MAX_CODE_BYTES, MAX_DURATION_MS, MAX_NON_RETRYABLE_CODES, RetryPolicy, Timeouts,
    retry_delay, stable_hash,
};
pub use team::{MemberSpec, ReusedChild, Team, TeamConfig, TeamMember, TeamSpec, TeamStrategy};
pub use turn::{Turn, complete_from_start};

/// Milliseconds since the Unix epoch. All persisted times use this unit in both stores.
pub type Millis = i64;

/// The moment `ms` milliseconds after `at`, saturating at the end of time: a duration or a
/// retry-after from a request or a report can be any `u64`, and an overflow here would wrap to a
/// moment in the past (or panic in a debug build) instead of meaning "never".
pub fn after(at: Millis, ms: u64) -> Millis {
    at.saturating_add_unsigned(ms)
}

/// The fence a worker's report carries: which attempt of which activity, and the lease token it
/// was handed. A report whose lease is no longer held changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// The execution the attempt runs for.
    pub execution_id: uuid::Uuid,
    /// The activity (`turn-N`) within that execution.
    pub activity_id: String,
    /// Which attempt of that activity, 1-based.
    pub attempt: u32,
    /// The token handed out with the lease.
    pub lease_token: String,
}
