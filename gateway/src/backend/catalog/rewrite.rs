//! Rewrites of catalog SQL idioms DataFusion does not plan as PostgreSQL
//! does, on the statement after the catalog library's own rewrites (text
//! level ones, before it, are in `fragments`).

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, FunctionArg, FunctionArguments, GroupByExpr, Ident, ObjectNamePart,
    OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor, Visit, VisitMut, Visitor,
    VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use velo_engine::query::literals::for_each_select;

use super::pg15_oids::system_relation_oid;

/// Rewrites `statement` for the catalog session, where `catalog_tables`
/// are the relations in its pg_catalog schema.
pub fn rewrite(statement: &mut Statement, catalog_tables: &[String]) {
    let mut aliases = Aliases::default();
    let _ = Visit::visit(&*statement, &mut aliases);
    let _ = statement.visit(&mut Rules {
        aliases: aliases.0,
        catalog_tables,
    });
    velo_engine::query::literals::select_list_integers(statement);
}

struct Rules<'a> {
    /// Alias (or name) → relation name, over the whole statement.
    aliases: HashMap<String, String>,
    catalog_tables: &'a [String],
}

#[derive(Default)]
struct Aliases(HashMap<String, String>);

impl Visitor for Aliases {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        {
            if let Some(table) = name.0.last().and_then(|p| p.as_ident()) {
                let table = table.value.to_ascii_lowercase();
                let key = alias
                    .as_ref()
                    .map_or(table.clone(), |a| a.name.value.to_ascii_lowercase());
                self.0.insert(key, table);
            }
        }
        ControlFlow::Continue(())
    }
}

/// Catalog views defined over pg_class as PostgreSQL defines them, expanded
/// in place (so they can call the session's functions).
const QUERY_TIME_VIEWS: &[(&str, &str)] = &[(
    "pg_tables",
    "SELECT n.nspname AS schemaname, c.relname AS tablename, \
     pg_get_userbyid(c.relowner) AS tableowner, CAST(NULL AS VARCHAR) AS tablespace, \
     c.relhasindex AS hasindexes, c.relhasrules AS hasrules, c.relhastriggers AS hastriggers, \
     c.relrowsecurity AS rowsecurity \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p')",
)];

fn query_time_view(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = factor
    else {
        return None;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect::<Option<_>>()?;
    let table = match parts.as_slice() {
        [table] | [_, table] if parts.len() == 1 || parts[0] == "pg_catalog" => table,
        _ => return None,
    };
    let (_, body) = QUERY_TIME_VIEWS.iter().find(|(view, _)| view == table)?;
    let alias = alias.as_ref().map_or(table.clone(), |a| a.name.to_string());
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("({body}) AS {alias}"))
        .and_then(|mut p| p.parse_table_factor())
        .ok()
}

impl Rules<'_> {
    /// The value of a system column (which every PostgreSQL relation has,
    /// and no user column may be named after) read from `qualifier`.
    fn system_column(&self, column: &str, qualifier: Option<&str>) -> Option<String> {
        Some(match column {
            "xmin" | "xmax" | "cmin" | "cmax" => "CAST(1 AS INT)".into(),
            "ctid" => "'(0,1)'".into(),
            "tableoid" => {
                let table = match qualifier {
                    Some(q) => self.aliases.get(q),
                    None if self.aliases.len() == 1 => self.aliases.values().next(),
                    None => None,
                };
                // pg_roles reads pg_authid.
                let table = table.map(|t| if t == "pg_roles" { "pg_authid" } else { t });
                let oid = table.and_then(system_relation_oid).unwrap_or(0);
                format!("CAST({oid} AS INT)")
            }
            _ => return None,
        })
    }
}

/// Set-returning functions DataFusion has as table functions (column
/// `value`); any other function in FROM is a scalar one, giving one row.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

impl VisitorMut for Rules<'_> {
    type Break = ();

    // DataFusion refuses two projection items with the same name (every
    // scalar subquery is "(<subquery>)", a cast is named after its operand);
    // PostgreSQL allows them. Clients see PostgreSQL's names anyway (see
    // query::names).
    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        for_each_select(query.body.as_mut(), &mut |select| {
            let keys: Vec<Option<String>> = select
                .projection
                .iter()
                .map(|p| match p {
                    SelectItem::UnnamedExpr(e) => Some(datafusion_name(e)),
                    _ => None,
                })
                .collect();
            for (i, item) in select.projection.iter_mut().enumerate() {
                let Some(key) = &keys[i] else { continue };
                let repeated = keys.iter().filter(|k| k.as_ref() == Some(key)).count() > 1;
                if let (true, SelectItem::UnnamedExpr(expr)) = (repeated, &*item) {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::new(format!("column_{}", i + 1)),
                    };
                }
            }
        });
        ControlFlow::Continue(())
    }

    // PostgreSQL searches pg_catalog before the search path.
    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(view) = query_time_view(factor) {
            *factor = view;
        } else if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let known = match name.0.as_slice() {
                [only] => only.as_ident().is_some_and(|i| {
                    self.catalog_tables
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(&i.value))
                }),
                _ => false,
            };
            if known {
                name.0
                    .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            }
        }
        ControlFlow::Continue(())
    }

    // PostgreSQL names a function's column after the FROM alias:
    // `FROM generate_series(1, 3) AS i, string_to_array(x, ',') s`.
    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias: Some(alias),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        // The column is named after the alias, or its one column alias
        // (`unnest(evttags) AS t(x)`, psql's \dy).
        let column = match alias.columns.as_slice() {
            [] => alias.name.to_string(),
            [only] => only.name.to_string(),
            _ => return ControlFlow::Continue(()),
        };
        let function = name.to_string().to_ascii_lowercase();
        let function = function.trim_start_matches("pg_catalog.");
        let a = &alias.name;
        let args = args
            .args
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = if TABLE_FUNCTIONS.contains(&function) {
            format!("(SELECT value AS {column} FROM {function}({args})) AS {a}")
        } else {
            format!("(SELECT {function}({args}) AS {column}) AS {a}")
        };
        if let Ok(replacement) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_table_factor())
        {
            *factor = replacement;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            // `proc.oid = typ.typreceive`: pg_type's function columns hold
            // the function's name here, so join on the name (Npgsql's type
            // loading).
            Expr::BinaryOp {
                left,
                op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
                right,
            } => {
                if names_type_function(right) {
                    join_by_proname(left);
                } else if names_type_function(left) {
                    join_by_proname(right);
                } else if names_aggregate_function(right) {
                    join_by_qualified_proname(left);
                } else if names_aggregate_function(left) {
                    join_by_qualified_proname(right);
                }
            }
            // `(record).field` of a function's or column's record (the
            // unnested _pg_expandarray): DataFusion's get_field.
            Expr::CompoundFieldAccess { root, access_chain } if access_chain.len() == 1 => {
                if let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) =
                    &access_chain[0]
                {
                    let sql = format!("get_field({root}, '{}')", field.value.to_ascii_lowercase());
                    replace_with(expr, &sql);
                }
            }
            // The `name` type is text here.
            Expr::Cast { data_type, .. } if is_name_type(data_type) => {
                *data_type = DataType::Text;
            }
            // LIKE ... ESCAPE '/': DataFusion takes only the backslash.
            Expr::Like {
                pattern,
                escape_char: escape @ Some(_),
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char: escape @ Some(_),
                ..
            } => {
                let char = escape.as_ref().and_then(|v| match &v.value {
                    datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s) => {
                        let mut chars = s.chars();
                        chars.next().filter(|_| chars.next().is_none())
                    }
                    _ => None,
                });
                if let Some(c) = char.filter(|c| *c != '\\') {
                    let mut rewritten = pattern.as_ref().clone();
                    if backslash_escaped(&mut rewritten, c).is_some() {
                        **pattern = rewritten;
                        *escape = None;
                    }
                }
            }
            Expr::Identifier(column) if column.quote_style.is_none() => {
                if let Some(value) = self.system_column(&column.value.to_ascii_lowercase(), None) {
                    replace_with(expr, &value);
                }
            }
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let qualifier = parts[0].value.to_ascii_lowercase();
                let column = parts[1].value.to_ascii_lowercase();
                if let Some(value) = self.system_column(&column, Some(&qualifier)) {
                    replace_with(expr, &value);
                }
            }
            // oid::regtype::text and friends: the object's name.
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if is_text_type(data_type) => {
                if let Expr::Cast {
                    expr: oid,
                    data_type: reg,
                    ..
                } = inner.as_ref()
                {
                    if let Some(name) = object_name(&reg.to_string().to_ascii_lowercase(), oid) {
                        replace_with(expr, &name);
                    }
                }
            }
            // ARRAY(SELECT x ...) → (SELECT array_agg(x ...) ...)
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("array")
                    && matches!(f.args, FunctionArguments::Subquery(_)) =>
            {
                if let FunctionArguments::Subquery(query) = &f.args {
                    let mut query = query.clone();
                    if aggregate_into(&mut query, "array_agg") {
                        *expr = Expr::Subquery(query);
                    }
                }
            }
            // Visible: in the search path (public) or pg_catalog, not
            // information_schema.
            Expr::Function(f)
                if f.name
                    .to_string()
                    .eq_ignore_ascii_case("pg_table_is_visible") =>
            {
                if let FunctionArguments::List(list) = &f.args {
                    if let Some(oid) = list.args.first() {
                        // A scalar subquery plans both in WHERE and in a
                        // projection (an IN subquery only in WHERE).
                        let sql = format!(
                            "(SELECT bool_or(vn.nspname IN ('public', 'pg_catalog')) \
                             FROM pg_catalog.pg_class vc \
                             JOIN pg_catalog.pg_namespace vn ON vc.relnamespace = vn.oid \
                             WHERE vc.oid = {oid})"
                        );
                        replace_with(expr, &sql);
                    }
                }
            }
            // Built-in objects' descriptions (psql's \dF, \dL, \df+) are
            // pg_description's rows; columns and shared objects (databases,
            // roles) have none here, and their arguments (often a
            // correlated name lookup) need not be planned at all.
            Expr::Function(f)
                if matches!(
                    function_name(f).as_deref(),
                    Some("obj_description" | "col_description" | "shobj_description")
                ) =>
            {
                let args: Vec<&FunctionArg> = match &f.args {
                    FunctionArguments::List(list) => list.args.iter().collect(),
                    _ => Vec::new(),
                };
                let sql = match (function_name(f).as_deref(), args.as_slice()) {
                    (Some("obj_description"), [oid]) => description(&oid.to_string(), None),
                    (Some("obj_description"), [oid, class]) => {
                        let class = class.to_string();
                        let class = class.trim_matches('\'');
                        match system_relation_oid(class) {
                            Some(class) => description(&oid.to_string(), Some(class)),
                            None => "CAST(NULL AS VARCHAR)".to_string(),
                        }
                    }
                    _ => "CAST(NULL AS VARCHAR)".to_string(),
                };
                replace_with(expr, &sql);
            }
            // Catalog functions written as lookups: pg_describe_object (psql
            // \dx+), pg_get_functiondef (\sf).
            Expr::Function(f)
                if matches!(
                    function_name(f).as_deref(),
                    Some(
                        "pg_describe_object"
                            | "pg_get_functiondef"
                            | "pg_get_function_result"
                            | "pg_get_function_arguments"
                            | "pg_get_function_identity_arguments"
                    )
                ) =>
            {
                let args: Vec<String> = match &f.args {
                    FunctionArguments::List(list) => {
                        list.args.iter().map(|a| a.to_string()).collect()
                    }
                    _ => Vec::new(),
                };
                let sql = match (function_name(f).as_deref(), args.as_slice()) {
                    (Some("pg_describe_object"), [class, oid, _]) => {
                        Some(describe_object(class, oid))
                    }
                    (Some("pg_get_functiondef"), [oid]) => Some(function_definition(oid)),
                    (Some("pg_get_function_result"), [oid]) => Some(format!(
                        "(SELECT CASE WHEN rp.proretset THEN 'SETOF ' ELSE '' END \
                         || format_type(rp.prorettype, NULL) FROM pg_catalog.pg_proc rp WHERE rp.oid = {oid})"
                    )),
                    // The types (builtin functions have no argument names).
                    (
                        Some("pg_get_function_arguments" | "pg_get_function_identity_arguments"),
                        [oid],
                    ) => Some(format!(
                        "(SELECT pg_format_types(rp.proargtypes) FROM pg_catalog.pg_proc rp WHERE rp.oid = {oid})"
                    )),
                    _ => None,
                };
                if let Some(sql) = sql {
                    replace_with(expr, &sql);
                }
            }
            // 'schema.name(types)'::regprocedure: the function's oid.
            Expr::Cast {
                expr: signature,
                data_type,
                ..
            } if is_string_literal(signature)
                && data_type
                    .to_string()
                    .to_ascii_lowercase()
                    .trim_start_matches("pg_catalog.")
                    == "regprocedure" =>
            {
                let sql = lookup_function(&signature.to_string());
                replace_with(expr, &sql);
            }
            // to_regclass('name'), to_regtype('name'): the oid, or NULL.
            Expr::Function(f)
                if matches!(
                    f.name.to_string().to_ascii_lowercase().as_str(),
                    "to_regclass" | "to_regtype"
                ) =>
            {
                if let FunctionArguments::List(list) = &f.args {
                    if let [name] = list.args.as_slice() {
                        let class = f.name.to_string().eq_ignore_ascii_case("to_regclass");
                        let sql = lookup_by_name(class, &name.to_string());
                        replace_with(expr, &sql);
                    }
                }
            }
            // A computed name cast to regclass/regtype (`format('%I.%I', s,
            // t)::regclass`; the library looks up literal names itself).
            Expr::Cast {
                expr: name,
                data_type,
                ..
            } if is_text_expr(name)
                && matches!(
                    data_type.to_string().to_ascii_lowercase().as_str(),
                    "regclass" | "regtype"
                ) =>
            {
                let class = data_type.to_string().eq_ignore_ascii_case("regclass");
                let sql = lookup_by_name(class, &name.to_string());
                replace_with(expr, &sql);
            }
            // The set-returning _pg_expandarray: its records, unnested.
            Expr::Function(f)
                if f.name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray")) =>
            {
                let array = match &f.args {
                    FunctionArguments::List(list) if list.args.len() == 1 => {
                        Some(list.args[0].to_string())
                    }
                    _ => None,
                };
                if let Some(array) = array {
                    replace_with(expr, &format!("unnest(pg_expandarray({array}))"));
                }
            }
            // generate_subscripts(a, 1) → the positions 1..n of a.
            Expr::Function(f)
                if f.name
                    .to_string()
                    .eq_ignore_ascii_case("generate_subscripts") =>
            {
                if let FunctionArguments::List(list) = &f.args {
                    if let Some(array) = list.args.first() {
                        let sql = format!(
                            "unnest(generate_series(CAST(1 AS BIGINT), CAST(array_length({array}) AS BIGINT)))"
                        );
                        replace_with(expr, &sql);
                    }
                }
            }
            // A scalar subquery that is not aggregated may, for DataFusion,
            // return several rows; catalog lookups by key return one. Take
            // the first so correlated lookups plan.
            Expr::Subquery(query) if !is_aggregated(query) => {
                aggregate_into(query, "first_value");
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// pg_type's columns naming a function (`regproc` in PostgreSQL, the
/// function's name in the library).
const TYPE_FUNCTION_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

/// Whether `e` is `alias.typreceive` or another of pg_type's function
/// columns.
fn names_type_function(e: &Expr) -> bool {
    matches!(e, Expr::CompoundIdentifier(parts)
        if parts.last().is_some_and(|c| TYPE_FUNCTION_COLUMNS.contains(&c.value.to_ascii_lowercase().as_str())))
}

/// Whether `e` is `alias.aggfnoid`, which the library holds as the
/// aggregate's schema-qualified name.
fn names_aggregate_function(e: &Expr) -> bool {
    matches!(e, Expr::CompoundIdentifier(parts)
        if parts.last().is_some_and(|c| c.value.eq_ignore_ascii_case("aggfnoid")))
}

/// `alias.oid` → `'pg_catalog.' || alias.proname` (Grafana's aggregate
/// list joins pg_aggregate to pg_proc).
fn join_by_qualified_proname(e: &mut Expr) {
    if let Expr::CompoundIdentifier(parts) = e {
        if parts.len() == 2 && parts[1].value.eq_ignore_ascii_case("oid") {
            let sql = format!("('pg_catalog.' || {}.proname)", parts[0]);
            replace_with(e, &sql);
        }
    }
}

fn is_name_type(t: &DataType) -> bool {
    matches!(t, DataType::Custom(name, args) if args.is_empty() && name.to_string().eq_ignore_ascii_case("name"))
}

/// `alias.oid` → `alias.proname`.
fn join_by_proname(e: &mut Expr) {
    if let Expr::CompoundIdentifier(parts) = e {
        if parts.len() == 2 && parts[1].value.eq_ignore_ascii_case("oid") {
            parts[1] = Ident::new("proname");
        }
    }
}

/// A LIKE pattern written for escape character `escape`, rewritten for
/// the backslash DataFusion knows: `pg/_%` with `/` is `pg\_%`. Literal
/// parts only (SQLAlchemy 2.1 writes `'pg/_' || '%' ESCAPE '/'`); `None`
/// where the pattern is computed.
fn backslash_escaped(pattern: &mut Expr, escape: char) -> Option<()> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Value};
    match pattern {
        Expr::Value(v) => {
            let Value::SingleQuotedString(text) = &mut v.value else {
                return None;
            };
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c == escape {
                    out.push('\\');
                    out.extend(chars.next());
                } else if c == '\\' {
                    out.push_str("\\\\");
                } else {
                    out.push(c);
                }
            }
            *text = out;
            Some(())
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => {
            backslash_escaped(left, escape)?;
            backslash_escaped(right, escape)
        }
        Expr::Nested(e) => backslash_escaped(e, escape),
        _ => None,
    }
}

/// The oid of the relation (or type) called `name`, or NULL: visible
/// names bare, others schema-qualified (quoted where needed).
fn lookup_by_name(class: bool, name: &str) -> String {
    if class {
        format!(
            "(SELECT first_value(rc.oid) FROM pg_catalog.pg_class rc \
             JOIN pg_catalog.pg_namespace rn ON rc.relnamespace = rn.oid \
             WHERE (rn.nspname IN ('public', 'pg_catalog') AND rc.relname = {name}) \
             OR rn.nspname || '.' || rc.relname = {name} \
             OR quote_ident(rn.nspname) || '.' || quote_ident(rc.relname) = {name})"
        )
    } else {
        format!(
            "(SELECT first_value(rt.oid) FROM pg_catalog.pg_type rt \
             JOIN pg_catalog.pg_namespace rtn ON rt.typnamespace = rtn.oid \
             WHERE (rtn.nspname IN ('public', 'pg_catalog') AND rt.typname = {name}) \
             OR rtn.nspname || '.' || rt.typname = {name} \
             OR format_type(rt.oid, NULL) = {name})"
        )
    }
}

/// A function's signature as regprocedure prints it: `name(type, type)`.
const SIGNATURE: &str = "rp.proname || '(' || pg_format_types(rp.proargtypes) || ')'";

/// The oid of the function a regprocedure literal names, or NULL.
fn lookup_function(signature: &str) -> String {
    format!(
        "(SELECT first_value(rp.oid) FROM pg_catalog.pg_proc rp \
         JOIN pg_catalog.pg_namespace rpn ON rp.pronamespace = rpn.oid \
         WHERE rpn.nspname || '.' || {SIGNATURE} = {signature} \
         OR (rpn.nspname IN ('public', 'pg_catalog') AND {SIGNATURE} = {signature}))"
    )
}

/// pg_describe_object(class, oid, subid) for the object kinds the catalog
/// holds (functions, languages, relations, types, schemas), in
/// PostgreSQL's words; every one is on the search path, so unqualified.
fn describe_object(class: &str, oid: &str) -> String {
    format!(
        "CASE {class} \
         WHEN 1255 THEN (SELECT 'function ' || {SIGNATURE} FROM pg_catalog.pg_proc rp WHERE rp.oid = {oid}) \
         WHEN 2612 THEN (SELECT 'language ' || dl.lanname FROM pg_catalog.pg_language dl WHERE dl.oid = {oid}) \
         WHEN 1259 THEN (SELECT CASE dc.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' \
              WHEN 'i' THEN 'index ' WHEN 'S' THEN 'sequence ' WHEN 'c' THEN 'composite type ' \
              WHEN 'f' THEN 'foreign table ' ELSE 'table ' END || dc.relname \
              FROM pg_catalog.pg_class dc WHERE dc.oid = {oid}) \
         WHEN 1247 THEN (SELECT 'type ' || format_type(dt.oid, NULL) FROM pg_catalog.pg_type dt WHERE dt.oid = {oid}) \
         WHEN 2615 THEN (SELECT 'schema ' || dn.nspname FROM pg_catalog.pg_namespace dn WHERE dn.oid = {oid}) \
         END"
    )
}

/// pg_get_functiondef(oid): the CREATE statement PostgreSQL prints for a
/// function, from pg_proc.
fn function_definition(oid: &str) -> String {
    format!(
        "(SELECT 'CREATE OR REPLACE FUNCTION ' || rpn.nspname || '.' || {SIGNATURE} || chr(10) \
         || ' RETURNS ' || CASE WHEN rp.proretset THEN 'SETOF ' ELSE '' END \
         || format_type(rp.prorettype, NULL) || chr(10) \
         || ' LANGUAGE ' || rl.lanname || chr(10) \
         || CASE WHEN rp.prokind = 'w' THEN ' WINDOW' || chr(10) ELSE '' END \
         || CASE WHEN rp.provolatile <> 'v' OR rp.proparallel <> 'u' OR rp.proisstrict \
                 OR rp.prosecdef OR rp.proleakproof THEN \
              CASE rp.provolatile WHEN 'i' THEN ' IMMUTABLE' WHEN 's' THEN ' STABLE' ELSE '' END \
              || CASE WHEN rp.prosecdef THEN ' SECURITY DEFINER' ELSE '' END \
              || CASE WHEN rp.proleakproof THEN ' LEAKPROOF' ELSE '' END \
              || CASE rp.proparallel WHEN 's' THEN ' PARALLEL SAFE' WHEN 'r' THEN ' PARALLEL RESTRICTED' ELSE '' END \
              || CASE WHEN rp.proisstrict THEN ' STRICT' ELSE '' END || chr(10) \
            ELSE '' END \
         || 'AS $function$' || rp.prosrc || '$function$' || chr(10) \
         FROM pg_catalog.pg_proc rp \
         JOIN pg_catalog.pg_namespace rpn ON rp.pronamespace = rpn.oid \
         JOIN pg_catalog.pg_language rl ON rp.prolang = rl.oid \
         WHERE rp.oid = {oid})"
    )
}

/// A function call's unqualified name, lower case.
/// `obj_description(oid[, catalog])`: the object's description, if
/// pg_description has one.
fn description(oid: &str, class: Option<i32>) -> String {
    let class = class.map_or(String::new(), |c| format!(" AND dsc.classoid = {c}"));
    format!(
        "(SELECT max(dsc.description) FROM pg_catalog.pg_description dsc \
         WHERE dsc.objoid = {oid}{class} AND dsc.objsubid = 0)"
    )
}

fn function_name(f: &datafusion::sql::sqlparser::ast::Function) -> Option<String> {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
}

fn is_string_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, datafusion::sql::sqlparser::ast::Value::SingleQuotedString(_)))
}

/// Whether `e` is evidently text (and so a name, not an oid).
fn is_text_expr(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => matches!(
            v.value,
            datafusion::sql::sqlparser::ast::Value::SingleQuotedString(_)
        ),
        Expr::BinaryOp { op, .. } => {
            *op == datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat
        }
        Expr::Function(f) => matches!(
            f.name.to_string().to_ascii_lowercase().as_str(),
            "format" | "concat" | "quote_ident" | "lower" | "upper" | "btrim" | "replace"
        ),
        Expr::Cast { data_type, .. } => is_text_type(data_type),
        Expr::Nested(e) => is_text_expr(e),
        _ => false,
    }
}

fn is_text_type(t: &DataType) -> bool {
    let t = t.to_string().to_ascii_lowercase();
    ["text", "name", "varchar", "character varying"].contains(&t.as_str())
}

/// The name an object-identifier type (`regtype`, `regclass`...) prints
/// for `oid`, as an expression over the catalog.
fn object_name(reg_type: &str, oid: &Expr) -> Option<String> {
    let (column, table) = match reg_type {
        // Oid 0 is `-`, as the reg* types print it.
        "regtype" => {
            return Some(format!(
                "CASE WHEN {oid} = 0 THEN '-' ELSE format_type({oid}, NULL) END"
            ))
        }
        "regclass" => ("relname", "pg_class"),
        "regproc" => ("proname", "pg_proc"),
        "regnamespace" => ("nspname", "pg_namespace"),
        "regrole" => ("rolname", "pg_roles"),
        _ => return None,
    };
    Some(format!(
        "CASE WHEN {oid} = 0 THEN '-' ELSE (SELECT first_value(reg_lookup.{column}) \
         FROM pg_catalog.{table} reg_lookup WHERE reg_lookup.oid = {oid}) END"
    ))
}

/// Roughly the name DataFusion gives an unaliased expression: enough to
/// tell which items it would find duplicated.
fn datafusion_name(e: &Expr) -> String {
    match e {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => datafusion_name(expr),
        Expr::Subquery(_) => "(<subquery>)".into(),
        other => other.to_string(),
    }
}

/// Replaces `expr` by the expression `sql`. Replacements embed the
/// client's own expressions as text; one that does not parse back leaves
/// `expr` as it was, for planning to report.
fn replace_with(expr: &mut Expr, sql: &str) {
    if let Ok(e) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
    {
        *expr = e;
    }
}

fn single_select(query: &mut Query) -> Option<&mut datafusion::sql::sqlparser::ast::Select> {
    match query.body.as_mut() {
        SetExpr::Select(select) if select.projection.len() == 1 => Some(select),
        _ => None,
    }
}

fn is_aggregated(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return true;
    };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    let text = select.projection[..]
        .iter()
        .map(|p| p.to_string().to_ascii_lowercase());
    grouped
        || select.projection.len() != 1
        || select.distinct.is_some()
        || text.into_iter().any(|p| {
            [
                "count(",
                "sum(",
                "max(",
                "min(",
                "avg(",
                "array_agg(",
                "string_agg(",
                "bool_and(",
                "bool_or(",
                "first_value(",
                "every(",
            ]
            .iter()
            .any(|a| p.contains(a))
        })
}

/// Wraps the single projected expression of `query` in `function`, moving
/// the query's ORDER BY into it and dropping LIMIT 1.
fn aggregate_into(query: &mut Query, function: &str) -> bool {
    let order_by = query.order_by.clone();
    let limited = query.limit_clause.as_ref().map(|l| l.to_string());
    if limited.as_deref().is_some_and(|l| l.trim() != "LIMIT 1") {
        return false;
    }
    let Some(select) = single_select(query) else {
        return false;
    };
    let (inner, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return false,
    };
    // ORDER BY 1 meant the projected column.
    let order = match order_by.map(|o| o.kind) {
        Some(OrderByKind::Expressions(items)) => {
            let items: Vec<String> = items
                .into_iter()
                .map(|mut item| {
                    if item.expr.to_string() == "1" {
                        item.expr = inner.clone();
                    }
                    item.to_string()
                })
                .collect();
            format!("ORDER BY {}", items.join(", "))
        }
        _ => String::new(),
    };
    let sql = format!("{function}({inner} {order})");
    let Ok(aggregated) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
    else {
        return false;
    };
    select.projection[0] = match alias {
        Some(alias) => SelectItem::ExprWithAlias {
            expr: aggregated,
            alias,
        },
        None => SelectItem::UnnamedExpr(aggregated),
    };
    query.order_by = None;
    query.limit_clause = None;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(&mut s, &["pg_class".to_string()]);
        s.to_string()
    }

    #[test]
    fn system_columns_and_unqualified_catalog_names() {
        assert_eq!(
            rewritten("SELECT c.xmin, c.tableoid, tableoid, ctid FROM pg_class c"),
            "SELECT CAST(1 AS INT), CAST(1259 AS INT) AS column_2, CAST(1259 AS INT) AS column_3, '(0,1)' FROM pg_catalog.pg_class c"
        );
    }

    #[test]
    fn select_list_integers_are_int4_as_in_postgresql() {
        assert_eq!(
            rewritten(
                "SELECT 1, -2, 3000000000, CASE WHEN a THEN 4 ELSE 5 END, f(6), 7::int8, \
                 pg_typeof(8), (SELECT max(b) + 9 FROM u WHERE b = 10) FROM t WHERE x = 11 LIMIT 12"
            ),
            "SELECT CAST(1 AS INT), -CAST(2 AS INT), 3000000000, \
             CASE WHEN a THEN CAST(4 AS INT) ELSE CAST(5 AS INT) END, f(6), 7::INT8, \
             pg_typeof(CAST(8 AS INT)), (SELECT max(b) + CAST(9 AS INT) FROM u WHERE b = 10) \
             FROM t WHERE x = 11 LIMIT 12"
        );
    }

    #[test]
    fn pg_expandarray_records_are_unnested_and_read_by_field() {
        assert_eq!(
            rewritten(
                "SELECT (information_schema._pg_expandarray(i.indkey)).n, \
                 information_schema._pg_expandarray(i.indkey) AS keys FROM pg_index i"
            ),
            "SELECT get_field((unnest(pg_expandarray(i.indkey))), 'n'), \
             unnest(pg_expandarray(i.indkey)) AS keys FROM pg_index i"
        );
        assert_eq!(
            rewritten("SELECT (r.keys).x FROM r"),
            "SELECT get_field((r.keys), 'x') FROM r"
        );
    }

    #[test]
    fn like_escape_characters_become_backslashes() {
        assert_eq!(
            rewritten(
                r"SELECT y FROM n WHERE nspname NOT LIKE 'pg/_' || '%' ESCAPE '/' AND x LIKE 'a\b'"
            ),
            r"SELECT y FROM n WHERE nspname NOT LIKE 'pg\_' || '%' AND x LIKE 'a\b'"
        );
        assert_eq!(
            rewritten(r"SELECT y FROM n WHERE a ILIKE 'x!%\' ESCAPE '!'"),
            r"SELECT y FROM n WHERE a ILIKE 'x\%\\'"
        );
    }

    #[test]
    fn type_functions_join_pg_proc_by_name() {
        assert_eq!(
            rewritten("SELECT t.typname FROM pg_type t LEFT JOIN pg_proc p ON p.oid = t.typreceive WHERE t.typsend = p.oid"),
            "SELECT t.typname FROM pg_type t LEFT JOIN pg_proc p ON p.proname = t.typreceive WHERE t.typsend = p.proname"
        );
    }

    #[test]
    fn every_branch_of_a_union_gets_unique_names() {
        assert_eq!(
            rewritten("WITH RECURSIVE t(a, b, c) AS (SELECT 0::int4, x, 0 FROM s UNION ALL SELECT 1, y, 1 FROM t) SELECT * FROM t"),
            "WITH RECURSIVE t (a, b, c) AS (SELECT 0::INT4 AS column_1, x, CAST(0 AS INT) AS column_3 FROM s \
             UNION ALL SELECT CAST(1 AS INT) AS column_1, y, CAST(1 AS INT) AS column_3 FROM t) SELECT * FROM t"
        );
    }

    #[test]
    fn object_identifiers_read_as_names() {
        assert_eq!(
            rewritten("SELECT a.atttypid::regtype::text, a.attrelid::regclass::text FROM pg_attribute a"),
            "SELECT CASE WHEN a.atttypid = CAST(0 AS INT) THEN '-' ELSE format_type(a.atttypid, NULL) END, \
             CASE WHEN a.attrelid = CAST(0 AS INT) THEN '-' ELSE (SELECT first_value(reg_lookup.relname) \
             FROM pg_catalog.pg_class reg_lookup WHERE reg_lookup.oid = a.attrelid) END FROM pg_attribute a"
        );
    }

    #[test]
    fn array_subquery_becomes_array_agg() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM r AS b WHERE b.x = a.x ORDER BY 1) FROM a"),
            "SELECT (SELECT array_agg(b.rolname ORDER BY b.rolname) FROM r AS b WHERE b.x = a.x) FROM a"
        );
    }

    #[test]
    fn scalar_lookup_takes_the_first_row() {
        assert_eq!(
            rewritten("SELECT (SELECT c.relkind = 'c' FROM c WHERE c.oid = t.typrelid) FROM t"),
            "SELECT (SELECT first_value(c.relkind = 'c') FROM c WHERE c.oid = t.typrelid) FROM t"
        );
        let counted = "SELECT (SELECT count(*) FROM c WHERE c.oid = t.x) FROM t";
        assert_eq!(rewritten(counted), counted);
    }
}
