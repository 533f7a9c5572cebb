//! sqlx (PostgreSQL, tokio runtime) against the gateway: its statement cache
//! (named prepared statements reused), typed binary parameters and results,
//! errors with SQLSTATE, and `fetch` streaming a continuous query. sqlx has
//! no query-cancel API, so the continuous query is ended by its LIMIT.

use std::time::Duration;

use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Row};
use velo_integration::Gateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_params_types_errors_streaming() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let mut conn = PgConnectOptions::new()
        .host(&gw.host)
        .port(gw.port)
        .username("alice")
        .database("velostream")
        .connect()
        .await
        .unwrap();

    let one: (i32,) = sqlx::query_as("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one.0, 1);

    // Twice: the second run reuses sqlx's cached named statement.
    for _ in 0..2 {
        let rows = sqlx::query(
            "SELECT symbol, price, volume, ts FROM trades WHERE volume > $1 AND symbol <> $2 LIMIT 3",
        )
        .bind(0i64)
        .bind("nope")
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert!(!r.get::<String, _>("symbol").is_empty());
            assert_eq!(r.get::<Decimal, _>("price").scale(), 2);
            assert!(r.get::<i64, _>("volume") > 0);
            let _: chrono::NaiveDateTime = r.get("ts");
        }
    }

    let (sum, day, flag): (Decimal, chrono::NaiveDate, bool) = sqlx::query_as(
        "SELECT CAST($1 AS NUMERIC(10,2)) + CAST(0.01 AS NUMERIC(10,2)), CAST($2 AS DATE), CAST($3 AS BOOLEAN)",
    )
    .bind(Decimal::new(18945, 2))
    .bind(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
    .bind(true)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(sum, Decimal::new(18946, 2));
    assert_eq!(day, chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
    assert!(flag);

    let err = sqlx::query("SELECT * FROM nope")
        .fetch_all(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("42P01")
    );

    // Rows of a continuous query arrive through `fetch` as they are
    // produced: the 12th arrives long before the query's LIMIT ends it
    // (the demo makes 500 events a second), which a gateway that buffered
    // results would not do.
    let mut stream =
        sqlx::query("SELECT symbol, volume FROM trades EMIT CHANGES LIMIT 600").fetch(&mut conn);
    let mut seen = 0;
    let mut twelfth = None;
    while let Some(row) = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        assert!(row.get::<i64, _>("volume") > 0);
        seen += 1;
        if seen == 12 {
            twelfth = Some(std::time::Instant::now());
        }
    }
    let after_twelfth = twelfth.expect("12 rows").elapsed();
    drop(stream);
    assert_eq!(seen, 600);
    assert!(
        after_twelfth > Duration::from_millis(300),
        "the 12th row came only {after_twelfth:?} before the end"
    );

    // The connection is still in a good state afterwards.
    let one: (i32,) = sqlx::query_as("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one.0, 1);
}
