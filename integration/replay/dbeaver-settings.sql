-- DBeaver, PostgreSQL plugin: connection start-up reads the search path and current schema.
-- expect: "$user", public
-- expect: public|velo
SELECT reset_val FROM pg_settings WHERE name = 'search_path';
SELECT current_schema(),session_user;
