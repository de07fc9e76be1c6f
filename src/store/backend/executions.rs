//! [`Executions`](crate::store::Executions) for both dialects: the commit of transitions (group
//! commit in one transaction, the writes themselves in `transition.rs`), execution rows, request
//! ids, lists, history, output, and the quarantine of an unreadable execution.

macro_rules! sql_executions {
    ($store:ident, lock = $lock:literal, begin_commit = $begin_commit:literal, notify = $notify:path,
     notify_after = $notify_after:path, object_agg = $object_agg:literal) => {
        const _: () = {
            use $crate::store::backend::json_param::JsonParam;
            use $crate::store::{ExecutionFilter, Executions, Quarantine, StoredChunk, StoredEvent};

            /// Locks the task rows of one execution, in activity order, where the dialect has row
            /// locks (quarantine's lock order; see [`touches_tasks`]).
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

            /// Deletes every task row and timer of an execution (quarantine).
            async fn delete_tasks_and_timers(tx: &mut Tx<'_>, execution_id: Uuid) -> Result<(), StoreError> {
                for statement in ["DELETE FROM tasks WHERE execution_id = $1", "DELETE FROM timers WHERE execution_id = $1"] {
                    sqlx::query(statement).bind(execution_id).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Writes an inbox row on `receiver` (quarantine), as a transition's `TimerOp::Inbox`.
            async fn insert_inbox(
                tx: &mut Tx<'_>,
                receiver: Uuid,
                timer_id: &str,
                payload: &serde_json::Value,
                now: Millis,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO timers (execution_id, timer_id, fire_at, kind, payload) \
                     VALUES ($1, $2, $3, 'inbox', $4) ON CONFLICT DO NOTHING",
                )
                .bind(receiver)
                .bind(timer_id)
                .bind(now)
                .bind(JsonParam::of(payload))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            impl $store {
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
            impl Executions for $store {
                async fn commit_watched(
                    &self,
                    transitions: &[Transition],
                    watched: &[bool],
                ) -> Result<Vec<(CommitOutcome, Option<$crate::store::RowAfter>)>, StoreError> {
                    // Lock order across transactions: executions by id. Two group commits that
                    // name the same executions in different orders would otherwise each hold an
                    // execution row the other waits for. Transitions of different executions are
                    // independent, and the sort is stable, so those of one execution keep their
                    // order.
                    let mut order: Vec<usize> = (0..transitions.len()).collect();
                    order.sort_by_key(|&i| transitions[i].execution_id);
                    let counts = (&*self.statements, &*self.round_trips);
                    let mut outcomes = vec![None; transitions.len()];
                    let mut afters = vec![None; transitions.len()];
                    let mut conn = self.commits.acquire().await?;
                    // A batch written in one statement alone (`alone.rs`) leaves the transitions
                    // it defers; otherwise all of them go in one transaction.
                    let rest = match write_alone(&mut conn, counts, transitions, watched, &order, &mut outcomes, &mut afters).await? {
                        Some(deferred) => deferred,
                        None => order,
                    };
                    if !rest.is_empty() {
                        let mut tx = CommitTx::begin(&mut conn, counts, $begin_commit).await?;
                        match write_batch(&mut tx, transitions, watched, &rest, &mut outcomes, &mut afters).await {
                            Ok(()) => tx.commit().await?,
                            Err(e) => {
                                tx.rollback().await;
                                return Err(e);
                            }
                        }
                    }
                    drop(conn);
                    let (outcomes, notes) = settled(transitions, outcomes, afters)?;
                    $notify_after(self, notes);
                    Ok(outcomes)
                }

                async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError> {
                    // The row and its labels (as one JSON object) in one statement: a view, a
                    // namespace check and a stream's last event each cost one round trip.
                    let row = sqlx::query(concat!(
                        "SELECT ", execution_columns!(), ", (SELECT ", $object_agg, "(key, value) \
                         FROM execution_labels WHERE execution_id = $1) AS labels_json \
                         FROM executions WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let mut record = execution_from_row(&row)?;
                    let labels: Option<Json<BTreeMap<String, String>>> = row
                        .try_get("labels_json")
                        .map_err(|e| corrupt("an execution's labels", e))?;
                    record.labels = labels.map(|l| l.0).unwrap_or_default();
                    Ok(Some(record))
                }

                async fn output_bytes(&self, id: Uuid) -> Result<u64, StoreError> {
                    let bytes: Option<i64> = sqlx::query_scalar("SELECT output_bytes FROM executions WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                    Ok(bytes.unwrap_or(0).max(0) as u64)
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
                    query.push(" ORDER BY id DESC LIMIT CAST(").push_bind(i64::from(limit)).push(" AS BIGINT)");
                    let rows = query.build().fetch_all(&self.read).await?;
                    let mut records = rows.iter().map(execution_from_row).collect::<Result<Vec<_>, _>>()?;
                    self.load_labels(&mut records).await?;
                    Ok(records)
                }

                async fn history(&self, id: Uuid, after_seq: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT seq, payload, created_at FROM history_events WHERE execution_id = $1 AND seq > $2 \
                         ORDER BY seq LIMIT CAST($3 AS BIGINT)",
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
                         reused_from, superseded FROM output_chunks WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT CAST($3 AS BIGINT)",
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
                                superseded: row.try_get("superseded")?,
                            })
                        })
                        .collect()
                }

                async fn quarantine_execution(&self, q: &Quarantine) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
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
                    let failure = serde_json::to_value(&q.failure).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let failed = sqlx::query(
                        "UPDATE executions SET status = $2, failure = $3, state = $4, closed_at = $5, \
                         duration_ms = $5 - COALESCE(started_at, created_at), next_seq = next_seq + 1 \
                         WHERE id = $1",
                    )
                    .bind(q.execution_id)
                    .bind(ExecutionStatus::Failed.as_str())
                    .bind(JsonParam::of(&failure))
                    .bind(JsonParam::of(&note))
                    .bind(q.now)
                    .execute(&mut *tx)
                    .await?;
                    debug_assert_eq!(failed.rows_affected(), 1);
                    let event = HistoryEvent::ExecutionFailed { failure: q.failure.clone() };
                    let event = serde_json::to_value(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    sqlx::query(
                        "INSERT INTO history_events (execution_id, seq, payload, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(q.execution_id)
                    .bind(next_seq)
                    .bind(JsonParam::of(&event))
                    .bind(q.now)
                    .execute(&mut *tx)
                    .await?;
                    delete_tasks_and_timers(&mut tx, q.execution_id).await?;
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
                        let payload = serde_json::to_value(closed).map_err(|e| corrupt("child close", e))?;
                        insert_inbox(&mut tx, parent_id, &format!("inbox-child-{key}"), &payload, q.now).await?;
                        notes.deadline_added(q.now);
                    }
                    $notify(&mut tx, &notes).await?;
                    tx.commit().await?;
                    Ok(true)
                }
            }
        };
    };
}
