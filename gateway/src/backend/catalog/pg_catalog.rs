//! Our layer over the library's pg_catalog: column types and modifiers as
//! the wire shows them, views from the engine, the relations tools ask for
//! that the library lacks (empty, with PostgreSQL's columns), and
//! information_schema as views over pg_catalog, as PostgreSQL defines it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::catalog::{MemTable, MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;

use super::column_types::TypedSchema;
use super::relations::Snapshot;
use super::roles;
use super::row_types;
use super::stable_oids::{OidSources, Renumbered, RENUMBERED};
use super::DATABASE;

type Shared = Arc<RwLock<Arc<Snapshot>>>;

/// The pg_catalog schema: ours first, then the library's.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    ours: MemorySchemaProvider,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for n in self.ours.table_names() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.ours.table(name).await? {
            Some(t) => Ok(Some(t)),
            None => self.inner.table(name).await,
        }
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.ours.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.ours.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.ours.table_exist(name) || self.inner.table_exist(name)
    }
}

/// pg_attribute with atttypid/atttypmod of engine relations' columns as
/// query results type them (numeric(p,s), jsonb, arrays).
#[derive(Debug)]
struct Attributes {
    attribute: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    snapshot: Shared,
}

/// What each catalog relation read within one statement: a subquery run
/// per row reads the same relations once per row otherwise. A statement's
/// session carries one (`Scans::install`).
#[derive(Default)]
pub(super) struct Scans(std::sync::Mutex<HashMap<usize, Vec<RecordBatch>>>);

impl Scans {
    pub fn install(state: &mut datafusion::execution::context::SessionState) {
        state.config_mut().set_extension(Arc::new(Scans::default()));
    }
}

pub(super) async fn read_all(
    table: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<Vec<RecordBatch>> {
    let scans = state.config().get_extension::<Scans>();
    let key = Arc::as_ptr(table) as *const () as usize;
    if let Some(batches) = scans
        .as_ref()
        .and_then(|s| s.0.lock().expect("scans").get(&key).cloned())
    {
        return Ok(batches);
    }
    let plan = table.scan(state, None, &[], None).await?;
    let batches = collect(plan, state.task_ctx()).await?;
    if let Some(scans) = scans {
        scans.0.lock().expect("scans").insert(key, batches.clone());
    }
    Ok(batches)
}

/// A scan over batches computed in memory (every catalog relation here is
/// small and recomputed per statement).
pub(super) fn in_memory(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(MemorySourceConfig::try_new_exec(
        &[batches],
        schema,
        projection.cloned(),
    )?)
}

/// `batch` with the named columns replaced.
pub(super) fn replaced(batch: &RecordBatch, new: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, array) in new {
        columns[schema.index_of(name)?] = array;
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub(super) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| DataFusionError::Internal(format!("catalog column {name} missing")))
}

/// Schemas and relations by oid, as pg_namespace and pg_class name them.
pub(super) struct Names {
    pub namespaces: HashMap<i32, String>,
    /// oid → (schema, relation)
    pub relations: HashMap<i32, (String, String)>,
}

pub(super) async fn names(
    namespace: &Arc<dyn TableProvider>,
    class: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<Names> {
    let mut namespaces = HashMap::new();
    for b in read_all(namespace, state).await? {
        let (oid, name) = (column(&b, "oid")?, column(&b, "nspname")?);
        for i in 0..b.num_rows() {
            namespaces.insert(
                oid.as_primitive::<Int32Type>().value(i),
                name.as_string::<i32>().value(i).to_string(),
            );
        }
    }
    let mut relations = HashMap::new();
    for b in read_all(class, state).await? {
        let (oid, name, ns) = (
            column(&b, "oid")?,
            column(&b, "relname")?,
            column(&b, "relnamespace")?,
        );
        for i in 0..b.num_rows() {
            let Some(schema) = namespaces.get(&ns.as_primitive::<Int32Type>().value(i)) else {
                continue;
            };
            relations.insert(
                oid.as_primitive::<Int32Type>().value(i),
                (schema.clone(), name.as_string::<i32>().value(i).to_string()),
            );
        }
    }
    Ok(Names {
        namespaces,
        relations,
    })
}

impl Attributes {
    async fn patched(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let snapshot = self.snapshot.read().expect("catalog snapshot").clone();
        let relations = names(&self.namespace, &self.class, state).await?.relations;
        let mut out = Vec::new();
        for b in read_all(&self.attribute, state).await? {
            let (relid, name) = (column(&b, "attrelid")?, column(&b, "attname")?);
            let mut typid: Vec<i32> = column(&b, "atttypid")?
                .as_primitive::<Int32Type>()
                .values()
                .to_vec();
            let mut typmod: Vec<i32> = column(&b, "atttypmod")?
                .as_primitive::<Int32Type>()
                .values()
                .to_vec();
            for i in 0..b.num_rows() {
                let Some((ns, rel)) = relations.get(&relid.as_primitive::<Int32Type>().value(i))
                else {
                    continue;
                };
                let key = (
                    ns.clone(),
                    rel.clone(),
                    name.as_string::<i32>().value(i).to_string(),
                );
                if let Some((oid, modifier)) = snapshot.columns.get(&key) {
                    typid[i] = *oid as i32;
                    typmod[i] = *modifier;
                }
            }
            out.push(replaced(
                &b,
                vec![
                    ("atttypid", Arc::new(Int32Array::from(typid))),
                    ("atttypmod", Arc::new(Int32Array::from(typmod))),
                ],
            )?);
        }
        Ok(out)
    }
}

#[async_trait]
impl TableProvider for Attributes {
    fn schema(&self) -> SchemaRef {
        self.attribute.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self.patched(state).await?;
        in_memory(batches, self.schema(), projection)
    }
}

/// A library table whose vector and array columns come as text ("1 2",
/// "{1,2}"), served with them as arrays, which catalog SQL unnests and
/// indexes.
#[derive(Debug)]
struct ArrayColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

impl ArrayColumns {
    /// `columns` are converted; `missing` are added, all NULL.
    fn new(inner: Arc<dyn TableProvider>, columns: &[(&str, DataType)], missing: &[&str]) -> Self {
        let mut fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| match columns.iter().find(|(n, _)| n == f.name()) {
                Some((_, element)) => Field::new(
                    f.name(),
                    DataType::List(Arc::new(Field::new("item", element.clone(), true))),
                    true,
                )
                .with_metadata(f.metadata().clone()),
                None => f.as_ref().clone(),
            })
            .collect();
        let text_list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        for name in missing {
            fields.push(Field::new(*name, text_list.clone(), true));
        }
        Self {
            inner,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

/// "1 2", "{1,2}", "{a,\"b c\"}" → elements.
fn elements(text: &str) -> Vec<String> {
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .map(|e| e.trim_matches('"').to_string())
        .collect()
}

fn to_list(array: &dyn Array, element: &DataType) -> Result<Arc<dyn Array>> {
    use datafusion::arrow::array::{ListBuilder, StringBuilder};
    let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut builder = ListBuilder::new(StringBuilder::new());
    for value in text.iter() {
        match value {
            Some(v) => {
                for e in elements(v) {
                    builder.values().append_value(e);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    let strings: Arc<dyn Array> = Arc::new(builder.finish());
    let target = DataType::List(Arc::new(Field::new("item", element.clone(), true)));
    Ok(datafusion::arrow::compute::cast(&strings, &target)?)
}

#[async_trait]
impl TableProvider for ArrayColumns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut batches = Vec::new();
        for b in read_all(&self.inner, state).await? {
            let mut columns = b
                .columns()
                .iter()
                .zip(self.schema.fields())
                .map(|(c, f)| match f.data_type() {
                    DataType::List(e) if c.data_type() != f.data_type() => {
                        to_list(c.as_ref(), e.data_type())
                    }
                    _ => Ok(c.clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            for f in &self.schema.fields()[columns.len()..] {
                columns.push(datafusion::arrow::array::new_null_array(
                    f.data_type(),
                    b.num_rows(),
                ));
            }
            batches.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        in_memory(batches, self.schema.clone(), projection)
    }
}

/// Library columns that PostgreSQL types as vectors or arrays, and
/// array columns the library lacks.
type Reshape = (
    &'static str,
    Vec<(&'static str, DataType)>,
    Vec<&'static str>,
);

fn array_columns() -> Vec<Reshape> {
    use DataType::{Int16, Int32, Utf8};
    vec![
        ("pg_class", vec![], vec!["reloptions", "relacl"]),
        ("pg_namespace", vec![("nspacl", Utf8)], vec![]),
        ("pg_tablespace", vec![("spcacl", Utf8)], vec![]),
        ("pg_language", vec![("lanacl", Utf8)], vec![]),
        ("pg_type", vec![("typacl", Utf8)], vec![]),
        ("pg_default_acl", vec![("defaclacl", Utf8)], vec![]),
        ("pg_policy", vec![("polroles", Int32)], vec![]),
        ("pg_db_role_setting", vec![("setconfig", Utf8)], vec![]),
        ("pg_statistic_ext", vec![("stxkind", Utf8)], vec![]),
        ("pg_event_trigger", vec![("evttags", Utf8)], vec![]),
        (
            "pg_extension",
            vec![("extconfig", Int32), ("extcondition", Utf8)],
            vec![],
        ),
        (
            "pg_index",
            vec![
                ("indkey", Int16),
                ("indcollation", Int32),
                ("indclass", Int32),
                ("indoption", Int16),
            ],
            vec![],
        ),
        (
            "pg_constraint",
            vec![
                ("conkey", Int16),
                ("confkey", Int16),
                ("conpfeqop", Int32),
                ("conppeqop", Int32),
                ("conffeqop", Int32),
                ("conexclop", Int32),
            ],
            vec![],
        ),
        (
            "pg_proc",
            vec![
                ("proargtypes", Int32),
                ("proallargtypes", Int32),
                ("proargmodes", Utf8),
                ("proargnames", Utf8),
                ("proacl", Utf8),
            ],
            vec![],
        ),
    ]
}

/// pg_views from the engine's views.
#[derive(Debug)]
struct Views {
    snapshot: Shared,
}

fn text_fields(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

#[async_trait]
impl TableProvider for Views {
    fn schema(&self) -> SchemaRef {
        text_fields(&["schemaname", "viewname", "viewowner", "definition"])
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.snapshot.read().expect("catalog snapshot").clone();
        let strings = |f: &dyn Fn(&(String, String, String)) -> String| {
            Arc::new(
                snapshot
                    .views
                    .iter()
                    .map(|v| Some(f(v)))
                    .collect::<StringArray>(),
            ) as Arc<dyn Array>
        };
        let batch = RecordBatch::try_new(
            self.schema(),
            vec![
                strings(&|v| v.0.clone()),
                strings(&|v| v.1.clone()),
                strings(&|_| "velo".to_string()),
                strings(&|v| v.2.clone()),
            ],
        )?;
        in_memory(vec![batch], self.schema(), projection)
    }
}

/// Relations we have nothing to put in (no sessions, locks, statistics or
/// prepared statements to show), kept empty even where the library would
/// answer: PostgreSQL 15's columns, no rows. PostgreSQL 15 relations the
/// library lacks are empty the same way (`TypedSchema`).
const EMPTY_RELATIONS: &[&str] = &[
    "pg_indexes",
    "pg_stat_activity",
    "pg_locks",
    "pg_prepared_statements",
    "pg_cursors",
    "pg_stat_database",
    "pg_stat_user_indexes",
    "pg_statio_user_tables",
    "pg_sequences",
    "pg_available_extensions",
    "pg_available_extension_versions",
    "pg_timezone_names",
    "pg_timezone_abbrevs",
    "pg_shadow",
    "pg_group",
    "pg_policies",
    "pg_rules",
    "pg_stat_replication",
    "pg_user_mappings",
];

/// pg_settings: the server defaults and fixed limits tools look up.
fn settings_relation() -> Result<Arc<dyn TableProvider>> {
    let fixed = [
        ("max_index_keys", "32"),
        ("block_size", "8192"),
        ("max_connections", "10000"),
        ("max_function_args", "100"),
        ("data_checksums", "off"),
    ];
    let rows: Vec<(&str, &str)> = crate::pg::server_info::DEFAULTS
        .iter()
        .copied()
        .chain(fixed)
        .collect();
    let schema = text_fields(&[
        "name",
        "setting",
        "unit",
        "category",
        "short_desc",
        "extra_desc",
        "context",
        "vartype",
        "source",
        "min_val",
        "max_val",
        "boot_val",
        "reset_val",
    ]);
    let column = |f: &dyn Fn(&(&str, &str)) -> Option<String>| {
        Arc::new(rows.iter().map(f).collect::<StringArray>()) as Arc<dyn Array>
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(&|r| Some(r.0.to_string())),
            column(&|r| Some(r.1.to_string())),
            column(&|_| None),
            column(&|_| Some("Velostream gateway".into())),
            column(&|_| None),
            column(&|_| None),
            column(&|_| Some("user".into())),
            column(&|_| Some("string".into())),
            column(&|_| Some("default".into())),
            column(&|_| None),
            column(&|_| None),
            column(&|r| Some(r.1.to_string())),
            column(&|r| Some(r.1.to_string())),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// No columns, no rows: `TypedSchema` gives it PostgreSQL's columns.
fn empty_relation() -> Arc<dyn TableProvider> {
    Arc::new(datafusion::datasource::empty::EmptyTable::new(Arc::new(
        Schema::empty(),
    )))
}

pub async fn install(ctx: &SessionContext, snapshot: Shared) -> anyhow::Result<()> {
    let catalog = ctx
        .catalog(DATABASE)
        .ok_or_else(|| anyhow::anyhow!("catalog {DATABASE} missing"))?;
    let inner = catalog
        .schema("pg_catalog")
        .ok_or_else(|| anyhow::anyhow!("pg_catalog missing"))?;
    let library = |name: &str| {
        let inner = inner.clone();
        let name = name.to_string();
        async move {
            inner
                .table(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("pg_catalog.{name} missing"))
        }
    };
    let sources = Arc::new(OidSources {
        namespace: library("pg_namespace").await?,
        class: library("pg_class").await?,
    });
    // A library table, renumbered if it holds oids of named objects.
    let renumbered = |name: &str, inner: Arc<dyn TableProvider>| -> Arc<dyn TableProvider> {
        match RENUMBERED.iter().find(|(n, _)| *n == name) {
            Some((_, columns)) => Arc::new(Renumbered {
                inner,
                columns,
                sources: sources.clone(),
            }),
            None => inner,
        }
    };
    let table = |name: &str| {
        let library = library(name);
        let name = name.to_string();
        async move { Ok::<_, anyhow::Error>(renumbered(&name, library.await?)) }
    };
    let ours = MemorySchemaProvider::new();
    ours.register_table("pg_database".into(), table("pg_database").await?)?;
    // Typed and named over the library's own oids, then renumbered.
    let attributes = Attributes {
        attribute: Arc::new(ArrayColumns::new(
            library("pg_attribute").await?,
            &[
                ("attacl", DataType::Utf8),
                ("attoptions", DataType::Utf8),
                ("attfdwoptions", DataType::Utf8),
            ],
            &[],
        )),
        class: sources.class.clone(),
        namespace: sources.namespace.clone(),
        snapshot: snapshot.clone(),
    };
    ours.register_table(
        "pg_attribute".into(),
        renumbered("pg_attribute", Arc::new(attributes)),
    )?;
    ours.register_table("pg_views".into(), Arc::new(Views { snapshot }))?;
    ours.register_table("pg_settings".into(), settings_relation()?)?;
    for (name, columns, missing) in array_columns() {
        let inner = table(name).await?;
        let present: Vec<(&str, DataType)> = columns
            .into_iter()
            .filter(|(c, _)| inner.schema().field_with_name(c).is_ok())
            .collect();
        ours.register_table(
            name.into(),
            Arc::new(ArrayColumns::new(inner, &present, &missing)),
        )?;
    }
    for name in ["pg_roles", "pg_authid"] {
        if let Ok(inner) = library(name).await {
            ours.register_table(name.into(), Arc::new(roles::Roles { inner }))?;
        }
    }
    // Every relation's row type (see row_types).
    let class = ours.deregister_table("pg_class")?.context("pg_class")?;
    let types = ours.deregister_table("pg_type")?.context("pg_type")?;
    ours.register_table(
        "pg_type".into(),
        Arc::new(row_types::Types {
            types: types.clone(),
            class: class.clone(),
        }),
    )?;
    ours.register_table(
        "pg_class".into(),
        Arc::new(row_types::Classes { class, types }),
    )?;
    for name in EMPTY_RELATIONS {
        ours.register_table(name.to_string(), empty_relation())?;
    }
    catalog.register_schema(
        "pg_catalog",
        Arc::new(TypedSchema {
            name: "pg_catalog",
            inner: Arc::new(PgCatalog { inner, ours }),
        }),
    )?;
    let information_schema = MemorySchemaProvider::new();
    catalog.register_schema(
        "information_schema",
        Arc::new(TypedSchema {
            name: "information_schema",
            inner: Arc::new(information_schema),
        }),
    )?;
    for sql in VIEWS {
        ctx.sql(sql)
            .await
            .map_err(|e| anyhow::anyhow!("catalog view: {e}\n{sql}"))?;
    }
    Ok(())
}

/// Views defined over pg_catalog, as PostgreSQL defines them. `OR REPLACE`:
/// every PostgreSQL 15 relation name already answers, with no rows.
const VIEWS: &[&str] = &[
    "CREATE OR REPLACE VIEW pg_catalog.pg_user AS SELECT rolname AS usename, oid AS usesysid, \
     rolcreatedb AS usecreatedb, rolsuper AS usesuper, rolreplication AS userepl, \
     rolbypassrls AS usebypassrls, '********' AS passwd, rolvaliduntil AS valuntil, \
     rolconfig AS useconfig FROM pg_catalog.pg_roles WHERE rolcanlogin",
    "CREATE OR REPLACE VIEW information_schema.schemata AS SELECT CAST('velostream' AS VARCHAR) AS catalog_name, \
     nspname AS schema_name, CAST('velostream' AS VARCHAR) AS schema_owner, \
     CAST(NULL AS VARCHAR) AS default_character_set_catalog, \
     CAST(NULL AS VARCHAR) AS default_character_set_schema, \
     CAST(NULL AS VARCHAR) AS default_character_set_name, CAST(NULL AS VARCHAR) AS sql_path \
     FROM pg_catalog.pg_namespace",
    "CREATE OR REPLACE VIEW information_schema.tables AS SELECT CAST('velostream' AS VARCHAR) AS table_catalog, \
     n.nspname AS table_schema, c.relname AS table_name, \
     CASE WHEN n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind = 'v' THEN 'VIEW' \
          WHEN c.relkind = 'v' THEN 'VIEW' ELSE 'BASE TABLE' END AS table_type, \
     CAST(NULL AS VARCHAR) AS self_referencing_column_name, \
     CAST(NULL AS VARCHAR) AS reference_generation, \
     CAST(NULL AS VARCHAR) AS user_defined_type_catalog, \
     CAST(NULL AS VARCHAR) AS user_defined_type_schema, \
     CAST(NULL AS VARCHAR) AS user_defined_type_name, \
     CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END AS is_insertable_into, \
     'NO' AS is_typed, CAST(NULL AS VARCHAR) AS commit_action \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
     WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')",
    "CREATE OR REPLACE VIEW information_schema.views AS SELECT CAST('velostream' AS VARCHAR) AS table_catalog, \
     schemaname AS table_schema, viewname AS table_name, definition AS view_definition, \
     'NONE' AS check_option, 'NO' AS is_updatable, 'NO' AS is_insertable_into, \
     'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable, \
     'NO' AS is_trigger_insertable_into FROM pg_catalog.pg_views",
    // information_schema's numbers are cardinal_number, an int4.
    "CREATE OR REPLACE VIEW information_schema.columns AS SELECT CAST('velostream' AS VARCHAR) AS table_catalog, \
     n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name, \
     CAST(a.attnum AS INT) AS ordinal_position, CAST(NULL AS VARCHAR) AS column_default, \
     CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, \
     CASE WHEN t.typcategory = 'A' THEN 'ARRAY' \
          WHEN t.typname = 'int2' THEN 'smallint' WHEN t.typname = 'int4' THEN 'integer' \
          WHEN t.typname = 'int8' THEN 'bigint' WHEN t.typname = 'float4' THEN 'real' \
          WHEN t.typname = 'float8' THEN 'double precision' WHEN t.typname = 'bool' THEN 'boolean' \
          WHEN t.typname = 'varchar' THEN 'character varying' WHEN t.typname = 'bpchar' THEN 'character' \
          WHEN t.typname = 'timestamp' THEN 'timestamp without time zone' \
          WHEN t.typname = 'timestamptz' THEN 'timestamp with time zone' \
          WHEN t.typname = 'time' THEN 'time without time zone' \
          ELSE t.typname END AS data_type, \
     CAST(NULL AS INT) AS character_maximum_length, \
     CAST(CASE WHEN t.typname IN ('text', 'varchar') THEN 1073741824 END AS INT) AS character_octet_length, \
     CAST(CASE WHEN t.typname = 'int2' THEN 16 WHEN t.typname = 'int4' THEN 32 \
          WHEN t.typname = 'int8' THEN 64 WHEN t.typname = 'float4' THEN 24 \
          WHEN t.typname = 'float8' THEN 53 \
          WHEN t.typname = 'numeric' AND a.atttypmod > 0 THEN (a.atttypmod - 4) / 65536 \
          END AS INT) AS numeric_precision, \
     CAST(CASE WHEN t.typname IN ('int2', 'int4', 'int8', 'float4', 'float8') THEN 2 \
          WHEN t.typname = 'numeric' THEN 10 END AS INT) AS numeric_precision_radix, \
     CAST(CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 0 \
          WHEN t.typname = 'numeric' AND a.atttypmod > 0 THEN (a.atttypmod - 4) % 65536 \
          END AS INT) AS numeric_scale, \
     CAST(CASE WHEN t.typname = 'date' THEN 0 \
          WHEN t.typname IN ('timestamp', 'timestamptz', 'time', 'interval') THEN 6 \
          END AS INT) AS datetime_precision, \
     CAST(NULL AS VARCHAR) AS interval_type, CAST(NULL AS INT) AS interval_precision, \
     CAST(NULL AS VARCHAR) AS character_set_catalog, CAST(NULL AS VARCHAR) AS character_set_schema, \
     CAST(NULL AS VARCHAR) AS character_set_name, CAST(NULL AS VARCHAR) AS collation_catalog, \
     CAST(NULL AS VARCHAR) AS collation_schema, CAST(NULL AS VARCHAR) AS collation_name, \
     CAST(NULL AS VARCHAR) AS domain_catalog, CAST(NULL AS VARCHAR) AS domain_schema, \
     CAST(NULL AS VARCHAR) AS domain_name, CAST('velostream' AS VARCHAR) AS udt_catalog, \
     CAST('pg_catalog' AS VARCHAR) AS udt_schema, t.typname AS udt_name, \
     CAST(NULL AS VARCHAR) AS scope_catalog, CAST(NULL AS VARCHAR) AS scope_schema, \
     CAST(NULL AS VARCHAR) AS scope_name, CAST(NULL AS INT) AS maximum_cardinality, \
     CAST(a.attnum AS VARCHAR) AS dtd_identifier, 'NO' AS is_self_referencing, \
     'NO' AS is_identity, CAST(NULL AS VARCHAR) AS identity_generation, \
     CAST(NULL AS VARCHAR) AS identity_start, CAST(NULL AS VARCHAR) AS identity_increment, \
     CAST(NULL AS VARCHAR) AS identity_maximum, CAST(NULL AS VARCHAR) AS identity_minimum, \
     CAST(NULL AS VARCHAR) AS identity_cycle, 'NEVER' AS is_generated, \
     CAST(NULL AS VARCHAR) AS generation_expression, 'NO' AS is_updatable \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON a.attrelid = c.oid \
     JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
     JOIN pg_catalog.pg_type t ON a.atttypid = t.oid \
     WHERE a.attnum > 0 AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
];
