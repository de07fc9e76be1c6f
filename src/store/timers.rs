//! Timers: rows that fire at a moment (a retry's back-off) or at once (an input delivered from
//! another execution), and the earliest deadline the sweeper sleeps until. The SQL is in
//! `backend/timers.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::Millis;

/// Due timers, the next deadline, and deleting a timer.
#[async_trait]
pub trait Timers: Send + Sync {
    /// Timers due at `now`.
    async fn due_timers(&self, now: Millis, limit: u32) -> Result<Vec<TimerRecord>, StoreError>;
    /// The earliest future moment a timer fires or a deadline passes, if any.
    async fn next_deadline(&self) -> Result<Option<Millis>, StoreError>;
    /// Deletes one timer (an inbox input its receiver can no longer take).
    async fn delete_timer(&self, execution_id: Uuid, timer_id: &str) -> Result<(), StoreError>;
}

/// What a timer is for; stored as its [`TimerKind::as_str`] text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// The back-off before an activity's next attempt; firing it applies `TimerFired`.
    RetryActivity,
    /// An input delivered from another execution (a parent or a child), due at once.
    Inbox,
    /// A conversation's idle timeout: delivers its payload (`IdleTimedOut`) as an inbox row
    /// does, when due.
    IdleTimeout,
    /// An execution's `execution_timeout`: delivers its payload (`ExecutionTimedOut`) as an
    /// inbox row does, when due.
    ExecutionTimeout,
}

impl TimerKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::RetryActivity => "retry_activity",
            TimerKind::Inbox => "inbox",
            TimerKind::IdleTimeout => "idle_timeout",
            TimerKind::ExecutionTimeout => "execution_timeout",
        }
    }

    /// The kind a stored text names; `None` for any other text.
    pub fn parse(s: &str) -> Option<TimerKind> {
        match s {
            "retry_activity" => Some(TimerKind::RetryActivity),
            "inbox" => Some(TimerKind::Inbox),
            "idle_timeout" => Some(TimerKind::IdleTimeout),
            "execution_timeout" => Some(TimerKind::ExecutionTimeout),
            _ => None,
        }
    }
}

/// A timer row.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerRecord {
    /// The execution.
    pub execution_id: Uuid,
    /// The timer.
    pub timer_id: String,
    /// When it fires.
    pub fire_at: Millis,
    /// What it is for.
    pub kind: TimerKind,
    /// For [`TimerKind::Inbox`], [`TimerKind::IdleTimeout`] and
    /// [`TimerKind::ExecutionTimeout`]: the input.
    pub payload: serde_json::Value,
}
