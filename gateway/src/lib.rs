//! velo-gateway: the PostgreSQL wire-protocol gateway in front of Velostream
//! engine nodes. Data flows one way: listener → protocol (startup, auth) →
//! session (local statements, cursors, COPY framing) → catalog (pg_catalog,
//! information_schema) or engine client (pool, balancing, health) → gRPC;
//! results come back through the encoder.

pub mod admin;
pub mod auth;
pub mod cancel;
pub mod catalog;
pub mod config;
pub mod encoding;
pub mod engine_client;
pub mod error;
pub mod protocol;
pub mod server;
pub mod session;

pub use config::GatewayConfig;
pub use server::{start, RunningGateway};
