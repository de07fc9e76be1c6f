-- Teams: members (agents) and a strategy; team executions start child executions.

CREATE TABLE teams (
    id            UUID PRIMARY KEY,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    strategy      TEXT NOT NULL,
    configuration JSONB NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX teams_active_name ON teams (namespace, name) WHERE status = 'active';
CREATE INDEX teams_namespace ON teams (namespace, id);

CREATE TABLE team_members (
    team_id  UUID NOT NULL,
    position BIGINT NOT NULL,
    agent_id UUID NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (team_id, position)
);

-- A child execution's key within its parent (`1-analyst`, `leader-2`, ...).
ALTER TABLE executions ADD COLUMN child_key TEXT;
CREATE UNIQUE INDEX executions_child_key ON executions (parent_id, child_key) WHERE child_key IS NOT NULL;

-- A team's output holds its children's chunks, each tagged with the child that produced it.
ALTER TABLE output_chunks ADD COLUMN source_id UUID;
ALTER TABLE output_chunks ADD COLUMN source_key TEXT;
