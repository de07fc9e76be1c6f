//! Applying inputs to an execution: one transition, one transaction.

use uuid::Uuid;

use super::{Engine, EngineError, agent_state, commands};
use crate::domain::{ExecutionStatus, HistoryEvent};
use crate::machine::{AgentState, step};
use crate::store::{
    CommitOutcome, ExecutionRecord, Fence, NewChunk, NewExecution, RowState, RowWrite, Transition,
};

/// What to apply to an execution, besides the machine's own commands.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Inputs, in order (e.g. ActivityStarted then ActivityCompleted).
    pub inputs: Vec<HistoryEvent>,
    /// Preconditions checked in the transaction.
    pub fences: Vec<Fence>,
    /// Output that arrived with the input.
    pub chunks: Vec<NewChunk>,
    /// A checkpoint that arrived with an attempt's end, kept on the task row for the retry.
    pub checkpoint: Option<serde_json::Value>,
}

/// A committed transition.
#[derive(Debug)]
pub enum Applied {
    /// Written; these events were appended.
    Committed(Vec<HistoryEvent>),
    /// A start whose `request_id` belonged to this existing execution; nothing was written.
    Duplicate(Uuid),
}

/// Why a transition did not commit.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// The row moved on: reload and recompute.
    Conflict,
    /// A fence failed.
    Fenced,
    /// Anything else.
    Engine(EngineError),
}

impl From<EngineError> for ApplyError {
    fn from(e: EngineError) -> Self {
        ApplyError::Engine(e)
    }
}

impl Engine {
    /// Creates an execution from its start event (and, for a retry, the output it reuses).
    pub(crate) async fn apply_new(
        &self,
        id: Uuid,
        new: NewExecution,
        plan: Plan,
    ) -> Result<Applied, EngineError> {
        let (transition, events) =
            self.transition(id, None, RowWrite::Create(Box::new(new)), plan)?;
        match self.commit(transition).await? {
            CommitOutcome::Committed => Ok(Applied::Committed(events)),
            CommitOutcome::Duplicate(existing) => Ok(Applied::Duplicate(existing)),
            CommitOutcome::Conflict | CommitOutcome::Fenced => Err(EngineError::Internal(format!(
                "a new execution {id} conflicted with an existing row"
            ))),
        }
    }

    /// Applies `plan` to the execution as loaded in `record`.
    pub(crate) async fn apply_to(
        &self,
        record: &ExecutionRecord,
        state: &AgentState,
        plan: Plan,
    ) -> Result<Applied, ApplyError> {
        let row_write = RowWrite::Update {
            expected_next_seq: record.next_seq,
        };
        let (transition, events) =
            self.transition(record.id, Some(state.clone()), row_write, plan)?;
        match self.commit(transition).await.map_err(ApplyError::Engine)? {
            CommitOutcome::Committed => Ok(Applied::Committed(events)),
            CommitOutcome::Conflict => Err(ApplyError::Conflict),
            CommitOutcome::Fenced => Err(ApplyError::Fenced),
            CommitOutcome::Duplicate(id) => Ok(Applied::Duplicate(id)),
        }
    }

    /// Loads the execution, builds the plan from it, and applies it, recomputing after a
    /// concurrent change. `build` returning `None` means "nothing to do".
    pub(crate) async fn apply_with<F>(
        &self,
        id: Uuid,
        mut build: F,
    ) -> Result<Option<Applied>, ApplyError>
    where
        F: FnMut(&ExecutionRecord, &AgentState) -> Result<Option<Plan>, EngineError>,
    {
        loop {
            let record = self.execution(id).await?;
            let state = agent_state(&record)?;
            let Some(plan) = build(&record, &state)? else {
                return Ok(None);
            };
            match self.apply_to(&record, &state, plan).await {
                Err(ApplyError::Conflict) => continue,
                other => return other.map(Some),
            }
        }
    }

    /// Folds the plan's inputs through the machine and derives every row they imply.
    fn transition(
        &self,
        id: Uuid,
        mut state: Option<AgentState>,
        row_write: RowWrite,
        plan: Plan,
    ) -> Result<(Transition, Vec<HistoryEvent>), EngineError> {
        let now = self.clock.now_ms();
        let mut events = Vec::new();
        for input in &plan.inputs {
            let (next, commands) = step(Engine::context(id), state, input)
                .map_err(|e| EngineError::FailedPrecondition(format!("execution {id}: {e}")))?;
            events.push(input.clone());
            events.extend(commands);
            state = Some(next);
        }
        let state =
            state.ok_or_else(|| EngineError::Internal("a transition without inputs".into()))?;
        let (tasks, timers) = commands::rows_for(&state, &events, plan.checkpoint, now);
        let closed = state.status.is_closed();
        let (result, failure) = match events.last() {
            Some(HistoryEvent::ExecutionCompleted { result, .. }) => (Some(result.clone()), None),
            Some(HistoryEvent::ExecutionFailed { failure }) => (None, Some(failure.clone())),
            _ => (None, None),
        };
        let row = RowState {
            status: state.status,
            state: serde_json::to_value(&state).map_err(|e| {
                EngineError::Internal(format!("state of {id} does not serialize: {e}"))
            })?,
            result,
            failure,
            usage: state.usage,
            closed_at: closed.then_some(now),
        };
        debug_assert!(closed || state.status != ExecutionStatus::Completed);
        let transition = Transition {
            execution_id: id,
            row_write,
            row,
            fences: plan.fences,
            events: events.clone(),
            chunks: plan.chunks,
            tasks,
            timers,
            now,
        };
        Ok((transition, events))
    }

    /// Commits one transition and wakes whoever waits on what it wrote.
    async fn commit(&self, transition: Transition) -> Result<CommitOutcome, EngineError> {
        let execution_id = transition.execution_id;
        let readies_task = commands::readies_task(&transition.tasks);
        let sets_timer = !transition.timers.is_empty();
        let outcome = self.committer.commit(transition).await?;
        if outcome == CommitOutcome::Committed {
            if readies_task {
                self.notifier.task_ready();
            }
            if sets_timer {
                self.notifier.deadline_added();
            }
            self.notifier.execution_changed(execution_id);
        }
        Ok(outcome)
    }
}
