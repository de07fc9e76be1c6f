//! The long-poll registry on its own: which poll a ready task wakes, and that no wake-up is
//! lost when a woken poll leaves or a reservation falls through; and when a deadline wakes the
//! sweeper (only before its planned wake-up, never lost while it reads).

use std::sync::Mutex;

use super::*;
use crate::contract::Assignment;
use crate::domain::{AgentSpec, Lease, Turn};

fn echo() -> Wake {
    Wake::Task {
        runtime: "echo".into(),
        queue: "default".into(),
    }
}

/// A poll of `echo` (and `other`) in `queue` that claimed, found nothing and sleeps.
fn sleeping(notifier: &Arc<Notifier>, queue: &str, max_tasks: u32) -> PollWaiter {
    let runtimes = ["echo".to_string(), "other".to_string()];
    let poll = notifier.register_poll("w", &runtimes, queue, max_tasks, None, Box::new(|_| {}));
    poll.arm();
    assert!(matches!(poll.sleep(), PollStep::Wait));
    poll
}

fn woken(polls: &[&PollWaiter]) -> Vec<usize> {
    polls
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.after_wake(), PollStep::Claim))
        .map(|(i, _)| i)
        .collect()
}

fn assignment() -> Assignment {
    Assignment {
        lease: Lease {
            execution_id: Uuid::nil(),
            activity_id: "turn-1".into(),
            attempt: 1,
            lease_token: "t".into(),
        },
        runtime: "echo".into(),
        turn: Turn {
            agent: AgentSpec {
                id: Uuid::nil(),
                name: "a".into(),
                runtime: "echo".into(),
                model_id: String::new(),
                configuration: serde_json::json!({}),
            },
            index: 0,
            prompt: "hi".into(),
            traceparent: None,
        },
        checkpoint: None,
        heartbeat_ms: 1_000,
    }
}

#[test]
fn a_ready_task_wakes_the_oldest_sleeping_poll_of_its_runtime_and_queue_only() {
    let notifier = Arc::new(Notifier::default());
    let gpu = sleeping(&notifier, "gpu", 1);
    let a = sleeping(&notifier, "default", 1);
    let b = sleeping(&notifier, "default", 1);
    notifier.task_ready(Wake::Task {
        runtime: "claude_code".into(),
        queue: "default".into(),
    });
    assert_eq!(woken(&[&gpu, &a, &b]), Vec::<usize>::new());
    notifier.task_ready(echo());
    assert_eq!(woken(&[&gpu, &a, &b]), [1]);
    notifier.task_ready(echo());
    assert_eq!(woken(&[&gpu, &a, &b]), [1, 2]);
    assert_eq!(notifier.sleeping_polls(), 1);
}

#[test]
fn a_woken_poll_with_room_takes_the_next_task_along_instead_of_waking_another() {
    let notifier = Arc::new(Notifier::default());
    let a = sleeping(&notifier, "default", 2);
    let b = sleeping(&notifier, "default", 2);
    notifier.task_ready(echo());
    notifier.task_ready(echo());
    assert_eq!(woken(&[&a, &b]), [0], "its claim takes both");
    notifier.task_ready(echo());
    assert_eq!(woken(&[&a, &b]), [0, 1], "a third is beyond a's room");
}

#[test]
fn a_task_readied_while_a_poll_claims_wakes_it_to_claim_again() {
    let notifier = Arc::new(Notifier::default());
    let runtimes = ["echo".to_string()];
    let poll = notifier.register_poll("w", &runtimes, "default", 1, None, Box::new(|_| {}));
    poll.arm();
    notifier.task_ready(echo());
    assert!(matches!(poll.sleep(), PollStep::Claim));
}

#[test]
fn a_woken_poll_that_leaves_passes_its_wake_up_on() {
    let notifier = Arc::new(Notifier::default());
    let a = sleeping(&notifier, "default", 1);
    let b = sleeping(&notifier, "default", 1);
    notifier.task_ready(echo());
    drop(a);
    assert_eq!(woken(&[&b]), [0]);
}

#[test]
fn a_task_of_unknown_kind_wakes_one_poll_of_each_kind() {
    let notifier = Arc::new(Notifier::default());
    let polls: Vec<_> = ["default", "default", "gpu", "gpu"]
        .iter()
        .map(|q| sleeping(&notifier, q, 1))
        .collect();
    notifier.task_ready(Wake::Any);
    assert_eq!(woken(&polls.iter().collect::<Vec<_>>()), [0, 2]);
}

#[test]
fn a_start_hands_its_task_to_a_reserved_poll_and_a_reservation_undone_wakes_it() {
    let notifier = Arc::new(Notifier::default());
    let a = sleeping(&notifier, "default", 4);
    assert!(notifier.reserve("echo", "gpu").is_none());
    let reservation = notifier.reserve("echo", "default").expect("a sleeps");
    assert_eq!(reservation.worker_id, "w");
    assert!(
        notifier.reserve("echo", "default").is_none(),
        "reserved once"
    );
    assert!(matches!(a.after_wake(), PollStep::Reserved));
    // A ready task passes a reserved poll by.
    notifier.task_ready(echo());
    assert!(matches!(a.after_wake(), PollStep::Reserved));
    reservation.hand(Box::new(assignment())).unwrap();
    assert!(matches!(a.after_wake(), PollStep::Handed(h) if *h == assignment()));

    a.arm();
    assert!(matches!(a.sleep(), PollStep::Wait));
    drop(notifier.reserve("echo", "default").expect("a sleeps again"));
    assert!(
        matches!(a.after_wake(), PollStep::Claim),
        "it may have missed a task meanwhile"
    );
}

#[test]
fn a_task_handed_to_a_poll_that_left_comes_back_to_be_released() {
    let notifier = Arc::new(Notifier::default());
    let orphans = Arc::new(Mutex::new(Vec::new()));
    let runtimes = ["echo".to_string()];
    let sink = orphans.clone();
    let poll = notifier.register_poll(
        "w",
        &runtimes,
        "default",
        1,
        None,
        Box::new(move |a| sink.lock().unwrap().push(a)),
    );
    poll.arm();
    poll.sleep();
    notifier
        .reserve("echo", "default")
        .unwrap()
        .hand(Box::new(assignment()))
        .unwrap();
    drop(poll);
    assert_eq!(*orphans.lock().unwrap(), [assignment()]);

    // Gone before the hand-over: the start gets the task back to release.
    let poll = sleeping(&notifier, "default", 1);
    let reservation = notifier.reserve("echo", "default").unwrap();
    drop(poll);
    assert_eq!(
        reservation.hand(Box::new(assignment())),
        Err(Box::new(assignment()))
    );
}

/// Whether the sweeper's wait would return at once (a wake-up is pending), taking it.
fn sweeper_woken(notifier: &Notifier) -> bool {
    use futures::FutureExt;
    notifier.deadline().now_or_never().is_some()
}

#[test]
fn a_deadline_at_or_after_the_sweepers_plan_wakes_nobody() {
    let notifier = Notifier::default();
    notifier.sweeper_reading();
    notifier.sweeper_plans(1_000);
    notifier.deadline_added(1_000);
    notifier.deadline_added(30_000);
    assert!(!sweeper_woken(&notifier));
}

#[test]
fn a_deadline_before_the_sweepers_plan_wakes_it() {
    let notifier = Notifier::default();
    notifier.sweeper_reading();
    notifier.sweeper_plans(1_000);
    notifier.deadline_added(999);
    assert!(sweeper_woken(&notifier));
    assert!(!sweeper_woken(&notifier), "one wake-up, taken once");
}

#[test]
fn a_deadline_written_while_the_sweeper_reads_is_not_lost() {
    let notifier = Notifier::default();
    notifier.sweeper_plans(1_000);
    // Armed, then reading: the read may miss this deadline, committed after it began.
    notifier.sweeper_reading();
    notifier.deadline_added(30_000);
    // What it read says "nothing before 60 000": it must not sleep through 30 000.
    notifier.sweeper_plans(60_000);
    assert!(sweeper_woken(&notifier));
}

#[test]
fn before_its_first_plan_and_without_a_time_every_deadline_wakes_the_sweeper() {
    let notifier = Notifier::default();
    notifier.deadline_added(Millis::MAX - 1);
    assert!(sweeper_woken(&notifier), "no plan yet");
    notifier.sweeper_plans(1_000);
    notifier.deadline_written(None);
    assert!(sweeper_woken(&notifier), "when is unknown");
    notifier.deadline_written(Some(5_000));
    assert!(!sweeper_woken(&notifier));
    notifier.wake_all();
    assert!(
        sweeper_woken(&notifier),
        "wake_all wakes it whatever its plan"
    );
}

#[test]
fn a_wake_up_the_sweepers_next_read_covers_is_dropped_and_a_later_one_kept() {
    let notifier = Notifier::default();
    notifier.sweeper_reading();
    // Written while the sweeper applied due timers: its next-deadline read will see it.
    notifier.deadline_added(2_000);
    notifier.sweeper_reads_next_deadline();
    notifier.sweeper_plans(2_000);
    assert!(!sweeper_woken(&notifier));
    // Written after that read began: it may be missed, so it wakes.
    notifier.sweeper_reading();
    notifier.sweeper_reads_next_deadline();
    notifier.deadline_added(3_000);
    notifier.sweeper_plans(10_000);
    assert!(sweeper_woken(&notifier));
}
