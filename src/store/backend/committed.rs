//! What the committed transitions of a group commit write besides their execution rows: labels,
//! history, output (and a child's copies on its parent's output), task and timer rows, one
//! set-based statement per table and kind of change (per wave, see `plan.rs`). `sql_committed!`
//! expands into a dialect module after `sql_transition!`, whose `write_round` calls
//! `write_committed` once the outcomes of a round are known.

macro_rules! sql_committed {
    () => {
        static INSERT_LABELS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO execution_labels (execution_id, key, value) \
             SELECT {u:id}, value->>'key', value->>'value' FROM {rows}",
        ));
        static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO history_events (execution_id, seq, payload, created_at) \
             SELECT {u:id}, CAST(value->>'seq' AS BIGINT), {j:payload}, \
             CAST(value->>'at' AS BIGINT) FROM {rows}",
        ));
        static GROW_OUTPUT: LazyLock<String> = LazyLock::new(|| sql(
            "UPDATE executions AS e SET output_seq = e.output_seq + r.x_n \
             FROM (SELECT {u:id} AS x_id, CAST(value->>'n' AS BIGINT) AS x_n FROM {rows}) AS r \
             WHERE e.id = r.x_id RETURNING id, output_seq",
        ));
        static INSERT_CHUNKS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO output_chunks (execution_id, seq, activity_id, attempt, kind, data, created_at, \
             source_id, source_key, reused_from) \
             SELECT {u:id}, CAST(value->>'seq' AS BIGINT), value->>'activity_id', \
             CAST(value->>'attempt' AS BIGINT), value->>'kind', {j:data}, CAST(value->>'at' AS BIGINT), \
             {u:source_id}, value->>'source_key', {u:reused_from} FROM {rows}",
        ));
        /// The task statements, in the order of `plan::task_kind`.
        static TASK_STATEMENTS: LazyLock<[String; plan::TASK_KINDS]> = LazyLock::new(|| [
            sql("DELETE FROM tasks WHERE execution_id IN (SELECT {u:id} FROM {rows})"),
            sql("DELETE FROM tasks WHERE (execution_id, activity_id) IN \
                 (SELECT {u:id}, value->>'key' FROM {rows})"),
            sql("INSERT INTO tasks (execution_id, activity_id, attempt, runtime, queue, status, visible_at, \
                 schedule_deadline, heartbeat_ms, start_to_close_ms, cancel_requested, turn, checkpoint, \
                 lease_token, lease_owner, leased_at, lease_expires_at, attempt_deadline) \
                 SELECT {u:id}, value->>'activity_id', 1, value->>'runtime', value->>'queue', \
                 value->>'status', CAST(value->>'visible_at' AS BIGINT), \
                 CAST(value->>'schedule_deadline' AS BIGINT), CAST(value->>'heartbeat_ms' AS BIGINT), \
                 CAST(value->>'start_to_close_ms' AS BIGINT), FALSE, {j:turn}, {j:checkpoint}, \
                 value->>'lease_token', value->>'lease_owner', CAST(value->>'leased_at' AS BIGINT), \
                 CAST(value->>'lease_expires_at' AS BIGINT), CAST(value->>'attempt_deadline' AS BIGINT) \
                 FROM {rows}"),
            sql("UPDATE tasks AS k SET attempt = r.x_attempt, status = 'ready', visible_at = r.x_now, \
                 schedule_deadline = r.x_deadline, lease_token = NULL, lease_owner = NULL, leased_at = NULL, \
                 lease_expires_at = NULL, attempt_deadline = NULL \
                 FROM (SELECT {u:id} AS x_id, value->>'key' AS x_key, CAST(value->>'attempt' AS BIGINT) AS x_attempt, \
                       CAST(value->>'now' AS BIGINT) AS x_now, \
                       CAST(value->>'schedule_deadline' AS BIGINT) AS x_deadline FROM {rows}) AS r \
                 WHERE k.execution_id = r.x_id AND k.activity_id = r.x_key"),
            sql("UPDATE tasks AS k SET status = 'backoff', lease_token = NULL, lease_owner = NULL, \
                 leased_at = NULL, lease_expires_at = NULL, attempt_deadline = NULL, schedule_deadline = NULL, \
                 checkpoint = COALESCE(r.x_checkpoint, k.checkpoint), \
                 checkpoint_seq = CASE WHEN r.x_checkpoint IS NULL THEN k.checkpoint_seq \
                   ELSE (SELECT e.output_seq FROM executions e WHERE e.id = k.execution_id) END \
                 FROM (SELECT {u:id} AS x_id, value->>'key' AS x_key, {j:checkpoint} AS x_checkpoint \
                       FROM {rows}) AS r \
                 WHERE k.execution_id = r.x_id AND k.activity_id = r.x_key"),
            sql("UPDATE tasks SET cancel_requested = TRUE WHERE (execution_id, activity_id) IN \
                 (SELECT {u:id}, value->>'key' FROM {rows})"),
        ]);
        /// The timer statements, in the order of `plan::timer_kind`.
        static TIMER_STATEMENTS: LazyLock<[String; plan::TIMER_KINDS]> = LazyLock::new(|| [
            sql("DELETE FROM timers WHERE execution_id IN (SELECT {u:id} FROM {rows})"),
            sql("DELETE FROM timers WHERE (execution_id, timer_id) IN \
                 (SELECT {u:id}, value->>'key' FROM {rows})"),
            sql("INSERT INTO timers (execution_id, timer_id, fire_at, kind, payload) \
                 SELECT {u:id}, value->>'key', CAST(value->>'fire_at' AS BIGINT), value->>'kind', \
                 {j:payload} FROM {rows}"),
            sql("INSERT INTO timers (execution_id, timer_id, fire_at, kind, payload) \
                 SELECT {u:id}, value->>'key', CAST(value->>'fire_at' AS BIGINT), value->>'kind', \
                 {j:payload} FROM {rows} WHERE TRUE ON CONFLICT DO NOTHING"),
        ]);


        /// Where the writes of committed items go: into the transaction, each its own statement
        /// (on SQLite held for its next call, `held.rs`), or gathered, each with its rows, into
        /// the round's one statement (`single.rs`).
        enum Writes<'t, 'c> {
            Tx(&'t mut CommitTx<'c>),
            Gather(Vec<(&'static str, Packed)>),
        }

        impl<'c> Writes<'_, 'c> {
            async fn write(&mut self, statement: &'static str, rows: Packed) -> Result<(), StoreError> {
                match self {
                    Writes::Tx(tx) => tx.write(statement, rows).await,
                    Writes::Gather(parts) => {
                        parts.push((statement, rows));
                        Ok(())
                    }
                }
            }

            /// The transaction, for a write whose rows come back (which `Gather` never takes).
            fn tx(&mut self) -> Result<&mut CommitTx<'c>, StoreError> {
                match self {
                    Writes::Tx(tx) => Ok(tx),
                    Writes::Gather(_) => Err(StoreError::Corrupt("a write that reads back, gathered into one statement".into())),
                }
            }
        }

        /// Everything the committed items write besides their execution rows: labels, history,
        /// output (and a child's copies on its parent), task and timer rows; one statement per
        /// table and kind of change (per wave, see `plan.rs`).
        async fn write_committed(w: &mut Writes<'_, '_>, committed: &[&Item<'_>]) -> Result<(), StoreError> {

            let labels = committed.iter().flat_map(|it| match &it.t.row_write {
                RowWrite::Create(new) => new
                    .labels
                    .iter()
                    .map(|(key, value)| packed::LabelRow { id: it.t.execution_id, key, value })
                    .collect::<Vec<_>>(),
                RowWrite::Update { .. } => Vec::new(),
            });
            let labels = pack(labels)?;
            if !labels.is_empty() {
                w.write(INSERT_LABELS.as_str(), labels).await?;
            }

            let events = committed.iter().flat_map(|it| {
                let first = match it.t.row_write {
                    RowWrite::Create(_) => 1,
                    RowWrite::Update { expected_next_seq } => expected_next_seq,
                };
                it.t.events.iter().enumerate().map(move |(i, event)| packed::EventRow {
                    id: it.t.execution_id,
                    seq: (first + i as u64) as i64,
                    payload: json(event),
                    at: it.t.now,
                })
            });
            let events = pack(events)?;
            if !events.is_empty() {
                w.write(INSERT_EVENTS.as_str(), events).await?;
            }

            // The objects of every committed transition (and of the children it starts) in one
            // statement: a refused transition's objects are not written.
            let objects: Vec<(uuid::Uuid, &crate::store::NewObject)> = committed
                .iter()
                .flat_map(|it| it.t.objects.iter().map(|o| (it.t.execution_id, o)))
                .collect();
            if let Some(first) = committed.first()
                && !objects.is_empty()
            {
                let tx = w.tx()?;
                for (statement, rows) in object_writes(&objects, first.t.now)? {
                    tx.write(statement, rows).await?;
                }
            }

            write_committed_chunks(w, committed).await?;
            write_committed_tasks(w, committed).await?;
            write_committed_timers(w, committed).await
        }

        /// The output of the committed items at the seqs their row writes reserved, and a
        /// child's copies at the end of its parent's output, tagged with the child. Gathered into
        /// the round's one statement, before any row write returned, a chunk's seq counts back
        /// from the end of its execution's output (the statement adds where that ends), and no
        /// parent is known yet (`single.rs` writes a child's output after the statement).
        async fn write_committed_chunks(w: &mut Writes<'_, '_>, committed: &[&Item<'_>]) -> Result<(), StoreError> {
            let gathered = matches!(w, Writes::Gather(_));
            let with_output: Vec<(&Item<'_>, i64, Option<Uuid>, Option<&str>)> = committed
                .iter()
                .filter(|it| !it.t.chunks.is_empty())
                .filter_map(|it| match &it.output {
                    _ if gathered => Some((*it, 0, None, None)),
                    Some((last, parent, key)) => Some((*it, *last, *parent, key.as_deref())),
                    None => None,
                })
                .collect();
            if with_output.is_empty() {
                return Ok(());
            }
            // Each parent grows by all its children's chunks at once; each child's copies then
            // take their part of the new range, in commit order.
            let mut growth: Vec<(Uuid, i64)> = Vec::new();
            for (it, _, parent, _) in &with_output {
                if let Some(parent) = parent {
                    match growth.iter_mut().find(|(id, _)| id == parent) {
                        Some((_, n)) => *n += it.t.chunks.len() as i64,
                        None => growth.push((*parent, it.t.chunks.len() as i64)),
                    }
                }
            }
            let mut next_parent_seq: HashMap<Uuid, i64> = HashMap::new();
            if !growth.is_empty() {
                let rows = growth.iter().map(|&(id, n)| packed::GrowRow { id, n });
                for row in w.tx()?.rows(GROW_OUTPUT.as_str(), pack(rows)?).await? {
                    let id: Uuid = row.try_get("id")?;
                    let last: i64 = row.try_get("output_seq")?;
                    let n = growth.iter().find(|(g, _)| *g == id).map_or(0, |(_, n)| *n);
                    next_parent_seq.insert(id, last - n + 1);
                }
            }
            let mut chunks = Packed::default();
            for (it, last, parent, key) in &with_output {
                let t = it.t;
                let first = last - t.chunks.len() as i64 + 1;
                for (i, chunk) in t.chunks.iter().enumerate() {
                    let source = chunk.source.as_ref();
                    chunks.push(&packed::ChunkRow {
                        id: t.execution_id,
                        seq: first + i as i64,
                        activity_id: &chunk.activity_id,
                        attempt: i64::from(chunk.attempt),
                        kind: &chunk.kind,
                        data: json(&chunk.data),
                        at: t.now,
                        source_id: source.map(|s| s.0),
                        source_key: source.map(|s| s.1.as_str()),
                        reused_from: chunk.reused_from,
                    }).map_err(|e| corrupt("a chunk to write", e))?;
                }
                if let Some(parent) = parent {
                    let seq = next_parent_seq.get_mut(parent).ok_or_else(|| {
                        StoreError::Corrupt(format!("parent execution {parent} of {} is missing", t.execution_id))
                    })?;
                    for chunk in &t.chunks {
                        let source = chunk.source.as_ref();
                        chunks.push(&packed::ChunkRow {
                            id: *parent,
                            seq: *seq,
                            activity_id: &chunk.activity_id,
                            attempt: i64::from(chunk.attempt),
                            kind: &chunk.kind,
                            data: json(&chunk.data),
                            at: t.now,
                            source_id: Some(source.map_or(t.execution_id, |s| s.0)),
                            source_key: Some(source.map_or(key.unwrap_or_default(), |s| s.1.as_str())),
                            reused_from: chunk.reused_from,
                        }).map_err(|e| corrupt("a chunk to write", e))?;
                        *seq += 1;
                    }
                }
            }
            w.write(INSERT_CHUNKS.as_str(), chunks).await
        }

        /// The task changes of the committed items, wave by wave, one statement per kind.
        async fn write_committed_tasks(w: &mut Writes<'_, '_>, committed: &[&Item<'_>]) -> Result<(), StoreError> {
            let mut waves: Vec<[Packed; plan::TASK_KINDS]> = Vec::new();
            for it in committed {
                let t = it.t;
                let wave_of = plan::waves(t.tasks.iter().map(|op| (plan::task_kind(op), plan::task_row(op))));
                for (op, wave) in t.tasks.iter().zip(wave_of) {
                    if waves.len() <= wave {
                        waves.resize_with(wave + 1, Default::default);
                    }
                    let packed = &mut waves[wave][plan::task_kind(op)];
                    let id = t.execution_id;
                    let pushed = match op {
                        TaskOp::DeleteAll => packed.push(&packed::IdRow { id }),
                        TaskOp::Delete { activity_id } | TaskOp::RequestCancel { activity_id } => {
                            packed.push(&packed::KeyRow { id, key: activity_id })
                        }
                        TaskOp::Insert(task) => {
                            // A task leased as it is inserted (eager dispatch) gets the columns a
                            // claim at `now` would write; `chunks_sent` starts at 0 either way.
                            let lease = task.lease.as_ref();
                            let heartbeat_ms = stored_duration(task.heartbeat_ms);
                            packed.push(&packed::TaskRow {
                                id,
                                activity_id: &task.activity_id,
                                runtime: &task.runtime,
                                queue: &task.queue,
                                status: if lease.is_some() { "leased" } else { "ready" },
                                visible_at: t.now,
                                schedule_deadline: task.schedule_deadline,
                                heartbeat_ms,
                                start_to_close_ms: stored_duration(task.start_to_close_ms),
                                turn: json(&task.turn),
                                checkpoint: task.checkpoint.as_ref().map(json),
                                lease_token: lease.map(|l| l.token.as_str()),
                                lease_owner: lease.map(|l| l.owner.as_str()),
                                leased_at: lease.map(|_| t.now),
                                lease_expires_at: lease.map(|_| crate::domain::after(t.now, heartbeat_ms as u64)),
                                attempt_deadline: lease
                                    .and((task.start_to_close_ms > 0).then(|| crate::domain::after(t.now, task.start_to_close_ms))),
                            })
                        }
                        TaskOp::Reschedule { activity_id, attempt, schedule_deadline } => packed.push(&packed::RescheduleRow {
                            id,
                            key: activity_id,
                            attempt: i64::from(*attempt),
                            now: t.now,
                            schedule_deadline: *schedule_deadline,
                        }),
                        TaskOp::Park { activity_id, checkpoint } => packed.push(&packed::ParkRow {
                            id,
                            key: activity_id,
                            checkpoint: checkpoint.as_ref().map(json),
                        }),
                    };
                    pushed.map_err(|e| corrupt("a task row to write", e))?;
                }
            }
            for wave in waves {
                for (kind, rows) in wave.into_iter().enumerate() {
                    if !rows.is_empty() {
                        w.write(TASK_STATEMENTS[kind].as_str(), rows).await?;
                    }
                }
            }
            Ok(())
        }

        /// The timer changes (and inbox rows) of the committed items, wave by wave.
        async fn write_committed_timers(w: &mut Writes<'_, '_>, committed: &[&Item<'_>]) -> Result<(), StoreError> {
            let mut waves: Vec<[Packed; plan::TIMER_KINDS]> = Vec::new();
            for it in committed {
                let t = it.t;
                let keys: Vec<Option<String>> = t.timers.iter().map(plan::timer_row).collect();
                let wave_of = plan::waves(t.timers.iter().zip(&keys).map(|(op, key)| (plan::timer_kind(op), key.as_deref())));
                for (op, wave) in t.timers.iter().zip(wave_of) {
                    if waves.len() <= wave {
                        waves.resize_with(wave + 1, Default::default);
                    }
                    let packed = &mut waves[wave][plan::timer_kind(op)];
                    let id = t.execution_id;
                    let pushed = match op {
                        TimerOp::DeleteAll => packed.push(&packed::IdRow { id }),
                        TimerOp::Delete { timer_id } => packed.push(&packed::KeyRow { id, key: timer_id }),
                        TimerOp::Insert { timer_id, fire_at, kind, payload } => packed.push(&packed::TimerRow {
                            id,
                            key: timer_id,
                            fire_at: *fire_at,
                            kind: kind.as_str(),
                            payload: json(payload),
                        }),
                        TimerOp::Inbox { execution_id, timer_id, payload } => packed.push(&packed::TimerRow {
                            id: *execution_id,
                            key: timer_id,
                            fire_at: t.now,
                            kind: "inbox",
                            payload: json(payload),
                        }),
                    };
                    pushed.map_err(|e| corrupt("a timer row to write", e))?;
                }
            }
            for wave in waves {
                for (kind, rows) in wave.into_iter().enumerate() {
                    if !rows.is_empty() {
                        w.write(TIMER_STATEMENTS[kind].as_str(), rows).await?;
                    }
                }
            }
            Ok(())
        }

    };
}
