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

    fn provision_sql(&self, target: &Target, role: &str, id: &TenantId) -> String {
        let mut body = sql::grant_connect(role);
        body.push_str(&sql::target_lock(&target.schema));
        // A login that used to be a starter leaves the pool group.
        body.push_str(&sql::leave_pool(role));
        body.push_str(&sql::tenant_schema(&target.schema, role));
        body.push_str(&sql::tenant_after_migration(
            &target.schema,
            role,
            id.as_str(),
        ));
        body
    }

    async fn deprovision(&self, _db: &Database, shared: &Client, spec: &TenantSpec) -> Result<()> {
        let role = spec.id.db_role();
        let body = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE;\n{}",
            ident(&spec.id.db_schema()),
            sql::drop_tenant_role(&role)
        );
        setup_tx(shared, &body)
            .await
            .with_context(|| format!("cannot drop schema and role `{role}`"))
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

    fn after_migration(&self, target: &Target) -> String {
        sql::tenant_after_migration(&target.schema, &target.schema, target_tenant(target))
    }

    fn row_filter(&self, _id: &TenantId) -> Option<String> {
        None
    }

    async fn freeze(&self, client: &Client, target: &Target, id: &TenantId) -> Result<()> {
        schema_freeze(client, target, id, true).await
    }

    async fn unfreeze(&self, client: &Client, target: &Target, id: &TenantId) -> Result<()> {
        schema_freeze(client, target, id, false).await
    }
}

/// The tenant a schema target belongs to.
pub(super) fn target_tenant(target: &Target) -> &str {
    target.tenant.as_ref().map(|t| t.as_str()).unwrap_or("")
}

/// Freezing a schema-per-tenant target (bridge and silo): the login keeps SELECT and
/// loses every write privilege on the schema's tables; the marker keeps provisioning
/// and migrations from granting them back.
pub(super) async fn schema_freeze(
    client: &Client,
    target: &Target,
    id: &TenantId,
    frozen: bool,
) -> Result<()> {
    let role = id.db_role();
    let mut body = crate::db::data::mark_frozen(&role, frozen);
    body.push_str(&sql::tenant_write_grants(&target.schema, &role));
    if frozen {
        body.push_str(&crate::db::data::terminate_sessions(&role));
    }
    let verb = if frozen { "freeze" } else { "unfreeze" };
    setup_tx(client, &body).await.with_context(|| {
        format!(
            "cannot {verb} the writes of tenant `{id}` in schema `{}`",
            target.schema
        )
    })
}
