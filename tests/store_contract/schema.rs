//! The schema: the store's table list is the database's own, so "a refused request wrote
//! nothing" checks, which count the rows of every table in `cairn::store::TABLES`, cannot miss a
//! table a migration added.

use sqlx::Connection;

use crate::common::Db;

crate::on_both_stores!(the_table_list_is_every_table_of_the_schema);

async fn the_table_list_is_every_table_of_the_schema(db: Db) {
    db.store().await; // migrated
    let mut catalog: Vec<String> = if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    catalog.sort();
    let mut listed: Vec<String> = cairn::store::TABLES.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(
        listed, catalog,
        "cairn::store::TABLES must name exactly the tables the migrations create"
    );
}

/// The cluster the suite starts for itself when it is given no PostgreSQL server (CI gives it one,
/// so this test is what keeps that path working there too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throwaway_cluster_serves_a_migrated_store() {
    if std::env::var("CAIRN_TEST_POSTGRES").as_deref() == Ok("skip") {
        return;
    }
    let cluster = crate::common::postgres::TempCluster::start().await;
    let store = cairn::store::open(&cluster.url, cairn::store::Durability::Full)
        .await
        .expect("open the store on the throwaway cluster");
    store.migrate().await.expect("migrate");
    assert_eq!(store.count_rows("executions").await.unwrap(), 0);
    assert!(
        cluster.data_dir.join("postmaster.pid").exists(),
        "the cluster runs from its own temporary directory"
    );
}
