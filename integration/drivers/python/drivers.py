"""psycopg 3, psycopg2 and asyncpg against the gateway: connect, typed
parameters, errors with SQLSTATE, a bounded query, and live streaming of an
EMIT CHANGES query with cancel. Usage: drivers.py HOST PORT"""
import asyncio
import datetime
import decimal
import sys
import threading
import time

import asyncpg
import psycopg
import psycopg2
import psycopg2.errors

HOST, PORT = sys.argv[1], int(sys.argv[2])
DSN = f"host={HOST} port={PORT} dbname=velostream user=alice connect_timeout=10"
LIVE = "SELECT symbol, price, volume FROM trades EMIT CHANGES"


def running(fragment):
    """Whether the engine runs a query whose SQL holds `fragment` (asked
    with SHOW JOBS on a connection of its own)."""
    with psycopg.connect(DSN, autocommit=True) as w:
        return any(fragment in row[1] for row in w.execute("SHOW JOBS").fetchall())


def wait_until(condition, what, seconds=10):
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


def cancel_once_running(fragment, cancel):
    """Cancels from another thread once the query is running: a cancel
    that lands before the query starts would be dropped."""
    def run():
        wait_until(lambda: running(fragment), f"{fragment} running")
        cancel()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


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
        canceller = cancel_once_running("'psycopg3'", c.cancel)
        try:
            cur.execute("SELECT symbol FROM trades WHERE volume < 0 AND symbol <> 'psycopg3' EMIT CHANGES")
            raise AssertionError("not cancelled")
        except psycopg.errors.QueryCanceled as e:
            assert e.sqlstate == "57014"
        canceller.join()
        wait_until(lambda: not running("'psycopg3'"), "the cancelled query gone", 2)
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
    canceller = cancel_once_running("'psycopg2'", c.cancel)
    try:
        cur.execute("SELECT symbol FROM trades WHERE volume < 0 AND symbol <> 'psycopg2' EMIT CHANGES")
        raise AssertionError("not cancelled")
    except psycopg2.errors.QueryCanceled as e:
        assert e.pgcode == "57014", e.pgcode
    canceller.join()
    c.rollback()
    wait_until(lambda: not running("'psycopg2'"), "the cancelled query gone", 2)
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
    # Cancelling the task sends a CancelRequest: the query must be gone
    # from the engine, not only from the client's view.
    task = asyncio.ensure_future(
        c.fetch("SELECT symbol FROM trades WHERE volume < 0 AND symbol <> 'asyncpg' EMIT CHANGES"))
    await asyncio.to_thread(wait_until, lambda: running("'asyncpg'"), "asyncpg's query running")
    task.cancel()
    try:
        await task
        raise AssertionError("not cancelled")
    except asyncio.CancelledError:
        pass
    await asyncio.to_thread(wait_until, lambda: not running("'asyncpg'"), "the cancelled query gone", 2)
    # The connection is usable after the cancel.
    assert await c.fetchval("SELECT 2") == 2
    await c.close()
    print("asyncpg ok")


psycopg3()
psycopg2_named_cursor()
asyncio.run(asyncpg_checks())
