-- Grafana PostgreSQL data source, query editor: columns of a table (getSchema()).
-- expect: column|type
-- expect: symbol|text
-- expect: price|numeric
-- expect: volume|bigint
-- expect: ts|timestamp without time zone
-- expect-rows: 4
select quote_ident(column_name) as "column", data_type as "type"
    from information_schema.columns
    where quote_ident(table_name) = 'trades'
