//! Silo (enterprise): a database server of its own. Terraform creates the RDS instance
//! (encrypted with the tenant's KMS key, deletion protection, own security group) and
//! an ECS service; tenantctl administers the database with the instance's master login
//! from `tenants/<id>/db-admin` (or, against the emulator, a local database mapped by
//! `[database] local_silo`). Inside, it is laid out like a bridge: schema and login
//! `tenant_<id>`, and nobody else may even connect.

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::aws::AwsClients;
use crate::db::connect::{Endpoint, PgContext, describe};
use crate::db::ident::ident;
use crate::db::migrate::setup_tx;
use crate::db::verify::schema_checks;
use crate::db::{Database, DbSecret, Location, Target, sql, tenant_target};
use crate::isolation::Model;
use crate::render::TenantInputs;
use crate::report::Checks;
use crate::tenant::{Isolation, TenantId};
use crate::workspace::TenantSpec;

pub struct Silo;

#[async_trait]
impl Model for Silo {
    fn isolation(&self) -> Isolation {
        Isolation::Silo
    }

    fn dedicated(&self) -> bool {
        true
    }

    fn secret_names(&self, id: &TenantId) -> Vec<String> {
        vec![id.db_secret_name(), id.db_admin_secret_name()]
    }

    async fn verify_aws(&self, aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
        crate::verify::rds_instance(aws, inputs, c).await;
        crate::verify::ecs_service(aws, inputs, c).await;
    }

    async fn target(
        &self,
        db: &Database,
        spec: &TenantSpec,
        silo_admin: Option<&DbSecret>,
    ) -> Result<Target> {
        let ep = db.silo_admin(&spec.id, silo_admin).await?;
        Ok(tenant_target(spec, Location::Silo(Box::new(ep))))
    }

    fn in_shared_database(&self) -> bool {
        false
    }

    async fn prepare_database(&self, db: &Database, target: &Target) -> Result<()> {
        if db.settings().local_silo.is_none() {
            return Ok(());
        }
        match &target.location {
            Location::Silo(ep) => create_local_database(ep).await,
            _ => Ok(()),
        }
    }

    fn structure_sql(&self, target: &Target, role: &str, id: &TenantId) -> String {
        // Nobody else may even connect to a dedicated database.
        let mut body = sql::silo_database_lockdown();
        body.push_str(&sql::own_schema_structure(
            &target.schema,
            role,
            id.as_str(),
        ));
        body
    }

    fn attach_sql(&self, role: &str) -> String {
        // A login that used to be a starter leaves the pool group.
        sql::leave_pool(role)
    }

    fn hide_sql(&self, target: &Target, role: &str) -> String {
        sql::hide_schema(&target.schema, role)
    }

    async fn drop_data(&self, db: &Database, spec: &TenantSpec, drop_login: bool) -> Result<()> {
        // A real dedicated database goes with its RDS instance; a local one is a
        // database on the local server.
        if db.settings().local_silo.is_none() {
            return Ok(());
        }
        let role = spec.id.db_role();
        let name = spec.id.db_name();
        let ep = db.silo_admin(&spec.id, None).await?;
        let maint = maintenance(&ep).await?;
        maint
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            ))
            .await
            .pg_context(|| format!("cannot drop database `{name}`"))?;
        if drop_login {
            setup_tx(&maint, &sql::drop_tenant_role(&role))
                .await
                .with_context(|| format!("cannot drop role `{role}`"))?;
        }
        Ok(())
    }

    async fn verify_catalog(
        &self,
        admin: &Client,
        target: &Target,
        role: &str,
        c: &mut Checks,
    ) -> Result<()> {
        schema_checks(admin, target, role, "db.silo", c).await?;
        let public_connect: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                            WHERE d.datname = current_database() AND a.grantee = 0)",
            &[],
        )
        .await
        .pg_context(|| "cannot read the database's grants".into())?
        .get(0);
        c.add(
            "db.silo.database_private",
            "PUBLIC may not connect to the dedicated database",
            if public_connect {
                "PUBLIC has privileges"
            } else {
                "private"
            },
            !public_connect,
        );
        Ok(())
    }
}

/// A connection to the local silo server's maintenance database `postgres` (CREATE and
/// DROP DATABASE cannot run while connected to the database itself).
async fn maintenance(ep: &Endpoint) -> Result<Client> {
    ep.with_dbname("postgres")
        .connect("tenantctl provision")
        .await
}

/// Creates the dedicated database on the local silo server if it is missing.
async fn create_local_database(ep: &Endpoint) -> Result<()> {
    let name = ep.dbname().to_string();
    let maint = maintenance(ep).await?;
    let exists: bool = maint
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
            &[&name],
        )
        .await
        .pg_context(|| format!("cannot look for database `{name}`"))?
        .get(0);
    if exists {
        return Ok(());
    }
    match maint
        .batch_execute(&format!("CREATE DATABASE {}", ident(&name)))
        .await
    {
        Ok(()) => Ok(()),
        // Created concurrently by another provisioning run.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => bail!(
            "cannot create database `{name}` on {}: {}",
            ep.label(),
            describe(&e)
        ),
    }
}
