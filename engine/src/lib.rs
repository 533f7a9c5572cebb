//! velo-engine: the reference Velostream engine node. DataFusion runs the SQL,
//! rdkafka reads the streams, and `velostream.engine.v1` over gRPC is how
//! gateways talk to it.

pub mod catalog;
pub mod catalog_log;
pub mod config;
pub mod demo;
pub mod dialect;
pub mod error;
pub mod file_cache;
pub mod kafka;
pub mod notice;
pub mod query;
pub mod server;
pub mod service;

pub use catalog::DEFAULT_PRIVATE_SCANS;
pub use server::{
    start, NodeOptions, RunningNode, DEFAULT_FILE_CACHE_MIB, DEFAULT_MAX_CONCURRENT_QUERIES,
    DEFAULT_SNAPSHOT_MEMORY_MIB,
};
