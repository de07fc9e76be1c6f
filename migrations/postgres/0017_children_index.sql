-- `executions_parent` lists an execution's children (`parent_id = $1`); a top-level execution
-- has none to be found by, yet gave the index an entry at its insert and another at every
-- update that moves its row (its close): in a W1 run, 2 of the 16 index entries per execution.
-- Only children are indexed now; a query for a parent's children still uses it, since
-- `parent_id = $1` implies `parent_id IS NOT NULL`.
DROP INDEX executions_parent;
CREATE INDEX executions_parent ON executions (parent_id, id) WHERE parent_id IS NOT NULL;
