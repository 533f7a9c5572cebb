//! The SQLSTATE codes the gateway answers with, by PostgreSQL's names
//! (Appendix A of its manual). Only `error.rs` and the response builders
//! should need them.

pub const SUCCESSFUL_COMPLETION: &str = "00000";
pub const CONNECTION_EXCEPTION: &str = "08000";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &str = "25P03";
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
pub const INVALID_CURSOR_NAME: &str = "34000";
pub const SYNTAX_ERROR: &str = "42601";
pub const UNDEFINED_FUNCTION: &str = "42883";
pub const UNDEFINED_TABLE: &str = "42P01";
pub const DUPLICATE_CURSOR: &str = "42P03";
pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
pub const UNDEFINED_OBJECT: &str = "42704";
pub const OUT_OF_MEMORY: &str = "53200";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
pub const CARDINALITY_VIOLATION: &str = "21000";
pub const QUERY_CANCELED: &str = "57014";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
pub const IO_ERROR: &str = "58030";
pub const INTERNAL_ERROR: &str = "XX000";
