//! The fences of a round of a group commit, checked inside its transaction: the task rows
//! (read, and locked in a consistent order where the dialect has row locks), timers and agents
//! that the round's transitions name, each read for the whole round in one statement; a
//! transition whose fence no longer holds is marked `Fenced` and writes nothing. `sql_fences!`
//! expands into the dialect module beside `sql_transition!`, whose `write_round` calls
//! `check_fences` first.

macro_rules! sql_fences {
    (lock = $lock:literal) => {
        static READ_TASKS: LazyLock<String> = LazyLock::new(|| sql(concat!(
            "SELECT execution_id, activity_id, attempt, status, lease_token, chunks_sent, workspace, \
             (SELECT e.output_bytes FROM executions e WHERE e.id = tasks.execution_id) AS output_bytes FROM tasks \
             WHERE execution_id IN (SELECT {u:id} FROM {rows}) ORDER BY execution_id, activity_id",
            $lock
        )));
        static READ_TIMERS: LazyLock<String> = LazyLock::new(|| sql(concat!(
            "SELECT execution_id, timer_id FROM timers \
             WHERE (execution_id, timer_id) IN (SELECT {u:id}, value->>'key' FROM {rows}) \
             ORDER BY execution_id, timer_id",
            $lock
        )));
        /// The active agents (and their versions) that starts were made from; no lock: a start
        /// made from the version read is what it would have been a moment earlier.
        static READ_AGENTS: LazyLock<String> = LazyLock::new(|| sql(
            "SELECT id, version FROM agents WHERE id IN (SELECT {u:id} FROM {rows}) AND status = 'active'",
        ));

        /// What a task fence compares, as the round read it.
        struct FencedTask {
            attempt: i64,
            status: String,
            lease_token: Option<String>,
            chunks_sent: i64,
            workspace: Option<String>,
            /// The execution's stored output bytes.
            output_bytes: i64,
        }

        /// Marks `Fenced` the items of a round whose fences no longer hold.
        async fn check_fences(tx: &mut CommitTx<'_>, items: &mut [Item<'_>]) -> Result<(), StoreError> {
            let task_ids: Vec<Uuid> = {
                let mut seen = HashSet::new();
                items
                    .iter()
                    .filter(|it| has_task_fence(it.t) || (ROW_LOCKS && touches_tasks(it.t)))
                    .map(|it| it.t.execution_id)
                    .filter(|id| seen.insert(*id))
                    .collect()
            };
            let mut tasks: HashMap<(Uuid, String), FencedTask> = HashMap::new();
            if !task_ids.is_empty() {
                let rows = tx.rows(READ_TASKS.as_str(), pack(task_ids.iter().map(|&id| packed::IdRow { id }))?).await?;
                for row in rows {
                    tasks.insert(
                        (row.try_get("execution_id")?, row.try_get("activity_id")?),
                        FencedTask {
                            attempt: row.try_get("attempt")?,
                            status: row.try_get("status")?,
                            lease_token: row.try_get("lease_token")?,
                            chunks_sent: row.try_get("chunks_sent")?,
                            workspace: row.try_get("workspace")?,
                            output_bytes: row.try_get::<Option<i64>, _>("output_bytes")?.unwrap_or(0),
                        },
                    );
                }
            }
            let timer_fences: Vec<packed::KeyRow<'_>> = items
                .iter()
                .flat_map(|it| it.t.fences.iter().map(move |f| (it.t.execution_id, f)))
                .filter_map(|(id, f)| match f {
                    Fence::Timer { timer_id } => Some(packed::KeyRow { id, key: timer_id }),
                    _ => None,
                })
                .collect();
            let mut timers: HashSet<(Uuid, String)> = HashSet::new();
            if !timer_fences.is_empty() {
                for row in tx.rows(READ_TIMERS.as_str(), pack(timer_fences)?).await? {
                    timers.insert((row.try_get("execution_id")?, row.try_get("timer_id")?));
                }
            }
            let agent_fences: Vec<packed::IdRow> = {
                let mut seen = HashSet::new();
                items
                    .iter()
                    .flat_map(|it| it.t.fences.iter())
                    .filter_map(|f| match f {
                        Fence::Agent { agent_id, .. } => Some(*agent_id),
                        _ => None,
                    })
                    .filter(|id| seen.insert(*id))
                    .map(|id| packed::IdRow { id })
                    .collect()
            };
            let mut agents: HashMap<Uuid, i64> = HashMap::new();
            if !agent_fences.is_empty() {
                for row in tx.rows(READ_AGENTS.as_str(), pack(agent_fences)?).await? {
                    agents.insert(row.try_get("id")?, row.try_get("version")?);
                }
            }
            let holds = |t: &Transition| {
                t.fences.iter().all(|f| match f {
                    Fence::Lease { activity_id, attempt, lease_token } => tasks
                        .get(&(t.execution_id, activity_id.clone()))
                        .is_some_and(|task| {
                            task.attempt == i64::from(*attempt)
                                && task.status == "leased"
                                && task.lease_token.as_deref() == Some(lease_token)
                        }),
                    Fence::TaskAsKnown { activity_id, chunks_sent, workspace, output_bytes_at_most } => tasks
                        .get(&(t.execution_id, activity_id.clone()))
                        .is_some_and(|task| {
                            u64::try_from(task.chunks_sent).ok() == Some(*chunks_sent)
                                && task.workspace == *workspace
                                && u64::try_from(task.output_bytes).is_ok_and(|b| b <= *output_bytes_at_most)
                        }),
                    Fence::Unclaimed { activity_id, attempt } => tasks
                        .get(&(t.execution_id, activity_id.clone()))
                        .is_some_and(|task| task.attempt == i64::from(*attempt) && task.status == "ready"),
                    Fence::Timer { timer_id } => timers.contains(&(t.execution_id, timer_id.clone())),
                    Fence::Agent { agent_id, version } => {
                        agents.get(agent_id).is_some_and(|v| u64::try_from(*v).ok() == Some(*version))
                    }
                })
            };
            for it in items.iter_mut() {
                if !holds(it.t) {
                    it.outcome = Some(CommitOutcome::Fenced);
                }
            }
            Ok(())
        }
    };
}
