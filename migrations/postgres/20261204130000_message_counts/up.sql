-- Counters kept as messages change, so the overview, the history's count and a broadcast's
-- counts read a few hundred rows instead of visiting every message (issue 18).
--
-- On PostgreSQL many transactions change messages at once. Row triggers updating shared counter
-- rows would serialise them on those rows (and could deadlock, each taking the rows in its own
-- order), so statement triggers only append what a statement changed to a deltas table (no
-- row is shared, nothing waits), and a background job folds the deltas into the counters.
-- Readers add the deltas not yet folded, so a count is exact the moment the change commits.
CREATE TABLE message_counts (
    day DATE NOT NULL,
    channel_id BIGINT NOT NULL,
    campaign_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, channel_id, campaign_id, status, error_code)
);
CREATE INDEX message_counts_campaign ON message_counts (campaign_id, status) WHERE campaign_id <> 0;

CREATE TABLE message_count_deltas (
    id BIGSERIAL PRIMARY KEY,
    day DATE NOT NULL,
    channel_id BIGINT NOT NULL,
    campaign_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT NOT NULL,
    n BIGINT NOT NULL
);

INSERT INTO message_counts (day, channel_id, campaign_id, status, error_code, n)
SELECT created_at::date, channel_id, COALESCE(campaign_id, 0), status, COALESCE(error_code, ''), count(*)
FROM messages GROUP BY 1, 2, 3, 4, 5;

CREATE FUNCTION message_counts_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_count_deltas (day, channel_id, campaign_id, status, error_code, n)
    SELECT created_at::date, channel_id, COALESCE(campaign_id, 0), status, COALESCE(error_code, ''), count(*)
    FROM new_rows GROUP BY 1, 2, 3, 4, 5;
    RETURN NULL;
END $$;

CREATE FUNCTION message_counts_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_count_deltas (day, channel_id, campaign_id, status, error_code, n)
    SELECT day, channel_id, campaign_id, status, error_code, sum(n) FROM (
        SELECT o.created_at::date AS day, o.channel_id, COALESCE(o.campaign_id, 0) AS campaign_id,
               o.status, COALESCE(o.error_code, '') AS error_code, -1 AS n
        FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE (o.status, o.error_code, o.channel_id, o.campaign_id, o.created_at::date)
              IS DISTINCT FROM (w.status, w.error_code, w.channel_id, w.campaign_id, w.created_at::date)
        UNION ALL
        SELECT w.created_at::date, w.channel_id, COALESCE(w.campaign_id, 0),
               w.status, COALESCE(w.error_code, ''), 1
        FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE (o.status, o.error_code, o.channel_id, o.campaign_id, o.created_at::date)
              IS DISTINCT FROM (w.status, w.error_code, w.channel_id, w.campaign_id, w.created_at::date)
    ) d GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION message_counts_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_count_deltas (day, channel_id, campaign_id, status, error_code, n)
    SELECT created_at::date, channel_id, COALESCE(campaign_id, 0), status, COALESCE(error_code, ''), -count(*)
    FROM old_rows GROUP BY 1, 2, 3, 4, 5;
    RETURN NULL;
END $$;

CREATE TRIGGER message_counts_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION message_counts_on_insert();
CREATE TRIGGER message_counts_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_counts_on_update();
CREATE TRIGGER message_counts_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION message_counts_on_delete();

-- A broadcast's recipients by state. The freeze writes the first counts itself (one GROUP BY
-- over the rows it just inserted); the triggers follow every later change.
CREATE TABLE broadcast_recipient_counts (
    broadcast_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, status)
);

CREATE TABLE broadcast_recipient_count_deltas (
    id BIGSERIAL PRIMARY KEY,
    broadcast_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL
);

INSERT INTO broadcast_recipient_counts (broadcast_id, status, n)
SELECT broadcast_id, status, count(*) FROM broadcast_recipients GROUP BY 1, 2;

CREATE FUNCTION broadcast_recipient_counts_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO broadcast_recipient_count_deltas (broadcast_id, status, n)
    SELECT broadcast_id, status, sum(n) FROM (
        SELECT o.broadcast_id, o.status, -1 AS n FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE (o.status, o.broadcast_id) IS DISTINCT FROM (w.status, w.broadcast_id)
        UNION ALL
        SELECT w.broadcast_id, w.status, 1 FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE (o.status, o.broadcast_id) IS DISTINCT FROM (w.status, w.broadcast_id)
    ) d GROUP BY 1, 2 HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION broadcast_recipient_counts_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO broadcast_recipient_count_deltas (broadcast_id, status, n)
    SELECT broadcast_id, status, -count(*) FROM old_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE TRIGGER broadcast_recipient_counts_update AFTER UPDATE ON broadcast_recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION broadcast_recipient_counts_on_update();
CREATE TRIGGER broadcast_recipient_counts_delete AFTER DELETE ON broadcast_recipients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION broadcast_recipient_counts_on_delete();

-- The overview's "windows open now" and "opt-outs this week".
CREATE INDEX contact_windows_channel ON contact_windows (channel_id, last_inbound_at);
CREATE INDEX consent_events_status_time ON consent_events (status, occurred_at);
