-- Contact search folds case and accents in every script (issue 15). `search_text` holds the
-- folded name, e-mail and attribute values (src/domain/contact.rs: fold_for_search), written
-- by Herald with every contact. SQL cannot fold accents portably, so rows from before this
-- migration stay NULL here and are folded in Rust, in batches, by the migration runner
-- (storage::run_migrations -> contacts::backfill_search_text); the partial index finds them.
ALTER TABLE contacts ADD COLUMN search_text TEXT;
CREATE INDEX contacts_search_pending ON contacts (id) WHERE search_text IS NULL;

-- A trigram index over it, so a search of three characters or more looks its trigrams up
-- instead of reading every contact. External content: the text is stored once, in contacts,
-- and these triggers keep the index in step with every insert, update and delete.
CREATE VIRTUAL TABLE contacts_search USING fts5(
    search_text, content = 'contacts', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts
WHEN new.search_text IS NOT NULL BEGIN
    INSERT INTO contacts_search (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER contacts_search_delete AFTER DELETE ON contacts
WHEN old.search_text IS NOT NULL BEGIN
    INSERT INTO contacts_search (contacts_search, rowid, search_text)
    VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER contacts_search_update AFTER UPDATE OF search_text ON contacts
WHEN old.search_text IS NOT new.search_text BEGIN
    INSERT INTO contacts_search (contacts_search, rowid, search_text)
    SELECT 'delete', old.id, old.search_text WHERE old.search_text IS NOT NULL;
    INSERT INTO contacts_search (rowid, search_text)
    SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL;
END;
