//! Pure rules of the product: no web, database, HTTP-client or template types here.

pub mod audit;
pub mod channel;
pub mod role;
pub mod user;
