-- PostgreSQL only (totals per status kept beside its folded counters). SQLite's triggers
-- write the counters in the writer's transaction and its count sums them in-process; a table
-- more would be one more write per change for no gain. Kept so both folders list the same
-- migrations.
SELECT 1;
