//! Binary results and parameters byte for byte against PostgreSQL 15: the
//! same statement goes to a real PostgreSQL and to the gateway (which sends it
//! to an engine node) through tokio-postgres, which asks for every result
//! column in binary; the type OID and the raw bytes of each value must match.

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls};
use velo_integration::{Gateway, Postgres};

/// A value as it came off the wire.
#[derive(Debug, PartialEq)]
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Expressions both systems accept with the same meaning, one per type.
const SAME_SQL: &[&str] = &[
    "true",
    "CAST(-3 AS SMALLINT)",
    "CAST(-7 AS INTEGER)",
    "CAST(9007199254740993 AS BIGINT)",
    "CAST(1.5 AS REAL)",
    "CAST(0.1 AS DOUBLE PRECISION)",
    "CAST('-Infinity' AS DOUBLE PRECISION)",
    "CAST(123.45 AS NUMERIC(10,2))",
    "CAST(-0.005 AS NUMERIC(10,3))",
    "CAST(7 AS NUMERIC(10,2))",
    "CAST(0 AS NUMERIC(10,2))",
    "CAST(12345678901234.5678 AS NUMERIC(20,4))",
    "CAST(100000000 AS NUMERIC(12,0))",
    "DATE '2024-02-29'",
    "DATE '1970-01-01'",
    "TIMESTAMP '2024-01-02 03:04:05.123456'",
    "TIMESTAMP '1999-12-31 23:59:59'",
    "INTERVAL '1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds'",
    "ARRAY[CAST(1 AS INTEGER), CAST(2 AS INTEGER), CAST(3 AS INTEGER)]",
    "ARRAY[CAST(1 AS BIGINT), CAST(-2 AS BIGINT)]",
    "ARRAY['a b', 'c']",
    "ARRAY[CAST(1.5 AS DOUBLE PRECISION), NULL]",
    "decode('deadbeef', 'hex')",
    "'plain text'",
    "CAST(NULL AS TEXT)",
];

/// Same value, different spelling on each side: (gateway, PostgreSQL).
const PAIRED_SQL: &[(&str, &str)] = &[
    (
        "arrow_cast(TIMESTAMP '2024-01-02 03:04:05.5', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        "CAST('2024-01-02 03:04:05.5+00' AS TIMESTAMPTZ)",
    ),
    (
        "named_struct('a', 1, 'b', 'x')",
        "CAST('{\"a\": 1, \"b\": \"x\"}' AS JSONB)",
    ),
];

async fn connect(port: u16, user: &str, db: &str) -> Client {
    let dsn = format!("host=127.0.0.1 port={port} user={user} dbname={db}");
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn binary_value(client: &Client, expr: &str) -> (Type, Raw) {
    let stmt = client
        .prepare(&format!("SELECT {expr}"))
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e:?}"));
    let ty = stmt.columns()[0].type_().clone();
    let row = client.query_one(&stmt, &[]).await.unwrap();
    (ty, row.get(0))
}

/// The column types and the raw binary values of every row of `sql`.
async fn binary_rows(client: &Client, sql: &str) -> (Vec<Type>, Vec<Vec<Raw>>) {
    let stmt = client.prepare(sql).await.unwrap();
    let types = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let rows = client.query(&stmt, &[]).await.unwrap();
    let values = rows
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
        .collect();
    (types, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_match_postgresql_15() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    let ours = connect(gw.port, "alice", "velostream").await;
    let theirs = connect(pg.port, "postgres", "postgres").await;
    let pairs = SAME_SQL
        .iter()
        .map(|e| (*e, *e))
        .chain(PAIRED_SQL.iter().copied());
    let mut mismatches = Vec::new();
    for (gw_expr, pg_expr) in pairs {
        let a = binary_value(&ours, gw_expr).await;
        let b = binary_value(&theirs, pg_expr).await;
        if a != b {
            mismatches.push(format!("{gw_expr}: gateway {a:?} vs postgres {b:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_parameters_of_each_type_reach_the_engine() {
    let gw = Gateway::start(&[]);
    let client = connect(gw.port, "alice", "velostream").await;
    let price = rust_decimal::Decimal::new(18945, 2);
    let ts = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
        .unwrap()
        .and_hms_micro_opt(3, 4, 5, 6)
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let row = client
        .query_one(
            "SELECT CAST($1 AS BIGINT) + 1, CAST($2 AS INTEGER) * 2, CAST($3 AS DOUBLE PRECISION) / 2, \
             CAST($4 AS NUMERIC(10,2)) + CAST(0.01 AS NUMERIC(10,2)), CAST($5 AS TIMESTAMP), \
             CAST($6 AS DATE), CAST($7 AS BOOLEAN), upper(CAST($8 AS TEXT))",
            &[&41i64, &21i32, &3.0f64, &price, &ts, &day, &true, &"ünï"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    // A select-list integer constant is an integer, so int4 * 2 is int4,
    // as in PostgreSQL.
    assert_eq!(row.get::<_, i32>(1), 42);
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert_eq!(
        row.get::<_, rust_decimal::Decimal>(3),
        rust_decimal::Decimal::new(18946, 2)
    );
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(4), ts);
    assert_eq!(row.get::<_, chrono::NaiveDate>(5), day);
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, String>(7), "ÜNÏ");
}

/// Integer constants in an engine query's select list are `integer` when
/// they fit 32 bits, as PostgreSQL types them (DataFusion alone says
/// `bigint` for every one); casts and arithmetic with a bigint decide
/// otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_list_integer_constants_have_postgresqls_types() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    let ours = connect(gw.port, "alice", "velostream").await;
    let theirs = connect(pg.port, "postgres", "postgres").await;
    theirs
        .batch_execute("CREATE TABLE trades (symbol text, volume bigint)")
        .await
        .unwrap();
    let sql = "SELECT symbol, 1, -2, 3000000000, CASE WHEN symbol = 'x' THEN 4 ELSE 5 END, \
               6 + 7, volume + 8, CAST(9 AS BIGINT) FROM trades LIMIT 1";
    let types = |stmt: tokio_postgres::Statement| -> Vec<Type> {
        stmt.columns().iter().map(|c| c.type_().clone()).collect()
    };
    let expected = types(theirs.prepare(sql).await.unwrap());
    assert_eq!(expected[1], Type::INT4, "the reference itself");
    assert_eq!(types(ours.prepare(sql).await.unwrap()), expected);
}

/// `avg` of exact numbers as PostgreSQL computes it: numeric, each value
/// with the scale its division picks (at least 16 significant digits),
/// the same in text and binary; an average sorts as a number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn averages_of_exact_numbers_match_postgresql_15() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    let ours = connect(gw.port, "alice", "velostream").await;
    let theirs = connect(pg.port, "postgres", "postgres").await;
    let rows = [
        ("a", "10.00", 1),
        ("a", "20.50", 2),
        ("a", "30.00", 4),
        ("b", "99999.99", 7),
        ("b", "99999.98", 7),
        ("c", "-0.01", -1),
        ("c", "0.00", 0),
        ("c", "0.00", 0),
        ("d", "7.00", 3),
    ]
    .map(|(g, x, n)| {
        format!("('{g}', CAST({x} AS NUMERIC(10,2)), CAST({n} AS INTEGER), CAST({x} AS DOUBLE PRECISION))")
    })
    .join(", ");
    let sql = format!(
        "SELECT g, avg(x) AS a, avg(n), avg(f), round(avg(x), 2) AS r \
         FROM (VALUES {rows}) AS v(g, x, n, f) GROUP BY g ORDER BY a DESC"
    );
    let text = |messages: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<Vec<String>> {
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    };
    let expected = text(theirs.simple_query(&sql).await.unwrap());
    assert_eq!(expected[0][1], "99999.985000000000", "the reference itself");
    assert_eq!(text(ours.simple_query(&sql).await.unwrap()), expected);
    let (their_types, their_rows) = binary_rows(&theirs, &sql).await;
    assert_eq!(their_types[1], Type::NUMERIC);
    assert_eq!(binary_rows(&ours, &sql).await, (their_types, their_rows));
}
