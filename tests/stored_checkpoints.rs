//! Checkpoints as stored objects, through the whole engine with the `default` runtime against a
//! fake OpenAI-compatible server: a long conversation keeps its history linear in its turns and
//! stores its transcript about once; after a SIGKILL of the server every stored reference still
//! reads back; and an object whose transaction dies with the server (killed while that
//! transaction is open, PostgreSQL) is not there.

mod common;
mod fake_openai;

use cairn::store::Store;
use common::client::{fast_retries, start_request};
use common::{Db, Server};
use fake_openai::{FakeOpenAi, Reply};
use serde_json::{Value, json};

/// An answer of about 300 bytes, different for every turn.
fn answer(turn: usize) -> Vec<String> {
    (0..6)
        .map(|i| format!("turn {turn} part {i}: {} ", "words ".repeat(7)))
        .collect()
}

fn push_answers(model: &FakeOpenAi, turns: std::ops::Range<usize>) {
    for turn in turns {
        let pieces = answer(turn);
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        model.push(Reply::text(&pieces));
    }
}

/// Every `{"$object": id}` in `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("$object") {
                out.push(id.clone());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// Each reference reads back as a chain that ends at a whole value.
async fn assert_resolvable(store: &dyn Store, ids: &[String]) {
    for id in ids {
        let chain = store.object_chain(id).await.unwrap();
        assert!(!chain.is_empty(), "{id} is stored");
        assert_eq!(chain.last().unwrap().base, None, "{id}'s chain is whole");
    }
}

const TURNS: usize = 50;

/// The old layout copied the whole transcript into every turn's `ActivityCompleted`; here no
/// event grows with the conversation. The final transcript is about 50 × 340 bytes, so this
/// bound (an inline checkpoint of up to 1 KiB and an answer) is broken by the old layout from
/// about turn 6 on.
const MAX_EVENT_BYTES: usize = 2_000;

async fn fifty_turns_keep_history_linear_and_store_the_transcript_about_once(db: Db) {
    let model = FakeOpenAi::start().await;
    push_answers(&model, 0..TURNS);
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("talker", "gpt-test", json!({})).await;
    let prompts: Vec<String> = (0..TURNS).map(|t| format!("question {t}?")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let id = c.start(start_request("talker", &prompts)).await;
    let watched = c
        .watch_within(&id, 0, std::time::Duration::from_secs(240))
        .await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());

    let history = c.history(&id).await;
    let sizes: Vec<(String, usize)> = history
        .iter()
        .map(|e| (e.kind.clone(), e.payload.to_string().len()))
        .collect();
    let (largest_kind, largest) = sizes.iter().max_by_key(|(_, n)| *n).unwrap();
    assert!(
        *largest <= MAX_EVENT_BYTES,
        "no event grows with the conversation: a {largest_kind} has {largest} bytes"
    );
    let total: usize = sizes.iter().map(|(_, n)| n).sum();
    assert!(
        total <= TURNS * 4 * MAX_EVENT_BYTES / 2,
        "history bytes are linear in the turns: {total} for {TURNS} turns"
    );
    let mut ids = Vec::new();
    history
        .iter()
        .for_each(|e| references(&e.payload, &mut ids));
    assert!(
        ids.len() > TURNS / 2,
        "the larger checkpoints are stored objects: {ids:?}"
    );

    // The last request carried the whole conversation but its last answer.
    let requests = model.requests();
    assert_eq!(requests.len(), TURNS, "one model call per turn");
    let last = &requests[TURNS - 1].body["messages"];
    let transcript = last.to_string().len() + answer(TURNS - 1).concat().len();
    let store = db.store().await;
    assert_resolvable(&*store, &ids).await;
    let (objects, bytes) = store.object_totals().await.unwrap();
    eprintln!(
        "history {total} bytes; {objects} objects, {bytes} bytes; final transcript {transcript} bytes"
    );
    assert!(
        bytes as usize <= 4 * transcript,
        "{objects} objects hold {bytes} bytes for a final transcript of {transcript}"
    );
}

async fn after_a_sigkill_every_stored_checkpoint_reads_back(db: Db) {
    let model = FakeOpenAi::start().await;
    // Enough answers for every turn and for the turns a kill makes run again.
    push_answers(&model, 0..200);
    let mut server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("talker", "gpt-test", json!({})).await;
    let prompts: Vec<String> = (0..12).map(|t| format!("question {t}?")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut request = start_request("talker", &prompts);
        request.retry_policy = Some(fast_retries(10));
        request.timeouts = Some(cairn::api::pb::Timeouts {
            heartbeat_ms: 1_000,
            ..Default::default()
        });
        ids.push(c.start(request).await);
    }
    let store = db.store().await;
    // Kill once objects are being written, mid-run.
    c.wait_until(&ids[0], "turns with stored checkpoints", |e| {
        e.output_length >= 6 * 6
    })
    .await;
    server.kill();

    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    let mut referenced = Vec::new();
    for id in &ids {
        let watched = c
            .watch_within(id, 0, std::time::Duration::from_secs(120))
            .await;
        assert_eq!(watched.closed.status, "COMPLETED", "{id}");
        for event in c.history(id).await {
            references(&event.payload, &mut referenced);
        }
    }
    assert!(!referenced.is_empty());
    assert_resolvable(&*store, &referenced).await;
}

/// Kill -9 the server while a transaction that has inserted a checkpoint object is still open:
/// the object must not be there afterwards. A trigger the test installs on `objects` holds each
/// inserting transaction inside the insert, after the row is written: it first takes a shared
/// advisory lock keyed by the row's id (which the test reads from `pg_locks`), then waits for an
/// advisory lock the test holds. PostgreSQL only: SQLite offers no way to hold a server's
/// transaction open from outside it (the SQL is the same macro for both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_transaction_dies_with_the_server_is_not_stored() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let model = FakeOpenAi::start().await;
    push_answers(&model, 0..100);
    let mut server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("talker", "gpt-test", json!({})).await;

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION cairn_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           PERFORM pg_advisory_xact_lock_shared(7, hashtext(NEW.id)); \
           PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$; \
         CREATE TRIGGER cairn_test_stall AFTER INSERT ON objects \
           FOR EACH ROW EXECUTE FUNCTION cairn_test_stall();",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Held by this connection until it is released below.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *holder)
        .await
        .unwrap();

    let prompts: Vec<String> = (0..6).map(|t| format!("question {t}?")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let mut request = start_request("talker", &prompts);
    request.retry_policy = Some(fast_retries(10));
    request.timeouts = Some(cairn::api::pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let id = c.start(request).await;

    // Wait for a transaction to be held inside its object insert.
    let key: i64 = common::wait_for("an object insert held open", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = 7 AND granted LIMIT 1",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
    })
    .await;
    let stored_before: i64 = sqlx::query_scalar("SELECT count(*) FROM objects")
        .fetch_one(&pool)
        .await
        .unwrap();
    server.kill();
    // Let the held insert finish: its backend then finds its client gone and rolls the
    // transaction back (a backend waiting for a lock does not notice a closed socket).
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *holder)
        .await
        .unwrap();
    common::wait_for("the held transaction to end", || async {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (held == 0).then_some(())
    })
    .await;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM objects WHERE hashtext(id)::oid::bigint = $1")
            .bind(key)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stored, 0,
        "the object of a transaction that never committed is not stored"
    );
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM objects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, stored_before, "no object appeared with the crash");

    // The retry stores its checkpoints, and every one it refers to reads back.
    sqlx::raw_sql("DROP TRIGGER cairn_test_stall ON objects; DROP FUNCTION cairn_test_stall();")
        .execute(&pool)
        .await
        .unwrap();
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    let watched = c
        .watch_within(&id, 0, std::time::Duration::from_secs(120))
        .await;
    assert_eq!(watched.closed.status, "COMPLETED");
    let mut referenced = Vec::new();
    for event in c.history(&id).await {
        references(&event.payload, &mut referenced);
    }
    assert!(
        !referenced.is_empty(),
        "the conversation stored checkpoints"
    );
    assert_resolvable(&*db.store().await, &referenced).await;
}

on_both_stores!(
    fifty_turns_keep_history_linear_and_store_the_transcript_about_once,
    after_a_sigkill_every_stored_checkpoint_reads_back,
);
