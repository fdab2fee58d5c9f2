-- SQLite only (its counters become WITHOUT ROWID tables). PostgreSQL stores every table as a
-- heap beside its indexes; its counters stay as they are. Kept so both folders list the same
-- migrations.
SELECT 1;
