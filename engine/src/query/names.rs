//! Result column names as PostgreSQL gives them. DataFusion names an
//! unaliased expression after its whole text (`current_setting(Utf8("x"))`);
//! PostgreSQL after the function, the column or `?column?`, and tools that
//! read rows by name (`row["current_setting"]`) depend on it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    AccessExpr, DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// One projection item's output column(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// Named by PostgreSQL's rules.
    Named(String),
    /// Aliased: DataFusion already has the name.
    Aliased,
    /// `*` or `t.*`: however many columns it expands to, names kept.
    Wildcard,
}

/// PostgreSQL's names for the output columns of `sql` (see `output_names`);
/// `None` when it is not one query or does not parse.
pub fn postgres_names(sql: &str) -> Option<Vec<Column>> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    match statements.as_slice() {
        [statement] => output_names(statement),
        _ => None,
    }
}

/// `schema` with its fields renamed to `names` (when they line up, a
/// single wildcard standing for the columns left over; Arrow allows the
/// duplicate names PostgreSQL does).
pub fn renamed(schema: &Schema, names: Option<&[Column]>) -> SchemaRef {
    let fields = schema.fields().len();
    let flat: Option<Vec<Option<&str>>> = names.and_then(|names| {
        let wildcards = names.iter().filter(|c| **c == Column::Wildcard).count();
        let expansion = match wildcards {
            0 if names.len() == fields => 0,
            1 => fields.checked_sub(names.len() - 1)?,
            _ => return None,
        };
        Some(
            names
                .iter()
                .flat_map(|c| match c {
                    Column::Named(n) => vec![Some(n.as_str())],
                    Column::Aliased => vec![None],
                    Column::Wildcard => vec![None; expansion],
                })
                .collect(),
        )
    });
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match flat.as_ref().and_then(|n| n[i]) {
                Some(name) if name != f.name() => Arc::new(f.as_ref().clone().with_name(name)),
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// What PostgreSQL names each projection item of a query's (first)
/// SELECT.
pub fn output_names(statement: &Statement) -> Option<Vec<Column>> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let select = first_select(query)?;
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => {
                Some(Column::Named(expr_name(e).unwrap_or("?column?".into())))
            }
            SelectItem::ExprWithAlias { .. } => Some(Column::Aliased),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Some(Column::Wildcard),
            // Several aliases: several columns, count unknown here.
            _ => None,
        })
        .collect()
}

fn first_select(query: &Query) -> Option<&datafusion::sql::sqlparser::ast::Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(q) => body = q.body.as_ref(),
            _ => return None,
        }
    }
}

/// An identifier as PostgreSQL folds it: unquoted ones in lower case.
pub(super) fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// PostgreSQL's FigureColname: `None` where it would say `?column?`.
fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(AccessExpr::Dot(field)) => expr_name(field),
            _ => expr_name(root),
        },
        Expr::Function(f) => f.name.0.last()?.as_ident().map(ident),
        Expr::Cast {
            expr, data_type, ..
        } => expr_name(expr).or_else(|| Some(type_name(data_type))),
        Expr::Collate { expr, .. } | Expr::Nested(expr) => expr_name(expr),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Subquery(q) => {
            let select = first_select(q)?;
            match select.projection.first()? {
                SelectItem::UnnamedExpr(e) => expr_name(e),
                SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
                _ => None,
            }
        }
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Overlay { .. } => Some("overlay".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::TypedString(t) => Some(type_name(&t.data_type)),
        _ => None,
    }
}

/// The catalog name of a cast's target type, as PostgreSQL labels
/// `SELECT 1::int` (`int4`).
fn type_name(t: &DataType) -> String {
    let text = t.to_string().to_ascii_lowercase();
    let base = text.split('(').next().unwrap_or(&text).trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "boolean" | "bool" => "bool",
        "real" | "float4" => "float4",
        "double precision" | "float8" | "double" => "float8",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" | "numeric" => "numeric",
        other => other.rsplit('.').next().unwrap_or(other),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType as Arrow, Field};

    fn named(sql: &str) -> Vec<String> {
        let names = postgres_names(sql).expect("parses");
        names
            .into_iter()
            .map(|c| match c {
                Column::Named(n) => n,
                Column::Aliased => "(alias)".into(),
                Column::Wildcard => "*".into(),
            })
            .collect()
    }

    #[test]
    fn named_as_postgresql_names_them() {
        assert_eq!(
            named("SELECT current_setting('x'), pg_catalog.format_type(1, 2), c.relname, s[1], 1, 'x'::regclass, 1::int, CASE WHEN true THEN 1 END, (SELECT oid FROM pg_class), trim(' x ') FROM pg_class c"),
            ["current_setting", "format_type", "relname", "s", "?column?", "regclass", "int4", "case", "oid", "btrim"]
        );
        assert_eq!(
            named("SELECT count(*) AS n, count(*), c.* FROM t c"),
            ["(alias)", "count", "*"]
        );
        assert_eq!(postgres_names("SHOW ALL"), None);
    }

    #[test]
    fn a_wildcard_stands_for_the_columns_left_over() {
        let schema = Schema::new(
            ["__alias_oid", "oid", "relname", "count(*)"]
                .map(|n| Field::new(n, Arrow::Int32, true))
                .to_vec(),
        );
        let names = postgres_names("SELECT c.oid, c.*, count(*) FROM pg_class c");
        let result = renamed(&schema, names.as_deref());
        let got: Vec<&str> = result.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(got, ["oid", "oid", "relname", "count"]);
        // Two wildcards: nothing to go by.
        let names = postgres_names("SELECT count(*), a.*, b.* FROM a, b");
        assert_eq!(renamed(&schema, names.as_deref()).fields(), schema.fields());
    }
}
