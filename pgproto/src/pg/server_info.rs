//! Who the server says it is: the version clients parse, the settings
//! every session starts from, and which of them are reported in
//! ParameterStatus.

pub const SERVER_VERSION: &str = "15.0";
pub const SERVER_VERSION_NUM: &str = "150000";

pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (velo-gateway {}) on x86_64-pc-linux-gnu, streaming SQL gateway for Velostream, 64-bit",
        env!("CARGO_PKG_VERSION")
    )
}

/// Settings reported to clients in ParameterStatus at startup (and when SET).
pub const REPORTED: &[&str] = &[
    "server_version",
    "server_encoding",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "integer_datetimes",
    "standard_conforming_strings",
    "IntervalStyle",
    "application_name",
    "is_superuser",
    "session_authorization",
    "default_transaction_read_only",
    "in_hot_standby",
    "search_path",
];

/// Server defaults every session starts from: (canonical name, value).
/// Shared, so an idle session holds only what it changed.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", SERVER_VERSION_NUM),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    // A session stores these only when its login differs.
    ("application_name", ""),
    ("is_superuser", "off"),
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("IntervalStyle", "postgres"),
    ("default_transaction_read_only", "off"),
    ("in_hot_standby", "off"),
    ("search_path", "\"$user\", public"),
    ("extra_float_digits", "1"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
    ("statement_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("idle_session_timeout", "0"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("max_identifier_length", "63"),
    // Read by asyncpg (which turns jit off around its type lookup) and
    // SQLAlchemy 2.1 (table options): PostgreSQL 15's defaults.
    ("jit", "on"),
    ("default_table_access_method", "heap"),
    ("velostream.offset_reset", "latest"),
];

/// The timeout settings (a bare number is milliseconds; 0 is off).
pub const TIMEOUT_SETTINGS: [&str; 3] = [
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
];
