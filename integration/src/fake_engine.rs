//! A test double of an engine node, for what a real `velo-engine` cannot
//! be made to do: stream hostile Arrow data, or fail queries at the
//! transport level while passing its health checks. It speaks the real
//! contract over real gRPC on a real socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::Schema;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};
use velo_proto::v1::{self, execute_query_response::Event};
use velo_proto::{EngineService, EngineServiceServer};

/// How the double answers every ExecuteQuery.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// UNAVAILABLE before any event (a node failing at the transport level).
    Unavailable,
    /// A zero-column result, then one batch that claims `rows` rows (with
    /// no bytes for them), then heartbeats until cancelled.
    ClaimsRows(usize),
    /// A schema, then a batch message of bytes that are not Arrow IPC.
    Garbage,
    /// A syntax error (42601) as the first event.
    QueryError,
    /// An empty result with a WARNING notice before its completion (what a
    /// snapshot that retention outran reports).
    Warns,
}

/// A running double; it stops when dropped.
pub struct FakeEngine {
    pub addr: String,
    /// ExecuteQuery calls received.
    pub executions: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeEngine {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let executions = Arc::new(AtomicUsize::new(0));
        let service = Double {
            behaviour,
            executions: executions.clone(),
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(EngineServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            addr,
            executions,
            _stop: stop,
        }
    }

    pub fn executions(&self) -> usize {
        self.executions.load(Ordering::SeqCst)
    }
}

struct Double {
    behaviour: Behaviour,
    executions: Arc<AtomicUsize>,
}

fn event(event: Event) -> Result<v1::ExecuteQueryResponse, Status> {
    Ok(v1::ExecuteQueryResponse { event: Some(event) })
}

/// A zero-column IPC stream: its schema message, and one batch message
/// claiming `rows` rows.
fn zero_column_messages(rows: usize) -> (Vec<u8>, Vec<u8>) {
    let schema = Arc::new(Schema::empty());
    let batch = RecordBatch::try_new_with_options(
        schema.clone(),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .unwrap();
    let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
    let schema_ipc = std::mem::take(writer.get_mut());
    writer.write(&batch).unwrap();
    (schema_ipc, std::mem::take(writer.get_mut()))
}

fn schema_event(ipc: Vec<u8>) -> Event {
    Event::Schema(v1::Schema {
        arrow_ipc_schema: ipc,
        bounded: false,
        command_tag: "SELECT".into(),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl EngineService for Double {
    type ExecuteQueryStream = ReceiverStream<Result<v1::ExecuteQueryResponse, Status>>;

    async fn execute_query(
        &self,
        _request: Request<v1::ExecuteQueryRequest>,
    ) -> Result<Response<Self::ExecuteQueryStream>, Status> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(4);
        match self.behaviour {
            Behaviour::Unavailable => return Err(Status::unavailable("node failing")),
            Behaviour::QueryError => {
                let _ = tx
                    .send(event(Event::Error(v1::QueryError {
                        sqlstate: "42601".into(),
                        message: "syntax error from the double".into(),
                        ..Default::default()
                    })))
                    .await;
            }
            Behaviour::Warns => {
                let (schema, _) = zero_column_messages(0);
                for e in [
                    schema_event(schema),
                    Event::Notice(v1::Notice {
                        severity: "WARNING".into(),
                        sqlstate: "01000".into(),
                        message: "snapshot of kafka://trades skipped 12 events".into(),
                        detail: "Events deleted by partition: partition 0: 12.".into(),
                    }),
                    Event::Complete(v1::Complete {
                        command_tag: "SELECT".into(),
                        ..Default::default()
                    }),
                ] {
                    let _ = tx.send(event(e)).await;
                }
            }
            Behaviour::Garbage => {
                let (schema, _) = zero_column_messages(1);
                let _ = tx.send(event(schema_event(schema))).await;
                let _ = tx
                    .send(event(Event::Batch(v1::RecordBatch {
                        arrow_ipc: vec![0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 1, 2, 3, 4],
                        num_rows: 1,
                        node_time_micros: 0,
                    })))
                    .await;
            }
            Behaviour::ClaimsRows(rows) => {
                tokio::spawn(async move {
                    let (schema, batch) = zero_column_messages(rows);
                    let _ = tx.send(event(schema_event(schema))).await;
                    let _ = tx
                        .send(event(Event::Batch(v1::RecordBatch {
                            arrow_ipc: batch,
                            num_rows: rows as u64,
                            node_time_micros: 0,
                        })))
                        .await;
                    while tx
                        .send(event(Event::Heartbeat(v1::Heartbeat::default())))
                        .await
                        .is_ok()
                    {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                });
            }
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn describe_query(
        &self,
        _request: Request<v1::DescribeQueryRequest>,
    ) -> Result<Response<v1::DescribeQueryResponse>, Status> {
        // No parameters, and (like a command) no columns to describe.
        Ok(Response::new(v1::DescribeQueryResponse::default()))
    }

    async fn cancel_query(
        &self,
        _request: Request<v1::CancelQueryRequest>,
    ) -> Result<Response<v1::CancelQueryResponse>, Status> {
        Ok(Response::new(v1::CancelQueryResponse::default()))
    }

    async fn cancel_session(
        &self,
        _request: Request<v1::CancelSessionRequest>,
    ) -> Result<Response<v1::CancelSessionResponse>, Status> {
        Ok(Response::new(v1::CancelSessionResponse::default()))
    }

    async fn list_relations(
        &self,
        _request: Request<v1::ListRelationsRequest>,
    ) -> Result<Response<v1::ListRelationsResponse>, Status> {
        Ok(Response::new(v1::ListRelationsResponse {
            catalog_version: 1,
            ..Default::default()
        }))
    }

    async fn node_info(
        &self,
        _request: Request<v1::NodeInfoRequest>,
    ) -> Result<Response<v1::NodeInfoResponse>, Status> {
        Ok(Response::new(v1::NodeInfoResponse::default()))
    }
}
