//! Planning and running one query: snapshot queries and continuous
//! projections run as ordinary DataFusion streams over Kafka partition
//! streams; continuous aggregations run through the incremental driver.

pub mod averages;
mod incremental;
pub mod literals;
pub mod names;
pub mod types;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::catalog::{locate_error, Catalog};
use crate::dialect::{Emit, QueryText};
use crate::error::{EngineError, Result};
use crate::kafka::{EventClock, ReadMode};
use crate::notice::QueryNotices;

/// A query that has been planned and started.
pub struct RunningQuery {
    /// Output schema with wire types (see `types::wire_schema`).
    pub schema: SchemaRef,
    pub emit: Emit,
    /// `LIMIT n` of the outermost query, which ends even a continuous query.
    pub limit: Option<usize>,
    pub batches: BoxStream<'static, Result<RecordBatch>>,
    /// What the query's scans tell its client while it runs.
    pub notices: QueryNotices,
}

fn read_mode(emit: Emit, from_earliest: bool) -> ReadMode {
    match emit {
        Emit::Snapshot => ReadMode::Snapshot,
        Emit::Changes | Emit::Final => ReadMode::Tail { from_earliest },
    }
}

/// Only queries reach DataFusion: DDL/DML would act on a throwaway context.
fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

async fn plan(
    ctx: &SessionContext,
    q: &QueryText,
    params: Vec<ScalarValue>,
) -> Result<datafusion::dataframe::DataFrame> {
    let df = async {
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state.sql_to_statement(&q.sql, &dialect)?;
        if let datafusion::sql::parser::Statement::Statement(s) = &mut statement {
            literals::select_list_integers(s);
            averages::exact_averages(s);
        }
        let plan = state.statement_to_plan(statement).await?;
        sql_options().verify_plan(&plan)?;
        ctx.execute_logical_plan(plan).await
    }
    .await
    .map_err(|e| locate_error(e, q))?;
    if params.is_empty() {
        Ok(df)
    } else {
        df.with_param_values(ParamValues::List(
            params.into_iter().map(Into::into).collect(),
        ))
        .map_err(|e| locate_error(e, q))
    }
}

/// Plans `q` and starts it.
pub async fn start(
    catalog: &Catalog,
    q: &QueryText,
    params: Vec<ScalarValue>,
    from_earliest: bool,
) -> Result<RunningQuery> {
    // Continuous windows close on the event time their Kafka sources read.
    let clock = (q.emit != Emit::Snapshot && q.window.is_some()).then(EventClock::default);
    let notices = QueryNotices::default();
    let ctx = catalog
        .run_context(q, read_mode(q.emit, from_earliest), clock.clone(), &notices)
        .await?;
    let df = plan(&ctx, q, params).await?;
    let task_ctx = Arc::new(df.task_ctx());
    let physical = df
        .create_physical_plan()
        .await
        .map_err(|e| locate_error(e, q))?;
    tracing::debug!(plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(true), "physical plan");
    let physical = if q.emit == Emit::Snapshot {
        physical
    } else {
        stream_promptly(physical).map_err(|e| locate_error(e, q))?
    };
    let schema = result_schema(&physical.schema(), q);
    let limit = outer_fetch(&physical);
    let batches: BoxStream<'static, Result<RecordBatch>> = match (q.emit, find_aggregate(&physical))
    {
        (Emit::Changes | Emit::Final, Some(agg)) => {
            incremental::run(physical, agg, q.window.clone(), q.emit, clock, task_ctx)?
        }
        _ => {
            let stream = execute_stream(physical, task_ctx).map_err(|e| locate_error(e, q))?;
            stream
                .map(|r| r.map_err(|e| EngineError::from_datafusion(e, "")))
                .boxed()
        }
    };
    let batches = normalize(batches, schema.clone());
    Ok(RunningQuery {
        schema,
        emit: q.emit,
        limit,
        batches,
        notices,
    })
}

/// What clients see of `q`'s output: wire types, PostgreSQL's column names.
fn result_schema(schema: &SchemaRef, q: &QueryText) -> SchemaRef {
    let wire = types::wire_schema(schema);
    names::renamed(&wire, names::postgres_names(&q.sql).as_deref())
}

/// The output schema of `q` without running it, and its parameter types.
pub async fn describe(
    catalog: &Catalog,
    q: &QueryText,
) -> Result<(
    SchemaRef,
    Vec<Option<datafusion::arrow::datatypes::DataType>>,
)> {
    let ctx = catalog.context(q, ReadMode::Snapshot).await?;
    let df = plan(&ctx, q, Vec::new()).await?;
    let plan = df.logical_plan();
    let schema = result_schema(&Arc::new(plan.schema().as_arrow().clone()), q);
    let types = parameter_types(plan).map_err(|e| locate_error(e, q))?;
    Ok((schema, types))
}

/// The types of `plan`'s placeholders `$1..$n` in order (`None` where
/// nothing says), a placeholder under a cast taking the cast's type.
pub fn parameter_types(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> datafusion::error::Result<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
    let mut params: Vec<(usize, Option<_>)> = plan
        .get_parameter_types()?
        .into_iter()
        .filter_map(|(k, v)| Some((k.trim_start_matches('$').parse().ok()?, v)))
        .collect();
    params.sort_by_key(|(k, _)| *k);
    let count = params.last().map_or(0, |(k, _)| *k);
    let mut types = vec![None; count];
    let cast_types = placeholder_cast_types(plan);
    for (k, v) in params {
        types[k - 1] = v.or_else(|| cast_types.get(&format!("${k}")).cloned());
    }
    Ok(types)
}

/// Types of placeholders that appear directly under a cast (`CAST($1 AS
/// BIGINT)`, `$1::date`): DataFusion leaves them untyped, PostgreSQL infers
/// the cast's target type, and drivers then send typed binary values.
fn placeholder_cast_types(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> std::collections::HashMap<String, datafusion::arrow::datatypes::DataType> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = std::collections::HashMap::new();
    let _ =
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                let (Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })) = e
                else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                if let Expr::Placeholder(p) = expr.as_ref() {
                    found.entry(p.id.clone()).or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            })
        });
    found
}

fn normalize(
    batches: BoxStream<'static, Result<RecordBatch>>,
    schema: SchemaRef,
) -> BoxStream<'static, Result<RecordBatch>> {
    batches
        .map(move |r| r.and_then(|b| types::to_wire(&b, &schema)))
        .boxed()
}

/// Filters coalesce their output into full-size batches, which would hold a
/// continuous query's rows back indefinitely; make every batch pass through.
fn stream_promptly(
    plan: Arc<dyn ExecutionPlan>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_plan::filter::FilterExec;
    plan.transform_up(|node| {
        Ok(match node.downcast_ref::<FilterExec>() {
            Some(filter) => Transformed::yes(Arc::new(filter.with_batch_size(1)?) as _),
            None => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

/// The first aggregation from the top, if the query has one.
fn find_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<AggregateExec>() {
        return Some(plan.clone());
    }
    plan.children().into_iter().find_map(find_aggregate)
}

/// The row limit of the outermost query: the first `fetch` on the way down
/// before anything that changes row counts in other ways.
fn outer_fetch(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    if let Some(fetch) = plan.fetch() {
        return Some(fetch);
    }
    if plan.is::<AggregateExec>() || plan.children().len() != 1 {
        return None;
    }
    let name = plan.name();
    if name.contains("Projection") || name.contains("Coalesce") || name.contains("Sort") {
        outer_fetch(plan.children()[0])
    } else {
        None
    }
}
