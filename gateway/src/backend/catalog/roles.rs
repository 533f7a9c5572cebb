//! pg_roles and pg_authid with oids. Everything in this catalog belongs to
//! whoever asks: owner columns hold 10 (PostgreSQL's bootstrap superuser)
//! and `pg_get_userbyid` answers the session user. So the session user's
//! role is oid 10, and a join of an owner column with pg_roles finds it;
//! the other login roles take an oid derived from their name. The library
//! gives every role oid 0.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, Int32Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::pg_catalog::{column, in_memory, read_all, replaced};
use super::stable_oids::role_oid;

/// The oid owner columns hold.
pub(super) const OWNER: i32 = 10;

/// The user a catalog statement runs for (a session config extension).
#[derive(Debug)]
pub struct SessionUser(pub String);

impl datafusion::config::ConfigExtension for SessionUser {
    const PREFIX: &'static str = "velo_session_user";
}

impl datafusion::config::ExtensionOptions for SessionUser {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn cloned(&self) -> Box<dyn datafusion::config::ExtensionOptions> {
        Box::new(SessionUser(self.0.clone()))
    }
    fn set(&mut self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
    fn entries(&self) -> Vec<datafusion::config::ConfigEntry> {
        Vec::new()
    }
}

/// A role relation (pg_roles, pg_authid) with the oids above.
#[derive(Debug)]
pub struct Roles {
    pub inner: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for Roles {
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
        let user = state.config().get_extension::<SessionUser>();
        let batches = read_all(&self.inner, state)
            .await?
            .into_iter()
            .map(|b| {
                let names = column(&b, "rolname")?.as_string::<i32>();
                let oids: Int32Array = names
                    .iter()
                    .map(|name| {
                        name.map(|n| match &user {
                            Some(u) if u.0 == n => OWNER,
                            _ => role_oid(n),
                        })
                    })
                    .collect();
                replaced(&b, vec![("oid", Arc::new(oids))])
            })
            .collect::<Result<Vec<_>>>()?;
        in_memory(batches, self.schema(), projection)
    }
}
