//! The storage contract: one suite, written once against `dyn Store`, run on SQLite and on
//! PostgreSQL (`<group>::sqlite::<test>` and `<group>::postgres::<test>`). Every test asserts on
//! what a client of the store sees afterwards (rows read back, outcomes, row counts), never on
//! SQL.
//!
//! Each test gets its own database (a temporary SQLite file, or a fresh PostgreSQL database that
//! is dropped afterwards, see `common::postgres`), so the tests run in parallel.

#[allow(
    unused_imports,
    reason = "the contract uses only the databases of the shared test code"
)]
mod common;

#[path = "store_contract/agents.rs"]
mod agents;
#[path = "store_contract/attempts.rs"]
mod attempts;
#[path = "store_contract/commit.rs"]
mod commit;
#[path = "store_contract/fleet.rs"]
mod fleet;
#[path = "store_contract/limits.rs"]
mod limits;
#[path = "store_contract/list.rs"]
mod list;
#[path = "store_contract/objects.rs"]
mod objects;
#[path = "store_contract/runtimes.rs"]
mod runtimes;
#[path = "store_contract/schema.rs"]
mod schema;
#[path = "store_contract/statements.rs"]
mod statements;
#[path = "store_contract/states.rs"]
mod states;
#[path = "store_contract/support.rs"]
mod support;
#[path = "store_contract/tasks.rs"]
mod tasks;
#[path = "store_contract/teams.rs"]
mod teams;
