-- Status callbacks to the business (issue 19). Endpoints the admins register; the event types
-- each enabled endpoint wants (`webhook_subscriptions`, kept by Herald as endpoints change);
-- events appended by triggers in the very transaction of the change they report, but only
-- while an enabled endpoint wants that type; deliveries fanned out from them, one per event per
-- endpoint; and every attempt of each delivery.
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    subject_id BIGINT NOT NULL,
    detail TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at TIMESTAMP NOT NULL,
    status_code INTEGER,
    duration_ms INTEGER NOT NULL,
    response_excerpt TEXT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- The triggers: a subscription lookup on the primary key when nobody subscribes.
CREATE TRIGGER webhook_events_message_insert AFTER INSERT ON messages
WHEN EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type = 'message.' || NEW.status)
BEGIN
    INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
    VALUES ('message.' || NEW.status, NEW.id, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER webhook_events_message_status AFTER UPDATE OF status ON messages
WHEN OLD.status IS NOT NEW.status
  AND EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type = 'message.' || NEW.status)
BEGIN
    INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
    VALUES ('message.' || NEW.status, NEW.id, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER webhook_events_inbound AFTER INSERT ON inbound_messages
WHEN EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type = 'message.inbound')
BEGIN
    INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
    VALUES ('message.inbound', NEW.id, '', NEW.received_at);
END;

CREATE TRIGGER webhook_events_consent AFTER INSERT ON consent_events
WHEN EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type = 'contact.' || NEW.status)
BEGIN
    INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
    VALUES ('contact.' || NEW.status, NEW.contact_id, NEW.channel_kind, NEW.occurred_at);
END;

CREATE TRIGGER webhook_events_broadcast AFTER UPDATE OF state ON broadcasts
WHEN OLD.state IS NOT NEW.state
  AND EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event_type = 'broadcast.' || NEW.state)
BEGIN
    INSERT INTO webhook_events (event_type, subject_id, detail, occurred_at)
    VALUES ('broadcast.' || NEW.state, NEW.id, NEW.state, NEW.updated_at);
END;
