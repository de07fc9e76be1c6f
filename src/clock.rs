//! Time, injected: the engine reads the clock only through [`Clock`], so tests can control it
//! and the machine never reads it at all.

use std::sync::Arc;

use crate::domain::Millis;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;
