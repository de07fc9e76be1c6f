-- The optimistic version of agents and teams: every update increments it, and an update is
-- written only while the version it was made from is still the stored one, so of two concurrent
-- edits one wins and the other is refused instead of silently lost.
ALTER TABLE agents ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE teams ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
