//! The worker's [`Approver`]: a runtime's ask goes to the server with the attempt's next
//! progress report (recorded there as `ApprovalRequested`), and the replies to the reports
//! that follow bring the turn's decisions. An ask whose id already has a decision (made in an
//! earlier attempt) is answered with the first reply. After `approval_hold` without an answer,
//! counted from the reply that acknowledged the ask (so a slow server never makes an attempt hold
//! an ask whose answer was already recorded), the runtime is told to hold.

use std::collections::{HashMap, HashSet};
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
    /// The asks a progress reply acknowledged (the server recorded them).
    delivered: watch::Sender<HashSet<String>>,
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
            delivered: watch::Sender::new(HashSet::new()),
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

    /// A progress reply: it acknowledged the asks its report carried, and brought decisions.
    /// The decisions are known before the asks count as delivered, so an ask answered in the
    /// reply that acknowledges it is never held.
    pub(super) fn replied(&self, sent: &[Ask], decisions: Vec<(String, ApprovalDecision)>) {
        if !decisions.is_empty() {
            self.decisions.send_modify(|known| known.extend(decisions));
        }
        if !sent.is_empty() {
            self.delivered
                .send_modify(|ids| ids.extend(sent.iter().map(|a| a.id.clone())));
        }
    }
}

#[async_trait::async_trait]
impl Approver for WorkerApprover {
    async fn ask(&self, ask: ToolAsk) -> Answer {
        let mut decisions = self.decisions.subscribe();
        let mut delivered = self.delivered.subscribe();
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
        // The hold counts from the reply that acknowledged the ask: until then the server may
        // hold a decision this attempt has not heard of.
        let held = async {
            loop {
                if delivered.borrow_and_update().contains(&ask.id) {
                    break;
                }
                if delivered.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(self.hold).await;
        };
        let answer = tokio::select! {
            biased;
            decision = answered => match decision {
                ApprovalDecision::Allow { updated_input } => {
                    Answer::Decided(Decision::Allow { updated_input })
                }
                ApprovalDecision::Deny { message } => Answer::Decided(Decision::Deny { message }),
            },
            () = held => Answer::Hold,
        };
        self.asks().waiting -= 1;
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn ask(id: &str) -> ToolAsk {
        ToolAsk {
            id: id.into(),
            tool: "Write".into(),
            input: serde_json::json!({}),
        }
    }

    /// An approver holding asks 20 ms after their acknowledgement, and an ask `id` under way.
    fn asking(id: &str) -> (Arc<WorkerApprover>, tokio::task::JoinHandle<Answer>) {
        let approver = Arc::new(WorkerApprover::new(Duration::from_millis(20)));
        let asking = tokio::spawn({
            let approver = approver.clone();
            let ask = ask(id);
            async move { approver.ask(ask).await }
        });
        (approver, asking)
    }

    #[tokio::test]
    async fn an_ask_is_not_held_before_a_reply_acknowledged_it() {
        let (approver, asking) = asking("a1");
        // The server is slow: its reply comes long after the hold, and brings the decision
        // recorded in an earlier attempt.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (sent, awaiting) = approver.take();
        assert!(awaiting);
        approver.replied(
            &sent,
            vec![(
                "a1".into(),
                ApprovalDecision::Allow {
                    updated_input: None,
                },
            )],
        );
        let answer = asking.await.expect("the ask ends");
        assert!(
            matches!(answer, Answer::Decided(Decision::Allow { .. })),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn an_acknowledged_ask_without_an_answer_is_held() {
        let (approver, asking) = asking("a2");
        tokio::task::yield_now().await;
        let (sent, _) = loop {
            let (sent, awaiting) = approver.take();
            if !sent.is_empty() {
                break (sent, awaiting);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        approver.replied(&sent, Vec::new());
        let answer = asking.await.expect("the ask ends");
        assert!(matches!(answer, Answer::Hold), "{answer:?}");
    }
}
