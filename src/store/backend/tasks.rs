//! [`TaskQueue`](crate::store::TaskQueue) for both dialects: reading a task row, claiming ready
//! tasks under a lease, progress (output, checkpoint, lease extension) and release fenced by the
//! lease, and the tasks whose deadlines passed. The task writes of a transition are in
//! `committed.rs` (`write_committed_tasks`).

/// A column of the task row while the lease `($1, $2, $3, $4)` = (execution, activity, attempt,
/// token) still holds it: the one fence progress and release both check, written once.
macro_rules! held_lease {
    ($column:literal) => {
        concat!(
            "SELECT ",
            $column,
            " FROM tasks WHERE execution_id = $1 AND activity_id = $2 \
             AND attempt = $3 AND lease_token = $4 AND status = 'leased'"
        )
    };
}

macro_rules! sql_tasks {
    ($store:ident, lock = $lock:literal, skip_locked = $skip_locked:literal, notify = $notify:path,
     json_texts = ($json_texts_open:literal, $json_texts_close:literal), new_token = $new_token:literal,
     instr = $instr:literal) => {
        const _: () = {
            use $crate::store::{
                ClaimRequest, ProgressOutcome, ProgressRecord, ReleaseOutcome, ReleaseRecord, TaskQueue,
            };

            #[async_trait]
            impl TaskQueue for $store {
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

                async fn get_task_for_report(&self, execution_id: Uuid, activity_id: &str) -> Result<Option<(TaskRecord, u64)>, StoreError> {
                    let row = sqlx::query(concat!(
                        "SELECT ", task_columns!(), ", (SELECT output_bytes FROM executions WHERE id = $1) AS x_output_bytes \
                         FROM tasks WHERE execution_id = $1 AND activity_id = $2"
                    ))
                    .bind(execution_id)
                    .bind(activity_id)
                    .fetch_optional(&self.read)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let bytes: Option<i64> = row.try_get("x_output_bytes")?;
                    Ok(Some((task_from_row(&row)?, bytes.unwrap_or(0).max(0) as u64)))
                }

                async fn claim_tasks(&self, claim: &ClaimRequest) -> Result<Vec<TaskRecord>, StoreError> {
                    if claim.runtimes.is_empty() || claim.max == 0 {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.begin_write().await?;
                    // Every task gets a token of its own, drawn by the database per row, so a
                    // report can never be mistaken for one about another task of the same poll.
                    let mut query = QueryBuilder::<Db>::new(concat!(
                        "UPDATE tasks SET status = 'leased', chunks_sent = 0, workspace = NULL, lease_token = ",
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
                        .push(concat!($json_texts_close, ")"))
                        .push(" AND (")
                        .push_bind(claim.refused_marker())
                        .push(concat!(" = '' OR ", $instr, "(refused_by, "))
                        .push_bind(claim.refused_marker())
                        .push(") = 0)");
                    query
                        .push(" ORDER BY visible_at LIMIT CAST(")
                        .push_bind(i64::from(claim.max))
                        .push(" AS BIGINT)")
                        .push($skip_locked)
                        .push(") RETURNING ")
                        .push(task_columns!());
                    let rows = query.build().fetch_all(&mut *tx).await?;
                    let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
                    // The attempt a claim starts resumes from the task's checkpoint, so it emits
                    // again what an earlier lease of the task emitted after that checkpoint.
                    if !tasks.is_empty() {
                        // The claimed tasks by key (an index lookup each, however many dead
                        // rows a busy tasks table holds), joined to their chunks after the
                        // checkpoint through the chunks' primary key.
                        let mut superseded = Vec::new();
                        for batch in tasks.chunks(rows_per_statement(2)) {
                            let mut query = QueryBuilder::<Db>::new(
                                "UPDATE output_chunks SET superseded = TRUE FROM tasks t \
                                 WHERE (t.execution_id, t.activity_id) IN (",
                            );
                            for (i, task) in batch.iter().enumerate() {
                                query
                                    .push(if i == 0 { "(" } else { ", (" })
                                    .push_bind(task.execution_id)
                                    .push(", ")
                                    .push_bind(task.activity_id.clone())
                                    .push(")");
                            }
                            query.push(
                                ") AND output_chunks.execution_id = t.execution_id \
                                 AND output_chunks.activity_id = t.activity_id \
                                 AND output_chunks.seq > t.checkpoint_seq \
                                 AND output_chunks.superseded = FALSE AND output_chunks.source_id IS NULL \
                                 AND output_chunks.reused_from IS NULL \
                                 RETURNING output_chunks.execution_id, output_chunks.activity_id",
                            );
                            superseded.extend(query.build().fetch_all(&mut *tx).await?);
                        }
                        // A team's output holds a copy of each of its children's chunks, written
                        // in the child's order: the last k copies of a child's activity are the k
                        // chunks just marked, so the team's stream reads the text once as well.
                        let mut marked: std::collections::BTreeMap<(Uuid, String), i64> = Default::default();
                        for row in &superseded {
                            *marked.entry((row.try_get("execution_id")?, row.try_get("activity_id")?)).or_default() += 1;
                        }
                        for ((child, activity), count) in marked {
                            sqlx::query(
                                "UPDATE output_chunks SET superseded = TRUE \
                                 WHERE execution_id = (SELECT parent_id FROM executions WHERE id = $1) \
                                 AND seq IN (SELECT seq FROM output_chunks \
                                 WHERE execution_id = (SELECT parent_id FROM executions WHERE id = $1) \
                                 AND source_id = $1 AND activity_id = $2 AND superseded = FALSE \
                                 AND reused_from IS NULL ORDER BY seq DESC LIMIT CAST($3 AS BIGINT))",
                            )
                            .bind(child)
                            .bind(activity)
                            .bind(count)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
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

                async fn claimable_tasks(&self, claim: &ClaimRequest) -> Result<Vec<TaskRecord>, StoreError> {
                    if claim.runtimes.is_empty() || claim.max == 0 {
                        return Ok(Vec::new());
                    }
                    // The same rows, in the same order, as the claim's inner SELECT.
                    let rows = sqlx::query(concat!(
                        "SELECT ", task_columns!(), " FROM tasks WHERE status = 'ready' AND cancel_requested = $1 \
                         AND queue = $2 AND runtime IN (", $json_texts_open, "$3", $json_texts_close, ") \
                         AND ($4 = '' OR ", $instr, "(refused_by, $4) = 0) ORDER BY visible_at LIMIT CAST($5 AS BIGINT)"
                    ))
                    .bind(false)
                    .bind(&claim.queue)
                    .bind(Json(&claim.runtimes))
                    .bind(claim.refused_marker())
                    .bind(i64::from(claim.max))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter().map(task_from_row).collect()
                }

                async fn refuse_task(&self, execution_id: Uuid, activity_id: &str, fingerprint: &str) -> Result<(), StoreError> {
                    let marker = format!("|{fingerprint}|");
                    sqlx::query(concat!(
                        "UPDATE tasks SET refused_by = CASE WHEN refused_by = '' THEN '|' ELSE refused_by END || $3 || '|' \
                         WHERE execution_id = $1 AND activity_id = $2 AND ", $instr, "(refused_by, $4) = 0",
                    ))
                    .bind(execution_id)
                    .bind(activity_id)
                    .bind(fingerprint)
                    .bind(marker)
                    .execute(&self.write)
                    .await?;
                    Ok(())
                }

                async fn record_progress(&self, p: &ProgressRecord) -> Result<Option<ProgressOutcome>, StoreError> {
                    let mut tx = self.begin_write().await?;
                    // How many of this lease's chunks are stored already: a batch the worker sent
                    // again (its reply was lost) is stored once.
                    let stored: Option<i64> = sqlx::query_scalar(concat!(
                        held_lease!("chunks_sent"),
                        $lock
                    ))
                    .bind(p.lease.execution_id)
                    .bind(&p.lease.activity_id)
                    .bind(i64::from(p.lease.attempt))
                    .bind(&p.lease.lease_token)
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
                    let (output_seq, parent_id) = append_chunks(&mut tx, p.lease.execution_id, chunks, p.now, p.max_output_bytes).await?;
                    // A checkpoint covers every chunk sent so far: a retry resumes after them.
                    let cancel_requested: bool = sqlx::query_scalar(
                        "UPDATE tasks SET lease_expires_at = $5 + heartbeat_ms, checkpoint = COALESCE($6, checkpoint), \
                         chunks_sent = $7, checkpoint_seq = CASE WHEN $6 IS NULL THEN checkpoint_seq ELSE $8 END, \
                         workspace = COALESCE($9, workspace) \
                         WHERE execution_id = $1 AND activity_id = $2 AND attempt = $3 \
                         AND lease_token = $4 RETURNING cancel_requested",
                    )
                    .bind(p.lease.execution_id)
                    .bind(&p.lease.activity_id)
                    .bind(i64::from(p.lease.attempt))
                    .bind(&p.lease.lease_token)
                    .bind(p.now)
                    .bind(p.checkpoint.as_ref().map($crate::store::backend::json_param::JsonParam::of))
                    .bind(stored.max(first + p.chunks.len() as u64) as i64)
                    .bind(output_seq as i64)
                    .bind(p.workspace.as_deref())
                    .fetch_one(&mut *tx)
                    .await?;
                    let objects: Vec<_> = p.objects.iter().map(|o| (p.lease.execution_id, o)).collect();
                    insert_objects(&mut tx, &objects, p.now).await?;
                    if !chunks.is_empty() {
                        let mut notes = Notes::default();
                        notes.execution(p.lease.execution_id);
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
                         OR (status = 'ready' AND schedule_deadline <= $1) LIMIT CAST($2 AS BIGINT)"
                    ))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter().map(task_from_row).collect()
                }

                async fn release_task(&self, r: &ReleaseRecord) -> Result<Option<ReleaseOutcome>, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let cancel_requested: Option<bool> = sqlx::query_scalar(concat!(
                        held_lease!("cancel_requested"),
                        $lock
                    ))
                    .bind(r.lease.execution_id)
                    .bind(&r.lease.activity_id)
                    .bind(i64::from(r.lease.attempt))
                    .bind(&r.lease.lease_token)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match cancel_requested {
                        None => return Ok(None),
                        Some(true) => return Ok(Some(ReleaseOutcome::CancelRequested)),
                        Some(false) => {}
                    }
                    // The schedule-to-start deadline is over (the attempt started); the attempt
                    // deadline stays, so start-to-close bounds the attempt across workers.
                    let (output_seq, parent_id) = append_chunks(&mut tx, r.lease.execution_id, &r.chunks, r.now, r.max_output_bytes).await?;
                    sqlx::query(
                        "UPDATE tasks SET status = 'ready', visible_at = $3, schedule_deadline = NULL, \
                         lease_token = NULL, lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, \
                         checkpoint = COALESCE($4, checkpoint), \
                         checkpoint_seq = CASE WHEN $4 IS NULL THEN checkpoint_seq ELSE $5 END \
                         WHERE execution_id = $1 AND activity_id = $2",
                    )
                    .bind(r.lease.execution_id)
                    .bind(&r.lease.activity_id)
                    .bind(r.now)
                    .bind(r.checkpoint.as_ref().map($crate::store::backend::json_param::JsonParam::of))
                    .bind(output_seq as i64)
                    .execute(&mut *tx)
                    .await?;
                    let objects: Vec<_> = r.objects.iter().map(|o| (r.lease.execution_id, o)).collect();
                    insert_objects(&mut tx, &objects, r.now).await?;
                    let mut notes = Notes::default();
                    notes.task_ready();
                    notes.execution(r.lease.execution_id);
                    if let Some(parent_id) = parent_id {
                        notes.execution(parent_id);
                    }
                    $notify(&mut tx, &notes).await?;
                    tx.commit().await?;
                    Ok(Some(ReleaseOutcome::Released))
                }
            }
        };
    };
}
