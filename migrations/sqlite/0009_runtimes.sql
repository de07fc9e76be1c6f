-- Runtimes served by workers outside this binary (the Python SDK's, for one), as each worker
-- registers them (`RegisterRuntimes`): one row per runtime and worker, so `ListRuntimes` shows
-- who offers what, and `CreateAgent`/`UpdateAgent` check an agent's `runtime_config` against the
-- newest schema even while no worker of that runtime is connected.
CREATE TABLE runtimes (
    name          TEXT NOT NULL,
    worker_id     TEXT NOT NULL,
    description   TEXT NOT NULL,
    -- The JSON Schema of the runtime's `runtime_config`.
    config_schema TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    PRIMARY KEY (name, worker_id)
);
CREATE INDEX runtimes_newest ON runtimes (name, last_seen);
