-- DBeaver, PostgreSQL plugin: the database it connected to (bind parameter: the database name).
-- expect-containing: |velostream|
-- expect-rows: 1
SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname='velostream'
