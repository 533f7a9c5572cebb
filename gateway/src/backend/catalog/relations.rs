//! The engine's relations as DataFusion tables in the catalog session's
//! `public` schema: enough for pg_class/pg_attribute and information_schema
//! to describe them. Their rows are never read here; statements that name
//! them are routed to an engine node.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use velo_proto::v1::{Column, LogicalType, Relation, RelationKind};

/// A relation's shape without its rows.
#[derive(Debug)]
pub struct RelationShape {
    schema: SchemaRef,
    kind: RelationKind,
}

#[async_trait]
impl TableProvider for RelationShape {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        match self.kind {
            RelationKind::View => TableType::View,
            // Streams list as tables so every tool shows them.
            _ => TableType::Base,
        }
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        Ok(Arc::new(EmptyExec::new(schema)))
    }
}

/// What the catalog knows of the engine's relations at one catalog version.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub version: u64,
    /// (schema, relation, column) → the PostgreSQL type oid and modifier
    /// query results carry for it.
    pub columns: HashMap<(String, String, String), (u32, i32)>,
    /// Views: (schema, name, defining SQL).
    pub views: Vec<(String, String, String)>,
}

/// Builds one schema provider per namespace from ListRelations.
pub fn build(relations: &[Relation]) -> (HashMap<String, Arc<dyn SchemaProvider>>, Snapshot) {
    let mut schemas: HashMap<String, Arc<dyn SchemaProvider>> = HashMap::new();
    let mut snapshot = Snapshot::default();
    schemas.insert("public".into(), Arc::new(MemorySchemaProvider::new()));
    for r in relations {
        let namespace = if r.schema.is_empty() {
            "public".to_string()
        } else {
            r.schema.clone()
        };
        // PostgreSQL never marks a view's columns NOT NULL.
        let is_view = r.kind() == RelationKind::View;
        let fields: Vec<Field> = r
            .columns
            .iter()
            .map(|c| field(c).with_nullable(c.nullable || is_view))
            .collect();
        for f in &fields {
            let (oid, _, typmod) = crate::codec::pg_type(f);
            snapshot.columns.insert(
                (namespace.clone(), r.name.clone(), f.name().clone()),
                (oid, typmod),
            );
        }
        if is_view {
            snapshot
                .views
                .push((namespace.clone(), r.name.clone(), r.source.clone()));
        }
        let table = Arc::new(RelationShape {
            schema: Arc::new(Schema::new(fields)),
            kind: r.kind(),
        });
        let provider = schemas
            .entry(namespace)
            .or_insert_with(|| Arc::new(MemorySchemaProvider::new()));
        if let Err(e) = provider.register_table(r.name.clone(), table) {
            tracing::warn!(relation = %r.name, error = %e, "relation not added to the catalog");
        }
    }
    (schemas, snapshot)
}

fn field(c: &Column) -> Field {
    Field::new(&c.name, arrow_type(c), c.nullable)
}

/// The Arrow type the engine sends for a column of this kind (so the
/// catalog describes columns exactly as query results type them).
fn arrow_type(c: &Column) -> DataType {
    logical(c.logical_type(), c.precision, c.scale, c.element_type())
}

fn logical(t: LogicalType, precision: i32, scale: i32, element: LogicalType) -> DataType {
    match t {
        LogicalType::Boolean => DataType::Boolean,
        LogicalType::Int16 => DataType::Int16,
        LogicalType::Int32 => DataType::Int32,
        LogicalType::Int64 => DataType::Int64,
        LogicalType::Float32 => DataType::Float32,
        LogicalType::Float64 => DataType::Float64,
        LogicalType::Binary => DataType::Binary,
        LogicalType::Date => DataType::Date32,
        LogicalType::Time => DataType::Time64(TimeUnit::Microsecond),
        LogicalType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        LogicalType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        LogicalType::Decimal | LogicalType::ScaledInteger => DataType::Decimal128(
            precision.clamp(1, 38) as u8,
            scale.clamp(0, precision.clamp(1, 38)) as i8,
        ),
        LogicalType::Interval => {
            DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
        }
        LogicalType::Array => DataType::List(Arc::new(Field::new(
            "item",
            logical(element, 38, 10, LogicalType::Unspecified),
            true,
        ))),
        LogicalType::Json => DataType::Struct(Default::default()),
        _ => DataType::Utf8,
    }
}
