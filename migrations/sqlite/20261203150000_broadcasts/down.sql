DROP INDEX messages_campaign_contact;
DROP TABLE broadcast_recipients;
DROP TABLE broadcasts;
