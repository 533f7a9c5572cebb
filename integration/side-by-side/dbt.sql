-- tool: dbt-postgres 1.9 (dbt-core 1.9, dbt-adapters 1.10)
-- name: connection check (dbt debug)
-- source: dbt/adapters/postgres/impl.py, debug_query: self.execute("select 1 as id") (query comment added by dbt-adapters query_headers.py)
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "debug"} */
select 1 as id;

-- name: role from the profile
-- source: dbt/adapters/postgres/connections.py, open(): cursor.execute("set role {}") when credentials.role is set (no query comment)
-- compare: all
set role velo;

-- name: list schemas
-- source: dbt/include/postgres/macros/adapters.sql, postgres__list_schemas
-- compare: rows-with public
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "list_velostream"} */
    select distinct nspname from pg_namespace;

-- name: check schema exists
-- source: dbt/include/postgres/macros/adapters.sql, postgres__check_schema_exists (schema 'public')
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "list_velostream"} */
    select count(*) from pg_namespace where nspname = 'public';

-- name: list relations without caching
-- source: dbt/include/postgres/macros/adapters.sql, postgres__list_relations_without_caching (database 'velostream', schema 'public')
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "list_velostream_public"} */
select
      'velostream' as database,
      tablename as name,
      schemaname as schema,
      'table' as type
    from pg_tables
    where schemaname ilike 'public'
    union all
    select
      'velostream' as database,
      viewname as name,
      schemaname as schema,
      'view' as type
    from pg_views
    where schemaname ilike 'public'
    union all
    select
      'velostream' as database,
      matviewname as name,
      schemaname as schema,
      'materialized_view' as type
    from pg_matviews
    where schemaname ilike 'public';

-- name: columns in relation
-- source: dbt/include/postgres/macros/adapters.sql, postgres__get_columns_in_relation (relation "velostream"."public"."trades", relation.information_schema('columns') renders as "velostream".INFORMATION_SCHEMA.columns)
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "node_id": "model.velostream.trades_summary"} */
      select
          column_name,
          data_type,
          character_maximum_length,
          numeric_precision,
          numeric_scale

      from "velostream".INFORMATION_SCHEMA.columns
      where table_name = 'trades'
        
        and table_schema = 'public'
        
      order by ordinal_position;

-- name: catalog of one relation (dbt docs generate)
-- source: dbt/include/postgres/macros/catalog.sql, postgres__get_catalog_relations (relations = [public.trades])
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "velostream.information_schema"} */
    
    

    select
        'velostream' as table_database,
        sch.nspname as table_schema,
        tbl.relname as table_name,
        case tbl.relkind
            when 'v' then 'VIEW'
            when 'm' then 'MATERIALIZED VIEW'
            else 'BASE TABLE'
        end as table_type,
        tbl_desc.description as table_comment,
        col.attname as column_name,
        col.attnum as column_index,
        pg_catalog.format_type(col.atttypid, col.atttypmod) as column_type,
        col_desc.description as column_comment,
        pg_get_userbyid(tbl.relowner) as table_owner

    from pg_catalog.pg_namespace sch
    join pg_catalog.pg_class tbl on tbl.relnamespace = sch.oid
    join pg_catalog.pg_attribute col on col.attrelid = tbl.oid
    left outer join pg_catalog.pg_description tbl_desc on (tbl_desc.objoid = tbl.oid and tbl_desc.objsubid = 0)
    left outer join pg_catalog.pg_description col_desc on (col_desc.objoid = tbl.oid and col_desc.objsubid = col.attnum)
    where ((upper(sch.nspname) = upper('public') and
           upper(tbl.relname) = upper('trades')))
      and not pg_is_other_temp_schema(sch.oid) -- not a temporary schema belonging to another session
      and tbl.relpersistence in ('p', 'u') -- [p]ermanent table or [u]nlogged table. Exclude [t]emporary tables
      and tbl.relkind in ('r', 'v', 'f', 'p', 'm') -- o[r]dinary table, [v]iew, [f]oreign table, [p]artitioned table, [m]aterialized view. Other values are [i]ndex, [S]equence, [c]omposite type, [t]OAST table
      and col.attnum > 0 -- negative numbers are used for system columns such as oid
      and not col.attisdropped -- column as not been dropped

    order by
        sch.nspname,
        tbl.relname,
        col.attnum;

-- name: catalog of a schema (dbt docs generate)
-- source: dbt/include/postgres/macros/catalog.sql, postgres__get_catalog (schemas = ['public'])
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "velostream.information_schema"} */
    
    

    select
        'velostream' as table_database,
        sch.nspname as table_schema,
        tbl.relname as table_name,
        case tbl.relkind
            when 'v' then 'VIEW'
            when 'm' then 'MATERIALIZED VIEW'
            else 'BASE TABLE'
        end as table_type,
        tbl_desc.description as table_comment,
        col.attname as column_name,
        col.attnum as column_index,
        pg_catalog.format_type(col.atttypid, col.atttypmod) as column_type,
        col_desc.description as column_comment,
        pg_get_userbyid(tbl.relowner) as table_owner

    from pg_catalog.pg_namespace sch
    join pg_catalog.pg_class tbl on tbl.relnamespace = sch.oid
    join pg_catalog.pg_attribute col on col.attrelid = tbl.oid
    left outer join pg_catalog.pg_description tbl_desc on (tbl_desc.objoid = tbl.oid and tbl_desc.objsubid = 0)
    left outer join pg_catalog.pg_description col_desc on (col_desc.objoid = tbl.oid and col_desc.objsubid = col.attnum)
    where (upper(sch.nspname) = upper('public'))
      and not pg_is_other_temp_schema(sch.oid) -- not a temporary schema belonging to another session
      and tbl.relpersistence in ('p', 'u') -- [p]ermanent table or [u]nlogged table. Exclude [t]emporary tables
      and tbl.relkind in ('r', 'v', 'f', 'p', 'm') -- o[r]dinary table, [v]iew, [f]oreign table, [p]artitioned table, [m]aterialized view. Other values are [i]ndex, [S]equence, [c]omposite type, [t]OAST table
      and col.attnum > 0 -- negative numbers are used for system columns such as oid
      and not col.attisdropped -- column as not been dropped

    order by
        sch.nspname,
        tbl.relname,
        col.attnum;

-- name: relation dependencies
-- source: dbt/include/postgres/macros/relations.sql, postgres__get_relations (dbt/adapters/postgres/impl.py _link_cached_relations)
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "connection_name": "master"} */
with relation as (
        select
            pg_rewrite.ev_class as class,
            pg_rewrite.oid as id
        from pg_rewrite
    ),
    class as (
        select
            oid as id,
            relname as name,
            relnamespace as schema,
            relkind as kind
        from pg_class
    ),
    dependency as (
        select distinct
            pg_depend.objid as id,
            pg_depend.refobjid as ref
        from pg_depend
    ),
    schema as (
        select
            pg_namespace.oid as id,
            pg_namespace.nspname as name
        from pg_namespace
        where nspname != 'information_schema' and nspname not like 'pg\_%'
    ),
    referenced as (
        select
            relation.id AS id,
            referenced_class.name ,
            referenced_class.schema ,
            referenced_class.kind
        from relation
        join class as referenced_class on relation.class=referenced_class.id
        where referenced_class.kind in ('r', 'v', 'm')
    ),
    relationships as (
        select
            referenced.name as referenced_name,
            referenced.schema as referenced_schema_id,
            dependent_class.name as dependent_name,
            dependent_class.schema as dependent_schema_id,
            referenced.kind as kind
        from referenced
        join dependency on referenced.id=dependency.id
        join class as dependent_class on dependency.ref=dependent_class.id
        where
            (referenced.name != dependent_class.name or
             referenced.schema != dependent_class.schema)
    )

    select
        referenced_schema.name as referenced_schema,
        relationships.referenced_name as referenced_name,
        dependent_schema.name as dependent_schema,
        relationships.dependent_name as dependent_name
    from relationships
    join schema as dependent_schema on relationships.dependent_schema_id=dependent_schema.id
    join schema as referenced_schema on relationships.referenced_schema_id=referenced_schema.id
    group by referenced_schema, referenced_name, dependent_schema, dependent_name
    order by referenced_schema, referenced_name, dependent_schema, dependent_name;

-- name: grants on a relation
-- source: dbt/include/postgres/macros/adapters.sql, postgres__get_show_grant_sql (relation public.trades)
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "node_id": "model.velostream.trades_summary"} */
select grantee, privilege_type
  from "velostream".INFORMATION_SCHEMA.role_table_grants
      where grantor = current_role
        and grantee != current_role
        and table_schema = 'public'
        and table_name = 'trades';

-- name: indexes of a relation
-- source: dbt/include/postgres/macros/adapters.sql, postgres__get_show_indexes_sql (relation public.trades, used by postgres__describe_materialized_view)
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "node_id": "model.velostream.trades_summary"} */
    select
        i.relname                                   as name,
        m.amname                                    as method,
        ix.indisunique                              as "unique",
        array_to_string(array_agg(a.attname), ',')  as column_names
    from pg_index ix
    join pg_class i
        on i.oid = ix.indexrelid
    join pg_am m
        on m.oid=i.relam
    join pg_class t
        on t.oid = ix.indrelid
    join pg_namespace n
        on n.oid = t.relnamespace
    join pg_attribute a
        on a.attrelid = t.oid
        and a.attnum = ANY(ix.indkey)
    where t.relname = 'trades'
      and n.nspname = 'public'
      and t.relkind in ('r', 'm')
    group by 1, 2, 3
    order by 1, 2, 3;

-- name: source freshness (current_timestamp)
-- source: dbt-adapters global_project/macros/adapters/freshness.sql default__collect_freshness with dbt/include/postgres/macros/timestamps.sql postgres__current_timestamp = now() (source "velostream"."public"."trades", loaded_at_field ts)
-- compare: shape
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "node_id": "source.velostream.market.trades"} */
select
      max(ts) as max_loaded_at,
      now() as snapshotted_at
    from "velostream"."public"."trades";

-- name: snapshot time column type probe
-- source: dbt-adapters global_project/macros/adapters/timestamps.sql get_snapshot_get_time_data_type -> columns.sql default__get_empty_subquery_sql, with postgres__snapshot_get_time = now()::timestamp without time zone
-- compare: all
/* {"app": "dbt", "dbt_version": "1.9.1", "profile_name": "velostream", "target_name": "dev", "node_id": "snapshot.velostream.trades_snapshot"} */
select * from (
        select now()::timestamp without time zone as dbt_snapshot_time
    ) as __dbt_sbq
    where false
    limit 0;
