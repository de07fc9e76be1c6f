-- The JSON columns a commit writes are compressed with lz4 instead of pglz, where the server
-- was built with lz4 (PostgreSQL 14+; Debian's, the official images' and the managed services'
-- builds are). PostgreSQL compresses a row's values once the row passes 2 KB: the machine state
-- of a ten-turn execution does at every turn, and pglz took a sixth of PostgreSQL's CPU per W3
-- execution (8.1-8.4 ms with pglz, 6.9-7.3 with lz4; W3 1512-1553 against 1745-1824
-- activities/s). Only new values are compressed so; nothing is rewritten. A server without lz4
-- keeps pglz.
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
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: its JSON columns stay compressed with pglz';
END
$$;

-- An execution row is rewritten at every transition; with its pages filled to 70% the new
-- version usually fits beside the old one, so a transition that changes no indexed column (a
-- turn that leaves the execution RUNNING) is a HOT update, writing no index entries: in a W3
-- run 78% of the updates were HOT against 43% with full pages, and the WAL per execution 5%
-- smaller. Applies to pages written from now on.
ALTER TABLE executions SET (fillfactor = 70);
