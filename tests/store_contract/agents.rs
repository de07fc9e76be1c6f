//! Agents: insert, read by id and by name, list, update, archive, name uniqueness, and the
//! optimistic version (an update is written only from the stored version, and moves it on).

use cairn::domain::AgentStatus;
use cairn::store::{AgentKey, StoreError};
use serde_json::json;

use crate::common::Db;
use crate::support::{NS, T0, agent};

crate::on_both_stores!(
    an_agent_is_found_by_id_and_by_name_in_its_namespace_only,
    an_update_overwrites_the_mutable_fields,
    an_active_name_is_taken_until_its_agent_is_archived,
    agents_are_listed_in_id_order_page_by_page,
    an_update_from_a_stale_version_is_refused_and_writes_nothing,
    of_concurrent_updates_from_one_version_exactly_one_is_written,
    agents_are_read_by_ids_and_by_name_whatever_their_status,
);

async fn an_agent_is_found_by_id_and_by_name_in_its_namespace_only(db: Db) {
    let store = db.store().await;
    let writer = agent("writer");
    store.insert_agent(&writer).await.unwrap();

    let by_id = store.get_agent(NS, &AgentKey::Id(writer.id)).await.unwrap();
    let by_name = store.get_agent(NS, &AgentKey::Name("writer".into())).await;
    assert_eq!(
        by_id.as_ref(),
        Some(&writer),
        "every field reads back as written"
    );
    assert_eq!(by_name.unwrap().as_ref(), Some(&writer));

    let elsewhere = store.get_agent("other", &AgentKey::Id(writer.id)).await;
    assert_eq!(elsewhere.unwrap(), None, "reads are scoped to a namespace");
    let unknown = store.get_agent(NS, &AgentKey::Name("reader".into())).await;
    assert_eq!(unknown.unwrap(), None);
}

async fn an_update_overwrites_the_mutable_fields(db: Db) {
    let store = db.store().await;
    let original = agent("writer");
    store.insert_agent(&original).await.unwrap();

    let edited = cairn::domain::Agent {
        runtime: "claude_code".into(),
        model_id: "m-2".into(),
        configuration: json!({ "runtime_config": { "permission_mode": "plan" } }),
        updated_at: T0 + 60_000,
        ..original.clone()
    };
    store.update_agent(&edited).await.unwrap();

    let read = store
        .get_agent(NS, &AgentKey::Id(original.id))
        .await
        .unwrap();
    assert_eq!(
        read,
        Some(cairn::domain::Agent {
            version: 2,
            ..edited
        }),
        "the fields as given, one version on"
    );
}

async fn an_active_name_is_taken_until_its_agent_is_archived(db: Db) {
    let store = db.store().await;
    let first = agent("writer");
    store.insert_agent(&first).await.unwrap();

    let second = agent("writer");
    let refused = store.insert_agent(&second).await;
    assert!(
        matches!(refused, Err(StoreError::AlreadyExists(_))),
        "a second active `writer` is refused, got {refused:?}"
    );
    assert_eq!(
        store.count_rows("agents").await.unwrap(),
        1,
        "and not written"
    );

    let other_namespace = cairn::domain::Agent {
        namespace: "other".into(),
        ..agent("writer")
    };
    store.insert_agent(&other_namespace).await.unwrap();

    let archived = cairn::domain::Agent {
        status: AgentStatus::Archived,
        ..first.clone()
    };
    store.update_agent(&archived).await.unwrap();
    let archived = cairn::domain::Agent {
        version: 2,
        ..archived
    };
    let by_name = store.get_agent(NS, &AgentKey::Name("writer".into())).await;
    assert_eq!(
        by_name.unwrap(),
        None,
        "an archived agent has no name to look up"
    );
    let by_id = store.get_agent(NS, &AgentKey::Id(first.id)).await.unwrap();
    assert_eq!(by_id, Some(archived.clone()), "but is still there by id");

    store.insert_agent(&second).await.unwrap();
    let by_name = store.get_agent(NS, &AgentKey::Name("writer".into())).await;
    assert_eq!(by_name.unwrap(), Some(second), "the freed name is reused");

    let reactivated = store
        .update_agent(&cairn::domain::Agent {
            version: 2,
            ..first.clone()
        })
        .await;
    assert!(
        matches!(reactivated, Err(StoreError::AlreadyExists(_))),
        "reactivating the archived `writer` would make two, got {reactivated:?}"
    );
    let by_id = store.get_agent(NS, &AgentKey::Id(first.id)).await.unwrap();
    assert_eq!(by_id, Some(archived), "the refused update changed nothing");
}

async fn agents_are_listed_in_id_order_page_by_page(db: Db) {
    let store = db.store().await;
    let mut agents: Vec<_> = (0..5).map(|i| agent(&format!("agent-{i}"))).collect();
    agents[2].status = AgentStatus::Archived;
    for a in &agents {
        store.insert_agent(a).await.unwrap();
    }
    let stranger = cairn::domain::Agent {
        namespace: "other".into(),
        ..agent("stranger")
    };
    store.insert_agent(&stranger).await.unwrap();
    agents.sort_by_key(|a| a.id);

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_agents(NS, false, after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "a page holds at most `limit` agents");
        after = page.last().map(|a| a.id);
        pages.push(page.into_iter().map(|a| a.name).collect::<Vec<_>>());
    }
    let active: Vec<_> = agents
        .iter()
        .filter(|a| a.status == AgentStatus::Active)
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(
        pages.concat(),
        active,
        "every active agent once, in id order"
    );
    assert_eq!(pages.len(), 2);

    let all = store.list_agents(NS, true, None, 100).await.unwrap();
    assert_eq!(all, agents, "archived agents are listed when asked for");
}

async fn an_update_from_a_stale_version_is_refused_and_writes_nothing(db: Db) {
    let store = db.store().await;
    let original = agent("writer");
    assert_eq!(original.version, 1, "a new agent is at version 1");
    store.insert_agent(&original).await.unwrap();
    let first = cairn::domain::Agent {
        model_id: "m-first".into(),
        ..original.clone()
    };
    store.update_agent(&first).await.unwrap();
    let stored = store
        .get_agent(NS, &AgentKey::Id(original.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);

    // Made from version 1, which is no longer the stored one.
    let stale = cairn::domain::Agent {
        model_id: "m-stale".into(),
        configuration: json!({ "lost": true }),
        status: AgentStatus::Archived,
        updated_at: T0 + 1,
        ..original.clone()
    };
    let refused = store.update_agent(&stale).await;
    match &refused {
        Err(
            e @ StoreError::VersionConflict {
                kind: "agent",
                expected: 1,
                current: Some(2),
                ..
            },
        ) => assert_eq!(
            e.to_string(),
            "agent `writer` changed since version 1 (now 2); read it again and retry"
        ),
        other => panic!("a stale update is a version conflict, got {other:?}"),
    }
    let after = store
        .get_agent(NS, &AgentKey::Id(original.id))
        .await
        .unwrap();
    assert_eq!(after, Some(stored), "the refused update changed nothing");
    assert_eq!(store.count_rows("agents").await.unwrap(), 1);

    // A version ahead of the stored one is just as stale.
    let ahead = cairn::domain::Agent {
        version: 7,
        ..stale
    };
    let refused = store.update_agent(&ahead).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::VersionConflict {
                expected: 7,
                current: Some(2),
                ..
            })
        ),
        "got {refused:?}"
    );

    let missing = store.update_agent(&agent("nobody")).await;
    assert!(
        matches!(
            missing,
            Err(StoreError::VersionConflict { current: None, .. })
        ),
        "an update of an agent that is not stored writes nothing, got {missing:?}"
    );
    assert_eq!(store.count_rows("agents").await.unwrap(), 1);
}

async fn of_concurrent_updates_from_one_version_exactly_one_is_written(db: Db) {
    let store = db.store().await;
    let original = agent("writer");
    store.insert_agent(&original).await.unwrap();

    let updates = (0..8).map(|i| {
        let store = store.clone();
        let edited = cairn::domain::Agent {
            model_id: format!("m-{i}"),
            updated_at: T0 + i,
            ..original.clone()
        };
        tokio::spawn(async move { (edited.clone(), store.update_agent(&edited).await) })
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
    let stored = store
        .get_agent(NS, &AgentKey::Id(original.id))
        .await
        .unwrap();
    assert_eq!(
        stored,
        Some(cairn::domain::Agent {
            version: 2,
            ..winners.remove(0)
        }),
        "the stored agent is the winner's, one version on"
    );
}

async fn agents_are_read_by_ids_and_by_name_whatever_their_status(db: Db) {
    let store = db.store().await;
    let old = cairn::domain::Agent {
        status: AgentStatus::Archived,
        ..agent("writer")
    };
    let older = cairn::domain::Agent {
        status: AgentStatus::Archived,
        id: uuid::Uuid::from_u128(1),
        ..agent("writer")
    };
    let active = agent("reader");
    let stranger = cairn::domain::Agent {
        namespace: "other".into(),
        ..agent("stranger")
    };
    for a in [&old, &older, &active, &stranger] {
        store.insert_agent(a).await.unwrap();
    }

    let ids = [active.id, stranger.id, old.id, uuid::Uuid::nil(), old.id];
    let read = store.get_agents(NS, &ids).await.unwrap();
    let mut want = vec![old.clone(), active.clone()];
    want.sort_by_key(|a| a.id);
    assert_eq!(
        read, want,
        "every agent of the namespace among the ids, archived too, once each, in id order"
    );
    assert_eq!(store.get_agents(NS, &[]).await.unwrap(), vec![]);

    let named = store.newest_agent_named(NS, "writer").await.unwrap();
    assert_eq!(named, Some(old), "the newest of the agents with the name");
    let named = store.newest_agent_named(NS, "reader").await.unwrap();
    assert_eq!(named, Some(active));
    let named = store.newest_agent_named(NS, "stranger").await.unwrap();
    assert_eq!(named, None, "reads are scoped to a namespace");
}
