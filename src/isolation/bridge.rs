//! Bridge (growth): a schema `tenant_<id>` and a login of its own in the shared
//! database. The schema is owned by the admin (the tenant uses its tables but cannot
//! drop or alter them), its login's `search_path` is pinned to it, and nothing in it is
//! granted to PUBLIC or to any other tenant.

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio_postgres::Client;

use crate::db::ident::ident;
use crate::db::migrate::setup_tx;
use crate::db::verify::schema_checks;
use crate::db::{Database, DbSecret, Location, Target, sql, tenant_target};
use crate::isolation::Model;
use crate::report::Checks;
use crate::tenant::{Isolation, TenantId};
use crate::workspace::TenantSpec;

pub struct Bridge;

#[async_trait]
impl Model for Bridge {
    fn isolation(&self) -> Isolation {
        Isolation::Bridge
    }

    async fn target(
        &self,
        _db: &Database,
        spec: &TenantSpec,
        _silo_admin: Option<&DbSecret>,
    ) -> Result<Target> {
        Ok(tenant_target(spec, Location::Shared))
    }

    fn secret_schema(&self, id: &TenantId) -> Option<String> {
        Some(id.db_schema())
    }

    fn structure_sql(&self, target: &Target, role: &str, id: &TenantId) -> String {
        sql::own_schema_structure(&target.schema, role, id.as_str())
    }

    fn attach_sql(&self, role: &str) -> String {
        // A login that used to be a starter leaves the pool group.
        sql::leave_pool(role)
    }

    fn hide_sql(&self, target: &Target, role: &str) -> String {
        sql::hide_schema(&target.schema, role)
    }

    async fn drop_data(&self, db: &Database, spec: &TenantSpec, drop_login: bool) -> Result<()> {
        let shared = db.admin().connect("tenantctl deprovision").await?;
        let role = spec.id.db_role();
        let mut body = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE;\n",
            ident(&spec.id.db_schema())
        );
        if drop_login {
            body.push_str(&sql::drop_tenant_role(&role));
        }
        setup_tx(&shared, &body)
            .await
            .with_context(|| format!("cannot drop schema `{}`", spec.id.db_schema()))
    }

    async fn verify_catalog(
        &self,
        admin: &Client,
        target: &Target,
        role: &str,
        c: &mut Checks,
    ) -> Result<()> {
        schema_checks(admin, target, role, "db.bridge", c).await
    }
}
