-- Templates and their versions. A template is a name in a language on one channel; its content
-- lives in versions. Editing a version that was approved makes a new one, so the approved version
-- keeps sending until its successor is approved by Herald's reviewer and by the provider.

CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    -- The newest version's category ('' for SMS), for filtering.
    category TEXT NOT NULL DEFAULT '',
    -- The newest version (what the page shows and edits) and the version sends use (the one
    -- that became sendable last, until a newer one does). Not foreign keys: versions point back.
    current_version_id BIGINT,
    live_version_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (channel_id, name, language)
);
CREATE INDEX templates_updated ON templates (updated_at);

CREATE TABLE template_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    template_id BIGINT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    -- The form's contents (domain TemplateDraft) as JSON, as validated when saved.
    content TEXT NOT NULL,
    -- Review and provider status in one word (domain TemplateStage), for filters.
    stage TEXT NOT NULL CHECK (stage IN ('draft', 'in_review', 'rejected', 'approved', 'pending',
        'sendable', 'provider_rejected', 'paused', 'disabled', 'superseded')),
    -- Who created this version, and who changed its content last (neither may approve it).
    author_id BIGINT REFERENCES users (id),
    author_label TEXT NOT NULL,
    editor_id BIGINT REFERENCES users (id),
    editor_label TEXT NOT NULL,
    review_status TEXT NOT NULL CHECK (review_status IN ('draft', 'in_review', 'approved', 'rejected')),
    review_note TEXT,
    reviewer_id BIGINT REFERENCES users (id),
    reviewer_label TEXT,
    submitted_at TIMESTAMP,
    reviewed_at TIMESTAMP,
    provider_status TEXT NOT NULL DEFAULT 'not_submitted' CHECK (provider_status IN
        ('not_submitted', 'pending', 'approved', 'rejected', 'paused', 'disabled')),
    -- The provider's rejection reason, verbatim.
    provider_reason TEXT,
    -- Other words the provider used (IN_APPEAL, FLAGGED…), verbatim.
    provider_note TEXT,
    provider_template_id TEXT,
    -- Why the last submission to the provider failed, verbatim.
    provider_error TEXT,
    -- When a submission started (a claim, so a double click submits once).
    provider_submitted_at TIMESTAMP,
    provider_updated_at TIMESTAMP,
    -- When the status was last asked for (the periodic sync spaces its calls by it).
    provider_checked_at TIMESTAMP,
    superseded_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (template_id, number)
);
CREATE INDEX template_versions_provider_id ON template_versions (provider_template_id);
CREATE INDEX template_versions_stage ON template_versions (stage, provider_checked_at);
