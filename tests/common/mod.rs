//! What the black-box tests share: databases (SQLite files and fresh PostgreSQL databases), real
//! `cairn` server processes, and a gRPC client with helpers.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

pub mod client;
pub mod db;
pub mod engine;
pub mod fleet;
pub mod postgres;
pub mod server;

pub use client::TestClient;
pub use db::Db;
pub use server::Server;

/// The MCP filesystem server the suite installs (`npm ci --prefix tests/npm`), for `default`
/// agents that call a real tool.
pub fn filesystem_server() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci --prefix tests/npm` to install the MCP server the tests use",
        path.display()
    );
    path
}

/// Waits (up to a minute) until `check` returns something, and returns it; panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what} after a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Generates one test per store for each named `async fn(Db)`: `sqlite::<name>` always, and
/// `postgres::<name>` on the suite's PostgreSQL server ([`postgres`] says which; the variant passes,
/// saying so, only when the run opted out with `CAIRN_TEST_POSTGRES=skip`).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::common::Db::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}
