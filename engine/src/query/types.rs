//! The Arrow types that go on the wire, and their contract descriptions.
//! DataFusion may produce many physical variants (views, large offsets,
//! other time units); clients see one canonical type per value kind.

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use velo_proto::v1::{Column, LogicalType};

use crate::config::LOGICAL_TYPE_KEY;
use crate::error::{EngineError, Result};

pub fn wire_type(dt: &DataType) -> DataType {
    use DataType::*;
    match dt {
        Int8 | UInt8 => Int16,
        UInt16 => Int32,
        UInt32 => Int64,
        UInt64 => Decimal128(20, 0),
        Float16 => Float32,
        LargeUtf8 | Utf8View => Utf8,
        LargeBinary | BinaryView | FixedSizeBinary(_) => Binary,
        Timestamp(_, tz) => Timestamp(TimeUnit::Microsecond, tz.clone()),
        Date64 => Timestamp(TimeUnit::Microsecond, None),
        Time32(_) | Time64(_) => Time64(TimeUnit::Microsecond),
        Interval(_) | Duration(_) => Interval(IntervalUnit::MonthDayNano),
        Dictionary(_, value) => wire_type(value),
        Decimal32(p, s) | Decimal64(p, s) => Decimal128(*p, *s),
        Decimal256(p, s) => Decimal128((*p).min(38), *s),
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            List(Arc::new(Field::new("item", wire_type(f.data_type()), true)))
        }
        Struct(fields) => Struct(
            fields
                .iter()
                .map(|f| wire_field(f))
                .collect::<Vec<_>>()
                .into(),
        ),
        other => other.clone(),
    }
}

fn wire_field(f: &Field) -> Field {
    Field::new(f.name(), wire_type(f.data_type()), f.is_nullable())
        .with_metadata(f.metadata().clone())
}

pub fn wire_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| wire_field(f))
            .collect::<Vec<_>>(),
    ))
}

/// Casts `batch` to `schema` where its columns differ.
pub fn to_wire(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type()).map_err(|e| EngineError::Data(e.to_string()))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| EngineError::Execution(e.to_string()))
}

/// A text column of numbers whose scale varies by value (`avg`).
fn declares_numeric(f: &Field) -> bool {
    f.metadata()
        .get(velo_proto::PG_TYPE_KEY)
        .map(String::as_str)
        == Some("1700")
}

pub fn logical_type(f: &Field) -> LogicalType {
    use DataType::*;
    match f.data_type() {
        Boolean => LogicalType::Boolean,
        Int16 => LogicalType::Int16,
        Int32 => LogicalType::Int32,
        Int64 => LogicalType::Int64,
        Float32 => LogicalType::Float32,
        Float64 => LogicalType::Float64,
        Utf8 if declares_numeric(f) => LogicalType::Decimal,
        Utf8 => LogicalType::Text,
        Binary => LogicalType::Binary,
        Date32 => LogicalType::Date,
        Timestamp(_, None) => LogicalType::Timestamp,
        Timestamp(_, Some(_)) => LogicalType::Timestamptz,
        Time64(_) => LogicalType::Time,
        Decimal128(..) => {
            if f.metadata().get(LOGICAL_TYPE_KEY).map(String::as_str) == Some("scaled_integer") {
                LogicalType::ScaledInteger
            } else {
                LogicalType::Decimal
            }
        }
        Interval(_) => LogicalType::Interval,
        List(_) => LogicalType::Array,
        Map(..) | Struct(_) => LogicalType::Json,
        Null => LogicalType::Null,
        _ => LogicalType::Text,
    }
}

pub fn column(f: &Field) -> Column {
    let (precision, scale) = match f.data_type() {
        DataType::Decimal128(p, s) => (*p as i32, *s as i32),
        _ => (0, 0),
    };
    let element_type = match f.data_type() {
        DataType::List(e) => logical_type(e),
        _ => LogicalType::Unspecified,
    };
    Column {
        name: f.name().clone(),
        arrow_type: f.data_type().to_string(),
        logical_type: logical_type(f) as i32,
        nullable: f.is_nullable(),
        precision,
        scale,
        element_type: element_type as i32,
    }
}

/// A PostgreSQL-style name for DESCRIBE output.
pub fn sql_type_name(f: &Field) -> String {
    use DataType::*;
    match f.data_type() {
        Boolean => "boolean".into(),
        Int16 => "smallint".into(),
        Int32 => "integer".into(),
        Int64 => "bigint".into(),
        Float32 => "real".into(),
        Float64 => "double precision".into(),
        Utf8 if declares_numeric(f) => "numeric".into(),
        Utf8 => "text".into(),
        Binary => "bytea".into(),
        Date32 => "date".into(),
        Timestamp(_, None) => "timestamp".into(),
        Timestamp(_, Some(_)) => "timestamptz".into(),
        Time64(_) => "time".into(),
        Decimal128(p, s) => format!("numeric({p},{s})"),
        Interval(_) => "interval".into(),
        List(e) => format!("{}[]", sql_type_name(e)),
        Map(..) | Struct(_) => "jsonb".into(),
        other => other.to_string(),
    }
}
