//! The bounds every request field is checked against, in one list so that clients, operators and
//! tests can read them. Each is far above what real use needs and low enough that nothing built
//! from a value can overflow what the stores hold (an i64 of milliseconds, a BIGINT, a TEXT).
//! The bounds of retry policies and timeouts live with those types in the domain.

pub use crate::domain::{MAX_CODE_BYTES, MAX_DURATION_MS};

/// The most turns (prompts) one execution may have; the state is rewritten on every turn.
pub const MAX_TURNS: usize = 1_000;

/// The most labels one execution (or one list filter) may carry.
pub const MAX_LABELS: usize = 32;

/// The longest label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 63;

/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// The longest agent or team name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// The longest runtime name, in bytes.
pub const MAX_RUNTIME_BYTES: usize = 63;

/// The longest model id, in bytes.
pub const MAX_MODEL_ID_BYTES: usize = 256;

/// The largest configuration JSON of an agent, in bytes.
pub const MAX_CONFIGURATION_BYTES: usize = 256 * 1024;

/// The longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// The longest cancel reason, in bytes.
pub const MAX_REASON_BYTES: usize = 4 * 1024;

/// The longest team member role, in bytes.
pub const MAX_ROLE_BYTES: usize = 4 * 1024;

/// The longest worker id, in bytes.
pub const MAX_WORKER_ID_BYTES: usize = 256;

/// The most runtimes one poll may name.
pub const MAX_POLL_RUNTIMES: usize = 64;

/// The most bytes of an external runtime's description (`RegisterRuntimes`).
pub const MAX_RUNTIME_DESCRIPTION_BYTES: usize = 4 * 1024;

/// The most bytes of an external runtime's configuration schema (`RegisterRuntimes`).
pub const MAX_CONFIG_SCHEMA_BYTES: usize = 64 * 1024;

/// The longest activity id or lease token a lease may carry, in bytes.
pub const MAX_LEASE_PART_BYTES: usize = 128;

/// The longest chunk kind, in bytes.
pub const MAX_CHUNK_KIND_BYTES: usize = 64;

/// The largest JSON document in a worker report (one chunk's data, the checkpoint, the output, a
/// failure's details), in bytes. It is below the 4 MiB the gRPC transport accepts in one message,
/// so a report over it is refused with this limit named rather than by the transport; the
/// `default` runtime's checkpoint is a whole transcript, hence the room.
pub const MAX_REPORT_JSON_BYTES: usize = crate::contract::MAX_DOCUMENT_BYTES;

/// The longest failure message a worker may report, in bytes.
pub const MAX_FAILURE_MESSAGE_BYTES: usize = 64 * 1024;

/// The most tokens (input or output) one report may count: a trillion. Sums over an execution
/// stay far below the `i64::MAX` a BIGINT holds.
pub const MAX_TOKENS: u64 = 1_000_000_000_000;

/// The most tool calls one report may count.
pub const MAX_TOOL_CALLS: u64 = 1_000_000_000;

/// The highest cost in US dollars one report may state.
pub const MAX_COST_USD: f64 = 1_000_000_000.0;

/// The highest seq a request may name: seqs are stored as BIGINT.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The most bytes of a worker's policy document (`PollTasks.policy_json`).
pub const MAX_POLICY_BYTES: usize = 64 << 10;
