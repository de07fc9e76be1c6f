//! [`Catalog`](crate::store::Catalog) for both dialects: agents, and teams with their members.

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

macro_rules! sql_catalog {
    ($store:ident) => {
        const _: () = {
            use $crate::domain::{Agent, AgentStatus, Team, TeamConfig, TeamMember, TeamStrategy};
            use $crate::store::{AgentKey, Catalog};

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
            }

            #[async_trait]
            impl Catalog for $store {
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
                    query.push(" ORDER BY id LIMIT CAST(").push_bind(i64::from(limit)).push(" AS BIGINT)");
                    let rows = query.build().fetch_all(&self.read).await?;
                    rows.iter().map(agent_from_row).collect()
                }

                async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
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
                    let mut tx = self.begin_write().await?;
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
                    query.push(" ORDER BY id LIMIT CAST(").push_bind(i64::from(limit)).push(" AS BIGINT)");
                    let rows = query.build().fetch_all(&self.read).await?;
                    let mut teams = rows.iter().map(team_from_row).collect::<Result<Vec<_>, _>>()?;
                    self.load_members(&mut teams).await?;
                    Ok(teams)
                }
            }
        };
    };
}
