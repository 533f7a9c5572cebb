//! Files read by queries (`file://` URIs and configured tables), kept parsed
//! in memory so that a file is parsed once, not once per query.
//!
//! A file is known by its path, length and modification time: when either
//! changes, the next query parses it again. Parsed files are kept up to a
//! byte bound (Arrow's memory size of the rows); beyond it the least recently
//! used go first. A file longer than the bound, a directory, or a bound of 0
//! is never kept: such a query streams from the file as it is parsed.
//!
//! The first query of a file parses all of it before its first row leaves
//! (the later ones skip parsing altogether); the ones after a change, too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{collect, ExecutionPlan};

/// Memory for parsed files on one node.
pub const DEFAULT_FILE_CACHE_BYTES: usize = 256 << 20;

/// A file's rows as parsed, shared by the queries that read them.
pub struct Parsed {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// Identifies one version of a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: SystemTime,
}

struct Entry {
    stamp: Stamp,
    parsed: Arc<Parsed>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    by_path: HashMap<String, Entry>,
    bytes: usize,
    /// Ticks on every lookup and insertion; an entry's `last_used` (its
    /// tick) orders eviction.
    clock: u64,
    /// Files parsed to be kept (tests read it).
    parses: u64,
}

pub struct FileCache {
    max_bytes: usize,
    entries: Mutex<Entries>,
    /// One file is parsed at a time: the first queries of a file wait for one
    /// parse instead of each making their own, and parses in flight hold at
    /// most one file beyond the bound.
    parsing: tokio::sync::Mutex<()>,
}

/// What the cache holds, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCacheStats {
    pub files: usize,
    pub bytes: usize,
    pub parses: u64,
}

impl FileCache {
    /// `max_bytes` of parsed rows at most; 0: files are never kept.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            entries: Mutex::default(),
            parsing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn stats(&self) -> FileCacheStats {
        let entries = self.entries.lock().expect("file cache lock");
        FileCacheStats {
            files: entries.by_path.len(),
            bytes: entries.bytes,
            parses: entries.parses,
        }
    }

    /// A table over the kept rows of `path`, if they are kept and the file
    /// has not changed since.
    pub async fn kept(self: &Arc<Self>, path: &str) -> Option<Arc<dyn TableProvider>> {
        let stamp = self.stamp(path).await?;
        let parsed = self.lookup(path, stamp)?;
        Some(self.file_table(path, Source::Parsed(parsed)))
    }

    /// A table over `path` as `listing` (DataFusion's reader of the file)
    /// reads it, parsed into the cache when a query scans it.
    pub fn table(
        self: &Arc<Self>,
        path: &str,
        listing: Arc<dyn TableProvider>,
    ) -> Arc<dyn TableProvider> {
        self.file_table(path, Source::Listing(listing))
    }

    fn file_table(self: &Arc<Self>, path: &str, source: Source) -> Arc<dyn TableProvider> {
        Arc::new(FileTable {
            path: path.to_string(),
            source,
            cache: self.clone(),
        })
    }

    async fn stamp(&self, path: &str) -> Option<Stamp> {
        if self.max_bytes == 0 {
            return None;
        }
        let meta = tokio::fs::metadata(path).await.ok()?;
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok()?,
        };
        (meta.is_file() && stamp.len <= self.max_bytes as u64).then_some(stamp)
    }

    fn lookup(&self, path: &str, stamp: Stamp) -> Option<Arc<Parsed>> {
        let mut entries = self.entries.lock().expect("file cache lock");
        entries.clock += 1;
        let now = entries.clock;
        let entry = entries.by_path.get_mut(path)?;
        if entry.stamp != stamp {
            return None;
        }
        entry.last_used = now;
        Some(entry.parsed.clone())
    }

    /// The rows of `path`, parsed by scanning `listing` unless they are kept;
    /// `None` if the file is not to be kept.
    async fn parse(
        &self,
        path: &str,
        listing: &dyn TableProvider,
        state: &dyn Session,
    ) -> DfResult<Option<Arc<Parsed>>> {
        let _one_at_a_time = self.parsing.lock().await;
        let Some(stamp) = self.stamp(path).await else {
            return Ok(None);
        };
        if let Some(parsed) = self.lookup(path, stamp) {
            return Ok(Some(parsed));
        }
        let plan = listing.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let parsed = Arc::new(Parsed {
            schema: listing.schema(),
            batches,
        });
        // Written to while it was read: serve these rows to this query only.
        if self.stamp(path).await == Some(stamp) {
            self.keep(path, stamp, parsed.clone());
        }
        Ok(Some(parsed))
    }

    fn keep(&self, path: &str, stamp: Stamp, parsed: Arc<Parsed>) {
        let bytes: usize = parsed
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let mut entries = self.entries.lock().expect("file cache lock");
        entries.parses += 1;
        if let Some(old) = entries.by_path.remove(path) {
            entries.bytes -= old.bytes;
        }
        if bytes > self.max_bytes {
            return;
        }
        while entries.bytes + bytes > self.max_bytes {
            let oldest = entries
                .by_path
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(p, _)| p.clone())
                .expect("bytes are held by some entry");
            let evicted = entries.by_path.remove(&oldest).expect("just found");
            entries.bytes -= evicted.bytes;
        }
        entries.clock += 1;
        let last_used = entries.clock;
        entries.bytes += bytes;
        entries.by_path.insert(
            path.to_string(),
            Entry {
                stamp,
                parsed,
                bytes,
                last_used,
            },
        );
    }
}

enum Source {
    /// Rows kept when the query was planned: the query reads the file as it
    /// was then, whatever happens to it meanwhile.
    Parsed(Arc<Parsed>),
    Listing(Arc<dyn TableProvider>),
}

/// A file as one query sees it.
struct FileTable {
    path: String,
    source: Source,
    cache: Arc<FileCache>,
}

impl std::fmt::Debug for FileTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTable")
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait::async_trait]
impl TableProvider for FileTable {
    fn schema(&self) -> SchemaRef {
        match &self.source {
            Source::Parsed(parsed) => parsed.schema.clone(),
            Source::Listing(listing) => listing.schema(),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let parsed = match &self.source {
            Source::Parsed(parsed) => parsed.clone(),
            Source::Listing(listing) => {
                match self
                    .cache
                    .parse(&self.path, listing.as_ref(), state)
                    .await?
                {
                    Some(parsed) => parsed,
                    None => return listing.scan(state, projection, filters, limit).await,
                }
            }
        };
        let source = MemorySourceConfig::try_new(
            std::slice::from_ref(&parsed.batches),
            parsed.schema.clone(),
            projection.cloned(),
        )?
        .with_limit(limit);
        Ok(datafusion::datasource::source::DataSourceExec::from_data_source(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    use std::io::Write;

    fn write_csv(path: &std::path::Path, rows: std::ops::Range<i64>) {
        let mut f = std::fs::File::create(path).unwrap();
        writeln!(f, "id,name").unwrap();
        for i in rows {
            writeln!(f, "{i},row-{i}").unwrap();
        }
    }

    /// SUM(id) of `path` read through `cache`, as the catalog registers it.
    async fn sum_ids(cache: &Arc<FileCache>, path: &std::path::Path) -> i64 {
        let path = path.to_str().unwrap();
        let ctx = register(cache, path).await;
        let batches = ctx
            .sql("SELECT SUM(id) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    /// `path` as table `t`, registered the way the catalog does.
    async fn register(cache: &Arc<FileCache>, path: &str) -> SessionContext {
        let ctx = SessionContext::new();
        let table = match cache.kept(path).await {
            Some(table) => table,
            None => {
                ctx.register_csv("t", path, CsvReadOptions::new())
                    .await
                    .unwrap();
                cache.table(path, ctx.deregister_table("t").unwrap().unwrap())
            }
        };
        ctx.register_table("t", table).unwrap();
        ctx
    }

    fn total(rows: std::ops::Range<i64>) -> i64 {
        rows.sum()
    }

    #[tokio::test]
    async fn a_file_is_parsed_once_while_it_does_not_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write_csv(&path, 0..1000);
        let cache = Arc::new(FileCache::new(DEFAULT_FILE_CACHE_BYTES));
        for _ in 0..3 {
            assert_eq!(sum_ids(&cache, &path).await, total(0..1000));
        }
        let stats = cache.stats();
        assert_eq!((stats.files, stats.parses), (1, 1));
        assert!(stats.bytes > 0);
    }

    #[tokio::test]
    async fn a_changed_file_is_parsed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write_csv(&path, 0..1000);
        let cache = Arc::new(FileCache::new(DEFAULT_FILE_CACHE_BYTES));
        assert_eq!(sum_ids(&cache, &path).await, total(0..1000));
        // Longer, so the change shows even where modification times are coarse.
        write_csv(&path, 0..2000);
        assert_eq!(sum_ids(&cache, &path).await, total(0..2000));
        assert_eq!(sum_ids(&cache, &path).await, total(0..2000));
        let stats = cache.stats();
        assert_eq!((stats.files, stats.parses), (1, 2));
    }

    #[tokio::test]
    async fn the_least_recently_used_file_goes_when_the_bound_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        write_csv(&a, 0..1000);
        write_csv(&b, 1000..2000);
        // Measure one parsed file, then allow a bit more than one.
        let probe = Arc::new(FileCache::new(DEFAULT_FILE_CACHE_BYTES));
        sum_ids(&probe, &a).await;
        let one = probe.stats().bytes;
        let cache = Arc::new(FileCache::new(one + one / 2));

        assert_eq!(sum_ids(&cache, &a).await, total(0..1000));
        assert_eq!(sum_ids(&cache, &b).await, total(1000..2000));
        let stats = cache.stats();
        assert_eq!(stats.files, 1, "a was evicted for b");
        assert!(stats.bytes <= one + one / 2);
        // `a` is read from the file again, and correctly.
        assert_eq!(sum_ids(&cache, &a).await, total(0..1000));
        assert_eq!(cache.stats().parses, 3);
    }

    #[tokio::test]
    async fn a_file_over_the_bound_is_streamed_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write_csv(&path, 0..1000);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        for max in [0, len - 1] {
            let cache = Arc::new(FileCache::new(max));
            assert_eq!(sum_ids(&cache, &path).await, total(0..1000));
            assert_eq!(sum_ids(&cache, &path).await, total(0..1000));
            let stats = cache.stats();
            assert_eq!((stats.files, stats.bytes, stats.parses), (0, 0, 0));
        }
    }

    #[tokio::test]
    async fn a_query_planned_on_kept_rows_reads_them_though_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write_csv(&path, 0..1000);
        let cache = Arc::new(FileCache::new(DEFAULT_FILE_CACHE_BYTES));
        sum_ids(&cache, &path).await;
        let ctx = register(&cache, path.to_str().unwrap()).await;
        let df = ctx.sql("SELECT COUNT(*) FROM t").await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let batches = df.collect().await.unwrap();
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().value(0),
            1000
        );
    }
}
