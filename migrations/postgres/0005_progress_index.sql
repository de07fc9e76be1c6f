-- How many output chunks the current lease of a task has stored, so that a progress report the
-- worker sends again (its reply was lost) is stored once. Reset by every claim.
ALTER TABLE tasks ADD COLUMN chunks_sent BIGINT NOT NULL DEFAULT 0;
