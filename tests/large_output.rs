//! An echo run of 10,000 chunks sent as fast as the runtime can (`delay_ms: 0`): the in-process
//! worker sends them in large batches, which used to exceed the database's bind-parameter limit
//! (SQLite "too many SQL variables" from ~3,300 chunks, PostgreSQL "too many arguments for
//! query"). It completes on both stores with a gapless stream: seqs 1..=N, each once.

mod common;

use common::client::assert_gapless;
use common::{Db, Server};
use serde_json::json;

const N: usize = 10_000;

async fn an_echo_run_of_ten_thousand_chunks_completes_gapless(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let chunks: Vec<String> = (1..=N).map(|i| format!("{i} ")).collect();
    c.create_agent("many", "echo", json!({ "chunks": chunks, "delay_ms": 0 }))
        .await;
    let id = c.start_simple("many", "go").await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "closed: {:?}",
        watched.closed
    );
    assert_eq!(watched.chunks.len(), N);
    assert_gapless(&watched.chunks, 1);
    let expected: String = chunks.concat();
    assert_eq!(watched.text(), expected, "every chunk once, in order");
    assert_eq!(c.get(&id).await.output_length, N as u64);
}

on_both_stores!(an_echo_run_of_ten_thousand_chunks_completes_gapless);
