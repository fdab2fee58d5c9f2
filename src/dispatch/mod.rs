//! The background side: the channel registry (adapters built from stored channels), the event
//! hub (live updates for pages), applying provider events (webhooks and the sandbox), and the
//! outbox worker.

// Issue 19: status callbacks to the business.
pub mod callbacks;
pub mod error;
pub mod events;
pub mod hub;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod sandbox;
pub mod templates;
pub mod worker;
