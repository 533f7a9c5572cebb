//! Arrow record batches → PostgreSQL: type OIDs for RowDescription, DataRow
//! bodies, and COPY text/CSV lines.

pub mod binary;
pub mod text;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::BytesMut;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};

use text::ColumnText;

pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const JSONB: u32 = 3802;
}

/// The PostgreSQL type of an Arrow field: (oid, typlen, typmod).
pub fn pg_type(field: &Field) -> (u32, i16, i32) {
    use oid::*;
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

/// The array type of an element type.
pub fn array_oid(element: u32) -> u32 {
    match element {
        oid::BOOL => 1000,
        oid::BYTEA => 1001,
        oid::INT2 => 1005,
        oid::INT4 => 1007,
        oid::TEXT => 1009,
        oid::INT8 => 1016,
        oid::FLOAT4 => 1021,
        oid::FLOAT8 => 1022,
        oid::TIMESTAMP => 1115,
        oid::DATE => 1182,
        oid::TIME => 1183,
        oid::TIMESTAMPTZ => 1185,
        oid::INTERVAL => 1187,
        oid::NUMERIC => 1231,
        oid::JSONB => 3807,
        _ => 1009,
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

/// Encodes the rows of a batch as DataRow messages (text, or binary per
/// column) and as COPY lines.
pub struct TextRows<'a> {
    columns: Vec<ColumnText<'a>>,
    binary: Vec<bool>,
    scratch: Vec<u8>,
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

impl<'a> TextRows<'a> {
    pub fn new(batch: &'a RecordBatch) -> Self {
        Self::from_columns(batch.columns(), Vec::new())
    }

    pub fn with_formats(batch: &'a RecordBatch, binary: Vec<bool>) -> Self {
        Self::from_columns(batch.columns(), binary)
    }

    fn from_columns(columns: &'a [ArrayRef], binary: Vec<bool>) -> Self {
        Self {
            columns: columns.iter().map(ColumnText::new).collect(),
            binary,
            scratch: Vec::with_capacity(256),
        }
    }

    pub fn data_row(&mut self, row: usize) -> DataRow {
        let mut data = BytesMut::with_capacity(self.columns.len() * 12);
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
        DataRow::new(data, self.columns.len() as i16)
    }

    /// One line of `COPY ... TO STDOUT` output (text or CSV), with newline.
    pub fn copy_line(&mut self, row: usize, csv: bool, out: &mut Vec<u8>) {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(if csv { b',' } else { b'\t' });
            }
            if c.is_null(row) {
                if !csv {
                    out.extend_from_slice(b"\\N");
                }
                continue;
            }
            self.scratch.clear();
            c.write(row, &mut self.scratch);
            if csv {
                let quote = self.scratch.is_empty()
                    || self
                        .scratch
                        .iter()
                        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
                if quote {
                    out.push(b'"');
                    for &b in &self.scratch {
                        if b == b'"' {
                            out.push(b'"');
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                } else {
                    out.extend_from_slice(&self.scratch);
                }
            } else {
                for &b in &self.scratch {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(b),
                    }
                }
            }
        }
        out.push(b'\n');
    }
}
