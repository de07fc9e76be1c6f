//! What an agent execution's snapshot keeps of its completed turns.

use serde::{Deserialize, Serialize};

use crate::domain::TurnResult;

/// The turns an execution completed: how many, and what the last one returned (its result, and
/// what a conversation's close completes with). Each turn's output is in its
/// `ActivityCompleted`; the snapshot keeps only the last, so it does not grow with every turn (it
/// kept them all, and a ten-turn execution rewrote every earlier output with each turn).
/// Snapshots written before read as their list of turns did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "TurnsStored")]
pub struct Turns {
    /// How many completed.
    pub completed: u32,
    /// What the last one returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<serde_json::Value>,
}

impl Turns {
    /// The turns `reused` stand for (a retry's completed prefix).
    pub fn of(reused: &[TurnResult]) -> Turns {
        Turns {
            completed: reused.len() as u32,
            last: reused.last().map(|t| t.output.clone()),
        }
    }

    /// How many completed.
    pub fn len(&self) -> usize {
        self.completed as usize
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.completed == 0
    }

    /// One more completed, returning `output`.
    pub fn push(&mut self, output: serde_json::Value) {
        self.completed += 1;
        self.last = Some(output);
    }
}

/// `Turns` as snapshots hold it: as it is now, or the list of every turn of older snapshots.
#[derive(Deserialize)]
#[serde(untagged)]
enum TurnsStored {
    Counted {
        completed: u32,
        #[serde(default)]
        last: Option<serde_json::Value>,
    },
    Listed(Vec<TurnResult>),
}

impl From<TurnsStored> for Turns {
    fn from(stored: TurnsStored) -> Turns {
        match stored {
            TurnsStored::Counted { completed, last } => Turns { completed, last },
            TurnsStored::Listed(turns) => Turns::of(&turns),
        }
    }
}
