//! The optimistic version of agents and teams, through a real `cairn` server over gRPC and the
//! `cairn` command line: of concurrent updates from one version exactly one wins and the others
//! get `ABORTED`; a stale `expected_version` changes nothing (row counts and the definition
//! unchanged); every update moves the version on by one.

mod common;

use std::process::{Command, Stdio};

use cairn::api::pb;
use cairn::api::pb::team_service_client::TeamServiceClient;
use common::server::cairn_bin;
use common::{Db, Server, TestClient};
use serde_json::{Value, json};
use tonic::Code;

on_both_stores!(
    concurrent_agent_updates_from_one_version_let_exactly_one_win,
    concurrent_team_updates_from_one_version_let_exactly_one_win,
    a_stale_expected_version_is_aborted_and_writes_nothing,
    every_update_moves_the_version_on_by_one,
    the_cli_shows_the_version_and_takes_an_expected_one,
);

/// How many updates race in the concurrent tests.
const RACERS: usize = 8;

fn member(agent: &str) -> pb::TeamMember {
    pb::TeamMember {
        agent: agent.into(),
        ..Default::default()
    }
}

fn sequential(members: &[&str]) -> pb::CreateTeamRequest {
    pb::CreateTeamRequest {
        strategy: "sequential".into(),
        members: members.iter().map(|m| member(m)).collect(),
        ..Default::default()
    }
}

async fn get_agent(c: &mut TestClient, agent: &str) -> pb::Agent {
    c.agents
        .get_agent(pb::GetAgentRequest {
            agent: agent.into(),
            ..Default::default()
        })
        .await
        .expect("get agent")
        .into_inner()
}

async fn get_team(
    teams: &mut TeamServiceClient<tonic::transport::Channel>,
    team: &str,
) -> pb::Team {
    teams
        .get_team(pb::GetTeamRequest {
            team: team.into(),
            ..Default::default()
        })
        .await
        .expect("get team")
        .into_inner()
}

/// Asserts that `status` is the conflict of `what` edited at `expected` while stored at `now`.
fn assert_conflict(status: &tonic::Status, what: &str, expected: u64, now: u64) {
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(
        status.message(),
        format!("{what} changed since version {expected} (now {now}); read it again and retry"),
    );
}

async fn concurrent_agent_updates_from_one_version_let_exactly_one_win(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    let created = c.create_agent("writer", "echo", json!({})).await;
    assert_eq!(created.version, 1, "a new agent is at version 1");
    let before = db.row_counts().await;

    let updates = (0..RACERS).map(|i| {
        let mut agents = c.agents.clone();
        async move {
            let request = pb::UpdateAgentRequest {
                agent: "writer".into(),
                model_id: Some(format!("m-{i}")),
                expected_version: Some(1),
                ..Default::default()
            };
            (format!("m-{i}"), agents.update_agent(request).await)
        }
    });
    let handles: Vec<_> = updates.map(tokio::spawn).collect();
    let mut winners = Vec::new();
    for handle in handles {
        let (model_id, outcome) = handle.await.unwrap();
        match outcome {
            Ok(agent) => winners.push((model_id, agent.into_inner())),
            Err(status) => assert_conflict(&status, "agent `writer`", 1, 2),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    let (model_id, answered) = winners.remove(0);
    assert_eq!(answered.model_id, model_id);
    assert_eq!(answered.version, 2);

    let stored = get_agent(&mut c, "writer").await;
    assert_eq!(stored, answered, "the stored agent is the winner's");
    assert_eq!(db.row_counts().await, before, "updates add no rows");
}

async fn concurrent_team_updates_from_one_version_let_exactly_one_win(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    let names: Vec<String> = (0..RACERS).map(|i| format!("agent-{i}")).collect();
    for name in &names {
        c.create_agent(name, "echo", json!({})).await;
    }
    let mut teams = TeamServiceClient::new(c.channel.clone());
    let created = teams
        .create_team(pb::CreateTeamRequest {
            name: "crew".into(),
            ..sequential(&["agent-0"])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);

    // Update i makes agents 0..=i the members: each winner leaves a different team behind.
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let mut teams = teams.clone();
            let members: Vec<&str> = names[..=i].iter().map(String::as_str).collect();
            let request = pb::UpdateTeamRequest {
                team: "crew".into(),
                definition: Some(sequential(&members)),
                expected_version: Some(1),
                ..Default::default()
            };
            tokio::spawn(async move { teams.update_team(request).await })
        })
        .collect();
    let mut winners = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            Ok(team) => winners.push(team.into_inner()),
            Err(status) => assert_conflict(&status, "team `crew`", 1, 2),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    let answered = winners.remove(0);
    assert_eq!(answered.version, 2);

    let stored = get_team(&mut teams, "crew").await;
    assert_eq!(stored, answered, "the stored team is the winner's");
    let (_, member_rows) = db
        .row_counts()
        .await
        .into_iter()
        .find(|(table, _)| *table == "team_members")
        .unwrap();
    assert_eq!(
        member_rows,
        stored.members.len() as i64,
        "only the winner's members are stored"
    );
}

async fn a_stale_expected_version_is_aborted_and_writes_nothing(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("writer", "echo", json!({})).await;
    c.create_agent("helper", "echo", json!({})).await;
    c.agents
        .update_agent(pb::UpdateAgentRequest {
            agent: "writer".into(),
            model_id: Some("m-2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut teams = TeamServiceClient::new(c.channel.clone());
    teams
        .create_team(pb::CreateTeamRequest {
            name: "crew".into(),
            ..sequential(&["writer"])
        })
        .await
        .unwrap();
    teams
        .update_team(pb::UpdateTeamRequest {
            team: "crew".into(),
            definition: Some(sequential(&["writer", "helper"])),
            ..Default::default()
        })
        .await
        .unwrap();
    let agent_before = get_agent(&mut c, "writer").await;
    let team_before = get_team(&mut teams, "crew").await;
    assert_eq!((agent_before.version, team_before.version), (2, 2));
    let counts_before = db.row_counts().await;

    for stale in [1, 3, u64::MAX] {
        let update = c
            .agents
            .update_agent(pb::UpdateAgentRequest {
                agent: "writer".into(),
                model_id: Some("m-lost".into()),
                configuration_json: Some(
                    json!({ "runtime_config": { "chunks": ["lost"] } }).to_string(),
                ),
                expected_version: Some(stale),
                ..Default::default()
            })
            .await
            .expect_err("a stale agent update is refused");
        assert_conflict(&update, "agent `writer`", stale, 2);
        let archive = c
            .agents
            .archive_agent(pb::ArchiveAgentRequest {
                agent: "writer".into(),
                expected_version: Some(stale),
                ..Default::default()
            })
            .await
            .expect_err("a stale archive is refused");
        assert_conflict(&archive, "agent `writer`", stale, 2);
        let update = teams
            .update_team(pb::UpdateTeamRequest {
                team: "crew".into(),
                definition: Some(sequential(&["helper"])),
                expected_version: Some(stale),
                ..Default::default()
            })
            .await
            .expect_err("a stale team update is refused");
        assert_conflict(&update, "team `crew`", stale, 2);
        let archive = teams
            .archive_team(pb::ArchiveTeamRequest {
                team: "crew".into(),
                expected_version: Some(stale),
                ..Default::default()
            })
            .await
            .expect_err("a stale team archive is refused");
        assert_conflict(&archive, "team `crew`", stale, 2);
    }
    let zero = c
        .agents
        .update_agent(pb::UpdateAgentRequest {
            agent: "writer".into(),
            model_id: Some("m-lost".into()),
            expected_version: Some(0),
            ..Default::default()
        })
        .await
        .expect_err("version 0 is refused");
    assert_eq!(zero.code(), Code::InvalidArgument);
    assert!(zero.message().contains("versions start at 1"), "{zero:?}");

    assert_eq!(
        db.row_counts().await,
        counts_before,
        "no row added or removed"
    );
    assert_eq!(
        get_agent(&mut c, "writer").await,
        agent_before,
        "the agent is unchanged"
    );
    assert_eq!(
        get_team(&mut teams, "crew").await,
        team_before,
        "the team is unchanged"
    );

    // The version just read is the one to give.
    let updated = c
        .agents
        .update_agent(pb::UpdateAgentRequest {
            agent: "writer".into(),
            model_id: Some("m-3".into()),
            expected_version: Some(agent_before.version),
            ..Default::default()
        })
        .await
        .expect("an update from the stored version")
        .into_inner();
    assert_eq!((updated.model_id.as_str(), updated.version), ("m-3", 3));
    let archived = teams
        .archive_team(pb::ArchiveTeamRequest {
            team: "crew".into(),
            expected_version: Some(team_before.version),
            ..Default::default()
        })
        .await
        .expect("an archive from the stored version")
        .into_inner();
    assert_eq!(
        (archived.status.as_str(), archived.version),
        ("archived", 3)
    );
}

async fn every_update_moves_the_version_on_by_one(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    let created = c.create_agent("writer", "echo", json!({})).await;
    for n in 2..=4 {
        let updated = c
            .agents
            .update_agent(pb::UpdateAgentRequest {
                agent: created.id.clone(),
                model_id: Some(format!("m-{n}")),
                ..Default::default()
            })
            .await
            .expect("an update without expected_version")
            .into_inner();
        assert_eq!(updated.version, n);
    }
    let archived = c
        .agents
        .archive_agent(pb::ArchiveAgentRequest {
            agent: "writer".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.version, 5, "archiving is an update");
    let again = c
        .agents
        .archive_agent(pb::ArchiveAgentRequest {
            agent: created.id.clone(),
            expected_version: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again, archived,
        "archiving an archived agent changes nothing"
    );
    let listed = c
        .agents
        .list_agents(pb::ListAgentsRequest {
            include_archived: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(listed, vec![archived], "lists carry the version too");
}

fn cairn(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(cairn_bin())
        .args(args)
        .env("CAIRN_SERVER", &server.url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn")
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "cairn failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

async fn the_cli_shows_the_version_and_takes_an_expected_one(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("writer", "echo", json!({})).await;

    let shown = json_of(&cairn(&server, &["--json", "agent", "get", "writer"]));
    assert_eq!(shown["version"], 1);
    let update = |version: &str| {
        cairn(
            &server,
            &[
                "--json",
                "agent",
                "update",
                "writer",
                "--model-id",
                "m-2",
                "--expected-version",
                version,
            ],
        )
    };
    let updated = json_of(&update("1"));
    assert_eq!(
        (updated["model_id"].clone(), updated["version"].clone()),
        (json!("m-2"), json!(2))
    );

    let refused = update("1");
    assert!(
        !refused.status.success(),
        "a stale --expected-version fails"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("agent `writer` changed since version 1 (now 2); read it again and retry"),
        "{stderr}"
    );
    let listed = json_of(&cairn(&server, &["--json", "agent", "list"]));
    assert_eq!(
        listed[0]["version"], 2,
        "the refused update changed nothing"
    );

    let text = cairn(&server, &["agent", "get", "writer"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["version", "2"])),
        "{text}"
    );
}
