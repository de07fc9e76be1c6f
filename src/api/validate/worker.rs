//! Checks of what workers send: polls, leases, chunks, checkpoints, outputs and failures. A
//! report over a limit is refused with INVALID_ARGUMENT, which a worker must not retry.

use tonic::Status;

use super::super::error::invalid;
use super::super::pb;
use super::limits::{
    MAX_CHUNK_KIND_BYTES, MAX_CODE_BYTES, MAX_CONFIG_SCHEMA_BYTES, MAX_FAILURE_MESSAGE_BYTES,
    MAX_POLICY_BYTES, MAX_POLL_RUNTIMES, MAX_REPORT_JSON_BYTES, MAX_RUNTIME_BYTES,
    MAX_RUNTIME_DESCRIPTION_BYTES, MAX_WORKER_ID_BYTES,
};
use super::text::{json, plain, quote, text};
use crate::contract::{Registration, RuntimeSpec};
use crate::domain::{Failure, WorkerPolicy};

/// A worker id: required, plain text within its limit.
pub(crate) fn worker_id(worker_id: &str) -> Result<(), Status> {
    if worker_id.is_empty() {
        return Err(invalid("worker_id is required"));
    }
    plain("worker_id", worker_id, MAX_WORKER_ID_BYTES)
}

/// A poll's worker id and runtimes.
pub(crate) fn poller(worker_id: &str, runtimes: &[String]) -> Result<(), Status> {
    self::worker_id(worker_id)?;
    if runtimes.is_empty() {
        return Err(invalid(
            "runtimes is required: name the runtimes this worker has",
        ));
    }
    if runtimes.len() > MAX_POLL_RUNTIMES {
        return Err(invalid(format!(
            "{} runtimes given; a poll names at most {MAX_POLL_RUNTIMES}",
            runtimes.len()
        )));
    }
    for runtime in runtimes {
        if runtime.is_empty() {
            return Err(invalid("runtimes holds an empty name"));
        }
        plain("a runtime name", runtime, MAX_RUNTIME_BYTES)?;
    }
    Ok(())
}

/// A poll's `policy_json`: empty (no policy), or a worker policy document within
/// [`MAX_POLICY_BYTES`] that could hold.
pub(crate) fn policy(policy_json: &str) -> Result<Option<WorkerPolicy>, Status> {
    if policy_json.is_empty() {
        return Ok(None);
    }
    text("policy_json", policy_json, MAX_POLICY_BYTES)?;
    WorkerPolicy::from_json(policy_json)
        .map(Some)
        .map_err(|e| invalid(format!("policy_json: {e}")))
}

/// A registration of external runtimes: the worker id and runtime names as a poll's, each
/// description and schema within its limit, the schema a JSON object (or empty, for `{}`).
/// Whether the schema is a valid JSON Schema is the engine's check.
pub(crate) fn registration(r: pb::RegisterRuntimesRequest) -> Result<Registration, Status> {
    let names: Vec<String> = r.runtimes.iter().map(|s| s.name.clone()).collect();
    poller(&r.worker_id, &names)?;
    let runtimes = r
        .runtimes
        .into_iter()
        .map(|spec| {
            let field = |f: &str| format!("runtimes[{}].{f}", quote(&spec.name));
            text(
                &field("description"),
                &spec.description,
                MAX_RUNTIME_DESCRIPTION_BYTES,
            )?;
            let config_schema = if spec.config_schema_json.is_empty() {
                serde_json::json!({})
            } else {
                json(
                    &field("config_schema_json"),
                    &spec.config_schema_json,
                    MAX_CONFIG_SCHEMA_BYTES,
                )?
            };
            if !config_schema.is_object() && !config_schema.is_boolean() {
                return Err(invalid(format!(
                    "{} must be a JSON Schema: an object (or true/false)",
                    field("config_schema_json")
                )));
            }
            Ok(RuntimeSpec {
                name: spec.name,
                description: spec.description,
                config_schema,
            })
        })
        .collect::<Result<_, Status>>()?;
    Ok(Registration {
        worker_id: r.worker_id,
        runtimes,
    })
}

/// A chunk a worker reports; `i` is its place in the report, for the message.
pub(crate) fn chunk(i: usize, c: &pb::ChunkIn) -> Result<serde_json::Value, Status> {
    if c.kind.is_empty() {
        return Err(invalid(format!("chunk {i} has no kind")));
    }
    plain(&format!("chunk {i} kind"), &c.kind, MAX_CHUNK_KIND_BYTES)?;
    json(
        &format!("chunk {i} data_json"),
        &c.data_json,
        MAX_REPORT_JSON_BYTES,
    )
}

/// An optional JSON document of a report (checkpoint, output); empty means none.
pub(crate) fn report_json(field: &str, s: &str) -> Result<Option<serde_json::Value>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    json(field, s, MAX_REPORT_JSON_BYTES).map(Some)
}

/// A failure a worker reports.
pub(crate) fn failure(f: Option<pb::Failure>) -> Result<Failure, Status> {
    let f = f.ok_or_else(|| invalid("failure is required"))?;
    if f.code.is_empty() {
        return Err(invalid("failure.code is required"));
    }
    plain("failure.code", &f.code, MAX_CODE_BYTES)?;
    text("failure.message", &f.message, MAX_FAILURE_MESSAGE_BYTES)?;
    Ok(Failure {
        details: report_json("failure.details_json", &f.details_json)?.unwrap_or_default(),
        code: f.code,
        message: f.message,
        retryable: f.retryable,
    })
}

/// The directory an attempt worked in, as its worker names it ("" for none): a path of at
/// most 4 KiB, printable.
pub(crate) fn workspace(s: &str) -> Result<Option<String>, Status> {
    plain("workspace", s, 4096)?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A lease's activity id and token, which the store compares as text.
pub(crate) fn lease_part(field: &str, s: &str) -> Result<(), Status> {
    plain(field, s, super::limits::MAX_LEASE_PART_BYTES).map_err(|_| {
        invalid(format!(
            "{field} `{}` is not one this server issued",
            quote(s)
        ))
    })
}
