//! A round of a group commit in one statement, where the dialect runs data-modifying CTEs
//! (PostgreSQL): the execution rows moved forward by their versions and the new rows inserted,
//! and everything the transitions carry (labels, history, output, task and timer rows) written
//! for those of them the row writes let through, each by the same statement `sql_committed!`
//! runs alone, here a CTE that takes its rows from its own array parameter filtered to the ids
//! the row writes returned. One round trip where the statement-by-statement path takes one per
//! table and kind of change: a `pgbench` of a W3 turn's writes on this machine went from 2.3 to
//! 1.4 ms at one client, and from 1100-1215 to 1575-1641 commits/s at sixteen.
//!
//! The statements of one query all see the database as it was when it began and none sees
//! another's writes, so a round goes this way only where that cannot matter
//! ([`fits_one_statement`]): no child executions (a child's row needs its parent's), no objects,
//! no parked task (its checkpoint seq reads the row the same commit moves), no inbox rows (they
//! belong to other executions), and no task or timer row named twice. A chunk's seq counts back
//! from where its execution's output ends once written, which the row write returns. A child
//! execution's output (copied to its parent's, whose row may move in the same commit) is
//! written after the statement, in the same transaction, once the row says it has a parent;
//! so are the lookups of a start refused for its request id. The fences are read (and task rows
//! locked) before, as on the other path. `sql_single!` expands after `sql_committed!` (its
//! statements, and the dialect's `ROWS`, are `sql_transition!`'s).

macro_rules! sql_single {
    () => {
        /// Whether the writes of a round's transitions that passed their fences are independent
        /// of each other, so that they can go into one statement (see the module comment).
        fn fits_one_statement(items: &[Item<'_>]) -> bool {
            let mut every: HashSet<(bool, Uuid)> = HashSet::new();
            let mut some: HashSet<(bool, Uuid)> = HashSet::new();
            let mut named: HashSet<(bool, Uuid, String)> = HashSet::new();
            let mut names = |tasks: bool, id: Uuid, row: Option<String>| match row {
                None => !some.contains(&(tasks, id)) && every.insert((tasks, id)),
                Some(row) => !every.contains(&(tasks, id)) && named.insert((tasks, id, row)) && {
                    some.insert((tasks, id));
                    true
                },
            };
            let mut any = false;
            for t in items.iter().filter(|it| it.outcome.is_none()).map(|it| it.t) {
                any = true;
                if !t.children.is_empty() || !t.objects.is_empty() {
                    return false;
                }
                for op in &t.tasks {
                    if matches!(op, TaskOp::Park { .. })
                        || !names(true, t.execution_id, plan::task_row(op).map(str::to_owned))
                    {
                        return false;
                    }
                }
                for op in &t.timers {
                    if matches!(op, TimerOp::Inbox { .. }) || !names(false, t.execution_id, plan::timer_row(op)) {
                        return false;
                    }
                }
            }
            any
        }

        /// The round's statements, by their shape (which parts it has), as composed once.
        static SHAPES: LazyLock<std::sync::Mutex<HashMap<Vec<usize>, std::sync::Arc<str>>>> =
            LazyLock::new(Default::default);

        /// The most shapes kept; past it, a statement is composed for each commit.
        const MAX_SHAPES: usize = 256;

        /// The dialect's rows of array parameter `$n`.
        fn rows_at(n: usize) -> String {
            ROWS.replace("$1", &format!("${n}"))
        }

        /// The round's one statement: the execution update (`upd`, of parameter 1) and insert
        /// (`ins`, of the next), the ids they wrote (`done`), then each gathered write as a CTE of
        /// its own parameter's rows of written executions; it returns the update's rows, with
        /// the inserted ids (`created`) beside them.
        fn compose(update: Option<&str>, insert: bool, writes: &[&'static str]) -> String {
            let mut ctes = Vec::new();
            let mut n = 0;
            if let Some(update) = update {
                n += 1;
                ctes.push(format!("upd AS ({})", update.replace(ROWS, &rows_at(n))));
            }
            if insert {
                n += 1;
                ctes.push(format!("ins AS ({})", INSERT_EXECUTIONS.replace(ROWS, &rows_at(n))));
            }
            let written = match (update.is_some(), insert) {
                (true, true) => "SELECT id, output_seq, parent_id FROM upd UNION ALL SELECT id, output_seq, parent_id FROM ins",
                (true, false) => "SELECT id, output_seq, parent_id FROM upd",
                (false, _) => "SELECT id, output_seq, parent_id FROM ins",
            };
            ctes.push(format!("done AS ({written})"));
            ctes.extend(gathered_ctes(writes, n));
            let result = match (update.is_some(), insert) {
                (true, true) => "SELECT u.*, i.created FROM (SELECT string_agg(CAST(id AS TEXT), ',') AS created FROM ins) AS i \
                                 LEFT JOIN upd AS u ON TRUE",
                (true, false) => "SELECT * FROM upd",
                (false, _) => "SELECT string_agg(CAST(id AS TEXT), ',') AS created FROM ins",
            };
            format!("WITH {} {result}", ctes.join(", "))
        }

        /// The CTEs of gathered writes (`w0`, `w1`, ...), each over its own array parameter
        /// (`$n + 1`, ...) filtered to the executions of `done`.
        fn gathered_ctes(writes: &[&'static str], mut n: usize) -> Vec<String> {
            let id = sql("{u:id}").replace("value", "j.value");
            let mut ctes = Vec::new();
            for (i, statement) in writes.iter().enumerate() {
                n += 1;
                // A chunk's seq counts back from the end of its execution's written output; a
                // child's output waits for the statement (its parent's copies with it).
                let (statement, only) = if std::ptr::eq(*statement, INSERT_CHUNKS.as_str()) {
                    let seq = "CAST(value->>'seq' AS BIGINT)";
                    let after = sql("(SELECT d.output_seq FROM done AS d WHERE d.id = {u:id}) + CAST(value->>'seq' AS BIGINT)");
                    (statement.replacen(seq, &after, 1), " WHERE parent_id IS NULL")
                } else {
                    (statement.to_string(), "")
                };
                let rows = format!("(SELECT j.value FROM {} WHERE {id} IN (SELECT id FROM done{only})) AS j(value)", rows_at(n));
                ctes.push(format!("w{i} AS ({})", statement.replace(ROWS, &rows)));
            }
            ctes
        }

        /// The ids the first of a statement's `rows` lists in `column`, as comma-separated text
        /// (`string_agg`).
        fn listed_ids(rows: &[DbRow], column: &str) -> Result<HashSet<Uuid>, StoreError> {
            let text: Option<String> = match rows.first() {
                Some(row) => row.try_get(column)?,
                None => None,
            };
            text.unwrap_or_default()
                .split(',')
                .filter(|id| !id.is_empty())
                .map(|id| Uuid::parse_str(id).map_err(|e| corrupt("an execution id a statement returned", e)))
                .collect()
        }

        /// A round's writes as its one statement takes them: the updates and creates still
        /// without an outcome (indices into the round), their rows, and everything they carry,
        /// gathered as if each were written (the statement keeps what its row write lets through).
        struct Gathered {
            updates: Vec<usize>,
            update_rows: Packed,
            /// The updated executions whose followers take the whole row if it closes or waits.
            whole: HashSet<Uuid>,
            creates: Vec<usize>,
            create_rows: Packed,
            writes: Vec<(&'static str, Packed)>,
        }

        impl Gathered {
            /// The round's writes, or `None` for a batch past a parameter's byte budget (which
            /// goes one statement per write).
            async fn of(items: &[Item<'_>]) -> Result<Option<Gathered>, StoreError> {
                let (updates, update_rows, whole) = update_rows(items)?;
                let creates: Vec<usize> = (0..items.len())
                    .filter(|&k| items[k].outcome.is_none() && matches!(items[k].t.row_write, RowWrite::Create(_)))
                    .collect();
                let create_rows = create_rows(items, &creates)?;
                let mut gathered = Writes::Gather(Vec::new());
                let pending: Vec<&Item<'_>> = updates.iter().chain(&creates).map(|&k| &items[k]).collect();
                write_committed(&mut gathered, &pending).await?;
                let Writes::Gather(writes) = gathered else { unreachable!("gathered above") };
                let fits = |rows: &Packed| rows.is_empty() || rows.is_one();
                if !fits(&update_rows) || !fits(&create_rows) || !writes.iter().all(|(_, rows)| fits(rows)) {
                    return Ok(None);
                }
                Ok(Some(Gathered { updates, update_rows, whole, creates, create_rows, writes }))
            }

            /// The statements of the gathered writes, in order: with the row writes, the shape.
            fn parts(&self) -> Vec<&'static str> {
                self.writes.iter().map(|(statement, _)| *statement).collect()
            }

            /// The rows' arrays, taken out, in the order the statement numbers its parameters
            /// after any of its own: updates, creates, then each gathered write.
            fn take_arrays(&mut self) -> impl Iterator<Item = String> + use<> {
                let writes = std::mem::take(&mut self.writes).into_iter().map(|(_, rows)| rows);
                [std::mem::take(&mut self.update_rows), std::mem::take(&mut self.create_rows)]
                    .into_iter()
                    .chain(writes)
                    .flat_map(Packed::into_arrays)
            }
        }

        /// The statement of a shape (`key`: which parts it has), composed once (see [`SHAPES`]).
        fn shaped(key: Vec<usize>, compose: impl FnOnce() -> String) -> std::sync::Arc<str> {
            let mut shapes = SHAPES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(statement) = shapes.get(&key) {
                return statement.clone();
            }
            let statement: std::sync::Arc<str> = compose().into();
            if shapes.len() < MAX_SHAPES {
                shapes.insert(key, statement.clone());
            }
            statement
        }

        /// A shape's key: which statement (`kind`), its row writes and its gathered writes.
        fn shape_key(kind: usize, update: usize, insert: bool, writes: &[&'static str]) -> Vec<usize> {
            [kind, update, usize::from(insert)]
                .into_iter()
                .chain(writes.iter().map(|w| w.as_ptr() as usize))
                .collect()
        }

        /// Writes a round that [`fits_one_statement`] in one statement (falling back to one
        /// statement per write for a batch past a parameter's byte budget), then what must
        /// follow it: refused starts' request ids, and children's output on their parents'.
        async fn write_one_statement(tx: &mut CommitTx<'_>, items: &mut Vec<Item<'_>>) -> Result<(), StoreError> {
            let Some(mut gathered) = Gathered::of(items).await? else {
                let top = items.len();
                return write_statements(tx, items, top).await;
            };
            let update = (!gathered.updates.is_empty()).then(|| {
                if gathered.whole.is_empty() { UPDATE_EXECUTIONS.as_str() } else { UPDATE_EXECUTIONS_WHOLE.as_str() }
            });
            let (insert, parts) = (!gathered.creates.is_empty(), gathered.parts());
            let key = shape_key(0, update.map_or(0, |u| u.as_ptr() as usize), insert, &parts);
            let statement = shaped(key, || compose(update, insert, &parts));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for array in gathered.take_arrays() {
                query = query.bind(array);
            }
            tx.count_statement();
            let returned = query.fetch_all(tx.conn().await?).await?;

            if update.is_some() {
                settle_updates(items, &gathered.updates, &returned, &gathered.whole)?;
            }
            if insert {
                let created = listed_ids(&returned, "created")?;
                settle_creates(tx, items, &gathered.creates, &created).await?;
            }
            let children: Vec<&Item<'_>> = items
                .iter()
                .filter(|it| it.outcome == Some(CommitOutcome::Committed) && !it.t.chunks.is_empty())
                .filter(|it| it.output.as_ref().is_some_and(|(_, parent, _)| parent.is_some()))
                .collect();
            if !children.is_empty() {
                write_committed_chunks(&mut Writes::Tx(tx), &children).await?;
            }
            Ok(())
        }
    };
}
