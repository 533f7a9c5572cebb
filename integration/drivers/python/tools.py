"""Tools that read the catalog before anything else, against a gateway:
SQLAlchemy's inspector (sqlalchemy_reflection.py), pandas.read_sql, pgcli's completion queries and
asyncpg's type introspection. Usage: tools.py HOST PORT. Prints
"tools ok" when every check passed.
"""

import asyncio
import sys

import asyncpg
import pandas as pd
from pgcli.pgexecute import PGExecute
from sqlalchemy_reflection import reflect

HOST, PORT = sys.argv[1], int(sys.argv[2])
TRADES_COLUMNS = ["symbol", "price", "volume", "ts"]


def pandas_read_sql(engine):
    with engine.connect() as conn:
        frame = pd.read_sql("SELECT symbol, price FROM trades LIMIT 3", conn)
        assert list(frame.columns) == ["symbol", "price"], frame
        assert len(frame) == 3, frame
        catalog = pd.read_sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %(t)s ORDER BY ordinal_position",
            conn,
            params={"t": "trades"},
        )
        assert list(catalog["column_name"]) == TRADES_COLUMNS, catalog
        assert list(catalog["data_type"]) == [
            "text",
            "numeric",
            "bigint",
            "timestamp without time zone",
        ], catalog


def pgcli_completion_queries():
    pgcli = PGExecute("velostream", "velo", None, HOST, str(PORT), "")
    assert "public" in pgcli.search_path(), pgcli.search_path()
    assert "public" in list(pgcli.schemata())
    assert ("public", "trades") in list(pgcli.tables())
    views = list(pgcli.views())
    assert ("information_schema", "tables") in views, views
    assert [v for v in views if v[0] == "public"] == [], views
    columns = [c for c in pgcli.table_columns() if c[1] == "trades"]
    assert [c[2] for c in columns] == TRADES_COLUMNS, columns
    assert columns[1][3] == "numeric", columns
    functions = {(f.schema_name, f.func_name) for f in pgcli.functions()}
    assert ("pg_catalog", "abs") in functions, sorted(functions)[:10]
    assert list(pgcli.foreignkeys()) == []
    assert "velostream" in list(pgcli.databases())
    list(pgcli.datatypes())  # runs without error; user types: none


async def asyncpg_introspection():
    conn = await asyncpg.connect(host=HOST, port=PORT, user="velo", database="velostream")
    try:
        # A custom codec makes asyncpg look the type up in pg_type and
        # introspect it.
        await conn.set_type_codec(
            "numeric",
            schema="pg_catalog",
            encoder=str,
            decoder=lambda text: ("numeric", text),
            format="text",
        )
        rows = await conn.fetch("SELECT symbol, price FROM trades LIMIT 2")
        assert len(rows) == 2 and rows[0]["price"][0] == "numeric", rows
        oid = await conn.fetchval(
            "SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n "
            "ON n.oid = t.typnamespace WHERE t.typname = $1 AND n.nspname = $2",
            "int8",
            "pg_catalog",
        )
        assert oid == 20, oid
    finally:
        await conn.close()


engine = reflect(HOST, PORT)
print("sqlalchemy ok")
pandas_read_sql(engine)
print("pandas ok")
pgcli_completion_queries()
print("pgcli ok")
asyncio.run(asyncpg_introspection())
print("asyncpg introspection ok")
print("tools ok")
