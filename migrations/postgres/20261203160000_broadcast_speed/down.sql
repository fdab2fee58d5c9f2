DROP INDEX broadcast_recipients_status;
DROP INDEX messages_queued_campaign;
DROP INDEX messages_queued_single;
CREATE INDEX messages_queued ON messages (channel_id, next_attempt_at, id) WHERE status = 'queued';
