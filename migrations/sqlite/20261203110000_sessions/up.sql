-- Server-side sessions: the cookie carries a random id, this table its SHA-256 hash. Signing
-- out deletes the row; disabling an account or changing its password revokes its rows (kept
-- until they expire, so their holder is told why they were signed out).
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The per-account counter the sessions replace.
ALTER TABLE users DROP COLUMN session_epoch;
