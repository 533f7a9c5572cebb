"""SQLAlchemy's reflection of the trades table against a gateway, as an
application does it when it starts. Run by the tools' SQLAlchemy 2.0 (from
tools.py) and on its own by SQLAlchemy 2.1, whose column reflection sends
other SQL. Usage: sqlalchemy_reflection.py HOST PORT; prints
"sqlalchemy VERSION ok" when every check passed.
"""

import sys

import sqlalchemy as sa

TRADES_COLUMNS = ["symbol", "price", "volume", "ts"]


def reflect(host, port):
    engine = sa.create_engine(f"postgresql+psycopg2://velo@{host}:{port}/velostream")
    inspector = sa.inspect(engine)
    assert "public" in inspector.get_schema_names(), inspector.get_schema_names()
    assert inspector.get_table_names() == ["trades"], inspector.get_table_names()
    assert inspector.get_view_names() == [], inspector.get_view_names()
    columns = inspector.get_columns("trades")
    assert [c["name"] for c in columns] == TRADES_COLUMNS, columns
    types = {c["name"]: c["type"] for c in columns}
    assert isinstance(types["symbol"], sa.TEXT), types
    assert isinstance(types["price"], sa.NUMERIC), types
    assert (types["price"].precision, types["price"].scale) == (18, 2), types
    assert isinstance(types["volume"], sa.BIGINT), types
    assert isinstance(types["ts"], sa.TIMESTAMP), types
    assert all(not c["nullable"] for c in columns), columns
    assert all(c["default"] is None and c["comment"] is None for c in columns), columns
    assert all("identity" not in c for c in columns), columns
    assert inspector.get_pk_constraint("trades")["constrained_columns"] == []
    assert inspector.get_foreign_keys("trades") == []
    assert inspector.get_indexes("trades") == []
    assert inspector.get_unique_constraints("trades") == []
    assert inspector.get_check_constraints("trades") == []
    assert inspector.get_table_comment("trades") == {"text": None}
    # SQLAlchemy's reflection of the whole table.
    table = sa.Table("trades", sa.MetaData(), autoload_with=engine)
    assert [c.name for c in table.columns] == TRADES_COLUMNS
    # ... and of the whole schema, as MetaData.reflect() does.
    metadata = sa.MetaData()
    metadata.reflect(engine, schema="public")
    assert list(metadata.tables) == ["public.trades"], list(metadata.tables)
    return engine


if __name__ == "__main__":
    reflect(sys.argv[1], int(sys.argv[2]))
    print(f"sqlalchemy {sa.__version__} ok")
