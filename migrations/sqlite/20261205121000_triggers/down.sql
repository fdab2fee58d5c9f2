DROP TABLE trigger_events;
DROP TABLE triggers;
