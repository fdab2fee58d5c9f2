-- Contact search folds case and accents in every script (issue 15). `search_text` holds the
-- folded name, e-mail and attribute values (src/domain/contact.rs: fold_for_search), written
-- by Herald with every contact. SQL cannot fold accents portably, so rows from before this
-- migration stay NULL here and are folded in Rust, in batches, by the migration runner
-- (storage::run_migrations -> contacts::backfill_search_text); the partial index finds them.
ALTER TABLE contacts ADD COLUMN search_text TEXT;
CREATE INDEX contacts_search_pending ON contacts (id) WHERE search_text IS NULL;

-- A trigram index (pg_trgm) serves LIKE '%…%' on it. pg_trgm ships with PostgreSQL and is a
-- trusted extension from PostgreSQL 13 on (the database owner may create it); where it cannot
-- be created, search still works, by reading every contact, and the warning says why.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX contacts_search_trgm ON contacts USING gin (search_text gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'contact search runs without its trigram index: %', SQLERRM;
END $$;
