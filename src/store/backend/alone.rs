//! A group commit written as one statement alone, outside any transaction, where the dialect
//! runs data-modifying CTEs (PostgreSQL): the round's one statement (`single.rs`) with its
//! fences checked inside it. The transaction around that statement cost three round trips of
//! its own (BEGIN, the fence read, COMMIT), each a message PostgreSQL's backend parses and
//! answers on two busy cores: a `pgbench` of one report's writes at sixteen clients committed
//! 3171-3392/s as BEGIN, fence read, statement, COMMIT and 5957-6055/s as the statement alone.
//! In the benchmark's workloads, where most of PostgreSQL's time is the statement's own work, it
//! measured less: PostgreSQL's CPU per execution ~10% lower (the median of six alternated pairs of
//! W1 and of W3 runs; README).
//!
//! One statement is atomic by itself, and what the transaction ordered the statement orders
//! through what each part reads:
//!
//! - `tl` locks the task rows of every execution whose fences name a task or whose transition
//!   changes one, in (execution, activity) order, and `bad` checks the fences against them (a
//!   locked row is its newest version) and against the active agents; both are materialized,
//!   and every part that locks or writes an execution row waits for them first (a one-time
//!   `(SELECT count(*) FROM tl) >= 0` reads all of `tl` before anything else of that part),
//!   so task rows are locked before execution rows, the lock order of claims and progress.
//! - `locked` locks the updated execution rows in id order, their newest versions; the output
//!   room a remembered lease was checked against (`Fence::TaskAsKnown`) is compared with those
//!   (`roomless`), and the update moves only the rows `kept`.
//! - A transition fenced writes nothing and is `Fenced`; one whose row moved on is `Conflict`;
//!   a start refused for its request id is `Duplicate`, looked up after the statement (the row
//!   that refused it is committed).
//! - A transition of a child execution that appends output also copies it to its parent's, which
//!   a statement that may move the parent's row too cannot do; the statement leaves it
//!   (`deferred`), and it goes through a transaction after, as a batch that does not fit here.
//!
//! A batch goes this way when it is one round that [`fits_one_statement`] with no timer fences
//! (a fired timer's, which must lock its row); any other goes into a transaction whole. Expands
//! after `sql_single!`.

macro_rules! sql_alone {
    () => {
        /// Which statement `shape_key` names: the round's, with its fences (see `shaped`).
        const ALONE: usize = 1;

        /// The fences of a batch, as the statement checks them: one row per fence, and a `lock`
        /// row for an execution whose transition changes task rows without naming one.
        fn fence_rows<'a>(items: &[Item<'a>]) -> Vec<packed::FenceRow<'a>> {
            let mut rows = Vec::new();
            for t in items.iter().map(|it| it.t) {
                let id = t.execution_id;
                if touches_tasks(t) && !has_task_fence(t) {
                    rows.push(packed::FenceRow { id, kind: "lock", ..Default::default() });
                }
                for fence in &t.fences {
                    rows.push(match fence {
                        Fence::Lease { activity_id, attempt, lease_token } => packed::FenceRow {
                            id,
                            kind: "lease",
                            key: Some(activity_id),
                            attempt: Some(i64::from(*attempt)),
                            token: Some(lease_token),
                            ..Default::default()
                        },
                        Fence::TaskAsKnown { activity_id, chunks_sent, workspace, output_bytes_at_most } => packed::FenceRow {
                            id,
                            kind: "known",
                            key: Some(activity_id),
                            // Past what a row holds, a count that no row matches.
                            chunks: Some(i64::try_from(*chunks_sent).unwrap_or(-1)),
                            workspace: workspace.as_deref(),
                            at_most: Some(i64::try_from(*output_bytes_at_most).unwrap_or(i64::MAX)),
                            ..Default::default()
                        },
                        Fence::Unclaimed { activity_id, attempt } => packed::FenceRow {
                            id,
                            kind: "unclaimed",
                            key: Some(activity_id),
                            attempt: Some(i64::from(*attempt)),
                            ..Default::default()
                        },
                        Fence::Agent { agent_id, version } => packed::FenceRow {
                            id,
                            kind: "agent",
                            agent: Some(*agent_id),
                            version: Some(i64::try_from(*version).unwrap_or(-1)),
                            ..Default::default()
                        },
                        Fence::Timer { .. } => unreachable!("a batch with timer fences is not written alone"),
                    });
                }
            }
            rows
        }

        /// The statement of a batch written alone (see the module comment): the fences (`$1`),
        /// the updates (`$2`, `UPDATE_TEMPLATE` or `UPDATE_WHOLE_TEMPLATE`), the inserts and
        /// the gathered writes, as the round's one statement has them. It returns the update's
        /// rows beside the ids inserted (`created`), fenced (`fenced`) and left (`deferred`).
        fn compose_alone(update: Option<&str>, insert: bool, writes: &[&'static str]) -> String {
            let mut ctes = vec![
                sql("fr AS (SELECT {u:id} AS id, value->>'kind' AS kind, value->>'key' AS key, \
                     CAST(value->>'attempt' AS BIGINT) AS attempt, value->>'token' AS token, \
                     CAST(value->>'chunks' AS BIGINT) AS chunks, value->>'workspace' AS workspace, \
                     CAST(value->>'at_most' AS BIGINT) AS at_most, {u:agent} AS agent, \
                     CAST(value->>'version' AS BIGINT) AS version FROM {rows})"),
                "tl AS MATERIALIZED (SELECT execution_id, activity_id, attempt, status, lease_token, chunks_sent, \
                 workspace FROM tasks WHERE execution_id = ANY (ARRAY(SELECT id FROM fr)) \
                 ORDER BY execution_id, activity_id FOR UPDATE)"
                    .to_string(),
                "bad AS MATERIALIZED (SELECT DISTINCT fr.id FROM fr WHERE (SELECT count(*) FROM tl) >= 0 AND NOT CASE fr.kind \
                 WHEN 'lease' THEN EXISTS (SELECT 1 FROM tl WHERE tl.execution_id = fr.id AND tl.activity_id = fr.key \
                   AND tl.attempt = fr.attempt AND tl.status = 'leased' AND tl.lease_token = fr.token) \
                 WHEN 'known' THEN EXISTS (SELECT 1 FROM tl WHERE tl.execution_id = fr.id AND tl.activity_id = fr.key \
                   AND tl.chunks_sent = fr.chunks AND tl.workspace IS NOT DISTINCT FROM fr.workspace) \
                 WHEN 'unclaimed' THEN EXISTS (SELECT 1 FROM tl WHERE tl.execution_id = fr.id AND tl.activity_id = fr.key \
                   AND tl.attempt = fr.attempt AND tl.status = 'ready') \
                 WHEN 'agent' THEN (SELECT a.version FROM agents AS a WHERE a.id = fr.agent AND a.status = 'active') \
                   IS NOT DISTINCT FROM fr.version \
                 ELSE TRUE END)"
                    .to_string(),
            ];
            let mut n = 1;
            if let Some(update) = update {
                n += 1;
                // The updates' rows, parsed once: a generic plan casts a parameter to JSONB
                // wherever it is read, and three parts read these.
                ctes.push(format!("ur AS MATERIALIZED (SELECT value FROM {})", rows_at(n)));
                let rows = "(SELECT value FROM ur) AS j(value)";
                ctes.push(format!(
                    "locked AS MATERIALIZED (SELECT id, output_bytes, parent_id FROM executions \
                     WHERE id = ANY (ARRAY(SELECT {} FROM {rows})) AND (SELECT count(*) FROM tl) >= 0 \
                     AND id NOT IN (SELECT id FROM bad) ORDER BY id FOR UPDATE)",
                    sql("{u:id}")
                ));
                ctes.push(
                    "roomless AS (SELECT l.id FROM locked AS l JOIN fr ON fr.id = l.id \
                     WHERE fr.kind = 'known' AND l.output_bytes > fr.at_most)"
                        .to_string(),
                );
                ctes.push(format!(
                    "kept AS (SELECT id FROM locked WHERE id NOT IN (SELECT id FROM roomless) AND (parent_id IS NULL \
                     OR id NOT IN (SELECT {} FROM {rows} WHERE CAST(value->>'chunks' AS BIGINT) > 0)))",
                    sql("{u:id}")
                ));
                let update = sql(&update.replace("{locked}", " AND e.id IN (SELECT id FROM kept)"));
                ctes.push(format!("upd AS ({})", update.replace(ROWS, rows)));
            }
            if insert {
                n += 1;
                let refused = format!("WHERE {} NOT IN (SELECT id FROM bad) ON CONFLICT", sql("{u:id}"));
                let statement = INSERT_EXECUTIONS.replace(ROWS, &rows_at(n)).replacen("WHERE TRUE ON CONFLICT", &refused, 1);
                ctes.push(format!("ins AS ({statement})"));
            }
            let mut written = Vec::new();
            if update.is_some() {
                written.push("SELECT id, output_seq, parent_id FROM upd");
            }
            if insert {
                written.push("SELECT id, output_seq, parent_id FROM ins");
            }
            ctes.push(format!("done AS ({})", written.join(" UNION ALL ")));
            ctes.extend(gathered_ctes(writes, n));

            let list = |query: &str| format!("(SELECT string_agg(CAST(id AS TEXT), ',') FROM ({query}) AS l)");
            let created = if insert { list("SELECT id FROM ins") } else { "CAST(NULL AS TEXT)".to_string() };
            let (fenced, deferred) = if update.is_some() {
                (
                    list("SELECT id FROM bad UNION SELECT id FROM roomless"),
                    list("SELECT id FROM locked WHERE id NOT IN (SELECT id FROM kept) AND id NOT IN (SELECT id FROM roomless)"),
                )
            } else {
                (list("SELECT id FROM bad"), "CAST(NULL AS TEXT)".to_string())
            };
            let x = format!("(SELECT {created} AS created, {fenced} AS fenced, {deferred} AS deferred) AS x");
            let result = if update.is_some() {
                format!("SELECT u.*, x.* FROM {x} LEFT JOIN upd AS u ON TRUE")
            } else {
                format!("SELECT x.* FROM {x}")
            };
            format!("WITH {} {result}", ctes.join(", "))
        }

        /// Writes a group commit as one statement alone where it can (see the module comment),
        /// setting the outcomes of the transitions `order` names; returns those it left for a
        /// transaction, or `None` (having written nothing) where the batch does not fit.
        async fn write_alone(
            conn: &mut sqlx::pool::PoolConnection<Db>,
            counts: Counts<'_>,
            transitions: &[Transition],
            watched: &[bool],
            order: &[usize],
            outcomes: &mut [Option<CommitOutcome>],
            afters: &mut [Option<$crate::store::RowAfter>],
        ) -> Result<Option<Vec<usize>>, StoreError> {
            if !ROW_LOCKS || transitions.iter().any(|t| t.fences.iter().any(|f| matches!(f, Fence::Timer { .. }))) {
                return Ok(None);
            }
            let mut rounds = plan::rounds(transitions, order);
            let (Some(round), true) = (rounds.pop(), rounds.is_empty()) else { return Ok(None) };
            let mut items = round_items(transitions, watched, &round);
            if !fits_one_statement(&items) {
                return Ok(None);
            }
            let fences = pack(fence_rows(&items))?;
            let Some(mut gathered) = Gathered::of(&items).await? else { return Ok(None) };
            if !(fences.is_empty() || fences.is_one()) {
                return Ok(None);
            }

            let (insert, parts) = (!gathered.creates.is_empty(), gathered.parts());
            let (update, update_kind) = match (gathered.updates.is_empty(), gathered.whole.is_empty()) {
                (true, _) => (None, 0),
                (false, true) => (Some(UPDATE_TEMPLATE), 1),
                (false, false) => (Some(UPDATE_WHOLE_TEMPLATE), 2),
            };
            let key = shape_key(ALONE, update_kind, insert, &parts);
            let statement = shaped(key, || compose_alone(update, insert, &parts));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(fences.into_arrays().next().unwrap_or_else(|| "[]".to_string()));
            for array in gathered.take_arrays() {
                query = query.bind(array);
            }
            let mut tx = CommitTx::alone(conn, counts);
            tx.count_statement();
            let returned = query.fetch_all(tx.conn().await?).await?;

            let fenced = listed_ids(&returned, "fenced")?;
            let deferred = listed_ids(&returned, "deferred")?;
            for it in items.iter_mut() {
                if fenced.contains(&it.t.execution_id) {
                    it.outcome = Some(CommitOutcome::Fenced);
                }
            }
            let open = |k: &usize| items[*k].outcome.is_none() && !deferred.contains(&items[*k].t.execution_id);
            let updates: Vec<usize> = gathered.updates.iter().copied().filter(open).collect();
            let creates: Vec<usize> = gathered.creates.iter().copied().filter(open).collect();
            if update.is_some() {
                settle_updates(&mut items, &updates, &returned, &gathered.whole)?;
            }
            settle_creates(&mut tx, &mut items, &creates, &listed_ids(&returned, "created")?).await?;

            let mut left = Vec::new();
            for it in items {
                let Some(slot) = it.slot else { continue };
                match it.outcome {
                    Some(outcome) => {
                        outcomes[slot] = Some(outcome);
                        afters[slot] = it.after;
                    }
                    None => left.push(slot),
                }
            }
            Ok(Some(left))
        }
    };
}
