//! Time, injected: the engine reads the clock only through [`Clock`], so tests can control it
//! and the machine never reads it at all.

use std::sync::Arc;

use crate::domain::Millis;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
}

/// The wall clock (`chrono::Utc::now`): what the server runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// The clock the engine, sweeper and timers share; a `ManualClock` in tests.
pub type SharedClock = Arc<dyn Clock>;

/// A clock that moves only when told to: tests drive timers, deadlines and back-off through the
/// engine and the sweeper by hand, with no sleeps and no dependence on the machine's speed.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    /// A clock that reads `now` until moved.
    pub fn new(now: Millis) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: std::sync::atomic::AtomicI64::new(now),
        })
    }

    /// Moves the clock forward by `ms` and returns the new time.
    pub fn advance(&self, ms: i64) -> Millis {
        self.now.fetch_add(ms, std::sync::atomic::Ordering::SeqCst) + ms
    }

    /// Sets the clock to `now` (which may be earlier: a clock that steps back is a case too).
    pub fn set(&self, now: Millis) {
        self.now.store(now, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}
