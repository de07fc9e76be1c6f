-- The executions of a time window, for GetStats: its counts, sums and percentiles read the
-- window's rows through this index, whatever the size of the table.
CREATE INDEX executions_created ON executions (namespace, created_at);
