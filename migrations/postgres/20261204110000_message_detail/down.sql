ALTER TABLE inbound_messages DROP COLUMN purged_at;
ALTER TABLE messages DROP COLUMN purged_after_days;
ALTER TABLE messages DROP COLUMN purged_at;
ALTER TABLE early_statuses DROP COLUMN payload;
ALTER TABLE message_events DROP COLUMN payload;
