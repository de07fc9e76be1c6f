//! An [`Approver`] for runtime tests: answers from a script and records every ask.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the approver"
)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cairn::runtime::{Answer, Approver, Decision, ToolAsk};

/// Answers asks with the scripted answers in order (the last one again when they run out).
#[derive(Debug)]
pub struct TestApprover {
    answers: Mutex<VecDeque<Answer>>,
    asks: Mutex<Vec<ToolAsk>>,
}

impl TestApprover {
    /// An approver that gives `answers` in order.
    pub fn new(answers: impl IntoIterator<Item = Answer>) -> Arc<Self> {
        Arc::new(TestApprover {
            answers: Mutex::new(answers.into_iter().collect()),
            asks: Mutex::new(Vec::new()),
        })
    }

    /// Allows every ask as asked.
    pub fn allowing() -> Arc<Self> {
        Self::new([Answer::Decided(Decision::Allow {
            updated_input: None,
        })])
    }

    /// Denies every ask with `message`.
    pub fn denying(message: &str) -> Arc<Self> {
        Self::new([Answer::Decided(Decision::Deny {
            message: message.into(),
        })])
    }

    /// Holds every ask (nobody answers in time).
    pub fn holding() -> Arc<Self> {
        Self::new([Answer::Hold])
    }

    /// Every ask so far.
    pub fn asks(&self) -> Vec<ToolAsk> {
        self.asks.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Approver for TestApprover {
    async fn ask(&self, ask: ToolAsk) -> Answer {
        self.asks.lock().unwrap().push(ask);
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.pop_front().expect("not empty")
        } else {
            answers.front().cloned().expect("a scripted answer")
        }
    }
}
