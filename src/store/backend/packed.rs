//! The rows a group commit's statements carry, each statement's as one JSON array parameter
//! (`Packed`), and how a statement template names their fields in a dialect (`dialect_sql`).
//! A JSON value a row carries (a machine state, an event, a chunk, a turn) is a `JsonField`:
//! on PostgreSQL a JSON string holding its text, which the statement stores as it is
//! (`{j:name}`), since nested as an object it would be parsed into the array's JSONB and
//! printed back; on SQLite nested, as SQLite's `->` hands it on as text.

use serde::Serialize;
use uuid::Uuid;

/// The most bytes of JSON one statement's array parameter carries: far below PostgreSQL's
/// 255 MiB limit of a `jsonb` value, so a batch of any size is stored. Rows beyond it go into
/// another execution of the same statement.
const MAX_PARAM_BYTES: usize = 32 << 20;

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

/// How a dialect spells a statement's reading of a row's field: as a UUID (wrapped around
/// `value->>'name'`), and whether a JSON value is carried as its text (see [`JsonField`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Spelling {
    pub uuid: (&'static str, &'static str),
    pub json_as_text: bool,
}

/// Expands a statement template into a dialect: `{rows}` becomes the rows of the JSON array
/// parameter `$1` (each as `value`), `{u:name}` the field `name` of a row read as a UUID, and
/// `{j:name}` the JSON value the field carries: `CAST(value->>'name' AS JSON)` where it is
/// carried as text (PostgreSQL), `value->'name'` where it is nested.
pub(super) fn dialect_sql(template: &str, rows: &str, spelling: Spelling) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template.replace("{rows}", rows);
    while let Some(start) = [rest.find("{u:"), rest.find("{j:")]
        .into_iter()
        .flatten()
        .min()
    {
        out.push_str(&rest[..start]);
        let end = start
            + rest[start..]
                .find('}')
                .expect("a closed {u:...} or {j:...}");
        let (open, arrow, close) = match &rest[start + 1..start + 2] {
            "u" => (spelling.uuid.0, "->>", spelling.uuid.1),
            _ if spelling.json_as_text => ("CAST(", "->>", " AS JSON)"),
            _ => ("", "->", ""),
        };
        out.push_str(open);
        out.push_str("value");
        out.push_str(arrow);
        out.push('\'');
        out.push_str(&rest[start + 3..end]);
        out.push('\'');
        out.push_str(close);
        rest = rest[end + 1..].to_string();
    }
    out.push_str(&rest);
    out
}

/// A JSON value a row carries: nested, or (`as_text`) as a JSON string holding its text. The
/// text is written into the string as it is produced (serde_json's `collect_str` escapes what a
/// `Display` writes), not built first: a machine state is the largest thing a commit carries.
#[derive(Debug)]
pub(super) struct JsonField<'a, T: ?Sized> {
    value: &'a T,
    as_text: bool,
}

impl<'a, T: ?Sized> JsonField<'a, T> {
    /// `value`, carried as the dialect's `spelling` says.
    pub(super) fn new(value: &'a T, spelling: Spelling) -> Self {
        JsonField {
            value,
            as_text: spelling.json_as_text,
        }
    }
}

impl<T: Serialize + ?Sized> Serialize for JsonField<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.as_text {
            s.collect_str(&JsonText(self.value))
        } else {
            self.value.serialize(s)
        }
    }
}

/// A value shown as its JSON text.
struct JsonText<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> std::fmt::Display for JsonText<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// serde_json's output, handed on to a formatter: it writes whole `str` fragments.
        struct Out<'f, 'g>(&'f mut std::fmt::Formatter<'g>);
        impl std::io::Write for Out<'_, '_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let text = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
                self.0.write_str(text).map_err(std::io::Error::other)?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        serde_json::to_writer(Out(f), self.0).map_err(|_| std::fmt::Error)
    }
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
    pub input: JsonField<'a, serde_json::Value>,
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
    pub state: JsonField<'a, crate::store::SnapshotJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<JsonField<'a, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<JsonField<'a, crate::domain::Failure>>,
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
        spelling: Spelling,
    ) -> Self {
        use super::rows::stored_count;
        RowFields {
            state: JsonField::new(&row.state, spelling),
            result: row.result.as_ref().map(|r| JsonField::new(r, spelling)),
            failure: row.failure.as_ref().map(|f| JsonField::new(f, spelling)),
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
    pub payload: JsonField<'a, crate::domain::HistoryEvent>,
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
    pub data: JsonField<'a, serde_json::Value>,
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
    pub turn: JsonField<'a, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<JsonField<'a, serde_json::Value>>,
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
    pub checkpoint: Option<JsonField<'a, serde_json::Value>>,
}

/// A new timer row (an inbox row too, on its receiver).
#[derive(Debug, Serialize)]
pub(super) struct TimerRow<'a> {
    pub id: Uuid,
    pub key: &'a str,
    pub fire_at: i64,
    pub kind: &'a str,
    pub payload: JsonField<'a, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_field_is_carried_as_its_text_or_nested() {
        let state = serde_json::json!({ "say": "a \"quoted\" line\nand é ✓", "n": [1, 2.5] });
        let spelling = |json_as_text| Spelling {
            uuid: ("", ""),
            json_as_text,
        };
        let packed = serde_json::to_string(&JsonField::new(&state, spelling(true))).unwrap();
        let back: serde_json::Value = serde_json::from_str(&packed).unwrap();
        let text = back.as_str().expect("the state as a JSON string");
        assert_eq!(text, serde_json::to_string(&state).unwrap());
        let nested = serde_json::to_string(&JsonField::new(&state, spelling(false))).unwrap();
        assert_eq!(nested, serde_json::to_string(&state).unwrap());
    }

    #[test]
    fn templates_name_the_dialect() {
        let template = "SELECT {u:id}, {j:state}, {u:p} FROM {rows}";
        let sqlite = Spelling {
            uuid: ("unhex(", ", '-')"),
            json_as_text: false,
        };
        assert_eq!(
            dialect_sql(template, "jsonb_each($1)", sqlite),
            "SELECT unhex(value->>'id', '-'), value->'state', unhex(value->>'p', '-') \
             FROM jsonb_each($1)"
        );
        let postgres = Spelling {
            uuid: ("CAST(", " AS UUID)"),
            json_as_text: true,
        };
        assert_eq!(
            dialect_sql(template, "j($1)", postgres),
            "SELECT CAST(value->>'id' AS UUID), CAST(value->>'state' AS JSON), \
             CAST(value->>'p' AS UUID) FROM j($1)"
        );
    }
}
