//! The PostgreSQL types of a catalog statement's result columns, where
//! DataFusion's expressions drop the declared type its catalog columns
//! carry (`pg.type` metadata): `CASE ... THEN amname ELSE NULL END` is
//! still `name`, `array_agg(relname)` is `name[]`, `min(oid)` is `oid`, a
//! scalar subquery is its column's type. Drivers show these types (pgjdbc's
//! ResultSetMetaData, Npgsql's and pgx's type handling).

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{Expr, ExprSchemable, JoinType, LogicalPlan};

use crate::codec::PG_TYPE_KEY;
use crate::pg::oid;

/// Per output column of `plan`, the PostgreSQL type oid it has where
/// that is known (arrays by their array type's oid).
pub fn result_types(plan: &LogicalPlan) -> Vec<Option<u32>> {
    types(plan).into_iter().map(Type::oid).collect()
}

/// What is known of a column's PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    /// A declared catalog type.
    Declared(u32),
    /// A NULL or quoted literal, which in PostgreSQL takes the type of the
    /// other branches of a CASE, COALESCE or UNION (`CASE WHEN ... THEN
    /// 'a' ELSE typtype END` is "char").
    Untyped,
    /// What its Arrow type says.
    Arrow,
}

impl Type {
    fn oid(self) -> Option<u32> {
        match self {
            Type::Declared(oid) => Some(oid),
            _ => None,
        }
    }
}

fn types(plan: &LogicalPlan) -> Vec<Type> {
    let declared = || declared(plan.schema().as_arrow());
    let inferred = match plan {
        LogicalPlan::Projection(p) => {
            let input = types(&p.input);
            p.expr
                .iter()
                .map(|e| of_expr(e, &p.input, &input))
                .collect()
        }
        LogicalPlan::Aggregate(a) => {
            let input = types(&a.input);
            a.group_expr
                .iter()
                .chain(&a.aggr_expr)
                .map(|e| of_expr(e, &a.input, &input))
                .collect()
        }
        LogicalPlan::Filter(f) => types(&f.input),
        LogicalPlan::Sort(s) => types(&s.input),
        LogicalPlan::Limit(l) => types(&l.input),
        LogicalPlan::SubqueryAlias(s) => types(&s.input),
        LogicalPlan::Repartition(r) => types(&r.input),
        LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => types(input),
        LogicalPlan::RecursiveQuery(r) => types(&r.static_term),
        LogicalPlan::Union(u) => {
            let inputs: Vec<_> = u.inputs.iter().map(|i| types(i)).collect();
            (0..plan.schema().fields().len())
                .map(|i| {
                    common(
                        inputs
                            .iter()
                            .map(|t| t.get(i).copied().unwrap_or(Type::Arrow)),
                    )
                })
                .collect()
        }
        LogicalPlan::Join(j) => {
            let (left, right) = (types(&j.left), types(&j.right));
            match j.join_type {
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                    left.into_iter().chain(right).collect()
                }
                JoinType::LeftSemi | JoinType::LeftAnti => left,
                JoinType::RightSemi | JoinType::RightAnti => right,
                _ => declared(),
            }
        }
        _ => declared(),
    };
    if inferred.len() == plan.schema().fields().len() {
        inferred
    } else {
        declared()
    }
}

/// The types the fields declare.
fn declared(schema: &Schema) -> Vec<Type> {
    schema.fields().iter().map(|f| of_field(f)).collect()
}

fn of_field(field: &Field) -> Type {
    declared_oid(field).map_or(Type::Arrow, Type::Declared)
}

fn declared_oid(field: &Field) -> Option<u32> {
    if let Some(oid) = field.metadata().get(PG_TYPE_KEY) {
        return oid.parse().ok();
    }
    match field.data_type() {
        DataType::List(element) => declared_oid(element).and_then(array_of),
        _ => None,
    }
}

/// The type of `e`, an expression over `input` whose columns have `types`.
fn of_expr(e: &Expr, input: &LogicalPlan, types: &[Type]) -> Type {
    use datafusion::scalar::ScalarValue;
    let of = |e: &Expr| of_expr(e, input, types);
    match e {
        Expr::Alias(a) => of(&a.expr),
        Expr::Literal(v, _)
            if v.is_null()
                || matches!(
                    v,
                    ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_)
                ) =>
        {
            Type::Untyped
        }
        Expr::Column(c) => input
            .schema()
            .index_of_column(c)
            .ok()
            .and_then(|i| types.get(i).copied())
            .unwrap_or(Type::Arrow),
        Expr::Case(case) => common(
            case.when_then_expr
                .iter()
                .map(|(_, then)| of(then))
                .chain(case.else_expr.as_deref().map(of)),
        ),
        Expr::ScalarSubquery(s) => self::types(&s.subquery)
            .first()
            .copied()
            .unwrap_or(Type::Arrow),
        // A cast's type is its target's (DataFusion keeps the operand's
        // metadata on it).
        Expr::Cast(_) | Expr::TryCast(_) => Type::Arrow,
        Expr::ScalarFunction(f) => match f.name() {
            "coalesce" => common(f.args.iter().map(of)),
            "nullif" => f.args.first().map_or(Type::Arrow, of),
            _ => from_field(e, input),
        },
        Expr::AggregateFunction(a) => {
            let argument = a.params.args.first().map_or(Type::Arrow, of);
            match a.func.name() {
                "min" | "max" | "first_value" | "last_value" => argument,
                "array_agg" => argument
                    .oid()
                    .and_then(array_of)
                    .map_or(Type::Arrow, Type::Declared),
                _ => from_field(e, input),
            }
        }
        _ => from_field(e, input),
    }
}

/// The type an expression's own result field declares (functions that
/// return json or name say so).
fn from_field(e: &Expr, input: &LogicalPlan) -> Type {
    e.to_field(input.schema())
        .map_or(Type::Arrow, |(_, field)| of_field(&field))
}

/// The type of branches taken together, as PostgreSQL resolves them: the
/// typed ones' if they agree (untyped literals follow them).
fn common(branches: impl Iterator<Item = Type>) -> Type {
    let mut result = Type::Untyped;
    for branch in branches {
        result = match (result, branch) {
            (r, Type::Untyped) => r,
            (Type::Untyped, b) => b,
            (r, b) if r == b => r,
            _ => return Type::Arrow,
        };
    }
    result
}

/// The array type of an element type, for the types catalog columns
/// declare.
fn array_of(element: u32) -> Option<u32> {
    ELEMENTS
        .iter()
        .find(|(_, e)| *e == element)
        .map(|(array, _)| *array)
}

/// The element type of an array type.
fn element_of(array: u32) -> Option<u32> {
    ELEMENTS
        .iter()
        .find(|(a, _)| *a == array)
        .map(|(_, element)| *element)
}

/// (array, element) for the declared catalog types.
const ELEMENTS: &[(u32, u32)] = &[
    (1003, oid::NAME),
    (1028, oid::OID),
    (1002, oid::CHAR),
    (1015, oid::VARCHAR),
    (199, oid::JSON),
    (1008, oid::REGPROC),
    (2211, oid::REGTYPE),
    (1011, oid::XID),
];

/// `field` declaring `oid` (an array's on its element field).
pub fn declaring(field: Field, oid: u32) -> Field {
    let declare = |field: Field, oid: u32| {
        let mut metadata = field.metadata().clone();
        metadata.insert(PG_TYPE_KEY.to_string(), oid.to_string());
        field.with_metadata(metadata)
    };
    match (field.data_type().clone(), element_of(oid)) {
        (DataType::List(element), Some(element_oid)) => {
            let element = declare(element.as_ref().clone(), element_oid);
            field.with_data_type(DataType::List(std::sync::Arc::new(element)))
        }
        (DataType::List(_), None) => field,
        _ => declare(field, oid),
    }
}
