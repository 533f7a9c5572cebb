//! Values between Arrow and PostgreSQL: type OIDs for RowDescription,
//! DataRow bodies (text or binary per column), COPY text/CSV lines, and
//! Bind parameters decoded into the engine's typed values.

mod binary;
mod copy;
mod ipc;
mod params;
mod text;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::record_batch::RecordBatch;
use bytes::BytesMut;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};

use crate::pg::oid;
use text::ColumnText;

pub use copy::csv_header;
pub use ipc::IpcDecoder;
pub use params::{decode_parameter, logical_oid};

pub use velo_proto::PG_TYPE_KEY;

/// The type `field` declares in its metadata, where its values are that
/// type's in both text and binary form: strings for name, varchar, json,
/// "char" and pg_node_tree (and numeric, whose binary form is computed from
/// the text); 4-byte integers for oid and its aliases.
fn declared_type(field: &Field) -> Option<(u32, i16, i32)> {
    use oid::*;
    let declared: u32 = field.metadata().get(PG_TYPE_KEY)?.parse().ok()?;
    match (declared, field.data_type()) {
        (NAME, DataType::Utf8) => Some((NAME, 64, -1)),
        (CHAR, DataType::Utf8) => Some((CHAR, 1, -1)),
        (VARCHAR, DataType::Utf8) => Some((VARCHAR, -1, -1)),
        (JSON, DataType::Utf8) => Some((JSON, -1, -1)),
        (PG_NODE_TREE, DataType::Utf8) => Some((PG_NODE_TREE, -1, -1)),
        (NUMERIC, DataType::Utf8) => Some((NUMERIC, -1, -1)),
        (OID | REGPROC | REGTYPE | XID, DataType::Int32) => Some((declared, 4, -1)),
        _ => None,
    }
}

/// The PostgreSQL type of an Arrow field: (oid, typlen, typmod).
pub fn pg_type(field: &Field) -> (u32, i16, i32) {
    use oid::*;
    if let Some(declared) = declared_type(field) {
        return declared;
    }
    match field.data_type() {
        DataType::Boolean => (BOOL, 1, -1),
        DataType::Int16 => (INT2, 2, -1),
        DataType::Int32 => (INT4, 4, -1),
        DataType::Int64 => (INT8, 8, -1),
        DataType::Float32 => (FLOAT4, 4, -1),
        DataType::Float64 => (FLOAT8, 8, -1),
        DataType::Binary => (BYTEA, -1, -1),
        DataType::Date32 => (DATE, 4, -1),
        DataType::Time64(_) => (TIME, 8, -1),
        DataType::Timestamp(_, None) => (TIMESTAMP, 8, -1),
        DataType::Timestamp(_, Some(_)) => (TIMESTAMPTZ, 8, -1),
        DataType::Interval(_) => (INTERVAL, 16, -1),
        DataType::Decimal128(p, s) => (
            NUMERIC,
            -1,
            (((*p as i32) << 16) | (*s as i32 & 0xffff)) + 4,
        ),
        DataType::Map(..) | DataType::Struct(_) => (JSONB, -1, -1),
        DataType::List(e) => (array_oid(pg_type(e).0), -1, -1),
        _ => (TEXT, -1, -1),
    }
}

pub fn row_description(schema: &Schema) -> RowDescription {
    row_description_with_formats(schema, &[])
}

pub fn row_description_with_formats(schema: &Schema, formats: &[i16]) -> RowDescription {
    let binary = binary_columns(formats, schema.fields().len());
    RowDescription::new(
        schema
            .fields()
            .iter()
            .zip(binary)
            .map(|(f, b)| {
                let (type_id, type_size, type_modifier) = pg_type(f);
                FieldDescription::new(
                    f.name().clone(),
                    0,
                    0,
                    type_id,
                    type_size,
                    type_modifier,
                    b as i16,
                )
            })
            .collect(),
    )
}

/// Encodes the rows of one batch as DataRow bodies (text, or binary per
/// column) and as COPY lines, reusing one scratch buffer.
pub struct RowEncoder<'a> {
    pub(super) columns: Vec<ColumnText<'a>>,
    binary: Vec<bool>,
    pub(super) scratch: Vec<u8>,
}

/// Appends one backend message: its type byte, its length, then the body
/// `body` writes; the length is filled in once the body is there.
pub(super) fn write_message<R>(
    out: &mut BytesMut,
    message_type: u8,
    body: impl FnOnce(&mut BytesMut) -> R,
) -> R {
    let start = out.len();
    out.extend_from_slice(&[message_type, 0, 0, 0, 0]);
    let result = body(out);
    let length = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&length.to_be_bytes());
    result
}

/// Which columns a client wants in binary, from Bind's result format codes.
pub fn binary_columns(formats: &[i16], columns: usize) -> Vec<bool> {
    (0..columns)
        .map(|i| match formats {
            [] => false,
            [one] => *one == 1,
            many => many.get(i) == Some(&1),
        })
        .collect()
}

impl<'a> RowEncoder<'a> {
    pub fn new(batch: &'a RecordBatch) -> Self {
        Self::with_formats(batch, Vec::new())
    }

    pub fn with_formats(batch: &'a RecordBatch, binary: Vec<bool>) -> Self {
        Self::from_columns(batch.schema_ref().fields(), batch.columns(), binary)
    }

    /// timestamptz values printed in `zone` (the session's TimeZone)
    /// rather than UTC; binary values are UTC whatever the zone.
    pub fn in_zone(mut self, zone: chrono_tz::Tz) -> Self {
        for c in &mut self.columns {
            if let ColumnText::Timestamp(_, z @ Some(_)) = c {
                *z = Some(zone);
            }
        }
        self
    }

    fn from_columns(fields: &Fields, columns: &'a [ArrayRef], binary: Vec<bool>) -> Self {
        Self {
            columns: fields
                .iter()
                .zip(columns)
                .map(|(f, c)| ColumnText::of(f, c))
                .collect(),
            binary,
            scratch: Vec::with_capacity(256),
        }
    }

    pub fn data_row(&mut self, row: usize) -> DataRow {
        let mut data = BytesMut::with_capacity(self.columns.len() * 12);
        self.write_fields(row, &mut data);
        DataRow::new(data, self.columns.len() as i16)
    }

    /// The whole DataRow message for `row`, appended to `out`: rows are
    /// encoded straight into the output buffer, with no allocation per row.
    pub fn write_data_row(&mut self, row: usize, out: &mut BytesMut) {
        write_message(out, b'D', |out| {
            out.extend_from_slice(&(self.columns.len() as i16).to_be_bytes());
            self.write_fields(row, out);
        })
    }

    fn write_fields(&mut self, row: usize, data: &mut BytesMut) {
        for (i, c) in self.columns.iter().enumerate() {
            if c.is_null(row) {
                data.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                self.scratch.clear();
                if self.binary.get(i) == Some(&true) {
                    binary::write(c, row, &mut self.scratch);
                } else {
                    c.write(row, &mut self.scratch);
                }
                data.extend_from_slice(&(self.scratch.len() as i32).to_be_bytes());
                data.extend_from_slice(&self.scratch);
            }
        }
    }
}

#[cfg(test)]
mod data_row_tests {
    use std::sync::Arc;

    use arrow::array::{Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use pgwire::messages::Message;

    use super::*;

    #[test]
    fn rows_encoded_in_place_are_the_messages_pgwire_encodes() {
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("p", DataType::Decimal128(12, 2), true),
        ]);
        let price = Decimal128Array::from(vec![Some(12345), None, Some(-1)])
            .with_precision_and_scale(12, 2)
            .unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(-2), None])),
                Arc::new(price),
            ],
        )
        .unwrap();
        for binary in [vec![], vec![false, true, true]] {
            let mut rows = RowEncoder::with_formats(&batch, binary.clone());
            let (mut in_place, mut reference) = (BytesMut::new(), BytesMut::new());
            for i in 0..batch.num_rows() {
                rows.write_data_row(i, &mut in_place);
                rows.data_row(i).encode(&mut reference).unwrap();
            }
            assert_eq!(in_place, reference, "binary columns {binary:?}");
        }
    }
}

#[cfg(test)]
mod declared_type_tests {
    use std::collections::HashMap;

    use super::*;

    fn declaring(data_type: DataType, oid: u32) -> Field {
        Field::new("c", data_type, true)
            .with_metadata(HashMap::from([(PG_TYPE_KEY.into(), oid.to_string())]))
    }

    #[test]
    fn a_declared_type_is_used_only_where_the_values_fit_it() {
        assert_eq!(pg_type(&declaring(DataType::Utf8, oid::NAME)).0, oid::NAME);
        assert_eq!(pg_type(&declaring(DataType::Int32, oid::OID)).0, oid::OID);
        // An oid is 4 bytes in binary: 8-byte values keep their own type.
        assert_eq!(pg_type(&declaring(DataType::Int64, oid::OID)).0, oid::INT8);
        assert_eq!(pg_type(&declaring(DataType::Int32, oid::NAME)).0, oid::INT4);
    }
}
