//! Subqueries DataFusion cannot decorrelate, run once per distinct outer
//! row as PostgreSQL's SubPlan runs them: a correlated scalar subquery
//! under CASE (SQLAlchemy's column reflection), one holding a recursive
//! query over its outer row (asyncpg's type introspection), `IN (SELECT
//! ...)` or `EXISTS` in a select list or ORDER BY (Grafana, DBeaver).
//!
//! DataFusion plans these logically and fails in the physical planner;
//! there each such subquery becomes a function of its outer columns that
//! substitutes their values into the subquery's plan and runs it. Catalog
//! relations are small, answers are cached per outer row, and the
//! statement's deadline bounds the runs.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::{Exists, InSubquery, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Subquery, TypeSignature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;

/// The errors of a run, as `plan_error` recognizes them.
pub const MORE_THAN_ONE_ROW: &str = "more than one row returned by a subquery";
pub const OUT_OF_TIME: &str = "the statement's subqueries ran out of time";
pub const TOO_MANY_VALUES: &str = "the statement's subqueries answered more values than are kept";

/// The most values (rows, keys) one subquery's answers may hold.
#[cfg(not(test))]
const MAX_HELD: usize = 1_000_000;
#[cfg(test)]
const MAX_HELD: usize = 8;

/// The physical plan of `plan`, with the subqueries DataFusion cannot plan
/// run per row instead.
pub async fn physical(
    state: &SessionState,
    plan: LogicalPlan,
    deadline: Instant,
) -> Result<Arc<dyn ExecutionPlan>> {
    match state.create_physical_plan(&plan).await {
        Err(e) if contains_subquery(&plan)? => {
            let per_row = per_row(plan, state, deadline).map_err(|reason| {
                tracing::debug!(reason = %reason.find_root(), "a subquery cannot run per row either");
                e
            })?;
            state.create_physical_plan(&per_row).await
        }
        planned => planned,
    }
}

fn contains_subquery(plan: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    plan.apply(|node| {
        for e in node.expressions() {
            found |= e.exists(|e| Ok(is_subquery(e)))?;
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
    )
}

/// `plan` with each of its subquery expressions (not those nested inside
/// them, which their own runs plan) replaced by a per-row function.
fn per_row(plan: LogicalPlan, state: &SessionState, deadline: Instant) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let node = node.map_expressions(|e| {
            e.transform_up(|e| {
                if !is_subquery(&e) {
                    return Ok(Transformed::no(e));
                }
                let name = e.schema_name().to_string();
                let (kind, subquery, probe) = match e {
                    Expr::ScalarSubquery(s) => (Kind::Scalar, s, None),
                    Expr::Exists(Exists { subquery, negated }) => {
                        (Kind::Exists { negated }, subquery, None)
                    }
                    Expr::InSubquery(InSubquery {
                        expr,
                        subquery,
                        negated,
                    }) => (Kind::In { negated }, subquery, Some(*expr)),
                    _ => unreachable!("checked by is_subquery"),
                };
                let function = SubPlan::new(kind, &subquery, name, state, deadline)?;
                function.check()?;
                let args = probe
                    .into_iter()
                    .chain(function.outer.iter().cloned().map(Expr::Column))
                    .collect();
                Ok(Transformed::yes(Expr::ScalarFunction(
                    ScalarFunction::new_udf(Arc::new(ScalarUDF::new_from_impl(function)), args),
                )))
            })
        })?;
        if node.transformed {
            node.map_data(|n| n.recompute_schema())
        } else {
            Ok(node)
        }
    })
    .map(|t| t.data)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Scalar,
    Exists { negated: bool },
    In { negated: bool },
}

/// What one run of the subquery answered, kept per outer row.
#[derive(Clone)]
enum Answer {
    /// The scalar subquery's value (NULL without a row).
    Value(ScalarValue),
    /// Whether there was a row (EXISTS).
    Found(bool),
    /// The first column's values (IN).
    Rows(Arc<Vec<ScalarValue>>),
}

/// A subquery as a function of its outer columns.
struct SubPlan {
    id: usize,
    kind: Kind,
    /// The subquery, its outer references still in place.
    plan: Arc<LogicalPlan>,
    /// The outer columns, in argument order (after IN's probe), and their
    /// types.
    outer: Vec<Column>,
    outer_types: Vec<DataType>,
    field: FieldRef,
    name: String,
    signature: Signature,
    state: Arc<SessionState>,
    deadline: Instant,
    answers: Mutex<HashMap<Vec<ScalarValue>, Answer>>,
    /// Values `answers` holds, keys included.
    held: AtomicUsize,
}

impl SubPlan {
    fn new(
        kind: Kind,
        subquery: &Subquery,
        name: String,
        state: &SessionState,
        deadline: Instant,
    ) -> Result<Self> {
        static IDS: AtomicUsize = AtomicUsize::new(0);
        let (mut outer, mut outer_types) = (Vec::new(), Vec::new());
        for e in &subquery.outer_ref_columns {
            if let Expr::OuterReferenceColumn(field, column) = e {
                if !outer.contains(column) {
                    outer.push(column.clone());
                    outer_types.push(field.data_type().clone());
                }
            }
        }
        let field = match kind {
            Kind::Scalar => {
                let fields = subquery.subquery.schema().fields();
                let first = fields.first().ok_or_else(|| {
                    DataFusionError::Plan("a subquery must return a column".into())
                })?;
                Arc::new(first.as_ref().clone().with_nullable(true))
            }
            Kind::Exists { .. } | Kind::In { .. } => {
                Arc::new(Field::new(&name, DataType::Boolean, true))
            }
        };
        let arity = outer.len() + usize::from(matches!(kind, Kind::In { .. }));
        let signature = if arity == 0 {
            TypeSignature::Nullary
        } else {
            TypeSignature::Any(arity)
        };
        Ok(Self {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            kind,
            plan: subquery.subquery.clone(),
            outer,
            outer_types,
            field,
            name,
            signature: Signature::new(signature, Volatility::Volatile),
            state: Arc::new(state.clone()),
            deadline,
            answers: Mutex::default(),
            held: AtomicUsize::new(0),
        })
    }

    /// Plans the subquery once with NULLs for its outer columns: one that
    /// cannot be planned even so fails the statement now (where the
    /// caller has another way), not at its first row.
    fn check(&self) -> Result<()> {
        let nulls = self
            .outer_types
            .iter()
            .map(ScalarValue::try_from)
            .collect::<Result<Vec<_>>>()?;
        let plan = substitute(&self.plan, &self.outer, &nulls)?;
        let state = self.state.clone();
        let deadline = self.deadline;
        block_on(async move { physical(&state, plan, deadline).await.map(|_| ()) })
    }

    /// The answer for one outer row: cached, or from a run of the subquery
    /// with the row's values in place of its outer references.
    fn answer(&self, key: Vec<ScalarValue>) -> Result<Answer> {
        if let Some(answer) = self.answers.lock().expect("subplan answers").get(&key) {
            return Ok(answer.clone());
        }
        if Instant::now() > self.deadline {
            return Err(DataFusionError::Execution(OUT_OF_TIME.into()));
        }
        let plan = substitute(&self.plan, &self.outer, &key)?;
        let state = self.state.clone();
        let deadline = self.deadline;
        // Only the rows the answer needs: two tell a scalar subquery's
        // error, one EXISTS; the run stops at the deadline (a recursive
        // query need not end by itself).
        let needed = match self.kind {
            Kind::Scalar => 2,
            Kind::Exists { .. } => 1,
            Kind::In { .. } => MAX_HELD + 1,
        };
        let batches = block_on(async move {
            let run = async {
                let physical = physical(&state, plan, deadline).await?;
                gather(
                    datafusion::physical_plan::execute_stream(physical, state.task_ctx())?,
                    needed,
                )
                .await
            };
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, run)
                .await
                .map_err(|_| DataFusionError::Execution(OUT_OF_TIME.into()))?
        })?;
        let answer = self.read(&batches)?;
        let size = key.len()
            + match &answer {
                Answer::Rows(values) => values.len(),
                _ => 1,
            };
        if self.held.fetch_add(size, Ordering::Relaxed) + size > MAX_HELD {
            return Err(DataFusionError::Execution(TOO_MANY_VALUES.into()));
        }
        self.answers
            .lock()
            .expect("subplan answers")
            .insert(key, answer.clone());
        Ok(answer)
    }

    fn read(&self, batches: &[RecordBatch]) -> Result<Answer> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        match self.kind {
            Kind::Scalar if rows > 1 => Err(DataFusionError::Execution(MORE_THAN_ONE_ROW.into())),
            Kind::Scalar => match batches.iter().find(|b| b.num_rows() > 0) {
                Some(batch) => Ok(Answer::Value(ScalarValue::try_from_array(
                    batch.column(0),
                    0,
                )?)),
                None => Ok(Answer::Value(ScalarValue::try_from(
                    self.field.data_type(),
                )?)),
            },
            Kind::Exists { .. } => Ok(Answer::Found(rows > 0)),
            Kind::In { .. } => {
                let mut values = Vec::with_capacity(rows);
                for batch in batches {
                    for row in 0..batch.num_rows() {
                        values.push(ScalarValue::try_from_array(batch.column(0), row)?);
                    }
                }
                Ok(Answer::Rows(Arc::new(values)))
            }
        }
    }
}

/// The batches of `stream` until it ends or `rows` rows have come.
async fn gather(
    mut stream: datafusion::physical_plan::SendableRecordBatchStream,
    rows: usize,
) -> Result<Vec<RecordBatch>> {
    use futures::StreamExt;
    let (mut batches, mut seen) = (Vec::new(), 0);
    while seen < rows {
        let Some(batch) = stream.next().await else {
            break;
        };
        let batch = batch?;
        seen += batch.num_rows();
        batches.push(batch);
    }
    Ok(batches)
}

/// `plan` with `values` in place of the outer references to `columns`,
/// in nested subqueries too (which then no longer list them as outer).
fn substitute(
    plan: &LogicalPlan,
    columns: &[Column],
    values: &[ScalarValue],
) -> Result<LogicalPlan> {
    let value = |column: &Column| columns.iter().position(|c| c == column).map(|i| &values[i]);
    let unlisted = |subquery: &mut Subquery| {
        subquery
            .outer_ref_columns
            .retain(|e| !matches!(e, Expr::OuterReferenceColumn(_, c) if value(c).is_some()))
    };
    plan.clone()
        .transform_up_with_subqueries(|node| {
            // Values change expressions' names, which the nodes above
            // refer to (an aggregate over an outer column).
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|e| match e {
                    Expr::OuterReferenceColumn(field, column) => match value(&column) {
                        Some(v) => Ok(Transformed::yes(Expr::Literal(
                            v.cast_to(field.data_type())?,
                            None,
                        ))),
                        None => Ok(Transformed::no(Expr::OuterReferenceColumn(field, column))),
                    },
                    Expr::ScalarSubquery(mut s) => {
                        unlisted(&mut s);
                        Ok(Transformed::yes(Expr::ScalarSubquery(s)))
                    }
                    Expr::Exists(mut e) => {
                        unlisted(&mut e.subquery);
                        Ok(Transformed::yes(Expr::Exists(e)))
                    }
                    Expr::InSubquery(mut i) => {
                        unlisted(&mut i.subquery);
                        Ok(Transformed::yes(Expr::InSubquery(i)))
                    }
                    e => Ok(Transformed::no(e)),
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
}

/// Runs `future` to completion from synchronous code inside the catalog's
/// execution: on a multi-threaded runtime this worker hands its other
/// tasks on while it waits; elsewhere (tests) a thread of its own runs it.
fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for a subquery")
                        .block_on(future)
                })
                .join()
                .expect("subquery thread")
        }),
    }
}

impl std::fmt::Debug for SubPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subplan#{}", self.id)
    }
}

impl PartialEq for SubPlan {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SubPlan {}

impl Hash for SubPlan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

impl ScalarUDFImpl for SubPlan {
    fn name(&self) -> &str {
        "subplan"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn display_name(&self, _: &[Expr]) -> Result<String> {
        Ok(self.name.clone())
    }
    fn schema_name(&self, _: &[Expr]) -> Result<String> {
        Ok(self.name.clone())
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.field.data_type().clone())
    }
    fn return_field_from_args(&self, _: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(self.field.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (probe, outer) = match self.kind {
            Kind::In { .. } => (arrays.first(), &arrays[1.min(arrays.len())..]),
            _ => (None, &arrays[..]),
        };
        let mut answers = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let key = outer
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<Result<Vec<_>>>()?;
            answers.push(self.answer(key)?);
        }
        if answers.is_empty() {
            return Ok(ColumnarValue::Array(new_empty_array(
                self.field.data_type(),
            )));
        }
        let result: ArrayRef = match self.kind {
            Kind::Scalar => ScalarValue::iter_to_array(answers.into_iter().map(|a| match a {
                Answer::Value(v) => v,
                _ => unreachable!("a scalar subquery answers a value"),
            }))?,
            Kind::Exists { negated } => Arc::new(
                answers
                    .iter()
                    .map(|a| match a {
                        Answer::Found(found) => Some(*found != negated),
                        _ => unreachable!("EXISTS answers whether it found a row"),
                    })
                    .collect::<BooleanArray>(),
            ),
            Kind::In { negated } => {
                let probe = probe.expect("IN has its probe as first argument");
                let mut result = Vec::with_capacity(answers.len());
                for (row, answer) in answers.iter().enumerate() {
                    let Answer::Rows(values) = answer else {
                        unreachable!("IN answers rows")
                    };
                    result.push(contains(probe, row, values)?.map(|found| found != negated));
                }
                Arc::new(BooleanArray::from(result))
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// SQL's `probe IN (values)`: NULL when the probe is NULL, or when it is
/// not found and a value is NULL.
fn contains(probe: &ArrayRef, row: usize, values: &[ScalarValue]) -> Result<Option<bool>> {
    if probe.is_null(row) {
        return Ok(None);
    }
    let value = ScalarValue::try_from_array(probe, row)?;
    let mut saw_null = false;
    for candidate in values {
        if candidate.is_null() {
            saw_null = true;
        } else if value.cast_to(&candidate.data_type())? == *candidate {
            return Ok(Some(true));
        }
    }
    Ok(if saw_null { None } else { Some(false) })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE a (id INT, k INT) AS VALUES (1, 10), (2, 20), (3, NULL)",
            "CREATE TABLE b (k INT, v TEXT) AS VALUES (10, 'x'), (20, 'y'), (20, 'z'), (NULL, 'n')",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    /// The statement's rows, one string per row; whether DataFusion could
    /// plan it without running subqueries per row.
    async fn run(sql: &str) -> (Result<Vec<String>>, bool) {
        let ctx = context().await;
        let state = ctx.state();
        let plan = state.create_logical_plan(sql).await.unwrap();
        let natively = state.create_physical_plan(&plan).await.is_ok();
        let rows = async {
            let deadline = Instant::now() + Duration::from_secs(30);
            let physical = physical(&state, plan, deadline).await?;
            let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).await?;
            let table = pretty_format_batches(&batches)?.to_string();
            Ok(table
                .lines()
                .skip(3)
                .filter(|l| l.starts_with('|'))
                .map(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    cells[1..cells.len() - 1].join(",")
                })
                .collect())
        }
        .await;
        (rows, natively)
    }

    #[tokio::test]
    async fn a_correlated_subquery_under_case_runs_per_row() {
        let (rows, natively) = run("SELECT id, CASE WHEN k IS NOT NULL THEN \
             (SELECT max(v) FROM b WHERE b.k = a.k AND a.id > 1) END FROM a ORDER BY id")
        .await;
        assert!(!natively);
        assert_eq!(rows.unwrap(), ["1,", "2,z", "3,"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exists_and_in_in_a_select_list_and_order_by() {
        let (rows, natively) = run("SELECT id, EXISTS (SELECT 1 FROM b WHERE b.k = a.k), \
             k IN (SELECT k FROM b WHERE k > 10), k NOT IN (SELECT k FROM b) \
             FROM a ORDER BY id IN (SELECT k / 10 FROM b) DESC, id")
        .await;
        assert!(!natively);
        // IN is NULL for a NULL probe, NOT IN is NULL (not true) where the
        // subquery has a NULL and no match; NULL sorts first in DESC.
        assert_eq!(
            rows.unwrap(),
            ["3,false,,", "1,true,false,false", "2,true,true,false"]
        );
    }

    #[tokio::test]
    async fn a_scalar_subquery_of_two_rows_is_an_error() {
        let (rows, _) =
            run("SELECT id, CASE WHEN true THEN (SELECT v FROM b WHERE b.k = a.k) END FROM a")
                .await;
        let error = rows.unwrap_err().find_root().to_string();
        assert!(error.contains(MORE_THAN_ONE_ROW), "{error}");
    }

    #[tokio::test]
    async fn answers_held_are_bounded() {
        // Three outer rows, each IN answer one to three rows of b, past
        // the test bound of 8 values.
        let (rows, natively) = run(
            "SELECT id, CASE WHEN id > 0 THEN id * 10 IN (SELECT k FROM b WHERE b.k >= a.id) END \
             FROM a",
        )
        .await;
        assert!(!natively);
        let error = rows.unwrap_err().find_root().to_string();
        assert!(error.contains(TOO_MANY_VALUES), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subquery_that_never_ends_stops_at_the_deadline() {
        let ctx = context().await;
        let state = ctx.state();
        let plan = state
            .create_logical_plan(
                "SELECT CASE WHEN id > 0 THEN (WITH RECURSIVE r(n) AS (SELECT a.id \
                 UNION ALL SELECT n + 1 FROM r) SELECT max(n) FROM r) END FROM a",
            )
            .await
            .unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        let result = async {
            let physical = physical(&state, plan, deadline).await?;
            datafusion::physical_plan::collect(physical, state.task_ctx()).await
        }
        .await;
        let error = result.unwrap_err().find_root().to_string();
        assert!(error.contains(OUT_OF_TIME), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn runs_stop_at_the_deadline() {
        let ctx = context().await;
        let state = ctx.state();
        let plan = state
            .create_logical_plan(
                "SELECT CASE WHEN id > 0 THEN (SELECT max(v) FROM b WHERE b.k = a.k AND a.id > 1) END \
                 FROM a",
            )
            .await
            .unwrap();
        let physical = physical(&state, plan, Instant::now()).await.unwrap();
        let error = datafusion::physical_plan::collect(physical, state.task_ctx())
            .await
            .unwrap_err();
        assert!(
            error.find_root().to_string().contains(OUT_OF_TIME),
            "{error}"
        );
    }
}
