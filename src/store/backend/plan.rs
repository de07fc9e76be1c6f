//! How a group commit is cut into set-based statements, independently of the dialect: which
//! transitions can share statements (rounds), in which order the task and timer changes of a
//! transition run (waves). The rows each statement carries as one JSON array parameter are
//! `packed.rs`'s.
//!
//! A group commit costs a fixed number of statements however many transitions it carries: one
//! statement per table and kind of change, each over the whole batch. What keeps the outcome
//! equal to writing the transitions one after another:
//!
//! - *Rounds.* Transitions that touch the same execution (its row, or an inbox row written to
//!   it) or the same request id go into successive rounds, in the commit's order, so the second
//!   transition of an execution sees the first one's version, as it would alone. A round's
//!   transitions touch disjoint rows, so the order of its statements does not matter between
//!   them. Almost every batch is one round.
//! - *Waves.* The task (and timer) changes of one transition run in a fixed statement order
//!   (delete-all, delete, insert, reschedule, park, cancel). A change that would have to run
//!   before one of a kind the statement order puts later (a delete after an insert of the same
//!   activity, say) goes into the next wave; changes of different activities commute.

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::{TaskOp, TimerOp, Transition};

/// What makes two transitions of one commit depend on each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key<'a> {
    Execution(Uuid),
    Request(&'a str, &'a str),
}

fn keys<'a>(t: &'a Transition, out: &mut Vec<Key<'a>>) {
    out.push(Key::Execution(t.execution_id));
    if let crate::store::RowWrite::Create(new) = &t.row_write
        && let Some(request_id) = &new.request_id
    {
        out.push(Key::Request(&new.namespace, request_id));
    }
    for op in &t.timers {
        if let TimerOp::Inbox { execution_id, .. } = op {
            out.push(Key::Execution(*execution_id));
        }
    }
    for child in &t.children {
        keys(child, out);
    }
}

/// Splits the transitions, taken in `order`, into rounds (see the module comment): each round
/// lists indices into `transitions`, in `order`.
pub(super) fn rounds(transitions: &[Transition], order: &[usize]) -> Vec<Vec<usize>> {
    let mut last: HashMap<Key<'_>, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut ks = Vec::new();
    for &i in order {
        ks.clear();
        keys(&transitions[i], &mut ks);
        let round = ks
            .iter()
            .filter_map(|k| last.get(k).map(|r| r + 1))
            .max()
            .unwrap_or(0);
        for k in ks.drain(..) {
            last.insert(k, round);
        }
        if rounds.len() <= round {
            rounds.resize_with(round + 1, Vec::new);
        }
        rounds[round].push(i);
    }
    rounds
}

/// The statement a task change runs in, in their order within a wave.
pub(super) fn task_kind(op: &TaskOp) -> usize {
    match op {
        TaskOp::DeleteAll => 0,
        TaskOp::Delete { .. } => 1,
        TaskOp::Insert(_) => 2,
        TaskOp::Reschedule { .. } => 3,
        TaskOp::Park { .. } => 4,
        TaskOp::RequestCancel { .. } => 5,
    }
}

/// How many task statement kinds there are.
pub(super) const TASK_KINDS: usize = 6;

/// The statement a timer change runs in, in their order within a wave.
pub(super) fn timer_kind(op: &TimerOp) -> usize {
    match op {
        TimerOp::DeleteAll => 0,
        TimerOp::Delete { .. } => 1,
        TimerOp::Insert { .. } => 2,
        TimerOp::Inbox { .. } => 3,
    }
}

/// How many timer statement kinds there are.
pub(super) const TIMER_KINDS: usize = 4;

/// The wave of each of one transition's changes, given each change's statement kind and the
/// row it names (`None` for a change of every row of the execution, which kind 0 is).
pub(super) fn waves<'a>(changes: impl Iterator<Item = (usize, Option<&'a str>)>) -> Vec<usize> {
    let mut last: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut floor: Option<(usize, usize)> = None;
    let mut top: Option<(usize, usize)> = None;
    let mut out = Vec::new();
    for (kind, row) in changes {
        let before = match row {
            Some(row) => last.get(row).copied().max(floor),
            None => top,
        };
        let wave = match before {
            None => 0,
            Some((wave, k)) if kind > k => wave,
            Some((wave, _)) => wave + 1,
        };
        match row {
            Some(row) => {
                last.insert(row, (wave, kind));
            }
            None => floor = Some((wave, kind)),
        }
        top = top.max(Some((wave, kind)));
        out.push(wave);
    }
    out
}

/// The row a task change names (`None`: every task of the execution).
pub(super) fn task_row(op: &TaskOp) -> Option<&str> {
    match op {
        TaskOp::Insert(task) => Some(&task.activity_id),
        TaskOp::Reschedule { activity_id, .. }
        | TaskOp::Park { activity_id, .. }
        | TaskOp::RequestCancel { activity_id }
        | TaskOp::Delete { activity_id } => Some(activity_id),
        TaskOp::DeleteAll => None,
    }
}

/// The row a timer change names (`None`: every timer of the execution). An inbox row belongs to
/// another execution, so it never waits for this one's changes.
pub(super) fn timer_row(op: &TimerOp) -> Option<String> {
    match op {
        TimerOp::Insert { timer_id, .. } | TimerOp::Delete { timer_id } => Some(timer_id.clone()),
        TimerOp::Inbox {
            execution_id,
            timer_id,
            ..
        } => Some(format!("{execution_id}/{timer_id}")),
        TimerOp::DeleteAll => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_of_one_activity_in_statement_order_share_a_wave() {
        let w = waves([(1, Some("a")), (2, Some("b")), (2, Some("a"))].into_iter());
        assert_eq!(w, [0, 0, 0]);
    }

    #[test]
    fn a_change_against_the_statement_order_waits_for_the_next_wave() {
        // Insert a, then delete a: the delete must follow the insert.
        let w = waves([(2, Some("a")), (1, Some("a")), (2, Some("b"))].into_iter());
        assert_eq!(w, [0, 1, 0]);
        // A delete-all after an insert, then an insert after the delete-all.
        let w = waves([(2, Some("a")), (0, None), (2, Some("a"))].into_iter());
        assert_eq!(w, [0, 1, 1]);
    }
}
