//! Herald's integration tests: one binary (each file in tests/ would be a separately linked,
//! slow binary). Every test spawns the real server on port 0 with its own database.

mod helpers;

mod api_crash;
mod api_keys;
// Issue 19: per-key rate limits and idempotency keys.
mod api_limits;
// Issue 19: the OpenAPI document, the API reference page, cursor pagination.
mod api_openapi;
mod auth;
// Issue 20: automations (scheduled sends, triggers, reminders).
mod automations;
mod broadcast_crash;
mod broadcast_groups;
mod reminders;
// Issue 20: Automations › Reminders (the pages).
mod reminder_pages;
// Issue 18: broadcast results.
mod broadcast_results;
// Issue 17: a CSV upload as a broadcast's audience.
mod broadcast_csv;
mod broadcast_timing;
mod broadcasts;
mod browser;
// Issue 19: status callbacks to the business.
mod callbacks;
mod channels;
mod conformance;
mod contacts;
mod dispatch;
mod fixtures;
// Issue 18: the send history.
mod history;
// issue 15, part A: layout and search
mod layout;
// Issue 18: the message detail page, kept payloads, retention.
mod message_detail;
mod outbox;
mod overview;
mod platform;
mod provider_kit;
mod retention;
mod search;
mod send;
mod templates;
mod users;
// Issue 15 part B: forms, reports and the audit log.
mod ux_forms;
mod webhooks;
