//! How a group commit is cut into set-based statements, independently of the dialect: which
//! transitions can share statements (rounds), in which order the task and timer changes of a
//! transition run (waves), and the rows each statement carries as one JSON array parameter.
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

use serde::Serialize;
use uuid::Uuid;

use crate::store::{TaskOp, TimerOp, Transition};

/// The most bytes of JSON one statement's array parameter carries: far below PostgreSQL's
/// 255 MiB limit of a `jsonb` value, so a batch of any size is stored. Rows beyond it go into
/// another execution of the same statement.
const MAX_PARAM_BYTES: usize = 32 << 20;

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

/// Rows serialized into JSON arrays of at most [`MAX_PARAM_BYTES`] each: one statement
/// execution per array (one in all but huge batches).
#[derive(Debug, Default)]
pub(super) struct Packed {
    arrays: Vec<String>,
}

impl Packed {
    /// Appends a row.
    pub(super) fn push(&mut self, row: &impl Serialize) -> Result<(), serde_json::Error> {
        let text = serde_json::to_string(row)?;
        match self.arrays.last_mut() {
            Some(array) if array.len() + text.len() < MAX_PARAM_BYTES => {
                array.push(',');
                array.push_str(&text);
            }
            _ => {
                let mut array = String::with_capacity(text.len() + 2);
                array.push('[');
                array.push_str(&text);
                self.arrays.push(array);
            }
        }
        Ok(())
    }

    /// Whether no row was pushed.
    pub(super) fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// Whether the rows fit in one array.
    pub(super) fn is_one(&self) -> bool {
        self.arrays.len() == 1
    }

    /// The arrays, each a JSON text.
    pub(super) fn into_arrays(self) -> impl Iterator<Item = String> {
        self.arrays.into_iter().map(|mut a| {
            a.push(']');
            a
        })
    }
}

/// Expands a statement template into a dialect: `{rows}` becomes the rows of the JSON array
/// parameter `$1` (each as `value`), and `{u:name}` the field `name` of a row read as a UUID.
pub(super) fn dialect_sql(template: &str, rows: &str, uuid: (&str, &str)) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template.replace("{rows}", rows);
    while let Some(start) = rest.find("{u:") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("a closed {u:...}");
        let name = &rest[start + 3..end];
        out.push_str(uuid.0);
        out.push_str("value->>'");
        out.push_str(name);
        out.push('\'');
        out.push_str(uuid.1);
        rest = rest[end + 1..].to_string();
    }
    out.push_str(&rest);
    out
}

/// A cost as a JSON row carries it: a number, or the dialect's text for an infinity (JSON has
/// none), which the statement casts to a float.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Cost {
    /// A finite cost.
    Number(f64),
    /// `Infinity`, `-Infinity` or the dialect's spelling of them.
    Text(&'static str),
}

impl Cost {
    /// `cost` as stored (NaN as 0, see `stored_cost`), with `infinity` = (+inf, -inf) spelled
    /// as the dialect parses them.
    pub(super) fn of(cost: f64, infinity: (&'static str, &'static str)) -> Cost {
        let cost = super::rows::stored_cost(cost);
        if cost.is_finite() {
            Cost::Number(cost)
        } else if cost > 0.0 {
            Cost::Text(infinity.0)
        } else {
            Cost::Text(infinity.1)
        }
    }
}

/// An execution named by id (row locks, deletes of every task or timer).
#[derive(Debug, Serialize)]
pub(super) struct IdRow {
    pub id: Uuid,
}

/// A fence that a batch written in one statement checks inside it (`alone.rs`). `kind` is
/// `lease`, `known` (the task as the engine remembered it), `unclaimed` or `agent`, or `lock`:
/// no fence, but the execution's task rows are locked, as a transition that changes them needs.
#[derive(Debug, Default, Serialize)]
pub(super) struct FenceRow<'a> {
    pub id: Uuid,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_most: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// A row of an execution named by a text key: a task (`key` = activity id) or a timer.
#[derive(Debug, Serialize)]
pub(super) struct KeyRow<'a> {
    pub id: Uuid,
    pub key: &'a str,
}

/// The new fields of an execution row moved forward from version `expected`.
#[derive(Debug, Serialize)]
pub(super) struct UpdateRow<'a> {
    pub id: Uuid,
    pub expected: i64,
    pub next_seq: i64,
    pub status: &'a str,
    #[serde(flatten)]
    pub row: RowFields<'a>,
    pub chunks: i64,
    /// The bytes of those chunks, added to the row's `output_bytes`.
    pub bytes: i64,
}

/// A new execution row.
#[derive(Debug, Serialize)]
pub(super) struct CreateRow<'a> {
    pub id: Uuid,
    pub namespace: &'a str,
    pub kind: &'a str,
    pub agent_id: Option<Uuid>,
    pub runtime: &'a str,
    pub status: &'a str,
    pub input: &'a serde_json::Value,
    pub parent_id: Option<Uuid>,
    pub root_id: Uuid,
    pub retry_of: Option<Uuid>,
    pub request_id: Option<&'a str>,
    pub next_seq: i64,
    pub output_seq: i64,
    pub output_bytes: i64,
    pub created_at: i64,
    pub team_id: Option<Uuid>,
    pub child_key: Option<&'a str>,
    #[serde(flatten)]
    pub row: RowFields<'a>,
}

/// The fields of an execution row a transition sets, whether it creates or moves the row.
#[derive(Debug, Serialize)]
pub(super) struct RowFields<'a> {
    pub state: &'a crate::store::SnapshotJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a crate::domain::Failure>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Cost,
    pub tool_calls: i64,
    pub closed_at: Option<i64>,
}

impl<'a> RowFields<'a> {
    /// `row` as stored (counts saturated, a cost's infinity spelled as `infinity` says).
    pub(super) fn of(
        row: &'a crate::store::RowState,
        infinity: (&'static str, &'static str),
    ) -> Self {
        use super::rows::stored_count;
        RowFields {
            state: &row.state,
            result: row.result.as_ref(),
            failure: row.failure.as_ref(),
            input_tokens: stored_count(row.usage.input_tokens),
            output_tokens: stored_count(row.usage.output_tokens),
            cost: Cost::of(row.usage.cost_usd, infinity),
            tool_calls: stored_count(row.usage.tool_calls),
            closed_at: row.closed_at,
        }
    }
}

/// A request id a new execution asked for.
#[derive(Debug, Serialize)]
pub(super) struct RequestRow<'a> {
    pub namespace: &'a str,
    pub request_id: &'a str,
}

/// A label of a new execution.
#[derive(Debug, Serialize)]
pub(super) struct LabelRow<'a> {
    pub id: Uuid,
    pub key: &'a str,
    pub value: &'a str,
}

/// A history event.
#[derive(Debug, Serialize)]
pub(super) struct EventRow<'a> {
    pub id: Uuid,
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub payload: &'a crate::domain::HistoryEvent,
    pub at: i64,
}

/// An output chunk at its seq.
#[derive(Debug, Serialize)]
pub(super) struct ChunkRow<'a> {
    pub id: Uuid,
    pub seq: i64,
    pub activity_id: &'a str,
    pub attempt: i64,
    pub kind: &'a str,
    pub data: &'a serde_json::Value,
    pub at: i64,
    pub source_id: Option<Uuid>,
    pub source_key: Option<&'a str>,
    pub reused_from: Option<Uuid>,
}

/// How many chunks a parent's output grows by (a child's copies).
#[derive(Debug, Serialize)]
pub(super) struct GrowRow {
    pub id: Uuid,
    pub n: i64,
}

/// A new task row. The lease columns are there so that a task can be inserted already leased
/// (`status` `leased` and the lease set); a ready task leaves them out.
#[derive(Debug, Serialize)]
pub(super) struct TaskRow<'a> {
    pub id: Uuid,
    pub activity_id: &'a str,
    pub runtime: &'a str,
    pub queue: &'a str,
    pub status: &'a str,
    pub visible_at: i64,
    pub schedule_deadline: Option<i64>,
    pub heartbeat_ms: i64,
    pub start_to_close_ms: i64,
    pub turn: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<&'a serde_json::Value>,
    pub lease_token: Option<&'a str>,
    pub lease_owner: Option<&'a str>,
    pub leased_at: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub attempt_deadline: Option<i64>,
}

/// The next attempt of a task.
#[derive(Debug, Serialize)]
pub(super) struct RescheduleRow<'a> {
    pub id: Uuid,
    pub key: &'a str,
    pub attempt: i64,
    pub now: i64,
    pub schedule_deadline: Option<i64>,
}

/// A task whose attempt ended, with the checkpoint it reported.
#[derive(Debug, Serialize)]
pub(super) struct ParkRow<'a> {
    pub id: Uuid,
    pub key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<&'a serde_json::Value>,
}

/// A new timer row (an inbox row too, on its receiver).
#[derive(Debug, Serialize)]
pub(super) struct TimerRow<'a> {
    pub id: Uuid,
    pub key: &'a str,
    pub fire_at: i64,
    pub kind: &'a str,
    pub payload: &'a serde_json::Value,
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

    #[test]
    fn templates_name_the_dialect() {
        let sql = dialect_sql(
            "SELECT {u:id}, {u:p} FROM {rows}",
            "json_each($1)",
            ("unhex(", ", '-')"),
        );
        assert_eq!(
            sql,
            "SELECT unhex(value->>'id', '-'), unhex(value->>'p', '-') FROM json_each($1)"
        );
    }
}
