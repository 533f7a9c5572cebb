//! Cursors over engine queries: `DECLARE c CURSOR FOR q` starts the query,
//! `FETCH n FROM c` streams the next n rows as they arrive (this is how
//! psql's FETCH_COUNT watches a continuous query), `CLOSE` cancels it.

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use pgwire::messages::response::CommandComplete;
use pgwire::messages::PgWireBackendMessage as B;
use velo_proto::v1::execute_query_response::Event;

use super::{decode_batch, decode_schema, position_error, Session, TxState};
use crate::encoding::{binary_columns, row_description, TextRows};
use crate::engine_client::QueryStream;
use crate::error::GatewayError;
use crate::protocol::connection::Connection;

pub struct Cursor {
    query: QueryStream,
    decoder: StreamDecoder,
    schema: SchemaRef,
    /// A batch partly sent, and how many of its rows went out.
    pending: Option<(RecordBatch, usize)>,
    done: bool,
    pub holdable: bool,
    offset: u32,
}

impl Session {
    pub(super) async fn declare(
        &mut self,
        conn: &mut Connection,
        text: &str,
        words: &[String],
        offset: u32,
        parameters: Vec<velo_proto::v1::TypedValue>,
    ) -> Result<(), GatewayError> {
        let name = words.get(1).cloned().ok_or_else(|| {
            GatewayError::Syntax("syntax error: DECLARE needs a cursor name".into())
        })?;
        let Some(cursor_at) = words.iter().position(|w| w == "cursor") else {
            return Err(GatewayError::Syntax("syntax error: expected CURSOR".into()));
        };
        let holdable = words[cursor_at..]
            .windows(2)
            .take_while(|w| w[0] != "for")
            .any(|w| w[0] == "with" && w[1] == "hold");
        if words[2..cursor_at].iter().any(|w| w == "binary") {
            return Err(GatewayError::Unsupported(
                "binary cursors are not supported".into(),
            ));
        }
        // The query is whatever follows the first top-level FOR.
        let lower = text.to_ascii_lowercase();
        let for_at = find_word(&lower, "for")
            .ok_or_else(|| GatewayError::Syntax("syntax error: expected FOR query".into()))?;
        let query_text = &text[for_at + 3..];
        let query_offset = offset + text[..for_at + 3].chars().count() as u32;
        if !holdable && self.tx == TxState::Idle {
            return Err(GatewayError::NoActiveTransaction(
                "DECLARE CURSOR can only be used in transaction blocks".into(),
            ));
        }
        if self.cursors.contains_key(&name) {
            return Err(GatewayError::DuplicateCursor(name));
        }
        let token = self.cancel.begin_statement();
        let mut query = tokio::select! {
            q = self.start(query_text.trim(), parameters) => q?,
            _ = token.cancelled() => return Err(GatewayError::Cancelled),
        };
        let mut decoder = StreamDecoder::new();
        let schema = loop {
            match self.next_event(conn, &mut query, &token).await? {
                Some(Event::Schema(s)) => break decode_schema(&mut decoder, &s.arrow_ipc_schema)?,
                Some(Event::Heartbeat(_)) => continue,
                Some(Event::Error(e)) => {
                    return Err(position_error(GatewayError::Engine(e), query_offset))
                }
                _ => {
                    return Err(GatewayError::EngineUnavailable(
                        "engine ended the query before describing it".into(),
                    ))
                }
            }
        };
        self.cursors.insert(
            name,
            Cursor {
                query,
                decoder,
                schema,
                pending: None,
                done: false,
                holdable,
                offset: query_offset,
            },
        );
        conn.send(B::CommandComplete(CommandComplete::new(
            "DECLARE CURSOR".into(),
        )));
        Ok(())
    }

    /// The result columns of a cursor (for Describe of a FETCH).
    pub(super) fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.get(name).map(|c| c.schema.clone())
    }

    /// `FETCH [FORWARD|NEXT] [n|ALL] [FROM|IN] name` (and MOVE, which skips).
    /// `describe`: send RowDescription first (simple protocol); `formats`:
    /// the client's result formats (extended protocol).
    pub(super) async fn fetch(
        &mut self,
        conn: &mut Connection,
        words: &[String],
        describe: bool,
        formats: &[i16],
    ) -> Result<(), GatewayError> {
        let moving = words[0] == "move";
        let mut rest: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let name = rest
            .pop()
            .ok_or_else(|| GatewayError::Syntax("syntax error: FETCH needs a cursor name".into()))?
            .to_string();
        rest.retain(|w| !matches!(*w, "from" | "in" | "forward"));
        let count: Option<u64> = match rest.as_slice() {
            [] | ["next"] => Some(1),
            ["all"] => None,
            [n] => Some(n.parse().map_err(|_| {
                GatewayError::Unsupported(format!("FETCH {n}: only forward fetching is supported"))
            })?),
            other => {
                return Err(GatewayError::Unsupported(format!(
                    "FETCH {}: only forward fetching is supported",
                    other.join(" ")
                )))
            }
        };
        let mut cursor = self
            .cursors
            .remove(&name)
            .ok_or_else(|| GatewayError::UnknownCursor(name.clone()))?;
        let result = self
            .fetch_rows(conn, &mut cursor, count, moving, describe, formats)
            .await;
        if result.is_ok() {
            self.cursors.insert(name, cursor);
        }
        let sent = result?;
        let tag = if moving {
            format!("MOVE {sent}")
        } else {
            format!("FETCH {sent}")
        };
        conn.send(B::CommandComplete(CommandComplete::new(tag)));
        Ok(())
    }

    async fn fetch_rows(
        &mut self,
        conn: &mut Connection,
        cursor: &mut Cursor,
        count: Option<u64>,
        moving: bool,
        describe: bool,
        formats: &[i16],
    ) -> Result<u64, GatewayError> {
        if !moving && describe {
            conn.send(B::RowDescription(row_description(&cursor.schema)));
        }
        let binary = binary_columns(formats, cursor.schema.fields().len());
        let token = self.cancel.begin_statement();
        let mut sent = 0u64;
        while count.is_none_or(|c| sent < c) {
            if let Some((batch, at)) = cursor.pending.take() {
                let want = count.map_or(usize::MAX, |c| (c - sent) as usize);
                let end = batch.num_rows().min(at.saturating_add(want));
                if !moving {
                    let mut rows = TextRows::with_formats(&batch, binary.clone());
                    for i in at..end {
                        conn.send(B::DataRow(rows.data_row(i)));
                    }
                }
                sent += (end - at) as u64;
                if end < batch.num_rows() {
                    cursor.pending = Some((batch, end));
                }
                conn.flush()
                    .await
                    .map_err(|_| GatewayError::Protocol("client gone".into()))?;
                continue;
            }
            if cursor.done {
                break;
            }
            match self.next_event(conn, &mut cursor.query, &token).await {
                Ok(Some(Event::Batch(b))) => {
                    let batch = decode_batch(&mut cursor.decoder, b.arrow_ipc)?;
                    cursor.pending = Some((batch, 0));
                }
                Ok(Some(Event::Complete(_))) | Ok(None) => cursor.done = true,
                Ok(Some(Event::Error(e))) => {
                    return Err(position_error(GatewayError::Engine(e), cursor.offset))
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }
}

/// Byte offset of `word` as a whole word outside quotes.
fn find_word(lower: &str, word: &str) -> Option<usize> {
    let bytes = lower.as_bytes();
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None => {
                if lower[i..].starts_with(word)
                    && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'_')
                    && bytes
                        .get(i + word.len())
                        .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_')
                {
                    return Some(i);
                }
            }
        }
    }
    None
}
