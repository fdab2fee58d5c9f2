-- Broadcast campaigns. A broadcast's audience and message are stored as JSON documents (a
-- serialisable filter, never SQL text). Launching freezes the audience into one row per
-- (broadcast, contact); the scheduler turns pending rows into queued messages a batch at a time,
-- and a message's campaign_id links it back. At most one first message per recipient: the
-- partial unique index on messages is the last guard against sending a campaign twice.

CREATE TABLE broadcasts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    channel_id BIGINT NOT NULL REFERENCES channels (id),
    -- draft, pending_approval, scheduled, running, paused, completed, cancelled
    state TEXT NOT NULL,
    audience TEXT NOT NULL,
    message TEXT NOT NULL,
    -- When to start (UTC); NULL: at launch. time_zone is the IANA zone it was chosen in.
    send_at TIMESTAMP,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    expires_at TIMESTAMP,
    pause_reason TEXT,
    created_by BIGINT REFERENCES users (id),
    created_by_label TEXT NOT NULL,
    approval_requested_by BIGINT REFERENCES users (id),
    approved_by_label TEXT,
    review_note TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    recipients BIGINT NOT NULL DEFAULT 0,
    launched_at TIMESTAMP,
    started_at TIMESTAMP,
    -- The last resume: the failure threshold counts outcomes since then.
    resumed_at TIMESTAMP,
    finished_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX broadcasts_idempotency ON broadcasts (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX broadcasts_state ON broadcasts (state, send_at);

-- pending (not yet queued), queued (its message exists), skipped (excluded, with the reason),
-- cancelled, expired.
CREATE TABLE broadcast_recipients (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    reason TEXT
);
CREATE UNIQUE INDEX broadcast_recipients_pair ON broadcast_recipients (broadcast_id, contact_id);
CREATE INDEX broadcast_recipients_pending ON broadcast_recipients (broadcast_id, id) WHERE status = 'pending';

CREATE UNIQUE INDEX messages_campaign_contact ON messages (campaign_id, contact_id)
    WHERE campaign_id IS NOT NULL AND resend_of IS NULL;
