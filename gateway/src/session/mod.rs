//! One client session: settings, transaction status, prepared statements,
//! portals and cursors. Each statement is classified once (`sql`), then
//! answered locally, or opened on the catalog or an engine node and
//! streamed through the row pump. No sockets are opened here: the
//! frontend hands every message in, replies go out on its `Connection`.

mod cursor;
mod extended;
mod local;
mod quotas;
mod rows;
mod settings;
mod transaction;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, ReadyForQuery};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage as B;
use tokio_util::sync::CancellationToken;
use tracing::{field::Empty, Instrument};
use velo_proto::v1::{ExecuteQueryRequest, TypedValue};

use crate::audit::{Audit, StatementDetail, StatementEvent};
use crate::backend::{Backend, SessionInfo};
use crate::cancel::CancelSlot;
use crate::codec::{csv_header, row_description};
use crate::error::GatewayError;
use crate::metrics::{Route, METRICS};
use crate::pg::Response;
use crate::sql::{self, Piece, Statement};
use crate::wire::Connection;
use cursor::Cursor;
use local::Local;
pub use quotas::{Quotas, UserCounts};
use rows::{Interrupt, RowPump, Sink};
pub use settings::Settings;
pub use transaction::TxState;

/// Who is logged in and what they set up at startup.
pub struct Login {
    pub user: String,
    /// Sees every user's queries (`admin_users`).
    pub admin: bool,
    pub database: String,
    pub settings: Settings,
    /// The BackendKeyData pid clients see (and `pg_backend_pid()`).
    pub pid: i32,
    /// Sent with every engine query, for `CancelSession` (see `cancel`).
    pub session_id: String,
}

/// The SQL state of one connection, driven by the frontend's message loop.
pub struct Session {
    user: String,
    admin: bool,
    database: String,
    settings: Settings,
    tx: TxState,
    cursors: HashMap<String, Cursor>,
    backend: Backend,
    cancel: Arc<CancelSlot>,
    quotas: Arc<Quotas>,
    /// Queries this session holds open (for `quotas`).
    open_queries: Arc<AtomicUsize>,
    query_seq: u64,
    pid: i32,
    session_id: String,
    extended: extended::Extended,
    /// Where the current statement is being answered (for metrics).
    route: Route,
    /// The current statement's query id and engine node (for the audit
    /// log).
    query_id: Option<String>,
    node: Option<String>,
    shutdown: CancellationToken,
    audit: Audit,
}

/// How a simple-protocol query's rows are framed.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Rows,
    Copy { csv: bool, header: bool },
}

impl Session {
    pub fn new(
        login: Login,
        backend: Backend,
        cancel: Arc<CancelSlot>,
        quotas: Arc<Quotas>,
        shutdown: CancellationToken,
        audit: Audit,
    ) -> Self {
        Self {
            user: login.user,
            admin: login.admin,
            database: login.database,
            settings: login.settings,
            tx: TxState::Idle,
            cursors: HashMap::new(),
            backend,
            cancel,
            quotas,
            open_queries: Arc::default(),
            query_seq: 0,
            pid: login.pid,
            session_id: login.session_id,
            extended: extended::Extended::default(),
            route: Route::Local,
            query_id: None,
            node: None,
            shutdown,
            audit,
        }
    }

    /// Fires when the gateway's drain runs out of time: the session ends
    /// with 57P01.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn ready_for_query(&self) -> B {
        B::ReadyForQuery(ReadyForQuery::new(self.tx.status()))
    }

    /// How long the client may stay silent before the session ends, and
    /// the error it ends with (idle_session_timeout outside a transaction
    /// block, idle_in_transaction_session_timeout inside one).
    pub fn idle_timeout(&self) -> Option<(std::time::Duration, GatewayError)> {
        match self.tx {
            TxState::Idle => self
                .settings
                .timeout("idle_session_timeout")
                .map(|d| (d, GatewayError::IdleSessionTimeout)),
            TxState::InBlock | TxState::Failed => self
                .settings
                .timeout("idle_in_transaction_session_timeout")
                .map(|d| (d, GatewayError::IdleInTransactionTimeout)),
        }
    }

    /// The one way a failed statement is answered: its ErrorResponse, and
    /// an open transaction block fails (25P02 until it ends).
    pub fn fail(&mut self, conn: &mut Connection, e: &GatewayError) {
        conn.send(e.response().into_message());
        if self.tx == TxState::InBlock {
            self.tx = TxState::Failed;
        }
    }

    /// Runs a simple Query message: each statement in order, one result
    /// each; the first error ends the message. Ends with ReadyForQuery.
    /// Only a client that went away is an error here.
    pub async fn simple_query(
        &mut self,
        conn: &mut Connection,
        text: &str,
    ) -> Result<(), GatewayError> {
        let pieces = sql::split(text);
        let implicit = pieces.len() > 1 && self.tx == TxState::Idle;
        for piece in pieces {
            let statement = match piece.checked() {
                Ok(text) => sql::classify(text),
                Err(e) => Statement::Invalid(e),
            };
            let statement = match statement {
                Statement::Invalid(e) if piece.ends_at_semicolon(text) => {
                    Statement::Invalid(e.at_semicolon())
                }
                other => other,
            };
            let started = self.statement_starts(conn);
            let span = tracing::info_span!("query", query_id = Empty);
            let result = self
                .simple_statement(conn, &statement, piece)
                .instrument(span.clone())
                .await;
            span.in_scope(|| self.observe(conn, started, &result, piece.text));
            match result {
                Err(GatewayError::ClientGone) => return Err(GatewayError::ClientGone),
                Err(e) => {
                    self.fail(conn, &e);
                    break;
                }
                Ok(()) => conn.maybe_flush().await?,
            }
        }
        if implicit && self.tx == TxState::Idle {
            self.close_portals_at_end_of_transaction();
        }
        conn.send(self.ready_for_query());
        conn.flush().await?;
        Ok(())
    }

    async fn simple_statement(
        &mut self,
        conn: &mut Connection,
        statement: &Statement,
        piece: Piece<'_>,
    ) -> Result<(), GatewayError> {
        if let Statement::Empty = statement {
            conn.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
            return Ok(());
        }
        self.check_transaction(statement)?;
        match statement {
            Statement::Copy(copy) => {
                let framing = Framing::Copy {
                    csv: copy.csv,
                    header: copy.header,
                };
                self.run_query(conn, &copy.query, piece.offset + copy.query_offset, framing)
                    .await
            }
            Statement::Declare(declare) => {
                self.declare(conn, declare, piece.offset, Vec::new()).await
            }
            Statement::Fetch(fetch) => self.fetch(conn, fetch, true, &[]).await,
            Statement::Query => {
                self.run_query(conn, piece.text, piece.offset, Framing::Rows)
                    .await
            }
            Statement::Invalid(e) => Err(e.clone().shifted(piece.offset)),
            local => {
                match self.local(conn, local)? {
                    Local::Command(tag) => conn.send(B::CommandComplete(CommandComplete::new(tag))),
                    Local::Rows(rows) => rows.send(conn, &[], true),
                }
                Ok(())
            }
        }
    }

    /// In a failed transaction block only what ends the block runs.
    fn check_transaction(&self, statement: &Statement) -> Result<(), GatewayError> {
        if self.tx == TxState::Failed && !statement.ends_failed_transaction() {
            return Err(GatewayError::TransactionAborted);
        }
        Ok(())
    }

    /// Whether each statement gets an audit line (and so its query id and
    /// node are kept).
    fn audits_statements(&self) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|a| a.statements != StatementDetail::None)
    }

    /// A statement begins: (when, rows sent so far), for `observe`.
    fn statement_starts(&mut self, conn: &Connection) -> (Instant, u64) {
        self.route = Route::Local;
        self.query_id = None;
        self.node = None;
        (Instant::now(), conn.rows_sent())
    }

    /// A statement ended: metrics, the log, and the audit log.
    fn observe(
        &self,
        conn: &Connection,
        (started, rows_before): (Instant, u64),
        result: &Result<(), GatewayError>,
        text: &str,
    ) {
        let sqlstate = result.as_ref().err().map(|e| e.sqlstate());
        let elapsed = started.elapsed();
        METRICS.query_finished(self.route, elapsed, sqlstate);
        if let Some(code) = sqlstate {
            tracing::debug!(code, "statement failed");
        }
        match &self.audit {
            Some(audit) if self.audits_statements() => audit.statement(&StatementEvent {
                user: &self.user,
                pid: self.pid,
                route: self.route.label(),
                query_id: self.query_id.as_deref(),
                node: self.node.as_deref(),
                rows: conn.rows_sent() - rows_before,
                duration_ms: elapsed.as_secs_f64() * 1e3,
                sqlstate: sqlstate.unwrap_or("00000"),
                sql: (audit.statements == StatementDetail::Text).then_some(text),
            }),
            _ => {}
        }
    }

    /// What may stop the statement about to run: a cancel request, or its
    /// statement_timeout (counted from now: each Execute and FETCH anew).
    fn interrupt(&self) -> Interrupt {
        Interrupt::new(
            self.cancel.begin_statement(),
            self.settings.timeout("statement_timeout"),
            self.shutdown.clone(),
        )
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

    /// Opens `sql` on the catalog or an engine node, waiting for its
    /// schema (cancel and a vanishing client interrupt the wait).
    async fn open(
        &mut self,
        conn: &mut Connection,
        interrupt: &Interrupt,
        sql: &str,
        parameters: Vec<TypedValue>,
    ) -> Result<RowPump, GatewayError> {
        let query_id = self.next_query_id();
        tracing::Span::current().record("query_id", query_id.as_str());
        if self.audits_statements() {
            self.query_id = Some(query_id.clone());
        }
        self.route = self.backend.route(sql)?;
        let permit = self.quotas.acquire(&self.user, &self.open_queries)?;
        if self.route == Route::Catalog {
            let info = self.session_info();
            let start = self.backend.catalog_query(sql, &parameters, &info);
            return RowPump::open(conn, interrupt, permit, start).await;
        }
        let request = ExecuteQueryRequest {
            query_id,
            sql: sql.to_string(),
            parameters,
            settings: Some(
                self.settings
                    .to_engine(&self.user, &self.database, self.admin),
            ),
            max_rows: 0,
            session_id: self.session_id.clone(),
        };
        let pump =
            RowPump::open(conn, interrupt, permit, self.backend.engine_query(request)).await?;
        if self.audits_statements() {
            self.node = pump.node().map(str::to_string);
        }
        Ok(pump)
    }

    /// A query in the simple protocol: RowDescription (or CopyOutResponse),
    /// every row as it arrives, then CommandComplete.
    async fn run_query(
        &mut self,
        conn: &mut Connection,
        sql: &str,
        offset: u32,
        framing: Framing,
    ) -> Result<(), GatewayError> {
        let interrupt = self.interrupt();
        let mut pump = self
            .open(conn, &interrupt, sql, Vec::new())
            .await
            .map_err(|e| e.shifted(offset))?;
        let schema = pump.schema().clone();
        if !pump.is_command() {
            match framing {
                Framing::Rows => {
                    if !schema.bounded {
                        conn.send(
                            Response::notice(continuous_notice(&self.settings)).into_message(),
                        );
                    }
                    conn.send(B::RowDescription(row_description(&schema.schema)));
                }
                Framing::Copy { csv, header } => {
                    let n = schema.schema.fields().len();
                    conn.send(B::CopyOutResponse(CopyOutResponse::new(
                        0,
                        n as i16,
                        vec![0; n],
                    )));
                    if csv && header {
                        conn.send(B::CopyData(CopyData::new(
                            csv_header(&schema.schema).into(),
                        )));
                    }
                }
            }
            conn.flush().await?;
        }
        let sink = match framing {
            Framing::Rows => Sink::Rows(&[], self.settings.output_zone()),
            Framing::Copy { csv, .. } => Sink::Copy {
                csv,
                zone: self.settings.output_zone(),
            },
        };
        pump.pump(conn, &interrupt, sink, None)
            .await
            .map_err(|e| e.shifted(offset))?;
        let tag = match framing {
            Framing::Copy { .. } => {
                conn.send(B::CopyDone(CopyDone::new()));
                format!("COPY {}", pump.rows())
            }
            Framing::Rows => pump.completion_tag(),
        };
        conn.send(B::CommandComplete(CommandComplete::new(tag)));
        Ok(())
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

fn continuous_notice(settings: &Settings) -> String {
    let from = settings.get("velostream.offset_reset").unwrap_or("latest");
    format!(
        "this is a continuous query (EMIT): rows arrive until it is cancelled, starting from the {from} offset. \
         psql shows rows only when a query ends: use COPY (query) TO STDOUT, or \\set FETCH_COUNT 100, to watch them arrive \
         (SET velostream.offset_reset = 'earliest' replays the stream)"
    )
}
