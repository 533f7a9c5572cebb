//! The extended query protocol: Parse/Bind/Describe/Execute/Close/Sync.
//! Parameters travel to the engine as typed values (never spliced into
//! SQL); portals keep their engine stream open across Execute(max_rows)
//! calls, answering PortalSuspended, so drivers can stream continuous
//! queries row batch by row batch.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
    PortalSuspended,
};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse};
use pgwire::messages::PgWireBackendMessage as B;
use velo_proto::v1::{
    execute_query_response::Event, typed_value::Value, DescribeQueryRequest, LogicalType,
    TypedValue,
};

use super::local::Local;
use super::{decode_batch, decode_schema, statement, Session, TxState};
use tracing::Instrument;

use crate::encoding::{binary_columns, oid, row_description_with_formats, TextRows};
use crate::engine_client::QueryStream;
use crate::error::GatewayError;
use crate::protocol::connection::Connection;

/// Prepared statements a connection may hold at once.
const MAX_STATEMENTS: usize = 10_000;

pub struct Prepared {
    sql: String,
    param_oids: Vec<u32>,
    /// Parameter types and result schema from the engine, once asked.
    described: Option<(Vec<u32>, Option<SchemaRef>)>,
}

pub struct Portal {
    sql: String,
    params: Vec<TypedValue>,
    formats: Vec<i16>,
    schema: Option<SchemaRef>,
    run: Option<Running>,
    finished: bool,
}

struct Running {
    query: QueryStream,
    decoder: StreamDecoder,
    pending: Option<(RecordBatch, usize)>,
    done: bool,
    rows: u64,
    command: Option<String>,
}

#[derive(Default)]
pub struct Extended {
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
}

fn logical_oid(t: i32) -> u32 {
    match LogicalType::try_from(t).unwrap_or(LogicalType::Unspecified) {
        LogicalType::Boolean => oid::BOOL,
        LogicalType::Int16 => oid::INT2,
        LogicalType::Int32 => oid::INT4,
        LogicalType::Int64 => oid::INT8,
        LogicalType::Float32 => oid::FLOAT4,
        LogicalType::Float64 => oid::FLOAT8,
        LogicalType::Binary => oid::BYTEA,
        LogicalType::Date => oid::DATE,
        LogicalType::Timestamp => oid::TIMESTAMP,
        LogicalType::Timestamptz => oid::TIMESTAMPTZ,
        LogicalType::Decimal | LogicalType::ScaledInteger => oid::NUMERIC,
        LogicalType::Interval => oid::INTERVAL,
        LogicalType::Json => oid::JSONB,
        LogicalType::Time => oid::TIME,
        _ => oid::TEXT,
    }
}

fn invalid(kind: &str, text: &str) -> GatewayError {
    GatewayError::InvalidText(format!("invalid input syntax for type {kind}: \"{text}\""))
}

/// One bound parameter as the engine's typed value.
fn parameter(oid_: u32, binary: bool, value: Option<&Bytes>) -> Result<TypedValue, GatewayError> {
    let Some(bytes) = value else {
        return Ok(TypedValue {
            value: Some(Value::Null(true)),
        });
    };
    let value = if binary {
        let fixed = |n: usize| -> Result<&[u8], GatewayError> {
            (bytes.len() == n).then_some(&bytes[..]).ok_or_else(|| {
                GatewayError::Protocol(format!("binary parameter of type {oid_} must be {n} bytes"))
            })
        };
        match oid_ {
            oid::BOOL => Value::Boolean(fixed(1)?[0] != 0),
            oid::INT2 => Value::Int64(i16::from_be_bytes(fixed(2)?.try_into().expect("2")) as i64),
            oid::INT4 => Value::Int64(i32::from_be_bytes(fixed(4)?.try_into().expect("4")) as i64),
            oid::INT8 => Value::Int64(i64::from_be_bytes(fixed(8)?.try_into().expect("8"))),
            oid::FLOAT4 => {
                Value::Float64(f32::from_be_bytes(fixed(4)?.try_into().expect("4")) as f64)
            }
            oid::FLOAT8 => Value::Float64(f64::from_be_bytes(fixed(8)?.try_into().expect("8"))),
            oid::BYTEA => Value::Binary(bytes.to_vec()),
            oid::DATE => {
                Value::DateDays(i32::from_be_bytes(fixed(4)?.try_into().expect("4")) + 10_957)
            }
            oid::TIMESTAMP | oid::TIMESTAMPTZ => Value::TimestampMicros(
                i64::from_be_bytes(fixed(8)?.try_into().expect("8")) + 946_684_800_000_000,
            ),
            oid::NUMERIC => Value::Decimal(numeric_from_binary(bytes)?),
            oid::TEXT | 1043 | 19 | 0 | 705 => Value::Text(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| GatewayError::InvalidText("invalid UTF-8 in parameter".into()))?,
            ),
            other => {
                return Err(GatewayError::Unsupported(format!(
                    "binary parameters of type oid {other} are not supported; send them as text"
                )))
            }
        }
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| GatewayError::InvalidText("invalid UTF-8 in parameter".into()))?;
        match oid_ {
            oid::BOOL => Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "1" | "on" | "yes" | "y" => true,
                "f" | "false" | "0" | "off" | "no" | "n" => false,
                _ => return Err(invalid("boolean", text)),
            }),
            oid::INT2 | oid::INT4 | oid::INT8 => {
                Value::Int64(text.trim().parse().map_err(|_| invalid("bigint", text))?)
            }
            oid::FLOAT4 | oid::FLOAT8 => Value::Float64(match text.trim() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                t => t.parse().map_err(|_| invalid("double precision", text))?,
            }),
            oid::NUMERIC => {
                let t = text.trim();
                let ok = !t.is_empty()
                    && t.trim_start_matches('-').split('.').count() <= 2
                    && t.trim_start_matches('-')
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.');
                if !ok {
                    return Err(invalid("numeric", text));
                }
                Value::Decimal(t.to_string())
            }
            oid::DATE => {
                let d = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                    .map_err(|_| invalid("date", text))?;
                Value::DateDays(
                    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
                        as i32,
                )
            }
            oid::TIMESTAMP | oid::TIMESTAMPTZ => Value::TimestampMicros(parse_timestamp(text)?),
            oid::BYTEA => {
                let hex = text
                    .strip_prefix("\\x")
                    .ok_or_else(|| invalid("bytea", text))?;
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| invalid("bytea", text))?;
                Value::Binary(bytes)
            }
            _ => Value::Text(text.to_string()),
        }
    };
    Ok(TypedValue { value: Some(value) })
}

fn parse_timestamp(text: &str) -> Result<i64, GatewayError> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&t.replace(' ', "T")) {
        return Ok(dt.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(t, format) {
            return Ok(dt.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros());
    }
    Err(invalid("timestamp", text))
}

/// PostgreSQL's binary numeric → decimal text.
fn numeric_from_binary(b: &[u8]) -> Result<String, GatewayError> {
    let bad = || GatewayError::Protocol("malformed binary numeric parameter".into());
    if b.len() < 8 {
        return Err(bad());
    }
    let word = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
    let (ndigits, weight, sign, dscale) = (
        word(0) as usize,
        word(2) as i32,
        word(4) as u16,
        word(6) as usize,
    );
    if b.len() != 8 + 2 * ndigits {
        return Err(bad());
    }
    if sign == 0xC000 {
        return Err(GatewayError::InvalidText(
            "NaN is not a valid numeric parameter here".into(),
        ));
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect();
    let mut int = String::new();
    for k in 0..=weight.max(-1) {
        let d = digits.get(k as usize).copied().unwrap_or(0);
        if int.is_empty() {
            int = d.to_string();
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut k = weight + 1;
    while frac.len() < dscale {
        let d = if k < 0 {
            0
        } else {
            digits.get(k as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        k += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

impl Session {
    pub fn parse(&mut self, conn: &mut Connection, msg: Parse) -> Result<(), GatewayError> {
        let name = msg.name.unwrap_or_default();
        if !name.is_empty() && self.extended.statements.contains_key(&name) {
            return Err(GatewayError::DuplicateStatement(name));
        }
        if self.extended.statements.len() >= MAX_STATEMENTS
            && !self.extended.statements.contains_key(&name)
        {
            return Err(GatewayError::TooBusy(format!(
                "too many prepared statements on this connection (limit {MAX_STATEMENTS}); DEALLOCATE some"
            )));
        }
        self.extended.statements.insert(
            name,
            Prepared {
                sql: msg.query,
                param_oids: msg.type_oids,
                described: None,
            },
        );
        conn.send(B::ParseComplete(ParseComplete::new()));
        Ok(())
    }

    /// Asks the engine (once per statement) for parameter types and the
    /// result schema; local statements describe themselves.
    async fn describe_statement(
        &mut self,
        name: &str,
    ) -> Result<(Vec<u32>, Option<SchemaRef>), GatewayError> {
        let prepared = self
            .extended
            .statements
            .get(name)
            .ok_or_else(|| GatewayError::UnknownStatement(name.to_string()))?;
        if let Some(d) = &prepared.described {
            return Ok(d.clone());
        }
        let sql = prepared.sql.clone();
        let declared = prepared.param_oids.clone();
        let text = statement::strip_comments(&sql).trim().to_string();
        let words = statement::words(&text);
        let described = if self.is_local(&text, &words) {
            (declared, None)
        } else if Self::target(&text)? == crate::catalog::Target::Catalog {
            let (inferred, schema) = self.catalog.describe(&text, &self.session_info()).await?;
            let count = inferred.len().max(declared.len());
            let params = (0..count)
                .map(|i| match declared.get(i) {
                    Some(&o) if o != 0 => o,
                    _ => inferred.get(i).copied().unwrap_or(oid::TEXT),
                })
                .collect();
            (params, Some(schema))
        } else {
            let response = self
                .pool
                .describe(DescribeQueryRequest {
                    sql: text,
                    parameter_types: Vec::new(),
                    settings: Some(self.settings.to_engine(&self.user, &self.database)),
                })
                .await?;
            if let Some(e) = response.error {
                return Err(GatewayError::Engine(e));
            }
            let count = response.parameter_types.len().max(declared.len());
            let params = (0..count)
                .map(|i| match declared.get(i) {
                    Some(&o) if o != 0 => o,
                    _ => response
                        .parameter_types
                        .get(i)
                        .map_or(oid::TEXT, |t| logical_oid(*t)),
                })
                .collect();
            let schema = match response.schema {
                Some(s) if !s.columns.is_empty() => Some(decode_schema(
                    &mut StreamDecoder::new(),
                    &s.arrow_ipc_schema,
                )?),
                _ => None,
            };
            (params, schema)
        };
        if let Some(p) = self.extended.statements.get_mut(name) {
            p.described = Some(described.clone());
        }
        Ok(described)
    }

    /// Statements answered by the gateway itself (never sent to an engine).
    fn is_local(&self, text: &str, words: &[String]) -> bool {
        match words.first().map(String::as_str).unwrap_or("") {
            "" | "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint"
            | "release" | "set" | "reset" | "discard" | "listen" | "unlisten" | "deallocate"
            | "close" | "declare" | "fetch" | "move" => true,
            "show" => self.show(words).map(|r| r.is_some()).unwrap_or(true),
            "select" => self.select(text, words).is_some(),
            _ => false,
        }
    }

    pub async fn bind(&mut self, conn: &mut Connection, msg: Bind) -> Result<(), GatewayError> {
        let statement_name = msg.statement_name.unwrap_or_default();
        let portal_name = msg.portal_name.unwrap_or_default();
        let needs_types = {
            let p = self
                .extended
                .statements
                .get(&statement_name)
                .ok_or_else(|| GatewayError::UnknownStatement(statement_name.clone()))?;
            !msg.parameters.is_empty()
                && (p.param_oids.len() < msg.parameters.len() || p.param_oids.contains(&0))
        };
        let oids = if needs_types {
            self.describe_statement(&statement_name).await?.0
        } else {
            self.extended.statements[&statement_name].param_oids.clone()
        };
        let formats = &msg.parameter_format_codes;
        let params = msg
            .parameters
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let binary = match formats.as_slice() {
                    [] => false,
                    [one] => *one == 1,
                    many => many.get(i) == Some(&1),
                };
                parameter(oids.get(i).copied().unwrap_or(0), binary, v.as_ref())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sql = self.extended.statements[&statement_name].sql.clone();
        let schema = self.extended.statements[&statement_name]
            .described
            .as_ref()
            .and_then(|d| d.1.clone());
        self.extended.portals.insert(
            portal_name,
            Portal {
                sql,
                params,
                formats: msg.result_column_format_codes,
                schema,
                run: None,
                finished: false,
            },
        );
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
            let sql = self.extended.statements[&name].sql.clone();
            self.send_row_shape(conn, &sql, schema.as_ref(), &[]);
        } else {
            // A cursor opened with DECLARE is a portal too.
            if !self.extended.portals.contains_key(&name) {
                let schema = self
                    .cursor_schema(&name)
                    .ok_or_else(|| GatewayError::UnknownPortal(name.clone()))?;
                conn.send(B::RowDescription(row_description_with_formats(
                    &schema,
                    &[],
                )));
                return Ok(());
            }
            let portal = &self.extended.portals[&name];
            let (sql, formats, known) = (
                portal.sql.clone(),
                portal.formats.clone(),
                portal.schema.clone(),
            );
            let schema = match known {
                Some(s) => Some(s),
                None => {
                    // Describe the SQL through a temporary statement entry.
                    let key = format!("\0portal:{name}");
                    self.extended.statements.insert(
                        key.clone(),
                        Prepared {
                            sql: sql.clone(),
                            param_oids: Vec::new(),
                            described: None,
                        },
                    );
                    let described = self.describe_statement(&key).await;
                    self.extended.statements.remove(&key);
                    described?.1
                }
            };
            self.send_row_shape(conn, &sql, schema.as_ref(), &formats);
        }
        Ok(())
    }

    /// RowDescription for a statement's result, or NoData.
    fn send_row_shape(
        &self,
        conn: &mut Connection,
        sql: &str,
        schema: Option<&SchemaRef>,
        formats: &[i16],
    ) {
        let text = statement::strip_comments(sql).trim();
        let words = statement::words(text);
        let local = match words.first().map(String::as_str) {
            Some("show") => self.show(&words).ok().flatten(),
            Some("select") => self.select(text, &words),
            Some("fetch") => {
                let cursor = words.last().and_then(|c| self.cursor_schema(c));
                if let Some(schema) = cursor {
                    conn.send(B::RowDescription(row_description_with_formats(
                        &schema, formats,
                    )));
                } else {
                    conn.send(B::NoData(NoData::new()));
                }
                return;
            }
            _ => None,
        };
        match (local, schema) {
            (Some(Local::Rows(rows)), _) => conn.send(B::RowDescription(
                rows.row_description_with_formats(formats),
            )),
            (_, Some(schema)) if !schema.fields().is_empty() => conn.send(B::RowDescription(
                row_description_with_formats(schema, formats),
            )),
            _ => conn.send(B::NoData(NoData::new())),
        }
    }

    pub async fn execute(
        &mut self,
        conn: &mut Connection,
        msg: Execute,
    ) -> Result<(), GatewayError> {
        let name = msg.name.unwrap_or_default();
        let max_rows = if msg.max_rows <= 0 {
            u64::MAX
        } else {
            msg.max_rows as u64
        };
        let mut portal = self
            .extended
            .portals
            .remove(&name)
            .ok_or_else(|| GatewayError::UnknownPortal(name.clone()))?;
        let started = std::time::Instant::now();
        self.route = crate::admin::Route::Local;
        let span = tracing::info_span!("query", query_id = tracing::field::Empty);
        let result = self
            .execute_portal(conn, &mut portal, max_rows)
            .instrument(span.clone())
            .await;
        span.in_scope(|| self.observe(started, &result));
        self.extended.portals.insert(name, portal);
        result
    }

    async fn execute_portal(
        &mut self,
        conn: &mut Connection,
        portal: &mut Portal,
        max_rows: u64,
    ) -> Result<(), GatewayError> {
        if portal.finished {
            conn.send(B::CommandComplete(CommandComplete::new("SELECT 0".into())));
            return Ok(());
        }
        let text = statement::strip_comments(&portal.sql)
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_string();
        if text.is_empty() {
            conn.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
            return Ok(());
        }
        let words = statement::words(&text);
        let first = words.first().map(String::as_str).unwrap_or("");
        if self.tx == TxState::Failed && !matches!(first, "rollback" | "abort" | "commit" | "end") {
            return Err(GatewayError::TransactionAborted);
        }
        if portal.run.is_none() {
            match self.local(conn, &text, &words).await? {
                Some(Local::Command(tag)) => {
                    portal.finished = true;
                    conn.send(B::CommandComplete(CommandComplete::new(tag)));
                    return Ok(());
                }
                Some(Local::Rows(rows)) => {
                    portal.finished = true;
                    rows.send_with_formats(conn, &portal.formats);
                    return Ok(());
                }
                None => {}
            }
            match first {
                "declare" => {
                    portal.finished = true;
                    return self
                        .declare(conn, &text, &words, 0, portal.params.clone())
                        .await;
                }
                "fetch" | "move" => {
                    portal.finished = true;
                    return self.fetch(conn, &words, false, &portal.formats).await;
                }
                "copy" => {
                    return Err(GatewayError::Unsupported(
                        "COPY is supported only in the simple query protocol".into(),
                    ))
                }
                _ => {}
            }
            portal.run = Some(self.start_portal(conn, &text, portal).await?);
        }
        let token = self.cancel.begin_statement();
        let binary = binary_columns(
            &portal.formats,
            portal.schema.as_ref().map_or(0, |s| s.fields().len()),
        );
        let run = portal.run.as_mut().expect("started");
        let mut sent = 0u64;
        while sent < max_rows {
            if let Some((batch, at)) = run.pending.take() {
                let end = batch
                    .num_rows()
                    .min(at.saturating_add((max_rows - sent).min(usize::MAX as u64) as usize));
                let mut rows = TextRows::with_formats(&batch, binary.clone());
                for i in at..end {
                    conn.send(B::DataRow(rows.data_row(i)));
                }
                sent += (end - at) as u64;
                if end < batch.num_rows() {
                    run.pending = Some((batch, end));
                }
                conn.flush()
                    .await
                    .map_err(|_| GatewayError::Protocol("client gone".into()))?;
                continue;
            }
            if run.done {
                break;
            }
            match self.next_event(conn, &mut run.query, &token).await? {
                Some(Event::Batch(b)) => {
                    run.pending = Some((decode_batch(&mut run.decoder, b.arrow_ipc)?, 0))
                }
                Some(Event::Complete(c)) => {
                    run.done = true;
                    if super::is_ddl(&c.command_tag) {
                        self.catalog.invalidate();
                    }
                    if c.command_tag != "SELECT" && c.command_tag != "SHOW" {
                        run.command = Some(c.command_tag);
                    }
                }
                Some(Event::Error(e)) => return Err(GatewayError::Engine(e)),
                Some(_) => {}
                None => run.done = true,
            }
        }
        run.rows += sent;
        if !run.done || run.pending.is_some() {
            conn.send(B::PortalSuspended(PortalSuspended::new()));
            return Ok(());
        }
        let tag = run
            .command
            .clone()
            .unwrap_or_else(|| format!("SELECT {}", run.rows));
        portal.run = None;
        portal.finished = true;
        conn.send(B::CommandComplete(CommandComplete::new(tag)));
        Ok(())
    }

    async fn start_portal(
        &mut self,
        conn: &mut Connection,
        text: &str,
        portal: &mut Portal,
    ) -> Result<Running, GatewayError> {
        let token = self.cancel.begin_statement();
        let mut query = tokio::select! {
            q = self.start(text, portal.params.clone()) => q?,
            _ = token.cancelled() => return Err(GatewayError::Cancelled),
        };
        let mut decoder = StreamDecoder::new();
        loop {
            match self.next_event(conn, &mut query, &token).await? {
                Some(Event::Schema(s)) => {
                    let schema = decode_schema(&mut decoder, &s.arrow_ipc_schema)?;
                    portal.schema = Some(schema);
                    break;
                }
                Some(Event::Heartbeat(_)) => {}
                Some(Event::Error(e)) => return Err(GatewayError::Engine(e)),
                _ => {
                    return Err(GatewayError::EngineUnavailable(
                        "engine ended the query before describing it".into(),
                    ))
                }
            }
        }
        Ok(Running {
            query,
            decoder,
            pending: None,
            done: false,
            rows: 0,
            command: None,
        })
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

    pub fn deallocate(&mut self, name: &str) -> Result<(), GatewayError> {
        if name == "all" {
            self.extended.statements.clear();
            Ok(())
        } else {
            self.extended
                .statements
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| GatewayError::UnknownStatement(name.to_string()))
        }
    }

    pub fn discard_all(&mut self) {
        self.extended = Extended::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_numeric_parameters_decode() {
        let mut out = Vec::new();
        crate::encoding::binary::write_numeric(&mut out, -12345, 3);
        assert_eq!(numeric_from_binary(&out).unwrap(), "-12.345");
        out.clear();
        crate::encoding::binary::write_numeric(&mut out, 1_000_000, 2);
        assert_eq!(numeric_from_binary(&out).unwrap(), "10000.00");
        out.clear();
        crate::encoding::binary::write_numeric(&mut out, 5, 4);
        assert_eq!(numeric_from_binary(&out).unwrap(), "0.0005");
    }

    #[test]
    fn text_parameters_follow_their_types() {
        let b = Bytes::from_static(b"42");
        assert_eq!(
            parameter(oid::INT4, false, Some(&b)).unwrap().value,
            Some(Value::Int64(42))
        );
        let b = Bytes::from_static(b"2024-01-02 03:04:05.5");
        assert_eq!(
            parameter(oid::TIMESTAMP, false, Some(&b)).unwrap().value,
            Some(Value::TimestampMicros(1_704_164_645_500_000))
        );
        assert!(parameter(oid::INT8, false, Some(&Bytes::from_static(b"x"))).is_err());
        assert_eq!(
            parameter(oid::TEXT, false, None).unwrap().value,
            Some(Value::Null(true))
        );
    }
}
