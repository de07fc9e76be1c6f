//! Cairn: a durable execution engine for AI agents.
//!
//! See `ARCHITECTURE.md` for the map of the code.

pub mod api;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod domain;
pub mod machine;
pub mod node;
pub mod store;
pub mod telemetry;
pub mod worker;
pub mod runtime;
