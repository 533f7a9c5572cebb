//! velo-gateway: the PostgreSQL wire-protocol gateway in front of Velostream
//! engine nodes.
//!
//! Data flows one way, and modules import only from modules below them:
//!
//! ```text
//! server → admin, frontend → session → sql, backend, codec → wire, auth, cancel
//!        → pg, error, metrics, audit, config
//! ```
//!
//! A client's bytes enter at `frontend` (startup, login, the message loop),
//! each statement is classified by `sql` and run by `session`, answered
//! locally or by `backend` (the catalog, or an engine node over gRPC), and
//! its rows are encoded by `codec` onto the `wire`.

mod admin;
mod audit;
mod auth;
mod backend;
mod cancel;
mod config;
mod frontend;
mod metrics;
mod server;
mod session;
mod wire;

use velo_pgproto::{codec, error, pg, sql};

pub use auth::{md5_users_file_secret, scram_users_file_secret};
pub use config::GatewayConfig;
pub use server::{start, RunningGateway};
