//! Pure rules of the product: no web, database, HTTP-client or template types here.

pub mod audit;
pub mod broadcast;
pub mod callbacks;
pub mod channel;
pub mod consent;
pub mod contact;
pub mod content;
pub mod fields;
pub mod local_time;
pub mod message;
pub mod phone;
pub mod policy;
pub mod retry;
pub mod role;
pub mod sms;
pub mod template;
// Issue 20: triggers from a shop or CRM.
pub mod trigger;
pub mod user;
pub mod window;
