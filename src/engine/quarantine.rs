//! Quarantine: an execution whose stored row or machine state cannot be decoded (a bug, a manual
//! edit, a value older code wrote badly) is failed in place with code `corrupt_state`, once, and
//! logged once with its id, so that it never stops polling, sweeping or other executions.

use uuid::Uuid;

use super::{Engine, EngineError};
use crate::domain::Failure;
use crate::machine::ExecutionState;
use crate::store::{ExecutionRecord, Quarantine, StoreError};

/// The failure code of a quarantined execution.
pub const CORRUPT_STATE: &str = "corrupt_state";

/// At most this many characters of a decoding error go into messages.
const MAX_REASON_CHARS: usize = 300;

impl Engine {
    /// The machine state of `record`; when it cannot be decoded, the execution is quarantined
    /// and the error says so.
    pub(crate) async fn state_of(
        &self,
        record: &ExecutionRecord,
    ) -> Result<ExecutionState, EngineError> {
        match ExecutionState::from_json(record.kind, &record.state) {
            Ok(state) => Ok(state),
            Err(e) if record.status.is_closed() => Err(EngineError::FailedPrecondition(format!(
                "execution {} is {} and its stored state cannot be read: {}",
                record.id,
                record.status.as_str(),
                short(&e.to_string())
            ))),
            Err(e) => Err(self.quarantine(record.id, &e.to_string()).await),
        }
    }

    /// Reads an execution row; a row that cannot be decoded is quarantined and read again.
    pub(crate) async fn read_execution(
        &self,
        id: Uuid,
    ) -> Result<Option<ExecutionRecord>, EngineError> {
        self.reads
            .executions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.store.get_execution(id).await {
            Err(StoreError::Corrupt(why)) => {
                let quarantined = self.quarantine(id, &why).await;
                // The quarantine replaced what could not be read; if the row still does not
                // decode, say why rather than retrying.
                match self.store.get_execution(id).await {
                    Ok(record) => Ok(record),
                    Err(StoreError::Corrupt(again)) => Err(EngineError::Internal(format!(
                        "execution {id} cannot be read even after quarantine ({quarantined}): {}",
                        short(&again)
                    ))),
                    Err(e) => Err(e.into()),
                }
            }
            other => Ok(other?),
        }
    }

    /// Fails execution `id` with `corrupt_state` (logged once: the row is closed afterwards, so
    /// nothing finds it again). Returns the error to answer the request that found it with.
    pub(crate) async fn quarantine(&self, id: Uuid, why: &str) -> EngineError {
        let why = short(why);
        self.cache.remove(id);
        let failure = Failure::new(
            CORRUPT_STATE,
            format!(
                "the stored state of execution {id} cannot be read ({why}); the execution was \
                 failed so that it stops no other work"
            ),
            false,
        );
        let q = Quarantine {
            execution_id: id,
            failure,
            now: self.clock.now_ms(),
        };
        match self.store.quarantine_execution(&q).await {
            Ok(true) => {
                tracing::error!(execution = %id, error = %why, "execution quarantined: its stored state cannot be read; failed with corrupt_state");
                self.notifier.execution_changed(id);
                // The parent's inbox row (if any) is due now.
                self.notifier.deadline_added(q.now);
                EngineError::FailedPrecondition(format!(
                    "execution {id} has a corrupt stored state and was failed with code \
                     {CORRUPT_STATE}"
                ))
            }
            Ok(false) => EngineError::FailedPrecondition(format!(
                "execution {id} is closed and its stored state cannot be read: {why}"
            )),
            Err(e) => e.into(),
        }
    }
}

/// The beginning of a long message (decoding errors can quote large values).
fn short(message: &str) -> String {
    match message.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_string(),
    }
}
