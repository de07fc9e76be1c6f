//! Agents: insert, read by id and by name, list, update, archive, and name uniqueness.

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
    assert_eq!(read, Some(edited));
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

    let reactivated = store.update_agent(&first).await;
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
