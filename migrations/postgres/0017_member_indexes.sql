-- `executions_parent` lists an execution's children (`parent_id = $1`) and `executions_root`
-- the members of a tree (`root_id = $1`, for retention). A top-level execution is the root of
-- its own tree and nobody's child, yet gave each index an entry at its insert and another at
-- every update that moves its row (its close): in a W1 run, 4 of the 16 index entries per
-- execution. Only children are indexed now, and only members that are not their own root;
-- a query for a parent's children still uses the first (`parent_id = $1` implies
-- `parent_id IS NOT NULL`), retention finds a root by its id and its other members by the
-- second (`root_id = $1 AND root_id <> id`).
DROP INDEX executions_parent;
CREATE INDEX executions_parent ON executions (parent_id, id) WHERE parent_id IS NOT NULL;
DROP INDEX executions_root;
CREATE INDEX executions_root ON executions (root_id) WHERE root_id <> id;
