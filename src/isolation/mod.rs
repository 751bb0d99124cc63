//! What an isolation model is, in one place per model.
//!
//! A tier maps to an isolation model ([`Isolation`], fixed in `tenant.rs`); everything
//! that differs between the models lives behind [`Model`], one file each:
//!
//! - [`pool`] (starter): the tenant's rows in shared tables of schema `pool`, row-level
//!   security bound to its login;
//! - [`bridge`] (growth): a schema and role of its own in the shared database;
//! - [`silo`] (enterprise): a database server of its own (RDS instance, KMS key,
//!   security group, ECS service), laid out like a bridge inside.
//!
//! Callers never match on [`Isolation`]: they ask [`of`] for the tenant's model and call
//! it. The model owns provisioning and deprovisioning, the database checks of `verify`
//! and the AWS checks only it has, the migration target and its post-migration step, and
//! the data hooks that moves and exports build on: which tables hold the tenant's rows,
//! streaming them out and in, and freezing the tenant's writes. Derived names (roles,
//! secrets, schemas, databases, task families) live in the tenant model (`TenantId`).

pub mod bridge;
pub mod pool;
pub mod silo;

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio_postgres::{Client, CopyInSink, CopyOutStream};

use crate::aws::AwsClients;
use crate::db::data::{self, TableInfo};
use crate::db::migrate::setup_tx;
use crate::db::{Database, DbSecret, Target, sql};
use crate::render::TenantInputs;
use crate::report::Checks;
use crate::tenant::{Isolation, TenantId, Tier};
use crate::workspace::TenantSpec;

/// The behaviour of one isolation model. Defaults are what most models share (the
/// shared database; a schema of the tenant's own, as bridge and silo have); each model
/// file overrides what it does differently.
#[async_trait]
pub trait Model: Send + Sync {
    fn isolation(&self) -> Isolation;

    // --- AWS and Terraform -------------------------------------------------------------

    /// The tenant has a database server of its own (RDS instance, KMS key, security
    /// group, and its own ECS service): rendering needs the VPC, `remove` turns deletion
    /// protection off first, and the database is administered with its own master login.
    fn dedicated(&self) -> bool {
        false
    }

    /// The Secrets Manager entries the module creates for the tenant.
    fn secret_names(&self, id: &TenantId) -> Vec<String> {
        vec![id.db_secret_name()]
    }

    /// AWS checks only this model has.
    async fn verify_aws(&self, _aws: &AwsClients, _inputs: &TenantInputs, _c: &mut Checks) {}

    // --- the database -------------------------------------------------------------------

    /// Where the tenant's tables live: the migration target.
    async fn target(
        &self,
        db: &Database,
        spec: &TenantSpec,
        silo_admin: Option<&DbSecret>,
    ) -> Result<Target>;

    /// The `schema` field the tenant's secret carries.
    fn secret_schema(&self, _id: &TenantId) -> Option<String> {
        None
    }

    /// The tenant's secret names the shared database (not a dedicated one).
    fn in_shared_database(&self) -> bool {
        true
    }

    /// The tenant's login is a member of the pool group (DML on the shared tables).
    fn pool_member(&self) -> bool {
        false
    }

    /// Prepares the database the target lives in before anything connects to it (silo:
    /// creates a local dedicated database when `[database] local_silo` maps it).
    async fn prepare_database(&self, _db: &Database, _target: &Target) -> Result<()> {
        Ok(())
    }

    /// The SQL that builds the model's isolation for the tenant's login `role`, run in
    /// one transaction after the role exists. Idempotent: a rerun repairs drift.
    fn provision_sql(&self, target: &Target, role: &str, id: &TenantId) -> String {
        let mut body = self.structure_sql(target, role, id);
        body.push_str(&self.attach_sql(role));
        body
    }

    /// The places that hold the tenant's rows and the grants on them, without pointing
    /// the login there: what a move prepares on its destination while the tenant still
    /// works on its source. Idempotent.
    fn structure_sql(&self, target: &Target, role: &str, id: &TenantId) -> String;

    /// Points the tenant's login at this model's tables (group memberships); its
    /// `search_path` is set with the role itself.
    fn attach_sql(&self, role: &str) -> String;

    /// Takes the tenant's login away from this model's tables while their rows stay
    /// (a move's retained source): the tenant can no longer see or change them.
    fn hide_sql(&self, target: &Target, role: &str) -> String;

    /// Deletes the tenant's rows (pool), schema (bridge) or local dedicated database
    /// (silo; a real one goes with its RDS instance), and its login too when
    /// `drop_login`. Idempotent: offboarding and a finished move's source.
    async fn drop_data(&self, db: &Database, spec: &TenantSpec, drop_login: bool) -> Result<()>;

    /// The model's catalog checks, as the admin of the target's database.
    async fn verify_catalog(
        &self,
        admin: &Client,
        target: &Target,
        role: &str,
        c: &mut Checks,
    ) -> Result<()>;

    /// The model's checks as the tenant, logged in with exactly its secret.
    async fn verify_as_tenant(
        &self,
        _tenant: &Client,
        _spec: &TenantSpec,
        _c: &mut Checks,
    ) -> Result<()> {
        Ok(())
    }

    /// Runs after every migration on the target, in the migration's transaction. Default:
    /// a schema of the tenant's own (the `tenant_id` check, the tenant's grants).
    fn after_migration(&self, target: &Target) -> String {
        let tenant = target.tenant.as_ref().map(|t| t.as_str()).unwrap_or("");
        sql::tenant_after_migration(&target.schema, &target.schema, tenant)
    }

    // --- data hooks (moves, exports) ----------------------------------------------------

    /// Which rows of a table are the tenant's, as an SQL condition. Default: all of them
    /// (the schema is the tenant's).
    fn row_filter(&self, _id: &TenantId) -> Option<String> {
        None
    }

    /// The tables holding the tenant's rows, parents before children.
    async fn tables(&self, client: &Client, target: &Target) -> Result<Vec<TableInfo>> {
        data::list_tables(client, &target.schema).await
    }

    /// Streams the tenant's rows of `table` out (COPY, CSV, column order of `table`).
    async fn copy_out(
        &self,
        client: &Client,
        id: &TenantId,
        table: &TableInfo,
    ) -> Result<CopyOutStream> {
        data::copy_out(client, table, self.row_filter(id).as_deref()).await
    }

    /// Opens a COPY of rows into `table`; identity values are kept. Call
    /// [`data::advance_sequences`] once the sink is finished.
    async fn copy_in(
        &self,
        client: &Client,
        table: &TableInfo,
    ) -> Result<CopyInSink<bytes::Bytes>> {
        data::copy_in(client, table).await
    }

    /// Stops the tenant's writes, enforced by privileges the tenant's session cannot
    /// change, and ends its sessions; reads keep working. Survives reprovisioning and
    /// migrations until [`unfreeze`](Self::unfreeze). Default: a schema of the tenant's
    /// own, whose tables lose their write grants.
    async fn freeze(&self, client: &Client, target: &Target, id: &TenantId) -> Result<()> {
        schema_freeze(client, target, id, true).await
    }

    async fn unfreeze(&self, client: &Client, target: &Target, id: &TenantId) -> Result<()> {
        schema_freeze(client, target, id, false).await
    }
}

/// Freezing a schema-per-tenant target: the login keeps SELECT and loses every write
/// privilege on the schema's tables; the marker keeps provisioning and migrations from
/// granting them back.
async fn schema_freeze(
    client: &Client,
    target: &Target,
    id: &TenantId,
    frozen: bool,
) -> Result<()> {
    let role = id.db_role();
    let mut body = data::mark_frozen(&role, frozen);
    body.push_str(&sql::tenant_write_grants(&target.schema, &role));
    if frozen {
        body.push_str(&data::terminate_sessions(&role));
    }
    let verb = if frozen { "freeze" } else { "unfreeze" };
    setup_tx(client, &body).await.with_context(|| {
        format!(
            "cannot {verb} the writes of tenant `{id}` in schema `{}`",
            target.schema
        )
    })
}

/// The model of an isolation.
pub fn model(isolation: Isolation) -> &'static dyn Model {
    match isolation {
        Isolation::Pool => &pool::Pool,
        Isolation::Bridge => &bridge::Bridge,
        Isolation::Silo => &silo::Silo,
    }
}

/// The model of a tier.
pub fn of(tier: Tier) -> &'static dyn Model {
    model(tier.isolation())
}
