//! When a running attempt sends: at once when a whole batch waits, at the end of the batching
//! window when some output waits, and at the heartbeat when none does, so the lease is kept and
//! a cancellation is learnt of soon. After a failed send it waits a heartbeat before trying again
//! rather than hammering a server that is away.

use std::time::Duration;

use tokio::time::Instant;

/// The interval at which a running attempt reports even without output: often enough to keep
/// its lease, and to learn of cancellation within half a second.
pub(super) fn heartbeat_interval(heartbeat_ms: u64) -> Duration {
    Duration::from_millis((heartbeat_ms / 3).clamp(10, 500))
}

/// The send schedule of one attempt.
#[derive(Debug)]
pub(super) struct Cadence {
    window: Duration,
    heartbeat: Duration,
    last_sent: Instant,
    /// When the oldest output not yet sent arrived.
    first_unsent: Option<Instant>,
    /// A send failed: no new try before this.
    retry_at: Option<Instant>,
}

impl Cadence {
    /// A schedule with a batching `window` and a `heartbeat`, starting now.
    pub fn new(window: Duration, heartbeat: Duration) -> Self {
        Cadence {
            window,
            heartbeat,
            last_sent: Instant::now(),
            first_unsent: None,
            retry_at: None,
        }
    }

    /// When to send next; `full` says a whole batch is waiting.
    pub fn next_send(&self, full: bool) -> Instant {
        let heartbeat = self.last_sent + self.heartbeat;
        let due = match self.first_unsent {
            Some(_) if full => Instant::now(),
            Some(first) => (first + self.window).min(heartbeat),
            None => heartbeat,
        };
        self.retry_at.map_or(due, |retry| due.max(retry))
    }

    /// Whether a whole batch may go now (no failed send is being waited out).
    pub fn may_send_now(&self) -> bool {
        self.retry_at.is_none_or(|retry| retry <= Instant::now())
    }

    /// Notes that output is waiting, so the next send is due within the batching window.
    pub fn output_arrived(&mut self) {
        self.first_unsent.get_or_insert_with(Instant::now);
    }

    /// A send succeeded; `more` says output is still waiting, which is then overdue.
    pub fn sent(&mut self, more: bool) {
        self.last_sent = Instant::now();
        self.retry_at = None;
        if !more {
            self.first_unsent = None;
        }
    }

    /// A send failed; the next try waits a heartbeat.
    pub fn failed(&mut self) {
        self.retry_at = Some(Instant::now() + self.heartbeat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_a_third_of_the_lease_within_bounds() {
        assert_eq!(heartbeat_interval(900), Duration::from_millis(300));
        assert_eq!(heartbeat_interval(30_000), Duration::from_millis(500));
        assert_eq!(heartbeat_interval(3), Duration::from_millis(10));
    }

    #[test]
    fn output_waits_for_the_window_a_full_batch_does_not_and_a_failure_backs_off() {
        let window = Duration::from_millis(50);
        let heartbeat = Duration::from_secs(300);
        let start = Instant::now();
        let mut cadence = Cadence::new(window, heartbeat);
        let idle = cadence.next_send(false);
        assert!(idle >= start + heartbeat, "idle: the heartbeat");
        cadence.output_arrived();
        let windowed = cadence.next_send(false);
        assert!(windowed >= start + window && windowed < start + heartbeat);
        assert!(
            cadence.next_send(true) <= Instant::now(),
            "a full batch goes at once"
        );
        cadence.failed();
        assert!(!cadence.may_send_now());
        assert!(
            cadence.next_send(true) >= start + heartbeat,
            "after a failure, the next try waits a heartbeat"
        );
        cadence.sent(false);
        assert!(cadence.may_send_now());
        assert!(cadence.next_send(false) >= start + heartbeat);
    }
}
