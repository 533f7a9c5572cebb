//! Type OIDs as PostgreSQL assigns them, and the epochs its binary formats
//! count from.

pub const UNSPECIFIED: u32 = 0;
pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const CHAR: u32 = 18;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const REGPROC: u32 = 24;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const XID: u32 = 28;
pub const JSON: u32 = 114;
pub const PG_NODE_TREE: u32 = 194;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const UNKNOWN: u32 = 705;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIME: u32 = 1083;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const INTERVAL: u32 = 1186;
pub const NUMERIC: u32 = 1700;
pub const REGTYPE: u32 = 2206;
pub const JSONB: u32 = 3802;

/// Days from the Unix epoch to PostgreSQL's (2000-01-01), which binary
/// dates count from.
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from the Unix epoch to PostgreSQL's, which binary
/// timestamps count from.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The name `format_type` gives a type (what `pg_typeof` shows).
pub fn type_name(oid: u32) -> &'static str {
    match oid {
        BOOL => "boolean",
        BYTEA => "bytea",
        CHAR => "\"char\"",
        NAME => "name",
        INT8 => "bigint",
        INT2 => "smallint",
        INT4 => "integer",
        REGPROC => "regproc",
        TEXT => "text",
        OID => "oid",
        XID => "xid",
        JSON => "json",
        PG_NODE_TREE => "pg_node_tree",
        FLOAT4 => "real",
        FLOAT8 => "double precision",
        UNKNOWN => "unknown",
        VARCHAR => "character varying",
        DATE => "date",
        TIME => "time without time zone",
        TIMESTAMP => "timestamp without time zone",
        TIMESTAMPTZ => "timestamp with time zone",
        INTERVAL => "interval",
        NUMERIC => "numeric",
        REGTYPE => "regtype",
        JSONB => "jsonb",
        1000 => "boolean[]",
        1005 => "smallint[]",
        1007 => "integer[]",
        1009 => "text[]",
        1016 => "bigint[]",
        1021 => "real[]",
        1022 => "double precision[]",
        1115 => "timestamp without time zone[]",
        1182 => "date[]",
        1185 => "timestamp with time zone[]",
        1231 => "numeric[]",
        3807 => "jsonb[]",
        _ => "unknown",
    }
}

/// The array type of an element type (text[] for anything unlisted).
pub fn array_oid(element: u32) -> u32 {
    match element {
        BOOL => 1000,
        BYTEA => 1001,
        INT2 => 1005,
        INT4 => 1007,
        TEXT => 1009,
        INT8 => 1016,
        FLOAT4 => 1021,
        FLOAT8 => 1022,
        TIMESTAMP => 1115,
        DATE => 1182,
        TIME => 1183,
        TIMESTAMPTZ => 1185,
        INTERVAL => 1187,
        NUMERIC => 1231,
        JSONB => 3807,
        NAME => 1003,
        OID => 1028,
        CHAR => 1002,
        VARCHAR => 1015,
        JSON => 199,
        REGPROC => 1008,
        REGTYPE => 2211,
        XID => 1011,
        _ => 1009,
    }
}
