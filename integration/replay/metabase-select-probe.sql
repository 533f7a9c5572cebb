-- Metabase SQL JDBC sync: the SELECT-privilege probe (src/metabase/driver/sql_jdbc/sync/describe_database.clj,
-- simple-select-probe-query); it names the stream, so it runs on an engine node.
-- expect: _
-- expect-rows: 0
SELECT TRUE AS "_" FROM "public"."trades" WHERE 1 <> 1 LIMIT 0;
