-- The JSON a commit writes and the engine reads back whole (machine states, history, output,
-- turns, checkpoints, timer payloads) is kept as JSON, its text as written, instead of JSONB.
-- No statement looks inside these values, so JSONB's parsed form bought nothing and cost on
-- both sides: each value was parsed into it on the way in and printed back to text on every
-- read, and it is larger (a W1 execution's state 1200 bytes as JSONB, ~850 as text): WAL per
-- W1 execution 8.8 KB with JSONB, 7.9 KB with JSON (before rows carried the compact text).
-- The rewrite converts each value once. Changing a column's type resets its compression, so
-- it is set again (lz4, as 0015).
ALTER TABLE executions
    ALTER COLUMN state TYPE JSON,
    ALTER COLUMN input TYPE JSON,
    ALTER COLUMN result TYPE JSON,
    ALTER COLUMN failure TYPE JSON;
ALTER TABLE history_events ALTER COLUMN payload TYPE JSON;
ALTER TABLE output_chunks ALTER COLUMN data TYPE JSON;
ALTER TABLE tasks
    ALTER COLUMN turn TYPE JSON,
    ALTER COLUMN checkpoint TYPE JSON;
ALTER TABLE timers ALTER COLUMN payload TYPE JSON;

DO $$
BEGIN
    ALTER TABLE executions
        ALTER COLUMN state SET COMPRESSION lz4,
        ALTER COLUMN input SET COMPRESSION lz4,
        ALTER COLUMN result SET COMPRESSION lz4,
        ALTER COLUMN failure SET COMPRESSION lz4;
    ALTER TABLE history_events ALTER COLUMN payload SET COMPRESSION lz4;
    ALTER TABLE output_chunks ALTER COLUMN data SET COMPRESSION lz4;
    ALTER TABLE tasks
        ALTER COLUMN turn SET COMPRESSION lz4,
        ALTER COLUMN checkpoint SET COMPRESSION lz4;
    ALTER TABLE timers ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: its JSON columns stay compressed with pglz';
END
$$;
