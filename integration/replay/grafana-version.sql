-- Grafana PostgreSQL data source: version detection (getVersion()).
-- expect: 1500
SELECT current_setting('server_version_num')::int/100 as version
