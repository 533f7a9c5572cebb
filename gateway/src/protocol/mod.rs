//! The PostgreSQL wire protocol: framing, startup (TLS or refusal, cancel
//! requests, authentication) and the per-connection message loop.

pub mod connection;
pub mod startup;
pub mod tls;
