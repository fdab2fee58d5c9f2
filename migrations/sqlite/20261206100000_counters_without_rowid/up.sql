-- The counters become WITHOUT ROWID tables, stored in their key's order (issue 18): a rowid
-- table kept the key in a separate index, so the overview's scan of 30 days looked every
-- counter row up twice, and every trigger's upsert on a send wrote two B-trees. The triggers
-- are dropped and made again around the rebuild (same text as in 20261204130000).
DROP TRIGGER message_counts_insert;
DROP TRIGGER message_counts_update;
DROP TRIGGER message_counts_delete;
DROP TRIGGER broadcast_recipient_counts_update;
DROP TRIGGER broadcast_recipient_counts_delete;

CREATE TABLE message_counts_rebuilt (
    day DATE NOT NULL,
    channel_id BIGINT NOT NULL,
    campaign_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, channel_id, campaign_id, status, error_code)
) WITHOUT ROWID;
INSERT INTO message_counts_rebuilt (day, channel_id, campaign_id, status, error_code, n)
SELECT day, channel_id, campaign_id, status, error_code, n FROM message_counts;
DROP TABLE message_counts;
ALTER TABLE message_counts_rebuilt RENAME TO message_counts;
CREATE INDEX message_counts_campaign ON message_counts (campaign_id, status) WHERE campaign_id <> 0;

CREATE TABLE broadcast_recipient_counts_rebuilt (
    broadcast_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, status)
) WITHOUT ROWID;
INSERT INTO broadcast_recipient_counts_rebuilt (broadcast_id, status, n)
SELECT broadcast_id, status, n FROM broadcast_recipient_counts;
DROP TABLE broadcast_recipient_counts;
ALTER TABLE broadcast_recipient_counts_rebuilt RENAME TO broadcast_recipient_counts;

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
