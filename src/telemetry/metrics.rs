//! Cairn's metrics: OpenTelemetry instruments, exported in the Prometheus text format on
//! `--metrics-listen ADDR` (`GET /metrics`) and pushed over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Names follow the Prometheus conventions the OpenTelemetry exporter derives: `cairn.x.y` with
//! unit `s` is `cairn_x_y_seconds`, counters end in `_total`. Counters are per process (the
//! servers and workers each count what they did; Prometheus sums them). Label values are bounded:
//! runtime, queue, model, tool, failure code, outcome — never an id. Gauges only the database
//! knows (tasks waiting, connected workers, slots in use) are read at scrape time by the hook the
//! node registers ([`set_refresher`]), one grouped query per scrape.
//!
//! Every function here is cheap and safe to call with no meter provider installed: instruments
//! are then no-ops.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

use super::exporter::DB_GAUGES;
pub use super::exporter::{DbGauges, MetricsError, Refresher, refresh, serve, set_refresher};

/// Histogram bounds for durations, in seconds: 5 ms to an hour.
const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];
/// Histogram bounds for group-commit batch sizes.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Every instrument, made once from the global meter provider.
struct Instruments {
    executions_started: Counter<u64>,
    executions_completed: Counter<u64>,
    executions_failed: Counter<u64>,
    executions_canceled: Counter<u64>,
    execution_duration: Histogram<f64>,
    activity_failures: Counter<u64>,
    input_tokens: Counter<u64>,
    output_tokens: Counter<u64>,
    cost: Counter<f64>,
    tool_calls: Counter<u64>,
    tool_executions: Counter<u64>,
    activities_scheduled: Counter<u64>,
    activities_retried: Counter<u64>,
    activities_timed_out: Counter<u64>,
    leases_expired: Counter<u64>,
    schedule_to_start: Histogram<f64>,
    attempt_duration: Histogram<f64>,
    commits: Counter<u64>,
    commit_batch: Histogram<u64>,
    commit_duration: Histogram<f64>,
    long_polls: UpDownCounter<i64>,
    stream_subscribers: UpDownCounter<i64>,
    attempts_running: UpDownCounter<i64>,
    chunks_sent: Counter<u64>,
    bytes_sent: Counter<u64>,
    reconnects: Counter<u64>,
}

fn seconds(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(SECONDS.to_vec())
        .build()
}

fn counter(meter: &Meter, name: &'static str, description: &'static str) -> Counter<u64> {
    meter
        .u64_counter(name)
        .with_description(description)
        .build()
}

fn observe_db_gauges(meter: &Meter) {
    meter
        .u64_observable_gauge("cairn.tasks.waiting")
        .with_description("Tasks ready for a worker and not claimed, by queue and runtime (read from the database at scrape time)")
        .with_callback(|observer| {
            let gauges = DB_GAUGES.lock().expect("not poisoned");
            for ((queue, runtime), count) in &gauges.tasks_waiting {
                observer.observe(
                    *count,
                    &[
                        KeyValue::new("queue", queue.clone()),
                        KeyValue::new("runtime", runtime.clone()),
                    ],
                );
            }
        })
        .build();
    meter
        .u64_observable_gauge("cairn.workers.connected")
        .with_description("Workers heard from recently, on any server")
        .with_callback(|observer| {
            observer.observe(
                DB_GAUGES.lock().expect("not poisoned").workers_connected,
                &[],
            );
        })
        .build();
    meter
        .u64_observable_gauge("cairn.worker.slots")
        .with_description("Slots the connected workers announced")
        .with_callback(|observer| {
            observer.observe(DB_GAUGES.lock().expect("not poisoned").worker_slots, &[]);
        })
        .build();
    meter
        .u64_observable_gauge("cairn.worker.slots.in_use")
        .with_description("Leases the connected workers hold")
        .with_callback(|observer| {
            observer.observe(
                DB_GAUGES.lock().expect("not poisoned").worker_slots_in_use,
                &[],
            );
        })
        .build();
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let m = opentelemetry::global::meter("cairn");
        observe_db_gauges(&m);
        Instruments {
            executions_started: counter(
                &m,
                "cairn.executions.started",
                "Executions started, by runtime",
            ),
            executions_completed: counter(
                &m,
                "cairn.executions.completed",
                "Executions that completed, by runtime",
            ),
            executions_failed: counter(
                &m,
                "cairn.executions.failed",
                "Executions that failed, by runtime and failure code",
            ),
            executions_canceled: counter(
                &m,
                "cairn.executions.canceled",
                "Executions that were cancelled, by runtime",
            ),
            execution_duration: seconds(
                &m,
                "cairn.execution.duration",
                "From start to close, by runtime and status",
            ),
            activity_failures: counter(
                &m,
                "cairn.activity.failures",
                "Attempts that failed or timed out, by runtime and failure code",
            ),
            input_tokens: counter(
                &m,
                "cairn.input_tokens",
                "Prompt tokens of completed turns, by runtime and model",
            ),
            output_tokens: counter(
                &m,
                "cairn.output_tokens",
                "Completion tokens of completed turns, by runtime and model",
            ),
            cost: m
                .f64_counter("cairn.cost_usd")
                .with_description("Cost in US dollars of completed turns, by runtime and model")
                .build(),
            tool_calls: counter(
                &m,
                "cairn.tool_calls",
                "Tool calls of completed turns, by runtime",
            ),
            tool_executions: counter(
                &m,
                "cairn.tool_executions",
                "Tool calls a runtime made, by runtime, tool and outcome",
            ),
            activities_scheduled: counter(
                &m,
                "cairn.activities.scheduled",
                "Attempts scheduled (first and retries), by runtime and queue",
            ),
            activities_retried: counter(
                &m,
                "cairn.activities.retried",
                "Attempts scheduled after a failed one, by runtime",
            ),
            activities_timed_out: counter(
                &m,
                "cairn.activities.timed_out",
                "Attempts that ran out of time, by runtime and kind",
            ),
            leases_expired: counter(
                &m,
                "cairn.leases.expired",
                "Leases that expired without progress (heartbeat timeouts), by runtime",
            ),
            schedule_to_start: seconds(
                &m,
                "cairn.schedule_to_start",
                "From an attempt ready to its claim, by runtime and queue",
            ),
            attempt_duration: seconds(
                &m,
                "cairn.attempt.duration",
                "From claim to outcome, by runtime and outcome",
            ),
            commits: counter(
                &m,
                "cairn.commits",
                "Database transactions of the group committer",
            ),
            commit_batch: m
                .u64_histogram("cairn.commit.batch_size")
                .with_description("Transitions per group commit")
                .with_boundaries(BATCH.to_vec())
                .build(),
            commit_duration: seconds(
                &m,
                "cairn.commit.duration",
                "How long one group commit took",
            ),
            long_polls: m
                .i64_up_down_counter("cairn.long_polls.waiting")
                .with_description("Worker polls waiting on this server, by queue")
                .build(),
            stream_subscribers: m
                .i64_up_down_counter("cairn.stream.subscribers")
                .with_description("Output streams open on this server")
                .build(),
            attempts_running: m
                .i64_up_down_counter("cairn.worker.attempts.running")
                .with_description("Attempts this worker runs, by runtime")
                .build(),
            chunks_sent: counter(
                &m,
                "cairn.worker.chunks.sent",
                "Output chunks this worker sent",
            ),
            bytes_sent: m
                .u64_counter("cairn.worker.sent")
                .with_unit("By")
                .with_description("Output bytes this worker sent")
                .build(),
            reconnects: counter(
                &m,
                "cairn.worker.reconnects",
                "Times this worker moved to another server",
            ),
        }
    })
}

fn runtime(runtime: &str) -> KeyValue {
    KeyValue::new("runtime", runtime.to_string())
}

/// An execution started.
pub fn execution_started(runtime_name: &str) {
    instruments()
        .executions_started
        .add(1, &[runtime(runtime_name)]);
}

/// How an execution closed.
#[derive(Debug, Clone, Copy)]
pub enum Closed<'a> {
    /// With a result.
    Completed,
    /// With a failure of this code.
    Failed(&'a str),
    /// Cancelled.
    Canceled,
}

/// An execution closed after `seconds` (from its start).
pub fn execution_closed(runtime_name: &str, how: Closed<'_>, seconds: Option<f64>) {
    let i = instruments();
    let status = match how {
        Closed::Completed => {
            i.executions_completed.add(1, &[runtime(runtime_name)]);
            "completed"
        }
        Closed::Failed(code) => {
            i.executions_failed.add(
                1,
                &[
                    runtime(runtime_name),
                    KeyValue::new("code", code.to_string()),
                ],
            );
            "failed"
        }
        Closed::Canceled => {
            i.executions_canceled.add(1, &[runtime(runtime_name)]);
            "canceled"
        }
    };
    if let Some(seconds) = seconds {
        i.execution_duration.record(
            seconds,
            &[runtime(runtime_name), KeyValue::new("status", status)],
        );
    }
}

/// A turn completed with this usage (`model` as the agent names it; `default` when empty).
pub fn turn_usage(
    runtime_name: &str,
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    tool_calls: u64,
) {
    let i = instruments();
    let model = if model.is_empty() { "default" } else { model };
    let labels = [
        runtime(runtime_name),
        KeyValue::new("model", model.to_string()),
    ];
    i.input_tokens.add(input_tokens, &labels);
    i.output_tokens.add(output_tokens, &labels);
    if cost_usd.is_finite() && cost_usd > 0.0 {
        i.cost.add(cost_usd, &labels);
    }
    i.tool_calls.add(tool_calls, &[runtime(runtime_name)]);
}

/// A runtime called a tool (`ok`: the tool answered without an error).
pub fn tool_executed(runtime_name: &str, tool: &str, ok: bool) {
    instruments().tool_executions.add(
        1,
        &[
            runtime(runtime_name),
            KeyValue::new("tool", tool.to_string()),
            KeyValue::new("outcome", if ok { "ok" } else { "error" }),
        ],
    );
}

/// An attempt was scheduled (`retry`: after a failed one).
pub fn activity_scheduled(runtime_name: &str, queue: &str, retry: bool) {
    let i = instruments();
    i.activities_scheduled.add(
        1,
        &[
            runtime(runtime_name),
            KeyValue::new("queue", queue.to_string()),
        ],
    );
    if retry {
        i.activities_retried.add(1, &[runtime(runtime_name)]);
    }
}

/// An attempt failed with this code (a timeout's code included).
pub fn activity_failed(runtime_name: &str, code: &str) {
    instruments().activity_failures.add(
        1,
        &[
            runtime(runtime_name),
            KeyValue::new("code", code.to_string()),
        ],
    );
}

/// An attempt ran out of time (`kind` a timeout code); a heartbeat timeout is an expired lease.
pub fn activity_timed_out(runtime_name: &str, kind: &str, lease_expired: bool) {
    let i = instruments();
    i.activities_timed_out.add(
        1,
        &[
            runtime(runtime_name),
            KeyValue::new("kind", kind.to_string()),
        ],
    );
    if lease_expired {
        i.leases_expired.add(1, &[runtime(runtime_name)]);
    }
}

/// An attempt waited this long between ready and claimed.
pub fn schedule_to_start(runtime_name: &str, queue: &str, seconds: f64) {
    instruments().schedule_to_start.record(
        seconds,
        &[
            runtime(runtime_name),
            KeyValue::new("queue", queue.to_string()),
        ],
    );
}

/// An attempt ended (`outcome`: completed, failed, canceled, timed_out) after running this long.
pub fn attempt_ended(runtime_name: &str, outcome: &'static str, seconds: f64) {
    instruments().attempt_duration.record(
        seconds,
        &[runtime(runtime_name), KeyValue::new("outcome", outcome)],
    );
}

/// One group commit of `transitions` took this long.
pub fn group_commit(transitions: usize, seconds: f64) {
    let i = instruments();
    i.commits.add(1, &[]);
    i.commit_batch.record(transitions as u64, &[]);
    i.commit_duration.record(seconds, &[]);
}

/// Decrements its up-down counter when dropped.
#[must_use = "the gauge goes down when this is dropped"]
pub struct Held {
    counter: &'static UpDownCounter<i64>,
    labels: Vec<KeyValue>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counter.add(-1, &self.labels);
    }
}

fn hold(counter: &'static UpDownCounter<i64>, labels: Vec<KeyValue>) -> Held {
    counter.add(1, &labels);
    Held { counter, labels }
}

/// A worker's poll waits on this server until the guard drops.
pub fn long_poll(queue: &str) -> Held {
    hold(
        &instruments().long_polls,
        vec![KeyValue::new("queue", queue.to_string())],
    )
}

/// An output stream is open until the guard drops.
pub fn stream_subscriber() -> Held {
    hold(&instruments().stream_subscribers, Vec::new())
}

/// This worker runs an attempt of `runtime` until the guard drops.
pub fn attempt_running(runtime_name: &str) -> Held {
    hold(&instruments().attempts_running, vec![runtime(runtime_name)])
}

/// This worker sent `chunks` output chunks of `bytes` bytes.
pub fn output_sent(chunks: usize, bytes: usize) {
    let i = instruments();
    i.chunks_sent.add(chunks as u64, &[]);
    i.bytes_sent.add(bytes as u64, &[]);
}

/// This worker moved on to another server.
pub fn reconnected() {
    instruments().reconnects.add(1, &[]);
}
