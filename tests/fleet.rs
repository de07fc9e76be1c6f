//! The worker fleet, with real processes: remote workers over gRPC, routing by runtime and queue,
//! graceful drain that hands attempts over, stale workers fenced off, several servers over one
//! PostgreSQL woken by LISTEN/NOTIFY, crash recovery under load, and authentication with TLS.

#[allow(
    unused_imports,
    reason = "the fleet tests start processes their own way, not through common::Server"
)]
mod common;

#[path = "fleet/auth.rs"]
mod auth;
#[path = "fleet/chaos.rs"]
mod chaos;
#[path = "fleet/handover.rs"]
mod handover;
#[path = "fleet/mtls.rs"]
mod mtls;
#[path = "fleet/notify.rs"]
mod notify;
#[path = "fleet/routing.rs"]
mod routing;
