//! The engine: the only place where machine, store and clock meet.
//!
//! Every input to an execution (start, an attempt's outcome, a timeout, a fired timer, a cancel
//! request) goes through [`Engine::apply`]: load the row, fold the inputs through the machine,
//! derive the rows the resulting events imply, and commit all of it as one transition (one
//! transaction), retrying on a concurrent change. Architecture invariant: one transition, one
//! transaction.

mod agent_cache;
mod apply;
mod approvals;
mod cache;
pub mod catalog;
mod changes;
mod commands;
mod commit;
mod conversation;
mod direct_worker;
mod follow;
mod inbox;
mod leases;
mod limits;
mod notify;
mod objects;
mod observe;
mod policy;
mod quarantine;
mod replay;
mod report;
mod retention;
mod retry;
mod runtimes;
mod stats;
mod sweeper;
mod team;
mod view;
mod worker_side;
mod workers;

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::{ExecutionKind, HistoryEvent, RetryPolicy, Timeouts};
use crate::machine::{ExecutionState, MachineContext};
use crate::store::{AgentKey, ExecutionRecord, Fence, NewExecution, Store, StoreError, TaskStatus};

pub use crate::domain::DEFAULT_QUEUE;
pub use apply::Applied;
pub use conversation::SentMessage;
pub use direct_worker::DirectWorkerApi;
pub use follow::{OutputEvent, OutputFollower, PAGE_BYTES, PAGE_CHUNKS};
pub use limits::{DEFAULT_MAX_HISTORY_EVENTS, DEFAULT_MAX_OUTPUT_BYTES};
pub use notify::{Notifier, PollStep, PollWaiter, Reservation, Wake, Watch};
pub use quarantine::CORRUPT_STATE;
pub use replay::ReplayReport;
pub use retention::{BATCH as RETENTION_BATCH, RetentionPolicy};
pub use retry::{RETRY_REQUEST_PREFIX, Retried, RetryRequest, retry_request_id};
pub use stats::StatsReport;
pub use sweeper::{Sweeper, SweeperOptions};
pub use view::{ActivityState, ActivityView, ExecutionView};
pub use workers::{CONNECTED_WITHIN_MS, WorkerDirectory, WorkerSeen};

/// Why the engine refused or failed a request. Mapped to gRPC status codes in `api::error`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed; the message says what to fix.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but not in the current state (e.g. cancelling a closed execution).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A worker's report for an attempt whose lease it no longer holds.
    #[error("stale report: {0}")]
    Stale(String),
    /// A name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored state and the machine disagree (a bug, or history written by other code).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The one way a missing execution is reported, so an execution hidden from a caller (of
    /// another namespace) is reported in exactly the same words.
    pub fn execution_not_found(id: Uuid) -> EngineError {
        EngineError::NotFound(format!("no execution with id {id}"))
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The retry policy of executions that give none.
    pub default_retry_policy: RetryPolicy,
    /// The timeouts of executions that give none.
    pub default_timeouts: Timeouts,
    /// How many executions the engine keeps at the version it last committed, so that their
    /// next transition reads no row (`cache.rs`); `None` is the default of 4096, `Some(0)` turns
    /// the cache off (to measure what it saves).
    pub execution_cache: Option<usize>,
    /// The most events one execution's history may hold (`--max-history-events`); `None` is
    /// [`DEFAULT_MAX_HISTORY_EVENTS`]. See `limits.rs`.
    pub max_history_events: Option<u64>,
    /// The most bytes of output one execution may store (`--max-output-bytes`); `None` is
    /// [`DEFAULT_MAX_OUTPUT_BYTES`]. See `limits.rs`.
    pub max_output_bytes: Option<u64>,
}

/// What starting an execution takes (already validated at the edge).
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// The namespace the execution, and the agent or team it names, belong to.
    pub namespace: String,
    /// The agent (or `team`).
    pub agent: Option<AgentKey>,
    /// The team (or `agent`).
    pub team: Option<AgentKey>,
    /// One prompt per turn (at least one, unless it is a conversation).
    pub prompts: Vec<String>,
    /// Set for a conversation: it waits for messages after its turns.
    pub conversation: Option<crate::domain::Conversation>,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// Free-form `key=value` tags, copied to a retry; `cairn exec list --label` filters on them.
    pub labels: BTreeMap<String, String>,
    /// Retry policy; `None` takes the engine's default.
    pub retry_policy: Option<RetryPolicy>,
    /// Timeouts; `None` takes the engine's default.
    pub timeouts: Option<Timeouts>,
    /// The task queue; empty means the default queue.
    pub queue: String,
    /// The W3C `traceparent` of the span that accepted the request, recorded in
    /// `ExecutionStarted` so the execution's attempts join its trace.
    pub traceparent: Option<String>,
    /// How long the whole execution (agent or team) may run before it fails with
    /// `execution_timeout`; `None` for no limit.
    pub execution_timeout_ms: Option<u64>,
}

/// The engine. Cheap to share (`Arc`); stateless over the store.
pub struct Engine {
    store: Arc<dyn Store>,
    clock: SharedClock,
    notifier: Arc<Notifier>,
    committer: commit::Committer,
    workers: WorkerDirectory,
    options: EngineOptions,
    /// The rows the last sweep failed on (see `sweeper.rs`), so each is logged once.
    sweep_failures: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Executions at the version this engine last committed (see `cache.rs`).
    cache: cache::ExecutionCache,
    /// Agents this engine started executions of (see `agent_cache.rs`).
    agents: agent_cache::AgentCache,
    /// What the engine has read, for tests and `cairn bench` to see where reads go.
    reads: Reads,
    /// The leases this engine granted in its own transitions, until their attempts report.
    leases: leases::LeaseBook,
    /// Stored checkpoints: encoding before a write, reading back before a resume.
    checkpoints: objects::Checkpoints,
    /// The in-process worker's inbox, for starts to hand it their first task (`inbox.rs`).
    inbox: inbox::Attached,
}

/// Counts of the engine's reads of the store, since it started.
#[derive(Debug, Default)]
struct Reads {
    executions: std::sync::atomic::AtomicU64,
    output_pages: std::sync::atomic::AtomicU64,
    tasks: std::sync::atomic::AtomicU64,
}

/// How many reads of each kind an engine has made since it started (see [`Engine::reads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadCounts {
    /// Execution rows read (`get_execution`), by transitions and views alike.
    pub executions: u64,
    /// Pages of output read by stream followers (`output_page`).
    pub output_pages: u64,
    /// Task rows read by reports (`get_task_for_report`).
    pub tasks: u64,
    /// How many executions the transition cache holds now.
    pub cached_executions: usize,
}

impl Engine {
    /// An engine over `store`. Must be called inside a tokio runtime (it starts the committer).
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, options: EngineOptions) -> Arc<Engine> {
        let agents = agent_cache::AgentCache::new(options.execution_cache != Some(0));
        let cache = cache::ExecutionCache::new(
            options.execution_cache.unwrap_or(cache::MAX_ENTRIES),
            cache::MAX_BYTES,
        );
        Arc::new(Engine {
            committer: commit::Committer::start(store.clone()),
            store,
            clock,
            notifier: Arc::new(Notifier::default()),
            workers: WorkerDirectory::default(),
            options,
            sweep_failures: Default::default(),
            agents,
            cache,
            reads: Reads::default(),
            leases: leases::LeaseBook::default(),
            checkpoints: objects::Checkpoints::default(),
            inbox: inbox::Attached::default(),
        })
    }

    /// What this engine has read so far, and how many executions it holds in its cache.
    pub fn reads(&self) -> ReadCounts {
        use std::sync::atomic::Ordering::Relaxed;
        ReadCounts {
            executions: self.reads.executions.load(Relaxed),
            output_pages: self.reads.output_pages.load(Relaxed),
            tasks: self.reads.tasks.load(Relaxed),
            cached_executions: self.cache.len(),
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Wake-ups for workers and watchers.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The workers this server has heard from.
    pub fn workers(&self) -> &WorkerDirectory {
        &self.workers
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> crate::domain::Millis {
        self.clock.now_ms()
    }

    /// One execution; `NotFound` if there is none.
    /// A row that cannot be decoded is quarantined first (see [`CORRUPT_STATE`]).
    pub async fn execution(&self, id: Uuid) -> Result<ExecutionRecord, EngineError> {
        self.read_execution(id)
            .await?
            .ok_or_else(|| EngineError::execution_not_found(id))
    }

    /// The namespace of execution `id` (it never changes): from the execution cache when this
    /// server holds it open, else read; `NotFound` if there is none. A namespace check before a
    /// stream or a command thereby costs no read for the executions this server runs.
    pub async fn namespace_of(&self, id: Uuid) -> Result<String, EngineError> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(cached.scope.namespace.clone());
        }
        Ok(self.execution(id).await?.namespace)
    }

    /// Starts an agent execution. Returns its id and whether it was created (false when
    /// `request_id` matched an existing execution).
    pub async fn start(&self, req: StartRequest) -> Result<(Uuid, bool), EngineError> {
        if let Some(request_id) = &req.request_id
            && let Some(id) = self.store.find_request(&req.namespace, request_id).await?
        {
            return Ok((id, false));
        }
        if let Some(team) = req.team.clone() {
            return self.start_team(req, team).await;
        }
        let key = req.agent.clone().ok_or_else(|| {
            EngineError::InvalidArgument("agent is required: give its name or id".into())
        })?;
        let (agent, fence) = self.agent_to_start(&req.namespace, &key).await?;
        let id = Uuid::now_v7();
        let queue = match req.queue.as_str() {
            "" => DEFAULT_QUEUE,
            queue => queue,
        };
        let started = HistoryEvent::ExecutionStarted {
            agent: agent.spec(),
            prompts: req.prompts.clone(),
            retry_policy: req
                .retry_policy
                .clone()
                .unwrap_or_else(|| self.options.default_retry_policy.clone()),
            timeouts: req
                .timeouts
                .clone()
                .unwrap_or_else(|| self.options.default_timeouts.clone()),
            resume: None,
            queue: queue.into(),
            traceparent: req.traceparent.clone(),
            conversation: req.conversation,
            execution_timeout_ms: req.execution_timeout_ms,
        };
        let new = NewExecution {
            namespace: req.namespace.clone(),
            kind: ExecutionKind::Agent,
            agent_id: Some(agent.id),
            runtime: agent.runtime.clone(),
            input: serde_json::json!({ "prompts": req.prompts }),
            parent_id: None,
            root_id: id,
            retry_of: None,
            request_id: req.request_id.clone(),
            team_id: None,
            child_key: None,
            labels: req.labels.clone(),
        };
        // The in-process worker's free slot, or a poll waiting on this server, gets the first
        // task leased in the start's own transaction (eager dispatch), without a claim.
        let runtime_config = agent
            .configuration
            .get("runtime_config")
            .cloned()
            .unwrap_or_default();
        let reserved = self.reserve_first_task(&agent.runtime, queue, &runtime_config);
        let plan = apply::Plan {
            inputs: vec![started],
            fences: fence.into_iter().collect(),
            eager: reserved.as_ref().map(|(_, offer)| offer.clone()),
            ..Default::default()
        };
        let applied = self.apply_new(id, new, plan).await;
        let eager = match &applied {
            Ok(Applied::Committed(_, Some(eager))) => {
                // Remembered before the hand-over, so the attempt's report finds it.
                let lease = eager.assignment.lease.clone();
                self.leases.granted(lease, eager.task.clone());
                Some(Box::new(eager.assignment.clone()))
            }
            _ => None,
        };
        if let Some((to, _)) = reserved {
            self.hand_first_task(to, eager).await;
        }
        match applied? {
            Applied::Committed(..) => Ok((id, true)),
            Applied::Duplicate(existing) => Ok((existing, false)),
            // The remembered agent changed since: start again from a fresh read (which carries
            // no fence, so this happens once).
            Applied::Fenced => {
                self.agents.forget(&req.namespace, &key);
                Box::pin(self.start(req)).await
            }
        }
    }

    /// Asks an execution to stop. Idempotent while it is open; `FailedPrecondition` once closed.
    pub async fn cancel(&self, id: Uuid, reason: String) -> Result<ExecutionRecord, EngineError> {
        loop {
            let record = self.execution(id).await?;
            if record.status.is_closed() {
                return Err(EngineError::FailedPrecondition(format!(
                    "execution {id} is already {}; only open executions can be cancelled",
                    record.status.as_str()
                )));
            }
            let state = self.state_of(&record).await?;
            if state.cancel_requested() {
                return Ok(record);
            }
            let mut inputs = vec![HistoryEvent::CancelRequested {
                reason: reason.clone(),
            }];
            let mut fences = Vec::new();
            // An attempt no worker has claimed yet is cancelled on the spot; so is one held at a
            // tool call (its task has no lease, and the row's version guards its resumption).
            if let ExecutionState::Agent(agent) = &state
                && let Some(activity) = agent.activity.as_ref().filter(|a| a.held)
            {
                inputs.push(HistoryEvent::ActivityCanceled {
                    activity_id: activity.activity_id.clone(),
                    attempt: activity.attempt,
                    abandoned: false,
                });
            } else if let ExecutionState::Agent(agent) = &state
                && let Some(activity) = &agent.activity
                && activity.phase == crate::machine::ActivityPhase::Scheduled
            {
                let task = self.store.get_task(id, &activity.activity_id).await?;
                if task
                    .is_some_and(|t| t.status == TaskStatus::Ready && t.attempt == activity.attempt)
                {
                    inputs.push(HistoryEvent::ActivityCanceled {
                        activity_id: activity.activity_id.clone(),
                        attempt: activity.attempt,
                        abandoned: false,
                    });
                    fences.push(Fence::Unclaimed {
                        activity_id: activity.activity_id.clone(),
                        attempt: activity.attempt,
                    });
                }
            }
            let plan = apply::Plan {
                inputs,
                fences,
                ..Default::default()
            };
            let current = cache::Versioned::of_record(&record, state);
            match self.apply_to(&current, plan).await {
                Ok(_) => return self.execution(id).await,
                // The task was claimed (or the row moved) meanwhile: look again.
                Err(apply::ApplyError::Conflict | apply::ApplyError::Fenced) => continue,
                Err(apply::ApplyError::Engine(e) | apply::ApplyError::Final(e)) => return Err(e),
            }
        }
    }

    fn context(id: Uuid) -> MachineContext {
        MachineContext { execution_id: id }
    }
}

/// The machine state stored with an execution row.
pub(crate) fn execution_state(record: &ExecutionRecord) -> Result<ExecutionState, EngineError> {
    ExecutionState::from_json(record.kind, &record.state).map_err(|e| {
        EngineError::Internal(format!(
            "execution {} has an unreadable state: {e}",
            record.id
        ))
    })
}
