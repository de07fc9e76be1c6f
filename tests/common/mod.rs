//! What the black-box tests share: databases (SQLite files and fresh PostgreSQL databases), real
//! `cairn` server processes, and a gRPC client with helpers.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

pub mod client;
pub mod db;
pub mod fleet;
pub mod server;

pub use client::TestClient;
pub use db::Db;
pub use server::Server;

/// Generates one test per store for each named `async fn(Db)`: `sqlite::<name>` always, and
/// `postgres::<name>` when `CAIRN_TEST_POSTGRES_URL` is set (it says why it skipped otherwise).
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
                    match $crate::common::Db::postgres().await {
                        Some(db) => super::$name(db).await,
                        None => eprintln!("skipped: set CAIRN_TEST_POSTGRES_URL to run the PostgreSQL variant"),
                    }
                }
            )*
        }
    };
}
