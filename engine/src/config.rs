//! The node's configuration: flags and an optional TOML file declaring named
//! streams (Kafka topics) and tables (files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, IntervalUnit, Schema, TimeUnit};
use serde::Deserialize;

/// Field metadata key marking a Decimal128 column as a Velostream ScaledInteger.
pub const LOGICAL_TYPE_KEY: &str = "velostream.logical_type";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub kafka_bootstrap: Option<String>,
    /// The cluster's catalog command topic; empty: a node-local catalog.
    pub catalog_topic: Option<String>,
    pub max_concurrent_queries: Option<usize>,
    pub max_private_scans: Option<usize>,
    pub snapshot_memory_mib: Option<usize>,
    pub file_cache_mib: Option<usize>,
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

/// A named Kafka stream. Without `columns` the schema is inferred from a
/// sample of the topic's messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    /// Defaults to `name`.
    pub topic: Option<String>,
    /// Column used by windows when the query names none.
    pub event_time: Option<String>,
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    #[serde(default)]
    pub description: String,
}

/// A named table backed by a file (CSV, JSON lines or Parquet, by extension).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }
}

impl StreamConfig {
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or(&self.name)
    }

    /// The declared schema, or `None` when it must be inferred.
    pub fn schema(&self) -> anyhow::Result<Option<Arc<Schema>>> {
        if self.columns.is_empty() {
            return Ok(None);
        }
        let fields = self
            .columns
            .iter()
            .map(|c| column_field(&c.name, &c.type_name, c.nullable))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(Arc::new(Schema::new(fields))))
    }
}

/// A column declared with a Velostream type name.
pub fn column_field(name: &str, type_name: &str, nullable: bool) -> anyhow::Result<Field> {
    let lower = type_name.trim().to_ascii_lowercase();
    if let Some(scale) = lower
        .strip_prefix("scaled_integer(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let scale: i8 = scale.trim().parse()?;
        let metadata = HashMap::from([(LOGICAL_TYPE_KEY.to_string(), "scaled_integer".into())]);
        return Ok(
            Field::new(name, DataType::Decimal128(18, scale), nullable).with_metadata(metadata)
        );
    }
    Ok(Field::new(name, parse_type(&lower)?, nullable))
}

/// Parses `bigint`, `decimal(18,2)`, `array<bigint>`, `map<text,bigint>`,
/// `struct<a bigint, b text>` and friends into Arrow types.
pub fn parse_type(t: &str) -> anyhow::Result<DataType> {
    let t = t.trim();
    let inner = |prefix: &str| {
        t.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix('>'))
            .map(str::trim)
    };
    if let Some(element) = inner("array<") {
        let element = parse_type(element)?;
        return Ok(DataType::List(Arc::new(Field::new("item", element, true))));
    }
    if let Some(kv) = inner("map<") {
        let (k, v) = split_top_level(kv, ',')
            .into_iter()
            .collect::<Vec<_>>()
            .split_first()
            .map(|(k, v)| (k.to_string(), v.join(",")))
            .ok_or_else(|| anyhow::anyhow!("map needs key and value types"))?;
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", parse_type(&k)?, false),
                Field::new("values", parse_type(&v)?, true),
            ])),
            false,
        );
        return Ok(DataType::Map(Arc::new(entries), false));
    }
    if let Some(members) = inner("struct<") {
        let fields = split_top_level(members, ',')
            .into_iter()
            .map(|m| {
                let m = m.trim();
                let (n, ty) = m
                    .split_once([' ', ':'])
                    .ok_or_else(|| anyhow::anyhow!("struct member `{m}` needs a type"))?;
                Ok(Field::new(n.trim(), parse_type(ty)?, true))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(DataType::Struct(Fields::from(fields)));
    }
    if let Some(ps) = t
        .strip_prefix("decimal(")
        .or_else(|| t.strip_prefix("numeric("))
        .and_then(|r| r.strip_suffix(')'))
    {
        let (p, s) = ps.split_once(',').unwrap_or((ps, "0"));
        return Ok(DataType::Decimal128(p.trim().parse()?, s.trim().parse()?));
    }
    Ok(match t {
        "bool" | "boolean" => DataType::Boolean,
        "smallint" | "int2" => DataType::Int16,
        "int" | "integer" | "int4" => DataType::Int32,
        "bigint" | "int8" | "long" => DataType::Int64,
        "real" | "float4" => DataType::Float32,
        "double" | "float" | "float8" | "double precision" => DataType::Float64,
        "text" | "string" | "varchar" => DataType::Utf8,
        "bytea" | "binary" | "bytes" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "interval" => DataType::Interval(IntervalUnit::MonthDayNano),
        "decimal" | "numeric" => DataType::Decimal128(38, 10),
        "json" | "jsonb" => DataType::Utf8,
        other => anyhow::bail!("unknown column type `{other}`"),
    })
}

fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_types() {
        let t = parse_type("map<text, array<bigint>>").unwrap();
        assert!(matches!(t, DataType::Map(..)));
        let s = parse_type("struct<a bigint, b decimal(10,2)>").unwrap();
        let DataType::Struct(fields) = s else {
            panic!()
        };
        assert_eq!(fields[1].data_type(), &DataType::Decimal128(10, 2));
        let f = column_field("price", "scaled_integer(2)", false).unwrap();
        assert_eq!(f.data_type(), &DataType::Decimal128(18, 2));
        assert!(parse_type("blob").is_err());
    }
}
