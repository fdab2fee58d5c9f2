DROP INDEX messages_leased;
CREATE INDEX messages_sending ON messages (lease_expires_at) WHERE status = 'sending';
