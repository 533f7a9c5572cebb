-- Grafana PostgreSQL data source: "Save & test" health check.
-- expect: ?column?
-- expect: 1
SELECT 1
