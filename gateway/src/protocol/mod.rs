//! The PostgreSQL wire protocol: framing, startup (SSL/GSSENC refusal,
//! cancel requests, authentication) and the per-connection message loop.

pub mod connection;
pub mod startup;
