-- tool: Grafana (PostgreSQL data source)
-- name: version detection
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getVersion() (datasource.ts getVersion, configuration/useAutoDetectFeatures.ts)
-- compare: all
SELECT current_setting('server_version_num')::int/100 as version;

-- name: timescaledb detection
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getTimescaleDBVersion()
-- compare: all
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb';

-- name: schema list
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, showSchemas()
-- compare: all
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name;

-- name: table list, search-path tables unqualified (IN subquery inside a CASE in the projection)
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, showTables() without schema (datasource.ts fetchTables, SQL builder table picker and completion)
-- compare: all
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1;

-- name: table list of one schema
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, showTables('public')
-- compare: all
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1;

-- name: columns of an unqualified table
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getSchema('trades') (datasource.ts fetchFields)
-- compare: all
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('trades'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('trades'))[1]
          AND quote_ident(table_name) = (parse_ident('trades'))[2]
        ELSE quote_ident(table_name) = 'trades'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END;

-- name: columns of a schema-qualified table
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getSchema('public.trades')
-- compare: all
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('public.trades'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('public.trades'))[1]
          AND quote_ident(table_name) = (parse_ident('public.trades'))[2]
        ELSE quote_ident(table_name) = 'public.trades'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END;

-- name: database list (older builder)
-- source: public/app/plugins/datasource/postgres/postgresMetaQuery.ts (older plugin path, before the rename to grafana-postgresql-datasource), showDatabases()
-- compare: rows-with velostream
SELECT datname FROM pg_database WHERE datistemplate = false;

-- name: table list (older builder)
-- source: public/app/plugins/datasource/postgres/postgresMetaQuery.ts (older plugin path, before the rename to grafana-postgresql-datasource), showTables()
-- compare: all
select quote_ident(table_name) as "table" from information_schema.tables
    where quote_ident(table_schema) not in ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
      and table_type = 'BASE TABLE' and 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          );

-- name: columns (older builder)
-- source: public/app/plugins/datasource/postgres/postgresMetaQuery.ts (older plugin path, before the rename to grafana-postgresql-datasource), getSchema('trades')
-- compare: all
select quote_ident(column_name) as "column", data_type as "type"
    from information_schema.columns
    where quote_ident(table_name) = 'trades';

-- name: find metric table
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), findMetricTable()
-- compare: all

SELECT
	quote_ident(table_name) as table_name,
	( SELECT
	    quote_ident(column_name) as column_name
	  FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
    ORDER BY ordinal_position LIMIT 1
  ) AS time_column,
  ( SELECT
      quote_ident(column_name) AS column_name
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
    ORDER BY ordinal_position LIMIT 1
  ) AS value_column
FROM information_schema.tables t
WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
  ) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
  )
LIMIT 1
;

-- name: table list (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildTableQuery()
-- compare: all
SELECT quote_ident(table_name) FROM information_schema.tables WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) ORDER BY table_name;

-- name: time columns (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildColumnQuery('time') with table 'trades'
-- compare: all
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'trades' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name;

-- name: metric columns (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildColumnQuery('metric') with table 'trades'
-- compare: all
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'trades' AND data_type IN ('text','character','character varying') ORDER BY column_name;

-- name: value columns (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildColumnQuery('value') with table 'trades', time column 'ts'
-- compare: all
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'trades' AND data_type IN ('bigint','integer','double precision','real','numeric') AND column_name <> 'ts' ORDER BY column_name;

-- name: group columns of a schema-qualified table (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildColumnQuery('group') with table 'public.trades'
-- compare: all
SELECT quote_ident(column_name) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'trades' AND data_type IN ('text','character','character varying','uuid') ORDER BY column_name;

-- name: all columns (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildColumnQuery() with table 'trades'
-- compare: all
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'trades' ORDER BY column_name;

-- name: column data type (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildDatatypeQuery('price') with table 'trades'
-- compare: all
SELECT udt_name FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'trades' AND column_name = 'price';

-- name: aggregate functions (legacy builder)
-- source: public/app/plugins/datasource/postgres/meta_query.ts (legacy Angular query builder), buildAggregateQuery()
-- compare: shape
SELECT DISTINCT proname FROM pg_aggregate INNER JOIN pg_proc ON pg_aggregate.aggfnoid = pg_proc.oid INNER JOIN pg_type ON pg_type.oid=pg_proc.prorettype WHERE pronargs=1 AND typname IN ('float8') AND aggkind='n' ORDER BY 1;

-- name: schema list (backend schema handler)
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go, querySchemas
-- compare: all
SELECT schema_name FROM information_schema.schemata
		 WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'
		 ORDER BY schema_name;

-- name: table list (backend schema handler)
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go, queryTables ($1 = 'public')
-- compare: all
SELECT table_name FROM information_schema.tables
		 WHERE table_schema = 'public' AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name;

-- name: columns (backend schema handler)
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go, queryColumns ($1 = 'public', $2 = 'trades')
-- compare: all
SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = 'public' AND table_name = 'trades'
		 ORDER BY ordinal_position;
