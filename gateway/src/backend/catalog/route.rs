//! Deciding where a statement runs: catalog relations (pg_catalog,
//! information_schema) and catalog functions are answered by the gateway's
//! catalog session; statements naming engine relations go to an engine
//! node; a statement needing both cannot run anywhere.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, ObjectName, Query, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

#[derive(Debug, Clone, PartialEq, Eq)]
/// Which backend a statement's relations belong to.
pub enum Target {
    Catalog,
    Engine,
    /// Names catalog and engine relations together.
    Mixed {
        catalog: String,
        engine: String,
    },
}

/// Functions only the catalog session knows: a statement calling one, and
/// naming no engine relation, runs there.
const CATALOG_FUNCTIONS: &[&str] = &[
    "format_type",
    "pg_get_expr",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "pg_function_is_visible",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "obj_description",
    "col_description",
    "shobj_description",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "has_any_column_privilege",
    "has_column_privilege",
    "has_function_privilege",
    "pg_has_role",
    "current_schema",
    "current_schemas",
    "current_setting",
    "pg_encoding_to_char",
    "pg_char_to_encoding",
    "getdatabaseencoding",
    "pg_backend_pid",
    "pg_is_in_recovery",
    "txid_current",
    "quote_ident",
    "quote_literal",
    "format",
    "pg_is_other_temp_schema",
    "pg_collation_is_visible",
    "pg_conversion_is_visible",
    "pg_opclass_is_visible",
    "pg_operator_is_visible",
    "pg_opfamily_is_visible",
    "pg_statistics_obj_is_visible",
    "pg_ts_config_is_visible",
    "pg_ts_dict_is_visible",
    "pg_ts_parser_is_visible",
    "pg_ts_template_is_visible",
    "pg_client_encoding",
    "pg_size_pretty",
    "pg_relation_size",
    "pg_database_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_tablespace_size",
    "pg_total_relation_size",
    "pg_get_keywords",
    "to_regclass",
    "to_regtype",
    "session_user",
    "current_user",
    "current_database",
    "current_catalog",
    "current_role",
    "set_config",
    "pg_typeof",
    "json_build_object",
];

/// Cast targets that only make sense against the catalog.
const CATALOG_TYPES: &[&str] = &[
    "regclass",
    "regtype",
    "regproc",
    "regprocedure",
    "regnamespace",
    "regrole",
    "regoper",
    "regoperator",
    "oid",
];

/// Cheap test before parsing: every catalog statement mentions one of these.
fn may_touch_catalog(lower: &str) -> bool {
    lower.contains("pg_")
        || lower.contains("information_schema")
        || lower.contains("::")
        || CATALOG_FUNCTIONS.iter().any(|f| lower.contains(f))
}

pub fn route(sql: &str) -> Target {
    let lower = sql.to_ascii_lowercase();
    if !may_touch_catalog(&lower) {
        return Target::Engine;
    }
    // Statements in the streaming dialect (EMIT, WINDOW, kafka:// URIs)
    // do not parse as PostgreSQL: they are the engine's.
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Target::Engine;
    };
    let [statement] = statements.as_slice() else {
        return Target::Engine;
    };
    if !matches!(statement, Statement::Query(_)) {
        return Target::Engine;
    }
    let mut names = Names::default();
    let _ = statement.visit(&mut names);
    let catalog = names.relations.iter().find(|r| is_catalog_relation(r));
    let engine = names
        .relations
        .iter()
        .find(|r| !is_catalog_relation(r) && !names.ctes.contains(&relation_key(r)));
    match (catalog, engine) {
        (Some(c), Some(e)) => Target::Mixed {
            catalog: c.to_string(),
            engine: e.to_string(),
        },
        (Some(_), None) => Target::Catalog,
        (None, Some(_)) => Target::Engine,
        (None, None) if names.catalog_calls => Target::Catalog,
        (None, None) => Target::Engine,
    }
}

#[derive(Default)]
struct Names {
    relations: Vec<ObjectName>,
    ctes: HashSet<String>,
    catalog_calls: bool,
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_ascii_lowercase()
            }
        })
        .collect()
}

fn relation_key(name: &ObjectName) -> String {
    parts(name).join(".")
}

fn is_catalog_relation(name: &ObjectName) -> bool {
    let parts = parts(name);
    match parts.as_slice() {
        [.., schema, _] => schema == "pg_catalog" || schema == "information_schema",
        // pg_catalog is always searched first.
        [table] => table.starts_with("pg_"),
        [] => false,
    }
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args, .. } = factor {
            let function = parts(name).last().cloned().unwrap_or_default();
            match args {
                // A table function: only catalog ones decide the route.
                Some(_) => self.catalog_calls |= CATALOG_FUNCTIONS.contains(&function.as_str()),
                None => self.relations.push(name.clone()),
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => {
                let parts = parts(&f.name);
                let name = parts.last().cloned().unwrap_or_default();
                self.catalog_calls |= CATALOG_FUNCTIONS.contains(&name.as_str())
                    || (parts.len() > 1 && parts[0] == "pg_catalog");
            }
            Expr::Cast { data_type, .. } => self.catalog_calls |= is_catalog_type(data_type),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn is_catalog_type(t: &DataType) -> bool {
    match t {
        DataType::Custom(name, _) => parts(name)
            .last()
            .is_some_and(|n| CATALOG_TYPES.contains(&n.as_str())),
        DataType::Regclass => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_relations_and_functions_route_to_the_catalog() {
        assert_eq!(
            route("SELECT relname FROM pg_catalog.pg_class"),
            Target::Catalog
        );
        assert_eq!(route("select * from pg_namespace"), Target::Catalog);
        assert_eq!(
            route("SELECT table_name FROM information_schema.tables"),
            Target::Catalog
        );
        assert_eq!(
            route("SELECT current_setting('server_version_num')"),
            Target::Catalog
        );
        assert_eq!(route("SELECT 'trades'::regclass"), Target::Catalog);
        assert_eq!(route("select pg_catalog.version()"), Target::Catalog);
        assert_eq!(
            route("WITH t AS (SELECT oid FROM pg_type) SELECT * FROM t"),
            Target::Catalog
        );
    }

    #[test]
    fn engine_relations_and_plain_expressions_route_to_the_engine() {
        assert_eq!(route("SELECT * FROM trades"), Target::Engine);
        assert_eq!(route("SELECT 1 + 1"), Target::Engine);
        assert_eq!(
            route("SELECT symbol, COUNT(*) FROM trades GROUP BY symbol EMIT CHANGES"),
            Target::Engine
        );
        assert_eq!(route("SELECT price::numeric FROM trades"), Target::Engine);
    }

    #[test]
    fn mixing_catalog_and_engine_relations_is_refused() {
        let mixed = route("SELECT * FROM trades t JOIN pg_class c ON c.relname = t.symbol");
        assert!(matches!(mixed, Target::Mixed { .. }), "{mixed:?}");
    }
}
