//! The runtime's side of a running attempt: cancellation, output, checkpoints.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::approval::{Answer, Approver, NoApprover, ToolAsk};

/// What a runtime reports while it runs, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// An output chunk (`text`, `thinking`, `tool_use`, `tool_result`, `result`, `status`, ...).
    Chunk {
        /// The chunk's kind.
        kind: String,
        /// Its content.
        data: serde_json::Value,
        /// A checkpoint that covers this chunk, saved atomically with it.
        checkpoint: Option<serde_json::Value>,
    },
    /// A new checkpoint, covering every chunk sent before it.
    Checkpoint(serde_json::Value),
}

/// Which attempt of which activity is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptInfo {
    /// The execution the turn belongs to.
    pub execution_id: uuid::Uuid,
    /// The activity within it.
    pub activity_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// Handed to [`super::AgentRuntime::run`]: everything a runtime uses to talk to the worker.
#[derive(Debug)]
pub struct TurnIo {
    /// Fires when the attempt must stop (the execution was cancelled, or the worker drains).
    pub cancel: CancellationToken,
    /// Which attempt this is.
    pub attempt: AttemptInfo,
    checkpoint: Option<serde_json::Value>,
    sink: mpsc::UnboundedSender<Progress>,
    workspace: Workspace,
    approver: Arc<dyn Approver>,
}

/// The directory an attempt works in, as its runtime names it (see [`TurnIo::set_workspace`]);
/// the worker reads it when the attempt ends and records it with the attempt.
#[derive(Debug, Clone, Default)]
pub struct Workspace(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Workspace {
    /// The directory named so far, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("the lock is never poisoned").clone()
    }
}

impl TurnIo {
    /// A new `TurnIo` and the receiving end of its progress. `checkpoint` is what the previous
    /// attempt of this turn (or the previous turn) saved.
    pub fn new(
        attempt: AttemptInfo,
        cancel: CancellationToken,
        checkpoint: Option<serde_json::Value>,
    ) -> (TurnIo, mpsc::UnboundedReceiver<Progress>) {
        let (sink, progress) = mpsc::unbounded_channel();
        (
            TurnIo {
                cancel,
                attempt,
                checkpoint,
                sink,
                workspace: Workspace::default(),
                approver: Arc::new(NoApprover),
            },
            progress,
        )
    }

    /// Hands the runtime's asks about tool calls to `approver` (without one, every ask is
    /// denied at once).
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> TurnIo {
        self.approver = approver;
        self
    }

    /// Asks whether a tool call may run. See [`Answer::Hold`] for what a runtime must do when
    /// nobody answers in time.
    pub async fn ask(&self, ask: ToolAsk) -> Answer {
        self.approver.ask(ask).await
    }

    /// Names the directory the attempt works in (the files an agent writes stay there, on this
    /// worker), so the history records it with the attempt.
    pub fn set_workspace(&self, dir: impl Into<String>) {
        *self.workspace.0.lock().expect("the lock is never poisoned") = Some(dir.into());
    }

    /// Where the worker reads the directory [`Self::set_workspace`] named.
    pub fn workspace(&self) -> Workspace {
        self.workspace.clone()
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt.attempt
    }

    /// The checkpoint to resume from, if any.
    pub fn previous_checkpoint(&self) -> Option<&serde_json::Value> {
        self.checkpoint.as_ref()
    }

    /// Sends an output chunk. Chunks are persisted in the order they are sent.
    pub fn emit(&self, kind: impl Into<String>, data: serde_json::Value) {
        // The receiver only goes away when the worker has abandoned the attempt; output after
        // that point is meant to be dropped.
        let _ = self.sink.send(Progress::Chunk {
            kind: kind.into(),
            data,
            checkpoint: None,
        });
    }

    /// Sends an output chunk together with the checkpoint that covers it. The two are persisted
    /// in one write, so a resumed attempt neither repeats nor skips this chunk.
    pub fn emit_checkpointed(
        &self,
        kind: impl Into<String>,
        data: serde_json::Value,
        checkpoint: serde_json::Value,
    ) {
        let _ = self.sink.send(Progress::Chunk {
            kind: kind.into(),
            data,
            checkpoint: Some(checkpoint),
        });
    }

    /// Saves a checkpoint. It is persisted together with (never before) every chunk emitted
    /// before it, so a resumed attempt never skips output and never repeats it.
    pub fn save_checkpoint(&self, checkpoint: serde_json::Value) {
        let _ = self.sink.send(Progress::Checkpoint(checkpoint));
    }
}
