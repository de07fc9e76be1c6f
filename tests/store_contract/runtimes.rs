//! External runtimes: registrations upserted per runtime and worker, the newest one's
//! description and schema read back, the first registration's time kept.

use cairn::store::RuntimeUpsert;
use serde_json::json;

use crate::common::Db;
use crate::support::T0;

crate::on_both_stores!(
    the_newest_registration_of_a_runtime_is_the_one_read,
    an_unregistered_runtime_is_none,
);

fn upsert(name: &str, description: &str, max: u64) -> RuntimeUpsert {
    RuntimeUpsert {
        name: name.into(),
        description: description.into(),
        config_schema: json!({"type": "object", "properties": {"n": {"type": "integer", "maximum": max}}}),
    }
}

async fn the_newest_registration_of_a_runtime_is_the_one_read(db: Db) {
    let store = db.store().await;
    store
        .upsert_runtimes(
            "w-1",
            &[upsert("agno", "v1", 1), upsert("lc", "chains", 9)],
            T0,
        )
        .await
        .unwrap();
    store
        .upsert_runtimes("w-2", &[upsert("agno", "v2", 2)], T0 + 10)
        .await
        .unwrap();
    // w-1 registers again, later, with the same schema as before: it is now the newest.
    store
        .upsert_runtimes("w-1", &[upsert("agno", "v3", 3)], T0 + 20)
        .await
        .unwrap();

    let all = store.list_runtimes().await.unwrap();
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["agno", "lc"], "one entry per runtime, by name");
    let agno = store.external_runtime("agno").await.unwrap().unwrap();
    assert_eq!(agno, all[0]);
    assert_eq!(agno.worker_id, "w-1");
    assert_eq!(agno.description, "v3");
    assert_eq!(agno.config_schema["properties"]["n"]["maximum"], 3);
    assert_eq!((agno.first_seen, agno.last_seen), (T0, T0 + 20));
    assert_eq!(agno.registered_by, 2, "two workers registered it");
    assert_eq!(all[1].registered_by, 1);
}

async fn an_unregistered_runtime_is_none(db: Db) {
    let store = db.store().await;
    assert_eq!(store.external_runtime("agno").await.unwrap(), None);
    assert!(store.list_runtimes().await.unwrap().is_empty());
}
