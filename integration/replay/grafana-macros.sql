-- A Grafana panel query after macro expansion (pkg/tsdb/grafana-postgresql-datasource macros):
-- $__timeGroupAlias(ts,'1m') → floor(extract(epoch from ts)/60)*60 AS "time"
-- $__timeFilter(ts)          → ts BETWEEN '<from RFC3339>' AND '<to RFC3339>'
-- It names the stream, so it runs on an engine node.
-- expect: time|metric|value
-- expect-containing: |AAPL|
SELECT floor(extract(epoch from ts)/60)*60 AS "time", symbol AS metric, avg(price) AS value
FROM trades
WHERE ts BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'
GROUP BY 1, 2
ORDER BY 1
