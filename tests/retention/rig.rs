//! An in-process engine on a manual clock, a worker driven by hand, and direct counts of the
//! rows each execution owns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cairn::clock::ManualClock;
use cairn::contract::{ActivityOutcome, Assignment, Report};
use cairn::domain::{
    Agent, AgentStatus, ExecutionStatus, Failure, HistoryEvent, Millis, TeamStrategy, Timeouts,
    Usage,
};
use cairn::engine::catalog::{MemberRef, TeamDefinition};
use cairn::engine::{Engine, EngineOptions, StartRequest};
use cairn::store::{AgentKey, Store};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::Db;

pub const T0: Millis = 1_800_000_000_000;
pub const DAY: Millis = 86_400_000;

/// The tables that hold an execution's rows, and the column that names it.
const OWNED: [(&str, &str); 7] = [
    ("executions", "id"),
    ("history_events", "execution_id"),
    ("output_chunks", "execution_id"),
    ("tasks", "execution_id"),
    ("timers", "execution_id"),
    ("execution_labels", "execution_id"),
    ("object_refs", "execution_id"),
];

/// A checkpoint well over the inline limit, so it is stored as an object.
pub fn big_checkpoint(what: &str) -> Value {
    json!({ "what": what, "transcript": "x".repeat(4096) })
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

pub struct Rig {
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    raw: Raw,
    /// Tasks claimed by a poll but not yet asked for.
    claimed: Mutex<Vec<Assignment>>,
}

impl Rig {
    pub async fn new(db: &Db) -> Rig {
        let store = db.store().await;
        for namespace in ["default", "scratch"] {
            store
                .insert_agent(&Agent {
                    id: Uuid::now_v7(),
                    namespace: namespace.into(),
                    name: "e".into(),
                    runtime: "echo".into(),
                    model_id: String::new(),
                    configuration: json!({}),
                    status: AgentStatus::Active,
                    created_at: T0,
                    updated_at: T0,
                    version: 1,
                })
                .await
                .unwrap();
        }
        let clock = ManualClock::new(T0);
        let engine = Engine::new(store.clone(), clock.clone(), EngineOptions::default());
        for (name, members) in [("one", 1), ("two", 2)] {
            let definition = TeamDefinition {
                strategy: TeamStrategy::Sequential,
                members: (0..members)
                    .map(|_| MemberRef {
                        agent: AgentKey::Name("e".into()),
                        role: "member".into(),
                    })
                    .collect(),
                aggregator: None,
                leader: None,
                continue_on_failure: false,
                max_rounds: 0,
                max_parallel: 0,
            };
            engine
                .create_team("default", name, definition)
                .await
                .unwrap();
        }
        let raw = if db.url.starts_with("sqlite:") {
            Raw::Sqlite(sqlx::SqlitePool::connect(&db.url).await.unwrap())
        } else {
            Raw::Pg(sqlx::PgPool::connect(&db.url).await.unwrap())
        };
        Rig {
            engine,
            clock,
            store,
            raw,
            claimed: Mutex::new(Vec::new()),
        }
    }

    fn request(namespace: &str) -> StartRequest {
        StartRequest {
            namespace: namespace.into(),
            prompts: vec!["hi".into()],
            // Leases outlive every jump of the clock here: no attempt times out.
            timeouts: Some(Timeouts {
                heartbeat_ms: (40 * DAY) as u64,
                ..Timeouts::default()
            }),
            ..StartRequest::default()
        }
    }

    pub async fn start(&self, namespace: &str) -> Uuid {
        let request = StartRequest {
            agent: Some(AgentKey::Name("e".into())),
            ..Rig::request(namespace)
        };
        self.engine.start(request).await.unwrap().0
    }

    pub async fn start_team(&self, team: &str) -> Uuid {
        let request = StartRequest {
            team: Some(AgentKey::Name(team.into())),
            ..Rig::request("default")
        };
        self.engine.start(request).await.unwrap().0
    }

    /// The task of `execution`, or of a child of it.
    pub async fn claim_for(&self, execution: Uuid) -> Assignment {
        for _ in 0..100 {
            let mut claimed = self.claimed.lock().unwrap().clone();
            for (i, a) in claimed.iter().enumerate() {
                let id = a.lease.execution_id;
                if id == execution || self.parent_of(id).await == Some(execution) {
                    let a = claimed.remove(i);
                    *self.claimed.lock().unwrap() = claimed;
                    return a;
                }
            }
            let more = crate::common::engine::claim(&self.engine).await;
            self.claimed.lock().unwrap().extend(more);
            self.deliver().await;
        }
        panic!("no task of {execution} became ready");
    }

    /// The only task ready that nobody asked for yet (the next claim of any execution).
    pub async fn claim_one(&self) -> Assignment {
        let latest = self.latest().await;
        self.claim_for(latest).await
    }

    async fn latest(&self) -> Uuid {
        let sql = "SELECT id FROM executions WHERE parent_id IS NULL ORDER BY id DESC LIMIT 1";
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    pub async fn complete(&self, attempt: &Assignment, checkpoint: Option<Value>) {
        self.report(
            attempt,
            ActivityOutcome::Completed {
                output: json!("done"),
                usage: Usage::default(),
                checkpoint,
            },
        )
        .await;
    }

    pub async fn fail(&self, attempt: &Assignment) {
        self.report(
            attempt,
            ActivityOutcome::Failed {
                failure: Failure {
                    code: "broken".into(),
                    message: "broken for good".into(),
                    retryable: false,
                    details: Value::Null,
                },
                retry_after_ms: None,
                checkpoint: None,
            },
        )
        .await;
    }

    async fn report(&self, attempt: &Assignment, outcome: ActivityOutcome) {
        self.engine
            .report(Report {
                lease: attempt.lease.clone(),
                first_chunk: Some(0),
                chunks: Vec::new(),
                outcome,
                accept_next: false,
                workspace: None,
            })
            .await
            .unwrap();
    }

    /// Fires what is due (a closed child's word to its team).
    pub async fn deliver(&self) {
        for _ in 0..4 {
            self.engine.sweep(64).await.unwrap();
        }
    }

    /// Starts an agent execution in `namespace` and completes its one turn with `checkpoint`.
    pub async fn run_to_end(&self, namespace: &str, checkpoint: Option<Value>) -> Uuid {
        let id = self.start(namespace).await;
        let attempt = if namespace == "default" {
            self.claim_for(id).await
        } else {
            self.claim_scratch(id).await
        };
        self.complete(&attempt, checkpoint).await;
        assert_eq!(self.status(id).await, ExecutionStatus::Completed);
        id
    }

    async fn claim_scratch(&self, id: Uuid) -> Assignment {
        // Queues are per namespace-free name: the same poll serves both namespaces.
        self.claim_for(id).await
    }

    pub async fn status(&self, id: Uuid) -> ExecutionStatus {
        self.engine.execution(id).await.unwrap().status
    }

    pub async fn parent_of(&self, id: Uuid) -> Option<Uuid> {
        self.engine.execution(id).await.ok()?.parent_id
    }

    pub async fn members(&self, parent: Uuid) -> Vec<Uuid> {
        let sql = "SELECT id FROM executions WHERE parent_id = $1 ORDER BY id";
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql)
                .bind(parent)
                .fetch_all(p)
                .await
                .unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(sql)
                .bind(parent)
                .fetch_all(p)
                .await
                .unwrap(),
        }
    }

    /// How many rows of each table belong to execution `id`.
    pub async fn rows_of(&self, id: Uuid) -> BTreeMap<&'static str, i64> {
        let mut rows = BTreeMap::new();
        for (table, column) in OWNED {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
            let sql = sqlx::AssertSqlSafe(sql);
            let n: i64 = match &self.raw {
                Raw::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
                Raw::Pg(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
            };
            rows.insert(table, n);
        }
        rows
    }

    /// The objects execution `id` refers to.
    pub async fn objects_of(&self, id: Uuid) -> BTreeSet<String> {
        let sql = "SELECT object_id FROM object_refs WHERE execution_id = $1";
        let ids: Vec<String> = match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_all(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(sql).bind(id).fetch_all(p).await.unwrap(),
        };
        ids.into_iter().collect()
    }

    pub async fn object_exists(&self, object: &str) -> bool {
        !self.store.object_chain(object).await.unwrap().is_empty()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// The checkpoint the execution's last turn completed with, read back whole.
    pub async fn checkpoint_of(&self, id: Uuid) -> Option<Value> {
        let history = self.engine.full_history(id).await.unwrap();
        let checkpoint = history.iter().rev().find_map(|e| match e {
            HistoryEvent::ActivityCompleted { checkpoint, .. } => checkpoint.clone(),
            _ => None,
        })?;
        let Some(object) = checkpoint.get("$object").and_then(Value::as_str) else {
            return Some(checkpoint);
        };
        let chain = self.store.object_chain(object).await.unwrap();
        assert_eq!(chain.len(), 1, "a first checkpoint is a whole value");
        Some(serde_json::from_str(&chain[0].data).unwrap())
    }
}
