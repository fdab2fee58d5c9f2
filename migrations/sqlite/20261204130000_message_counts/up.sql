-- Counters kept as messages change, so the overview, the history's count and a broadcast's
-- counts read a few hundred rows instead of visiting every message (issue 18). On SQLite the
-- triggers update the counters in the writer's own transaction (there is one writer, so no
-- contention); `message_count_deltas` exists for PostgreSQL's sake and stays empty here.
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    day DATE NOT NULL,
    channel_id BIGINT NOT NULL,
    campaign_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT NOT NULL,
    n BIGINT NOT NULL
);

INSERT INTO message_counts (day, channel_id, campaign_id, status, error_code, n)
SELECT date(created_at), channel_id, COALESCE(campaign_id, 0), status, COALESCE(error_code, ''), count(*)
FROM messages GROUP BY 1, 2, 3, 4, 5;

CREATE TRIGGER message_counts_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_counts (day, channel_id, campaign_id, status, error_code, n)
    VALUES (date(NEW.created_at), NEW.channel_id, COALESCE(NEW.campaign_id, 0), NEW.status,
            COALESCE(NEW.error_code, ''), 1)
    ON CONFLICT (day, channel_id, campaign_id, status, error_code) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER message_counts_update
AFTER UPDATE OF status, error_code, channel_id, campaign_id, created_at ON messages
WHEN OLD.status IS NOT NEW.status OR OLD.error_code IS NOT NEW.error_code
  OR OLD.channel_id IS NOT NEW.channel_id OR OLD.campaign_id IS NOT NEW.campaign_id
  OR date(OLD.created_at) IS NOT date(NEW.created_at)
BEGIN
    UPDATE message_counts SET n = n - 1
    WHERE day = date(OLD.created_at) AND channel_id = OLD.channel_id
      AND campaign_id = COALESCE(OLD.campaign_id, 0) AND status = OLD.status
      AND error_code = COALESCE(OLD.error_code, '');
    INSERT INTO message_counts (day, channel_id, campaign_id, status, error_code, n)
    VALUES (date(NEW.created_at), NEW.channel_id, COALESCE(NEW.campaign_id, 0), NEW.status,
            COALESCE(NEW.error_code, ''), 1)
    ON CONFLICT (day, channel_id, campaign_id, status, error_code) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER message_counts_delete AFTER DELETE ON messages
BEGIN
    UPDATE message_counts SET n = n - 1
    WHERE day = date(OLD.created_at) AND channel_id = OLD.channel_id
      AND campaign_id = COALESCE(OLD.campaign_id, 0) AND status = OLD.status
      AND error_code = COALESCE(OLD.error_code, '');
END;

-- A broadcast's recipients by state. The freeze writes the first counts itself (one GROUP BY
-- over the rows it just inserted: a million trigger calls would slow every launch); the
-- triggers follow every later change.
CREATE TABLE broadcast_recipient_counts (
    broadcast_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, status)
);

CREATE TABLE broadcast_recipient_count_deltas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    broadcast_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL
);

INSERT INTO broadcast_recipient_counts (broadcast_id, status, n)
SELECT broadcast_id, status, count(*) FROM broadcast_recipients GROUP BY 1, 2;

CREATE TRIGGER broadcast_recipient_counts_update AFTER UPDATE OF status, broadcast_id ON broadcast_recipients
WHEN OLD.status IS NOT NEW.status OR OLD.broadcast_id IS NOT NEW.broadcast_id
BEGIN
    UPDATE broadcast_recipient_counts SET n = n - 1
    WHERE broadcast_id = OLD.broadcast_id AND status = OLD.status;
    INSERT INTO broadcast_recipient_counts (broadcast_id, status, n)
    VALUES (NEW.broadcast_id, NEW.status, 1)
    ON CONFLICT (broadcast_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER broadcast_recipient_counts_delete AFTER DELETE ON broadcast_recipients
BEGIN
    UPDATE broadcast_recipient_counts SET n = n - 1
    WHERE broadcast_id = OLD.broadcast_id AND status = OLD.status;
END;

-- The overview's "windows open now" and "opt-outs this week".
CREATE INDEX contact_windows_channel ON contact_windows (channel_id, last_inbound_at);
CREATE INDEX consent_events_status_time ON consent_events (status, occurred_at);
