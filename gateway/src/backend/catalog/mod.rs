//! The catalog: PostgreSQL's `pg_catalog` and `information_schema`,
//! answered inside the gateway by an embedded DataFusion session. Static
//! parts (pg_type, pg_proc, pg_am, ...) and catalog SQL rewriting come from
//! the `datafusion-pg-catalog` library; the `public` schema mirrors the
//! engine nodes' relations (ListRelations, cached by catalog version).

mod column_types;
mod fragments;
mod functions;
mod pg15_oids;
mod pg15_relations;
mod pg_catalog;
mod relations;
mod result_types;
mod rewrite;
mod roles;
mod route;
mod row_types;
mod stable_oids;
mod subplans;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use velo_proto::v1::TypedValue;

pub use functions::SessionInfo;
pub use route::{route, Target};

use crate::backend::engine::EnginePool;
use crate::error::GatewayError;
use crate::metrics::METRICS;
use relations::Snapshot;

/// The DataFusion catalog holding `public`, `pg_catalog` and
/// `information_schema` (what `pg_database` lists).
pub const DATABASE: &str = "velostream";

/// Memory all catalog statements may use together (DataFusion's pool),
/// and the most one result may hold.
const MEMORY_LIMIT: usize = 128 << 20;
/// The most rows a catalog result may have.
const ROW_LIMIT: usize = 1_000_000;
/// The longest a catalog statement may run, whatever statement_timeout is.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a relation listing is trusted before the engine is asked
/// whether its catalog version moved.
const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// The catalog session shared by every connection of this gateway; each
/// statement plans on a copy of its state with the session's functions.
pub struct Catalog {
    ctx: SessionContext,
    parser: PostgresCompatibilityParser,
    pool: Arc<EnginePool>,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    checked: tokio::sync::Mutex<Option<Instant>>,
    /// Set after DDL through this gateway: reload before the next answer.
    stale: std::sync::atomic::AtomicBool,
    /// The engine's relations were listed at least once.
    loaded: std::sync::atomic::AtomicBool,
    /// What an unqualified `pg_...` name may mean.
    catalog_tables: Vec<String>,
}

/// Login roles as pg_roles lists them.
#[derive(Debug, Clone)]
struct Roles(Arc<Vec<String>>);

#[async_trait::async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.0.to_vec()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        self.0.iter().any(|r| r == name).then(|| Role {
            name: name.to_string(),
            is_superuser: false,
            can_login: true,
            can_create_db: false,
            can_create_role: false,
            can_create_user: false,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Catalog(e.to_string())
}

impl Catalog {
    pub async fn new(pool: Arc<EnginePool>, roles: Vec<String>) -> anyhow::Result<Arc<Self>> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, "public")
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(false);
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        config.options_mut().sql_parser.enable_ident_normalization = true;
        // One memory pool for every catalog statement of this gateway: the
        // catalog can never take more than this from the process.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(MEMORY_LIMIT, 1.0)
            .build_arc()
            .map_err(|e| anyhow::anyhow!("catalog runtime: {e}"))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        datafusion_pg_catalog::setup_pg_catalog(&ctx, DATABASE, Roles(Arc::new(roles)))
            .map_err(|e| anyhow::anyhow!("pg_catalog: {e}"))?;
        functions::register_static(&mut *ctx.state_ref().write())?;
        let snapshot = Arc::new(RwLock::new(Arc::new(Snapshot::default())));
        pg_catalog::install(&ctx, snapshot.clone()).await?;
        let catalog_tables = ctx
            .catalog(DATABASE)
            .and_then(|c| c.schema("pg_catalog"))
            .map(|s| s.table_names())
            .unwrap_or_default();
        let catalog = Arc::new(Self {
            ctx,
            parser: PostgresCompatibilityParser::new(),
            pool,
            snapshot,
            checked: tokio::sync::Mutex::new(None),
            stale: Default::default(),
            loaded: Default::default(),
            catalog_tables,
        });
        Ok(catalog)
    }

    /// Reloads the engine's relations if their catalog version moved (or
    /// at once after DDL). One session reloads while the others answer from
    /// the listing they have (only the very first load is waited for), so
    /// no session waits on another's engine call. Without a reachable
    /// engine the last listing stays.
    async fn refresh(&self) {
        use std::sync::atomic::Ordering;
        let mut checked = match self.checked.try_lock() {
            Ok(guard) => guard,
            Err(_) if self.loaded.load(Ordering::Relaxed) => return,
            Err(_) => self.checked.lock().await,
        };
        let force = self.stale.swap(false, Ordering::Relaxed);
        if !force && checked.is_some_and(|t| t.elapsed() < REFRESH_AFTER) {
            return;
        }
        let known = self.snapshot.read().expect("catalog snapshot").version;
        let known = if checked.is_none() { 0 } else { known };
        match self.pool.list_relations(known).await {
            Ok(listing) if listing.unchanged => {}
            Ok(listing) => {
                let (schemas, mut snapshot) = relations::build(&listing.relations);
                snapshot.version = listing.catalog_version;
                if let Some(catalog) = self.ctx.catalog(DATABASE) {
                    for (name, schema) in schemas {
                        let _ = catalog.register_schema(&name, schema);
                    }
                }
                *self.snapshot.write().expect("catalog snapshot") = Arc::new(snapshot);
                METRICS.catalog_refreshes.inc();
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not list the engine's relations");
                return;
            }
        }
        *checked = Some(Instant::now());
        self.loaded.store(true, Ordering::Relaxed);
    }

    /// A relation was created, renamed or dropped: the next catalog
    /// statement sees it.
    pub fn invalidate(&self) {
        self.stale.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Plans one catalog statement for a session.
    async fn plan(
        &self,
        sql: &str,
        info: &SessionInfo,
    ) -> Result<(SessionState, LogicalPlan, Names), GatewayError> {
        self.refresh().await;
        let names = velo_engine::query::names::postgres_names(sql);
        let sql = fragments::replace_fragments(sql);
        // The catalog library turns correlated subqueries in a select list
        // into NULL. Shielded from that, they give real answers when
        // DataFusion can plan them; otherwise the library's way stands.
        if let Some(shielded) = fragments::shield_select_list_subqueries(&sql) {
            if let Ok((state, plan)) = self.plan_statement(&shielded, info, true).await {
                return Ok((state, plan, names));
            }
        }
        let (state, plan) = self.plan_statement(&sql, info, false).await?;
        Ok((state, plan, names))
    }

    /// Parses (with the catalog library's rewrites), rewrites and plans one
    /// statement; `check` also plans it physically (where the subqueries
    /// DataFusion cannot decorrelate fail).
    async fn plan_statement(
        &self,
        sql: &str,
        info: &SessionInfo,
        check: bool,
    ) -> Result<(SessionState, LogicalPlan), GatewayError> {
        let mut statements = self
            .parser
            .parse(sql)
            .map_err(|e| GatewayError::Syntax(e.to_string()))?;
        if statements.len() != 1 {
            return Err(GatewayError::Syntax(
                "expected exactly one catalog statement".into(),
            ));
        }
        let mut statement = statements.remove(0);
        rewrite::rewrite(&mut statement, &self.catalog_tables);
        let mut state = self.ctx.state();
        pg_catalog::Scans::install(&mut state);
        state
            .config_mut()
            .set_extension(Arc::new(roles::SessionUser(info.user.clone())));
        functions::register_session(&mut state, info).map_err(internal)?;
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
            .map_err(plan_error)?;
        if check {
            subplans::physical(&state, plan.clone(), Instant::now() + TIME_LIMIT)
                .await
                .map_err(plan_error)?;
        }
        Ok((state, plan))
    }

    /// Parameter types (as PostgreSQL type oids) and the result schema.
    pub async fn describe(
        &self,
        sql: &str,
        info: &SessionInfo,
    ) -> Result<(Vec<u32>, SchemaRef), GatewayError> {
        let (_, plan, names) = self.plan(sql, info).await?;
        let types = parameter_types(&plan)?;
        let params = types
            .iter()
            .map(|t| {
                t.as_ref().map_or(crate::pg::oid::TEXT, |t| {
                    crate::codec::pg_type(&Field::new("", t.clone(), true)).0
                })
            })
            .collect();
        Ok((params, normalized_schema(&plan, &names)))
    }

    /// Runs a catalog statement to completion: its schema and batches.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[TypedValue],
        info: &SessionInfo,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), GatewayError> {
        let (state, mut plan, names) = self.plan(sql, info).await?;
        if !params.is_empty() {
            let types = parameter_types(&plan)?;
            let values = params
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let value =
                        velo_engine::service::scalar_from_proto(p).map_err(|e| internal(&e))?;
                    let expected = types.get(i).cloned().flatten();
                    let value = array_literal(value, expected.as_ref());
                    match expected {
                        Some(t) if !value.is_null() => value.cast_to(&t).map_err(|_| {
                            GatewayError::InvalidText(format!(
                                "invalid input syntax for type {t}: \"{value}\""
                            ))
                        }),
                        _ => Ok(value),
                    }
                })
                .collect::<Result<Vec<ScalarValue>, _>>()?;
            plan = plan
                .with_param_values(ParamValues::from(values))
                .map_err(plan_error)?;
        }
        let schema = normalized_schema(&plan, &names);
        let collect = collect_bounded(state, plan);
        let batches = tokio::time::timeout(TIME_LIMIT, collect)
            .await
            .map_err(|_| GatewayError::StatementTimeout)??;
        let batches = cast_batches(&schema, batches)?;
        Ok((schema, batches))
    }
}

/// Collects a catalog result, refusing one larger than tools ever read
/// (54000) instead of holding it whole.
async fn collect_bounded(
    state: SessionState,
    plan: LogicalPlan,
) -> Result<Vec<RecordBatch>, GatewayError> {
    use futures::StreamExt;
    let physical = subplans::physical(&state, plan, Instant::now() + TIME_LIMIT)
        .await
        .map_err(plan_error)?;
    let mut stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())
        .map_err(plan_error)?;
    let (mut batches, mut rows, mut bytes) = (Vec::new(), 0usize, 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(plan_error)?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        if rows > ROW_LIMIT || bytes > MEMORY_LIMIT {
            return Err(GatewayError::ProgramLimitExceeded(format!(
                "catalog result exceeds {ROW_LIMIT} rows or {} MiB",
                MEMORY_LIMIT >> 20
            )));
        }
        batches.push(batch);
    }
    Ok(batches)
}

/// A text parameter in array syntax ('{r,v}', as drivers send text[])
/// where the statement wants an array, or says nothing (`= ANY($1)`).
fn array_literal(value: ScalarValue, expected: Option<&DataType>) -> ScalarValue {
    let wants_array = matches!(expected, None | Some(DataType::List(_)));
    match &value {
        ScalarValue::Utf8(Some(text))
            if wants_array && text.starts_with('{') && text.ends_with('}') =>
        {
            let items: Vec<ScalarValue> = text[1..text.len() - 1]
                .split(',')
                .filter(|e| !e.is_empty())
                .map(|e| ScalarValue::Utf8(Some(e.trim().trim_matches('"').to_string())))
                .collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
        }
        _ => value,
    }
}

fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, GatewayError> {
    velo_engine::query::parameter_types(plan).map_err(plan_error)
}

fn plan_error(e: datafusion::error::DataFusionError) -> GatewayError {
    let e = e.find_root().to_string();
    let message = e
        .strip_prefix("Error during planning: ")
        .or_else(|| e.strip_prefix("Execution error: "))
        .or_else(|| e.strip_prefix("SQL error: "))
        .or_else(|| e.strip_prefix("This feature is not implemented: "))
        .unwrap_or(&e)
        .to_string();
    if message.contains(subplans::MORE_THAN_ONE_ROW) {
        GatewayError::CardinalityViolation
    } else if message.contains(subplans::OUT_OF_TIME) {
        GatewayError::StatementTimeout
    } else if message.contains(subplans::TOO_MANY_VALUES) {
        GatewayError::ProgramLimitExceeded(message)
    } else if message.contains("Resources exhausted") {
        GatewayError::OutOfMemory(format!("catalog statement out of memory: {message}"))
    } else if message.contains("table") && message.contains("not found") {
        GatewayError::UndefinedTable(format!("catalog relation does not exist: {message}"))
    } else if message.contains("Invalid function")
        || message.contains("function") && message.contains("not found")
    {
        GatewayError::UndefinedFunction(format!("catalog function does not exist: {message}"))
    } else if message.starts_with("ParserError") {
        GatewayError::Syntax(message)
    } else {
        GatewayError::Catalog(format!("catalog query not supported: {message}"))
    }
}

/// Catalog results in the Arrow types the encoder speaks (the engine's):
/// view and large strings as Utf8, small and unsigned integers widened.
fn normalized_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => DataType::Utf8,
        DataType::Int8 | DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Dictionary(_, v) => normalized_type(v),
        DataType::LargeList(f) | DataType::ListView(f) | DataType::List(f) => DataType::List(
            Arc::new(Field::new("item", normalized_type(f.data_type()), true)),
        ),
        other => other.clone(),
    }
}

/// Output column names PostgreSQL would give, where they differ from
/// DataFusion's.
type Names = Option<Vec<velo_engine::query::names::Column>>;

/// The result schema clients see: encodable types, PostgreSQL's names and
/// types.
fn normalized_schema(plan: &LogicalPlan, names: &Names) -> SchemaRef {
    let types = result_types::result_types(plan);
    let encodable = Schema::new(
        plan.schema()
            .fields()
            .iter()
            .zip(types)
            .map(|(f, pg_type)| {
                // The inferred type is the one that holds (a cast keeps its
                // operand's metadata in DataFusion).
                let mut metadata = f.metadata().clone();
                metadata.remove(crate::codec::PG_TYPE_KEY);
                let field = Field::new(f.name(), normalized_type(f.data_type()), true)
                    .with_metadata(metadata);
                match pg_type {
                    Some(oid) => result_types::declaring(field, oid),
                    None => field,
                }
            })
            .collect::<Vec<_>>(),
    );
    velo_engine::query::names::renamed(&encodable, names.as_deref())
}

/// Batches cast to the result schema's (encodable) types.
fn cast_batches(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, GatewayError> {
    batches
        .into_iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(internal)?;
            RecordBatch::try_new(schema.clone(), columns).map_err(internal)
        })
        .collect()
}
