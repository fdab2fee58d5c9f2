DROP TRIGGER contacts_search_update;
DROP TRIGGER contacts_search_delete;
DROP TRIGGER contacts_search_insert;
DROP TABLE contacts_search;
DROP INDEX contacts_search_pending;
ALTER TABLE contacts DROP COLUMN search_text;
