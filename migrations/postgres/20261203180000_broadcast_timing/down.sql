DROP INDEX broadcast_recipients_pending_zone;
ALTER TABLE broadcast_recipients DROP COLUMN zone;
ALTER TABLE broadcasts DROP COLUMN timing;
