//! One client session: settings, transaction status, cursors, and the
//! simple-query loop that routes each statement either to a local answer or
//! to an engine node, streaming rows back as batches arrive.

pub mod settings;
pub mod statement;

mod cursor;
mod extended;
mod local;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ReadyForQuery,
    TransactionStatus,
};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage as B;
use tokio_util::sync::CancellationToken;
use tracing::{field::Empty, Instrument};
use velo_proto::v1::{execute_query_response::Event, ExecuteQueryRequest};

use crate::admin::{Route, METRICS};
use crate::cancel::CancelSlot;
use crate::catalog::{Catalog, SessionInfo, Target};
use crate::encoding::{row_description, TextRows};
use crate::engine_client::{EnginePool, QueryStream};
use crate::error::GatewayError;
use crate::protocol::connection::Connection;
use cursor::Cursor;
use local::Local;
pub use settings::Settings;
use statement::Piece;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Idle,
    InBlock,
    Failed,
}

pub struct Session {
    pub user: String,
    pub database: String,
    pub settings: Settings,
    tx: TxState,
    cursors: HashMap<String, Cursor>,
    pool: Arc<EnginePool>,
    catalog: Arc<Catalog>,
    cancel: Arc<CancelSlot>,
    query_seq: u64,
    pid: i32,
    extended: extended::Extended,
    /// Where the current statement is being answered (for metrics).
    route: Route,
}

/// Where a result's rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Rows,
    Copy { csv: bool, header: bool },
}

/// What one step of waiting on the engine produced.
enum Step {
    Event(Result<Option<Event>, GatewayError>),
    Cancelled,
    ClientGone,
}

impl Session {
    pub fn new(
        user: String,
        database: String,
        settings: Settings,
        pool: Arc<EnginePool>,
        catalog: Arc<Catalog>,
        cancel: Arc<CancelSlot>,
        pid: i32,
    ) -> Self {
        Self {
            user,
            database,
            settings,
            tx: TxState::Idle,
            cursors: HashMap::new(),
            pool,
            catalog,
            cancel,
            query_seq: 0,
            pid,
            extended: extended::Extended::default(),
            route: Route::Local,
        }
    }

    pub fn ready_for_query(&self) -> B {
        B::ReadyForQuery(ReadyForQuery::new(match self.tx {
            TxState::Idle => TransactionStatus::Idle,
            TxState::InBlock => TransactionStatus::Transaction,
            TxState::Failed => TransactionStatus::Error,
        }))
    }

    /// Runs a simple Query message: each statement in order, one result
    /// each; the first error ends the message. Ends with ReadyForQuery.
    pub async fn simple_query(&mut self, conn: &mut Connection, text: &str) -> std::io::Result<()> {
        let pieces = statement::split(text);
        let implicit = pieces.len() > 1 && self.tx == TxState::Idle;
        for piece in pieces {
            let started = std::time::Instant::now();
            self.route = Route::Local;
            let span = tracing::info_span!("query", query_id = Empty);
            let result = self.statement(conn, &piece).instrument(span.clone()).await;
            span.in_scope(|| self.observe(started, &result));
            if let Err(e) = result {
                if matches!(e, GatewayError::Protocol(_)) && e.to_string() == "client gone" {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                send_error(conn, &e, piece.offset);
                if self.tx == TxState::InBlock {
                    self.tx = TxState::Failed;
                }
                break;
            }
            conn.maybe_flush().await?;
        }
        if implicit && self.tx == TxState::Idle {
            self.close_portals_at_end_of_transaction();
        }
        conn.send(self.ready_for_query());
        conn.flush().await
    }

    /// An error in the middle of an extended-protocol batch: the
    /// transaction (if any) fails; the caller skips until Sync.
    pub fn extended_error(&mut self, conn: &mut Connection, e: &GatewayError) {
        send_error(conn, e, 0);
        if self.tx == TxState::InBlock {
            self.tx = TxState::Failed;
        }
    }

    async fn statement(
        &mut self,
        conn: &mut Connection,
        piece: &Piece,
    ) -> Result<(), GatewayError> {
        let text = statement::strip_comments(&piece.text);
        let lead = piece.text.chars().count() - text.chars().count();
        let offset = piece.offset + lead as u32;
        let text = text.trim_end();
        if text.is_empty() {
            conn.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
            return Ok(());
        }
        let words = statement::words(text);
        let first = words.first().map(String::as_str).unwrap_or("");
        if self.tx == TxState::Failed && !matches!(first, "rollback" | "abort" | "commit" | "end") {
            return Err(GatewayError::TransactionAborted);
        }
        match self.local(conn, text, &words).await? {
            Some(Local::Command(tag)) => {
                conn.send(B::CommandComplete(CommandComplete::new(tag)));
                return Ok(());
            }
            Some(Local::Rows(rows)) => {
                conn.send(B::RowDescription(rows.row_description()));
                rows.send(conn);
                return Ok(());
            }
            None => {}
        }
        match first {
            "copy" => match statement::parse_copy(text) {
                Some(Ok(copy)) => {
                    let sink = Sink::Copy {
                        csv: copy.csv,
                        header: copy.header,
                    };
                    self.run_engine(conn, &copy.query, offset + copy.query_offset, sink)
                        .await
                }
                Some(Err(m)) => Err(GatewayError::Unsupported(m)),
                None => unreachable!("first word is copy"),
            },
            "declare" => self.declare(conn, text, &words, offset, Vec::new()).await,
            "fetch" | "move" => self.fetch(conn, &words, true, &[]).await,
            _ => self.run_engine(conn, text, offset, Sink::Rows).await,
        }
    }

    fn observe(&self, started: std::time::Instant, result: &Result<(), GatewayError>) {
        let sqlstate = result.as_ref().err().map(|e| e.sqlstate());
        METRICS.query_finished(self.route, started.elapsed(), sqlstate);
        if let Some(code) = sqlstate {
            tracing::debug!(code, "statement failed");
        }
    }

    fn next_query_id(&mut self) -> String {
        self.query_seq += 1;
        format!(
            "gw-{:08x}-{}-{:04x}",
            self.pid,
            self.query_seq,
            rand::random::<u16>()
        )
    }

    /// What the catalog session needs to know of this session.
    fn session_info(&self) -> SessionInfo {
        SessionInfo {
            user: self.user.clone(),
            database: self.database.clone(),
            pid: self.pid,
            settings: self
                .settings
                .all()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    /// Where a statement runs; a statement needing both the catalog and
    /// the engine is refused.
    fn target(sql: &str) -> Result<Target, GatewayError> {
        match crate::catalog::route(sql) {
            Target::Mixed { catalog, engine } => Err(GatewayError::Unsupported(format!(
                "a statement cannot read both the catalog relation {catalog} and the stream or table {engine}; \
                 query them separately"
            ))),
            target => Ok(target),
        }
    }

    async fn start(
        &mut self,
        sql: &str,
        parameters: Vec<velo_proto::v1::TypedValue>,
    ) -> Result<QueryStream, GatewayError> {
        let query_id = self.next_query_id();
        tracing::Span::current().record("query_id", query_id.as_str());
        if Self::target(sql)? == Target::Catalog {
            self.route = Route::Catalog;
            let events = self
                .catalog
                .execute(sql, &parameters, &self.session_info())
                .await?;
            return Ok(QueryStream::local(query_id, events));
        }
        self.route = Route::Engine;
        let request = ExecuteQueryRequest {
            query_id,
            sql: sql.to_string(),
            parameters,
            settings: Some(self.settings.to_engine(&self.user, &self.database)),
            max_rows: 0,
        };
        self.pool.execute(request).await
    }

    /// Waits for the next engine event, watching for cancel and for the
    /// client going away.
    async fn next_event(
        &self,
        conn: &mut Connection,
        query: &mut QueryStream,
        token: &CancellationToken,
    ) -> Result<Option<Event>, GatewayError> {
        // Never wait on the engine with replies still buffered: a client
        // may be waiting for them (BindComplete, RowDescription) before it
        // does what makes the next row appear.
        if conn.has_pending_output() {
            conn.flush().await.map_err(client_gone)?;
        }
        let step = tokio::select! {
            ev = query.next() => Step::Event(ev),
            _ = token.cancelled() => Step::Cancelled,
            _ = conn.closed() => Step::ClientGone,
        };
        match step {
            Step::Event(ev) => ev,
            Step::Cancelled => {
                let handle = query.cancel_handle();
                tokio::spawn(handle.cancel());
                Err(GatewayError::Cancelled)
            }
            Step::ClientGone => Err(GatewayError::Protocol("client gone".into())),
        }
    }

    /// Forwards one statement to an engine node and streams its result.
    async fn run_engine(
        &mut self,
        conn: &mut Connection,
        sql: &str,
        offset: u32,
        sink: Sink,
    ) -> Result<(), GatewayError> {
        let token = self.cancel.begin_statement();
        let mut query = tokio::select! {
            q = self.start(sql, Vec::new()) => q?,
            _ = token.cancelled() => return Err(GatewayError::Cancelled),
        };
        let mut decoder = StreamDecoder::new();
        let mut schema: Option<SchemaRef> = None;
        let mut rows: u64 = 0;
        let mut line = Vec::with_capacity(64 * 1024);
        loop {
            let event = self
                .next_event(conn, &mut query, &token)
                .await
                .map_err(|e| position_error(e, offset))?;
            match event {
                Some(Event::Schema(s)) => {
                    let arrow_schema = decode_schema(&mut decoder, &s.arrow_ipc_schema)?;
                    if s.columns.is_empty() && s.command_tag != "SELECT" && s.command_tag != "SHOW"
                    {
                        continue; // a command: only its completion follows
                    }
                    match sink {
                        Sink::Rows => {
                            if !s.bounded {
                                conn.send(notice(&continuous_notice(&self.settings)));
                            }
                            conn.send(B::RowDescription(row_description(&arrow_schema)));
                        }
                        Sink::Copy { csv, header } => {
                            let n = arrow_schema.fields().len();
                            conn.send(B::CopyOutResponse(CopyOutResponse::new(
                                0,
                                n as i16,
                                vec![0; n],
                            )));
                            if csv && header {
                                let names: Vec<String> = arrow_schema
                                    .fields()
                                    .iter()
                                    .map(|f| csv_field(f.name()))
                                    .collect();
                                let header_line = format!("{}\n", names.join(","));
                                conn.send(B::CopyData(CopyData::new(
                                    header_line.into_bytes().into(),
                                )));
                            }
                        }
                    }
                    conn.flush().await.map_err(client_gone)?;
                    schema = Some(arrow_schema);
                }
                Some(Event::Batch(b)) => {
                    let batch = decode_batch(&mut decoder, b.arrow_ipc)?;
                    rows += batch.num_rows() as u64;
                    write_batch(conn, &batch, sink, &mut line);
                    conn.flush().await.map_err(client_gone)?;
                }
                Some(Event::Heartbeat(_)) => {}
                Some(Event::Complete(c)) => {
                    if is_ddl(&c.command_tag) {
                        self.catalog.invalidate();
                    }
                    let tag = match sink {
                        Sink::Copy { .. } => {
                            conn.send(B::CopyDone(CopyDone::new()));
                            format!("COPY {rows}")
                        }
                        Sink::Rows if schema.is_some() && c.command_tag == "SELECT" => {
                            format!("SELECT {rows}")
                        }
                        Sink::Rows if c.command_tag == "SHOW" => format!("SELECT {rows}"),
                        Sink::Rows => c.command_tag.clone(),
                    };
                    conn.send(B::CommandComplete(CommandComplete::new(tag)));
                    return Ok(());
                }
                Some(Event::Error(e)) => {
                    return Err(position_error(GatewayError::Engine(e), offset));
                }
                None => {
                    return Err(GatewayError::EngineUnavailable(format!(
                        "engine node {} ended the query without completing it",
                        query.node
                    )))
                }
            }
        }
    }

    /// COMMIT/ROLLBACK close cursors that are not WITH HOLD.
    fn close_portals_at_end_of_transaction(&mut self) {
        self.cursors.retain(|_, c| c.holdable);
    }

    fn parameter_status(&self, conn: &mut Connection, name: &str) {
        if let Some((k, v)) = self.settings.entry(name) {
            conn.send(B::ParameterStatus(ParameterStatus::new(
                k.to_string(),
                v.to_string(),
            )));
        }
    }
}

/// Commands that change the engine's relations.
fn is_ddl(tag: &str) -> bool {
    ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|k| tag.starts_with(k))
}

fn client_gone(_: std::io::Error) -> GatewayError {
    GatewayError::Protocol("client gone".into())
}

/// Engine positions are relative to the statement sent; clients expect them
/// relative to their whole Query message.
fn position_error(e: GatewayError, offset: u32) -> GatewayError {
    match e {
        GatewayError::Engine(mut q) if q.position > 0 => {
            q.position += offset;
            GatewayError::Engine(q)
        }
        other => other,
    }
}

pub fn send_error(conn: &mut Connection, e: &GatewayError, _offset: u32) {
    conn.send(B::ErrorResponse(ErrorResponse::new(e.fields())));
}

pub fn notice(message: &str) -> B {
    B::NoticeResponse(NoticeResponse::new(vec![
        (b'S', "NOTICE".into()),
        (b'V', "NOTICE".into()),
        (b'C', "00000".into()),
        (b'M', message.into()),
    ]))
}

pub fn warning(code: &str, message: &str) -> B {
    B::NoticeResponse(NoticeResponse::new(vec![
        (b'S', "WARNING".into()),
        (b'V', "WARNING".into()),
        (b'C', code.into()),
        (b'M', message.into()),
    ]))
}

fn continuous_notice(settings: &Settings) -> String {
    let from = settings.get("velostream.offset_reset").unwrap_or("latest");
    format!(
        "this is a continuous query (EMIT): rows arrive until it is cancelled, starting from the {from} offset. \
         psql shows rows only when a query ends: use COPY (query) TO STDOUT, or \\set FETCH_COUNT 100, to watch them arrive \
         (SET velostream.offset_reset = 'earliest' replays the stream)"
    )
}

fn csv_field(s: &str) -> String {
    if s.is_empty() || s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn decode_schema(decoder: &mut StreamDecoder, ipc: &[u8]) -> Result<SchemaRef, GatewayError> {
    if ipc.is_empty() {
        // A command (CREATE VIEW, ...): no columns.
        return Ok(std::sync::Arc::new(arrow::datatypes::Schema::empty()));
    }
    let mut buf = Buffer::from(ipc.to_vec());
    let bad = |e: &dyn std::fmt::Display| {
        GatewayError::EngineUnavailable(format!("invalid Arrow schema from engine: {e}"))
    };
    // The decoder only finishes the schema message when more bytes come, so
    // read the schema from the message itself.
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).map_err(|e| bad(&e))?;
    decoder.decode(&mut buf).map_err(|e| bad(&e))?;
    Ok(std::sync::Arc::new(schema))
}

fn decode_batch(decoder: &mut StreamDecoder, ipc: Vec<u8>) -> Result<RecordBatch, GatewayError> {
    let mut buf = Buffer::from(ipc);
    let bad = |e: &dyn std::fmt::Display| {
        GatewayError::EngineUnavailable(format!("invalid Arrow batch from engine: {e}"))
    };
    let mut batch = None;
    while !buf.is_empty() {
        if let Some(b) = decoder.decode(&mut buf).map_err(|e| bad(&e))? {
            batch = Some(b);
        }
    }
    batch.ok_or_else(|| bad(&"no batch in message"))
}

fn write_batch(conn: &mut Connection, batch: &RecordBatch, sink: Sink, line: &mut Vec<u8>) {
    let mut rows = TextRows::new(batch);
    match sink {
        Sink::Rows => {
            for i in 0..batch.num_rows() {
                conn.send(B::DataRow(rows.data_row(i)));
            }
        }
        Sink::Copy { csv, .. } => {
            // One CopyData per batch: clients accept any chunking.
            line.clear();
            for i in 0..batch.num_rows() {
                rows.copy_line(i, csv, line);
            }
            conn.send(B::CopyData(CopyData::new(bytes::Bytes::copy_from_slice(
                line,
            ))));
            conn.count_copy_rows(batch.num_rows());
        }
    }
}
