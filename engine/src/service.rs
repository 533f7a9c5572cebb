//! The `velostream.engine.v1.EngineService` implementation: one task per
//! query, a bounded channel to the client, heartbeats while idle, notices as
//! the query's scans raise them, exactly one terminal event, and cancellation
//! by id or by dropping the stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use futures::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use velo_proto::v1::{
    self, execute_query_response::Event, typed_value::Value, CancelQueryRequest,
    CancelQueryResponse, CancelSessionRequest, CancelSessionResponse, CompletionReason,
    DescribeQueryRequest, DescribeQueryResponse, EmitMode, ExecuteQueryRequest,
    ExecuteQueryResponse, ListRelationsRequest, ListRelationsResponse, NodeInfoRequest,
    NodeInfoResponse, OffsetReset,
};

use crate::catalog::{Catalog, RelationKind};
use crate::catalog_log::CatalogLog;
use crate::dialect::{self, Emit, Statement};
use crate::error::{EngineError, Result};
use crate::notice::QueryNotices;
use crate::query::{self, types};

/// How long a continuous query may be silent before a heartbeat goes out.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

struct Job {
    sql: String,
    /// The session user it runs for (SessionSettings.user); may be empty.
    user: String,
    /// The client session's id (ExecuteQueryRequest.session_id); may be empty.
    session_id: String,
    started: SystemTime,
    cancel: CancellationToken,
    rows: Arc<AtomicU64>,
}

pub struct EngineNode {
    catalog: Arc<Catalog>,
    ddl: Arc<CatalogLog>,
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    started: Instant,
    node_id: String,
}

impl EngineNode {
    pub fn new(ddl: CatalogLog, max_concurrent: usize, node_id: String) -> Self {
        Self {
            catalog: ddl.catalog().clone(),
            ddl: Arc::new(ddl),
            jobs: Arc::default(),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            started: Instant::now(),
            node_id,
        }
    }
}

type Tx = mpsc::Sender<Result<ExecuteQueryResponse, Status>>;

fn event(e: Event) -> Result<ExecuteQueryResponse, Status> {
    Ok(ExecuteQueryResponse { event: Some(e) })
}

/// Removes the job from the registry however its task ends.
struct JobGuard {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    id: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.jobs.lock().expect("jobs lock").remove(&self.id);
    }
}

#[tonic::async_trait]
impl v1::engine_service_server::EngineService for EngineNode {
    type ExecuteQueryStream = ReceiverStream<Result<ExecuteQueryResponse, Status>>;

    async fn execute_query(
        &self,
        request: Request<ExecuteQueryRequest>,
    ) -> Result<Response<Self::ExecuteQueryStream>, Status> {
        let req = request.into_inner();
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "engine node {} is running its maximum of {} concurrent queries",
                self.node_id, self.max_concurrent
            ))
        })?;
        let id = if req.query_id.is_empty() {
            format!("q{:016x}", rand::random::<u64>())
        } else {
            req.query_id.clone()
        };
        let cancel = CancellationToken::new();
        let rows = Arc::new(AtomicU64::new(0));
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            if jobs.contains_key(&id) {
                return Err(Status::already_exists(format!(
                    "query id {id} is already running"
                )));
            }
            jobs.insert(
                id.clone(),
                Job {
                    sql: req.sql.clone(),
                    user: req
                        .settings
                        .as_ref()
                        .map_or_else(String::new, |s| s.user.clone()),
                    session_id: req.session_id.clone(),
                    started: SystemTime::now(),
                    cancel: cancel.clone(),
                    rows: rows.clone(),
                },
            );
        }
        let guard = JobGuard {
            jobs: self.jobs.clone(),
            id,
            _permit: permit,
        };
        let (tx, rx) = mpsc::channel(4);
        let catalog = self.catalog.clone();
        let ddl = self.ddl.clone();
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let timeout = req
                .settings
                .as_ref()
                .map(|s| s.statement_timeout_ms)
                .filter(|&ms| ms > 0)
                .map_or(Duration::MAX, Duration::from_millis);
            let run = Run {
                catalog: &catalog,
                ddl: &ddl,
                jobs: &jobs,
                tx: &tx,
                rows: &rows,
            };
            let outcome = tokio::select! {
                r = run.statement(&req) => r,
                _ = cancel.cancelled() => Err(EngineError::Cancelled),
                _ = tokio::time::sleep(timeout) => Err(EngineError::StatementTimeout),
                _ = tx.closed() => return,
            };
            let last = match outcome {
                Ok(complete) => Event::Complete(complete),
                Err(e) => Event::Error(e.to_proto()),
            };
            let _ = tx.send(event(last)).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn describe_query(
        &self,
        request: Request<DescribeQueryRequest>,
    ) -> Result<Response<DescribeQueryResponse>, Status> {
        let req = request.into_inner();
        let result: Result<(SchemaRef, Emit, &str, Vec<Option<DataType>>)> = async {
            match dialect::parse(&req.sql)? {
                Statement::Query(q) => {
                    let (schema, params) = query::describe(&self.catalog, &q).await?;
                    let emit = q.emit;
                    Ok((schema, emit, "SELECT", params))
                }
                Statement::ShowStreams => {
                    Ok((show_streams_schema(), Emit::Snapshot, "SHOW", vec![]))
                }
                Statement::ShowTables => Ok((show_tables_schema(), Emit::Snapshot, "SHOW", vec![])),
                Statement::ShowJobs => Ok((show_jobs_schema(), Emit::Snapshot, "SHOW", vec![])),
                Statement::Describe(_) => Ok((describe_schema(), Emit::Snapshot, "SELECT", vec![])),
                other => Ok((
                    Arc::new(Schema::empty()),
                    Emit::Snapshot,
                    command_tag(&other),
                    vec![],
                )),
            }
        }
        .await;
        Ok(Response::new(match result {
            Ok((schema, emit, tag, params)) => DescribeQueryResponse {
                schema: Some(proto_schema(&schema, emit, tag, ipc_schema(&schema))),
                parameter_types: params
                    .iter()
                    .map(|t| match t {
                        Some(dt) => {
                            types::logical_type(&Field::new("", types::wire_type(dt), true)) as i32
                        }
                        None => v1::LogicalType::Unspecified as i32,
                    })
                    .collect(),
                error: None,
            },
            Err(e) => DescribeQueryResponse {
                schema: None,
                parameter_types: Vec::new(),
                error: Some(e.to_proto()),
            },
        }))
    }

    async fn cancel_query(
        &self,
        request: Request<CancelQueryRequest>,
    ) -> Result<Response<CancelQueryResponse>, Status> {
        let id = request.into_inner().query_id;
        let cancelled = match self.jobs.lock().expect("jobs lock").get(&id) {
            Some(job) => {
                job.cancel.cancel();
                true
            }
            None => false,
        };
        Ok(Response::new(CancelQueryResponse { cancelled }))
    }

    async fn cancel_session(
        &self,
        request: Request<CancelSessionRequest>,
    ) -> Result<Response<CancelSessionResponse>, Status> {
        let id = request.into_inner().session_id;
        let mut cancelled = 0;
        if !id.is_empty() {
            for job in self.jobs.lock().expect("jobs lock").values() {
                if job.session_id == id {
                    job.cancel.cancel();
                    cancelled += 1;
                }
            }
        }
        Ok(Response::new(CancelSessionResponse { cancelled }))
    }

    async fn list_relations(
        &self,
        request: Request<ListRelationsRequest>,
    ) -> Result<Response<ListRelationsResponse>, Status> {
        let known = request.into_inner().known_catalog_version;
        let version = self.catalog.version();
        if known == version {
            return Ok(Response::new(ListRelationsResponse {
                catalog_version: version,
                unchanged: true,
                relations: Vec::new(),
            }));
        }
        let relations = self
            .catalog
            .relations()
            .await
            .into_iter()
            .map(|r| v1::Relation {
                schema: "public".into(),
                name: r.name,
                kind: match r.kind {
                    RelationKind::Stream => v1::RelationKind::Stream,
                    RelationKind::Table => v1::RelationKind::Table,
                    RelationKind::View => v1::RelationKind::View,
                } as i32,
                columns: types::wire_schema(&r.schema)
                    .fields()
                    .iter()
                    .map(|f| types::column(f))
                    .collect(),
                source: r.source,
                description: r.description,
            })
            .collect();
        Ok(Response::new(ListRelationsResponse {
            catalog_version: version,
            unchanged: false,
            relations,
        }))
    }

    async fn node_info(
        &self,
        _request: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        Ok(Response::new(NodeInfoResponse {
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_concurrent_queries: self.max_concurrent as u32,
            active_queries: self.jobs.lock().expect("jobs lock").len() as u32,
            uptime_seconds: self.started.elapsed().as_secs(),
            catalog_version: self.catalog.version(),
        }))
    }
}

/// One statement's execution.
struct Run<'a> {
    catalog: &'a Catalog,
    ddl: &'a CatalogLog,
    jobs: &'a Mutex<HashMap<String, Job>>,
    tx: &'a Tx,
    rows: &'a AtomicU64,
}

impl Run<'_> {
    async fn statement(&self, req: &ExecuteQueryRequest) -> Result<v1::Complete> {
        let statement = dialect::parse(&req.sql)?;
        let tag = command_tag(&statement);
        match statement {
            Statement::Query(q) => {
                let params = req
                    .parameters
                    .iter()
                    .map(scalar_from_proto)
                    .collect::<Result<Vec<_>>>()?;
                let from_earliest = req.settings.as_ref().is_some_and(|s| {
                    s.offset_reset == OffsetReset::Earliest as i32
                        || s.extra.get("velostream.offset_reset").map(String::as_str)
                            == Some("earliest")
                });
                let running = query::start(self.catalog, &q, params, from_earliest).await?;
                self.stream(running, req.max_rows).await
            }
            Statement::ShowStreams => self.one_batch(self.show_streams().await?).await,
            Statement::ShowTables => self.one_batch(self.show_tables().await?).await,
            Statement::ShowJobs => {
                // Least privilege: a user sees their own queries only,
                // unless the gateway says the user is an admin.
                let only_user = req
                    .settings
                    .as_ref()
                    .filter(|s| !s.admin)
                    .map(|s| s.user.as_str());
                self.one_batch(self.show_jobs(only_user)?).await
            }
            Statement::Describe(name) => self.one_batch(self.describe(&name).await?).await,
            Statement::CreateView {
                name,
                or_replace,
                definition,
            } => {
                self.ddl.create_view(&name, or_replace, &definition).await?;
                self.command(tag).await
            }
            Statement::RenameView { from, to } => {
                self.ddl.rename_view(&from, &to).await?;
                self.command(tag).await
            }
            Statement::DropView { name, if_exists } => {
                self.ddl.drop_view(&name, if_exists).await?;
                self.command(tag).await
            }
            Statement::DropTable { name, if_exists } => {
                self.catalog.drop_table(&name, if_exists)?;
                self.command(tag).await
            }
        }
    }

    async fn send(&self, e: Event) -> Result<()> {
        self.tx
            .send(event(e))
            .await
            .map_err(|_| EngineError::Cancelled)
    }

    async fn send_notices(&self, notices: &QueryNotices) -> Result<()> {
        for notice in notices.take() {
            self.send(Event::Notice(notice.to_proto())).await?;
        }
        Ok(())
    }

    async fn command(&self, tag: &str) -> Result<v1::Complete> {
        let schema = proto_schema(&Schema::empty(), Emit::Snapshot, tag, Vec::new());
        self.send(Event::Schema(schema)).await?;
        Ok(v1::Complete {
            rows: 0,
            command_tag: tag.into(),
            reason: CompletionReason::Command as i32,
        })
    }

    async fn one_batch(&self, batch: RecordBatch) -> Result<v1::Complete> {
        let schema = batch.schema();
        let running = query::RunningQuery {
            schema,
            emit: Emit::Snapshot,
            limit: None,
            batches: futures::stream::iter([Ok(batch)]).boxed(),
            notices: QueryNotices::default(),
        };
        let mut complete = self.stream(running, 0).await?;
        complete.command_tag = "SHOW".into();
        Ok(complete)
    }

    async fn stream(
        &self,
        mut running: query::RunningQuery,
        max_rows: u64,
    ) -> Result<v1::Complete> {
        let mut writer = StreamWriter::try_new(Vec::new(), &running.schema)?;
        let ipc_schema = std::mem::take(writer.get_mut());
        self.send(Event::Schema(proto_schema(
            &running.schema,
            running.emit,
            "SELECT",
            ipc_schema,
        )))
        .await?;
        let cap = match (running.limit, max_rows) {
            (Some(l), 0) => Some((l as u64, CompletionReason::Limit)),
            (Some(l), m) if (l as u64) <= m => Some((l as u64, CompletionReason::Limit)),
            (_, 0) => None,
            (_, m) => Some((m, CompletionReason::RowCap)),
        };
        let mut sent: u64 = 0;
        let mut reason = CompletionReason::EndOfData;
        loop {
            let next = tokio::select! {
                next = running.batches.next() => next,
                // As soon as a scan has something to tell: a snapshot's
                // scans push theirs when they end, which may be long before
                // the query's last batch (a join, an aggregation).
                _ = running.notices.arrived() => {
                    self.send_notices(&running.notices).await?;
                    continue;
                }
                _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {
                    let now = chrono::Utc::now().timestamp_micros();
                    self.send(Event::Heartbeat(v1::Heartbeat { node_time_micros: now, rows_sent: sent })).await?;
                    continue;
                }
            };
            let Some(batch) = next.transpose()? else {
                break;
            };
            let mut batch = batch;
            if let Some((cap, _)) = cap {
                let room = cap - sent;
                if (batch.num_rows() as u64) > room {
                    batch = batch.slice(0, room as usize);
                }
            }
            if batch.num_rows() > 0 {
                writer.write(&batch)?;
                let arrow_ipc = std::mem::take(writer.get_mut());
                self.send(Event::Batch(v1::RecordBatch {
                    arrow_ipc,
                    num_rows: batch.num_rows() as u64,
                    node_time_micros: chrono::Utc::now().timestamp_micros(),
                }))
                .await?;
                sent += batch.num_rows() as u64;
                self.rows.store(sent, Ordering::Relaxed);
            }
            if let Some((cap, why)) = cap {
                if sent >= cap {
                    reason = why;
                    break;
                }
            }
        }
        // A scan pushes its notices before its last rows: those of every
        // scan that ended go out before the terminal event.
        self.send_notices(&running.notices).await?;
        Ok(v1::Complete {
            rows: sent,
            command_tag: "SELECT".into(),
            reason: reason as i32,
        })
    }

    async fn show_streams(&self) -> Result<RecordBatch> {
        let relations = self.catalog.relations().await;
        let streams: Vec<_> = relations
            .iter()
            .filter(|r| r.kind == RelationKind::Stream)
            .collect();
        let event_time = |name: &str| {
            self.catalog
                .streams()
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.event_time.clone())
        };
        batch(
            show_streams_schema(),
            vec![
                strings(streams.iter().map(|r| Some(r.name.clone()))),
                strings(streams.iter().map(|r| Some(r.source.clone()))),
                strings(streams.iter().map(|r| event_time(&r.name))),
                strings(streams.iter().map(|r| Some(r.description.clone()))),
            ],
        )
    }

    async fn show_tables(&self) -> Result<RecordBatch> {
        let relations = self.catalog.relations().await;
        let kind = |k: RelationKind| match k {
            RelationKind::Stream => "stream",
            RelationKind::Table => "table",
            RelationKind::View => "view",
        };
        batch(
            show_tables_schema(),
            vec![
                strings(relations.iter().map(|r| Some(r.name.clone()))),
                strings(relations.iter().map(|r| Some(kind(r.kind).to_string()))),
                strings(relations.iter().map(|r| Some(r.source.clone()))),
            ],
        )
    }

    fn show_jobs(&self, only_user: Option<&str>) -> Result<RecordBatch> {
        let jobs = self.jobs.lock().expect("jobs lock");
        let mut list: Vec<_> = jobs
            .iter()
            .filter(|(_, j)| only_user.is_none_or(|u| j.user == u))
            .collect();
        list.sort_by_key(|(_, j)| j.started);
        let micros = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64)
        };
        batch(
            show_jobs_schema(),
            vec![
                strings(list.iter().map(|(id, _)| Some(id.to_string()))),
                strings(list.iter().map(|(_, j)| Some(j.sql.clone()))),
                Arc::new(TimestampMicrosecondArray::from(
                    list.iter()
                        .map(|(_, j)| micros(j.started))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    list.iter()
                        .map(|(_, j)| j.rows.load(Ordering::Relaxed) as i64)
                        .collect::<Vec<_>>(),
                )),
                strings(
                    list.iter()
                        .map(|(_, j)| Some(j.session_id.clone()).filter(|s| !s.is_empty())),
                ),
                strings(
                    list.iter()
                        .map(|(_, j)| Some(j.user.clone()).filter(|u| !u.is_empty())),
                ),
            ],
        )
    }

    async fn describe(&self, name: &str) -> Result<RecordBatch> {
        let relation = self
            .catalog
            .relations()
            .await
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| EngineError::UnknownRelation {
                name: name.into(),
                position: 0,
            })?;
        let schema = types::wire_schema(&relation.schema);
        let fields = schema.fields();
        batch(
            describe_schema(),
            vec![
                strings(fields.iter().map(|f| Some(f.name().clone()))),
                strings(fields.iter().map(|f| Some(types::sql_type_name(f)))),
                Arc::new(BooleanArray::from(
                    fields.iter().map(|f| f.is_nullable()).collect::<Vec<_>>(),
                )),
            ],
        )
    }
}

/// The Arrow IPC schema message for `schema` (empty if it cannot be encoded).
fn ipc_schema(schema: &Schema) -> Vec<u8> {
    StreamWriter::try_new(Vec::new(), schema)
        .map(|mut w| std::mem::take(w.get_mut()))
        .unwrap_or_default()
}

fn strings(values: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|e| EngineError::Execution(e.to_string()))
}

fn text_schema(names: &[&str]) -> Vec<Field> {
    names
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect()
}

fn show_streams_schema() -> SchemaRef {
    Arc::new(Schema::new(text_schema(&[
        "name",
        "source",
        "event_time",
        "description",
    ])))
}

fn show_tables_schema() -> SchemaRef {
    Arc::new(Schema::new(text_schema(&["name", "kind", "source"])))
}

fn show_jobs_schema() -> SchemaRef {
    let mut fields = text_schema(&["query_id", "sql"]);
    fields.push(Field::new(
        "started_at",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        false,
    ));
    fields.push(Field::new("rows_sent", DataType::Int64, false));
    fields.push(Field::new("session_id", DataType::Utf8, true));
    fields.push(Field::new("user_name", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn describe_schema() -> SchemaRef {
    let mut fields = text_schema(&["column_name", "data_type"]);
    fields.push(Field::new("nullable", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

fn command_tag(statement: &Statement) -> &'static str {
    match statement {
        Statement::Query(_) | Statement::Describe(_) => "SELECT",
        Statement::ShowStreams | Statement::ShowTables | Statement::ShowJobs => "SHOW",
        Statement::CreateView { .. } => "CREATE VIEW",
        Statement::RenameView { .. } => "ALTER VIEW",
        Statement::DropView { .. } => "DROP VIEW",
        Statement::DropTable { .. } => "DROP TABLE",
    }
}

fn proto_schema(schema: &Schema, emit: Emit, tag: &str, arrow_ipc_schema: Vec<u8>) -> v1::Schema {
    v1::Schema {
        columns: schema.fields().iter().map(|f| types::column(f)).collect(),
        arrow_ipc_schema,
        bounded: emit == Emit::Snapshot,
        emit_mode: match emit {
            Emit::Snapshot => EmitMode::Snapshot,
            Emit::Changes => EmitMode::Changes,
            Emit::Final => EmitMode::Final,
        } as i32,
        command_tag: tag.into(),
    }
}

/// A bind parameter as a DataFusion value.
pub fn scalar_from_proto(v: &v1::TypedValue) -> Result<ScalarValue> {
    Ok(match &v.value {
        None | Some(Value::Null(_)) => ScalarValue::Null,
        Some(Value::Boolean(b)) => ScalarValue::Boolean(Some(*b)),
        Some(Value::Int64(i)) => ScalarValue::Int64(Some(*i)),
        Some(Value::Float64(f)) => ScalarValue::Float64(Some(*f)),
        Some(Value::Text(s)) => ScalarValue::Utf8(Some(s.clone())),
        Some(Value::Decimal(s)) => decimal_scalar(s)?,
        Some(Value::DateDays(d)) => ScalarValue::Date32(Some(*d)),
        Some(Value::TimestampMicros(t)) => ScalarValue::TimestampMicrosecond(Some(*t), None),
        Some(Value::Binary(b)) => ScalarValue::Binary(Some(b.clone())),
        Some(Value::Interval(i)) => ScalarValue::IntervalMonthDayNano(Some(
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(
                i.months,
                i.days,
                i.micros.saturating_mul(1000),
            ),
        )),
    })
}

fn decimal_scalar(s: &str) -> Result<ScalarValue> {
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = format!("{int}{frac}");
    let value: i128 = digits.parse().map_err(|_| {
        EngineError::Data(format!("invalid input syntax for type numeric: \"{s}\""))
    })?;
    let scale = frac.len() as i8;
    let precision = (digits.trim_start_matches('-').len() as u8)
        .clamp(1, 38)
        .max(scale as u8);
    Ok(ScalarValue::Decimal128(Some(value), precision, scale))
}
