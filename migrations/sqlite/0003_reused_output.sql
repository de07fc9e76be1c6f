-- Output a retried execution copied from the execution it retries (its reused turns' chunks)
-- names the execution that produced it; NULL for output produced by the execution itself.
ALTER TABLE output_chunks ADD COLUMN reused_from BLOB;
