//! Cursors over queries: `DECLARE c CURSOR FOR q` opens the query,
//! `FETCH n FROM c` pumps the next n rows as they arrive (this is how
//! psql's FETCH_COUNT watches a continuous query), `CLOSE` drops it, which
//! cancels it on its engine node.

use arrow::datatypes::SchemaRef;
use pgwire::messages::response::CommandComplete;
use pgwire::messages::PgWireBackendMessage as B;
use velo_proto::v1::TypedValue;

use super::rows::{RowPump, Sink};
use super::{Session, TxState};
use crate::codec::{binary_columns, row_description};
use crate::error::GatewayError;
use crate::sql::{Declare, Fetch};
use crate::wire::Connection;

/// An open cursor.
pub struct Cursor {
    pump: RowPump,
    /// WITH HOLD: survives the end of its transaction.
    pub holdable: bool,
    /// Where its query starts in the client's text (error positions).
    offset: u32,
}

impl Session {
    /// `offset`: where the DECLARE statement starts in its Query message.
    pub(super) async fn declare(
        &mut self,
        conn: &mut Connection,
        declare: &Declare,
        offset: u32,
        parameters: Vec<TypedValue>,
    ) -> Result<(), GatewayError> {
        if !declare.holdable && self.tx == TxState::Idle {
            return Err(GatewayError::NoActiveTransaction(
                "DECLARE CURSOR can only be used in transaction blocks".into(),
            ));
        }
        if self.cursors.contains_key(&declare.name) {
            return Err(GatewayError::DuplicateCursor(declare.name.clone()));
        }
        let offset = offset + declare.query_offset;
        let interrupt = self.interrupt();
        let pump = self
            .open(conn, &interrupt, &declare.query, parameters)
            .await
            .map_err(|e| e.shifted(offset))?;
        let cursor = Cursor {
            pump,
            holdable: declare.holdable,
            offset,
        };
        self.cursors.insert(declare.name.clone(), cursor);
        conn.send(B::CommandComplete(CommandComplete::new(
            "DECLARE CURSOR".into(),
        )));
        Ok(())
    }

    /// The result columns of a cursor (for Describe of a FETCH).
    pub(super) fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors
            .get(name)
            .map(|c| c.pump.schema().schema.clone())
    }

    /// FETCH or MOVE. `describe`: send RowDescription first (simple
    /// protocol); `formats`: the client's result formats (extended).
    pub(super) async fn fetch(
        &mut self,
        conn: &mut Connection,
        fetch: &Fetch,
        describe: bool,
        formats: &[i16],
    ) -> Result<(), GatewayError> {
        let mut cursor = self
            .cursors
            .remove(&fetch.cursor)
            .ok_or_else(|| GatewayError::UnknownCursor(fetch.cursor.clone()))?;
        let schema = cursor.pump.schema().schema.clone();
        if !fetch.moving && describe {
            conn.send(B::RowDescription(row_description(&schema)));
        }
        let binary = binary_columns(formats, schema.fields().len());
        let sink = if fetch.moving {
            Sink::Discard
        } else {
            Sink::Rows(&binary, self.settings.output_zone())
        };
        let interrupt = self.interrupt();
        let sent = cursor
            .pump
            .pump(conn, &interrupt, sink, fetch.count)
            .await
            .map_err(|e| e.shifted(cursor.offset))?;
        self.cursors.insert(fetch.cursor.clone(), cursor);
        let verb = if fetch.moving { "MOVE" } else { "FETCH" };
        conn.send(B::CommandComplete(CommandComplete::new(format!(
            "{verb} {sent}"
        ))));
        Ok(())
    }
}
