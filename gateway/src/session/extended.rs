//! The extended query protocol: Parse/Bind/Describe/Execute/Close/Sync.
//! A statement is classified once, at Parse. Parameters travel to the
//! engine as typed values (never spliced into SQL); a portal keeps its row
//! pump open across Execute(max_rows) calls, answering PortalSuspended,
//! so drivers can stream continuous queries batch by batch.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
    PortalSuspended,
};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse};
use pgwire::messages::PgWireBackendMessage as B;
use tracing::Instrument;
use velo_proto::v1::TypedValue;

use super::local::Local;
use super::rows::{RowPump, Sink};
use super::Framing;
use super::{Session, TxState};
use crate::backend::Described;
use crate::codec::{binary_columns, decode_parameter, row_description_with_formats};
use crate::error::GatewayError;
use crate::metrics::Route;
use crate::pg::oid;
use crate::sql::{self, Statement};
use crate::wire::Connection;

/// Prepared statements a connection may hold at once.
const MAX_STATEMENTS: usize = 10_000;

/// A statement's text (comments and trailing `;` trimmed) and what it is.
struct Parsed {
    text: String,
    statement: Statement,
}

struct Prepared {
    parsed: Arc<Parsed>,
    param_oids: Vec<u32>,
    /// Parameter types and result schema, once asked.
    described: Option<Described>,
}

struct Portal {
    parsed: Arc<Parsed>,
    params: Vec<TypedValue>,
    formats: Vec<i16>,
    schema: Option<SchemaRef>,
    pump: Option<RowPump>,
    finished: bool,
}

/// A connection's prepared statements and portals.
#[derive(Default)]
pub struct Extended {
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
}

/// Declared parameter types win; the backend's inference fills the rest.
fn merge_parameter_types(declared: &[u32], inferred: &[u32]) -> Vec<u32> {
    (0..declared.len().max(inferred.len()))
        .map(|i| match declared.get(i) {
            Some(&o) if o != oid::UNSPECIFIED => o,
            _ => inferred
                .get(i)
                .copied()
                .filter(|&o| o != oid::UNSPECIFIED)
                .unwrap_or(oid::TEXT),
        })
        .collect()
}

impl Session {
    pub fn parse(&mut self, conn: &mut Connection, msg: Parse) -> Result<(), GatewayError> {
        let name = msg.name.unwrap_or_default();
        let statements = &mut self.extended.statements;
        if !name.is_empty() && statements.contains_key(&name) {
            return Err(GatewayError::DuplicateStatement(name));
        }
        if statements.len() >= MAX_STATEMENTS && !statements.contains_key(&name) {
            return Err(GatewayError::TooBusy(format!(
                "too many prepared statements on this connection (limit {MAX_STATEMENTS}); DEALLOCATE some"
            )));
        }
        let text = sql::single(&msg.query).checked()?.to_string();
        let statement = sql::classify(&text);
        statements.insert(
            name,
            Prepared {
                parsed: Arc::new(Parsed { text, statement }),
                param_oids: msg.type_oids,
                described: None,
            },
        );
        conn.send(B::ParseComplete(ParseComplete::new()));
        Ok(())
    }

    /// Parameter types and result schema of a statement: local statements
    /// describe themselves; others ask the catalog or an engine node.
    async fn describe_parsed(
        &self,
        parsed: &Parsed,
        declared: &[u32],
    ) -> Result<Described, GatewayError> {
        // COPY takes no parameters and describes no rows (its data goes
        // in CopyData), as in PostgreSQL.
        if parsed.statement.is_local() || matches!(parsed.statement, Statement::Copy(_)) {
            return Ok((declared.to_vec(), None));
        }
        let (inferred, schema) = match self.backend.route(&parsed.text)? {
            Route::Catalog => {
                self.backend
                    .describe_catalog(&parsed.text, &self.session_info())
                    .await?
            }
            _ => {
                let settings = self
                    .settings
                    .to_engine(&self.user, &self.database, self.admin);
                self.backend.describe_engine(&parsed.text, settings).await?
            }
        };
        Ok((merge_parameter_types(declared, &inferred), schema))
    }

    /// Describes a prepared statement once and remembers the answer.
    async fn describe_statement(&mut self, name: &str) -> Result<Described, GatewayError> {
        let prepared = self
            .extended
            .statements
            .get(name)
            .ok_or_else(|| GatewayError::UnknownStatement(name.to_string()))?;
        if let Some(d) = &prepared.described {
            return Ok(d.clone());
        }
        let (parsed, declared) = (prepared.parsed.clone(), prepared.param_oids.clone());
        let described = self.describe_parsed(&parsed, &declared).await?;
        if let Some(p) = self.extended.statements.get_mut(name) {
            p.described = Some(described.clone());
        }
        Ok(described)
    }

    pub async fn bind(&mut self, conn: &mut Connection, msg: Bind) -> Result<(), GatewayError> {
        let statement_name = msg.statement_name.unwrap_or_default();
        let prepared = self
            .extended
            .statements
            .get(&statement_name)
            .ok_or_else(|| GatewayError::UnknownStatement(statement_name.clone()))?;
        let needs_types = !msg.parameters.is_empty()
            && (prepared.param_oids.len() < msg.parameters.len()
                || prepared.param_oids.contains(&oid::UNSPECIFIED));
        let oids = if needs_types {
            self.describe_statement(&statement_name).await?.0
        } else {
            prepared.param_oids.clone()
        };
        let binary = binary_columns(&msg.parameter_format_codes, msg.parameters.len());
        let params = msg
            .parameters
            .iter()
            .zip(binary)
            .enumerate()
            .map(|(i, (value, binary))| {
                decode_parameter(
                    oids.get(i).copied().unwrap_or(oid::UNSPECIFIED),
                    binary,
                    value.as_ref(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prepared = &self.extended.statements[&statement_name];
        let portal = Portal {
            parsed: prepared.parsed.clone(),
            params,
            formats: msg.result_column_format_codes,
            schema: prepared.described.as_ref().and_then(|d| d.1.clone()),
            pump: None,
            finished: false,
        };
        self.extended
            .portals
            .insert(msg.portal_name.unwrap_or_default(), portal);
        conn.send(B::BindComplete(BindComplete::new()));
        Ok(())
    }

    pub async fn describe(
        &mut self,
        conn: &mut Connection,
        msg: Describe,
    ) -> Result<(), GatewayError> {
        let name = msg.name.unwrap_or_default();
        if msg.target_type == b'S' {
            let (params, schema) = self.describe_statement(&name).await?;
            conn.send(B::ParameterDescription(ParameterDescription::new(params)));
            let parsed = self.extended.statements[&name].parsed.clone();
            self.send_row_shape(conn, &parsed.statement, schema.as_ref(), &[]);
            return Ok(());
        }
        let Some(portal) = self.extended.portals.get(&name) else {
            // A cursor opened with DECLARE is a portal too.
            let schema = self
                .cursor_schema(&name)
                .ok_or_else(|| GatewayError::UnknownPortal(name.clone()))?;
            conn.send(B::RowDescription(row_description_with_formats(
                &schema,
                &[],
            )));
            return Ok(());
        };
        let (parsed, formats, known) = (
            portal.parsed.clone(),
            portal.formats.clone(),
            portal.schema.clone(),
        );
        let schema = match known {
            Some(s) => Some(s),
            None => self.describe_parsed(&parsed, &[]).await?.1,
        };
        self.send_row_shape(conn, &parsed.statement, schema.as_ref(), &formats);
        Ok(())
    }

    /// RowDescription for a statement's result, or NoData.
    fn send_row_shape(
        &self,
        conn: &mut Connection,
        statement: &Statement,
        schema: Option<&SchemaRef>,
        formats: &[i16],
    ) {
        let description = match statement {
            Statement::ShowAll | Statement::Show(_) | Statement::LocalSelect(_) => self
                .local_rows(statement)
                .ok()
                .map(|rows| rows.row_description(formats)),
            Statement::Fetch(fetch) => self
                .cursor_schema(&fetch.cursor)
                .map(|schema| row_description_with_formats(&schema, formats)),
            _ => schema
                .filter(|s| !s.fields().is_empty())
                .map(|schema| row_description_with_formats(schema, formats)),
        };
        conn.send(match description {
            Some(d) => B::RowDescription(d),
            None => B::NoData(NoData::new()),
        });
    }

    pub async fn execute(
        &mut self,
        conn: &mut Connection,
        msg: Execute,
    ) -> Result<(), GatewayError> {
        let name = msg.name.unwrap_or_default();
        let limit = u64::try_from(msg.max_rows).ok().filter(|&n| n > 0);
        let mut portal = self
            .extended
            .portals
            .remove(&name)
            .ok_or_else(|| GatewayError::UnknownPortal(name.clone()))?;
        let started = self.statement_starts(conn);
        let span = tracing::info_span!("query", query_id = tracing::field::Empty);
        let result = self
            .execute_portal(conn, &mut portal, limit)
            .instrument(span.clone())
            .await;
        span.in_scope(|| self.observe(conn, started, &result, &portal.parsed.text));
        self.extended.portals.insert(name, portal);
        result
    }

    async fn execute_portal(
        &mut self,
        conn: &mut Connection,
        portal: &mut Portal,
        limit: Option<u64>,
    ) -> Result<(), GatewayError> {
        if portal.finished {
            conn.send(B::CommandComplete(CommandComplete::new("SELECT 0".into())));
            return Ok(());
        }
        let parsed = portal.parsed.clone();
        if let Statement::Empty = parsed.statement {
            conn.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
            return Ok(());
        }
        self.check_transaction(&parsed.statement)?;
        let interrupt = self.interrupt();
        if portal.pump.is_none() {
            match &parsed.statement {
                Statement::Declare(declare) => {
                    portal.finished = true;
                    return self.declare(conn, declare, 0, portal.params.clone()).await;
                }
                Statement::Fetch(fetch) => {
                    portal.finished = true;
                    return self.fetch(conn, fetch, false, &portal.formats).await;
                }
                Statement::Copy(copy) => {
                    // As in PostgreSQL: the whole COPY, whatever the row
                    // limit, then CommandComplete.
                    portal.finished = true;
                    let framing = Framing::Copy {
                        csv: copy.csv,
                        header: copy.header,
                    };
                    return self
                        .run_query(conn, &copy.query, copy.query_offset, framing)
                        .await;
                }
                Statement::Query => {
                    let pump = self
                        .open(conn, &interrupt, &parsed.text, portal.params.clone())
                        .await?;
                    portal.schema = Some(pump.schema().schema.clone());
                    portal.pump = Some(pump);
                }
                local => {
                    portal.finished = true;
                    match self.local(conn, local)? {
                        Local::Command(tag) => {
                            conn.send(B::CommandComplete(CommandComplete::new(tag)))
                        }
                        Local::Rows(rows) => rows.send(conn, &portal.formats, false),
                    }
                    return Ok(());
                }
            }
        }
        let pump = portal.pump.as_mut().expect("opened above");
        let binary = binary_columns(&portal.formats, pump.schema().schema.fields().len());
        let zone = self.settings.output_zone();
        pump.pump(conn, &interrupt, Sink::Rows(&binary, zone), limit)
            .await?;
        if !pump.is_finished() {
            conn.send(B::PortalSuspended(PortalSuspended::new()));
            return Ok(());
        }
        let tag = pump.completion_tag();
        portal.pump = None;
        portal.finished = true;
        conn.send(B::CommandComplete(CommandComplete::new(tag)));
        Ok(())
    }

    pub fn close(&mut self, conn: &mut Connection, msg: Close) {
        let name = msg.name.unwrap_or_default();
        if msg.target_type == b'S' {
            self.extended.statements.remove(&name);
        } else {
            self.extended.portals.remove(&name);
        }
        conn.send(B::CloseComplete(CloseComplete::new()));
    }

    /// Sync ends an implicit transaction: its portals go (cancelling any
    /// engine query still open).
    pub fn sync(&mut self) {
        if self.tx == TxState::Idle {
            self.extended.portals.clear();
        }
    }

    /// DEALLOCATE name, or every statement for `None`.
    pub(super) fn deallocate(&mut self, name: Option<&str>) -> Result<(), GatewayError> {
        match name {
            None => {
                self.extended.statements.clear();
                Ok(())
            }
            Some(name) => self
                .extended
                .statements
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| GatewayError::UnknownStatement(name.to_string())),
        }
    }

    pub(super) fn discard_all(&mut self) {
        self.extended = Extended::default();
    }
}
