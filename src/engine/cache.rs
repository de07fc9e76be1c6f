//! The executions this engine last committed, at the version it committed them, so the next
//! transition of the same execution folds its input without reading the row again.
//!
//! A cached entry may be behind: another server (or a quarantine) can commit after it. That is
//! safe because every transition is committed conditionally on the version it was computed
//! from (`expected_next_seq`): a transition computed from a stale entry ends `Conflict`, writes
//! nothing, and is recomputed from a fresh read (see `apply_with`). Closed executions take no
//! more transitions that matter for speed, so they leave the cache.
//!
//! Bounded by entries and by an estimate of the bytes of the states it holds, evicting the
//! least recently used; a state too large for its share of the budget is not cached at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::apply::Scope;
use crate::machine::ExecutionState;

/// How many executions the cache holds at most.
pub(crate) const MAX_ENTRIES: usize = 4096;

/// About how many bytes of machine state the cache holds at most.
pub(crate) const MAX_BYTES: usize = 16 << 20;

/// An execution as a transition needs it: its version, where it sits and its machine state.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    /// The execution.
    pub id: Uuid,
    /// The row's `next_seq` this state belongs to: the version a transition from it expects.
    pub next_seq: u64,
    /// Its namespace, root and parent (these never change).
    pub scope: Scope,
    /// The machine state at `next_seq`.
    pub state: ExecutionState,
}

struct Entry {
    versioned: Arc<Versioned>,
    bytes: usize,
    /// When it was last used, the key of `order`.
    used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<Uuid, Entry>,
    /// Ids by last use, oldest first.
    order: BTreeMap<u64, Uuid>,
    bytes: usize,
    clock: u64,
}

impl Lru {
    fn remove(&mut self, id: &Uuid) {
        if let Some(entry) = self.entries.remove(id) {
            self.order.remove(&entry.used);
            self.bytes -= entry.bytes;
        }
    }
}

/// The bounded cache of [`Versioned`] executions; cheap to share between tasks.
pub(crate) struct ExecutionCache {
    lru: Mutex<Lru>,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for ExecutionCache {
    fn default() -> Self {
        ExecutionCache::new(MAX_ENTRIES, MAX_BYTES)
    }
}

impl ExecutionCache {
    /// A cache of at most `max_entries` executions and about `max_bytes` of state; zero entries
    /// turns it off.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> ExecutionCache {
        ExecutionCache {
            lru: Mutex::default(),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().expect("the lock is never poisoned")
    }

    /// The execution as this engine last committed it, if it is still cached.
    pub(crate) fn get(&self, id: Uuid) -> Option<Arc<Versioned>> {
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        let entry = lru.entries.get_mut(&id)?;
        let before = std::mem::replace(&mut entry.used, now);
        let versioned = entry.versioned.clone();
        lru.order.remove(&before);
        lru.order.insert(now, id);
        Some(versioned)
    }

    /// Remembers `versioned`, whose stored state takes about `bytes_of_state`, as just committed;
    /// a closed execution is forgotten instead. An entry of a later version (a concurrent
    /// transition of the same execution committed after this one) is kept.
    pub(crate) fn put(&self, versioned: Versioned, bytes_of_state: usize) {
        let id = versioned.id;
        if versioned.state.status().is_closed() {
            self.remove(id);
            return;
        }
        let bytes = bytes_of_state + std::mem::size_of::<Versioned>();
        let mut lru = self.lock();
        if lru
            .entries
            .get(&id)
            .is_some_and(|e| e.versioned.next_seq > versioned.next_seq)
        {
            return;
        }
        lru.remove(&id);
        if self.max_entries == 0 || bytes > self.max_bytes / 16 {
            return;
        }
        while lru.entries.len() >= self.max_entries || lru.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(entry) = lru.entries.remove(&oldest) {
                lru.bytes -= entry.bytes;
            }
        }
        lru.clock += 1;
        let used = lru.clock;
        lru.order.insert(used, id);
        lru.bytes += bytes;
        lru.entries.insert(
            id,
            Entry {
                versioned: Arc::new(versioned),
                bytes,
                used,
            },
        );
    }

    /// Forgets an execution (its entry may be stale, or it closed).
    pub(crate) fn remove(&self, id: Uuid) {
        self.lock().remove(&id);
    }

    /// How many executions are cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// About how much memory a state takes, from its snapshot's JSON text and what its start fixed,
/// which an agent's snapshot leaves out (its prompts and agent): their strings and about as much
/// again for the structure holding them. An estimate, good enough for a budget.
pub(crate) fn state_bytes(snapshot: &str, state: &ExecutionState) -> usize {
    let fixed = match state {
        ExecutionState::Agent(agent) => {
            // A conversation's prompts are in its snapshot.
            let prompts = match agent.conversation {
                None => agent.prompts.iter().map(String::len).sum(),
                Some(_) => 0,
            };
            prompts
                + json_bytes(&agent.agent.configuration)
                + agent.agent.name.len()
                + agent.agent.model_id.len()
        }
        ExecutionState::Team(_) => 0,
    };
    2 * (snapshot.len() + fixed)
}

/// The length of a JSON value's strings and keys, plus a few bytes for every other value: about
/// its text's length, without writing it.
fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(json_bytes).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 3 + json_bytes(v))
                .sum::<usize>()
        }
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AgentSpec, ExecutionStatus};
    use crate::machine::AgentState;

    /// An execution's cached version and what it counts against the budget.
    fn versioned(prompt: &str) -> (Versioned, usize) {
        let state = ExecutionState::Agent(AgentState {
            agent: AgentSpec {
                id: Uuid::nil(),
                name: "e".into(),
                runtime: "echo".into(),
                model_id: String::new(),
                configuration: serde_json::json!({}),
            },
            prompts: vec![prompt.into()],
            retry_policy: Default::default(),
            timeouts: Default::default(),
            status: ExecutionStatus::Running,
            activity: None,
            turns: Default::default(),
            checkpoint: None,
            traceparent: None,
            usage: Default::default(),
            cancel_reason: None,
            queue: "default".into(),
            conversation: None,
            closing: false,
            message_ids: Vec::new(),
            approvals: Vec::new(),
        });
        let id = Uuid::now_v7();
        let bytes = state_bytes(&state.to_json().unwrap().to_string(), &state);
        let scope = Scope {
            namespace: "default".into(),
            root_id: id,
            parent: None,
        };
        let v = Versioned {
            id,
            next_seq: 2,
            scope,
            state,
        };
        (v, bytes)
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = ExecutionCache::new(2, MAX_BYTES);
        let (a, ja) = versioned("a");
        let (b, jb) = versioned("b");
        let (c, jc) = versioned("c");
        let (ida, idb, idc) = (a.id, b.id, c.id);
        cache.put(a, ja);
        cache.put(b, jb);
        assert!(
            cache.get(ida).is_some(),
            "a is used, so b is now the oldest"
        );
        cache.put(c, jc);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(ida).is_some());
        assert!(cache.get(idb).is_none(), "b was evicted");
        assert!(cache.get(idc).is_some());
    }

    #[test]
    fn the_byte_budget_bounds_the_cache_and_large_states_are_not_cached() {
        let (_, bytes) = versioned("x");
        let one = bytes + std::mem::size_of::<Versioned>();
        let cache = ExecutionCache::new(100, one * 16 * 3);
        // The prompt is not in the snapshot (its start event holds it), but in the cached state.
        let (big, big_bytes) = versioned(&"p".repeat(one * 3));
        cache.put(big, big_bytes);
        assert_eq!(
            cache.len(),
            0,
            "a state over a sixteenth of the budget is not cached"
        );
        for _ in 0..60 {
            let (v, bytes) = versioned("q");
            cache.put(v, bytes);
        }
        assert_eq!(cache.len(), 48, "the byte budget holds 48 small states");
    }

    #[test]
    fn a_closed_execution_leaves_the_cache() {
        let cache = ExecutionCache::default();
        let (mut v, bytes) = versioned("a");
        let id = v.id;
        cache.put(v.clone(), bytes);
        assert!(cache.get(id).is_some());
        if let ExecutionState::Agent(agent) = &mut v.state {
            agent.status = ExecutionStatus::Completed;
        }
        cache.put(v, bytes);
        assert!(cache.get(id).is_none());
    }
}
