//! The worker's [`Approver`]: a runtime's ask goes to the server with the attempt's next
//! progress report (recorded there as `ApprovalRequested`), and the replies to the reports
//! that follow bring the turn's decisions. An ask whose id already has a decision (made in an
//! earlier attempt) is answered with the first reply. After `approval_hold` without an answer the
//! runtime is told to hold.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::contract::Ask;
use crate::domain::ApprovalDecision;
use crate::runtime::{Answer, Approver, Decision, ToolAsk};

/// The asks and decisions of one attempt.
#[derive(Debug)]
pub(super) struct WorkerApprover {
    hold: Duration,
    asks: Mutex<Asks>,
    /// Wakes the attempt's loop to send an ask at once.
    pub(super) wake: Notify,
    decisions: watch::Sender<HashMap<String, ApprovalDecision>>,
}

#[derive(Debug, Default)]
struct Asks {
    /// Not sent yet.
    unsent: Vec<Ask>,
    /// How many asks wait for an answer.
    waiting: usize,
}

impl WorkerApprover {
    pub(super) fn new(hold: Duration) -> WorkerApprover {
        WorkerApprover {
            hold,
            asks: Mutex::default(),
            wake: Notify::new(),
            decisions: watch::Sender::new(HashMap::new()),
        }
    }

    fn asks(&self) -> std::sync::MutexGuard<'_, Asks> {
        self.asks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The asks to send with the next progress report, and whether anything waits for an answer.
    pub(super) fn take(&self) -> (Vec<Ask>, bool) {
        let mut asks = self.asks();
        (std::mem::take(&mut asks.unsent), asks.waiting > 0)
    }

    /// Asks whose report was not delivered, to send again first.
    pub(super) fn put_back(&self, mut unsent: Vec<Ask>) {
        let mut asks = self.asks();
        unsent.append(&mut asks.unsent);
        asks.unsent = unsent;
    }

    /// The decisions a progress reply brought.
    pub(super) fn decided(&self, decisions: Vec<(String, ApprovalDecision)>) {
        if decisions.is_empty() {
            return;
        }
        self.decisions.send_modify(|known| known.extend(decisions));
    }
}

#[async_trait::async_trait]
impl Approver for WorkerApprover {
    async fn ask(&self, ask: ToolAsk) -> Answer {
        let mut decisions = self.decisions.subscribe();
        {
            let mut asks = self.asks();
            asks.unsent.push(Ask {
                id: ask.id.clone(),
                tool: ask.tool.clone(),
                input: ask.input.clone(),
            });
            asks.waiting += 1;
        }
        self.wake.notify_one();
        let answered = async {
            loop {
                if let Some(d) = decisions.borrow_and_update().get(&ask.id) {
                    return d.clone();
                }
                if decisions.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let answer = match tokio::time::timeout(self.hold, answered).await {
            Ok(ApprovalDecision::Allow { updated_input }) => {
                Answer::Decided(Decision::Allow { updated_input })
            }
            Ok(ApprovalDecision::Deny { message }) => Answer::Decided(Decision::Deny { message }),
            Err(_) => Answer::Hold,
        };
        self.asks().waiting -= 1;
        answer
    }
}
