-- PostgreSQL's 0015 sets lz4 compression on its JSON columns and a fill factor on `executions`;
-- SQLite has neither, so nothing changes here (the migration keeps the two dialects' numbering
-- alike).
SELECT 1;
