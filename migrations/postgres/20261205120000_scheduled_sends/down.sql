DROP INDEX messages_scheduled;
UPDATE messages SET status = 'cancelled' WHERE status = 'scheduled';
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN ('queued',
    'sending', 'sent', 'delivered', 'read', 'failed', 'unknown', 'skipped', 'cancelled'));
