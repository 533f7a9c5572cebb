-- Metabase PostgreSQL driver: enum types, looked up before every field sync
-- (src/metabase/driver/postgres.clj, enum-types). Streams have none.
-- expect: nspname|typname
-- expect-rows: 0
SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e);
