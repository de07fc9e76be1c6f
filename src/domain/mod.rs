//! The nouns of Cairn: ids, agents, executions, history events, retry policies, failures.
//!
//! Architecture invariant: nothing here imports tokio, sqlx, tonic or prost, and nothing here reads
//! the clock or randomness. Times arrive as fields (milliseconds since the Unix epoch).

mod agent;
mod event;
mod execution;
mod failure;
mod retry;

pub use agent::{Agent, AgentSpec, AgentStatus, DEFAULT_NAMESPACE};
pub use event::{ActivityRef, Command, EventType, HistoryEvent, TimeoutKind, TimerPurpose, Turn};
pub use execution::{ExecutionKind, ExecutionStatus, Usage};
pub use failure::Failure;
pub use retry::{RetryPolicy, Timeouts, retry_delay};

/// Milliseconds since the Unix epoch. All persisted times use this unit in both stores.
pub type Millis = i64;
