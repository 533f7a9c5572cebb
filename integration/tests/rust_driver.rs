//! tokio-postgres against the gateway: binary parameters and results,
//! `query_raw` streaming of an EMIT CHANGES query, errors, and cancel.

use std::time::Duration;

use futures::{pin_mut, StreamExt};
use rust_decimal::Decimal;
use tokio_postgres::NoTls;
use velo_integration::{pg_client, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_params_streaming_errors_cancel() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let client = pg_client(&gw).await;

    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    let rows = client
        .query(
            "SELECT symbol, price, volume, ts FROM trades WHERE volume > $1 AND symbol <> $2 LIMIT 3",
            &[&0i64, &"nope"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let price: Decimal = r.get(1);
        assert_eq!(price.scale(), 2);
        assert!(r.get::<_, i64>(2) > 0);
        let _ts: chrono::NaiveDateTime = r.get(3);
    }

    let err = client.query("SELECT * FROM nope", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");

    // query_raw streams rows of a continuous query as they arrive: it
    // never ends by itself, so a gateway that buffered results would
    // deliver nothing here.
    let stmt = client
        .prepare("SELECT symbol, volume FROM trades WHERE volume > $1 EMIT CHANGES")
        .await
        .unwrap();
    let stream = client
        .query_raw(&stmt, [&0i64 as &(dyn tokio_postgres::types::ToSql + Sync)])
        .await
        .unwrap();
    pin_mut!(stream);
    for _ in 0..12 {
        let row = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a row within 20 s")
            .expect("not the end")
            .unwrap();
        assert!(row.get::<_, i64>(1) > 0);
    }

    // Cancel it while it runs (its rows are arriving).
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the cancel lands within 10 s")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the cancel error"),
        }
    };
    assert_eq!(err.code().unwrap().code(), "57014");
    assert_eq!(
        client
            .query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

/// A client that waits for BindComplete before doing what makes rows
/// appear must get it while the engine has no row yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_flushed_before_waiting_for_the_first_row() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let client = pg_client(&gw).await;
    let stmt = client
        .prepare("SELECT volume FROM trades WHERE symbol = 'NO SUCH SYMBOL' EMIT CHANGES")
        .await
        .unwrap();
    // query_raw returns once BindComplete has arrived; no row ever will.
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        client.query_raw(
            &stmt,
            std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
        ),
    )
    .await
    .expect("BindComplete before any row")
    .unwrap();
    drop(stream);
    client.cancel_token().cancel_query(NoTls).await.unwrap();
}
