//! Credentials: password hashing, API key and CSRF tokens, and the keys derived from
//! `HERALD_SECRET_KEY`. No web or database types here.

pub mod keys;
pub mod password;
pub mod sealed;
pub mod token;
