//! Test databases: an SQLite file in a temporary directory, or a fresh PostgreSQL database that
//! is dropped afterwards, so tests run in parallel without seeing each other.

use std::sync::Arc;

use cairn::store::{Durability, Store};

/// A database for one test.
pub struct Db {
    /// The URL servers are started with.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Db {
    /// An SQLite database in a new temporary directory.
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
        Db {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database on the suite's PostgreSQL server (see [`super::postgres`]), or
    /// `None` when the run opted out with `CAIRN_TEST_POSTGRES=skip` (the skip is printed).
    pub async fn postgres() -> Option<Db> {
        let admin = super::postgres::admin_url().await?;
        let name = format!("cairn_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("the tests' PostgreSQL server (CAIRN_TEST_POSTGRES_URL, or the cluster they started) must be reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        // Swap the database name in the URL's path for the new one.
        let authority = admin
            .find("://")
            .expect("a URL like postgres://USER@HOST:PORT/DB")
            + 3;
        let base = match admin[authority..].find('/') {
            Some(slash) => &admin[..authority + slash],
            None => admin.as_str(),
        };
        let url = format!("{base}/{name}");
        Some(Db {
            url,
            _dir: None,
            postgres: Some((admin, name)),
        })
    }

    /// The store, opened directly (for row counts and inspection).
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = cairn::store::open(&self.url, Durability::Full)
            .await
            .expect("open the store");
        store.migrate().await.expect("migrate");
        store
    }

    /// Row counts of every table of the store, for "bad input writes nothing".
    pub async fn row_counts(&self) -> Vec<(&'static str, i64)> {
        let store = self.store().await;
        let mut counts = Vec::new();
        for table in cairn::store::TABLES {
            counts.push((*table, store.count_rows(table).await.expect("count rows")));
        }
        counts
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs outside any async context we can rely on: use a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Inserts an active `echo` agent named `name`, created at `at`, for tests that drive the engine
/// or the store directly (no server to create it through).
pub async fn insert_echo_agent(store: &dyn Store, name: &str, at: i64) {
    store
        .insert_agent(&cairn::domain::Agent {
            id: uuid::Uuid::now_v7(),
            namespace: "default".into(),
            name: name.into(),
            runtime: "echo".into(),
            model_id: String::new(),
            configuration: serde_json::json!({}),
            status: cairn::domain::AgentStatus::Active,
            created_at: at,
            updated_at: at,
            version: 1,
        })
        .await
        .unwrap();
}
