//! `cairn agent ...`

use std::process::ExitCode;

use clap::Subcommand;

use super::args::ClientArgs;
use super::client::status_error;
use super::output::{Output, cut, time};
use crate::api::pb;

#[derive(Debug, Subcommand)]
pub(super) enum AgentCommand {
    /// Create an agent.
    Create {
        /// Its name, unique among active agents of the namespace.
        #[arg(long)]
        name: String,
        /// The runtime that runs it (see `cairn agent runtimes`).
        #[arg(long, default_value = "default")]
        runtime: String,
        /// The model the runtime uses.
        #[arg(long, default_value = "")]
        model_id: String,
        /// Configuration as a JSON object; runtime options go under "runtime_config".
        #[arg(long, default_value = "{}")]
        configuration: String,
    },
    /// Show an agent.
    Get {
        /// Name or id.
        agent: String,
    },
    /// List agents.
    List {
        /// Include archived agents.
        #[arg(long)]
        all: bool,
    },
    /// Change an agent's runtime, model or configuration.
    Update {
        /// Name or id.
        agent: String,
        /// A new runtime.
        #[arg(long)]
        runtime: Option<String>,
        /// A new model.
        #[arg(long)]
        model_id: Option<String>,
        /// A new configuration (JSON object); replaces the old one.
        #[arg(long)]
        configuration: Option<String>,
        /// Change it only if its version (see `cairn agent get`) is still this one.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Archive an agent: it cannot be started any more, and its name is free again.
    Archive {
        /// Name or id.
        agent: String,
        /// Archive it only if its version is still this one.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// List the runtimes this deployment has (built in, and external ones that workers
    /// registered), with the configuration keys each accepts and how many workers offer each.
    Runtimes,
}

fn show(out: &Output, agent: &pb::Agent) {
    if out.json {
        return out.print_json(agent);
    }
    println!(
        "{} {}",
        out.paint("1", &agent.name),
        out.paint("2", &agent.id)
    );
    println!("  status         {}", out.status(&agent.status));
    println!("  namespace      {}", agent.namespace);
    println!("  runtime        {}", agent.runtime);
    println!(
        "  model          {}",
        if agent.model_id.is_empty() {
            "-"
        } else {
            &agent.model_id
        }
    );
    println!("  configuration  {}", agent.configuration_json);
    println!("  created        {}", time(agent.created_at_ms));
    println!("  updated        {}", time(agent.updated_at_ms));
    println!("  version        {}", agent.version);
    for warning in &agent.warnings {
        eprintln!("warning: {warning}");
    }
}

pub(super) async fn run(
    command: AgentCommand,
    client: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Create {
            name,
            runtime,
            model_id,
            configuration,
        } => {
            let mut c = client.connect().await?;
            let request = pb::CreateAgentRequest {
                namespace: client.namespace,
                name,
                runtime,
                model_id,
                configuration_json: configuration,
            };
            let agent = c
                .agents
                .create_agent(request)
                .await
                .map_err(status_error)?
                .into_inner();
            show(out, &agent);
        }
        AgentCommand::Get { agent } => {
            let mut c = client.connect().await?;
            let request = pb::GetAgentRequest {
                namespace: client.namespace,
                agent,
            };
            show(
                out,
                &c.agents
                    .get_agent(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
        AgentCommand::List { all } => {
            let mut c = client.connect().await?;
            let mut agents = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListAgentsRequest {
                    namespace: client.namespace.clone(),
                    include_archived: all,
                    page_size: 500,
                    page_token,
                };
                let page = c
                    .agents
                    .list_agents(request)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                agents.extend(page.agents);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if out.json {
                out.print_json(&agents);
            } else {
                let rows: Vec<Vec<String>> = agents
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.runtime.clone(),
                            a.model_id.clone(),
                            out.status(&a.status),
                            a.id.clone(),
                        ]
                    })
                    .collect();
                out.table(&["NAME", "RUNTIME", "MODEL", "STATUS", "ID"], &rows);
            }
        }
        AgentCommand::Update {
            agent,
            runtime,
            model_id,
            configuration,
            expected_version,
        } => {
            let mut c = client.connect().await?;
            let request = pb::UpdateAgentRequest {
                namespace: client.namespace,
                agent,
                runtime,
                model_id,
                configuration_json: configuration,
                expected_version,
            };
            show(
                out,
                &c.agents
                    .update_agent(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
        AgentCommand::Archive {
            agent,
            expected_version,
        } => {
            let mut c = client.connect().await?;
            let request = pb::ArchiveAgentRequest {
                namespace: client.namespace,
                agent,
                expected_version,
            };
            show(
                out,
                &c.agents
                    .archive_agent(request)
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            );
        }
        AgentCommand::Runtimes => {
            let mut c = client.connect().await?;
            let runtimes = c
                .agents
                .list_runtimes(pb::ListRuntimesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .runtimes;
            if out.json {
                out.print_json(&runtimes);
            } else {
                for r in &runtimes {
                    let served = if r.external {
                        format!("{} worker(s), external", r.workers)
                    } else {
                        format!("{} worker(s)", r.workers)
                    };
                    println!(
                        "{}  {}  {}",
                        out.paint("1", &r.name),
                        out.paint("2", &served),
                        r.description
                    );
                    for k in &r.config_keys {
                        println!(
                            "    {:<24} {:<16} {}",
                            k.name,
                            out.paint("2", &k.r#type),
                            cut(&k.description, 80)
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
