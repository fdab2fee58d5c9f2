-- Messages per status over all time, for the history's unfiltered count (its first page) and
-- a count by status alone: those summed every counter row (thousands after a few months, about
-- half of the first page's time in the database at 1,000,000 messages). Readers add the
-- deltas not folded yet, as they do to the counters, so a count stays exact.
--
-- Statement triggers on the counters keep the totals: whatever folds deltas into the counters
-- (this version's fold, or an instance of the version before still running) moves them into
-- the totals in the same transaction. A fold changes its counter rows first and the totals
-- after, in status order, so two folds never wait on each other in a cycle. The lock keeps any
-- fold out until the totals are written and the triggers exist.
CREATE TABLE message_status_totals (
    status TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);

LOCK TABLE message_counts IN EXCLUSIVE MODE;

INSERT INTO message_status_totals (status, n)
SELECT status, sum(n) FROM message_counts GROUP BY status;

CREATE FUNCTION message_status_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO message_status_totals (status, n)
        SELECT status, sum(n) FROM new_rows GROUP BY status ORDER BY status
        ON CONFLICT (status) DO UPDATE SET n = message_status_totals.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO message_status_totals (status, n)
        SELECT status, sum(n) FROM (
            SELECT status, n FROM new_rows UNION ALL SELECT status, -n FROM old_rows
        ) d GROUP BY status HAVING sum(n) <> 0 ORDER BY status
        ON CONFLICT (status) DO UPDATE SET n = message_status_totals.n + excluded.n;
    ELSE
        INSERT INTO message_status_totals (status, n)
        SELECT status, -sum(n) FROM old_rows GROUP BY status ORDER BY status
        ON CONFLICT (status) DO UPDATE SET n = message_status_totals.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER message_status_totals_insert AFTER INSERT ON message_counts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION message_status_totals_add();
CREATE TRIGGER message_status_totals_update AFTER UPDATE ON message_counts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_status_totals_add();
CREATE TRIGGER message_status_totals_delete AFTER DELETE ON message_counts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION message_status_totals_add();
