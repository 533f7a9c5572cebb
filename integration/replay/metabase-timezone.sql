-- Metabase PostgreSQL driver: the database's default time zone (src/metabase/driver/postgres.clj,
-- db-default-timezone).
-- expect: UTC
show timezone;
