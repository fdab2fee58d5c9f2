DROP INDEX messages_channel_due;
CREATE INDEX messages_channel_due ON messages (channel_id, status, next_attempt_at);
