//! In-process engine helpers for the tests that drive an `Engine` directly (no server).

use std::time::Duration;

use cairn::contract::{Assignment, PollRequest};
use cairn::engine::Engine;
use tokio_util::sync::CancellationToken;

/// Claims the one ready task, as a worker `w` of `echo` on the default queue would; fails the
/// test unless exactly one is ready.
pub async fn claim_one(engine: &Engine) -> Assignment {
    let request = PollRequest {
        worker_id: "w".into(),
        runtimes: vec!["echo".into()],
        queue: "default".into(),
        max_tasks: 8,
        slots: 8,
        wait: Duration::ZERO,
        policy: None,
    };
    let mut claimed = engine
        .poll(&request, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one task is ready");
    claimed.pop().unwrap()
}
