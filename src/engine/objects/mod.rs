//! Checkpoints as stored objects. A checkpoint a worker sends is either small enough to keep
//! inline (in the history event, the execution state and the task row, as before) or written
//! once as a content-addressed object in the same transaction as the progress or outcome that
//! carried it, while events, states and task rows hold `{"$object": id}`. Before a worker
//! resumes from it, the engine reads the object back (`resolve`), so workers and runtimes only
//! ever see whole values.
//!
//! An object is a whole value or a patch over an earlier object (`patch.rs`): the engine
//! remembers the last checkpoint it stored or resolved for each execution and stores what the
//! new one added to it, so a transcript that grows by a few messages per step stores those
//! messages, not the whole conversation again. A chain of patches is cut by a new whole value
//! once the patches' bytes would pass the bytes of the whole value they start from, so reading
//! a checkpoint back reads at most about twice its size, and all the objects of an execution
//! add up to a small multiple of its last checkpoint.
//!
//! The id is the SHA-256 of the base id and the data, so equal content is stored once and a
//! stored object is checked against its id when read. History recorded before objects existed
//! (checkpoints inline, whatever their size) reads and replays unchanged: a value that is not a
//! reference is its own checkpoint.

mod patch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Engine, EngineError};
use crate::contract::Assignment;
use crate::store::{NewObject, Objects};

/// A checkpoint whose JSON is at most this long stays inline: a reference and its row would
/// cost about as much as the value.
pub(crate) const INLINE_MAX_BYTES: usize = 1024;

/// The key of a reference: `{"$object": "sha256:..."}`.
const REFERENCE_KEY: &str = "$object";

/// How many executions' last checkpoints the engine keeps to patch against, and their bytes.
const KNOWN_ENTRIES: usize = 4096;
const KNOWN_BYTES: usize = 64 << 20;

/// The object a stored value is a reference to, if it is one.
pub(crate) fn referenced(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(REFERENCE_KEY)?.as_str(),
        _ => None,
    }
}

/// The id of an object: `sha256:` and the hex digest of its base id, a newline, and its data.
pub(crate) fn object_id(base: Option<&str>, data: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(base.unwrap_or_default().as_bytes());
    hasher.update(b"\n");
    hasher.update(data.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// The last checkpoint of an execution the engine knows to be stored, with its value.
#[derive(Debug)]
struct Known {
    id: String,
    value: Value,
    /// Bytes of the patches between the whole value the chain starts from and this object.
    chain_bytes: usize,
    /// Bytes of that whole value.
    whole_bytes: usize,
    /// Bytes of `value` as JSON, for the memory bound.
    bytes: usize,
}

/// A checkpoint ready to be written: what rows hold, and the objects to write with them.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    /// The checkpoint as events, states and task rows hold it (a reference, or the value).
    pub value: Option<Value>,
    /// The objects to write in the same transaction.
    pub objects: Vec<NewObject>,
    /// What to remember once the write committed.
    known: Option<Arc<Known>>,
}

/// The engine's side of stored checkpoints: encoding before a write, resolving before a worker
/// resumes, and the per-execution memory both use.
#[derive(Default)]
pub(crate) struct Checkpoints {
    known: Mutex<KnownMap>,
}

#[derive(Default)]
struct KnownMap {
    map: HashMap<Uuid, Arc<Known>>,
    bytes: usize,
}

impl Checkpoints {
    fn get(&self, execution: Uuid) -> Option<Arc<Known>> {
        self.lock().map.get(&execution).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KnownMap> {
        self.known.lock().expect("the lock is never poisoned")
    }

    fn put(&self, execution: Uuid, known: Arc<Known>) {
        let mut known_map = self.lock();
        let bytes = known.bytes;
        if let Some(old) = known_map.map.insert(execution, known) {
            known_map.bytes -= old.bytes;
        }
        known_map.bytes += bytes;
        // Which entry goes does not matter for correctness: a forgotten execution's next
        // checkpoint is stored whole.
        while known_map.map.len() > KNOWN_ENTRIES || known_map.bytes > KNOWN_BYTES {
            let Some(&victim) = known_map.map.keys().find(|&&id| id != execution) else {
                break;
            };
            if let Some(old) = known_map.map.remove(&victim) {
                known_map.bytes -= old.bytes;
            }
        }
    }

    /// Encodes a checkpoint of `execution` for writing: inline when small, otherwise a
    /// reference to an object that patches the execution's last known checkpoint, or holds the
    /// whole value. A small value that looks like a reference is stored as an object too, so a
    /// worker cannot point a checkpoint at an object it did not write.
    pub fn encode(&self, execution: Uuid, checkpoint: Option<Value>) -> Encoded {
        let Some(checkpoint) = checkpoint else {
            return Encoded::default();
        };
        let text = serde_json::to_string(&checkpoint).expect("a JSON value serializes");
        if text.len() <= INLINE_MAX_BYTES && referenced(&checkpoint).is_none() {
            return Encoded {
                value: Some(checkpoint),
                ..Encoded::default()
            };
        }
        let last = self.get(execution);
        if let Some(last) = &last
            && last.value == checkpoint
        {
            return Encoded {
                value: Some(json!({ REFERENCE_KEY: last.id })),
                ..Encoded::default()
            };
        }
        let patched = last.as_ref().and_then(|last| {
            let patch = patch::diff(&last.value, &checkpoint)?;
            let data = serde_json::to_string(&patch).expect("a JSON value serializes");
            (data.len() < text.len() && last.chain_bytes + data.len() <= last.whole_bytes)
                .then_some((last, data))
        });
        let (object, chain_bytes, whole_bytes) = match patched {
            Some((last, data)) => (
                NewObject {
                    id: object_id(Some(&last.id), &data),
                    base: Some(last.id.clone()),
                    data: data.clone(),
                },
                last.chain_bytes + data.len(),
                last.whole_bytes,
            ),
            None => (
                NewObject {
                    id: object_id(None, &text),
                    base: None,
                    data: text.clone(),
                },
                0,
                text.len(),
            ),
        };
        let known = Arc::new(Known {
            id: object.id.clone(),
            value: checkpoint,
            chain_bytes,
            whole_bytes,
            bytes: text.len(),
        });
        Encoded {
            value: Some(json!({ REFERENCE_KEY: object.id })),
            objects: vec![object],
            known: Some(known),
        }
    }

    /// Remembers what an encoded checkpoint stored, once its write committed (never before:
    /// a patch must only ever be based on an object that exists).
    pub fn committed(&self, execution: Uuid, encoded: &Encoded) {
        if let Some(known) = &encoded.known {
            self.put(execution, known.clone());
        }
    }

    /// The whole value of a stored checkpoint of `execution`: a reference is read back (and
    /// remembered, to patch the next checkpoint against), any other value is returned as it is.
    pub async fn resolve(
        &self,
        store: &dyn Objects,
        execution: Uuid,
        checkpoint: Option<Value>,
    ) -> Result<Option<Value>, EngineError> {
        let Some(id) = checkpoint.as_ref().and_then(referenced).map(str::to_owned) else {
            return Ok(checkpoint);
        };
        if let Some(known) = self.get(execution)
            && known.id == id
        {
            return Ok(Some(known.value.clone()));
        }
        let chain = store.object_chain(&id).await?;
        let corrupt = |why: String| EngineError::Internal(format!("stored checkpoint {id}: {why}"));
        let Some(whole) = chain.last() else {
            return Err(corrupt("no such object".into()));
        };
        if whole.base.is_some() {
            return Err(corrupt(format!(
                "its chain stops at a missing object {}",
                whole.base.as_deref().unwrap_or_default()
            )));
        }
        for object in &chain {
            if object_id(object.base.as_deref(), &object.data) != object.id {
                return Err(corrupt(format!(
                    "object {} does not match its id",
                    object.id
                )));
            }
        }
        let mut value: Value = serde_json::from_str(&whole.data)
            .map_err(|e| corrupt(format!("unreadable value: {e}")))?;
        let mut chain_bytes = 0;
        for object in chain.iter().rev().skip(1) {
            let patch: Value = serde_json::from_str(&object.data)
                .map_err(|e| corrupt(format!("unreadable patch {}: {e}", object.id)))?;
            patch::apply(&mut value, &patch)
                .map_err(|e| corrupt(format!("patch {}: {e}", object.id)))?;
            chain_bytes += object.data.len();
        }
        let bytes = serde_json::to_string(&value).map_or(0, |t| t.len());
        self.put(
            execution,
            Arc::new(Known {
                id,
                value: value.clone(),
                chain_bytes,
                whole_bytes: whole.data.len(),
                bytes,
            }),
        );
        Ok(Some(value))
    }
}

impl Engine {
    /// The assignment with its checkpoint read back whole, if it is a stored object: workers
    /// and runtimes never see references.
    pub(super) async fn resolved(
        &self,
        mut assignment: Assignment,
    ) -> Result<Assignment, EngineError> {
        assignment.checkpoint = self
            .checkpoints
            .resolve(
                self.store.as_ref(),
                assignment.lease.execution_id,
                assignment.checkpoint.take(),
            )
            .await?;
        Ok(assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(messages: usize) -> Value {
        let messages: Vec<Value> = (0..messages)
            .map(|i| json!({ "role": "user", "content": format!("message {i} {}", "x".repeat(100)) }))
            .collect();
        json!({ "format": 1, "messages": messages })
    }

    #[test]
    fn small_checkpoints_stay_inline_and_large_ones_become_references() {
        let checkpoints = Checkpoints::default();
        let id = Uuid::now_v7();
        let small = checkpoints.encode(id, Some(json!({ "session_id": "s-1" })));
        assert_eq!(small.value, Some(json!({ "session_id": "s-1" })));
        assert!(small.objects.is_empty());

        let large = checkpoints.encode(id, Some(transcript(20)));
        let object = &large.objects[0];
        assert_eq!(object.base, None, "nothing known to patch against");
        assert_eq!(object.id, object_id(None, &object.data));
        assert_eq!(large.value, Some(json!({ "$object": object.id })));
    }

    #[test]
    fn a_grown_checkpoint_is_stored_as_a_patch_once_its_base_committed() {
        let checkpoints = Checkpoints::default();
        let id = Uuid::now_v7();
        let first = checkpoints.encode(id, Some(transcript(20)));
        // Not committed (say, fenced): the next one cannot be based on it.
        let again = checkpoints.encode(id, Some(transcript(21)));
        assert_eq!(again.objects[0].base, None);
        checkpoints.committed(id, &first);
        let grown = checkpoints.encode(id, Some(transcript(21)));
        let patch = &grown.objects[0];
        assert_eq!(patch.base.as_deref(), Some(first.objects[0].id.as_str()));
        assert!(
            patch.data.len() < 300,
            "only the new message: {}",
            patch.data
        );
        checkpoints.committed(id, &grown);
        let same = checkpoints.encode(id, Some(transcript(21)));
        assert!(
            same.objects.is_empty(),
            "an equal checkpoint writes nothing"
        );
        assert_eq!(same.value, grown.value);
    }

    #[test]
    fn a_worker_cannot_hand_in_a_reference_to_an_object_it_did_not_write() {
        let checkpoints = Checkpoints::default();
        let forged = json!({ "$object": "sha256:someone-elses" });
        let encoded = checkpoints.encode(Uuid::now_v7(), Some(forged.clone()));
        assert_eq!(encoded.objects.len(), 1, "stored as a value of its own");
        assert_eq!(encoded.objects[0].data, forged.to_string());
        assert_ne!(encoded.value, Some(forged));
    }
}
