-- DBeaver, PostgreSQL plugin: the schema list (schema cache).
-- expect-containing: |public|
-- expect-containing: |pg_catalog|
-- expect-rows: 3
SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass
 ORDER BY nspname
