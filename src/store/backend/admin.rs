//! [`Admin`](crate::store::Admin) for both dialects: migrations, how many commits may run at
//! once, row counts and the change feed.

macro_rules! sql_admin {
    ($store:ident, migrations = $migrations:literal, concurrent_commits = $concurrent:literal,
     own_thread = $own_thread:literal, changes = $changes:path) => {
        const _: () = {
            use $crate::store::{Admin, ChangeFeed, TABLES};

            #[async_trait]
            impl Admin for $store {
                async fn migrate(&self) -> Result<(), StoreError> {
                    sqlx::migrate!($migrations).run(&self.write).await?;
                    Ok(())
                }

                fn concurrent_commits(&self) -> usize {
                    $concurrent
                }

                fn commits_on_own_thread(&self) -> bool {
                    $own_thread
                }

                fn statements_issued(&self) -> u64 {
                    self.statements.load(std::sync::atomic::Ordering::Relaxed)
                }

                fn round_trips_issued(&self) -> u64 {
                    self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
                }

                async fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
                    let table = TABLES
                        .iter()
                        .find(|t| **t == table)
                        .ok_or_else(|| StoreError::Corrupt(format!("no table `{table}`")))?;
                    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM {table}"
                    )))
                    .fetch_one(&self.read)
                    .await?)
                }

                async fn changes(&self) -> Result<Option<ChangeFeed>, StoreError> {
                    $changes(self).await
                }
            }
        };
    };
}
