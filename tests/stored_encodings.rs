//! Everything written can be read back: a property test over the domain types the store keeps
//! (the agent machine's snapshot, history events, usage, failures, retry policies, timeouts),
//! with extreme values (u64::MAX counts, NaN, infinities, the largest and smallest floats, long
//! unicode strings), through the real encodings of a real SQLite file and a real PostgreSQL
//! database: the snapshot and every event decode again to what was written, and the summary
//! columns hold what the store documents.
//!
//! Strings carry no NUL: PostgreSQL cannot store one in text or JSON, and refusing them at the
//! API edge is another part of the work (both stores must answer the same way there).

#[allow(
    unused_imports,
    reason = "this test uses only the databases of the shared test code"
)]
mod common;

use std::sync::Arc;

use cairn::domain::{
    AgentSpec, ExecutionKind, Failure, HistoryEvent, RetryPolicy, Timeouts, Usage,
};
use cairn::machine::{ExecutionState, MachineContext, step_any};
use cairn::store::{
    CommitOutcome, NewExecution, RowState, RowWrite, SnapshotJson, Store, Transition,
};
use common::Db;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        any::<u64>(),
    ]
}

fn extreme_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(-0.0),
        Just(0.1 + 0.2),
        // An integral float past 1e16: JSON writes it with an exponent, and PostgreSQL's
        // `jsonb` gives it back as the integer it is.
        Just(-3.765542708433981e16),
        any::<f64>(),
    ]
}

/// Printable unicode of any length up to a few thousand characters (no control characters, so
/// no NUL; see the module comment).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[\u{1F600}-\u{1F64F}\u{4E00}-\u{4FFF}é\u{200D}\u{FEFF}]{1,200}",
        "\\PC{2000,4000}",
    ]
}

fn usage() -> impl Strategy<Value = Usage> {
    (extreme_u64(), extreme_u64(), extreme_f64(), extreme_u64()).prop_map(
        |(input_tokens, output_tokens, cost_usd, tool_calls)| Usage {
            input_tokens,
            output_tokens,
            cost_usd,
            tool_calls,
        },
    )
}

fn failure() -> impl Strategy<Value = Failure> {
    (text(), text(), any::<bool>(), text(), extreme_f64()).prop_map(
        |(code, message, retryable, detail, number)| Failure {
            code,
            message,
            retryable,
            details: json!({ "detail": detail, "number": serde_json::Number::from_f64(number) }),
        },
    )
}

fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        extreme_u64(),
        extreme_f64(),
        extreme_u64(),
        any::<u32>(),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(
            |(initial, coefficient, maximum, attempts, codes)| RetryPolicy {
                initial_interval_ms: initial,
                backoff_coefficient: coefficient,
                maximum_interval_ms: maximum,
                maximum_attempts: attempts,
                non_retryable_codes: codes,
            },
        )
}

fn timeouts() -> impl Strategy<Value = Timeouts> {
    (extreme_u64(), extreme_u64(), extreme_u64()).prop_map(|(s, c, h)| Timeouts {
        schedule_to_start_ms: s,
        start_to_close_ms: c,
        heartbeat_ms: h,
    })
}

/// One execution's worth of domain values.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    prompts: Vec<String>,
    policy: RetryPolicy,
    timeouts: Timeouts,
    usage: Usage,
    output: String,
    failure: Failure,
    retry_after_ms: Option<u64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        text(),
        proptest::collection::vec(text(), 2..4),
        retry_policy(),
        timeouts(),
        usage(),
        text(),
        failure(),
        proptest::option::of(extreme_u64()),
    )
        .prop_map(
            |(name, prompts, policy, timeouts, usage, output, failure, retry_after_ms)| Case {
                name,
                prompts,
                policy,
                timeouts,
                usage,
                output,
                failure,
                retry_after_ms,
            },
        )
}

/// The events of an execution that ran turn 1 (completed with the case's usage) and failed an
/// attempt of turn 2, through the real machine; and its snapshot afterwards.
fn run(id: Uuid, case: &Case) -> (Vec<HistoryEvent>, ExecutionState) {
    let ctx = MachineContext { execution_id: id };
    let mut state = None;
    let mut events = Vec::new();
    let mut feed = |input: HistoryEvent, state: &mut Option<ExecutionState>| {
        let (next, commands) = step_any(ctx, state.take(), &input).expect("a valid transition");
        events.push(input);
        events.extend(commands);
        *state = Some(next);
    };
    let started = HistoryEvent::ExecutionStarted {
        agent: AgentSpec {
            id: Uuid::now_v7(),
            name: case.name.clone(),
            runtime: "echo".into(),
            model_id: case.output.clone(),
            configuration: json!({ "runtime_config": { "note": case.name } }),
        },
        prompts: case.prompts.clone(),
        retry_policy: case.policy.clone(),
        timeouts: case.timeouts.clone(),
        resume: None,
        queue: "default".into(),
        traceparent: None,
        conversation: None,
        execution_timeout_ms: None,
    };
    feed(started, &mut state);
    for turn in 0..2 {
        let Some(ExecutionState::Agent(agent)) = &state else {
            unreachable!()
        };
        let activity = agent.activity.clone().expect("a scheduled turn");
        feed(
            HistoryEvent::ActivityStarted {
                activity_id: activity.activity_id.clone(),
                attempt: activity.attempt,
                worker: case.name.clone(),
                started_at: T0,
                workspace: Some(case.name.clone()),
            },
            &mut state,
        );
        let ended = if turn == 0 {
            HistoryEvent::ActivityCompleted {
                activity_id: activity.activity_id.clone(),
                attempt: activity.attempt,
                output: json!({ "text": case.output }),
                usage: case.usage,
                checkpoint: Some(json!({ "transcript": [case.output, case.name] })),
            }
        } else {
            HistoryEvent::ActivityFailed {
                activity_id: activity.activity_id.clone(),
                attempt: activity.attempt,
                failure: case.failure.clone(),
                retry_after_ms: case.retry_after_ms,
                at: T0,
            }
        };
        feed(ended, &mut state);
    }
    (events, state.expect("a state"))
}

/// JSON equality where numbers are equal by value (a float that is an integer may come back as
/// one from PostgreSQL's `numeric`, and `-0.0` as `0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_u64(), y.as_u64(), x.as_i64(), y.as_i64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// At most 100 characters of `s`.
fn short(s: &str) -> String {
    s.chars().take(100).collect()
}

fn stored_count(n: u64) -> u64 {
    n.min(i64::MAX as u64)
}

async fn check(store: &Arc<dyn Store>, case: &Case) -> Result<(), TestCaseError> {
    let id = Uuid::now_v7();
    let (events, state) = run(id, case);
    let snapshot = state.to_json().expect("a snapshot serializes");
    let usage = state.usage();
    let create = Transition {
        execution_id: id,
        row_write: RowWrite::Create(Box::new(NewExecution {
            namespace: "default".into(),
            kind: ExecutionKind::Agent,
            agent_id: None,
            runtime: "echo".into(),
            input: json!({ "prompts": case.prompts }),
            parent_id: None,
            root_id: id,
            retry_of: None,
            // Indexed columns take short values: PostgreSQL refuses a btree entry over 2,704
            // bytes ("index row size exceeds maximum"), so the API edge bounds these lengths.
            // Unique per case: proptest draws (and, shrinking, repeats) equal names, and a
            // repeated request id is a `Duplicate`, not what this test checks.
            request_id: Some(format!("{}-{id}", short(&case.name))),
            team_id: None,
            child_key: None,
            labels: [(short(&case.name), short(&case.output))].into(),
        })),
        row: RowState {
            status: state.status(),
            state: SnapshotJson::of(&state).expect("a snapshot serializes"),
            result: Some(json!({ "text": case.output })),
            failure: Some(case.failure.clone()),
            usage,
            closed_at: None,
        },
        fences: vec![],
        events: events.clone(),
        chunks: vec![],
        tasks: vec![],
        timers: vec![],
        now: T0,
        children: vec![],
        objects: Vec::new(),
    };
    let outcome = store
        .commit(&[create])
        .await
        .expect("every value can be written");
    prop_assert_eq!(&outcome, &[CommitOutcome::Committed]);

    let record = store
        .get_execution(id)
        .await
        .expect("the row reads back")
        .expect("it exists");
    let decoded = ExecutionState::from_json(ExecutionKind::Agent, &record.state)
        .expect("the snapshot decodes");
    let again = decoded.to_json().unwrap();
    prop_assert!(same(&again, &snapshot), "snapshot {again} != {snapshot}");
    prop_assert_eq!(decoded.status(), state.status());
    // A failure's details are JSON like the snapshot: equal by value (see `same`).
    let failure = record.failure.as_ref().expect("the failure reads back");
    prop_assert_eq!(
        (&failure.code, &failure.message, failure.retryable),
        (
            &case.failure.code,
            &case.failure.message,
            case.failure.retryable
        )
    );
    prop_assert!(
        same(&failure.details, &case.failure.details),
        "failure details {} != {}",
        failure.details,
        case.failure.details
    );
    prop_assert_eq!(
        record.labels.get(&short(&case.name)),
        Some(&short(&case.output))
    );
    prop_assert_eq!(record.usage.input_tokens, stored_count(usage.input_tokens));
    prop_assert_eq!(
        record.usage.output_tokens,
        stored_count(usage.output_tokens)
    );
    prop_assert_eq!(record.usage.tool_calls, stored_count(usage.tool_calls));
    // The cost column keeps NaN and subnormal costs as 0 (see `stored_cost` in the store).
    if usage.cost_usd.is_nan() || usage.cost_usd.is_subnormal() {
        prop_assert_eq!(record.usage.cost_usd, 0.0);
    } else if usage.cost_usd.is_finite() {
        // The cost column is the listing's summary; a group commit hands it to the database as
        // JSON text, and SQLite's text-to-real conversion can land one or two units in the last
        // place off for 17-digit numbers. The snapshot (checked below) keeps the exact value.
        let (stored, written) = (record.usage.cost_usd, usage.cost_usd);
        prop_assert!(
            (stored - written).abs() <= written.abs() * 4.0 * f64::EPSILON,
            "cost column {stored} != {written}"
        );
    } else {
        prop_assert_eq!(record.usage.cost_usd, usage.cost_usd);
    }
    // The usage inside the snapshot is exact, NaN included.
    let inner = decoded.usage();
    prop_assert_eq!(inner.input_tokens, usage.input_tokens);
    prop_assert!(
        inner.cost_usd == usage.cost_usd || (inner.cost_usd.is_nan() && usage.cost_usd.is_nan()),
        "cost {} != {}",
        inner.cost_usd,
        usage.cost_usd
    );

    let history = store
        .history(id, 0, 1_000)
        .await
        .expect("every event decodes");
    prop_assert_eq!(history.len(), events.len());
    for (stored, written) in history.iter().zip(&events) {
        let (a, b) = (
            serde_json::to_value(&stored.event).unwrap(),
            serde_json::to_value(written).unwrap(),
        );
        prop_assert!(same(&a, &b), "event {a} != {b}");
    }
    Ok(())
}

fn round_trip(db: Db, rt: &tokio::runtime::Runtime) {
    let store = rt.block_on(db.store());
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |case| rt.block_on(check(&store, &case)))
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_reads_back_everything_it_writes() {
    let rt = runtime();
    let db = rt.block_on(Db::sqlite());
    round_trip(db, &rt);
}

#[test]
fn postgres_reads_back_everything_it_writes() {
    let rt = runtime();
    match rt.block_on(Db::postgres()) {
        Some(db) => round_trip(db, &rt),
        None => eprintln!("skipped: set CAIRN_TEST_POSTGRES_URL to run the PostgreSQL variant"),
    }
}

/// PostgreSQL compresses the JSON columns a commit writes (the machine state above all, which
/// passes 2 KB within a few turns and is rewritten at every one) with lz4 where the server has
/// it, pglz where it has not, and fills the pages of `executions` to 70% (migration 0015).
#[test]
fn postgres_stores_what_it_rewrites_compressed_with_lz4_and_with_room() {
    let rt = runtime();
    let Some(db) = rt.block_on(Db::postgres()) else {
        eprintln!("skipped: set CAIRN_TEST_POSTGRES_URL to run the PostgreSQL variant");
        return;
    };
    rt.block_on(async {
        let _migrated = db.store().await;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let has_lz4 = sqlx::query("CREATE TEMP TABLE lz4_probe (x TEXT COMPRESSION lz4)")
            .execute(&pool)
            .await
            .is_ok();
        let methods: Vec<(String, String)> = sqlx::query_as(
            "SELECT attrelid::regclass::text || '.' || attname, attcompression::text \
             FROM pg_attribute WHERE attrelid IN ('executions'::regclass, \
             'history_events'::regclass, 'output_chunks'::regclass, 'tasks'::regclass) \
             AND attname IN ('state', 'input', 'result', 'failure', 'payload', 'data', 'turn', \
             'checkpoint') ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(methods.len(), 8, "{methods:?}");
        let expected = if has_lz4 { "l" } else { "" };
        for (column, method) in &methods {
            assert_eq!(method, expected, "{column} (lz4 available: {has_lz4})");
        }
        // And `executions` leaves room on its pages for HOT updates.
        let options: Vec<String> = sqlx::query_scalar(
            "SELECT unnest(reloptions) FROM pg_class WHERE oid = 'executions'::regclass",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(options, ["fillfactor=70"]);
        pool.close().await;
    });
}
