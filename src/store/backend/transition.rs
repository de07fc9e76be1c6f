//! What one transition writes inside its transaction: fences checked first, then the execution
//! row (inserted or moved forward by its version), history events, task and timer rows, and
//! child executions. `sql_transition!` expands these into a dialect module (after `sql_rows!`
//! and `sql_chunks!`); `Executions::commit` in `executions.rs` runs them.
//!
//! Task-row SQL written by a transition (insert, reschedule, park, cancel, delete) is here in
//! `write_task_op`; the queue's own statements (claim, progress, release, expiry) are in
//! `tasks.rs`.

macro_rules! sql_transition {
    (lock = $lock:literal) => {
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
                    // The row is inserted as the transition leaves it: no UPDATE follows. A row
                    // that starts RUNNING (its first task leased at once) started now.
                    let inserted = sqlx::query(
                        "INSERT INTO executions (id, namespace, kind, agent_id, runtime, status, input, \
                         parent_id, root_id, retry_of, request_id, state, next_seq, created_at, team_id, child_key, \
                         result, failure, input_tokens, output_tokens, cost_usd, tool_calls, closed_at, started_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $16, $13, $14, $15, \
                         $17, $18, $19, $20, $21, $22, $23, CASE WHEN $6 = 'RUNNING' THEN $13 END) \
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
                    // A task leased as it is inserted (eager dispatch) gets the columns a claim
                    // at `now` would write; `chunks_sent` starts at 0 either way.
                    let lease = task.lease.as_ref();
                    let status = if lease.is_some() { TaskStatus::Leased } else { TaskStatus::Ready };
                    let attempt_deadline = (task.start_to_close_ms > 0)
                        .then(|| crate::domain::after(now, task.start_to_close_ms));
                    sqlx::query(
                        "INSERT INTO tasks (execution_id, activity_id, attempt, runtime, queue, status, \
                         visible_at, schedule_deadline, heartbeat_ms, start_to_close_ms, cancel_requested, \
                         turn, checkpoint, lease_token, lease_owner, leased_at, lease_expires_at, attempt_deadline) \
                         VALUES ($1, $2, 1, $3, $4, $12, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, $16, $17)",
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
                    .bind(status.as_str())
                    .bind(lease.map(|l| l.token.as_str()))
                    .bind(lease.map(|l| l.owner.as_str()))
                    .bind(lease.map(|_| now))
                    .bind(lease.map(|_| crate::domain::after(now, stored_duration(task.heartbeat_ms) as u64)))
                    .bind(lease.and(attempt_deadline))
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
                    .bind(kind.as_str())
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
    };
}
