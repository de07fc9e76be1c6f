//! What every concern of the SQL store shares: the column lists, the limits of what a row
//! stores, and the `sql_rows!` macro, which a dialect module expands first. It brings the imports
//! and the dialect's types (`Db`, `DbRow`, `Tx`, `ROW_LOCKS`) and the decoders of execution and
//! task rows into that module, where the concern macros (`sql_executions!`, `sql_tasks!`, ...)
//! expand next to them.
//!
//! Macros rather than generics: sqlx code generic over `Database` needs higher-ranked bounds on
//! every executor and every bound type, which buries the SQL. The macros keep one copy of the SQL
//! and of the row mapping, type-checked separately against each backend.

/// The columns of `executions` that `ExecutionRecord` reads (a macro so `concat!` can build
/// `&'static str` queries from it, as sqlx wants), with the start event its state is completed
/// with (`start_event!`).
macro_rules! execution_columns {
    () => {
        concat!(
            "id, namespace, kind, agent_id, runtime, status, input, result, failure, \
             parent_id, root_id, retry_of, request_id, state, next_seq, output_seq, input_tokens, output_tokens, \
             cost_usd, tool_calls, created_at, started_at, closed_at, team_id, child_key, ",
            start_event!("executions.id"),
            " AS start"
        )
    };
}

/// The stored start event (event 1) of the execution whose id is `$id`: an agent's snapshot
/// leaves out what it fixed (`machine::with_start`), so every read of a whole execution row
/// reads it too, by its primary key. In an `UPDATE ... RETURNING`, `$id` is the bare `id`
/// (SQLite's RETURNING knows no table alias; `history_events` has no `id` of its own).
macro_rules! start_event {
    ($id:literal) => {
        concat!(
            "(SELECT h.payload FROM history_events h WHERE h.execution_id = ",
            $id,
            " AND h.seq = 1)"
        )
    };
}

/// The columns of `tasks` that `TaskRecord` reads, with the start event of the task's execution,
/// which fixed the agent and trace its stored turn leaves out (`Turn::stored`).
macro_rules! task_columns {
    () => {
        concat!(
            "execution_id, activity_id, attempt, runtime, queue, status, lease_token, \
             lease_owner, leased_at, lease_expires_at, attempt_deadline, schedule_deadline, heartbeat_ms, \
             cancel_requested, turn, checkpoint, chunks_sent, workspace, ",
            start_event!("tasks.execution_id"),
            " AS start"
        )
    };
}

/// The most bind parameters one statement may carry. SQLite (sqlx's bundled build) allows
/// 32,766 and PostgreSQL 65,535; a multi-row write is split into statements of at most this many,
/// with room to spare, so a batch of any size can be stored.
pub(super) const MAX_BINDS: usize = 16_000;

/// How many rows of `columns` binds each fit in one statement.
pub(super) const fn rows_per_statement(columns: usize) -> usize {
    MAX_BINDS / columns
}

/// The longest duration (ten years, in milliseconds) a task row stores. Deadlines are computed in
/// SQL as `now + duration`, so a larger value would overflow a 64-bit integer (PostgreSQL refuses
/// it; SQLite turns it into a float that no longer reads back as an integer) and stop every claim.
/// Anything longer than ten years means "never" just as well.
pub(super) const MAX_STORED_DURATION_MS: u64 = 10 * 365 * 24 * 60 * 60 * 1000;

/// A duration as a task row stores it (see [`MAX_STORED_DURATION_MS`]).
pub(super) fn stored_duration(ms: u64) -> i64 {
    ms.min(MAX_STORED_DURATION_MS) as i64
}

/// A count as a BIGINT column stores it: counts beyond `i64::MAX` saturate instead of wrapping to
/// negative numbers (the machine's snapshot keeps the exact value).
pub(super) fn stored_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A cost as the REAL / DOUBLE PRECISION column stores it. SQLite cannot store NaN (it becomes
/// NULL, which the column refuses), so NaN is stored as 0 on both stores; the engine refuses
/// reports with a non-finite cost, so this only guards against values from elsewhere. Infinities
/// are stored as they are.
///
/// A subnormal cost (under `f64::MIN_POSITIVE` dollars, far below any real price) is stored as
/// 0 too: a group commit hands rows to the database as JSON text, and SQLite's text-to-real
/// conversion does not read subnormal numbers back exactly.
pub(super) fn stored_cost(cost: f64) -> f64 {
    if cost.is_nan() || cost.is_subnormal() {
        0.0
    } else {
        cost
    }
}

macro_rules! sql_rows {
    ($db:ty, row_locks = $row_locks:literal) => {
        use std::collections::BTreeMap;

        use async_trait::async_trait;
        use sqlx::types::Json;
        use sqlx::{QueryBuilder, Row};
        use uuid::Uuid;

        use $crate::domain::{ExecutionKind, ExecutionStatus, Failure, HistoryEvent, Millis, Usage};
        use $crate::store::backend::notify::Notes;
        use $crate::store::backend::rows::{rows_per_statement, stored_count, stored_duration};
        use $crate::store::{
            CommitOutcome, ExecutionRecord, Fence, NewChunk, RowWrite, StoreError, TaskOp, TaskRecord,
            TaskStatus, TimerOp, Transition, chunk_bytes,
        };

        type Db = $db;
        const ROW_LOCKS: bool = $row_locks;
        type DbRow = <Db as sqlx::Database>::Row;
        type Tx<'a> = sqlx::Transaction<'a, Db>;
        type DbConn = <Db as sqlx::Database>::Connection;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
        }

        /// A row that cannot be decoded is `Corrupt` (naming the execution), not a database
        /// failure: retrying cannot help, and the engine quarantines it.
        fn execution_from_row(row: &DbRow) -> Result<ExecutionRecord, StoreError> {
            decode_execution(row).map_err(|e| match e {
                StoreError::Database(e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))) => {
                    let id = row.try_get::<Uuid, _>("id").map(|id| id.to_string()).unwrap_or_default();
                    StoreError::Corrupt(format!("execution {id}: {e}"))
                }
                StoreError::Corrupt(m) => {
                    let id = row.try_get::<Uuid, _>("id").map(|id| id.to_string()).unwrap_or_default();
                    StoreError::Corrupt(format!("execution {id}: {m}"))
                }
                other => other,
            })
        }

        /// The whole row with its labels (`labels_json`) that a statement returned for a
        /// follower's last event (an output page, a commit); `None` when it does not decode,
        /// which leaves it to the follower's own read (that quarantines it as every read does).
        fn whole_execution(row: &DbRow) -> Option<Box<ExecutionRecord>> {
            let mut record = execution_from_row(row).ok()?;
            let labels: Option<Json<BTreeMap<String, String>>> = row.try_get("labels_json").ok()?;
            record.labels = labels.map(|l| l.0).unwrap_or_default();
            Some(Box::new(record))
        }

        fn decode_execution(row: &DbRow) -> Result<ExecutionRecord, StoreError> {
            let kind: String = row.try_get("kind")?;
            let status: String = row.try_get("status")?;
            let failure: Option<Json<Failure>> = row.try_get("failure")?;
            Ok(ExecutionRecord {
                id: row.try_get("id")?,
                namespace: row.try_get("namespace")?,
                kind: ExecutionKind::parse(&kind).ok_or_else(|| corrupt("execution kind", &kind))?,
                agent_id: row.try_get("agent_id")?,
                runtime: row.try_get("runtime")?,
                status: ExecutionStatus::parse(&status)
                    .ok_or_else(|| corrupt("execution status", &status))?,
                input: row.try_get::<Json<serde_json::Value>, _>("input")?.0,
                result: row.try_get::<Option<Json<serde_json::Value>>, _>("result")?.map(|j| j.0),
                failure: failure.map(|j| j.0),
                parent_id: row.try_get("parent_id")?,
                root_id: row.try_get("root_id")?,
                retry_of: row.try_get("retry_of")?,
                request_id: row.try_get("request_id")?,
                team_id: row.try_get("team_id")?,
                child_key: row.try_get("child_key")?,
                labels: BTreeMap::new(),
                state: {
                    let mut state = row.try_get::<Json<serde_json::Value>, _>("state")?.0;
                    // An agent's snapshot leaves out what its start event fixed (`start`).
                    let start: Option<Json<serde_json::Value>> = row.try_get("start")?;
                    if let (Some(start), "agent") = (start, kind.as_str()) {
                        $crate::machine::with_start(&mut state, &start.0);
                    }
                    state
                },
                next_seq: row.try_get::<i64, _>("next_seq")? as u64,
                output_seq: row.try_get::<i64, _>("output_seq")? as u64,
                usage: Usage {
                    input_tokens: row.try_get::<i64, _>("input_tokens")? as u64,
                    output_tokens: row.try_get::<i64, _>("output_tokens")? as u64,
                    // NULL only where SQLite was handed a NaN by older code.
                    cost_usd: row.try_get::<Option<f64>, _>("cost_usd")?.unwrap_or(0.0),
                    tool_calls: row.try_get::<i64, _>("tool_calls")? as u64,
                },
                created_at: row.try_get("created_at")?,
                started_at: row.try_get("started_at")?,
                closed_at: row.try_get("closed_at")?,
            })
        }

        fn task_from_row(row: &DbRow) -> Result<TaskRecord, StoreError> {
            let status: String = row.try_get("status")?;
            Ok(TaskRecord {
                execution_id: row.try_get("execution_id")?,
                activity_id: row.try_get("activity_id")?,
                attempt: row.try_get::<i64, _>("attempt")? as u32,
                runtime: row.try_get("runtime")?,
                queue: row.try_get("queue")?,
                status: TaskStatus::parse(&status).ok_or_else(|| corrupt("task status", &status))?,
                lease_token: row.try_get("lease_token")?,
                lease_owner: row.try_get("lease_owner")?,
                leased_at: row.try_get("leased_at")?,
                lease_expires_at: row.try_get("lease_expires_at")?,
                attempt_deadline: row.try_get("attempt_deadline")?,
                schedule_deadline: row.try_get("schedule_deadline")?,
                heartbeat_ms: row.try_get::<i64, _>("heartbeat_ms")? as u64,
                cancel_requested: row.try_get("cancel_requested")?,
                chunks_sent: row.try_get::<i64, _>("chunks_sent")? as u64,
                workspace: row.try_get("workspace")?,
                // A turn that is not even JSON (SQLite keeps text) reads as null rather than
                // failing the whole claim, and with it every poll: the engine then quarantines
                // its execution as it does any unreadable turn.
                turn: {
                    let mut turn = row
                        .try_get::<Json<serde_json::Value>, _>("turn")
                        .map_or(serde_json::Value::Null, |j| j.0);
                    // Likewise a start event that does not read leaves the turn without its agent.
                    let start: Option<Json<serde_json::Value>> = row.try_get("start").unwrap_or(None);
                    if let Some(start) = start {
                        $crate::domain::complete_from_start(&mut turn, &start.0, &$crate::domain::Turn::FIXED_AT_START);
                    }
                    turn
                },
                checkpoint: row
                    .try_get::<Option<Json<serde_json::Value>>, _>("checkpoint")?
                    .map(|j| j.0),
            })
        }
    };
}
