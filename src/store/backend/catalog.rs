//! [`Catalog`](crate::store::Catalog) for both dialects: agents, and teams with their members.

/// The columns of `agents` that `Agent` reads.
macro_rules! agent_columns {
    () => {
        "id, namespace, name, runtime, model_id, configuration, status, created_at, updated_at"
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
                })
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
                         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
                    let result = sqlx::query(
                        "UPDATE agents SET runtime = $2, model_id = $3, configuration = $4, status = $5, \
                         updated_at = $6 WHERE id = $1",
                    )
                    .bind(agent.id)
                    .bind(&agent.runtime)
                    .bind(&agent.model_id)
                    .bind(Json(&agent.configuration))
                    .bind(agent.status.as_str())
                    .bind(agent.updated_at)
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

                async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
                    let mut tx = self.write.begin().await?;
                    let inserted = sqlx::query(
                        "INSERT INTO teams (id, namespace, name, strategy, configuration, status, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(team.id)
                    .bind(&team.namespace)
                    .bind(&team.name)
                    .bind(team.strategy.as_str())
                    .bind(Json(&team.config))
                    .bind(team.status.as_str())
                    .bind(team.created_at)
                    .bind(team.updated_at)
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
                    sqlx::query(
                        "UPDATE teams SET strategy = $2, configuration = $3, status = $4, updated_at = $5 WHERE id = $1",
                    )
                    .bind(team.id)
                    .bind(team.strategy.as_str())
                    .bind(Json(&team.config))
                    .bind(team.status.as_str())
                    .bind(team.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM team_members WHERE team_id = $1").bind(team.id).execute(&mut *tx).await?;
                    write_members(&mut tx, team).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_team(&self, namespace: &str, key: &AgentKey) -> Result<Option<Team>, StoreError> {
                    let row = match key {
                        AgentKey::Id(id) => sqlx::query(
                            "SELECT id, namespace, name, strategy, configuration, status, created_at, updated_at \
                             FROM teams WHERE namespace = $1 AND id = $2",
                        )
                        .bind(namespace)
                        .bind(*id)
                        .fetch_optional(&self.read)
                        .await?,
                        AgentKey::Name(name) => sqlx::query(
                            "SELECT id, namespace, name, strategy, configuration, status, created_at, updated_at \
                             FROM teams WHERE namespace = $1 AND name = $2 AND status = 'active'",
                        )
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
                    let mut query = QueryBuilder::<Db>::new(
                        "SELECT id, namespace, name, strategy, configuration, status, created_at, updated_at \
                         FROM teams WHERE namespace = ",
                    );
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
            }
        };
    };
}
