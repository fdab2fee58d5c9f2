-- Status callbacks to the business (issue 19). Endpoints the admins register; the event types
-- each enabled endpoint wants (`webhook_subscriptions`, kept by Herald as endpoints change);
-- events appended by triggers in the very transaction of the change they report, but only
-- while an enabled endpoint wants that type; deliveries fanned out from them, one per event per
-- endpoint; and every attempt of each delivery.
CREATE TABLE webhook_endpoints (
    id BIGSERIAL PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    events TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    allow_private_network INTEGER NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until TIMESTAMP,
    failing_since TIMESTAMP,
    disabled_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE webhook_subscriptions (
    event_type TEXT NOT NULL,
    endpoint_id BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, endpoint_id)
);

CREATE TABLE webhook_events (
    id BIGSERIAL PRIMARY KEY,
    event_type TEXT NOT NULL,
    subject_id BIGINT NOT NULL,
    detail TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL
);

CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    endpoint_id BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    webhook_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    last_status_code INTEGER,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (created_at);

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at TIMESTAMP NOT NULL,
    status_code INTEGER,
    duration_ms INTEGER NOT NULL,
    response_excerpt TEXT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- The triggers. Messages change many rows a statement (the group-commit lanes), so theirs run
-- once per statement over the transition tables, after one look at the subscriptions.
CREATE FUNCTION webhook_events_on_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type LIKE 'message.%') THEN
        INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
        SELECT 'message.' || n.status, n.id, n.status, n.updated_at FROM new_rows n
        WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.event_type = 'message.' || n.status)
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_events_on_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type LIKE 'message.%') THEN
        INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
        SELECT 'message.' || n.status, n.id, n.status, n.updated_at
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE o.status IS DISTINCT FROM n.status
          AND EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.event_type = 'message.' || n.status)
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_message_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_on_message_insert();
CREATE TRIGGER webhook_events_message_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_on_message_update();

CREATE FUNCTION webhook_events_on_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    subject BIGINT;
    detail TEXT;
    at TIMESTAMP;
BEGIN
    IF TG_TABLE_NAME = 'inbound_messages' THEN
        kind := 'message.inbound'; subject := NEW.id; detail := ''; at := NEW.received_at;
    ELSIF TG_TABLE_NAME = 'consent_events' THEN
        kind := 'contact.' || NEW.status; subject := NEW.contact_id; detail := NEW.channel_kind;
        at := NEW.occurred_at;
    ELSE
        kind := 'broadcast.' || NEW.state; subject := NEW.id; detail := NEW.state; at := NEW.updated_at;
    END IF;
    IF EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type = kind) THEN
        INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
        VALUES (kind, subject, detail, at);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_inbound AFTER INSERT ON inbound_messages
    FOR EACH ROW EXECUTE FUNCTION webhook_events_on_row();
CREATE TRIGGER webhook_events_consent AFTER INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION webhook_events_on_row();
CREATE TRIGGER webhook_events_broadcast AFTER UPDATE OF state ON broadcasts
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION webhook_events_on_row();
