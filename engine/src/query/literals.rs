//! Integer constants typed as PostgreSQL types them: `integer` when they
//! fit 32 bits (DataFusion makes every one `bigint`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, Query, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};

/// PostgreSQL types an integer constant that fits 32 bits as `integer`;
/// DataFusion as `bigint`. Drivers see the select list's types, so there
/// (outside casts, function arguments, whose implementations may want 64
/// bits, and subqueries, which are select lists of their own) such constants
/// become `integer`: `2 AS "PROCEDURE_TYPE"`, `CASE ... THEN 2002`,
/// `current_setting(...)::int / 100`, `pg_typeof(1)`.
struct SelectListIntegers;

/// Types `statement`'s select-list integer constants as PostgreSQL does.
pub fn select_list_integers(statement: &mut Statement) {
    let _ = statement.visit(&mut SelectListIntegers);
}

impl VisitorMut for SelectListIntegers {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        for_each_select(query.body.as_mut(), &mut |select| {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    let _ = e.visit(&mut TopLevelIntegers { nested: 0 });
                }
            }
        });
        ControlFlow::Continue(())
    }
}

struct TopLevelIntegers {
    /// How many function calls or subqueries the visit is inside.
    nested: usize,
}

impl TopLevelIntegers {
    fn nests(expr: &Expr) -> bool {
        match expr {
            Expr::Function(f) => !f.name.to_string().eq_ignore_ascii_case("pg_typeof"),
            // A cast gives the type itself.
            Expr::Cast { .. } => true,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => true,
            _ => false,
        }
    }
}

impl VisitorMut for TopLevelIntegers {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.nested += usize::from(Self::nests(expr));
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if Self::nests(expr) {
            self.nested -= 1;
        } else if self.nested == 0 {
            let small = match &*expr {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => n.parse::<i32>().ok(),
                    _ => None,
                },
                _ => None,
            };
            if small.is_some() {
                let literal = std::mem::replace(expr, Expr::value(Value::Null));
                *expr = Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(literal),
                    data_type: DataType::Int(None),
                    format: None,
                    array: false,
                };
            }
        }
        ControlFlow::Continue(())
    }
}

/// Calls `f` on each SELECT of a body, through UNION/INTERSECT/EXCEPT (a
/// recursive CTE is one: pgx's type query).
pub fn for_each_select(
    body: &mut SetExpr,
    f: &mut impl FnMut(&mut datafusion::sql::sqlparser::ast::Select),
) {
    match body {
        SetExpr::Select(select) => f(select),
        SetExpr::SetOperation { left, right, .. } => {
            for_each_select(left, f);
            for_each_select(right, f);
        }
        _ => {}
    }
}
