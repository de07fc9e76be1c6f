-- Retention: which executions refer to which stored objects, so deleting an execution can
-- delete the checkpoints no remaining execution refers to. A row is written with every object
-- an execution writes (equal content written by two executions: two rows), in the same
-- transaction; objects based on another are reached through `objects.base`.
CREATE TABLE object_refs (
    object_id    TEXT NOT NULL,
    execution_id UUID NOT NULL,
    PRIMARY KEY (object_id, execution_id)
);
CREATE INDEX object_refs_execution ON object_refs (execution_id);
CREATE INDEX objects_base ON objects (base) WHERE base IS NOT NULL;

-- Whole trees (a top-level execution and its children) are deleted together, the oldest
-- closed first.
CREATE INDEX executions_root ON executions (root_id);
CREATE INDEX executions_closed ON executions (closed_at) WHERE parent_id IS NULL AND closed_at IS NOT NULL;
CREATE INDEX executions_retry_of ON executions (retry_of) WHERE retry_of IS NOT NULL;

-- The references of objects written before this migration: every row that names an object,
-- and the objects under it.
WITH RECURSIVE direct(object_id, execution_id) AS (
    SELECT o.id, h.execution_id FROM objects o JOIN history_events h ON strpos(h.payload::text, o.id) > 0
    UNION SELECT o.id, e.id FROM objects o JOIN executions e ON strpos(e.state::text, o.id) > 0
    UNION SELECT o.id, t.execution_id FROM objects o JOIN tasks t ON strpos(t.checkpoint::text, o.id) > 0
), chain(object_id, execution_id) AS (
    SELECT object_id, execution_id FROM direct
    UNION SELECT o.base, c.execution_id FROM chain c JOIN objects o ON o.id = c.object_id
    WHERE o.base IS NOT NULL
)
INSERT INTO object_refs (object_id, execution_id)
SELECT object_id, execution_id FROM chain ON CONFLICT DO NOTHING;
