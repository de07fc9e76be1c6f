//! `cairn team ...`

use std::process::ExitCode;

use clap::Subcommand;

use super::args::ClientArgs;
use super::client::status_error;
use super::output::{Output, time};
use crate::api::pb;

/// A team's definition, as flags.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct Definition {
    /// sequential, parallel or supervisor.
    #[arg(long)]
    strategy: String,
    /// A member: AGENT or AGENT:ROLE (repeatable, in order).
    #[arg(long = "member", required = true)]
    members: Vec<String>,
    /// Parallel: the agent that writes the answer from the members' results.
    #[arg(long, default_value = "")]
    aggregator: String,
    /// Supervisor: the agent that picks the next member.
    #[arg(long, default_value = "")]
    leader: String,
    /// A failed member does not fail the team.
    #[arg(long)]
    continue_on_failure: bool,
    /// Supervisor: the most member steps.
    #[arg(long, default_value_t = 0)]
    max_rounds: u32,
    /// Parallel: the most members at once.
    #[arg(long, default_value_t = 0)]
    max_parallel: u32,
}

impl Definition {
    fn request(self, namespace: String, name: String) -> pb::CreateTeamRequest {
        pb::CreateTeamRequest {
            namespace,
            name,
            strategy: self.strategy,
            members: self
                .members
                .into_iter()
                .map(|m| {
                    let (agent, role) = m.split_once(':').unwrap_or((m.as_str(), ""));
                    pb::TeamMember {
                        agent: agent.into(),
                        role: role.into(),
                        agent_id: String::new(),
                    }
                })
                .collect(),
            aggregator: self.aggregator,
            leader: self.leader,
            continue_on_failure: self.continue_on_failure,
            max_rounds: self.max_rounds,
            max_parallel: self.max_parallel,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum TeamCommand {
    /// Create a team.
    Create {
        /// Its name, unique among the namespace's active teams.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        definition: Definition,
    },
    /// Show a team.
    Get {
        /// Name or id.
        team: String,
    },
    /// List teams.
    List {
        /// Include archived teams.
        #[arg(long)]
        all: bool,
    },
    /// Replace a team's definition.
    Update {
        /// Name or id.
        team: String,
        #[command(flatten)]
        definition: Definition,
        /// Replace it only if its version (see `cairn team get`) is still this one.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Archive a team.
    Archive {
        /// Name or id.
        team: String,
        /// Archive it only if its version is still this one.
        #[arg(long)]
        expected_version: Option<u64>,
    },
}

fn show(out: &Output, team: &pb::Team) {
    if out.json {
        return out.print_json(team);
    }
    println!(
        "{} {}",
        out.paint("1", &team.name),
        out.paint("2", &team.id)
    );
    println!("  status         {}", out.status(&team.status));
    println!("  strategy       {}", team.strategy);
    for (i, m) in team.members.iter().enumerate() {
        println!(
            "  member {:<7} {} {}",
            i + 1,
            m.agent,
            out.paint("2", &m.role)
        );
    }
    println!("  configuration  {}", team.configuration_json);
    println!("  created        {}", time(team.created_at_ms));
    println!("  version        {}", team.version);
}

pub(super) async fn run(
    command: TeamCommand,
    client: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    match command {
        TeamCommand::Create { name, definition } => {
            let mut c = client.connect().await?;
            let request = definition.request(client.namespace, name);
            show(
                out,
                &c.teams
                    .create_team(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
        TeamCommand::Get { team } => {
            let mut c = client.connect().await?;
            let request = pb::GetTeamRequest {
                namespace: client.namespace,
                team,
            };
            show(
                out,
                &c.teams
                    .get_team(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
        TeamCommand::List { all } => {
            let mut c = client.connect().await?;
            let request = pb::ListTeamsRequest {
                namespace: client.namespace,
                include_archived: all,
                page_size: 1000,
                ..Default::default()
            };
            let teams = c
                .teams
                .list_teams(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .teams;
            if out.json {
                out.print_json(&teams);
            } else {
                let rows: Vec<Vec<String>> = teams
                    .iter()
                    .map(|t| {
                        let members: Vec<&str> =
                            t.members.iter().map(|m| m.agent.as_str()).collect();
                        vec![
                            t.name.clone(),
                            t.strategy.clone(),
                            members.join(","),
                            out.status(&t.status),
                            t.id.clone(),
                        ]
                    })
                    .collect();
                out.table(&["NAME", "STRATEGY", "MEMBERS", "STATUS", "ID"], &rows);
            }
        }
        TeamCommand::Update {
            team,
            definition,
            expected_version,
        } => {
            let mut c = client.connect().await?;
            let definition = definition.request(client.namespace.clone(), String::new());
            let request = pb::UpdateTeamRequest {
                namespace: client.namespace,
                team,
                definition: Some(definition),
                expected_version,
            };
            show(
                out,
                &c.teams
                    .update_team(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
        TeamCommand::Archive {
            team,
            expected_version,
        } => {
            let mut c = client.connect().await?;
            let request = pb::ArchiveTeamRequest {
                namespace: client.namespace,
                team,
                expected_version,
            };
            show(
                out,
                &c.teams
                    .archive_team(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
