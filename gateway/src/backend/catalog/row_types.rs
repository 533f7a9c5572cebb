//! Every relation's row type, as PostgreSQL creates one with each table and
//! view: a composite type named after the relation and its array type
//! (`trades`, `_trades`), with `pg_class.reltype` pointing at it. Drivers
//! look them up: pgjdbc's type cache by name, pgx's `LoadType`, Npgsql's
//! composite loading, SQLAlchemy's `has_type`.
//!
//! The library has them for its own relations only. An engine relation's
//! array type takes the oid after the relation's and its row type the one
//! after that, as a table created in an empty PostgreSQL database gets
//! them, so they are as stable as the relation's own oid.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::pg_catalog::{column, in_memory, read_all, replaced};
use super::roles::OWNER;
use super::stable_oids::FIRST_USER_OID;

/// An engine relation: its oid, name and schema's oid.
struct Relation {
    oid: i32,
    name: String,
    namespace: i32,
}

impl Relation {
    fn array_type(&self) -> i32 {
        self.oid.saturating_add(1)
    }
    fn row_type(&self) -> i32 {
        row_type_of(self.oid)
    }
}

fn row_type_of(relation: i32) -> i32 {
    relation.saturating_add(2)
}

async fn engine_relations(
    class: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<Vec<Relation>> {
    let mut out = Vec::new();
    for b in read_all(class, state).await? {
        let (oid, name, namespace) = (
            column(&b, "oid")?.as_primitive::<Int32Type>(),
            column(&b, "relname")?.as_string::<i32>(),
            column(&b, "relnamespace")?.as_primitive::<Int32Type>(),
        );
        for i in 0..b.num_rows() {
            if oid.value(i) >= FIRST_USER_OID {
                out.push(Relation {
                    oid: oid.value(i),
                    name: name.value(i).to_string(),
                    namespace: namespace.value(i),
                });
            }
        }
    }
    Ok(out)
}

/// pg_type with the engine relations' row and array types.
#[derive(Debug)]
pub struct Types {
    pub types: Arc<dyn TableProvider>,
    pub class: Arc<dyn TableProvider>,
}

/// A pg_type column's value in a row type's or array type's row.
enum Value {
    Int(i64),
    Text(&'static str),
    Name(String),
    Bool(bool),
}

fn row_type_values(r: &Relation) -> [Vec<(&'static str, Value)>; 2] {
    use Value::*;
    let common = |oid: i32, name: String| {
        vec![
            ("oid", Int(oid.into())),
            ("typname", Name(name)),
            ("typnamespace", Int(r.namespace.into())),
            ("typowner", Int(OWNER.into())),
            ("typlen", Int(-1)),
            ("typbyval", Bool(false)),
            ("typispreferred", Bool(false)),
            ("typisdefined", Bool(true)),
            ("typdelim", Text(",")),
            ("typmodin", Text("-")),
            ("typmodout", Text("-")),
            ("typalign", Text("d")),
            ("typstorage", Text("x")),
            ("typnotnull", Bool(false)),
            ("typbasetype", Int(0)),
            ("typtypmod", Int(-1)),
            ("typndims", Int(0)),
            ("typcollation", Int(0)),
        ]
    };
    let mut row = common(r.row_type(), r.name.clone());
    row.extend([
        ("typtype", Text("c")),
        ("typcategory", Text("C")),
        ("typrelid", Int(r.oid.into())),
        ("typsubscript", Text("-")),
        ("typelem", Int(0)),
        ("typarray", Int(r.array_type().into())),
        ("typinput", Text("record_in")),
        ("typoutput", Text("record_out")),
        ("typreceive", Text("record_recv")),
        ("typsend", Text("record_send")),
        ("typanalyze", Text("-")),
    ]);
    let mut array = common(r.array_type(), format!("_{}", r.name));
    array.extend([
        ("typtype", Text("b")),
        ("typcategory", Text("A")),
        ("typrelid", Int(0)),
        ("typsubscript", Text("array_subscript_handler")),
        ("typelem", Int(r.row_type().into())),
        ("typarray", Int(0)),
        ("typinput", Text("array_in")),
        ("typoutput", Text("array_out")),
        ("typreceive", Text("array_recv")),
        ("typsend", Text("array_send")),
        ("typanalyze", Text("array_typanalyze")),
    ]);
    [row, array]
}

/// One row per entry of `rows` in `schema`'s shape; columns a row does not
/// name are NULL.
fn batch(schema: &SchemaRef, rows: &[Vec<(&'static str, Value)>]) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let values = rows.iter().map(|row| {
                let value = row.iter().find(|(n, _)| n == f.name()).map(|(_, v)| v);
                scalar(f.data_type(), value)
            });
            ScalarValue::iter_to_array(values.collect::<Result<Vec<_>>>()?)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn scalar(data_type: &DataType, value: Option<&Value>) -> Result<ScalarValue> {
    let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
    let typed = match value {
        None => return ScalarValue::try_from(data_type),
        Some(Value::Int(n)) => ScalarValue::Int64(Some(*n)),
        Some(Value::Text(s)) => text(s),
        Some(Value::Name(s)) => text(s),
        Some(Value::Bool(b)) => ScalarValue::Boolean(Some(*b)),
    };
    typed.cast_to(data_type)
}

#[async_trait]
impl TableProvider for Types {
    fn schema(&self) -> SchemaRef {
        self.types.schema()
    }
    fn table_type(&self) -> TableType {
        self.types.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut batches = read_all(&self.types, state).await?;
        let rows: Vec<_> = engine_relations(&self.class, state)
            .await?
            .iter()
            .flat_map(row_type_values)
            .collect();
        if !rows.is_empty() {
            batches.push(batch(&self.schema(), &rows)?);
        }
        in_memory(batches, self.schema(), projection)
    }
}

/// pg_class with the two references the library leaves 0: `reltype` (the
/// library's row types for its relations, the ones `Types` adds for the
/// engine's) and `relowner` (10, as every owner column here: see `roles`).
#[derive(Debug)]
pub struct Classes {
    pub class: Arc<dyn TableProvider>,
    pub types: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for Classes {
    fn schema(&self) -> SchemaRef {
        self.class.schema()
    }
    fn table_type(&self) -> TableType {
        self.class.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut row_types: HashMap<i32, i32> = HashMap::new();
        for b in read_all(&self.types, state).await? {
            let (oid, relid) = (
                column(&b, "oid")?.as_primitive::<Int32Type>(),
                column(&b, "typrelid")?.as_primitive::<Int32Type>(),
            );
            for i in 0..b.num_rows() {
                if relid.value(i) != 0 {
                    row_types.insert(relid.value(i), oid.value(i));
                }
            }
        }
        let batches = read_all(&self.class, state)
            .await?
            .into_iter()
            .map(|b| {
                let oid = column(&b, "oid")?.as_primitive::<Int32Type>();
                let reltype: Int32Array = (0..b.num_rows())
                    .map(|i| {
                        let relation = oid.value(i);
                        Some(match row_types.get(&relation) {
                            Some(t) => *t,
                            None if relation >= FIRST_USER_OID => row_type_of(relation),
                            None => 0,
                        })
                    })
                    .collect();
                let owner = Int32Array::from(vec![OWNER; b.num_rows()]);
                replaced(
                    &b,
                    vec![
                        ("reltype", Arc::new(reltype)),
                        ("relowner", Arc::new(owner)),
                    ],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        in_memory(batches, self.schema(), projection)
    }
}
