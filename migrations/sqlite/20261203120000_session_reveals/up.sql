-- Secrets shown once (a new API key, a temporary password), kept sealed for the session that
-- created them until its next look at `page`, which deletes them; never in the cookie, where an
-- older copy would show them again.
CREATE TABLE session_reveals (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    session_id BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    page TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX session_reveals_session ON session_reveals (session_id, page);
CREATE INDEX session_reveals_expires ON session_reveals (expires_at);
