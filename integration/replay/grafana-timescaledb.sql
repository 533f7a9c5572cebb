-- Grafana PostgreSQL data source: TimescaleDB detection (getTimescaleDBVersion()); expects no rows.
-- expect-rows: 0
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'
