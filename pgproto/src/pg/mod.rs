//! PostgreSQL's vocabulary: type OIDs and epochs, SQLSTATE codes, the
//! ErrorResponse/NoticeResponse builder and the server identity clients
//! read. No I/O and nothing else of the crate: every other module may use it.

pub mod oid;
pub mod response;
pub mod server_info;
pub mod sqlstate;
pub mod units;

pub use response::{Response, Severity};
