//! Bytes ↔ PostgreSQL protocol messages on one client socket (plain or
//! TLS). Knows framing, not meaning.

mod connection;
pub mod tls;

pub use connection::{Connection, FLUSH_AT};
use velo_pgproto::frame;
