//! The agent machine, tested from data and without I/O: canned histories written as numbered
//! events, each checked step by step (the commands `step` emits for every input) and as a full
//! `replay`; altered histories that replay must reject with the exact seq; and histories
//! read back from JSON, as the stores keep them.

#[path = "agent_machine/conversation.rs"]
mod conversation;
#[path = "agent_machine/divergence.rs"]
mod divergence;
#[path = "agent_machine/effects.rs"]
mod effects;
#[path = "agent_machine/history.rs"]
mod history;
#[path = "agent_machine/limits.rs"]
mod limits;
#[path = "agent_machine/recorded.rs"]
mod recorded;
#[path = "agent_machine/retry.rs"]
mod retry;
#[path = "agent_machine/scenarios.rs"]
mod scenarios;
#[path = "agent_machine/snapshots.rs"]
mod snapshots;
