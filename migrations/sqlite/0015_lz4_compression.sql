-- PostgreSQL's 0015 sets lz4 compression on its JSON columns; SQLite does not compress values,
-- so nothing changes here (the migration keeps the two dialects' numbering alike).
SELECT 1;
