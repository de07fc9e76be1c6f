-- The directory the current lease's attempt works in, as its worker named it in a progress
-- report: an attempt that never reports its outcome (its worker died, it timed out) still records
-- where it ran in its `ActivityStarted`. Cleared by each claim.
ALTER TABLE tasks ADD COLUMN workspace TEXT;
