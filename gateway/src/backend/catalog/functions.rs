//! PostgreSQL functions catalog SQL calls that the catalog library does
//! not provide, and the ones whose answer depends on the session (user,
//! database, settings, backend pid).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

type Body = Arc<dyn Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync>;

/// A scalar function from a closure over whole argument arrays.
struct PgFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    /// The PostgreSQL type of the result, where `returns` does not say it.
    pg_type: Option<u32>,
    body: Body,
}

impl std::fmt::Debug for PgFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}

impl Eq for PgFunction {}

impl Hash for PgFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }
    fn return_field_from_args(
        &self,
        _: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let field = datafusion::arrow::datatypes::Field::new(self.name, self.returns.clone(), true);
        Ok(Arc::new(match self.pg_type {
            Some(oid) => field.with_metadata(HashMap::from([(
                crate::codec::PG_TYPE_KEY.to_string(),
                oid.to_string(),
            )])),
            None => field,
        }))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.body)(
            &arrays,
            args.number_rows,
        )?))
    }
}

/// Accepts each listed arity with arguments of any type.
fn arities(counts: &[usize], volatility: Volatility) -> Signature {
    Signature::one_of(
        counts
            .iter()
            .map(|&n| {
                if n == 0 {
                    TypeSignature::Nullary
                } else {
                    TypeSignature::Any(n)
                }
            })
            .collect(),
        volatility,
    )
}

fn function(
    name: &'static str,
    counts: &[usize],
    returns: DataType,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFunction {
        name,
        signature: arities(counts, Volatility::Stable),
        returns,
        pg_type: None,
        body: Arc::new(body),
    })
}

/// `json_build_object(key, value, ...)`: a json object, spaced as
/// PostgreSQL builds it (`{"a" : 1, "b" : "x"}`).
fn json_build_object() -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFunction {
        name: "json_build_object",
        signature: Signature::one_of(
            vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
            Volatility::Immutable,
        ),
        returns: DataType::Utf8,
        pg_type: Some(crate::pg::oid::JSON),
        body: Arc::new(|args, rows| {
            if args.len() % 2 == 1 {
                return Err(datafusion::error::DataFusionError::Plan(
                    "argument list must have even number of elements".into(),
                ));
            }
            let objects = (0..rows).map(|row| {
                let pairs: Vec<String> = args
                    .chunks(2)
                    .map(|pair| {
                        let key = json_value(pair[0].as_ref(), row)?;
                        let key = match key {
                            serde_json::Value::String(k) => k,
                            serde_json::Value::Null => {
                                return Err(datafusion::error::DataFusionError::Plan(
                                    "null value not allowed for object key".into(),
                                ))
                            }
                            other => other.to_string(),
                        };
                        Ok(format!(
                            "{} : {}",
                            serde_json::Value::String(key),
                            json_value(pair[1].as_ref(), row)?
                        ))
                    })
                    .collect::<Result<_>>()?;
                Ok(Some(format!("{{{}}}", pairs.join(", "))))
            });
            Ok(Arc::new(objects.collect::<Result<StringArray>>()?) as ArrayRef)
        }),
    })
}

/// One value as json: numbers and booleans as themselves, arrays as json
/// arrays, everything else as its text.
fn json_value(array: &dyn Array, row: usize) -> Result<serde_json::Value> {
    use serde_json::Value;
    // A NULL literal's array has no validity buffer to say so.
    if array.data_type() == &DataType::Null || array.is_null(row) {
        return Ok(Value::Null);
    }
    let text = || -> Result<String> {
        let cast = datafusion::arrow::compute::cast(&array.slice(row, 1), &DataType::Utf8)?;
        Ok(cast.as_string::<i32>().value(0).to_string())
    };
    Ok(match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        t if t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
            serde_json::from_str(&text()?)
                .unwrap_or_else(|_| Value::String(text().unwrap_or_default()))
        }
        DataType::List(_) => {
            let values = array.as_list::<i32>().value(row);
            Value::Array(
                (0..values.len())
                    .map(|i| json_value(values.as_ref(), i))
                    .collect::<Result<_>>()?,
            )
        }
        _ => Value::String(text()?),
    })
}

/// `pg_typeof(value)`: the PostgreSQL name of the value's type.
fn pg_typeof() -> ScalarUDF {
    function("pg_typeof", &[1], DataType::Utf8, |args, rows| {
        let field = datafusion::arrow::datatypes::Field::new("", args[0].data_type().clone(), true);
        let name = crate::pg::oid::type_name(crate::codec::pg_type(&field).0);
        Ok(Arc::new(StringArray::from(vec![name; rows])) as ArrayRef)
    })
}

/// An argument of any integer type as bigint (literals are bigint,
/// catalog columns int4).
fn as_int64(array: &ArrayRef) -> Result<Int64Array> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Int64)?;
    Ok(cast.as_primitive::<Int64Type>().clone())
}

/// An argument of any type as text.
fn as_text(array: &ArrayRef) -> Result<StringArray> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(cast.as_string::<i32>().clone())
}

fn constant_text(name: &'static str, counts: &[usize], value: Option<String>) -> ScalarUDF {
    constant_string(name, counts, value, None)
}

/// A constant of type `name` (user, database and schema names).
fn constant_name(name: &'static str, counts: &[usize], value: Option<String>) -> ScalarUDF {
    constant_string(name, counts, value, Some(crate::pg::oid::NAME))
}

fn constant_string(
    name: &'static str,
    counts: &[usize],
    value: Option<String>,
    pg_type: Option<u32>,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFunction {
        name,
        signature: arities(counts, Volatility::Stable),
        returns: DataType::Utf8,
        pg_type,
        body: Arc::new(move |_, rows| {
            Ok(Arc::new(StringArray::from(vec![value.clone(); rows])) as ArrayRef)
        }),
    })
}

fn constant_bool(name: &'static str, counts: &[usize], value: bool) -> ScalarUDF {
    function(name, counts, DataType::Boolean, move |_, rows| {
        Ok(Arc::new(BooleanArray::from(vec![value; rows])) as ArrayRef)
    })
}

fn null_of(name: &'static str, counts: &[usize], returns: DataType) -> ScalarUDF {
    let t = returns.clone();
    function(name, counts, returns, move |_, rows| {
        Ok(new_null_array(&t, rows))
    })
}

/// Row `row` of a list argument: its values, or `None` for NULL (or an
/// argument that is not a list, such as a NULL literal).
fn list_value(array: &ArrayRef, row: usize) -> Option<ArrayRef> {
    match array.data_type() {
        DataType::List(_) if !array.is_null(row) => Some(array.as_list::<i32>().value(row)),
        _ => None,
    }
}

/// `format_type` (the library's or ours) over int4 oids and typmods, as
/// text.
fn call_format_type(udf: &ScalarUDF, oids: ArrayRef, typmods: ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::datatypes::Field;
    let rows = oids.len();
    let int4 = |a: &ArrayRef| datafusion::arrow::compute::cast(a, &DataType::Int32);
    let formatted = udf.invoke_with_args(ScalarFunctionArgs {
        number_rows: rows,
        arg_fields: vec![
            Arc::new(Field::new("oid", DataType::Int32, true)),
            Arc::new(Field::new("typmod", DataType::Int32, true)),
        ],
        args: vec![
            ColumnarValue::Array(int4(&oids)?),
            ColumnarValue::Array(int4(&typmods)?),
        ],
        return_field: Arc::new(Field::new("format_type", DataType::Utf8, true)),
        config_options: Default::default(),
    })?;
    Ok(datafusion::arrow::compute::cast(
        &formatted.into_array(rows)?,
        &DataType::Utf8,
    )?)
}

/// The record `information_schema._pg_expandarray` returns per element:
/// the element and its 1-based position.
fn expanded_element() -> DataType {
    use datafusion::arrow::datatypes::{Field, Fields};
    DataType::Struct(Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("n", DataType::Int32, false),
    ]))
}

/// `_pg_expandarray(array)` as a list of (x, n) records, which the catalog
/// rewrite unnests: PostgreSQL's set-returning function (pgjdbc's and
/// Metabase's key and index queries over int2vector columns).
fn pg_expandarray() -> ScalarUDF {
    use datafusion::arrow::array::{ListArray, StructArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::{Field, Fields};
    let element = Arc::new(Field::new("item", expanded_element(), true));
    let returns = DataType::List(element.clone());
    function("pg_expandarray", &[1], returns, move |args, rows| {
        let (mut xs, mut ns, mut lengths, mut valid) = (vec![], vec![], vec![], vec![]);
        for row in 0..rows {
            let Some(values) = list_value(&args[0], row) else {
                lengths.push(0);
                valid.push(false);
                continue;
            };
            let values = datafusion::arrow::compute::cast(&values, &DataType::Int32)?;
            xs.extend(values.as_primitive::<Int32Type>().iter());
            ns.extend(1..=values.len() as i32);
            lengths.push(values.len());
            valid.push(true);
        }
        let DataType::Struct(fields) = expanded_element() else {
            unreachable!("a record type")
        };
        let records = StructArray::try_new(
            Fields::clone(&fields),
            vec![
                Arc::new(Int32Array::from(xs)) as ArrayRef,
                Arc::new(Int32Array::from(ns)) as ArrayRef,
            ],
            None,
        )?;
        Ok(Arc::new(ListArray::try_new(
            element.clone(),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(records),
            Some(valid.into()),
        )?) as ArrayRef)
    })
}

/// PostgreSQL 15's pseudo-types, which `format_type` names by their
/// typname (the catalog library prints `oid(N)` for them).
const PSEUDO_TYPES: &[(i64, &str)] = &[
    (32, "pg_ddl_command"),
    (269, "table_am_handler"),
    (325, "index_am_handler"),
    (705, "unknown"),
    (2249, "record"),
    (2275, "cstring"),
    (2276, "\"any\""),
    (2277, "anyarray"),
    (2278, "void"),
    (2279, "trigger"),
    (2280, "language_handler"),
    (2281, "internal"),
    (2283, "anyelement"),
    (2776, "anynonarray"),
    (3115, "fdw_handler"),
    (3310, "tsm_handler"),
    (3500, "anyenum"),
    (3831, "anyrange"),
    (3838, "event_trigger"),
    (4537, "anymultirange"),
    (4538, "anycompatiblemultirange"),
    (5077, "anycompatible"),
    (5078, "anycompatiblearray"),
    (5079, "anycompatiblenonarray"),
    (5080, "anycompatiblerange"),
];

/// The library's `format_type(oid, typmod)`, with the pseudo-types named.
fn format_type(library: Arc<ScalarUDF>) -> ScalarUDF {
    function("format_type", &[2], DataType::Utf8, move |args, _| {
        // The library takes int4 oids and typmods only (not a NULL literal).
        let formatted = call_format_type(&library, args[0].clone(), args[1].clone())?;
        let oids = as_int64(&args[0])?;
        Ok(Arc::new(
            formatted
                .as_string::<i32>()
                .iter()
                .zip(oids.iter())
                .map(|(name, oid)| {
                    let pseudo = oid.and_then(|o| PSEUDO_TYPES.iter().find(|(p, _)| *p == o));
                    match pseudo {
                        Some((_, pseudo)) => Some(pseudo.to_string()),
                        None => name.map(str::to_string),
                    }
                })
                .collect::<StringArray>(),
        ) as ArrayRef)
    })
}

/// `pg_format_types(oid[])`: the types' names as `format_type` gives them,
/// joined by ", " (a function's identity arguments, for
/// pg_describe_object, pg_get_functiondef and regprocedure lookups).
fn pg_format_types(format_type: Arc<ScalarUDF>) -> ScalarUDF {
    function(
        "pg_format_types",
        &[1],
        DataType::Utf8,
        move |args, rows| {
            let mut names = Vec::with_capacity(rows);
            for row in 0..rows {
                let Some(oids) = list_value(&args[0], row) else {
                    names.push(None);
                    continue;
                };
                let typmods = new_null_array(&DataType::Int32, oids.len());
                let formatted = call_format_type(&format_type, oids, typmods)?;
                let parts: Vec<&str> = formatted.as_string::<i32>().iter().flatten().collect();
                names.push(Some(parts.join(", ")));
            }
            Ok(Arc::new(StringArray::from(names)) as ArrayRef)
        },
    )
}

/// Functions that are the same for every session.
pub fn register_static(registry: &mut dyn FunctionRegistry) -> Result<()> {
    let text = DataType::Utf8;
    let format_type = Arc::new(format_type(registry.udf("format_type")?));
    let udfs = vec![
        pg_format_types(format_type.clone()),
        json_build_object(),
        pg_expandarray(),
        pg_typeof(),
        // Streams take no UPDATE (Npgsql's column schema asks).
        constant_bool("pg_column_is_updatable", &[3], false),
        null_of("pg_get_indexdef", &[1, 3], text.clone()),
        // No constraints exist to describe; any integer oid (literals are
        // bigint) and the pretty flag.
        null_of("pg_get_constraintdef", &[1, 2], text.clone()),
        null_of("pg_get_viewdef", &[1, 2], text.clone()),
        null_of("pg_get_triggerdef", &[1, 2], text.clone()),
        null_of("pg_get_serial_sequence", &[2], text.clone()),
        null_of("pg_get_ruledef", &[1, 2], text.clone()),
        null_of("pg_tablespace_location", &[1], text.clone()),
        constant_bool("pg_type_is_visible", &[1], true),
        // Every object the catalog lists is in a schema on the search path.
        constant_bool("pg_collation_is_visible", &[1], true),
        constant_bool("pg_conversion_is_visible", &[1], true),
        constant_bool("pg_opclass_is_visible", &[1], true),
        constant_bool("pg_operator_is_visible", &[1], true),
        constant_bool("pg_opfamily_is_visible", &[1], true),
        constant_bool("pg_statistics_obj_is_visible", &[1], true),
        constant_bool("pg_ts_config_is_visible", &[1], true),
        constant_bool("pg_ts_dict_is_visible", &[1], true),
        constant_bool("pg_ts_parser_is_visible", &[1], true),
        constant_bool("pg_ts_template_is_visible", &[1], true),
        // Sessions have no temporary schemas.
        constant_bool("pg_is_other_temp_schema", &[1], false),
        text_function("quote_literal", |v| Some(quote_literal(v))),
        text_function("quote_ident", |v| Some(quote_ident(v))),
        constant_bool("pg_function_is_visible", &[1], true),
        constant_bool("pg_is_in_recovery", &[0], false),
        constant_bool("pg_has_role", &[2, 3], true),
        constant_bool("has_function_privilege", &[2, 3], true),
        constant_bool("has_sequence_privilege", &[2, 3], true),
        constant_bool("has_column_privilege", &[3, 4], true),
        constant_bool("has_type_privilege", &[2, 3], true),
        constant_text("pg_client_encoding", &[0], Some("UTF8".into())),
        constant_name("getdatabaseencoding", &[0], Some("UTF8".into())),
        // Any integer type (literals are bigint); PostgreSQL's names.
        function("pg_encoding_to_char", &[1], DataType::Utf8, |args, _| {
            let codes = as_int64(&args[0])?;
            Ok(Arc::new(
                codes
                    .iter()
                    .map(|c| match c {
                        Some(0) => Some("SQL_ASCII"),
                        Some(6) => Some("UTF8"),
                        _ => None,
                    })
                    .collect::<StringArray>(),
            ) as ArrayRef)
        }),
        function("pg_char_to_encoding", &[1], DataType::Int32, |args, _| {
            let names = as_text(&args[0])?;
            Ok(Arc::new(
                names
                    .iter()
                    .map(|n| {
                        n.map(|n| match n.to_ascii_uppercase().as_str() {
                            "SQL_ASCII" => 0,
                            "UTF8" | "UTF-8" | "UNICODE" => 6,
                            _ => -1,
                        })
                    })
                    .collect::<Int32Array>(),
            ) as ArrayRef)
        }),
        // Built-in functions have no SQL body (psql's \df+).
        null_of("pg_get_function_sqlbody", &[1], text.clone()),
        constant_text("inet_server_addr", &[0], None),
        function("age", &[1], DataType::Int32, |_, rows| {
            Ok(Arc::new(Int32Array::from(vec![0; rows])) as ArrayRef)
        }),
        function(
            "format",
            &[1, 2, 3, 4, 5, 6, 7, 8],
            DataType::Utf8,
            |args, rows| {
                let texts = args.iter().map(as_text).collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(
                    (0..rows)
                        .map(|row| {
                            let value =
                                |i: usize| texts[i].is_valid(row).then(|| texts[i].value(row));
                            let values: Vec<Option<&str>> = (1..texts.len()).map(value).collect();
                            value(0).map(|f| pg_format(f, &values))
                        })
                        .collect::<StringArray>(),
                ) as ArrayRef)
            },
        ),
        // Sizes on disk: the gateway stores nothing.
        zero_size("pg_database_size"),
        zero_size("pg_table_size"),
        zero_size("pg_indexes_size"),
        zero_size("pg_tablespace_size"),
        // Also by name (DBeaver passes 'schema.table' as text).
        zero_size("pg_total_relation_size"),
        zero_size("pg_relation_size"),
        function("txid_current", &[0], DataType::Int64, |_, rows| {
            Ok(Arc::new(Int64Array::from(vec![1; rows])) as ArrayRef)
        }),
        function("pg_size_pretty", &[1], DataType::Utf8, |args, _| {
            let bytes = as_int64(&args[0])?;
            Ok(Arc::new(
                bytes
                    .iter()
                    .map(|b| b.map(pretty_size))
                    .collect::<StringArray>(),
            ) as ArrayRef)
        }),
    ];
    registry.register_udf(format_type)?;
    for udf in udfs {
        registry.register_udf(Arc::new(udf))?;
    }
    Ok(())
}

/// PostgreSQL's format(): `%s` the value (NULL as empty), `%I` an
/// identifier quoted where needed, `%L` a literal (NULL unquoted), `%%`.
fn pg_format(template: &str, values: &[Option<&str>]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut next = values.iter();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(kind @ ('s' | 'I' | 'L')) => {
                let value = next.next().copied().flatten();
                match (kind, value) {
                    ('s', v) => out.push_str(v.unwrap_or("")),
                    ('I', Some(v)) => out.push_str(&quote_ident(v)),
                    ('L', Some(v)) => out.push_str(&quote_literal(v)),
                    ('L', None) => out.push_str("NULL"),
                    _ => {}
                }
            }
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// PostgreSQL's quote_literal(): quotes doubled, and with a backslash in
/// the value, the E'' form with backslashes doubled.
fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// A one-argument text function, NULL for NULL.
fn text_function(name: &'static str, f: fn(&str) -> Option<String>) -> ScalarUDF {
    function(name, &[1], DataType::Utf8, move |args, _| {
        let values = as_text(&args[0])?;
        Ok(Arc::new(
            values
                .iter()
                .map(|v| v.and_then(f))
                .collect::<StringArray>(),
        ) as ArrayRef)
    })
}

fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn zero_size(name: &'static str) -> ScalarUDF {
    function(name, &[1, 2], DataType::Int64, |_, rows| {
        Ok(Arc::new(Int64Array::from(vec![0; rows])) as ArrayRef)
    })
}

fn pretty_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 10 * 1024 && unit < UNITS.len() - 1 {
        value = (value + 512) / 1024;
        unit += 1;
    }
    format!("{value} {}", UNITS[unit])
}

/// What a session contributes to catalog answers.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user: String,
    pub database: String,
    pub pid: i32,
    /// Every setting SHOW would show, by lowercase name.
    pub settings: HashMap<String, String>,
}

/// Functions whose answer is the session's.
pub fn register_session(registry: &mut dyn FunctionRegistry, info: &SessionInfo) -> Result<()> {
    let user = Some(info.user.clone());
    let settings = Arc::new(info.settings.clone());
    let pid = info.pid;
    let udfs = vec![
        // Settings changed inside catalog statements (asyncpg turns jit off
        // around its type lookup) do not outlive the statement: the new
        // value is returned, as PostgreSQL does.
        function("set_config", &[3], DataType::Utf8, |args, _| {
            Ok(Arc::new(as_text(&args[1])?) as ArrayRef)
        }),
        constant_name("session_user", &[0], user.clone()),
        constant_name("current_user", &[0], user.clone()),
        constant_name("current_role", &[0], user.clone()),
        // Owners: everything here belongs to whoever asks.
        constant_name("pg_get_userbyid", &[1], user),
        constant_name("current_database", &[0], Some(info.database.clone())),
        constant_name("current_catalog", &[0], Some(info.database.clone())),
        constant_text(
            "version",
            &[0],
            Some(crate::pg::server_info::version_string()),
        ),
        function("pg_backend_pid", &[0], DataType::Int32, move |_, rows| {
            Ok(Arc::new(Int32Array::from(vec![pid; rows])) as ArrayRef)
        }),
        function(
            "current_setting",
            &[1, 2],
            DataType::Utf8,
            move |args, _| {
                let names = as_text(&args[0])?;
                let mut out = Vec::with_capacity(names.len());
                for name in names.iter() {
                    let Some(name) = name else {
                        out.push(None);
                        continue;
                    };
                    match settings.get(&name.to_ascii_lowercase()) {
                        Some(v) => out.push(Some(v.clone())),
                        None if args.len() == 2 => out.push(None),
                        None => {
                            return Err(datafusion::error::DataFusionError::Plan(format!(
                                "unrecognized configuration parameter \"{name}\""
                            )))
                        }
                    }
                }
                Ok(Arc::new(StringArray::from(out)) as ArrayRef)
            },
        ),
    ];
    for udf in udfs {
        registry.register_udf(Arc::new(udf))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    #[test]
    fn format_like_postgres() {
        assert_eq!(
            super::pg_format(
                "%I.%I = %L, %s%% %s|%L",
                &[
                    Some("public"),
                    Some("My T"),
                    Some("it's"),
                    None,
                    Some("x"),
                    None
                ]
            ),
            "public.\"My T\" = 'it''s', % x|NULL"
        );
    }

    #[test]
    fn json_values_as_postgresql_writes_them() {
        use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray, NullArray};
        use datafusion::arrow::datatypes::Int32Type;
        use std::sync::Arc;
        let value = |a: ArrayRef| super::json_value(a.as_ref(), 0).unwrap().to_string();
        assert_eq!(value(Arc::new(NullArray::new(1))), "null");
        assert_eq!(value(Arc::new(Int64Array::from(vec![7]))), "7");
        assert_eq!(value(Arc::new(Float64Array::from(vec![1.5]))), "1.5");
        assert_eq!(
            value(Arc::new(StringArray::from(vec!["a\"b"]))),
            r#""a\"b""#
        );
        let list =
            ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None])]);
        assert_eq!(value(Arc::new(list)), "[1,null]");
    }

    #[test]
    fn sizes_read_like_postgres() {
        assert_eq!(super::pretty_size(100), "100 bytes");
        assert_eq!(super::pretty_size(20 * 1024), "20 kB");
        assert_eq!(super::pretty_size(30 * 1024 * 1024), "30 MB");
    }
}
