DROP TABLE broadcast_follow_up_contacts;
DROP INDEX broadcasts_follow_up_of;
ALTER TABLE broadcasts DROP COLUMN follow_up_of;
DROP INDEX broadcast_recipients_order;
DROP INDEX broadcast_recipients_replied;
ALTER TABLE broadcast_recipients DROP COLUMN replied_at;
