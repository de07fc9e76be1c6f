//! Cairn: a durable execution engine for AI agents.
//!
//! See `ARCHITECTURE.md` for the map of the code.

pub mod api;
pub mod domain;
pub mod runtime;
