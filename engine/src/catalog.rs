//! The node's catalog: named streams and tables from the config, views created
//! by clients, and a version that changes whenever any of them does. Every
//! query gets a fresh DataFusion context with the catalog registered in it.
//!
//! Views change only through [`ViewCommand`]s: checked first against the
//! current state (`check_*`), then applied (`apply`). With a command topic
//! (see `catalog_log`) every node applies the same commands in the same
//! order, so `apply` depends on nothing but the views and the command.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Semaphore;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::TableReference;
use datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
};
use serde::{Deserialize, Serialize};

use crate::config::{StreamConfig, TableConfig};
use crate::dialect::{self, QueryText, Statement, WindowKind, WindowSpec};
use crate::error::{EngineError, Result};
use crate::file_cache::{FileCache, DEFAULT_FILE_CACHE_BYTES};
use crate::kafka::{
    self, EventClock, KafkaPartition, LiveTopics, ReadMode, Readers, RetainedTopics,
};
use crate::notice::QueryNotices;

/// Queries with a Kafka consumer of their own that may run at once.
pub const DEFAULT_PRIVATE_SCANS: usize = 64;

pub struct Catalog {
    default_bootstrap: Option<String>,
    streams: Vec<StreamConfig>,
    tables: Vec<TableConfig>,
    views: RwLock<Views>,
    inferred: Mutex<HashMap<(String, String), SchemaRef>>,
    /// How queries read topics: shared live consumers, decoded topics in
    /// memory for snapshots, and permits for consumers of their own
    /// (beyond `private_scans` such queries wait for one to end).
    readers: Readers,
    /// Files queries read, kept parsed.
    files: Arc<FileCache>,
}

#[derive(Default)]
struct Views {
    by_name: BTreeMap<String, View>,
    version: u64,
}

struct View {
    definition: String,
    /// Offset of the command that defined it on the command topic (with a
    /// node-local catalog: the version it was defined at).
    defined_at: i64,
}

/// The catalog version before any command of the command topic is applied;
/// after the command at offset `o` it is `o + 2`.
pub const VERSION_BASE: u64 = 1;

/// A change to the views, as the command topic carries it (JSON, tagged by
/// `op`). Every variant names the view it is keyed by on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ViewCommand {
    /// CREATE [OR REPLACE] VIEW. Refused if the name is a view and not
    /// `or_replace`.
    CreateView {
        name: String,
        definition: String,
        #[serde(default)]
        or_replace: bool,
    },
    /// ALTER VIEW from RENAME TO to, keyed by `to` and carrying the
    /// definition, so the record alone restores the view. Refused if `to`
    /// is a view; `from` is removed if it is there.
    RenameView {
        from: String,
        to: String,
        definition: String,
    },
    /// DROP VIEW; on the topic a tombstone (null value). Refused if there is
    /// no such view.
    DropView { name: String },
    /// Written after a rename under the old name, so that compaction can
    /// discard the old name's records: removes `name` unless it was defined
    /// again after the rename (then refused).
    ForgetView { name: String, renamed_at: i64 },
    /// The whole state of one name: written by the node whose command was
    /// refused, so that the last record of every name tells its state.
    SetView {
        name: String,
        definition: Option<String>,
    },
}

impl ViewCommand {
    /// The view name the command is keyed by.
    pub fn key(&self) -> &str {
        match self {
            Self::CreateView { name, .. }
            | Self::DropView { name }
            | Self::ForgetView { name, .. }
            | Self::SetView { name, .. } => name,
            Self::RenameView { to, .. } => to,
        }
    }
}

/// What kind of relation a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Stream,
    Table,
    View,
}

#[derive(Debug, Clone)]
pub struct RelationInfo {
    pub name: String,
    pub kind: RelationKind,
    pub source: String,
    pub description: String,
    pub schema: SchemaRef,
}

/// Dropping a name that is not there: fine with IF EXISTS.
fn drop_missing(name: &str, if_exists: bool) -> Result<()> {
    if if_exists {
        Ok(())
    } else {
        Err(EngineError::UnknownRelation {
            name: name.into(),
            position: 0,
        })
    }
}

impl Catalog {
    pub fn new(
        default_bootstrap: Option<String>,
        streams: Vec<StreamConfig>,
        tables: Vec<TableConfig>,
    ) -> Self {
        Self {
            default_bootstrap,
            streams,
            tables,
            views: RwLock::new(Views {
                by_name: BTreeMap::new(),
                version: 1,
            }),
            inferred: Mutex::new(HashMap::new()),
            readers: Readers {
                live: LiveTopics::default(),
                retained: RetainedTopics::default(),
                private_scans: Arc::new(Semaphore::new(DEFAULT_PRIVATE_SCANS)),
            },
            files: Arc::new(FileCache::new(DEFAULT_FILE_CACHE_BYTES)),
        }
    }

    /// Files are kept parsed up to `bytes` in all; 0: every query parses
    /// the files it reads.
    pub fn with_file_cache_bytes(mut self, bytes: usize) -> Self {
        self.files = Arc::new(FileCache::new(bytes));
        self
    }

    /// At most `n` queries read with consumers of their own at once.
    pub fn with_private_scans(mut self, n: usize) -> Self {
        self.readers.private_scans = Arc::new(Semaphore::new(n.max(1)));
        self
    }

    /// Snapshots are served from a decoded copy of each topic of at most
    /// `bytes` in memory; 0: every snapshot reads the broker.
    pub fn with_retained_bytes(mut self, bytes: usize) -> Self {
        self.readers.retained = RetainedTopics::with_max_bytes(bytes);
        self
    }

    pub fn version(&self) -> u64 {
        self.views.read().expect("views lock").version
    }

    /// The definition of view `name`, if it is one.
    pub fn view(&self, name: &str) -> Option<String> {
        self.views
            .read()
            .expect("views lock")
            .by_name
            .get(name)
            .map(|v| v.definition.clone())
    }

    pub fn streams(&self) -> &[StreamConfig] {
        &self.streams
    }

    fn views_snapshot(&self) -> BTreeMap<String, String> {
        self.views
            .read()
            .expect("views lock")
            .by_name
            .iter()
            .map(|(name, v)| (name.clone(), v.definition.clone()))
            .collect()
    }

    fn name_taken(&self, name: &str) -> bool {
        self.streams.iter().any(|s| s.name == name) || self.tables.iter().any(|t| t.name == name)
    }

    /// Whether CREATE VIEW may run: the definition plans and the name is
    /// free (or a view, with OR REPLACE).
    pub async fn check_create(&self, name: &str, or_replace: bool, definition: &str) -> Result<()> {
        // The definition must plan before it is stored.
        let Statement::Query(q) = dialect::parse(definition)? else {
            return Err(EngineError::Unsupported(
                "a view must be defined by a query".into(),
            ));
        };
        let ctx = self.context(&q, ReadMode::Snapshot).await?;
        ctx.state()
            .create_logical_plan(&q.sql)
            .await
            .map_err(|e| locate_error(e, &q))?;
        if self.name_taken(name) || (!or_replace && self.view(name).is_some()) {
            return Err(EngineError::Duplicate(name.into()));
        }
        Ok(())
    }

    /// Whether ALTER VIEW from RENAME TO to may run; the view's definition.
    pub fn check_rename(&self, from: &str, to: &str) -> Result<String> {
        if self.view(to).is_some() || self.name_taken(to) {
            return Err(EngineError::Duplicate(to.into()));
        }
        self.view(from).ok_or_else(|| EngineError::UnknownRelation {
            name: from.into(),
            position: 0,
        })
    }

    /// Whether DROP VIEW may run: false when there is nothing to drop
    /// (fine with IF EXISTS).
    pub fn check_drop(&self, name: &str, if_exists: bool) -> Result<bool> {
        if self.view(name).is_some() {
            Ok(true)
        } else {
            drop_missing(name, if_exists).map(|_| false)
        }
    }

    /// Applies `command`: the command topic's record at `offset`, or, with
    /// a node-local catalog (`None`), right away. The outcome depends only on
    /// the views and the command, so every node that applies the same
    /// commands in the same order reaches the same views; a refused command
    /// changes nothing. With an offset the version becomes
    /// `VERSION_BASE + offset + 1` whatever the outcome.
    pub fn apply(&self, command: &ViewCommand, offset: Option<i64>) -> Result<()> {
        let mut views = self.views.write().expect("views lock");
        let defined_at = offset.unwrap_or(views.version as i64 + 1);
        let by_name = &mut views.by_name;
        let define = |by_name: &mut BTreeMap<String, View>, name: &str, definition: &str| {
            let view = View {
                definition: definition.to_string(),
                defined_at,
            };
            by_name.insert(name.to_string(), view);
        };
        let outcome = match command {
            ViewCommand::CreateView {
                name,
                definition,
                or_replace,
            } => {
                if by_name.contains_key(name) && !or_replace {
                    Err(EngineError::Duplicate(name.clone()))
                } else {
                    define(by_name, name, definition);
                    Ok(true)
                }
            }
            ViewCommand::RenameView {
                from,
                to,
                definition,
            } => {
                if by_name.contains_key(to) {
                    Err(EngineError::Duplicate(to.clone()))
                } else {
                    by_name.remove(from);
                    define(by_name, to, definition);
                    Ok(true)
                }
            }
            ViewCommand::DropView { name } => match by_name.remove(name) {
                Some(_) => Ok(true),
                None => drop_missing(name, false).map(|_| false),
            },
            ViewCommand::ForgetView { name, renamed_at } => match by_name.get(name) {
                Some(v) if v.defined_at > *renamed_at => Err(EngineError::Duplicate(name.clone())),
                Some(_) => Ok(by_name.remove(name).is_some()),
                None => Ok(false),
            },
            ViewCommand::SetView { name, definition } => match definition {
                Some(definition) => {
                    define(by_name, name, definition);
                    Ok(true)
                }
                None => Ok(by_name.remove(name).is_some()),
            },
        };
        match offset {
            Some(offset) => views.version = VERSION_BASE + offset as u64 + 1,
            None if outcome == Ok(true) => views.version += 1,
            None => {}
        }
        outcome.map(|_| ())
    }

    /// A command topic record that is not a command (skipped on every node):
    /// only the version moves.
    pub fn skip(&self, offset: i64) {
        self.views.write().expect("views lock").version = VERSION_BASE + offset as u64 + 1;
    }

    /// DROP TABLE: streams and tables are defined by the configuration, so
    /// only dropping a missing name with IF EXISTS succeeds (dbt drops its
    /// backup relation that way).
    pub fn drop_table(&self, name: &str, if_exists: bool) -> Result<()> {
        let is_view = self
            .views
            .read()
            .expect("views lock")
            .by_name
            .contains_key(name);
        if is_view {
            Err(EngineError::Unsupported(format!(
                "\"{name}\" is a view: use DROP VIEW"
            )))
        } else if self.name_taken(name) {
            Err(EngineError::Unsupported(format!(
                "\"{name}\" is defined by the engine's configuration and cannot be dropped"
            )))
        } else {
            drop_missing(name, if_exists)
        }
    }

    /// Every relation with its schema, in a stable order.
    pub async fn relations(&self) -> Vec<RelationInfo> {
        let mut out = Vec::new();
        let empty = QueryText::empty();
        let Ok(ctx) = self.context(&empty, ReadMode::Snapshot).await else {
            return out;
        };
        for s in &self.streams {
            if let Ok(schema) = self.stream_schema(s).await {
                out.push(RelationInfo {
                    name: s.name.clone(),
                    kind: RelationKind::Stream,
                    source: format!("kafka://{}", s.topic()),
                    description: s.description.clone(),
                    schema,
                });
            }
        }
        for t in &self.tables {
            if let Ok(provider) = ctx
                .table_provider(TableReference::bare(t.name.as_str()))
                .await
            {
                out.push(RelationInfo {
                    name: t.name.clone(),
                    kind: RelationKind::Table,
                    source: format!("file://{}", t.path.display()),
                    description: t.description.clone(),
                    schema: provider.schema(),
                });
            }
        }
        for (name, definition) in self.views_snapshot() {
            if let Ok(provider) = ctx
                .table_provider(TableReference::bare(name.as_str()))
                .await
            {
                out.push(RelationInfo {
                    name,
                    kind: RelationKind::View,
                    source: definition,
                    description: String::new(),
                    schema: provider.schema(),
                });
            }
        }
        out
    }

    async fn stream_schema(&self, s: &StreamConfig) -> Result<SchemaRef> {
        match s
            .schema()
            .map_err(|e| EngineError::Execution(e.to_string()))?
        {
            Some(schema) => Ok(schema),
            None => self.topic_schema(&self.bootstrap(None)?, s.topic()).await,
        }
    }

    fn bootstrap(&self, explicit: Option<&str>) -> Result<String> {
        explicit
            .map(str::to_string)
            .or_else(|| self.default_bootstrap.clone())
            .ok_or_else(|| {
                EngineError::Source(
                    "this node has no Kafka bootstrap servers configured (--kafka-bootstrap)"
                        .into(),
                )
            })
    }

    async fn topic_schema(&self, bootstrap: &str, topic: &str) -> Result<SchemaRef> {
        let key = (bootstrap.to_string(), topic.to_string());
        if let Some(s) = self.inferred.lock().expect("schema cache").get(&key) {
            return Ok(s.clone());
        }
        if Some(bootstrap) == self.default_bootstrap.as_deref() {
            if let Some(s) = self.streams.iter().find(|s| s.topic() == topic) {
                if let Ok(Some(schema)) = s.schema() {
                    return Ok(schema);
                }
            }
        }
        let (b, t) = key.clone();
        let schema = tokio::task::spawn_blocking(move || kafka::infer_topic_schema(&b, &t))
            .await
            .map_err(|e| EngineError::Execution(e.to_string()))??;
        self.inferred
            .lock()
            .expect("schema cache")
            .insert(key, schema.clone());
        Ok(schema)
    }

    /// A DataFusion context for one query: the query's URIs, every named
    /// stream/table and every view registered, streams read in `mode`.
    pub async fn context(&self, q: &QueryText, mode: ReadMode) -> Result<SessionContext> {
        self.run_context(q, mode, None, &QueryNotices::default())
            .await
    }

    /// `context` for a query that runs: the Kafka scans of a windowed query
    /// advance `clock` to the event time they read, and every scan pushes
    /// what the query's client should be told into `notices`.
    pub async fn run_context(
        &self,
        q: &QueryText,
        mode: ReadMode,
        clock: Option<EventClock>,
        notices: &QueryNotices,
    ) -> Result<SessionContext> {
        // Named as the gateway's database, so tools' three-part names
        // ("velostream"."public"."trades", as dbt writes them) resolve.
        let mut config = SessionConfig::new()
            .with_target_partitions(1)
            .with_default_catalog_and_schema("velostream", "public")
            .with_information_schema(false);
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        // `1.5` is an exact numeric in PostgreSQL, not a float.
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        // TIMESTAMPTZ (a literal, a cast) is an instant, as in PostgreSQL:
        // without a zone here DataFusion makes it a timestamp without one.
        // The gateway prints instants in the session's TimeZone.
        config.options_mut().execution.time_zone = Some("+00:00".into());
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let ctx = SessionContext::new_with_config(config);
        ctx.register_udf(crate::query::averages::avg_quotient());
        let mut registrar = Registrar {
            catalog: self,
            ctx: &ctx,
            mode,
            window: q.window.clone(),
            clock,
            notices: notices.clone(),
            raw_count: 0,
        };
        for s in &self.streams {
            let Ok(schema) = self.stream_schema(s).await else {
                continue; // an empty topic cannot be inferred yet
            };
            let bootstrap = self.bootstrap(None)?;
            registrar
                .stream(
                    &s.name,
                    &bootstrap,
                    s.topic(),
                    schema,
                    s.event_time.as_deref(),
                )
                .await?;
        }
        for t in &self.tables {
            registrar.file(&t.name, &t.path.to_string_lossy()).await?;
        }
        registrar.uris(&q.uris).await?;
        // Views may refer to views: register until nothing more succeeds.
        let mut pending = self.views_snapshot();
        while !pending.is_empty() {
            let before = pending.len();
            let mut failed = BTreeMap::new();
            for (name, definition) in pending {
                let Ok(Statement::Query(vq)) = dialect::parse(&definition) else {
                    continue;
                };
                registrar.window = None;
                if registrar.uris(&vq.uris).await.is_err() {
                    continue;
                }
                let sql = format!(
                    "CREATE VIEW \"{}\" AS {}",
                    name.replace('"', "\"\""),
                    vq.sql
                );
                if ctx.sql(&sql).await.is_err() {
                    failed.insert(name, definition);
                }
            }
            if failed.len() == before {
                break;
            }
            pending = failed;
        }
        Ok(ctx)
    }
}

struct Registrar<'a> {
    catalog: &'a Catalog,
    ctx: &'a SessionContext,
    mode: ReadMode,
    window: Option<WindowSpec>,
    clock: Option<EventClock>,
    notices: QueryNotices,
    raw_count: usize,
}

impl Registrar<'_> {
    async fn uris(&mut self, uris: &[String]) -> Result<()> {
        for uri in uris {
            if self
                .ctx
                .table_exist(TableReference::bare(uri.as_str()))
                .unwrap_or(false)
            {
                continue;
            }
            if let Some(rest) = uri.strip_prefix("kafka://") {
                let (bootstrap, topic) = match rest.rsplit_once('/') {
                    Some((host, topic)) => (Some(host), topic),
                    None => (None, rest),
                };
                let bootstrap = self.catalog.bootstrap(bootstrap)?;
                let schema = self.catalog.topic_schema(&bootstrap, topic).await?;
                let event_time = self
                    .catalog
                    .streams
                    .iter()
                    .find(|s| s.topic() == topic)
                    .and_then(|s| s.event_time.clone());
                self.stream(uri, &bootstrap, topic, schema, event_time.as_deref())
                    .await?;
            } else if let Some(path) = uri.strip_prefix("file://") {
                self.file(uri, path).await?;
            }
        }
        Ok(())
    }

    async fn stream(
        &mut self,
        name: &str,
        bootstrap: &str,
        topic: &str,
        schema: SchemaRef,
        event_time: Option<&str>,
    ) -> Result<()> {
        let time_column = match &self.window {
            Some(window) => Some(window_time_column(window, event_time, &schema, name)?),
            None => None,
        };
        let event_clock = match (&time_column, &self.clock) {
            (Some(column), Some(clock)) => schema.index_of(column).ok().map(|i| (i, clock.clone())),
            _ => None,
        };
        let partition = KafkaPartition {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            schema: schema.clone(),
            mode: self.mode,
            event_clock,
            notices: self.notices.clone(),
            readers: self.catalog.readers.clone(),
        };
        // Marked bounded even when tailing: the continuous driver never runs a
        // pipeline-breaking operator over it, and DataFusion would refuse to plan.
        let table = StreamingTable::try_new(schema.clone(), vec![Arc::new(partition)])
            .map_err(|e| EngineError::Execution(e.to_string()))?;
        let (Some(window), Some(time_column)) = (self.window.clone(), time_column) else {
            return self.register(name, Arc::new(table));
        };
        self.raw_count += 1;
        let raw = format!("__raw_{}", self.raw_count);
        self.register(&raw, Arc::new(table))?;
        let sql = windowed_view_sql(&raw, &time_column, &window);
        let plan = self
            .ctx
            .state()
            .create_logical_plan(&sql)
            .await
            .map_err(|e| EngineError::from_datafusion(e, &sql))?;
        let view = datafusion::catalog::view::ViewTable::new(plan, Some(sql));
        self.register(name, Arc::new(view))
    }

    async fn file(&self, name: &str, path: &str) -> Result<()> {
        if let Some(kept) = self.catalog.files.kept(path).await {
            return self.register(name, kept);
        }
        let table = TableReference::bare(name);
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next().unwrap_or("");
        let ext_with_dot = format!(".{ext}");
        let result = match ext {
            "csv" | "tsv" => {
                let mut opts = CsvReadOptions::new().file_extension(&ext_with_dot);
                if ext == "tsv" {
                    opts = opts.delimiter(b'\t');
                }
                self.ctx.register_csv(table.clone(), path, opts).await
            }
            "json" | "jsonl" | "ndjson" => {
                let opts = JsonReadOptions::default().file_extension(&ext_with_dot);
                self.ctx.register_json(table.clone(), path, opts).await
            }
            "parquet" => {
                self.ctx
                    .register_parquet(table.clone(), path, ParquetReadOptions::default())
                    .await
            }
            _ => {
                return Err(EngineError::Unsupported(format!(
                    "file://{path}: only .csv, .tsv, .json/.jsonl/.ndjson and .parquet files can be read"
                )))
            }
        };
        result.map_err(|e| EngineError::Source(format!("file://{path}: {e}")))?;
        let listing = self
            .ctx
            .deregister_table(table)
            .ok()
            .flatten()
            .ok_or_else(|| EngineError::Execution(format!("file://{path} was not registered")))?;
        self.register(name, self.catalog.files.table(path, listing))
    }

    fn register(
        &self,
        name: &str,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<()> {
        self.ctx
            .register_table(TableReference::bare(name), provider)
            .map(|_| ())
            .map_err(|e| EngineError::Execution(e.to_string()))
    }
}

fn window_time_column(
    window: &WindowSpec,
    event_time: Option<&str>,
    schema: &Schema,
    relation: &str,
) -> Result<String> {
    let is_time = |f: &Field| {
        matches!(
            f.data_type(),
            datafusion::arrow::datatypes::DataType::Timestamp(..)
        )
    };
    if let Some(col) = window.time_column.as_deref() {
        return schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(col))
            .map(|f| f.name().clone())
            .ok_or_else(|| EngineError::UnknownColumn {
                name: col.into(),
                position: 0,
            });
    }
    event_time
        .map(str::to_string)
        .or_else(|| {
            schema
                .fields()
                .iter()
                .find(|f| is_time(f))
                .map(|f| f.name().clone())
        })
        .ok_or_else(|| {
            EngineError::Window(format!(
                "{relation} has no timestamp column to window by; name one: TUMBLING(ts, 1m)"
            ))
        })
}

/// The source with `window_start`/`window_end` columns added (one row per
/// window the event falls in).
fn windowed_view_sql(raw: &str, time_column: &str, window: &WindowSpec) -> String {
    let ts = format!("\"{}\"", time_column.replace('"', "\"\""));
    let interval = |us: i64| format!("INTERVAL '{} milliseconds'", us / 1000);
    let size = interval(window.size_us());
    let starts = match window.kind {
        WindowKind::Tumbling { size_us } => {
            format!("date_bin({}, {ts})", interval(size_us))
        }
        WindowKind::Sliding {
            size_us,
            advance_us,
        } => {
            let base = format!("date_bin({}, {ts})", interval(advance_us));
            let starts: Vec<String> = (0..size_us / advance_us)
                .map(|k| format!("{base} - {}", interval(k * advance_us)))
                .collect();
            format!("unnest(make_array({}))", starts.join(", "))
        }
    };
    format!(
        "SELECT *, window_start + {size} AS window_end FROM \
         (SELECT *, {starts} AS window_start FROM \"{raw}\") AS w"
    )
}

/// Turns a DataFusion error for `q` into an engine error positioned in the
/// client's original text.
pub fn locate_error(e: datafusion::error::DataFusionError, q: &QueryText) -> EngineError {
    EngineError::from_datafusion(e, &q.sql).map_position(|p| q.original_position(p))
}
