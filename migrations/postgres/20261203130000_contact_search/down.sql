DROP INDEX IF EXISTS contacts_search_trgm;
DROP INDEX contacts_search_pending;
ALTER TABLE contacts DROP COLUMN search_text;
