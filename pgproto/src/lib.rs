//! The parts of the PostgreSQL protocol that are pure functions of bytes:
//! where a frontend message ends, what a Query message's statements are,
//! the SCRAM exchange, values between Arrow and PostgreSQL, SQLSTATEs.
//!
//! They take input straight from clients and engine nodes, so they live
//! apart from the gateway's I/O: small enough to fuzz on their own (see
//! `fuzz/`), and `fuzz_targets` is what each fuzz target calls.

pub mod codec;
pub mod error;
pub mod frame;
pub mod fuzz_targets;
#[cfg(test)]
mod mutate;
pub mod pg;
pub mod scram;
pub mod sql;
pub mod startup;
