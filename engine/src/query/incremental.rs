//! Continuous aggregation. The physical plan is cut at its aggregation: the
//! part below it streams forever from Kafka; for each input batch the
//! driver updates per-group accumulators (DataFusion's own, so every
//! aggregate function works) and sends the groups that batch changed — or,
//! with `EMIT FINAL`, the windows it closed — through the part above it
//! (projection, HAVING, ORDER BY). State is kept, never recomputed.
//!
//! Windows close when the watermark passes their end. The watermark is the
//! latest event time read: the latest window start among the rows that
//! reach the aggregation, and, when the query's Kafka scans report to an
//! [`EventClock`], the latest event time they read before any filter.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;

use datafusion::arrow::array::{ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::{cast, kernels::aggregate::max, take};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{
    collect, execute_stream, ExecutionPlan, ExecutionPlanProperties, PhysicalExpr,
};
use datafusion::scalar::ScalarValue;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::dialect::{Emit, WindowSpec};
use crate::error::{EngineError, Result};
use crate::kafka::EventClock;

fn df_err(e: impl Into<datafusion::error::DataFusionError>) -> EngineError {
    EngineError::from_datafusion(e.into(), "")
}

pub fn run(
    root: Arc<dyn ExecutionPlan>,
    agg_plan: Arc<dyn ExecutionPlan>,
    window: Option<WindowSpec>,
    emit: Emit,
    clock: Option<EventClock>,
    task_ctx: Arc<TaskContext>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let mut groups = Groups::new(&agg_plan, window.as_ref(), emit)?;
    let agg = agg_plan
        .downcast_ref::<AggregateExec>()
        .expect("found as an AggregateExec");
    // See `next_input`: the clock is safe to close windows on only if the
    // plan below runs as one stream in this task.
    let clock = clock.filter(|_| window.is_some() && one_stream(agg.input()));
    let mut input = execute_stream(agg.input().clone(), task_ctx.clone()).map_err(df_err)?;
    let upper = Upper {
        root,
        agg_plan,
        task_ctx,
    };
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(2);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = next_input(&mut input, clock.as_ref(), groups.watermark) => next,
                _ = tx.closed() => return,
            };
            let emitted = match next {
                Input::End => return,
                Input::Batch(Err(e)) => Err(df_err(e)),
                Input::Batch(Ok(batch)) => groups.update(&batch),
                Input::EventTime(t) => groups.advance(t),
            };
            let result = match emitted {
                Ok(Some(rows)) => upper.run(rows).await,
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            match result {
                Ok(batches) => {
                    for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
}

enum Input {
    Batch(datafusion::error::Result<RecordBatch>),
    /// No batch is ready, and the sources have read up to this event time,
    /// past the watermark (the plan filtered out what they read).
    EventTime(i64),
    End,
}

/// The next input batch; or, when none is ready and the clock has passed
/// `watermark`, the clock's time. With no batch ready, every batch the
/// sources handed over has been all the way through the input plan (one
/// stream, polled here), so no row of theirs can still arrive for a window
/// the clock closes.
async fn next_input(
    input: &mut SendableRecordBatchStream,
    clock: Option<&EventClock>,
    watermark: i64,
) -> Input {
    futures::future::poll_fn(|cx| match input.poll_next_unpin(cx) {
        Poll::Ready(Some(batch)) => Poll::Ready(Input::Batch(batch)),
        Poll::Ready(None) => Poll::Ready(Input::End),
        Poll::Pending => match clock.and_then(EventClock::now) {
            Some(t) if t > watermark => Poll::Ready(Input::EventTime(t)),
            _ => Poll::Pending,
        },
    })
    .await
}

/// Whether `plan` runs as a single stream (one partition all the way down):
/// then it runs in the task polling it, with no batches buffered between
/// tasks.
fn one_stream(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.output_partitioning().partition_count() == 1 && plan.children().into_iter().all(one_stream)
}

/// The plan above the aggregation, re-run over each batch of changed groups.
struct Upper {
    root: Arc<dyn ExecutionPlan>,
    agg_plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
}

impl Upper {
    async fn run(&self, changed: RecordBatch) -> Result<Vec<RecordBatch>> {
        let source: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![changed]], self.agg_plan.schema(), None)
                .map_err(df_err)?;
        let target = Arc::as_ptr(&self.agg_plan) as *const () as usize;
        let plan = self
            .root
            .clone()
            .transform_down(|node| {
                Ok(if Arc::as_ptr(&node) as *const () as usize == target {
                    Transformed::new(
                        source.clone(),
                        true,
                        datafusion::common::tree_node::TreeNodeRecursion::Jump,
                    )
                } else {
                    Transformed::no(node)
                })
            })
            .map_err(df_err)?
            .data;
        collect(plan, self.task_ctx.clone()).await.map_err(df_err)
    }
}

struct Group {
    key: Option<OwnedRow>,
    accumulators: Vec<Box<dyn Accumulator>>,
    window_start: i64,
}

struct Groups {
    schema: SchemaRef,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    converter: RowConverter,
    index: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Group>>,
    free: Vec<usize>,
    /// Position of `window_start` among the group keys, and the window size.
    window: Option<(usize, i64)>,
    /// The latest event time read (microseconds); windows that end at or
    /// before it are closed.
    watermark: i64,
    emit_final: bool,
}

impl Groups {
    fn new(
        agg_plan: &Arc<dyn ExecutionPlan>,
        window: Option<&WindowSpec>,
        emit: Emit,
    ) -> Result<Self> {
        let agg = agg_plan
            .downcast_ref::<AggregateExec>()
            .expect("found as an AggregateExec");
        if !matches!(
            agg.mode(),
            AggregateMode::Single | AggregateMode::SinglePartitioned
        ) || !agg.group_expr().is_single()
            || agg.filter_expr().iter().any(Option::is_some)
            || has_aggregate(agg.input())
        {
            return Err(EngineError::Unsupported(
                "this aggregation cannot run continuously (nested aggregates, GROUPING SETS and FILTER are snapshot-only)".into(),
            ));
        }
        let group_exprs: Vec<_> = agg
            .group_expr()
            .expr()
            .iter()
            .map(|(e, _)| e.clone())
            .collect();
        let input_schema = agg.input().schema();
        let fields = group_exprs
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(&input_schema)?)))
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(df_err)?;
        let converter = RowConverter::new(fields).map_err(df_err)?;
        let window = match window {
            Some(w) => {
                let at = agg
                    .group_expr()
                    .expr()
                    .iter()
                    .position(|(_, name)| name == "window_start")
                    .ok_or_else(|| EngineError::Window("window_start is not grouped".into()))?;
                Some((at, w.size_us()))
            }
            None => None,
        };
        Ok(Self {
            schema: agg.schema(),
            group_exprs,
            aggregates: agg.aggr_expr().to_vec(),
            converter,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            window,
            watermark: i64::MIN,
            emit_final: emit == Emit::Final,
        })
    }

    fn new_group(&mut self, key: Option<OwnedRow>, window_start: i64) -> Result<usize> {
        let accumulators = self
            .aggregates
            .iter()
            .map(|a| a.create_accumulator())
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(df_err)?;
        let group = Some(Group {
            key,
            accumulators,
            window_start,
        });
        Ok(match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = group;
                slot
            }
            None => {
                self.slots.push(group);
                self.slots.len() - 1
            }
        })
    }

    /// Folds `batch` into the state; returns the rows to emit (in the
    /// aggregation's output schema), if any.
    fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| -> Result<ArrayRef> {
            e.evaluate(batch)
                .and_then(|v| v.into_array(n))
                .map_err(df_err)
        };
        let keys = self
            .group_exprs
            .iter()
            .map(eval)
            .collect::<Result<Vec<_>>>()?;
        let args = self
            .aggregates
            .iter()
            .map(|a| a.expressions().iter().map(eval).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let starts = match self.window {
            Some((at, _)) => Some(
                cast(
                    &keys[at],
                    &datafusion::arrow::datatypes::DataType::Timestamp(
                        datafusion::arrow::datatypes::TimeUnit::Microsecond,
                        None,
                    ),
                )
                .map_err(df_err)?,
            ),
            None => None,
        };
        let starts = starts
            .as_ref()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>());
        let size = self.window.map_or(0, |(_, s)| s);

        let rows = if keys.is_empty() {
            None
        } else {
            Some(self.converter.convert_columns(&keys).map_err(df_err)?)
        };
        let mut touched: Vec<usize> = Vec::new();
        let mut rows_of: HashMap<usize, Vec<u32>> = HashMap::new();
        for i in 0..n {
            let window_start = starts.map_or(0, |s| s.value(i));
            if starts.is_some() && window_start + size <= self.watermark {
                continue; // late: its window has closed
            }
            let bytes: &[u8] = rows.as_ref().map_or(&[], |r| r.row(i).data());
            let slot = match self.index.get(bytes) {
                Some(&slot) => slot,
                None => {
                    let key = rows.as_ref().map(|r| r.row(i).owned());
                    let slot = self.new_group(key, window_start)?;
                    self.index.insert(bytes.into(), slot);
                    slot
                }
            };
            rows_of
                .entry(slot)
                .or_insert_with(|| {
                    touched.push(slot);
                    Vec::new()
                })
                .push(i as u32);
        }
        for &slot in &touched {
            let indices = UInt32Array::from(rows_of.remove(&slot).unwrap_or_default());
            let group = self.slots[slot].as_mut().expect("live group");
            for (acc, columns) in group.accumulators.iter_mut().zip(&args) {
                let taken = columns
                    .iter()
                    .map(|c| take(c.as_ref(), &indices, None))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(df_err)?;
                acc.update_batch(&taken).map_err(df_err)?;
            }
        }

        let Some(starts) = starts else {
            return self.output(&touched).map(Some);
        };
        // A window start is a lower bound of its events' times.
        if let Some(m) = max(starts) {
            self.watermark = self.watermark.max(m);
        }
        let closed = self.closed_windows();
        let out = if self.emit_final {
            self.output(&closed)?
        } else {
            self.output(&touched)?
        };
        self.evict(&closed);
        Ok(Some(out))
    }

    /// Moves the watermark to `event_time`, closing the windows it passes;
    /// returns the rows to emit (`EMIT FINAL`), if any.
    fn advance(&mut self, event_time: i64) -> Result<Option<RecordBatch>> {
        if self.window.is_none() || event_time <= self.watermark {
            return Ok(None);
        }
        self.watermark = event_time;
        let closed = self.closed_windows();
        let out = if self.emit_final && !closed.is_empty() {
            Some(self.output(&closed)?)
        } else {
            None
        };
        self.evict(&closed);
        Ok(out)
    }

    /// The groups whose window the watermark has passed, oldest first.
    fn closed_windows(&self) -> Vec<usize> {
        let size = self.window.map_or(0, |(_, s)| s);
        let mut closed: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                g.as_ref()
                    .filter(|g| g.window_start + size <= self.watermark)
                    .map(|_| i)
            })
            .collect();
        closed.sort_by_key(|&i| self.slots[i].as_ref().map_or(0, |g| g.window_start));
        closed
    }

    fn evict(&mut self, slots: &[usize]) {
        for &slot in slots {
            if let Some(g) = self.slots[slot].take() {
                let bytes: &[u8] = g.key.as_ref().map_or(&[], |k| k.row().data());
                self.index.remove(bytes);
                self.free.push(slot);
            }
        }
    }

    fn output(&mut self, slots: &[usize]) -> Result<RecordBatch> {
        let mut columns = if self.group_exprs.is_empty() {
            Vec::new()
        } else {
            let keys = slots.iter().filter_map(|&s| {
                self.slots[s]
                    .as_ref()
                    .and_then(|g| g.key.as_ref())
                    .map(|k| k.row())
            });
            self.converter.convert_rows(keys).map_err(df_err)?
        };
        for j in 0..self.aggregates.len() {
            let values = slots
                .iter()
                .map(|&s| self.slots[s].as_mut().expect("live group").accumulators[j].evaluate())
                .collect::<datafusion::error::Result<Vec<ScalarValue>>>()
                .map_err(df_err)?;
            let field = self.schema.field(columns.len());
            let array = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values).map_err(df_err)?
            };
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type()).map_err(df_err)?
            };
            columns.push(array);
        }
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(slots.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(df_err)
    }
}

fn has_aggregate(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<AggregateExec>() || plan.children().into_iter().any(has_aggregate)
}
