//! The store implementation, written once and expanded for each sqlx backend.
//!
//! A macro rather than generics: sqlx code generic over `Database` needs higher-ranked bounds on
//! every executor and every bound type, which buries the SQL. The macro keeps one copy of the SQL
//! and of the row mapping, type-checked separately against each backend.

/// The columns of `executions` that `ExecutionRecord` reads (a macro so `concat!` can build
/// `&'static str` queries from it, as sqlx wants).
macro_rules! execution_columns {
    () => {
        "id, namespace, kind, agent_id, runtime, status, input, result, failure, \
     parent_id, root_id, retry_of, request_id, state, next_seq, output_seq, input_tokens, output_tokens, \
     cost_usd, tool_calls, created_at, started_at, closed_at, team_id, child_key"
    };
}

/// The columns of `tasks` that `TaskRecord` reads.
macro_rules! task_columns {
    () => {
        "execution_id, activity_id, attempt, runtime, queue, status, lease_token, \
     lease_owner, leased_at, lease_expires_at, attempt_deadline, schedule_deadline, heartbeat_ms, \
     cancel_requested, turn, checkpoint, chunks_sent"
    };
}

/// The columns of `agents` that `Agent` reads.
macro_rules! agent_columns {
    () => {
        "id, namespace, name, runtime, model_id, configuration, status, created_at, updated_at, version"
    };
}

/// The columns of `teams` that `Team` reads (its members come from `team_members`).
macro_rules! team_columns {
    () => {
        "id, namespace, name, strategy, configuration, status, created_at, updated_at, version"
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
pub(super) fn stored_cost(cost: f64) -> f64 {
    if cost.is_nan() { 0.0 } else { cost }
}

macro_rules! sql_store {
    ($store:ident, $db:ty, lock = $lock:literal, skip_locked = $skip_locked:literal, migrations = $migrations:literal,
     concurrent_commits = $concurrent:literal, row_locks = $row_locks:literal, notify = $notify:path,
     changes = $changes:path, json_texts = ($json_texts_open:literal, $json_texts_close:literal),
     new_token = $new_token:literal) => {
        const _: () = {
            use std::collections::BTreeMap;

            use async_trait::async_trait;
            use sqlx::types::Json;
            use sqlx::{QueryBuilder, Row};
            use uuid::Uuid;

            use $crate::domain::{
                Agent, AgentStatus, ExecutionKind, ExecutionStatus, Failure, HistoryEvent, Millis,
                Team, TeamConfig, TeamMember, TeamStrategy, Usage,
            };
            use $crate::store::TABLES;
            use $crate::store::backend::sql_store::{
                rows_per_statement, stored_cost, stored_count, stored_duration,
            };
            use $crate::store::{
                AgentKey, ChangeFeed, ClaimRequest, CommitOutcome, ExecutionFilter, ExecutionRecord,
                Fence, NewChunk, ProgressOutcome, ProgressRecord, Quarantine, ReleaseOutcome, ReleaseRecord,
                RowWrite, Store, StoreError, StoredChunk, StoredEvent, TaskOp, TaskRecord, TimerOp,
                TimerRecord, Transition, WorkerRecord, WorkerUpsert,
            };
            use $crate::store::backend::notify::Notes;

            type Db = $db;
            const ROW_LOCKS: bool = $row_locks;
            type DbRow = <Db as sqlx::Database>::Row;
            type Tx<'a> = sqlx::Transaction<'a, Db>;

            fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
                StoreError::Corrupt(format!("{what}: {e}"))
            }

            fn is_unique_violation(e: &sqlx::Error) -> bool {
                matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
            }

            fn agent_from_row(row: &DbRow) -> Result<Agent, StoreError> {
                let status: String = row.try_get("status")?;
                Ok(Agent {
                    id: row.try_get("id")?,
                    namespace: row.try_get("namespace")?,
                    name: row.try_get("name")?,
                    runtime: row.try_get("runtime")?,
                    model_id: row.try_get("model_id")?,
                    configuration: row.try_get::<Json<serde_json::Value>, _>("configuration")?.0,
                    status: AgentStatus::parse(&status)
                        .ok_or_else(|| corrupt("agent status", &status))?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: version_from_row(row, "agent version")?,
                })
            }

            fn version_from_row(row: &DbRow, what: &str) -> Result<u64, StoreError> {
                let version: i64 = row.try_get("version")?;
                u64::try_from(version).map_err(|e| corrupt(what, e))
            }

            /// What an update that matched no row at `expected` meets: the version stored now
            /// (`None` when the row is gone), for a message that says how far behind it was.
            async fn version_conflict(
                read: &sqlx::Pool<Db>,
                kind: &'static str,
                id: Uuid,
                name: &str,
                expected: u64,
            ) -> StoreError {
                let query = if kind == "team" {
                    "SELECT version FROM teams WHERE id = $1"
                } else {
                    "SELECT version FROM agents WHERE id = $1"
                };
                let current: Result<Option<i64>, sqlx::Error> =
                    sqlx::query_scalar(query).bind(id).fetch_optional(read).await;
                let current = match current {
                    Ok(None) => None,
                    Ok(Some(v)) => match u64::try_from(v) {
                        Ok(v) => Some(v),
                        Err(e) => return corrupt(&format!("{kind} version"), e),
                    },
                    Err(e) => return e.into(),
                };
                StoreError::VersionConflict { kind, name: name.to_string(), expected, current }
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
                    state: row.try_get::<Json<serde_json::Value>, _>("state")?.0,
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
                Ok(TaskRecord {
                    execution_id: row.try_get("execution_id")?,
                    activity_id: row.try_get("activity_id")?,
                    attempt: row.try_get::<i64, _>("attempt")? as u32,
                    runtime: row.try_get("runtime")?,
                    queue: row.try_get("queue")?,
                    status: row.try_get("status")?,
                    lease_token: row.try_get("lease_token")?,
                    lease_owner: row.try_get("lease_owner")?,
                    leased_at: row.try_get("leased_at")?,
                    lease_expires_at: row.try_get("lease_expires_at")?,
                    attempt_deadline: row.try_get("attempt_deadline")?,
                    schedule_deadline: row.try_get("schedule_deadline")?,
                    heartbeat_ms: row.try_get::<i64, _>("heartbeat_ms")? as u64,
                    cancel_requested: row.try_get("cancel_requested")?,
                    chunks_sent: row.try_get::<i64, _>("chunks_sent")? as u64,
                    // A turn that is not even JSON (SQLite keeps text) reads as null rather than
                    // failing the whole claim, and with it every poll: the engine then quarantines
                    // its execution as it does any unreadable turn.
                    turn: row
                        .try_get::<Json<serde_json::Value>, _>("turn")
                        .map_or(serde_json::Value::Null, |j| j.0),
                    checkpoint: row
                        .try_get::<Option<Json<serde_json::Value>>, _>("checkpoint")?
                        .map(|j| j.0),
                })
            }

            /// Appends chunks after the execution's last output seq; returns the new last seq and
            /// the execution's parent. A child's chunks are appended to its parent's output too,
            /// tagged with the child, so a team's stream interleaves its children's.
            async fn append_chunks(
                tx: &mut Tx<'_>,
                execution_id: Uuid,
                chunks: &[NewChunk],
                now: Millis,
            ) -> Result<(u64, Option<Uuid>), StoreError> {
                let row = sqlx::query(
                    "UPDATE executions SET output_seq = output_seq + $2 WHERE id = $1 \
                     RETURNING output_seq, parent_id, child_key",
                )
                .bind(execution_id)
                .bind(chunks.len() as i64)
                .fetch_one(&mut **tx)
                .await?;
                let last: i64 = row.try_get("output_seq")?;
                let parent_id: Option<Uuid> = row.try_get("parent_id")?;
                let child_key: Option<String> = row.try_get("child_key")?;
                write_chunks(tx, execution_id, last, parent_id, child_key, chunks, now).await?;
                Ok((last as u64, parent_id))
            }

            /// Inserts chunks ending at seq `last` of `execution_id`, and a copy at the end of the
            /// parent's output, tagged with the child.
            async fn write_chunks(
                tx: &mut Tx<'_>,
                execution_id: Uuid,
                last: i64,
                parent_id: Option<Uuid>,
                child_key: Option<String>,
                chunks: &[NewChunk],
                now: Millis,
            ) -> Result<(), StoreError> {
                if chunks.is_empty() {
                    return Ok(());
                }
                insert_chunks(tx, execution_id, last, chunks, None, now).await?;
                if let Some(parent_id) = parent_id {
                    let parent_last: i64 = sqlx::query_scalar(
                        "UPDATE executions SET output_seq = output_seq + $2 WHERE id = $1 RETURNING output_seq",
                    )
                    .bind(parent_id)
                    .bind(chunks.len() as i64)
                    .fetch_one(&mut **tx)
                    .await?;
                    let source = (execution_id, child_key.unwrap_or_default());
                    insert_chunks(tx, parent_id, parent_last, chunks, Some(&source), now).await?;
                }
                Ok(())
            }

            /// Inserts chunks ending at seq `last`.
            async fn insert_chunks(
                tx: &mut Tx<'_>,
                execution_id: Uuid,
                last: i64,
                chunks: &[NewChunk],
                source: Option<&(Uuid, String)>,
                now: Millis,
            ) -> Result<(), StoreError> {
                let first = last - chunks.len() as i64 + 1;
                for (n, batch) in chunks.chunks(rows_per_statement(10)).enumerate() {
                    let offset = first + (n * rows_per_statement(10)) as i64;
                    insert_chunk_batch(tx, execution_id, offset, batch, source, now).await?;
                }
                Ok(())
            }

            /// Inserts chunks at seqs `first..`, in one statement (the caller keeps the batch
            /// within the bind-parameter limit).
            async fn insert_chunk_batch(
                tx: &mut Tx<'_>,
                execution_id: Uuid,
                first: i64,
                chunks: &[NewChunk],
                source: Option<&(Uuid, String)>,
                now: Millis,
            ) -> Result<(), StoreError> {
                let mut insert = QueryBuilder::<Db>::new(
                    "INSERT INTO output_chunks (execution_id, seq, activity_id, attempt, kind, data, created_at, \
                     source_id, source_key, reused_from) ",
                );
                insert.push_values(chunks.iter().enumerate(), |mut b, (i, chunk)| {
                    b.push_bind(execution_id)
                        .push_bind(first + i as i64)
                        .push_bind(chunk.activity_id.clone())
                        .push_bind(i64::from(chunk.attempt))
                        .push_bind(chunk.kind.clone())
                        .push_bind(Json(chunk.data.clone()))
                        .push_bind(now)
                        .push_bind(chunk.source.as_ref().or(source).map(|s| s.0))
                        .push_bind(chunk.source.as_ref().or(source).map(|s| s.1.clone()))
                        .push_bind(chunk.reused_from);
                });
                insert.build().execute(&mut **tx).await?;
                Ok(())
            }

            /// Checks a fence, taking the row lock where the dialect has one.
            async fn fence_holds(tx: &mut Tx<'_>, execution_id: Uuid, fence: &Fence) -> Result<bool, StoreError> {
                let row = match fence {
                    Fence::Lease { activity_id, attempt, lease_token } => {
                        sqlx::query(concat!(
                            "SELECT 1 FROM tasks WHERE execution_id = $1 AND activity_id = $2 AND attempt = $3 \
                             AND lease_token = $4 AND status = 'leased'",
                            $lock
                        ))
                        .bind(execution_id)
                        .bind(activity_id)
                        .bind(i64::from(*attempt))
                        .bind(lease_token)
                        .fetch_optional(&mut **tx)
                        .await?
                    }
                    Fence::Unclaimed { activity_id, attempt } => {
                        sqlx::query(concat!(
                            "SELECT 1 FROM tasks WHERE execution_id = $1 AND activity_id = $2 AND attempt = $3 \
                             AND status = 'ready'",
                            $lock
                        ))
                        .bind(execution_id)
                        .bind(activity_id)
                        .bind(i64::from(*attempt))
                        .fetch_optional(&mut **tx)
                        .await?
                    }
                    Fence::Timer { timer_id } => {
                        sqlx::query(concat!(
                            "SELECT 1 FROM timers WHERE execution_id = $1 AND timer_id = $2",
                            $lock
                        ))
                        .bind(execution_id)
                        .bind(timer_id)
                        .fetch_optional(&mut **tx)
                        .await?
                    }
                };
                Ok(row.is_some())
            }

            /// Locks the task rows of an execution, in activity order, where the dialect has
            /// row locks.
            ///
            /// Lock order, so that PostgreSQL never deadlocks: an execution's task rows before
            /// its execution row. `claim_tasks` and `record_progress` take them in that order,
            /// so a transition that will change a task row takes the task rows before it updates
            /// the execution row; otherwise a cancel (execution row, then the leased task) and
            /// a progress report (the task, then the execution row for the output seq) can each
            /// hold what the other waits for.
            async fn lock_tasks(tx: &mut Tx<'_>, execution_id: Uuid) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    "SELECT activity_id FROM tasks WHERE execution_id = $1 ORDER BY activity_id",
                    $lock
                ))
                .bind(execution_id)
                .fetch_all(&mut **tx)
                .await?;
                Ok(())
            }

            /// Whether a transition reads or changes existing task rows (see [`lock_tasks`]).
            fn touches_tasks(t: &Transition) -> bool {
                matches!(t.row_write, RowWrite::Update { .. })
                    && (t.tasks.iter().any(|op| !matches!(op, TaskOp::Insert(_)))
                        || t.fences.iter().any(|f| !matches!(f, Fence::Timer { .. })))
            }

            /// Writes one transition inside `tx`. Nothing but row locks is written before the
            /// outcome is known, so a `Conflict` or `Fenced` outcome leaves `tx` clean.
            async fn write_transition(tx: &mut Tx<'_>, t: &Transition) -> Result<CommitOutcome, StoreError> {
                // Lock ordering matters only where rows are locked; SQLite has its single writer.
                if ROW_LOCKS && touches_tasks(t) {
                    lock_tasks(tx, t.execution_id).await?;
                }
                for fence in &t.fences {
                    if !fence_holds(tx, t.execution_id, fence).await? {
                        return Ok(CommitOutcome::Fenced);
                    }
                }
                let next_seq = match &t.row_write {
                    RowWrite::Create(new) => {
                        // The row is inserted as the transition leaves it: no UPDATE follows.
                        let inserted = sqlx::query(
                            "INSERT INTO executions (id, namespace, kind, agent_id, runtime, status, input, \
                             parent_id, root_id, retry_of, request_id, state, next_seq, created_at, team_id, child_key, \
                             result, failure, input_tokens, output_tokens, cost_usd, tool_calls, closed_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $16, $13, $14, $15, \
                             $17, $18, $19, $20, $21, $22, $23) \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(t.execution_id)
                        .bind(&new.namespace)
                        .bind(new.kind.as_str())
                        .bind(new.agent_id)
                        .bind(&new.runtime)
                        .bind(t.row.status.as_str())
                        .bind(Json(&new.input))
                        .bind(new.parent_id)
                        .bind(new.root_id)
                        .bind(new.retry_of)
                        .bind(&new.request_id)
                        .bind(Json(&t.row.state))
                        .bind(t.now)
                        .bind(new.team_id)
                        .bind(&new.child_key)
                        .bind((1 + t.events.len()) as i64)
                        .bind(t.row.result.as_ref().map(Json))
                        .bind(t.row.failure.as_ref().map(Json))
                        .bind(stored_count(t.row.usage.input_tokens))
                        .bind(stored_count(t.row.usage.output_tokens))
                        .bind(stored_cost(t.row.usage.cost_usd))
                        .bind(stored_count(t.row.usage.tool_calls))
                        .bind(t.row.closed_at)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if inserted == 0 {
                            let existing = match &new.request_id {
                                Some(request_id) => sqlx::query_scalar::<_, Uuid>(
                                    "SELECT id FROM executions WHERE namespace = $1 AND request_id = $2",
                                )
                                .bind(&new.namespace)
                                .bind(request_id)
                                .fetch_optional(&mut **tx)
                                .await?,
                                None => None,
                            };
                            return match existing {
                                Some(id) => Ok(CommitOutcome::Duplicate(id)),
                                None => Err(StoreError::AlreadyExists(format!("execution {}", t.execution_id))),
                            };
                        }
                        let labels: Vec<_> = new.labels.iter().collect();
                        for batch in labels.chunks(rows_per_statement(3)) {
                            let mut insert = QueryBuilder::<Db>::new(
                                "INSERT INTO execution_labels (execution_id, key, value) ",
                            );
                            insert.push_values(batch.iter(), |mut b, (k, v)| {
                                b.push_bind(t.execution_id).push_bind((*k).clone()).push_bind((*v).clone());
                            });
                            insert.build().execute(&mut **tx).await?;
                        }
                        if !t.chunks.is_empty() {
                            append_chunks(tx, t.execution_id, &t.chunks, t.now).await?;
                        }
                        1
                    }
                    RowWrite::Update { expected_next_seq } => *expected_next_seq,
                };
                if let RowWrite::Update { .. } = t.row_write
                    && !update_row(tx, t, next_seq).await?
                {
                    return Ok(CommitOutcome::Conflict);
                }
                write_rest(tx, t, next_seq).await
            }

            /// Moves an existing row forward if it is still at `next_seq`, and appends the
            /// transition's output in the same statement's wake; false on a concurrent change.
            async fn update_row(tx: &mut Tx<'_>, t: &Transition, next_seq: u64) -> Result<bool, StoreError> {
                let failure = t.row.failure.as_ref().map(Json);
                let updated = sqlx::query(
                    "UPDATE executions SET next_seq = $2, \
                     status = CASE WHEN $3 = 'PENDING' THEN status ELSE $3 END, \
                     state = $4, result = $5, failure = $6, input_tokens = $7, output_tokens = $8, \
                     cost_usd = $9, tool_calls = $10, closed_at = COALESCE($11, closed_at), \
                     duration_ms = CASE WHEN $11 IS NULL THEN duration_ms \
                                        ELSE $11 - COALESCE(started_at, created_at) END, \
                     output_seq = output_seq + $13 \
                     WHERE id = $1 AND next_seq = $12 RETURNING output_seq, parent_id, child_key",
                )
                .bind(t.execution_id)
                .bind((next_seq + t.events.len() as u64) as i64)
                .bind(t.row.status.as_str())
                .bind(Json(&t.row.state))
                .bind(t.row.result.as_ref().map(Json))
                .bind(failure)
                .bind(stored_count(t.row.usage.input_tokens))
                .bind(stored_count(t.row.usage.output_tokens))
                .bind(stored_cost(t.row.usage.cost_usd))
                .bind(stored_count(t.row.usage.tool_calls))
                .bind(t.row.closed_at)
                .bind(next_seq as i64)
                .bind(t.chunks.len() as i64)
                .fetch_optional(&mut **tx)
                .await?;
                let Some(row) = updated else { return Ok(false) };
                if !t.chunks.is_empty() {
                    let last: i64 = row.try_get("output_seq")?;
                    let parent_id: Option<Uuid> = row.try_get("parent_id")?;
                    let child_key: Option<String> = row.try_get("child_key")?;
                    write_chunks(tx, t.execution_id, last, parent_id, child_key, &t.chunks, t.now).await?;
                }
                Ok(true)
            }

            /// Everything a transition writes after its execution row.
            async fn write_rest(tx: &mut Tx<'_>, t: &Transition, next_seq: u64) -> Result<CommitOutcome, StoreError> {
                for (n, batch) in t.events.chunks(rows_per_statement(5)).enumerate() {
                    let first = next_seq + (n * rows_per_statement(5)) as u64;
                    let mut insert = QueryBuilder::<Db>::new(
                        "INSERT INTO history_events (execution_id, seq, type, payload, created_at) ",
                    );
                    insert.push_values(batch.iter().enumerate(), |mut b, (i, event)| {
                        b.push_bind(t.execution_id)
                            .push_bind((first + i as u64) as i64)
                            .push_bind(event.event_type())
                            .push_bind(Json(event))
                            .push_bind(t.now);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                for op in &t.tasks {
                    write_task_op(tx, t.execution_id, op, t.now).await?;
                }
                for op in &t.timers {
                    write_timer_op(tx, t.execution_id, op, t.now).await?;
                }
                for child in &t.children {
                    // Children are new rows with fresh ids: anything but Committed is a bug, and
                    // failing the whole transaction keeps parent and children together.
                    let outcome = Box::pin(write_transition(tx, child)).await?;
                    if outcome != CommitOutcome::Committed {
                        return Err(StoreError::Corrupt(format!(
                            "child execution {} of {} could not be created: {outcome:?}",
                            child.execution_id, t.execution_id
                        )));
                    }
                }
                Ok(CommitOutcome::Committed)
            }

            async fn write_task_op(tx: &mut Tx<'_>, execution_id: Uuid, op: &TaskOp, now: Millis) -> Result<(), StoreError> {
                match op {
                    TaskOp::Insert(task) => {
                        sqlx::query(
                            "INSERT INTO tasks (execution_id, activity_id, attempt, runtime, queue, status, \
                             visible_at, schedule_deadline, heartbeat_ms, start_to_close_ms, cancel_requested, \
                             turn, checkpoint) \
                             VALUES ($1, $2, 1, $3, $4, 'ready', $5, $6, $7, $8, $9, $10, $11)",
                        )
                        .bind(execution_id)
                        .bind(&task.activity_id)
                        .bind(&task.runtime)
                        .bind(&task.queue)
                        .bind(now)
                        .bind(task.schedule_deadline)
                        .bind(stored_duration(task.heartbeat_ms))
                        .bind(stored_duration(task.start_to_close_ms))
                        .bind(false)
                        .bind(Json(&task.turn))
                        .bind(task.checkpoint.as_ref().map(Json))
                        .execute(&mut **tx)
                        .await?;
                    }
                    TaskOp::Reschedule { activity_id, attempt, schedule_deadline } => {
                        sqlx::query(
                            "UPDATE tasks SET attempt = $3, status = 'ready', visible_at = $4, \
                             schedule_deadline = $5, lease_token = NULL, lease_owner = NULL, leased_at = NULL, \
                             lease_expires_at = NULL, attempt_deadline = NULL \
                             WHERE execution_id = $1 AND activity_id = $2",
                        )
                        .bind(execution_id)
                        .bind(activity_id)
                        .bind(i64::from(*attempt))
                        .bind(now)
                        .bind(*schedule_deadline)
                        .execute(&mut **tx)
                        .await?;
                    }
                    TaskOp::Park { activity_id, checkpoint } => {
                        sqlx::query(
                            "UPDATE tasks SET status = 'backoff', lease_token = NULL, lease_owner = NULL, \
                             leased_at = NULL, lease_expires_at = NULL, attempt_deadline = NULL, \
                             schedule_deadline = NULL, checkpoint = COALESCE($3, checkpoint) \
                             WHERE execution_id = $1 AND activity_id = $2",
                        )
                        .bind(execution_id)
                        .bind(activity_id)
                        .bind(checkpoint.as_ref().map(Json))
                        .execute(&mut **tx)
                        .await?;
                    }
                    TaskOp::RequestCancel { activity_id } => {
                        sqlx::query(
                            "UPDATE tasks SET cancel_requested = $3 WHERE execution_id = $1 AND activity_id = $2",
                        )
                        .bind(execution_id)
                        .bind(activity_id)
                        .bind(true)
                        .execute(&mut **tx)
                        .await?;
                    }
                    TaskOp::Delete { activity_id } => {
                        sqlx::query("DELETE FROM tasks WHERE execution_id = $1 AND activity_id = $2")
                            .bind(execution_id)
                            .bind(activity_id)
                            .execute(&mut **tx)
                            .await?;
                    }
                    TaskOp::DeleteAll => {
                        sqlx::query("DELETE FROM tasks WHERE execution_id = $1")
                            .bind(execution_id)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Ok(())
            }

            async fn write_timer_op(tx: &mut Tx<'_>, execution_id: Uuid, op: &TimerOp, now: Millis) -> Result<(), StoreError> {
                match op {
                    TimerOp::Inbox { execution_id: receiver, timer_id, payload } => {
                        sqlx::query(
                            "INSERT INTO timers (execution_id, timer_id, fire_at, kind, payload) \
                             VALUES ($1, $2, $3, 'inbox', $4) ON CONFLICT DO NOTHING",
                        )
                        .bind(*receiver)
                        .bind(timer_id)
                        .bind(now)
                        .bind(Json(payload))
                        .execute(&mut **tx)
                        .await?;
                    }
                    TimerOp::Insert { timer_id, fire_at, kind, payload } => {
                        sqlx::query(
                            "INSERT INTO timers (execution_id, timer_id, fire_at, kind, payload) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(execution_id)
                        .bind(timer_id)
                        .bind(*fire_at)
                        .bind(kind)
                        .bind(Json(payload))
                        .execute(&mut **tx)
                        .await?;
                    }
                    TimerOp::Delete { timer_id } => {
                        sqlx::query("DELETE FROM timers WHERE execution_id = $1 AND timer_id = $2")
                            .bind(execution_id)
                            .bind(timer_id)
                            .execute(&mut **tx)
                            .await?;
                    }
                    TimerOp::DeleteAll => {
                        sqlx::query("DELETE FROM timers WHERE execution_id = $1")
                            .bind(execution_id)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Ok(())
            }

            fn team_from_row(row: &DbRow) -> Result<Team, StoreError> {
                let status: String = row.try_get("status")?;
                let strategy: String = row.try_get("strategy")?;
                Ok(Team {
                    id: row.try_get("id")?,
                    namespace: row.try_get("namespace")?,
                    name: row.try_get("name")?,
                    strategy: TeamStrategy::parse(&strategy).ok_or_else(|| corrupt("team strategy", &strategy))?,
                    members: Vec::new(),
                    config: row
                        .try_get::<Json<TeamConfig>, _>("configuration")
                        .map_err(|e| corrupt("team configuration", e))?
                        .0,
                    status: AgentStatus::parse(&status).ok_or_else(|| corrupt("team status", &status))?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: version_from_row(row, "team version")?,
                })
            }

            async fn write_members(tx: &mut Tx<'_>, team: &Team) -> Result<(), StoreError> {
                let per = rows_per_statement(4);
                for (n, batch) in team.members.chunks(per).enumerate() {
                    let mut insert =
                        QueryBuilder::<Db>::new("INSERT INTO team_members (team_id, position, agent_id, role) ");
                    insert.push_values(batch.iter().enumerate(), |mut b, (i, m)| {
                        b.push_bind(team.id)
                            .push_bind((n * per + i) as i64)
                            .push_bind(m.agent_id)
                            .push_bind(m.role.clone());
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            impl $store {
                async fn load_members(&self, teams: &mut [Team]) -> Result<(), StoreError> {
                    let ids: Vec<Uuid> = teams.iter().map(|t| t.id).collect();
                    for batch in ids.chunks(rows_per_statement(1)) {
                    let mut query = QueryBuilder::<Db>::new(
                        "SELECT team_id, agent_id, role FROM team_members WHERE team_id IN (",
                    );
                    let mut list = query.separated(", ");
                    for id in batch {
                        list.push_bind(*id);
                    }
                    query.push(") ORDER BY team_id, position");
                    for row in query.build().fetch_all(&self.read).await? {
                        let team_id: Uuid = row.try_get("team_id")?;
                        if let Some(team) = teams.iter_mut().find(|t| t.id == team_id) {
                            team.members.push(TeamMember { agent_id: row.try_get("agent_id")?, role: row.try_get("role")? });
                        }
                    }
                    }
                    Ok(())
                }

                async fn load_labels(&self, records: &mut [ExecutionRecord]) -> Result<(), StoreError> {
                    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
                    for batch in ids.chunks(rows_per_statement(1)) {
                        let mut query = QueryBuilder::<Db>::new(
                            "SELECT execution_id, key, value FROM execution_labels WHERE execution_id IN (",
                        );
                        let mut list = query.separated(", ");
                        for id in batch {
                            list.push_bind(*id);
                        }
                        query.push(")");
                        let rows = query.build().fetch_all(&self.read).await?;
                        for row in rows {
                            let id: Uuid = row.try_get("execution_id")?;
                            if let Some(record) = records.iter_mut().find(|r| r.id == id) {
                                record.labels.insert(row.try_get("key")?, row.try_get("value")?);
                            }
                        }
                    }
                    Ok(())
                }
            }

            #[async_trait]
            impl Store for $store {
                async fn migrate(&self) -> Result<(), StoreError> {
                    sqlx::migrate!($migrations).run(&self.write).await?;
                    Ok(())
                }

                async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError> {
                    let result = sqlx::query(
                        "INSERT INTO agents (id, namespace, name, runtime, model_id, configuration, status, \
                         created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(agent.id)
                    .bind(&agent.namespace)
                    .bind(&agent.name)
                    .bind(&agent.runtime)
                    .bind(&agent.model_id)
                    .bind(Json(&agent.configuration))
                    .bind(agent.status.as_str())
                    .bind(agent.created_at)
                    .bind(agent.updated_at)
                    .bind(stored_count(agent.version))
                    .execute(&self.write)
                    .await;
                    match result {
                        Ok(_) => Ok(()),
                        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!(
                            "an active agent named `{}` already exists in namespace `{}`",
                            agent.name, agent.namespace
                        ))),
                        Err(e) => Err(e.into()),
                    }
                }

                async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError> {
                    // One conditional statement: of concurrent updates made from the same
                    // version, the first to commit moves the version on and the others match
                    // no row (PostgreSQL re-checks the condition on the row a waiting update
                    // finally gets).
                    let result = sqlx::query(
                        "UPDATE agents SET runtime = $2, model_id = $3, configuration = $4, status = $5, \
                         updated_at = $6, version = version + 1 WHERE id = $1 AND version = $7",
                    )
                    .bind(agent.id)
                    .bind(&agent.runtime)
                    .bind(&agent.model_id)
                    .bind(Json(&agent.configuration))
                    .bind(agent.status.as_str())
                    .bind(agent.updated_at)
                    .bind(stored_count(agent.version))
                    .execute(&self.write)
                    .await;
                    match result {
                        Ok(done) if done.rows_affected() == 0 => Err(version_conflict(
                            &self.read, "agent", agent.id, &agent.name, agent.version,
                        )
                        .await),
                        Ok(_) => Ok(()),
                        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!(
                            "an active agent named `{}` already exists in namespace `{}`",
                            agent.name, agent.namespace
                        ))),
                        Err(e) => Err(e.into()),
                    }
                }

                async fn get_agent(&self, namespace: &str, key: &AgentKey) -> Result<Option<Agent>, StoreError> {
                    let row = match key {
                        AgentKey::Id(id) => {
                            sqlx::query(concat!("SELECT ", agent_columns!(), " FROM agents WHERE namespace = $1 AND id = $2"))
                                .bind(namespace)
                                .bind(*id)
                                .fetch_optional(&self.read)
                                .await?
                        }
                        AgentKey::Name(name) => {
                            sqlx::query(concat!(
                                "SELECT ", agent_columns!(), " FROM agents WHERE namespace = $1 AND name = $2 AND status = 'active'"
                            ))
                            .bind(namespace)
                            .bind(name)
                            .fetch_optional(&self.read)
                            .await?
                        }
                    };
                    row.as_ref().map(agent_from_row).transpose()
                }

                async fn get_agents(&self, namespace: &str, ids: &[Uuid]) -> Result<Vec<Agent>, StoreError> {
                    let mut agents = Vec::with_capacity(ids.len());
                    for batch in ids.chunks(rows_per_statement(1) - 1) {
                        let mut query = QueryBuilder::<Db>::new(concat!(
                            "SELECT ", agent_columns!(), " FROM agents WHERE namespace = "
                        ));
                        query.push_bind(namespace.to_string()).push(" AND id IN (");
                        let mut list = query.separated(", ");
                        for id in batch {
                            list.push_bind(*id);
                        }
                        query.push(")");
                        for row in query.build().fetch_all(&self.read).await? {
                            agents.push(agent_from_row(&row)?);
                        }
                    }
                    agents.sort_by_key(|a| a.id);
                    agents.dedup_by_key(|a| a.id);
                    Ok(agents)
                }

                async fn newest_agent_named(&self, namespace: &str, name: &str) -> Result<Option<Agent>, StoreError> {
                    let row = sqlx::query(concat!(
                        "SELECT ", agent_columns!(), " FROM agents WHERE namespace = $1 AND name = $2 ORDER BY id DESC LIMIT 1"
                    ))
                    .bind(namespace)
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await?;
                    row.as_ref().map(agent_from_row).transpose()
                }

                async fn list_agents(
                    &self,
                    namespace: &str,
                    include_archived: bool,
                    after: Option<Uuid>,
                    limit: u32,
                ) -> Result<Vec<Agent>, StoreError> {
                    let mut query = QueryBuilder::<Db>::new(concat!("SELECT ", agent_columns!(), " FROM agents WHERE namespace = "));
                    query.push_bind(namespace.to_string());
                    if !include_archived {
                        query.push(" AND status = 'active'");
                    }
                    if let Some(after) = after {
                        query.push(" AND id > ").push_bind(after);
                    }
                    query.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                    let rows = query.build().fetch_all(&self.read).await?;
                    rows.iter().map(agent_from_row).collect()
                }

                async fn commit(&self, transitions: &[Transition]) -> Result<Vec<CommitOutcome>, StoreError> {
                    // Lock order across transactions: executions by id. Two group commits that
                    // name the same executions in different orders would otherwise each hold an
                    // execution row the other waits for. Transitions of different executions are
                    // independent, and the sort is stable, so those of one execution keep their
                    // order.
                    let mut order: Vec<usize> = (0..transitions.len()).collect();
                    order.sort_by_key(|&i| transitions[i].execution_id);
                    let mut tx = self.write.begin().await?;
                    let mut outcomes = vec![None; transitions.len()];
                    let mut notes = Notes::default();
                    for i in order {
                        let t = &transitions[i];
                        let outcome = write_transition(&mut tx, t).await?;
                        if outcome == CommitOutcome::Committed {
                            notes.execution(t.execution_id);
                            if t.tasks.iter().any(|op| matches!(op, TaskOp::Insert(_) | TaskOp::Reschedule { .. })) {
                                notes.task_ready();
                            }
                            if !t.timers.is_empty() {
                                notes.deadline_added();
                            }
                        }
                        outcomes[i] = Some(outcome);
                    }
                    $notify(&mut tx, &notes).await?;
                    tx.commit().await?;
                    Ok(outcomes.into_iter().flatten().collect())
                }

                async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError> {
                    let row = sqlx::query(concat!("SELECT ", execution_columns!(), " FROM executions WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                    let Some(row) = row else { return Ok(None) };
                    let mut records = [execution_from_row(&row)?];
                    self.load_labels(&mut records).await?;
                    let [record] = records;
                    Ok(Some(record))
                }

                async fn find_request(&self, namespace: &str, request_id: &str) -> Result<Option<Uuid>, StoreError> {
                    Ok(sqlx::query_scalar("SELECT id FROM executions WHERE namespace = $1 AND request_id = $2")
                        .bind(namespace)
                        .bind(request_id)
                        .fetch_optional(&self.read)
                        .await?)
                }

                async fn list_executions(
                    &self,
                    filter: &ExecutionFilter,
                    before: Option<Uuid>,
                    limit: u32,
                ) -> Result<Vec<ExecutionRecord>, StoreError> {
                    let mut query = QueryBuilder::<Db>::new(concat!(
                        "SELECT ", execution_columns!(), " FROM executions WHERE namespace = "
                    ));
                    query.push_bind(filter.namespace.clone());
                    if !filter.statuses.is_empty() {
                        query.push(" AND status IN (");
                        let mut list = query.separated(", ");
                        // Each status once: a filter naming one many times must not reach the
                        // bind-parameter limit.
                        let statuses: std::collections::BTreeSet<&str> =
                            filter.statuses.iter().map(|s| s.as_str()).collect();
                        for status in statuses {
                            list.push_bind(status);
                        }
                        query.push(")");
                    }
                    if let Some(agent_id) = filter.agent_id {
                        query.push(" AND agent_id = ").push_bind(agent_id);
                    }
                    if let Some(runtime) = &filter.runtime {
                        query.push(" AND runtime = ").push_bind(runtime.clone());
                    }
                    if let Some(parent_id) = filter.parent_id {
                        query.push(" AND parent_id = ").push_bind(parent_id);
                    }
                    if let Some(after) = filter.created_after {
                        query.push(" AND created_at >= ").push_bind(after);
                    }
                    if let Some(before) = filter.created_before {
                        query.push(" AND created_at < ").push_bind(before);
                    }
                    for (key, value) in &filter.labels {
                        query
                            .push(" AND EXISTS (SELECT 1 FROM execution_labels l WHERE l.execution_id = executions.id AND l.key = ")
                            .push_bind(key.clone())
                            .push(" AND l.value = ")
                            .push_bind(value.clone())
                            .push(")");
                    }
                    if let Some(before) = before {
                        query.push(" AND id < ").push_bind(before);
                    }
                    query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
                    let rows = query.build().fetch_all(&self.read).await?;
                    let mut records = rows.iter().map(execution_from_row).collect::<Result<Vec<_>, _>>()?;
                    self.load_labels(&mut records).await?;
                    Ok(records)
                }

                async fn history(&self, id: Uuid, after_seq: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT seq, payload, created_at FROM history_events WHERE execution_id = $1 AND seq > $2 \
                         ORDER BY seq LIMIT $3",
                    )
                    .bind(id)
                    .bind(after_seq as i64)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(StoredEvent {
                                seq: row.try_get::<i64, _>("seq")? as u64,
                                event: row
                                    .try_get::<Json<HistoryEvent>, _>("payload")
                                    .map_err(|e| corrupt("history event", e))?
                                    .0,
                                created_at: row.try_get("created_at")?,
                            })
                        })
                        .collect()
                }

                async fn output(&self, id: Uuid, after_seq: u64, limit: u32) -> Result<Vec<StoredChunk>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT seq, activity_id, attempt, kind, data, created_at, source_id, source_key, \
                         reused_from FROM output_chunks WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    )
                    .bind(id)
                    .bind(after_seq as i64)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(StoredChunk {
                                execution_id: id,
                                seq: row.try_get::<i64, _>("seq")? as u64,
                                activity_id: row.try_get("activity_id")?,
                                attempt: row.try_get::<i64, _>("attempt")? as u32,
                                kind: row.try_get("kind")?,
                                data: row.try_get::<Json<serde_json::Value>, _>("data")?.0,
                                reused_from: row.try_get("reused_from")?,
                                created_at: row.try_get("created_at")?,
                                source_id: row.try_get("source_id")?,
                                source_key: row.try_get("source_key")?,
                            })
                        })
                        .collect()
                }

                async fn get_task(&self, execution_id: Uuid, activity_id: &str) -> Result<Option<TaskRecord>, StoreError> {
                    let row = sqlx::query(concat!(
                        "SELECT ", task_columns!(), " FROM tasks WHERE execution_id = $1 AND activity_id = $2"
                    ))
                    .bind(execution_id)
                    .bind(activity_id)
                    .fetch_optional(&self.read)
                    .await?;
                    row.as_ref().map(task_from_row).transpose()
                }

                async fn claim_tasks(&self, claim: &ClaimRequest) -> Result<Vec<TaskRecord>, StoreError> {
                    if claim.runtimes.is_empty() || claim.max == 0 {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.write.begin().await?;
                    // Every task gets a token of its own, drawn by the database per row, so a
                    // report can never be mistaken for one about another task of the same poll.
                    let mut query = QueryBuilder::<Db>::new(concat!(
                        "UPDATE tasks SET status = 'leased', chunks_sent = 0, lease_token = ",
                        $new_token
                    ));
                    query
                        .push(", lease_owner = ")
                        .push_bind(claim.worker_id.clone())
                        .push(", leased_at = ")
                        .push_bind(claim.now)
                        .push(", lease_expires_at = ")
                        .push_bind(claim.now)
                        // A released attempt keeps its start-to-close deadline: the attempt goes on.
                        .push(" + heartbeat_ms, attempt_deadline = COALESCE(attempt_deadline, CASE WHEN start_to_close_ms > 0 THEN ")
                        .push_bind(claim.now)
                        .push(" + start_to_close_ms ELSE NULL END) \
                               WHERE (execution_id, activity_id) IN (SELECT execution_id, activity_id FROM tasks \
                               WHERE status = 'ready' AND cancel_requested = ")
                        .push_bind(false)
                        .push(" AND queue = ")
                        .push_bind(claim.queue.clone())
                        // The runtimes travel as one JSON array, so a worker may name any number
                        // of them without reaching the bind-parameter limit.
                        .push(concat!(" AND runtime IN (", $json_texts_open))
                        .push_bind(Json(&claim.runtimes))
                        .push(concat!($json_texts_close, ")"));
                    query
                        .push(" ORDER BY visible_at LIMIT ")
                        .push_bind(i64::from(claim.max))
                        .push($skip_locked)
                        .push(") RETURNING ")
                        .push(task_columns!());
                    let rows = query.build().fetch_all(&mut *tx).await?;
                    let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
                    for batch in tasks.chunks(rows_per_statement(1)) {
                        let mut started = QueryBuilder::<Db>::new(
                            "UPDATE executions SET status = 'RUNNING', started_at = COALESCE(started_at, ",
                        );
                        started.push_bind(claim.now).push(") WHERE status = 'PENDING' AND id IN (");
                        let mut ids = started.separated(", ");
                        for task in batch {
                            ids.push_bind(task.execution_id);
                        }
                        started.push(")");
                        started.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(tasks)
                }

                async fn record_progress(&self, p: &ProgressRecord) -> Result<Option<ProgressOutcome>, StoreError> {
                    let mut tx = self.write.begin().await?;
                    // How many of this lease's chunks are stored already: a batch the worker sent
                    // again (its reply was lost) is stored once.
                    let stored: Option<i64> = sqlx::query_scalar(concat!(
                        "SELECT chunks_sent FROM tasks WHERE execution_id = $1 AND activity_id = $2 \
                         AND attempt = $3 AND lease_token = $4 AND status = 'leased'",
                        $lock
                    ))
                    .bind(p.execution_id)
                    .bind(&p.activity_id)
                    .bind(i64::from(p.attempt))
                    .bind(&p.lease_token)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(stored) = stored else {
                        return Ok(None);
                    };
                    let stored = stored as u64;
                    let first = p.first_chunk.unwrap_or(stored);
                    // A batch may repeat chunks already stored, never skip some: a gap would lose
                    // output for good. Dropping `tx` writes nothing.
                    if first > stored {
                        return Err(StoreError::ChunkGap { first, stored });
                    }
                    let skip = stored.saturating_sub(first).min(p.chunks.len() as u64) as usize;
                    let chunks = &p.chunks[skip..];
                    let cancel_requested: bool = sqlx::query_scalar(
                        "UPDATE tasks SET lease_expires_at = $5 + heartbeat_ms, checkpoint = COALESCE($6, checkpoint), \
                         chunks_sent = $7 WHERE execution_id = $1 AND activity_id = $2 AND attempt = $3 \
                         AND lease_token = $4 RETURNING cancel_requested",
                    )
                    .bind(p.execution_id)
                    .bind(&p.activity_id)
                    .bind(i64::from(p.attempt))
                    .bind(&p.lease_token)
                    .bind(p.now)
                    .bind(p.checkpoint.as_ref().map(Json))
                    .bind(stored.max(first + p.chunks.len() as u64) as i64)
                    .fetch_one(&mut *tx)
                    .await?;
                    let (output_seq, parent_id) = append_chunks(&mut tx, p.execution_id, chunks, p.now).await?;
                    if !chunks.is_empty() {
                        let mut notes = Notes::default();
                        notes.execution(p.execution_id);
                        if let Some(parent_id) = parent_id {
                            notes.execution(parent_id);
                        }
                        $notify(&mut tx, &notes).await?;
                    }
                    tx.commit().await?;
                    Ok(Some(ProgressOutcome { cancel_requested, output_seq, parent_id }))
                }

                async fn expired_tasks(&self, now: Millis, limit: u32) -> Result<Vec<TaskRecord>, StoreError> {
                    let rows = sqlx::query(concat!(
                        "SELECT ", task_columns!(), " FROM tasks WHERE \
                         (status = 'leased' AND (lease_expires_at <= $1 OR attempt_deadline <= $1)) \
                         OR (status = 'ready' AND schedule_deadline <= $1) LIMIT $2"
                    ))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter().map(task_from_row).collect()
                }

                async fn due_timers(&self, now: Millis, limit: u32) -> Result<Vec<TimerRecord>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT execution_id, timer_id, fire_at, kind, payload FROM timers WHERE fire_at <= $1 \
                         ORDER BY fire_at LIMIT $2",
                    )
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(TimerRecord {
                                execution_id: row.try_get("execution_id")?,
                                timer_id: row.try_get("timer_id")?,
                                fire_at: row.try_get("fire_at")?,
                                kind: row.try_get("kind")?,
                                payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
                            })
                        })
                        .collect()
                }

                async fn next_deadline(&self) -> Result<Option<Millis>, StoreError> {
                    Ok(sqlx::query_scalar(
                        "SELECT MIN(t) FROM ( \
                           SELECT MIN(fire_at) AS t FROM timers \
                           UNION ALL SELECT MIN(lease_expires_at) FROM tasks WHERE status = 'leased' \
                           UNION ALL SELECT MIN(attempt_deadline) FROM tasks WHERE status = 'leased' \
                           UNION ALL SELECT MIN(schedule_deadline) FROM tasks WHERE status = 'ready' \
                         ) AS deadlines",
                    )
                    .fetch_one(&self.read)
                    .await?)
                }

                async fn release_task(&self, r: &ReleaseRecord) -> Result<Option<ReleaseOutcome>, StoreError> {
                    let mut tx = self.write.begin().await?;
                    let cancel_requested: Option<bool> = sqlx::query_scalar(concat!(
                        "SELECT cancel_requested FROM tasks WHERE execution_id = $1 AND activity_id = $2 \
                         AND attempt = $3 AND lease_token = $4 AND status = 'leased'",
                        $lock
                    ))
                    .bind(r.execution_id)
                    .bind(&r.activity_id)
                    .bind(i64::from(r.attempt))
                    .bind(&r.lease_token)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match cancel_requested {
                        None => return Ok(None),
                        Some(true) => return Ok(Some(ReleaseOutcome::CancelRequested)),
                        Some(false) => {}
                    }
                    // The schedule-to-start deadline is over (the attempt started); the attempt
                    // deadline stays, so start-to-close bounds the attempt across workers.
                    sqlx::query(
                        "UPDATE tasks SET status = 'ready', visible_at = $3, schedule_deadline = NULL, \
                         lease_token = NULL, lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, \
                         checkpoint = COALESCE($4, checkpoint) WHERE execution_id = $1 AND activity_id = $2",
                    )
                    .bind(r.execution_id)
                    .bind(&r.activity_id)
                    .bind(r.now)
                    .bind(r.checkpoint.as_ref().map(Json))
                    .execute(&mut *tx)
                    .await?;
                    let (_, parent_id) = append_chunks(&mut tx, r.execution_id, &r.chunks, r.now).await?;
                    let mut notes = Notes::default();
                    notes.task_ready();
                    notes.execution(r.execution_id);
                    if let Some(parent_id) = parent_id {
                        notes.execution(parent_id);
                    }
                    $notify(&mut tx, &notes).await?;
                    tx.commit().await?;
                    Ok(Some(ReleaseOutcome::Released))
                }

                async fn quarantine_execution(&self, q: &Quarantine) -> Result<bool, StoreError> {
                    let mut tx = self.write.begin().await?;
                    if ROW_LOCKS {
                        lock_tasks(&mut tx, q.execution_id).await?;
                    }
                    // Only columns that always decode are read: the state as plain text.
                    let row = sqlx::query(concat!(
                        "SELECT CAST(state AS TEXT) AS state_text, status, next_seq, parent_id, child_key \
                         FROM executions WHERE id = $1",
                        $lock
                    ))
                    .bind(q.execution_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(row) = row else { return Ok(false) };
                    let status: String = row.try_get("status")?;
                    if ExecutionStatus::parse(&status).is_some_and(|s| s.is_closed()) {
                        return Ok(false);
                    }
                    let state_text: Option<String> = row.try_get("state_text")?;
                    let next_seq: i64 = row.try_get("next_seq")?;
                    let parent_id: Option<Uuid> = row.try_get("parent_id")?;
                    let child_key: Option<String> = row.try_get("child_key")?;
                    let prefix: String = state_text.unwrap_or_default().chars().take(200).collect();
                    let note = serde_json::json!({ "corrupt_state": prefix });
                    let failed = sqlx::query(
                        "UPDATE executions SET status = $2, failure = $3, state = $4, closed_at = $5, \
                         duration_ms = $5 - COALESCE(started_at, created_at), next_seq = next_seq + 1 \
                         WHERE id = $1",
                    )
                    .bind(q.execution_id)
                    .bind(ExecutionStatus::Failed.as_str())
                    .bind(Json(&q.failure))
                    .bind(Json(&note))
                    .bind(q.now)
                    .execute(&mut *tx)
                    .await?;
                    debug_assert_eq!(failed.rows_affected(), 1);
                    let event = HistoryEvent::ExecutionFailed { failure: q.failure.clone() };
                    sqlx::query(
                        "INSERT INTO history_events (execution_id, seq, type, payload, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(q.execution_id)
                    .bind(next_seq)
                    .bind(event.event_type())
                    .bind(Json(&event))
                    .bind(q.now)
                    .execute(&mut *tx)
                    .await?;
                    write_task_op(&mut tx, q.execution_id, &TaskOp::DeleteAll, q.now).await?;
                    write_timer_op(&mut tx, q.execution_id, &TimerOp::DeleteAll, q.now).await?;
                    let mut notes = Notes::default();
                    notes.execution(q.execution_id);
                    if let (Some(parent_id), Some(key)) = (parent_id, child_key) {
                        // The same inbox row a child's closing transition writes
                        // (`engine::commands::notify_parent`), so the parent hears of it once.
                        let closed = HistoryEvent::ChildClosed {
                            key: key.clone(),
                            status: ExecutionStatus::Failed,
                            result: None,
                            failure: Some(q.failure.clone()),
                            usage: Usage::default(),
                        };
                        let inbox = TimerOp::Inbox {
                            execution_id: parent_id,
                            timer_id: format!("inbox-child-{key}"),
                            payload: serde_json::to_value(closed).map_err(|e| corrupt("child close", e))?,
                        };
                        write_timer_op(&mut tx, q.execution_id, &inbox, q.now).await?;
                        notes.deadline_added();
                    }
                    $notify(&mut tx, &notes).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn upsert_worker(&self, w: &WorkerUpsert) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO workers (worker_id, runtimes, queue, slots, first_seen, last_seen) \
                         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (worker_id) DO UPDATE SET \
                         runtimes = excluded.runtimes, queue = excluded.queue, slots = excluded.slots, \
                         last_seen = excluded.last_seen",
                    )
                    .bind(&w.worker_id)
                    .bind(Json(&w.runtimes))
                    .bind(&w.queue)
                    .bind(i64::from(w.slots))
                    .bind(w.now)
                    .execute(&self.write)
                    .await?;
                    Ok(())
                }

                async fn list_workers(&self, seen_since: Millis) -> Result<Vec<WorkerRecord>, StoreError> {
                    // Slots in use and the latest heartbeat come from the leases the worker holds,
                    // which every progress report keeps current on whichever server it reaches.
                    let rows = sqlx::query(
                        "SELECT w.worker_id, w.runtimes, w.queue, w.slots, w.first_seen, w.last_seen, \
                         COUNT(t.activity_id) AS in_use, MAX(t.lease_expires_at - t.heartbeat_ms) AS heartbeat \
                         FROM workers w LEFT JOIN tasks t ON t.lease_owner = w.worker_id AND t.status = 'leased' \
                         GROUP BY w.worker_id, w.runtimes, w.queue, w.slots, w.first_seen, w.last_seen \
                         ORDER BY w.worker_id",
                    )
                    .fetch_all(&self.read)
                    .await?;
                    let mut workers = Vec::new();
                    for row in &rows {
                        let polled: Millis = row.try_get("last_seen")?;
                        let heartbeat: Option<Millis> = row.try_get("heartbeat")?;
                        let last_seen = heartbeat.map_or(polled, |h| h.max(polled));
                        if last_seen < seen_since {
                            continue;
                        }
                        workers.push(WorkerRecord {
                            worker_id: row.try_get("worker_id")?,
                            runtimes: row.try_get::<Json<Vec<String>>, _>("runtimes")?.0,
                            queue: row.try_get("queue")?,
                            slots: row.try_get::<i64, _>("slots")? as u32,
                            slots_in_use: row.try_get::<i64, _>("in_use")? as u32,
                            first_seen: row.try_get("first_seen")?,
                            last_seen,
                        });
                    }
                    Ok(workers)
                }

                async fn changes(&self) -> Result<Option<ChangeFeed>, StoreError> {
                    $changes(self).await
                }

                async fn delete_timer(&self, execution_id: Uuid, timer_id: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM timers WHERE execution_id = $1 AND timer_id = $2")
                        .bind(execution_id)
                        .bind(timer_id)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
                    let mut tx = self.write.begin().await?;
                    let inserted = sqlx::query(
                        "INSERT INTO teams (id, namespace, name, strategy, configuration, status, created_at, updated_at, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(team.id)
                    .bind(&team.namespace)
                    .bind(&team.name)
                    .bind(team.strategy.as_str())
                    .bind(Json(&team.config))
                    .bind(team.status.as_str())
                    .bind(team.created_at)
                    .bind(team.updated_at)
                    .bind(stored_count(team.version))
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Err(e) if is_unique_violation(&e) => {
                            return Err(StoreError::AlreadyExists(format!(
                                "an active team named `{}` already exists in namespace `{}`",
                                team.name, team.namespace
                            )));
                        }
                        other => other?,
                    };
                    write_members(&mut tx, team).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn update_team(&self, team: &Team) -> Result<(), StoreError> {
                    let mut tx = self.write.begin().await?;
                    // The conditional row update comes first, so a stale version is refused
                    // before the members are touched (and the transaction rolls back).
                    let updated = sqlx::query(
                        "UPDATE teams SET strategy = $2, configuration = $3, status = $4, updated_at = $5, \
                         version = version + 1 WHERE id = $1 AND version = $6",
                    )
                    .bind(team.id)
                    .bind(team.strategy.as_str())
                    .bind(Json(&team.config))
                    .bind(team.status.as_str())
                    .bind(team.updated_at)
                    .bind(stored_count(team.version))
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() == 0 {
                        drop(tx);
                        return Err(version_conflict(&self.read, "team", team.id, &team.name, team.version).await);
                    }
                    sqlx::query("DELETE FROM team_members WHERE team_id = $1").bind(team.id).execute(&mut *tx).await?;
                    write_members(&mut tx, team).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_team(&self, namespace: &str, key: &AgentKey) -> Result<Option<Team>, StoreError> {
                    let row = match key {
                        AgentKey::Id(id) => sqlx::query(concat!(
                            "SELECT ", team_columns!(), " FROM teams WHERE namespace = $1 AND id = $2"
                        ))
                        .bind(namespace)
                        .bind(*id)
                        .fetch_optional(&self.read)
                        .await?,
                        AgentKey::Name(name) => sqlx::query(concat!(
                            "SELECT ", team_columns!(), " FROM teams WHERE namespace = $1 AND name = $2 AND status = 'active'"
                        ))
                        .bind(namespace)
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await?,
                    };
                    let Some(row) = row else { return Ok(None) };
                    let mut teams = [team_from_row(&row)?];
                    self.load_members(&mut teams).await?;
                    let [team] = teams;
                    Ok(Some(team))
                }

                async fn list_teams(
                    &self,
                    namespace: &str,
                    include_archived: bool,
                    after: Option<Uuid>,
                    limit: u32,
                ) -> Result<Vec<Team>, StoreError> {
                    let mut query = QueryBuilder::<Db>::new(concat!(
                        "SELECT ", team_columns!(), " FROM teams WHERE namespace = "
                    ));
                    query.push_bind(namespace.to_string());
                    if !include_archived {
                        query.push(" AND status = 'active'");
                    }
                    if let Some(after) = after {
                        query.push(" AND id > ").push_bind(after);
                    }
                    query.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                    let rows = query.build().fetch_all(&self.read).await?;
                    let mut teams = rows.iter().map(team_from_row).collect::<Result<Vec<_>, _>>()?;
                    self.load_members(&mut teams).await?;
                    Ok(teams)
                }

                fn concurrent_commits(&self) -> usize {
                    $concurrent
                }

                async fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
                    let table = TABLES
                        .iter()
                        .find(|t| **t == table)
                        .ok_or_else(|| StoreError::Corrupt(format!("no table `{table}`")))?;
                    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                        .fetch_one(&self.read)
                        .await?)
                }
            }
        };
    };
}
