DROP TABLE channel_throttle;
DROP TABLE workers;
CREATE INDEX messages_due ON messages (status, next_attempt_at);
DROP INDEX messages_channel_due;
ALTER TABLE messages DROP COLUMN leased_by;
