//! Oids that do not depend on which gateway answers or when it started.
//!
//! The library numbers databases, schemas and relations from 16384 in the
//! order it first meets them, so the same relation could have one oid on
//! one replica and another after a restart. Tools cache oids across
//! connections (pgjdbc's and Npgsql's type and relation caches), and those
//! connections may land on different replicas. Here every such oid is
//! replaced as the tables are read: PostgreSQL's own oid for what
//! PostgreSQL has (`pg_catalog` 11, `public` 2200, `pg_class` 1259, ...),
//! and for the rest one derived from the object's kind and name.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::pg15_oids::SYSTEM_RELATIONS;
use super::pg_catalog::{column, in_memory, names, read_all, replaced};

/// The first oid PostgreSQL gives to objects a user creates.
pub(super) const FIRST_USER_OID: i32 = 16384;

/// Schemas and databases every PostgreSQL 15 cluster has, with their oids.
const SYSTEM_NAMESPACES: &[(&str, i32)] = &[
    ("pg_catalog", 11),
    ("pg_toast", 99),
    ("public", 2200),
    ("information_schema", 13207),
];
const SYSTEM_DATABASES: &[(&str, i32)] = &[("template1", 1), ("template0", 4), ("postgres", 5)];

/// What an oid names, in an order that sorts the same everywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Object {
    Database(String),
    Namespace(String),
    Relation(String, String),
    Role(String),
}

impl Object {
    fn known(&self) -> Option<i32> {
        match self {
            Object::Database(name) => lookup(SYSTEM_DATABASES, name),
            Object::Namespace(name) => lookup(SYSTEM_NAMESPACES, name),
            Object::Relation(schema, name) => SYSTEM_RELATIONS
                .iter()
                .find(|(s, n, _)| s == schema && n == name)
                .map(|(_, _, oid)| *oid),
            Object::Role(_) => None,
        }
    }

    /// FNV-1a over the kind and the names: spread over the user range.
    fn derived(&self) -> u32 {
        let (kind, names): (u8, Vec<&str>) = match self {
            Object::Database(n) => (b'd', vec![n]),
            Object::Namespace(n) => (b'n', vec![n]),
            Object::Relation(s, n) => (b'r', vec![s, n]),
            Object::Role(n) => (b'u', vec![n]),
        };
        let mut hash: u32 = 0x811c_9dc5;
        let bytes = std::iter::once(kind).chain(
            names
                .iter()
                .flat_map(|n| n.bytes().chain(std::iter::once(0))),
        );
        for b in bytes {
            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let first = FIRST_USER_OID as u32;
        first + hash % (i32::MAX as u32 - first)
    }
}

/// The oid of a login role other than the session's own (which is 10:
/// see `roles`), the same on every gateway.
pub fn role_oid(name: &str) -> i32 {
    Object::Role(name.to_string()).derived() as i32
}

fn lookup(table: &[(&str, i32)], name: &str) -> Option<i32> {
    table.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid)
}

/// The library's oid of each object → the stable one.
#[derive(Debug, Default)]
pub struct StableOids(HashMap<i32, i32>);

impl StableOids {
    /// Numbers `objects` (library oid, object). Objects PostgreSQL has keep
    /// its oid; the rest take their derived oid, or the next free one when
    /// two collide, in name order so that every gateway agrees.
    fn number(mut objects: Vec<(i32, Object)>) -> Self {
        let mut taken: HashSet<i32> = objects.iter().filter_map(|(_, o)| o.known()).collect();
        objects.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        let mut map = HashMap::new();
        for (library, object) in objects {
            let oid = match object.known() {
                Some(oid) => oid,
                None => {
                    let mut candidate = object.derived() as i32;
                    while !taken.insert(candidate) {
                        candidate = if candidate == i32::MAX {
                            FIRST_USER_OID
                        } else {
                            candidate + 1
                        };
                    }
                    candidate
                }
            };
            map.insert(library, oid);
        }
        Self(map)
    }

    /// Reads the library's schemas and relations.
    async fn read(sources: &OidSources, state: &dyn Session) -> Result<Self> {
        let names = names(&sources.namespace, &sources.class, state).await?;
        let namespaces = (names.namespaces.into_iter()).map(|(oid, n)| (oid, Object::Namespace(n)));
        let relations =
            (names.relations.into_iter()).map(|(oid, (s, n))| (oid, Object::Relation(s, n)));
        Ok(Self::number(namespaces.chain(relations).collect()))
    }

    /// The databases of a pg_database batch, numbered by their names: the
    /// library numbers its made-up `postgres` database afresh on many
    /// reads, so its oid cannot be looked up later.
    fn of_databases(batch: &RecordBatch) -> Result<Self> {
        let (oid, name) = (column(batch, "oid")?, column(batch, "datname")?);
        let objects = (0..batch.num_rows())
            .map(|i| {
                let name = name.as_string::<i32>().value(i).to_string();
                (
                    oid.as_primitive::<Int32Type>().value(i),
                    Object::Database(name),
                )
            })
            .collect();
        Ok(Self::number(objects))
    }

    /// `batch` with the oids in `columns` replaced.
    fn apply(&self, batch: &RecordBatch, columns: &[&'static str]) -> Result<RecordBatch> {
        let new = columns
            .iter()
            .map(|name| {
                let old = column(batch, name)?.as_primitive::<Int32Type>();
                let new: Int32Array = old
                    .iter()
                    .map(|v| v.map(|v| self.0.get(&v).copied().unwrap_or(v)))
                    .collect();
                Ok((*name, Arc::new(new) as ArrayRef))
            })
            .collect::<Result<Vec<_>>>()?;
        replaced(batch, new)
    }
}

/// The library's own tables the numbering is read from.
#[derive(Debug)]
pub struct OidSources {
    pub namespace: Arc<dyn TableProvider>,
    pub class: Arc<dyn TableProvider>,
}

/// A library table with its oid columns renumbered.
#[derive(Debug)]
pub struct Renumbered {
    pub inner: Arc<dyn TableProvider>,
    pub columns: &'static [&'static str],
    pub sources: Arc<OidSources>,
}

/// The library tables that hold database, schema and relation oids, and
/// the columns holding them.
pub const RENUMBERED: &[(&str, &[&str])] = &[
    ("pg_database", &["oid"]),
    ("pg_namespace", &["oid"]),
    ("pg_class", &["oid", "relnamespace"]),
    ("pg_attribute", &["attrelid"]),
];

#[async_trait]
impl TableProvider for Renumbered {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
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
        let batches = read_all(&self.inner, state).await?;
        let databases = self.inner.schema().field_with_name("datname").is_ok();
        let shared = match databases {
            true => None,
            false => Some(StableOids::read(&self.sources, state).await?),
        };
        let batches = batches
            .iter()
            .map(|b| match &shared {
                Some(oids) => oids.apply(b, self.columns),
                None => StableOids::of_databases(b)?.apply(b, self.columns),
            })
            .collect::<Result<Vec<_>>>()?;
        in_memory(batches, self.schema(), projection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(s: &str, n: &str) -> Object {
        Object::Relation(s.into(), n.into())
    }

    #[test]
    fn postgresql_objects_keep_their_oids_and_ours_do_not_depend_on_order() {
        let a = StableOids::number(vec![
            (16384, Object::Namespace("public".into())),
            (16385, relation("public", "trades")),
            (16386, relation("pg_catalog", "pg_class")),
            (16387, relation("public", "orders")),
        ]);
        // Another replica met them in another order.
        let b = StableOids::number(vec![
            (16390, relation("public", "orders")),
            (16391, relation("public", "trades")),
            (16392, relation("pg_catalog", "pg_class")),
            (16393, Object::Namespace("public".into())),
        ]);
        assert_eq!(a.0[&16384], 2200);
        assert_eq!(a.0[&16386], 1259);
        assert_eq!(a.0[&16385], b.0[&16391]);
        assert_eq!(a.0[&16387], b.0[&16390]);
        assert_ne!(a.0[&16385], a.0[&16387]);
        assert!(a.0[&16385] >= 16384);
    }

    #[test]
    fn colliding_names_get_distinct_oids_in_name_order() {
        // Two names whose derived oids are the same (found by search).
        let (a, b) = (relation("public", "t130465"), relation("public", "t407005"));
        assert_eq!(a.derived(), b.derived());
        for objects in [
            vec![(1, a.clone()), (2, b.clone())],
            vec![(2, b.clone()), (1, a.clone())],
        ] {
            let numbered = StableOids::number(objects);
            // The first in name order keeps its oid, the other takes the next.
            assert_eq!(numbered.0[&1], a.derived() as i32);
            assert_eq!(numbered.0[&2], a.derived() as i32 + 1);
        }
    }
}
