//! `avg` of exact numbers as PostgreSQL answers it. PostgreSQL's avg of a
//! numeric or integer column is a numeric whose scale follows each value
//! (`select_div_scale`: at least 16 significant digits, never fewer
//! decimals than the input), so `avg(price)` prints `184.234146341463`
//! for one group and `99.5000000000000000` for another. An Arrow decimal
//! column has one scale for every row, so DataFusion keeps the input's
//! scale plus 4. A top-level `avg(x)` in the select list therefore becomes
//! `pg_avg_quotient(sum(x), count(x))`, which divides as PostgreSQL does
//! and hands the gateway each value's digits as text, declared `numeric`.
//! Elsewhere (`round(avg(x), 2)`, HAVING, views) avg stays a decimal that
//! arithmetic can use.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{i256, DataType, Decimal128Type, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, OrderByKind,
    SelectItem, SetExpr, Statement, Value,
};
use velo_proto::PG_TYPE_KEY;

use super::names::ident;

const NUMERIC_OID: u32 = 1700;
const QUOTIENT: &str = "pg_avg_quotient";

/// Rewrites the outermost SELECT's bare `avg(x)` items (see the module
/// docs); ORDER BY items naming them by position or alias keep ordering
/// by the number, not its text.
pub fn exact_averages(statement: &mut Statement) {
    let Statement::Query(query) = statement else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    // DISTINCT would compare the texts; equal numbers may differ in scale.
    if select.distinct.is_some() {
        return;
    }
    let mut rewritten: Vec<(usize, Option<Ident>, Expr)> = Vec::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => continue,
        };
        if let Some(quotient) = quotient_of(expr) {
            rewritten.push((i + 1, alias, std::mem::replace(expr, quotient)));
        }
    }
    let Some(order_by) = query.order_by.as_mut() else {
        return;
    };
    let OrderByKind::Expressions(items) = &mut order_by.kind else {
        return;
    };
    for item in items {
        let original = rewritten
            .iter()
            .find(|(position, alias, _)| match &item.expr {
                Expr::Value(v) => {
                    matches!(&v.value, Value::Number(n, _) if n.parse() == Ok(*position))
                }
                Expr::Identifier(name) => alias.as_ref().is_some_and(|a| ident(a) == ident(name)),
                _ => false,
            });
        if let Some((_, _, avg)) = original {
            item.expr = avg.clone();
        }
    }
}

/// `pg_avg_quotient(sum(x), count(x))` for a plain `avg(x)` (DISTINCT and
/// FILTER carry over to both), `None` for anything else.
fn quotient_of(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let plain = f.name.0.len() == 1
        && f.name.to_string().eq_ignore_ascii_case("avg")
        && f.over.is_none()
        && f.within_group.is_empty()
        && matches!(&f.args, FunctionArguments::List(list)
            if matches!(list.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Expr(_))]));
    if !plain {
        return None;
    }
    let renamed = |name: &str| {
        let mut call = f.clone();
        call.name = ObjectName::from(vec![Ident::new(name)]);
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(call)))
    };
    let mut quotient = f.clone();
    quotient.name = ObjectName::from(vec![Ident::new(QUOTIENT)]);
    quotient.filter = None;
    let FunctionArguments::List(list) = &mut quotient.args else {
        return None;
    };
    list.duplicate_treatment = None;
    list.args = vec![renamed("sum"), renamed("count")];
    Some(Expr::Function(quotient))
}

/// The function the rewrite calls.
pub fn avg_quotient() -> ScalarUDF {
    ScalarUDF::new_from_impl(AvgQuotient {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AvgQuotient {
    signature: Signature,
}

impl ScalarUDFImpl for AvgQuotient {
    fn name(&self) -> &str {
        QUOTIENT
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match args.first() {
            Some(DataType::Float16 | DataType::Float32 | DataType::Float64) => DataType::Float64,
            _ => DataType::Utf8,
        })
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let sum = args.arg_fields[0].data_type();
        let field = Field::new(QUOTIENT, self.return_type(std::slice::from_ref(sum))?, true);
        Ok(Arc::new(match sum {
            DataType::Float16 | DataType::Float32 | DataType::Float64 => field,
            t if t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Null) => field
                .with_metadata(HashMap::from([(
                    PG_TYPE_KEY.to_string(),
                    NUMERIC_OID.to_string(),
                )])),
            other => return plan_err!("avg of {other} is not supported"),
        }))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let counts = cast(&arrays[1], &DataType::Int64)?;
        let counts = counts.as_primitive::<Int64Type>();
        let sums = &arrays[0];
        if matches!(
            sums.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64
        ) {
            let sums = cast(sums, &DataType::Float64)?;
            let quotients: Float64Array = sums
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .iter()
                .zip(counts.iter())
                .map(|(s, n)| Some(s? / n.filter(|n| *n > 0)? as f64))
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(quotients)));
        }
        let (sums, scale) = match sums.data_type() {
            DataType::Decimal128(_, s) => (sums.clone(), *s),
            _ => (cast(sums, &DataType::Decimal128(38, 0))?, 0),
        };
        let sums = sums.as_primitive::<Decimal128Type>();
        let mut out = StringBuilder::with_capacity(sums.len(), sums.len() * 20);
        for (sum, count) in sums.iter().zip(counts.iter()) {
            match (sum, count) {
                (Some(sum), Some(count)) if count > 0 => match quotient(sum, scale, count) {
                    Some(text) => out.append_value(text),
                    None => return exec_err!("numeric average out of range"),
                },
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// PostgreSQL's numeric `sum / count` as avg computes it: the scale
/// `select_div_scale` picks from the operands' leading base-10000 digits,
/// rounded half away from zero. `None` past 76 digits.
fn quotient(sum: i128, scale: i8, count: i64) -> Option<String> {
    let ten = i256::from_i128(10);
    // A negative scale counts trailing zeros of an integer.
    let (magnitude, scale) = match u32::try_from(scale) {
        Ok(s) => (i256::from_i128(sum.unsigned_abs() as i128), s),
        Err(_) => (
            i256::from_i128(sum.unsigned_abs() as i128)
                .checked_mul(ten.checked_pow(scale.unsigned_abs() as u32)?)?,
            0,
        ),
    };
    let count = i256::from_i128(count as i128);
    let (weight1, first1) = leading_digit(magnitude, scale)?;
    let (weight2, first2) = leading_digit(count, 0)?;
    let mut qweight = weight1 - weight2;
    if first1 <= first2 {
        qweight -= 1;
    }
    let rscale = (16 - qweight * 4).max(scale as i32).clamp(0, 1000) as u32;
    let numerator = magnitude.checked_mul(ten.checked_pow(rscale - scale)?)?;
    let (mut q, r) = (numerator.checked_div(count)?, numerator.checked_rem(count)?);
    if r.checked_mul(i256::from_i128(2))? >= count {
        q = q.checked_add(i256::from_i128(1))?;
    }
    let digits = q.to_string();
    let digits = format!("{digits:0>width$}", width = rscale as usize + 1);
    let (whole, fraction) = digits.split_at(digits.len() - rscale as usize);
    let sign = if sum < 0 && q != i256::ZERO { "-" } else { "" };
    Some(match fraction {
        "" => format!("{sign}{whole}"),
        _ => format!("{sign}{whole}.{fraction}"),
    })
}

/// The weight and value of the first non-zero base-10000 digit of
/// `magnitude / 10^scale`, digits aligned on the decimal point as
/// PostgreSQL stores them; (0, 0) for zero.
fn leading_digit(magnitude: i256, scale: u32) -> Option<(i32, i256)> {
    if magnitude == i256::ZERO {
        return Some((0, i256::ZERO));
    }
    let pad = (4 - scale % 4) % 4;
    let aligned = magnitude.checked_mul(i256::from_i128(10).checked_pow(pad)?)?;
    let base = i256::from_i128(10_000);
    let groups = aligned.checked_ilog(base)?;
    let first = aligned.checked_div(base.checked_pow(groups)?)?;
    Some((groups as i32 - ((scale + pad) / 4) as i32, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        exact_averages(&mut s);
        s.to_string()
    }

    #[test]
    fn quotients_have_postgresqls_scale() {
        // Each expected value is what PostgreSQL 15 prints for
        // sum::numeric / count, the division avg ends with.
        let cases: &[(i128, i8, i64, &str)] = &[
            (15, 1, 1, "1.50000000000000000000"),
            (3, 0, 2, "1.5000000000000000"),
            (9999, 0, 2, "4999.5000000000000000"),
            (19998, 0, 4, "4999.5000000000000000"),
            (7553400, 2, 410, "184.2292682926829268"),
            (2000000, 0, 2, "1000000.000000000000"),
            (200000000, 0, 2, "100000000.000000000000"),
            (1, 0, 3, "0.33333333333333333333"),
            (-2, 0, 3, "-0.66666666666666666667"),
            (0, 2, 5, "0.00000000000000000000"),
            (
                1,
                38,
                1,
                "0.00000000000000000000000000000000000001000000000000000000",
            ),
            (12345, 2, 1, "123.4500000000000000"),
            (-1, 2, 3, "-0.00333333333333333333"),
        ];
        for &(sum, scale, count, expected) in cases {
            assert_eq!(
                quotient(sum, scale, count).unwrap(),
                expected,
                "{sum}e-{scale}/{count}"
            );
        }
    }

    #[test]
    fn top_level_averages_become_quotients_and_keep_their_order() {
        assert_eq!(
            rewritten("SELECT s, avg(p) AS a, round(avg(p), 2) FROM t GROUP BY s ORDER BY a, 2"),
            "SELECT s, pg_avg_quotient(sum(p), count(p)) AS a, round(avg(p), 2) FROM t \
             GROUP BY s ORDER BY avg(p), avg(p)"
        );
        assert_eq!(
            rewritten("SELECT avg(DISTINCT p) FILTER (WHERE p > 0) FROM t ORDER BY 1"),
            "SELECT pg_avg_quotient(sum(DISTINCT p) FILTER (WHERE p > 0), \
             count(DISTINCT p) FILTER (WHERE p > 0)) FROM t ORDER BY avg(DISTINCT p) FILTER (WHERE p > 0)"
        );
        for untouched in [
            "SELECT DISTINCT avg(p) FROM t",
            "SELECT avg(p) FROM t UNION SELECT avg(q) FROM u",
            "SELECT avg(p) OVER (PARTITION BY s) FROM t",
            "SELECT x FROM (SELECT avg(p) AS x FROM t) AS a",
        ] {
            assert_eq!(rewritten(untouched), untouched);
        }
    }
}
