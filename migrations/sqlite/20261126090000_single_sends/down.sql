ALTER TABLE messages DROP COLUMN request_hash;
