//! Test doubles that speak the providers' wire formats.
pub mod fake_provider;
