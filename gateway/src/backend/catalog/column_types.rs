//! Catalog columns typed as PostgreSQL types them. The library keeps names
//! as text and oids as int4; PostgreSQL says `name`, `oid`, `"char"`,
//! `varchar`. Drivers act on the difference: Npgsql reads oids as unsigned
//! integers, pgjdbc reports the type name in ResultSetMetaData, and tools
//! compare what they get with what PostgreSQL gives. The declared type
//! travels as field metadata, which DataFusion keeps on plain column
//! references, so a projection of `relname` stays `name` while an
//! expression over it is `text`, as in PostgreSQL.
//!
//! Every relation also takes PostgreSQL 15's columns (`pg15_relations`):
//! the library follows a later release, and `SELECT n.*` should list what
//! a PostgreSQL 15 server lists. A PostgreSQL 15 relation the library does
//! not have is there with its columns and no rows.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, IntervalUnit, Schema, SchemaRef, TimeUnit,
};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::oid_field::OID_ALIAS_KEY;

use super::pg15_relations;
use super::pg_catalog::{in_memory, read_all};
use crate::codec::PG_TYPE_KEY;
use crate::pg::oid;

/// PostgreSQL 15 columns the library has under a later release's name.
const RENAMED: &[(&str, &str, &str)] = &[("pg_collation", "colliculocale", "colllocale")];

/// The type a column of PostgreSQL type `pg_type` declares, where the
/// Arrow type alone would say another (text for name, int4 for oid).
/// Arrays keep their element type: the binary array header names it, and
/// ours are text and int4.
fn declared(pg_type: &str) -> Option<u32> {
    Some(match pg_type {
        "name" => oid::NAME,
        "oid" => oid::OID,
        "character_varying" => oid::VARCHAR,
        "\"char\"" => oid::CHAR,
        "regproc" => oid::REGPROC,
        "regtype" => oid::REGTYPE,
        "xid" => oid::XID,
        "numeric" => oid::NUMERIC,
        "pg_node_tree" => oid::PG_NODE_TREE,
        _ => return None,
    })
}

/// The Arrow type of a column of PostgreSQL type `pg_type` that the
/// library does not have (always NULL).
fn arrow_type(pg_type: &str) -> DataType {
    if let Some(element) = pg_type.strip_suffix("[]") {
        return DataType::List(Arc::new(Field::new("item", arrow_type(element), true)));
    }
    match pg_type {
        "oid" | "integer" | "regproc" | "regtype" | "xid" => DataType::Int32,
        "smallint" => DataType::Int16,
        "bigint" => DataType::Int64,
        "boolean" => DataType::Boolean,
        "real" => DataType::Float32,
        "double_precision" => DataType::Float64,
        "bytea" => DataType::Binary,
        "interval" => DataType::Interval(IntervalUnit::MonthDayNano),
        "timestamp_with_time_zone" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        _ => DataType::Utf8,
    }
}

/// A schema whose relations' columns carry PostgreSQL's types.
#[derive(Debug)]
pub struct TypedSchema {
    pub name: &'static str,
    pub inner: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for TypedSchema {
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        Ok(match pg15_relations::columns(self.name, name) {
            Some(_) => Some(Arc::new(Typed::new(table, self.name, name))),
            None => table,
        })
    }

    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for (schema, name, _) in pg15_relations::RELATIONS {
            if *schema == self.name && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    /// Only what is registered: the catalog's own views are created over
    /// the names PostgreSQL 15 has (`table` answers for those too).
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A relation shaped as PostgreSQL 15's: its columns in PostgreSQL's
/// order and types, columns the library lacks as NULL, those it has beyond
/// them left out.
#[derive(Debug)]
struct Typed {
    inner: Option<Arc<dyn TableProvider>>,
    schema: SchemaRef,
    /// Per output column, the inner column it is (`None`: NULL).
    sources: Vec<Option<usize>>,
}

impl Typed {
    fn new(inner: Option<Arc<dyn TableProvider>>, schema: &str, relation: &str) -> Self {
        let inner_schema = inner
            .as_ref()
            .map_or_else(|| Arc::new(Schema::empty()), |t| t.schema());
        let mut fields: Vec<FieldRef> = Vec::new();
        let mut sources = Vec::new();
        for (name, pg_type) in pg15_relations::columns(schema, relation)
            .into_iter()
            .flatten()
        {
            let library_name = RENAMED
                .iter()
                .find(|(r, n, _)| *r == relation && *n == name)
                .map_or(name, |(_, _, library)| library);
            let source = inner_schema.index_of(library_name).ok();
            let field = match source {
                Some(i) => inner_schema.field(i).clone().with_name(name),
                None => Field::new(name, arrow_type(pg_type), true),
            };
            let mut metadata = field.metadata().clone();
            if let Some(oid) = declared(pg_type) {
                metadata.insert(PG_TYPE_KEY.to_string(), oid.to_string());
            }
            if pg_type == "oid" && source.is_none() {
                metadata.insert(OID_ALIAS_KEY.to_string(), "oid".to_string());
            }
            fields.push(Arc::new(field.with_metadata(metadata)));
            sources.push(source);
        }
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            inner_schema.metadata().clone(),
        ));
        Self {
            inner,
            schema,
            sources,
        }
    }
}

#[async_trait]
impl TableProvider for Typed {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        self.inner
            .as_ref()
            .map_or(TableType::View, |t| t.table_type())
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = match &self.inner {
            Some(inner) => read_all(inner, state).await?,
            None => Vec::new(),
        };
        let options = |rows| RecordBatchOptions::new().with_row_count(Some(rows));
        let batches = batches
            .into_iter()
            .map(|b| {
                let columns = self
                    .sources
                    .iter()
                    .zip(self.schema.fields())
                    .map(|(source, field)| match source {
                        Some(i) => b.column(*i).clone(),
                        None => new_null_array(field.data_type(), b.num_rows()),
                    })
                    .collect();
                RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    columns,
                    &options(b.num_rows()),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        in_memory(batches, self.schema.clone(), projection)
    }
}
