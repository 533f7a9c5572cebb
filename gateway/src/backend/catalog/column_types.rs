//! Catalog columns typed as PostgreSQL types them. The library keeps names
//! as text and oids as int4; PostgreSQL says `name`, `oid`, `"char"`,
//! `varchar`. Drivers act on the difference: Npgsql reads oids as unsigned
//! integers, pgjdbc reports the type name in ResultSetMetaData, and tools
//! compare what they get with what PostgreSQL gives. The declared type
//! travels as field metadata, which DataFusion keeps on plain column
//! references, so a projection of `relname` stays `name` while an
//! expression over it is `text`, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::pg15_columns::COLUMN_TYPES;
use super::pg_catalog::read_all;
use crate::codec::PG_TYPE_KEY;
use crate::pg::oid;

/// The declared column types of `schema`.`relation`, by column name.
fn declared(schema: &str, relation: &str) -> Option<HashMap<&'static str, u32>> {
    let (_, _, columns) = COLUMN_TYPES
        .iter()
        .find(|(s, r, _)| *s == schema && *r == relation)?;
    let types = columns
        .split(' ')
        .filter_map(|c| {
            let (name, code) = c.split_once(':')?;
            let oid = match code {
                "n" => oid::NAME,
                "o" => oid::OID,
                "v" => oid::VARCHAR,
                "c" => oid::CHAR,
                "p" => oid::REGPROC,
                "t" => oid::REGTYPE,
                "x" => oid::XID,
                // Arrays keep their element type: the binary array header
                // names it, and ours are text and int4.
                _ => return None,
            };
            Some((name, oid))
        })
        .collect();
    Some(types)
}

/// A schema whose relations' columns carry PostgreSQL's types.
#[derive(Debug)]
pub struct TypedSchema {
    pub name: &'static str,
    pub inner: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for TypedSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        Ok(Some(match declared(self.name, name) {
            Some(types) => Arc::new(Typed::new(table, &types)),
            None => table,
        }))
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

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A relation with declared types on its columns.
#[derive(Debug)]
struct Typed {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

impl Typed {
    fn new(inner: Arc<dyn TableProvider>, types: &HashMap<&str, u32>) -> Self {
        let fields: Vec<_> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| match types.get(f.name().as_str()) {
                Some(oid) => {
                    let mut metadata = f.metadata().clone();
                    metadata.insert(PG_TYPE_KEY.to_string(), oid.to_string());
                    Arc::new(f.as_ref().clone().with_metadata(metadata))
                }
                None => f.clone(),
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            inner.schema().metadata().clone(),
        ));
        Self { inner, schema }
    }
}

#[async_trait]
impl TableProvider for Typed {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = read_all(&self.inner, state)
            .await?
            .into_iter()
            .map(|b| RecordBatch::try_new(self.schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
