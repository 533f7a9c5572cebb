//! Bytes ↔ PostgreSQL protocol messages on one client socket (plain or
//! TLS). Knows framing, not meaning.

mod connection;
mod frame;
pub mod tls;

pub use connection::Connection;
