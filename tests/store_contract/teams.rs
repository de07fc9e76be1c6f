//! Teams: insert with members, update and archive from the stored version only, and concurrent
//! updates from one version (exactly one is written, members and all).

use cairn::domain::{AgentStatus, Team, TeamConfig, TeamMember, TeamStrategy};
use cairn::store::{AgentKey, StoreError};
use uuid::Uuid;

use crate::common::Db;
use crate::support::{NS, T0};

crate::on_both_stores!(
    a_team_reads_back_with_its_members_at_version_one,
    a_team_update_from_a_stale_version_is_refused_and_writes_nothing,
    of_concurrent_team_updates_from_one_version_exactly_one_is_written,
);

/// An active sequential team of `members` fresh agent ids (the store does not resolve them).
fn team(name: &str, members: usize) -> Team {
    Team {
        id: Uuid::now_v7(),
        namespace: NS.into(),
        name: name.into(),
        strategy: TeamStrategy::Sequential,
        members: (0..members)
            .map(|i| TeamMember {
                agent_id: Uuid::now_v7(),
                role: format!("role {i}"),
            })
            .collect(),
        config: TeamConfig::default(),
        status: AgentStatus::Active,
        created_at: T0,
        updated_at: T0,
        version: 1,
    }
}

async fn a_team_reads_back_with_its_members_at_version_one(db: Db) {
    let store = db.store().await;
    let writers = team("writers", 3);
    store.insert_team(&writers).await.unwrap();
    let read = store.get_team(NS, &AgentKey::Id(writers.id)).await.unwrap();
    assert_eq!(read.as_ref(), Some(&writers), "every field reads back");

    let edited = Team {
        strategy: TeamStrategy::Parallel,
        members: team("", 2).members,
        updated_at: T0 + 1,
        ..writers.clone()
    };
    store.update_team(&edited).await.unwrap();
    let read = store.get_team(NS, &AgentKey::Id(writers.id)).await.unwrap();
    assert_eq!(
        read,
        Some(Team {
            version: 2,
            ..edited.clone()
        })
    );

    let archived = Team {
        status: AgentStatus::Archived,
        version: 2,
        ..edited
    };
    store.update_team(&archived).await.unwrap();
    let read = store.get_team(NS, &AgentKey::Id(writers.id)).await.unwrap();
    assert_eq!(
        read,
        Some(Team {
            version: 3,
            ..archived
        })
    );
}

async fn a_team_update_from_a_stale_version_is_refused_and_writes_nothing(db: Db) {
    let store = db.store().await;
    let writers = team("writers", 2);
    store.insert_team(&writers).await.unwrap();
    let first = Team {
        members: team("", 1).members,
        ..writers.clone()
    };
    store.update_team(&first).await.unwrap();
    let stored = store.get_team(NS, &AgentKey::Id(writers.id)).await.unwrap();
    let members_before = store.count_rows("team_members").await.unwrap();
    assert_eq!(members_before, 1);

    let stale = Team {
        members: team("", 5).members,
        status: AgentStatus::Archived,
        ..writers.clone()
    };
    let refused = store.update_team(&stale).await;
    match &refused {
        Err(
            e @ StoreError::VersionConflict {
                kind: "team",
                expected: 1,
                current: Some(2),
                ..
            },
        ) => assert_eq!(
            e.to_string(),
            "team `writers` changed since version 1 (now 2); read it again and retry"
        ),
        other => panic!("a stale update is a version conflict, got {other:?}"),
    }
    let after = store.get_team(NS, &AgentKey::Id(writers.id)).await.unwrap();
    assert_eq!(after, stored, "the team and its members are unchanged");
    assert_eq!(
        store.count_rows("team_members").await.unwrap(),
        members_before,
        "no member row was deleted or added"
    );
    assert_eq!(store.count_rows("teams").await.unwrap(), 1);
}

async fn of_concurrent_team_updates_from_one_version_exactly_one_is_written(db: Db) {
    let store = db.store().await;
    let writers = team("writers", 2);
    store.insert_team(&writers).await.unwrap();

    let updates = (1..=6).map(|n| {
        let store = store.clone();
        let edited = Team {
            members: team("", n).members,
            updated_at: T0 + n as i64,
            ..writers.clone()
        };
        tokio::spawn(async move { (edited.clone(), store.update_team(&edited).await) })
    });
    let mut winners = Vec::new();
    for update in futures::future::join_all(updates).await {
        let (edited, outcome) = update.unwrap();
        match outcome {
            Ok(()) => winners.push(edited),
            Err(StoreError::VersionConflict {
                expected: 1,
                current: Some(2),
                ..
            }) => {}
            Err(e) => panic!("a losing update is a version conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of the updates is written");
    let winner = winners.remove(0);
    assert_eq!(
        store.count_rows("team_members").await.unwrap(),
        winner.members.len() as i64,
        "only the winner's members are stored"
    );
    let stored = store.get_team(NS, &AgentKey::Id(writers.id)).await.unwrap();
    assert_eq!(
        stored,
        Some(Team {
            version: 2,
            ..winner
        })
    );
}
