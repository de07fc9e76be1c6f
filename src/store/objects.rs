//! Stored objects: checkpoints (and other large runtime state) written once, content-addressed,
//! in the transaction of the progress or outcome that produced them, and referred to by id from
//! history events, execution states and task rows. What an object holds and how its id is made
//! is the engine's business (`engine/objects`); the store writes rows and reads chains.

use async_trait::async_trait;

use super::StoreError;

/// An object to write. Writing an id that is stored already changes nothing: equal content has
/// the same id, so it is stored once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewObject {
    /// `sha256:` and the hex digest of `base` and `data`.
    pub id: String,
    /// The object whose value `data` patches; `None` when `data` is the whole value.
    pub base: Option<String>,
    /// JSON text: the value, or the patch over `base`'s value.
    pub data: String,
}

/// A stored object, as read back.
pub type StoredObject = NewObject;

/// Reads of stored objects (their writes go with the transitions, progress and releases that
/// produce them).
#[async_trait]
pub trait Objects: Send + Sync {
    /// The object `id` and the objects it is based on, newest first, ending at a whole value;
    /// empty when `id` is not stored. A chain that stops at a missing base ends there (the
    /// caller reports it as corrupt).
    async fn object_chain(&self, id: &str) -> Result<Vec<StoredObject>, StoreError>;

    /// How many objects are stored and their bytes of data (for tests and operators).
    async fn object_totals(&self) -> Result<(u64, u64), StoreError>;
}
