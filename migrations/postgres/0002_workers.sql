-- Workers that poll for tasks, for `cairn worker list` and for saying why a task waits.
-- Upserted by whichever server a worker polls, at a bounded rate; slots in use and the latest
-- heartbeat are read from `tasks` (lease_owner), so they need no writes here.
CREATE TABLE workers (
    worker_id   TEXT PRIMARY KEY,
    -- JSON array of runtime names.
    runtimes    JSONB NOT NULL,
    queue       TEXT NOT NULL,
    -- How many attempts it runs at once (0 when it did not say).
    slots       BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
CREATE INDEX workers_last_seen ON workers (last_seen);
CREATE INDEX tasks_owner ON tasks (lease_owner) WHERE status = 'leased';
