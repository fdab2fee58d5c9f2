//! Herald: a self-hosted dashboard for proactive messaging over WhatsApp, SMS and Viber.
//! See README.md for the architecture map.

pub mod auth;
pub mod channels;
pub mod commands;
pub mod config;
pub mod csv_out;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod import;
pub mod service;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod testkit;
pub mod web;
