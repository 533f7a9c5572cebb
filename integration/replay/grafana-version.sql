-- Grafana PostgreSQL data source: version detection (getVersion()).
SELECT current_setting('server_version_num')::int/100 as version
