//! What a group commit writes inside its transaction, set-based: a fixed number of statements
//! for the whole batch, however many transitions and rows it carries (see `plan.rs` for how a
//! batch is cut into rounds and waves). Per round: the fences read at once (task rows locked in
//! a consistent order before execution rows, where the dialect has row locks), the execution
//! rows moved forward by their versions in one statement, new rows inserted in one, then one
//! statement per table and kind of change for the transitions that passed. Every statement
//! carries its rows as one JSON array parameter, so no batch reaches the bind-parameter limit.
//! `sql_transition!` expands these into a dialect module (after `sql_rows!` and `sql_chunks!`,
//! before `sql_committed!`, which writes what the committed transitions carry besides their
//! rows); `Executions::commit` in `executions.rs` runs them.
//!
//! A round whose writes are all independent of each other is written in one statement instead
//! (`single.rs`). The queue's own statements (claim, progress, release, expiry) are in
//! `tasks.rs`; quarantine's single-row writes in `executions.rs`.

/// Moves execution rows forward from their versions (the round's updates, in one statement),
/// returning what the commit hands on, then `$returning`. `{locked}` is where `locking` adds
/// the row-lock condition of a dialect that has row locks.
macro_rules! update_executions {
    ($returning:expr) => {
        concat!(
            "UPDATE executions AS e SET next_seq = r.x_next_seq, \
             status = CASE WHEN r.x_status = 'PENDING' THEN e.status ELSE r.x_status END, \
             state = r.x_state, result = r.x_result, failure = r.x_failure, \
             input_tokens = r.x_input_tokens, output_tokens = r.x_output_tokens, cost_usd = r.x_cost, \
             tool_calls = r.x_tool_calls, closed_at = COALESCE(r.x_closed_at, e.closed_at), \
             duration_ms = CASE WHEN r.x_closed_at IS NULL THEN e.duration_ms \
                                ELSE r.x_closed_at - COALESCE(e.started_at, e.created_at) END, \
             output_seq = e.output_seq + r.x_chunks, output_bytes = e.output_bytes + r.x_bytes \
             FROM (SELECT {u:id} AS x_id, CAST(value->>'expected' AS BIGINT) AS x_expected, \
                   CAST(value->>'next_seq' AS BIGINT) AS x_next_seq, value->>'status' AS x_status, \
                   {j:state} AS x_state, {j:result} AS x_result, {j:failure} AS x_failure, \
                   CAST(value->>'input_tokens' AS BIGINT) AS x_input_tokens, \
                   CAST(value->>'output_tokens' AS BIGINT) AS x_output_tokens, \
                   CAST(value->>'cost' AS DOUBLE PRECISION) AS x_cost, \
                   CAST(value->>'tool_calls' AS BIGINT) AS x_tool_calls, \
                   CAST(value->>'closed_at' AS BIGINT) AS x_closed_at, \
                   CAST(value->>'chunks' AS BIGINT) AS x_chunks, \
                   CAST(value->>'bytes' AS BIGINT) AS x_bytes FROM {rows}) AS r \
             WHERE e.id = r.x_id AND e.next_seq = r.x_expected{locked} \
             RETURNING id, output_seq, parent_id, child_key, status, ", $returning
        )
    };
}

/// Whether a row (as `UPDATE ... RETURNING` sees it) is of an execution that closed or waits:
/// then its followers' next event describes the whole row.
macro_rules! whole_row {
    () => {
        "(status IN ('COMPLETED', 'FAILED', 'CANCELED', 'WAITING'))"
    };
}

macro_rules! sql_transition {
    (lock = $lock:literal, rows = $rows:literal, uuid = ($uuid_open:literal, $uuid_close:literal),
     json_as_text = $json_as_text:literal,
     infinity = ($inf:literal, $neg_inf:literal), object_agg = $object_agg:literal) => {
        use std::collections::{HashMap, HashSet};
        use std::sync::LazyLock;
        use std::sync::atomic::{AtomicU64, Ordering};

        use $crate::store::backend::packed::{self, Packed};
        use $crate::store::backend::plan;

        fn sql(template: &str) -> String {
            packed::dialect_sql(template, ROWS, SPELLING)
        }

        const INFINITY: (&str, &str) = ($inf, $neg_inf);

        /// How the statements read a row's UUIDs and JSON values.
        const SPELLING: packed::Spelling = packed::Spelling {
            uuid: ($uuid_open, $uuid_close),
            json_as_text: $json_as_text,
        };

        /// A JSON value of a row, carried as the dialect reads it.
        fn json<T: ?Sized>(value: &T) -> packed::JsonField<'_, T> {
            packed::JsonField::new(value, SPELLING)
        }

        /// The rows of array parameter `$1`, as `{rows}` expands in every statement.
        const ROWS: &str = $rows;

        /// The round's update; with row locks, its rows are first locked in id order (the lock
        /// order across transactions) by a materialized CTE the update joins, so each is locked,
        /// in order, before the update writes it (a row moved meanwhile is re-read: `Conflict`).
        fn locking(update: &str) -> String {
            if ROW_LOCKS {
                sql(&format!(
                    "WITH locked AS MATERIALIZED (SELECT id FROM executions \
                     WHERE id IN (SELECT {{u:id}} FROM {{rows}}) ORDER BY id{}) {}",
                    $lock,
                    update.replace("{locked}", " AND e.id IN (SELECT id FROM locked)")
                ))
            } else {
                sql(&update.replace("{locked}", ""))
            }
        }

        /// The round's update as a template (`{locked}` where a dialect with row locks says
        /// which rows it holds), and the same returning the whole row (and its labels) of each
        /// execution that closed or waits: for a commit whose followers on this server take it
        /// instead of reading.
        const UPDATE_TEMPLATE: &str = update_executions!("FALSE AS whole");
        const UPDATE_WHOLE_TEMPLATE: &str = update_executions!(concat!(
            "namespace, kind, agent_id, runtime, root_id, retry_of, request_id, next_seq, \
             input_tokens, output_tokens, cost_usd, tool_calls, created_at, started_at, closed_at, team_id, ",
            whole_row!(), " AS whole, CASE WHEN ", whole_row!(), " THEN input END AS input, \
             CASE WHEN ", whole_row!(), " THEN result END AS result, \
             CASE WHEN ", whole_row!(), " THEN failure END AS failure, \
             CASE WHEN ", whole_row!(), " THEN state END AS state, \
             CASE WHEN ", whole_row!(), " THEN ", start_event!("id"), " END AS start, \
             CASE WHEN ", whole_row!(), " THEN (SELECT ", $object_agg,
            "(key, value) FROM execution_labels WHERE execution_id = id) END AS labels_json"
        ));
        static UPDATE_EXECUTIONS: LazyLock<String> = LazyLock::new(|| locking(UPDATE_TEMPLATE));
        static UPDATE_EXECUTIONS_WHOLE: LazyLock<String> = LazyLock::new(|| locking(UPDATE_WHOLE_TEMPLATE));
        static INSERT_EXECUTIONS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO executions (id, namespace, kind, agent_id, runtime, status, input, parent_id, \
             root_id, retry_of, request_id, state, next_seq, output_seq, created_at, team_id, child_key, \
             result, failure, input_tokens, output_tokens, cost_usd, tool_calls, closed_at, started_at, \
             output_bytes) \
             SELECT {u:id}, value->>'namespace', value->>'kind', {u:agent_id}, value->>'runtime', \
             value->>'status', {j:input}, {u:parent_id}, {u:root_id}, {u:retry_of}, \
             value->>'request_id', {j:state}, CAST(value->>'next_seq' AS BIGINT), \
             CAST(value->>'output_seq' AS BIGINT), CAST(value->>'created_at' AS BIGINT), {u:team_id}, \
             value->>'child_key', {j:result}, {j:failure}, \
             CAST(value->>'input_tokens' AS BIGINT), CAST(value->>'output_tokens' AS BIGINT), \
             CAST(value->>'cost' AS DOUBLE PRECISION), CAST(value->>'tool_calls' AS BIGINT), \
             CAST(value->>'closed_at' AS BIGINT), \
             CASE WHEN value->>'status' = 'RUNNING' THEN CAST(value->>'created_at' AS BIGINT) END, \
             CAST(value->>'output_bytes' AS BIGINT) \
             FROM {rows} WHERE TRUE ON CONFLICT DO NOTHING RETURNING id, output_seq, parent_id",
        ));
        static FIND_REQUESTS: LazyLock<String> = LazyLock::new(|| sql(
            "SELECT id, namespace, request_id FROM executions WHERE (namespace, request_id) IN \
             (SELECT value->>'namespace', value->>'request_id' FROM {rows})",
        ));
        fn pack<R: serde::Serialize>(rows: impl IntoIterator<Item = R>) -> Result<Packed, StoreError> {
            let mut packed = Packed::default();
            for row in rows {
                packed.push(&row).map_err(|e| corrupt("a row to write", e))?;
            }
            Ok(packed)
        }

        /// A transition of the round, or a child execution one of them starts.
        struct Item<'a> {
            t: &'a Transition,
            /// Its index in the commit, for a transition of the commit; `None` for a child.
            slot: Option<usize>,
            outcome: Option<CommitOutcome>,
            /// Output seq of the last chunk after the row write, and the row's parent and key.
            output: Option<(i64, Option<Uuid>, Option<String>)>,
            /// Whether the commit hands on the whole row if it closes or waits.
            watched: bool,
            /// What an update made of the row, as its statement returned it.
            after: Option<$crate::store::RowAfter>,
        }

        /// Whether a transition reads or changes existing task rows, so that PostgreSQL must
        /// lock them before the execution row.
        ///
        /// Lock order, so that PostgreSQL never deadlocks: task rows before execution rows.
        /// `claim_tasks` and `record_progress` take them in that order, so a commit takes every
        /// task row it will read or change (sorted) before any execution row (sorted);
        /// otherwise a cancel (execution row, then the leased task) and a progress report (the
        /// task, then the execution row for the output seq) can each hold what the other waits
        /// for.
        fn touches_tasks(t: &Transition) -> bool {
            (matches!(t.row_write, RowWrite::Update { .. })
                && t.tasks.iter().any(|op| !matches!(op, TaskOp::Insert(_))))
                || has_task_fence(t)
        }

        /// Whether a transition's fences name task rows.
        fn has_task_fence(t: &Transition) -> bool {
            t.fences.iter().any(|f| {
                matches!(f, Fence::Lease { .. } | Fence::TaskAsKnown { .. } | Fence::Unclaimed { .. })
            })
        }

        /// Writes the transitions of a group commit that `order` names inside `tx`, round by
        /// round, each a fixed number of statements, setting their outcomes.
        async fn write_batch(
            tx: &mut CommitTx<'_>,
            transitions: &[Transition],
            watched: &[bool],
            order: &[usize],
            outcomes: &mut [Option<CommitOutcome>],
            afters: &mut [Option<$crate::store::RowAfter>],
        ) -> Result<(), StoreError> {
            for round in plan::rounds(transitions, order) {
                write_round(tx, transitions, watched, &round, outcomes, afters).await?;
            }
            Ok(())
        }

        /// Each transition's outcome (every one must have one) and what to notify of those that
        /// committed.
        fn settled(
            transitions: &[Transition],
            outcomes: Vec<Option<CommitOutcome>>,
            afters: Vec<Option<$crate::store::RowAfter>>,
        ) -> Result<(Vec<(CommitOutcome, Option<$crate::store::RowAfter>)>, Notes), StoreError> {
            let mut notes = Notes::default();
            for (t, outcome) in transitions.iter().zip(&outcomes) {
                if *outcome == Some(CommitOutcome::Committed) {
                    notes.execution(t.execution_id);
                    if t.tasks.iter().any(|op| matches!(op, TaskOp::Reschedule { .. }) || matches!(op, TaskOp::Insert(task) if task.lease.is_none())) {
                        notes.task_ready();
                    }
                    // Another server's sweeper hears of timers (leases and schedule deadlines it
                    // finds within its longest sleep); the note says when the earliest is due.
                    if !t.timers.is_empty()
                        && let Some(at) = t.earliest_deadline()
                    {
                        notes.deadline_added(at);
                    }
                }
            }
            let outcomes = outcomes
                .into_iter()
                .zip(afters)
                .map(|(o, after)| match o {
                    Some(o) => Ok((o, after)),
                    None => Err(StoreError::Corrupt("a transition got no outcome".into())),
                })
                .collect::<Result<_, _>>()?;
            Ok((outcomes, notes))
        }

        /// The items of a round's transitions, none with an outcome yet.
        fn round_items<'a>(transitions: &'a [Transition], watched: &[bool], round: &[usize]) -> Vec<Item<'a>> {
            round
                .iter()
                .map(|&i| Item {
                    t: &transitions[i],
                    slot: Some(i),
                    outcome: None,
                    output: None,
                    watched: watched.get(i).copied().unwrap_or(false),
                    after: None,
                })
                .collect()
        }

        /// Writes one round: transitions that touch disjoint rows.
        async fn write_round(
            tx: &mut CommitTx<'_>,
            transitions: &[Transition],
            watched: &[bool],
            round: &[usize],
            outcomes: &mut [Option<CommitOutcome>],
            afters: &mut [Option<$crate::store::RowAfter>],
        ) -> Result<(), StoreError> {
            let mut items = round_items(transitions, watched, round);
            let top = items.len();

            // Fences: the task rows, timers and agents they name, read (and locked) at once.
            check_fences(tx, &mut items).await?;
            if ROW_LOCKS && fits_one_statement(&items) {
                write_one_statement(tx, &mut items).await?;
            } else {
                write_statements(tx, &mut items, top).await?;
            }
            for it in items {
                if let (Some(slot), Some(outcome)) = (it.slot, it.outcome) {
                    outcomes[slot] = Some(outcome);
                    afters[slot] = it.after;
                }
            }
            Ok(())
        }

        /// The round's execution updates that passed their fences, as the update statement takes
        /// them, and the ids of those whose followers take the whole row if it closes or waits.
        fn update_rows(items: &[Item<'_>]) -> Result<(Vec<usize>, Packed, HashSet<Uuid>), StoreError> {
            let updates: Vec<usize> = (0..items.len())
                .filter(|&k| items[k].outcome.is_none() && matches!(items[k].t.row_write, RowWrite::Update { .. }))
                .collect();
            let rows = updates.iter().map(|&k| {
                let t = items[k].t;
                let RowWrite::Update { expected_next_seq } = t.row_write else { unreachable!() };
                packed::UpdateRow {
                    id: t.execution_id,
                    expected: expected_next_seq as i64,
                    next_seq: (expected_next_seq + t.events.len() as u64) as i64,
                    status: t.row.status.as_str(),
                    row: packed::RowFields::of(&t.row, INFINITY, SPELLING),
                    chunks: t.chunks.len() as i64,
                    bytes: crate::store::chunk_bytes(&t.chunks),
                }
            });
            // Whole rows only for watched executions that may close or wait (`whole_row!`; a
            // `PENDING` row keeps its stored status): one staying `RUNNING` hands its followers
            // chunks, and whole rows cost more (on SQLite ~170 µs a commit).
            let watched: HashSet<Uuid> = updates
                .iter()
                .filter(|&&k| items[k].watched && items[k].t.row.status != ExecutionStatus::Running)
                .map(|&k| items[k].t.execution_id)
                .collect();
            let rows = pack(rows)?;
            Ok((updates, rows, watched))
        }

        /// Sets the outcomes of the round's `updates` from the rows their statement returned:
        /// `Committed` with what the row became, or `Conflict` for a row that had moved on.
        fn settle_updates(items: &mut [Item<'_>], updates: &[usize], rows: &[DbRow], watched: &HashSet<Uuid>) -> Result<(), StoreError> {
            let mut moved = HashMap::new();
            for row in rows {
                let Some(id) = row.try_get::<Option<Uuid>, _>("id")? else { continue };
                let output_seq: i64 = row.try_get("output_seq")?;
                let status: String = row.try_get("status")?;
                let status = ExecutionStatus::parse(&status).ok_or_else(|| corrupt("execution status", &status))?;
                let record = if watched.contains(&id) && row.try_get::<bool, _>("whole")? {
                    whole_execution(row)
                } else {
                    None
                };
                let after = $crate::store::RowAfter { status, output_seq: output_seq as u64, record };
                moved.insert(id, ((output_seq, row.try_get("parent_id")?, row.try_get("child_key")?), after));
            }
            for &k in updates {
                let it = &mut items[k];
                match moved.remove(&it.t.execution_id) {
                    Some((output, after)) => {
                        it.output = Some(output);
                        it.after = Some(after);
                        it.outcome = Some(CommitOutcome::Committed);
                    }
                    None => it.outcome = Some(CommitOutcome::Conflict),
                }
            }
            Ok(())
        }

        /// Writes a round that passed its fences statement by statement: the execution rows
        /// moved forward by their versions, new rows level by level, then what the committed
        /// ones carry.
        async fn write_statements(tx: &mut CommitTx<'_>, items: &mut Vec<Item<'_>>, top: usize) -> Result<(), StoreError> {
            let (updates, rows, watched) = update_rows(items)?;
            if !updates.is_empty() {
                let statement = if watched.is_empty() { UPDATE_EXECUTIONS.as_str() } else { UPDATE_EXECUTIONS_WHOLE.as_str() };
                let returned = tx.rows(statement, rows).await?;
                settle_updates(items, &updates, &returned, &watched)?;
            }

            // New rows, level by level: a child is created once its parent's row is written.
            let mut level: Vec<usize> = (0..top)
                .filter(|&k| items[k].outcome.is_none())
                .collect();
            for k in 0..top {
                if items[k].outcome == Some(CommitOutcome::Committed) {
                    level.extend(add_children(items, k)?);
                }
            }
            while !level.is_empty() {
                insert_level(tx, items, &level).await?;
                let mut next = Vec::new();
                for &k in &level {
                    if items[k].outcome == Some(CommitOutcome::Committed) {
                        next.extend(add_children(items, k)?);
                    }
                }
                level = next;
            }

            let committed: Vec<&Item<'_>> = items.iter().filter(|it| it.outcome == Some(CommitOutcome::Committed)).collect();
            write_committed(&mut Writes::Tx(tx), &committed).await
        }

        /// Adds the children of committed item `k` to the round; returns their item indices.
        /// A child must pass its own fences (a child is a new row, so it has none in practice).
        fn add_children(items: &mut Vec<Item<'_>>, k: usize) -> Result<Vec<usize>, StoreError> {
            let parent = items[k].t;
            let mut added = Vec::new();
            for child in &parent.children {
                if !matches!(child.row_write, RowWrite::Create(_)) || !child.fences.is_empty() {
                    return Err(StoreError::Corrupt(format!(
                        "child execution {} of {} must be a new row without fences",
                        child.execution_id, parent.execution_id
                    )));
                }
                added.push(items.len());
                items.push(Item { t: child, slot: None, outcome: None, output: None, watched: false, after: None });
            }
            Ok(added)
        }

        /// Inserts the new execution rows of `level` in one statement and sets their outcomes:
        /// `Committed`, or `Duplicate` for a transition of the commit whose request id exists.
        async fn insert_level(
            tx: &mut CommitTx<'_>,
            items: &mut [Item<'_>],
            level: &[usize],
        ) -> Result<(), StoreError> {
            let mut inserted = HashSet::new();
            for row in tx.rows(INSERT_EXECUTIONS.as_str(), create_rows(items, level)?).await? {
                inserted.insert(row.try_get::<Uuid, _>("id")?);
            }
            settle_creates(tx, items, level, &inserted).await
        }

        /// The new execution rows of `level`, as the insert statement takes them.
        fn create_rows(items: &[Item<'_>], level: &[usize]) -> Result<Packed, StoreError> {
            pack(level.iter().map(|&k| {
                let t = items[k].t;
                let RowWrite::Create(new) = &t.row_write else { unreachable!("levels hold creates") };
                packed::CreateRow {
                    id: t.execution_id,
                    namespace: &new.namespace,
                    kind: new.kind.as_str(),
                    agent_id: new.agent_id,
                    runtime: &new.runtime,
                    status: t.row.status.as_str(),
                    input: json(&new.input),
                    parent_id: new.parent_id,
                    root_id: new.root_id,
                    retry_of: new.retry_of,
                    request_id: new.request_id.as_deref(),
                    next_seq: (1 + t.events.len()) as i64,
                    output_seq: t.chunks.len() as i64,
                    output_bytes: crate::store::chunk_bytes(&t.chunks),
                    created_at: t.now,
                    team_id: new.team_id,
                    child_key: new.child_key.as_deref(),
                    row: packed::RowFields::of(&t.row, INFINITY, SPELLING),
                }
            }))
        }

        /// Sets the outcomes of the new rows of `level` from the ids their insert wrote:
        /// `Committed`, or `Duplicate` for a transition of the commit whose request id exists.
        async fn settle_creates(
            tx: &mut CommitTx<'_>,
            items: &mut [Item<'_>],
            level: &[usize],
            inserted: &HashSet<Uuid>,
        ) -> Result<(), StoreError> {
            let refused: Vec<usize> = level.iter().copied().filter(|&k| !inserted.contains(&items[k].t.execution_id)).collect();
            let mut existing = HashMap::new();
            let requests: Vec<packed::RequestRow<'_>> = refused
                .iter()
                .filter_map(|&k| match &items[k].t.row_write {
                    RowWrite::Create(new) => new
                        .request_id
                        .as_deref()
                        .map(|request_id| packed::RequestRow { namespace: &new.namespace, request_id }),
                    RowWrite::Update { .. } => None,
                })
                .collect();
            if !requests.is_empty() {
                for row in tx.rows(FIND_REQUESTS.as_str(), pack(requests)?).await? {
                    let key: (String, String) = (row.try_get("namespace")?, row.try_get("request_id")?);
                    existing.insert(key, row.try_get::<Uuid, _>("id")?);
                }
            }
            for &k in level {
                let it = &mut items[k];
                if inserted.contains(&it.t.execution_id) {
                    let RowWrite::Create(new) = &it.t.row_write else { unreachable!() };
                    it.output = Some((it.t.chunks.len() as i64, new.parent_id, new.child_key.clone()));
                    it.outcome = Some(CommitOutcome::Committed);
                    continue;
                }
                let RowWrite::Create(new) = &it.t.row_write else { unreachable!() };
                let duplicate = new
                    .request_id
                    .as_ref()
                    .and_then(|r| existing.get(&(new.namespace.clone(), r.clone())));
                match (duplicate, it.slot) {
                    (Some(&id), Some(_)) => it.outcome = Some(CommitOutcome::Duplicate(id)),
                    // Children are new rows with fresh ids: anything but Committed is a bug, and
                    // failing the whole transaction keeps parent and children together.
                    (Some(&id), None) => {
                        return Err(StoreError::Corrupt(format!(
                            "child execution {} could not be created: {:?}",
                            it.t.execution_id,
                            CommitOutcome::Duplicate(id)
                        )));
                    }
                    (None, _) => return Err(StoreError::AlreadyExists(format!("execution {}", it.t.execution_id))),
                }
            }
            Ok(())
        }
    };
}
