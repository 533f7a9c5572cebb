"""psycopg 3, psycopg2 and asyncpg against the gateway: connect, typed
parameters, errors with SQLSTATE, a bounded query, and live streaming of an
EMIT CHANGES query with cancel. Usage: drivers.py HOST PORT"""
import asyncio
import datetime
import decimal
import sys
import threading

import asyncpg
import psycopg
import psycopg2
import psycopg2.errors

HOST, PORT = sys.argv[1], int(sys.argv[2])
DSN = f"host={HOST} port={PORT} dbname=velostream user=alice connect_timeout=10"
LIVE = "SELECT symbol, price, volume FROM trades EMIT CHANGES"


def check_trade(row):
    symbol, price, volume = row[:3]
    assert isinstance(symbol, str) and symbol.isupper(), row
    assert isinstance(price, decimal.Decimal) and price.as_tuple().exponent == -2, row
    assert isinstance(volume, int) and volume > 0, row


def psycopg3():
    with psycopg.connect(DSN, autocommit=True) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
        for binary in (False, True):
            rows = c.execute(
                "SELECT symbol, price, volume, ts FROM trades WHERE volume >= %s AND symbol <> %s LIMIT 3",
                (1, "nope"), binary=binary).fetchall()
            assert len(rows) == 3, rows
            for r in rows:
                check_trade(r)
                assert isinstance(r[3], datetime.datetime)
        row = c.execute("SELECT %s::bigint + 1, CAST(%s AS DOUBLE), %s", (41, 1.5, "x")).fetchone()
        assert row == (42, 1.5, "x"), row
        try:
            c.execute("SELECT * FROM nope")
            raise AssertionError("no error")
        except psycopg.errors.UndefinedTable as e:
            assert e.sqlstate == "42P01"
    # Server-side cursor streams a continuous query; cancel stops it.
    with psycopg.connect(DSN) as c:
        with c.cursor(name="live") as cur:
            cur.itersize = 5
            cur.execute(LIVE)
            seen = 0
            for row in cur:
                check_trade(row)
                seen += 1
                if seen == 12:
                    break
        c.rollback()
        cur = c.cursor()
        threading.Timer(0.5, c.cancel).start()
        try:
            cur.execute("SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES")
            raise AssertionError("not cancelled")
        except psycopg.errors.QueryCanceled as e:
            assert e.sqlstate == "57014"
    print("psycopg3 ok")


def psycopg2_named_cursor():
    c = psycopg2.connect(DSN)
    cur = c.cursor()
    cur.execute("SELECT symbol, price, volume FROM trades WHERE volume > %s LIMIT 2", (0,))
    rows = cur.fetchall()
    assert len(rows) == 2
    for r in rows:
        check_trade(r)
    named = c.cursor(name="stream")
    named.itersize = 4
    named.execute(LIVE)
    got = named.fetchmany(10)
    assert len(got) == 10
    for r in got:
        check_trade(r)
    named.close()
    c.rollback()
    try:
        cur.execute("SELECT nofunc(1)")
        raise AssertionError("no error")
    except psycopg2.Error as e:
        assert e.pgcode == "42883", e.pgcode
    c.close()
    print("psycopg2 ok")


async def asyncpg_checks():
    c = await asyncpg.connect(host=HOST, port=PORT, user="alice", database="velostream")
    assert await c.fetchval("SELECT 1") == 1
    stmt = await c.prepare("SELECT symbol, price, volume FROM trades WHERE volume > $1 LIMIT 3")
    for _ in range(2):
        rows = await stmt.fetch(0)
        assert len(rows) == 3
        for r in rows:
            check_trade(tuple(r))
    try:
        await c.fetch("SELECT * FROM nope")
        raise AssertionError("no error")
    except asyncpg.PostgresError as e:
        assert e.sqlstate == "42P01"
    async with c.transaction():
        seen = 0
        async for r in c.cursor(LIVE, prefetch=5):
            check_trade(tuple(r))
            seen += 1
            if seen == 12:
                break
    task = asyncio.ensure_future(c.fetch("SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES"))
    await asyncio.sleep(0.5)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    # The connection is usable after the cancel.
    assert await c.fetchval("SELECT 2") == 2
    await c.close()
    print("asyncpg ok")


psycopg3()
psycopg2_named_cursor()
asyncio.run(asyncpg_checks())
