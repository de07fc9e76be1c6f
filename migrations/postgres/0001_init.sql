-- Cairn schema, PostgreSQL dialect. Every change lands in migrations/sqlite too.
-- Times are BIGINT milliseconds since the Unix epoch; ids are UUIDs (native UUID here);
-- JSON is JSONB here and TEXT in SQLite.

CREATE TABLE agents (
    id            UUID PRIMARY KEY,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- Rows written before runtimes existed run on the default (OpenAI-compatible) runtime.
    runtime       TEXT NOT NULL DEFAULT 'default',
    model_id      TEXT NOT NULL DEFAULT '',
    configuration JSONB NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX agents_active_name ON agents (namespace, name) WHERE status = 'active';
CREATE INDEX agents_namespace ON agents (namespace, id);

CREATE TABLE executions (
    id            UUID PRIMARY KEY,
    namespace     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    agent_id      UUID,
    team_id       UUID,
    runtime       TEXT NOT NULL,
    status        TEXT NOT NULL,
    input         JSONB NOT NULL,
    result        JSONB,
    failure       JSONB,
    parent_id     UUID,
    root_id       UUID NOT NULL,
    retry_of      UUID,
    request_id    TEXT,
    -- The machine's snapshot after the last transition.
    state         JSONB NOT NULL,
    -- The seq the next history event gets; also the optimistic-concurrency version of the row.
    next_seq      BIGINT NOT NULL,
    -- The seq of the last output chunk (0 when there is none).
    output_seq    BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd      DOUBLE PRECISION NOT NULL DEFAULT 0,
    tool_calls    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    closed_at     BIGINT,
    duration_ms   BIGINT
);
CREATE UNIQUE INDEX executions_request_id ON executions (namespace, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX executions_namespace ON executions (namespace, id);
CREATE INDEX executions_status ON executions (namespace, status, id);
CREATE INDEX executions_agent ON executions (agent_id, id);
CREATE INDEX executions_parent ON executions (parent_id, id);

CREATE TABLE execution_labels (
    execution_id UUID NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE INDEX execution_labels_key ON execution_labels (key, value, execution_id);

CREATE TABLE history_events (
    execution_id UUID NOT NULL,
    seq          BIGINT NOT NULL,
    type         TEXT NOT NULL,
    payload      JSONB NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

-- One row per open activity; it lives from the first attempt's scheduling until the activity
-- closes, so its checkpoint carries over from attempt to attempt.
CREATE TABLE tasks (
    execution_id      UUID NOT NULL,
    activity_id       TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    runtime           TEXT NOT NULL,
    queue             TEXT NOT NULL,
    -- ready | leased | backoff
    status            TEXT NOT NULL,
    visible_at        BIGINT NOT NULL,
    schedule_deadline BIGINT,
    lease_token       TEXT,
    lease_owner       TEXT,
    leased_at         BIGINT,
    lease_expires_at  BIGINT,
    attempt_deadline  BIGINT,
    heartbeat_ms      BIGINT NOT NULL,
    start_to_close_ms BIGINT NOT NULL,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    turn              JSONB NOT NULL,
    checkpoint        JSONB,
    PRIMARY KEY (execution_id, activity_id)
);
CREATE INDEX tasks_ready ON tasks (status, runtime, queue, visible_at);
CREATE INDEX tasks_lease ON tasks (status, lease_expires_at);

CREATE TABLE timers (
    execution_id UUID NOT NULL,
    timer_id     TEXT NOT NULL,
    fire_at      BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    payload      JSONB NOT NULL,
    PRIMARY KEY (execution_id, timer_id)
);
CREATE INDEX timers_fire_at ON timers (fire_at);

CREATE TABLE output_chunks (
    execution_id UUID NOT NULL,
    seq          BIGINT NOT NULL,
    activity_id  TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    data         JSONB NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
