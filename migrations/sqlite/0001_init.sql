-- Cairn schema, SQLite dialect. Every change lands in migrations/postgres too.
-- Times are INTEGER milliseconds since the Unix epoch; ids are UUIDs (16-byte BLOBs here);
-- JSON is TEXT here and JSONB in PostgreSQL.

CREATE TABLE agents (
    id            BLOB PRIMARY KEY,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- Rows written before runtimes existed run on the default (OpenAI-compatible) runtime.
    runtime       TEXT NOT NULL DEFAULT 'default',
    model_id      TEXT NOT NULL DEFAULT '',
    configuration TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX agents_active_name ON agents (namespace, name) WHERE status = 'active';
CREATE INDEX agents_namespace ON agents (namespace, id);

CREATE TABLE executions (
    id            BLOB PRIMARY KEY,
    namespace     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    agent_id      BLOB,
    team_id       BLOB,
    runtime       TEXT NOT NULL,
    status        TEXT NOT NULL,
    input         TEXT NOT NULL,
    result        TEXT,
    failure       TEXT,
    parent_id     BLOB,
    root_id       BLOB NOT NULL,
    retry_of      BLOB,
    request_id    TEXT,
    -- The machine's snapshot after the last transition.
    state         TEXT NOT NULL,
    -- The seq the next history event gets; also the optimistic-concurrency version of the row.
    next_seq      INTEGER NOT NULL,
    -- The seq of the last output chunk (0 when there is none).
    output_seq    INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL NOT NULL DEFAULT 0,
    tool_calls    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    closed_at     INTEGER,
    duration_ms   INTEGER
);
CREATE UNIQUE INDEX executions_request_id ON executions (namespace, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX executions_namespace ON executions (namespace, id);
CREATE INDEX executions_status ON executions (namespace, status, id);
CREATE INDEX executions_agent ON executions (agent_id, id);
CREATE INDEX executions_parent ON executions (parent_id, id);

CREATE TABLE execution_labels (
    execution_id BLOB NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE INDEX execution_labels_key ON execution_labels (key, value, execution_id);

CREATE TABLE history_events (
    execution_id BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

-- One row per open activity; it lives from the first attempt's scheduling until the activity
-- closes, so its checkpoint carries over from attempt to attempt.
CREATE TABLE tasks (
    execution_id      BLOB NOT NULL,
    activity_id       TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    runtime           TEXT NOT NULL,
    queue             TEXT NOT NULL,
    -- ready | leased | backoff
    status            TEXT NOT NULL,
    visible_at        INTEGER NOT NULL,
    schedule_deadline INTEGER,
    lease_token       TEXT,
    lease_owner       TEXT,
    leased_at         INTEGER,
    lease_expires_at  INTEGER,
    attempt_deadline  INTEGER,
    heartbeat_ms      INTEGER NOT NULL,
    start_to_close_ms INTEGER NOT NULL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    turn              TEXT NOT NULL,
    checkpoint        TEXT,
    PRIMARY KEY (execution_id, activity_id)
);
CREATE INDEX tasks_ready ON tasks (status, runtime, queue, visible_at);
CREATE INDEX tasks_lease ON tasks (status, lease_expires_at);

CREATE TABLE timers (
    execution_id BLOB NOT NULL,
    timer_id     TEXT NOT NULL,
    fire_at      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    PRIMARY KEY (execution_id, timer_id)
);
CREATE INDEX timers_fire_at ON timers (fire_at);

CREATE TABLE output_chunks (
    execution_id BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    activity_id  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
