-- PostgreSQL's 0016 keeps the JSON a commit writes as JSON text instead of JSONB; SQLite keeps
-- it as TEXT already, so nothing changes here (the migration keeps the two dialects' numbering
-- alike).
SELECT 1;
