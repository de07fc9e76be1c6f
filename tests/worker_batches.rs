//! A worker sends output in batches bounded by count and bytes, whatever the runtime produces at
//! once: an echo turn of 10,000 chunks with no delay (all of them pending when the runtime
//! returns) completes with a gapless stream, from an in-process worker and from a remote one
//! over gRPC, on SQLite and PostgreSQL. Before batching, the final report carried every pending
//! chunk and no store could take it.

mod common;

use std::time::Duration;

use common::client::{assert_gapless, start_request};
use common::fleet::Proc;
use common::{Db, Server, TestClient};
use serde_json::json;

const CHUNKS: usize = 10_000;

/// Starts a 10,000-chunk echo turn and checks that its whole output arrives once, in order.
async fn run_ten_thousand_chunks(c: &mut TestClient) {
    c.create_agent("bulk", "echo", json!({ "delay_ms": 0 }))
        .await;
    let prompt = "x ".repeat(CHUNKS);
    let id = c.start(start_request("bulk", &[&prompt])).await;
    let watched = c.watch_within(&id, 0, Duration::from_secs(180)).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );
    assert_eq!(watched.chunks.len(), CHUNKS);
    assert_gapless(&watched.chunks, 1);
    assert_eq!(watched.text(), prompt);
}

async fn ten_thousand_chunks_from_an_in_process_worker(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    run_ten_thousand_chunks(&mut c).await;
}

async fn ten_thousand_chunks_from_a_remote_worker(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let _worker = Proc::worker("bulk-worker", &[&url], &["--runtimes", "echo"], &[]);
    let mut c = TestClient::connect(&url).await;
    run_ten_thousand_chunks(&mut c).await;
}

on_both_stores!(
    ten_thousand_chunks_from_an_in_process_worker,
    ten_thousand_chunks_from_a_remote_worker,
);
