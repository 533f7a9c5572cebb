-- Grafana PostgreSQL data source: TimescaleDB detection (getTimescaleDBVersion()); expects no rows.
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'
