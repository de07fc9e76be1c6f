//! Applying inputs to an execution: one transition, one transaction.

use std::sync::Arc;

use uuid::Uuid;

use super::cache::{Versioned, state_bytes};
use super::notify::Tail;
use super::observe::Observed;
use super::{Engine, EngineError, commands, limits};
use crate::domain::{ExecutionStatus, HistoryEvent};
use crate::machine::{ExecutionState, step_any};
use crate::store::{
    CommitOutcome, ExecutionRecord, Fence, NewChunk, NewExecution, RowState, RowWrite,
    SnapshotJson, TimerOp, Transition,
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
    /// An inbox timer row that delivered the input, deleted in the same transaction.
    pub consume_timer: Option<String>,
    /// A worker to lease the task this transition schedules to (eager dispatch).
    pub eager: Option<commands::EagerOffer>,
    /// Stored objects the inputs or the checkpoint refer to, written with the transition.
    pub objects: Vec<crate::store::NewObject>,
}

/// A transition computed, not committed: its rows, events, state after, metrics to record.
pub(crate) type Computed = (Transition, Vec<HistoryEvent>, ExecutionState, Observed);

/// A committed transition.
#[derive(Debug)]
pub enum Applied {
    /// Written; these events were appended, and this task was leased to the plan's eager
    /// worker.
    Committed(Vec<HistoryEvent>, Option<Box<commands::Eager>>),
    /// A start whose `request_id` belonged to this existing execution; nothing was written.
    Duplicate(Uuid),
    /// A start whose fence no longer holds (the agent it was made from changed); nothing was
    /// written.
    Fenced,
}

/// The error of a start that carried no fence and yet was fenced: a store that broke its contract.
pub(crate) fn unfenced_start_fenced(id: Uuid) -> EngineError {
    EngineError::Internal(format!(
        "the start of execution {id} carried no fence and was refused as fenced"
    ))
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
    /// Refused for good, after this version was committed in its place (the execution failed
    /// at its history limit): a fresh read would only find it closed, so nobody retries.
    /// `apply_with` hands it on as `Engine`.
    Final(EngineError),
}

impl From<EngineError> for ApplyError {
    fn from(e: EngineError) -> Self {
        ApplyError::Engine(e)
    }
}

/// Where an execution sits: what its children and its parent notification need.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub namespace: String,
    pub root_id: Uuid,
    /// The parent and this execution's key in it.
    pub parent: Option<(Uuid, String)>,
}

impl Versioned {
    /// The execution as read from its row, with its decoded state.
    pub(crate) fn of_record(record: &ExecutionRecord, state: ExecutionState) -> Versioned {
        Versioned {
            id: record.id,
            next_seq: record.next_seq,
            scope: Scope::of_record(record),
            state,
        }
    }
}

impl Scope {
    fn of_record(record: &ExecutionRecord) -> Scope {
        Scope {
            namespace: record.namespace.clone(),
            root_id: record.root_id,
            parent: record.parent_id.zip(record.child_key.clone()),
        }
    }

    fn of_new(new: &NewExecution) -> Scope {
        Scope {
            namespace: new.namespace.clone(),
            root_id: new.root_id,
            parent: new.parent_id.zip(new.child_key.clone()),
        }
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
        let scope = Scope::of_new(&new);
        let (transition, events, state, observed) =
            self.transition(id, &scope, None, RowWrite::Create(Box::new(new)), plan)?;
        let eager = commands::eager_assignment(&transition, &state).map(Box::new);
        let bytes = state_bytes(transition.row.state.text(), &state);
        match self.commit(transition, observed, &scope).await? {
            CommitOutcome::Committed => {
                // A new row is inserted at `next_seq` 1 + its events (see the store).
                let next_seq = 1 + events.len() as u64;
                let versioned = Versioned {
                    id,
                    next_seq,
                    scope,
                    state,
                };
                self.cache.put(versioned, bytes);
                Ok(Applied::Committed(events, eager))
            }
            CommitOutcome::Duplicate(existing) => Ok(Applied::Duplicate(existing)),
            CommitOutcome::Fenced => Ok(Applied::Fenced),
            CommitOutcome::Conflict => Err(EngineError::Internal(format!(
                "a new execution {id} conflicted with an existing row"
            ))),
        }
    }

    /// Reads an execution from the store as a transition needs it.
    pub(crate) async fn load(&self, id: Uuid) -> Result<Versioned, EngineError> {
        let record = self.execution(id).await?;
        let state = self.state_of(&record).await?;
        Ok(Versioned::of_record(&record, state))
    }

    /// Applies `plan` to the execution as it was at `current.next_seq`. Whatever the outcome,
    /// the cache is left holding the committed version or nothing.
    ///
    /// A transition that would take the history past `--max-history-events` is not written:
    /// a client's input is refused, anything else fails the execution instead (`limits.rs`).
    pub(crate) async fn apply_to(
        &self,
        current: &Versioned,
        plan: Plan,
    ) -> Result<Applied, ApplyError> {
        let refusable = limits::refusable_at_history_limit(&plan.inputs);
        let computed = self.transition_from(current, plan)?;
        // `next_seq` is one past the last event's seq: the history holds `next_seq - 1`.
        let held = current.next_seq.saturating_sub(1);
        let limit = self.max_history_events();
        if held.saturating_add(computed.1.len() as u64) <= limit {
            return self.commit_to(current, computed).await;
        }
        if refusable {
            return Err(limits::history_limit_refusal(current.id, held, limit).into());
        }
        let fail = Plan {
            inputs: vec![HistoryEvent::HistoryLimitReached {
                max_history_events: limit,
            }],
            ..Default::default()
        };
        let computed = self.transition_from(current, fail)?;
        self.commit_to(current, computed).await?;
        tracing::warn!(execution = %current.id, limit, "execution failed at its history limit");
        Err(ApplyError::Final(limits::failed_at_history_limit(
            current.id, limit,
        )))
    }

    /// The history limit this engine holds executions to.
    pub(crate) fn max_history_events(&self) -> u64 {
        self.options
            .max_history_events
            .unwrap_or(limits::DEFAULT_MAX_HISTORY_EVENTS)
    }

    /// Computes `plan` over the execution as it was at `current.next_seq`, dropping it from the
    /// cache when the machine refuses (a fresh read decides again).
    fn transition_from(&self, current: &Versioned, plan: Plan) -> Result<Computed, ApplyError> {
        let row_write = RowWrite::Update {
            expected_next_seq: current.next_seq,
        };
        let state = Some(current.state.clone());
        self.transition(current.id, &current.scope, state, row_write, plan)
            .map_err(|e| {
                self.cache.remove(current.id);
                e.into()
            })
    }

    /// Commits a computed transition of `current`, leaving the cache holding the committed
    /// version or nothing.
    async fn commit_to(
        &self,
        current: &Versioned,
        (transition, events, state, observed): Computed,
    ) -> Result<Applied, ApplyError> {
        let id = current.id;
        let scope = &current.scope;
        let eager = commands::eager_assignment(&transition, &state).map(Box::new);
        let bytes = state_bytes(transition.row.state.text(), &state);
        let outcome = self.commit(transition, observed, scope).await;
        if !matches!(outcome, Ok(CommitOutcome::Committed)) {
            // Stale (a conflict or a fence another server's commit explains) or unknown (an
            // error after which the commit may or may not have happened): read it next time.
            self.cache.remove(id);
        }
        match outcome.map_err(ApplyError::Engine)? {
            CommitOutcome::Committed => {
                let versioned = Versioned {
                    id,
                    next_seq: current.next_seq + events.len() as u64,
                    scope: scope.clone(),
                    state,
                };
                self.cache.put(versioned, bytes);
                Ok(Applied::Committed(events, eager))
            }
            CommitOutcome::Conflict => Err(ApplyError::Conflict),
            CommitOutcome::Fenced => Err(ApplyError::Fenced),
            CommitOutcome::Duplicate(id) => Ok(Applied::Duplicate(id)),
        }
    }

    /// Builds the plan from the execution's state and applies it, recomputing after a
    /// concurrent change. `build` returning `None` means "nothing to do".
    ///
    /// The state comes from the cache when this engine committed the last version it knows;
    /// the commit's version check makes that safe. A cached state may be behind another
    /// server's commits, so whatever it does not commit (a conflict, a fence, a refusal or
    /// "nothing to do" from `build` or the machine) is decided again from a fresh read.
    pub(crate) async fn apply_with<F>(
        &self,
        id: Uuid,
        mut build: F,
    ) -> Result<Option<Applied>, ApplyError>
    where
        F: FnMut(&ExecutionState) -> Result<Option<Plan>, EngineError>,
    {
        let mut cached = self.cache.get(id);
        loop {
            let from_cache = cached.is_some();
            let current = match cached.take() {
                Some(current) => current,
                None => Arc::new(self.load(id).await?),
            };
            let result = match build(&current.state) {
                Ok(Some(plan)) => self.apply_to(&current, plan).await.map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(ApplyError::Engine(e)),
            };
            match result {
                Ok(Some(applied)) => return Ok(Some(applied)),
                Err(ApplyError::Conflict) => continue,
                Err(ApplyError::Final(e)) => return Err(ApplyError::Engine(e)),
                _ if from_cache => {
                    self.cache.remove(id);
                    continue;
                }
                other => return other,
            }
        }
    }

    /// Folds the plan's inputs through the machine and derives every row they imply, including
    /// the child executions a team starts and the notification of a parent.
    pub(crate) fn transition(
        &self,
        id: Uuid,
        scope: &Scope,
        mut state: Option<ExecutionState>,
        row_write: RowWrite,
        plan: Plan,
    ) -> Result<Computed, EngineError> {
        let now = self.clock.now_ms();
        let mut events = Vec::new();
        for input in &plan.inputs {
            let (next, commands) = step_any(Engine::context(id), state, input)
                .map_err(|e| EngineError::FailedPrecondition(format!("execution {id}: {e}")))?;
            events.push(input.clone());
            events.extend(commands);
            state = Some(next);
        }
        let state =
            state.ok_or_else(|| EngineError::Internal("a transition without inputs".into()))?;
        let (tasks, mut timers, (children, observed_children)) = match &state {
            ExecutionState::Agent(agent) => {
                let (tasks, timers) =
                    commands::rows_for(agent, &events, plan.checkpoint, now, plan.eager.as_ref());
                (tasks, timers, (Vec::new(), Vec::new()))
            }
            ExecutionState::Team(team) => {
                let (timers, starts) = commands::team_rows_for(id, team, &events, now);
                let mut children = Vec::new();
                let mut observed_children = Vec::new();
                for start in starts {
                    let new = NewExecution {
                        namespace: scope.namespace.clone(),
                        kind: crate::domain::ExecutionKind::Agent,
                        agent_id: Some(start.agent.id),
                        runtime: start.agent.runtime.clone(),
                        input: serde_json::json!({ "prompts": [start.prompt.clone()] }),
                        parent_id: Some(id),
                        root_id: scope.root_id,
                        retry_of: None,
                        request_id: None,
                        team_id: None,
                        child_key: Some(start.key.clone()),
                        labels: Default::default(),
                    };
                    let child_scope = Scope::of_new(&new);
                    let started = HistoryEvent::ExecutionStarted {
                        agent: start.agent,
                        prompts: vec![start.prompt],
                        retry_policy: team.retry_policy.clone(),
                        timeouts: team.timeouts.clone(),
                        resume: None,
                        // Children run on the team execution's queue.
                        queue: team.queue.clone(),
                        traceparent: None,
                        conversation: None,
                        // The team's own timeout stops its children.
                        execution_timeout_ms: None,
                    };
                    let plan = Plan {
                        inputs: vec![started],
                        ..Default::default()
                    };
                    let (child, _, _, observed) = self.transition(
                        start.execution_id,
                        &child_scope,
                        None,
                        RowWrite::Create(Box::new(new)),
                        plan,
                    )?;
                    children.push(child);
                    observed_children.push(observed);
                }
                (Vec::new(), timers, (children, observed_children))
            }
        };
        let closed = state.status().is_closed();
        if closed && let Some((parent_id, key)) = &scope.parent {
            timers.push(commands::notify_parent(
                *parent_id,
                key,
                &events,
                state.status(),
                state.usage(),
            ));
        }
        if let Some(timer_id) = plan.consume_timer {
            timers.insert(0, TimerOp::Delete { timer_id });
        }
        let (tasks, timers) = commands::prune(tasks, timers);
        let (result, failure) = match events.last() {
            Some(HistoryEvent::ExecutionCompleted { result, .. }) => (Some(result.clone()), None),
            Some(HistoryEvent::ExecutionFailed { failure }) => (None, Some(failure.clone())),
            _ => (None, None),
        };
        // An execution whose first task is leased as it starts runs from now, as after a claim.
        let status = match state.status() {
            ExecutionStatus::Pending if commands::leases_task(&tasks) => ExecutionStatus::Running,
            status => status,
        };
        let row = RowState {
            status,
            state: SnapshotJson::of(&state).map_err(|e| {
                EngineError::Internal(format!("state of {id} does not serialize: {e}"))
            })?,
            result,
            failure,
            usage: state.usage(),
            closed_at: closed.then_some(now),
        };
        debug_assert!(closed || state.status() != ExecutionStatus::Completed);
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
            children,
            objects: plan.objects,
        };
        let observed = Observed::of(&transition, &state, observed_children);
        Ok((transition, events, state, observed))
    }

    /// Commits one transition (with its children) and wakes whoever waits on what it wrote.
    async fn commit(
        &self,
        transition: Transition,
        observed: Observed,
        scope: &Scope,
    ) -> Result<CommitOutcome, EngineError> {
        // The executions besides this one whose followers wake.
        let mut changed = Vec::new();
        if !transition.chunks.is_empty()
            && let Some((parent_id, _)) = &scope.parent
        {
            changed.push(*parent_id);
        }
        let mut wakes = commands::wakes(&transition.tasks);
        // Timers, schedule deadlines and the lease of a task inserted leased: the sweeper hears
        // of the earliest, and wakes only if it is earlier than its plan.
        let deadline = transition.earliest_deadline();
        for child in &transition.children {
            changed.push(child.execution_id);
            wakes.extend(commands::wakes(&child.tasks));
        }
        // Followers on this server take what an update made of the row from the commit itself;
        // one that closes or waits, even for followers who arrive while it commits (a client
        // that starts an execution, then streams it: `engine_reads.rs`).
        let id = transition.execution_id;
        let tail = match transition.row_write {
            RowWrite::Update { expected_next_seq }
                if transition.row.status.is_closed()
                    || transition.row.status == ExecutionStatus::Waiting
                    || self.notifier.is_watched(id) =>
            {
                let next_seq = expected_next_seq + transition.events.len() as u64;
                Some((expected_next_seq, next_seq, transition.stored_chunks()))
            }
            _ => None,
        };
        let (outcome, after) = self
            .committer
            .commit(transition, observed, tail.is_some())
            .await?;
        if outcome == CommitOutcome::Committed {
            for wake in wakes {
                self.notifier.task_ready(wake);
            }
            if let Some(at) = deadline {
                self.notifier.deadline_added(at);
            }
            match (tail, after) {
                (Some((expected, next_seq, chunks)), Some(after)) => {
                    let tail = Tail::of(scope.namespace.clone(), expected, next_seq, chunks, after);
                    self.notifier.execution_committed(id, tail);
                }
                _ => self.notifier.execution_changed(id),
            }
            for id in changed {
                self.notifier.execution_changed(id);
            }
        }
        Ok(outcome)
    }
}
