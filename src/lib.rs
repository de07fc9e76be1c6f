//! Cairn: a durable execution engine for AI agents.
//!
//! See `ARCHITECTURE.md` for the map of the code.

// Every public item says what a reader could not guess from its name (tests/architecture.rs
// checks the layering; this lint checks that nothing public is left unexplained).
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod console;
pub mod contract;
pub mod domain;
pub mod engine;
pub mod machine;
pub mod node;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod worker;
