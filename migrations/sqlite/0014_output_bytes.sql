-- The bytes of output stored for each execution (its chunks' kinds and JSON data, as workers'
-- batches weigh them), kept in the transaction that stores them, so --max-output-bytes is checked
-- without summing chunks. A team's copies of its children's chunks are not counted again.
-- Executions from before this column start at 0.
ALTER TABLE executions ADD COLUMN output_bytes INTEGER NOT NULL DEFAULT 0;
