-- Grafana PostgreSQL data source, query editor: columns of a table (getSchema()).
select quote_ident(column_name) as "column", data_type as "type"
    from information_schema.columns
    where quote_ident(table_name) = 'trades'
