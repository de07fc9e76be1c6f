//! A group commit's transaction as its statements see it (`CommitTx`). On SQLite each statement
//! sqlx runs is a call to the connection's database thread and back, two thread wake-ups, which
//! cost more than the statements of a commit themselves; so the statements whose rows nobody
//! reads (BEGIN, the writes of the committed transitions, COMMIT) are held and sent with the next
//! statement that is read, or with COMMIT, as one multi-statement query (SQLite runs it in one
//! call, each statement reading its rows from its own parameter). A worker's report is then three
//! calls (BEGIN with the fence read, the row update, the writes with COMMIT) instead of eight.
//! PostgreSQL sends each statement at once: its extended protocol takes one per query, and its
//! round trips are what `single.rs` and `alone.rs` save. `sql_held!` expands into a dialect
//! module after `sql_rows!`.

/// `$1` in `statement` renumbered `$n` (statements read their rows from `$1` alone).
pub(super) fn renumbered(statement: &str, n: usize) -> String {
    debug_assert!(
        !statement.contains("$2"),
        "a held statement reads one parameter"
    );
    statement.replace("$1", &format!("${n}"))
}

macro_rules! sql_held {
    (hold = $hold:literal) => {
        /// Whether statements nobody reads wait for the next one sent (see the module comment).
        const HOLD: bool = $hold;

        /// The store's counts of the commit path's statements (`Admin::statements_issued`) and
        /// calls to the database (`Admin::round_trips_issued`).
        type Counts<'c> = (&'c AtomicU64, &'c AtomicU64);

        /// A group commit's transaction, on a connection of the commit pool.
        struct CommitTx<'c> {
            conn: &'c mut sqlx::pool::PoolConnection<Db>,
            counts: Counts<'c>,
            /// The held statements, each ending in `;`, with parameters renumbered in order.
            held: String,
            /// The held statements' parameters (their rows' JSON arrays).
            args: Vec<String>,
            /// A transaction is begun (or its BEGIN held) and not ended: the connection must not
            /// go back to the pool like this, so if the commit is dropped here it is closed,
            /// which rolls the transaction back.
            open: bool,
        }

        impl Drop for CommitTx<'_> {
            fn drop(&mut self) {
                if self.open {
                    self.conn.close_on_drop();
                }
            }
        }

        impl<'c> CommitTx<'c> {
            /// The connection outside any transaction: for a statement that commits alone
            /// (`alone.rs`) and what it reads after.
            fn alone(conn: &'c mut sqlx::pool::PoolConnection<Db>, counts: Counts<'c>) -> Self {
                CommitTx {
                    conn,
                    counts,
                    held: String::new(),
                    args: Vec::new(),
                    open: false,
                }
            }

            /// Begins a transaction with `begin`.
            async fn begin(
                conn: &'c mut sqlx::pool::PoolConnection<Db>,
                counts: Counts<'c>,
                begin: &'static str,
            ) -> Result<Self, StoreError> {
                let mut tx = CommitTx::alone(conn, counts);
                tx.open = true;
                if HOLD {
                    tx.counts.0.fetch_add(1, Ordering::Relaxed);
                    tx.held.push_str(begin);
                    tx.held.push_str(";\n");
                } else {
                    tx.count_statement();
                    sqlx::raw_sql(begin).execute(&mut **tx.conn).await?;
                }
                Ok(tx)
            }

            /// Counts a statement sent in a call of its own.
            fn count_statement(&self) {
                self.counts.0.fetch_add(1, Ordering::Relaxed);
                self.counts.1.fetch_add(1, Ordering::Relaxed);
            }

            /// What is held, then `last` (its parameter numbered after theirs), as one query
            /// with every parameter but `last`'s bound.
            fn held_then(
                &mut self,
                last: &str,
            ) -> sqlx::query::Query<'static, Db, <Db as sqlx::Database>::Arguments> {
                let mut text = std::mem::take(&mut self.held);
                text.push_str(&$crate::store::backend::held::renumbered(
                    last,
                    self.args.len() + 1,
                ));
                let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
                for arg in self.args.drain(..) {
                    query = query.bind(arg);
                }
                query
            }

            /// Runs `statement` once per array of `rows` (once, but for huge batches), after what
            /// is held; returns the rows it returns.
            async fn rows(
                &mut self,
                statement: &'static str,
                rows: Packed,
            ) -> Result<Vec<DbRow>, StoreError> {
                let mut out = Vec::new();
                for array in rows.into_arrays() {
                    self.count_statement();
                    let query = if self.held.is_empty() {
                        sqlx::query(statement)
                    } else {
                        self.held_then(statement)
                    };
                    out.extend(query.bind(array).fetch_all(&mut **self.conn).await?);
                }
                Ok(out)
            }

            /// Writes `rows` with `statement`, whose returned rows nobody reads: held (SQLite)
            /// or run now.
            async fn write(
                &mut self,
                statement: &'static str,
                rows: Packed,
            ) -> Result<(), StoreError> {
                if !HOLD {
                    return self.rows(statement, rows).await.map(drop);
                }
                for array in rows.into_arrays() {
                    self.counts.0.fetch_add(1, Ordering::Relaxed);
                    self.args.push(array);
                    self.held
                        .push_str(&$crate::store::backend::held::renumbered(
                            statement,
                            self.args.len(),
                        ));
                    self.held.push_str(";\n");
                }
                Ok(())
            }

            /// Sends what is held; then the connection, for a statement of its own.
            async fn conn(&mut self) -> Result<&mut DbConn, StoreError> {
                if !self.held.is_empty() {
                    self.counts.1.fetch_add(1, Ordering::Relaxed);
                    self.held_then("").execute(&mut **self.conn).await?;
                }
                Ok(&mut **self.conn)
            }

            /// Commits, with what is held.
            async fn commit(mut self) -> Result<(), StoreError> {
                self.count_statement();
                let committed = if self.held.is_empty() {
                    sqlx::raw_sql("COMMIT").execute(&mut **self.conn).await
                } else {
                    self.held_then("COMMIT").execute(&mut **self.conn).await
                };
                match committed {
                    Ok(_) => {
                        self.open = false;
                        Ok(())
                    }
                    Err(e) => {
                        self.rollback().await;
                        Err(e.into())
                    }
                }
            }

            /// Rolls back (after a failed statement). Where that fails too, the connection is
            /// closed instead of going back to the pool (see `open`).
            async fn rollback(mut self) {
                self.args.clear();
                // A BEGIN still held never reached the database.
                let sent = !(HOLD && self.held.starts_with("BEGIN"));
                self.held.clear();
                if !sent {
                    self.open = false;
                    return;
                }
                self.counts.1.fetch_add(1, Ordering::Relaxed);
                match sqlx::raw_sql("ROLLBACK").execute(&mut **self.conn).await {
                    Ok(_) => self.open = false,
                    // The statement that failed was the BEGIN (a database busy past its timeout).
                    Err(sqlx::Error::Database(e))
                        if e.message().contains("no transaction is active") =>
                    {
                        self.open = false
                    }
                    Err(_) => {}
                }
            }
        }
    };
}
