//! Where results come from: the catalog inside the gateway (pg_catalog,
//! information_schema) or an engine node. Either way a query opens as a
//! `ResultSchema` and a `ResultStream` of decoded `RecordBatch`es, so the
//! session's one row pump serves both.

mod catalog;
mod engine;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use velo_proto::v1::{DescribeQueryRequest, ExecuteQueryRequest, SessionSettings, TypedValue};

pub use catalog::{Catalog, SessionInfo};
pub use engine::{
    CancelHandle, EnginePool, EngineSecurity, EngineSource, PoolOptions, ResultSchema, StreamEvent,
};

use crate::codec::{logical_oid, IpcDecoder};
use crate::error::GatewayError;
use crate::metrics::Route;
use engine::QueryStream;

/// The catalog and the engine pool, as sessions see them.
#[derive(Clone)]
pub struct Backend {
    pool: Arc<EnginePool>,
    catalog: Arc<Catalog>,
}

/// A query's rows as they arrive.
pub struct ResultStream {
    source: Source,
}

enum Source {
    /// An engine node's stream; DDL it completes refreshes the catalog.
    Engine {
        query: Box<QueryStream>,
        catalog: Arc<Catalog>,
    },
    /// Batches the catalog computed whole.
    Batches {
        batches: std::vec::IntoIter<RecordBatch>,
    },
}

/// Parameter types (PostgreSQL OIDs, 0 where the backend has no opinion)
/// and the result schema, when there is one.
pub type Described = (Vec<u32>, Option<SchemaRef>);

impl Backend {
    pub fn new(pool: Arc<EnginePool>, catalog: Arc<Catalog>) -> Self {
        Self { pool, catalog }
    }

    /// Which backend answers `sql`; a statement reading both the catalog
    /// and an engine relation is refused.
    pub fn route(&self, sql: &str) -> Result<Route, GatewayError> {
        match catalog::route(sql) {
            catalog::Target::Catalog => Ok(Route::Catalog),
            catalog::Target::Engine => Ok(Route::Engine),
            catalog::Target::Mixed { catalog, engine } => Err(GatewayError::Unsupported(format!(
                "a statement cannot read both the catalog relation {catalog} and the stream or table {engine}; \
                 query them separately"
            ))),
        }
    }

    /// Runs a catalog statement (whole: catalog results are small).
    pub async fn catalog_query(
        &self,
        sql: &str,
        params: &[TypedValue],
        session: &SessionInfo,
    ) -> Result<(ResultSchema, ResultStream), GatewayError> {
        let (schema, batches) = self.catalog.execute(sql, params, session).await?;
        let schema = ResultSchema {
            schema,
            bounded: true,
            tag: "SELECT".into(),
        };
        let source = Source::Batches {
            batches: batches.into_iter(),
        };
        Ok((schema, ResultStream { source }))
    }

    /// Asks every engine node, in the background, to cancel the queries
    /// of session `session_id` (a cancel key this gateway does not hold).
    pub fn cancel_session(&self, session_id: String) {
        self.pool.cancel_session(session_id);
    }

    /// Starts a query on an engine node and waits for its schema.
    pub async fn engine_query(
        &self,
        request: ExecuteQueryRequest,
    ) -> Result<(ResultSchema, ResultStream), GatewayError> {
        let mut query = Box::new(self.pool.execute(request).await?);
        let schema = query.schema().await?;
        let source = Source::Engine {
            query,
            catalog: self.catalog.clone(),
        };
        Ok((schema, ResultStream { source }))
    }

    pub async fn describe_catalog(
        &self,
        sql: &str,
        session: &SessionInfo,
    ) -> Result<Described, GatewayError> {
        let (params, schema) = self.catalog.describe(sql, session).await?;
        Ok((params, Some(schema)))
    }

    pub async fn describe_engine(
        &self,
        sql: &str,
        settings: SessionSettings,
    ) -> Result<Described, GatewayError> {
        let response = self
            .pool
            .describe(DescribeQueryRequest {
                sql: sql.to_string(),
                parameter_types: Vec::new(),
                settings: Some(settings),
            })
            .await?;
        if let Some(e) = response.error {
            return Err(GatewayError::Engine(e));
        }
        let params = response
            .parameter_types
            .iter()
            .map(|t| logical_oid(*t))
            .collect();
        let schema = match response.schema {
            Some(s) if !s.columns.is_empty() => {
                Some(IpcDecoder::default().schema(&s.arrow_ipc_schema)?)
            }
            _ => None,
        };
        Ok((params, schema))
    }
}

impl ResultStream {
    /// The next batch, or the completion (after which it is not called).
    pub async fn next(&mut self) -> Result<StreamEvent, GatewayError> {
        match &mut self.source {
            Source::Engine { query, catalog } => {
                let event = query.next().await?;
                if let StreamEvent::Complete { tag } = &event {
                    if is_ddl(tag) {
                        catalog.invalidate();
                    }
                }
                Ok(event)
            }
            Source::Batches { batches } => Ok(match batches.next() {
                Some(batch) => StreamEvent::Batch(batch),
                None => StreamEvent::Complete {
                    tag: "SELECT".into(),
                },
            }),
        }
    }

    /// The engine node running the query.
    pub fn node(&self) -> Option<&str> {
        match &self.source {
            Source::Engine { query, .. } => Some(&query.node),
            Source::Batches { .. } => None,
        }
    }

    /// How to cancel the query on its node while the session waits on it.
    pub fn cancel_handle(&self) -> Option<CancelHandle> {
        match &self.source {
            Source::Engine { query, .. } => Some(query.cancel_handle()),
            Source::Batches { .. } => None,
        }
    }
}

/// Commands that change the engine's relations.
fn is_ddl(tag: &str) -> bool {
    ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|k| tag.starts_with(k))
}
