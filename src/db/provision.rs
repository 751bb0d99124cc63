//! Provisioning and offboarding one tenant's database side.
//!
//! `provision` makes the database match the tenant's secret and tier, idempotently: it
//! can run after every apply. The password is not invented here: Terraform generated it
//! into the secret, and the role is set to it. What is sent is a SCRAM-SHA-256 verifier
//! computed locally, so the plaintext never reaches the server (nor its statement log),
//! and that statement is never shown in an error.
//!
//! Both take the fleet lock in shared mode: a `db migrate` run (exclusive) never
//! overlaps them, while tenants can be provisioned side by side.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::db::connect::{Endpoint, PgContext, describe, execute_secret};
use crate::db::ident::{ident, literal};
use crate::db::migrate::{ensure_control, lock_run, record_status, setup_tx, unlock_run};
use crate::db::migrations::MigrationSet;
use crate::db::{Database, DbSecret, Location, err_scrub, sql};
use crate::tenant::Isolation;
use crate::workspace::TenantSpec;

/// How long provisioning waits for a running `db migrate` to finish.
const PROVISION_LOCK_WAIT: Duration = Duration::from_secs(120);

impl Database {
    /// Makes the tenant's database isolation match its tier and its secret (idempotent).
    /// Silo tenants on real RDS need their `tenants/<id>/db-admin` login: see
    /// [`provision_with`](Self::provision_with) or [`with_aws`](Self::with_aws).
    pub async fn provision(&self, spec: &TenantSpec, secret: &DbSecret) -> Result<()> {
        self.provision_with(spec, secret, None).await
    }

    pub async fn provision_with(
        &self,
        spec: &TenantSpec,
        secret: &DbSecret,
        silo_admin: Option<&DbSecret>,
    ) -> Result<()> {
        self.provision_inner(spec, secret, silo_admin)
            .await
            .map_err(|e| err_scrub(e, &secret.password))
    }

    async fn provision_inner(
        &self,
        spec: &TenantSpec,
        secret: &DbSecret,
        silo_admin: Option<&DbSecret>,
    ) -> Result<()> {
        self.check_secret(spec, secret)?;
        let set = MigrationSet::load_or_empty(self.migrations_dir())?;
        let target = self.target_of(spec, silo_admin).await?;
        let role = spec.id.pg_name();
        let profile = self.profile(spec.tier);
        let shared = self.admin.connect("tenantctl provision").await?;
        ensure_control(&shared).await?;
        lock_run(&shared, false, PROVISION_LOCK_WAIT, &self.admin.label()).await?;

        let result = async {
            match spec.tier.isolation() {
                Isolation::Pool | Isolation::Bridge => {
                    let is_super = is_superuser(&shared).await?;
                    let search_path = target.schema.as_str();
                    let mut body = String::new();
                    if spec.tier.isolation() == Isolation::Pool {
                        body.push_str(&sql::pool_setup());
                    }
                    body.push_str(&sql::tenant_role(
                        &role,
                        profile.max_db_connections,
                        profile.statement_timeout_ms,
                        search_path,
                        is_super,
                    ));
                    body.push_str(&sql::grant_connect(&role));
                    // The post-migration step again, so a rerun repairs drift (RLS
                    // switched off, grants widened) even when no migration is pending.
                    body.push_str(&sql::target_lock(&target.schema));
                    if spec.tier.isolation() == Isolation::Pool {
                        body.push_str(&sql::pool_membership(&role));
                        body.push_str(&sql::pool_after_migration());
                    } else {
                        body.push_str(&sql::leave_pool(&role));
                        body.push_str(&sql::tenant_schema(&target.schema, &role));
                        body.push_str(&sql::tenant_after_migration(
                            &target.schema,
                            &role,
                            spec.id.as_str(),
                        ));
                    }
                    setup_tx(&shared, &body)
                        .await
                        .with_context(|| format!("cannot set up role `{role}`"))?;
                    set_password(&shared, &role, secret).await?;
                    self.migrate_one(&shared, &target, &set).await
                }
                Isolation::Silo => {
                    let Location::Silo(ep) = &target.location else {
                        bail!("tenant `{}` has no dedicated database endpoint", spec.id);
                    };
                    if secret.dbname != ep.dbname() {
                        bail!(
                            "secret `{}` names database `{}`, but the dedicated database is `{}` ({})",
                            crate::db::secret_name(&spec.id),
                            secret.dbname,
                            ep.dbname(),
                            ep.source
                        );
                    }
                    if self.settings.local_silo.is_some() {
                        create_local_database(ep).await?;
                    }
                    let silo = ep.connect("tenantctl provision").await?;
                    let is_super = is_superuser(&silo).await?;
                    let mut body = sql::tenant_role(
                        &role,
                        profile.max_db_connections,
                        profile.statement_timeout_ms,
                        &target.schema,
                        is_super,
                    );
                    body.push_str(&sql::leave_pool(&role));
                    body.push_str(&sql::silo_database_lockdown());
                    body.push_str(&sql::grant_connect(&role));
                    body.push_str(&sql::target_lock(&target.schema));
                    body.push_str(&sql::tenant_schema(&target.schema, &role));
                    body.push_str(&sql::tenant_after_migration(
                        &target.schema,
                        &role,
                        spec.id.as_str(),
                    ));
                    setup_tx(&silo, &body).await.with_context(|| {
                        format!("cannot set up role `{role}` on {}", ep.label())
                    })?;
                    set_password(&silo, &role, secret).await?;
                    self.migrate_one(&silo, &target, &set).await
                }
            }
        }
        .await;
        // The last error per target is what `db status` shows; provisioning migrates too.
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let recorded = record_status(&shared, &[(target.name.clone(), target.tier, error)]).await;
        unlock_run(&shared, false).await;
        result.and(recorded)
    }

    /// Removes the tenant's database side after Terraform destroyed its resources: its
    /// rows (pool), schema (bridge) or local database (silo), then its role. Idempotent.
    pub async fn deprovision(&self, spec: &TenantSpec) -> Result<()> {
        let role = spec.id.pg_name();
        let shared = self.admin.connect("tenantctl deprovision").await?;
        lock_run(&shared, false, PROVISION_LOCK_WAIT, &self.admin.label()).await?;
        match spec.tier.isolation() {
            Isolation::Pool => {
                let mut body = String::new();
                if schema_exists(&shared, sql::POOL_SCHEMA).await? {
                    body.push_str(&sql::pool_delete_rows(spec.id.as_str()));
                }
                body.push_str(&sql::drop_tenant_role(&role));
                setup_tx(&shared, &body)
                    .await
                    .with_context(|| format!("cannot remove tenant `{}` from the pool", spec.id))?;
            }
            Isolation::Bridge => {
                let body = format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE;\n{}",
                    ident(&role),
                    sql::drop_tenant_role(&role)
                );
                setup_tx(&shared, &body)
                    .await
                    .with_context(|| format!("cannot drop schema and role `{role}`"))?;
            }
            Isolation::Silo => {
                // A real dedicated database went with its RDS instance; a local one is a
                // database on the local server.
                if self.settings.local_silo.is_some() {
                    let ep = self.silo_admin(&spec.id, None).await?;
                    let maint = maintenance(&ep).await?;
                    maint
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            ident(&role)
                        ))
                        .await
                        .pg_context(|| format!("cannot drop database `{role}`"))?;
                    setup_tx(&maint, &sql::drop_tenant_role(&role))
                        .await
                        .with_context(|| format!("cannot drop role `{role}`"))?;
                }
            }
        }
        if spec.tier.isolation() != Isolation::Pool {
            forget_target(&shared, spec.id.as_str()).await?;
        }
        unlock_run(&shared, false).await;
        Ok(())
    }
}

async fn is_superuser(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .pg_context(|| "cannot read the admin login's attributes".into())?
        .get(0))
}

async fn schema_exists(client: &Client, schema: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .pg_context(|| format!("cannot look for schema `{schema}`"))?
        .get(0))
}

/// Sets the role's password to the secret's, as a SCRAM verifier.
async fn set_password(client: &Client, role: &str, secret: &DbSecret) -> Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(secret.password.as_bytes());
    execute_secret(
        client,
        &format!("ALTER ROLE {} PASSWORD {}", ident(role), literal(&verifier)),
        &format!("cannot set the password of role `{role}`"),
    )
    .await
}

/// A connection to the local silo server's maintenance database `postgres` (CREATE and
/// DROP DATABASE cannot run while connected to the database itself).
async fn maintenance(ep: &Endpoint) -> Result<Client> {
    ep.with_dbname("postgres")
        .connect("tenantctl provision")
        .await
}

/// Creates database `tenant_<id>` on the local silo server if it is missing.
async fn create_local_database(ep: &Endpoint) -> Result<()> {
    let name = ep.dbname().to_string();
    let maint = maintenance(ep).await?;
    let exists: bool = maint
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
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

async fn forget_target(client: &Client, target: &str) -> Result<()> {
    client
        .execute(
            &format!(
                "DELETE FROM {}.target_status WHERE target = $1",
                ident(sql::CONTROL_SCHEMA)
            ),
            &[&target],
        )
        .await
        .map(|_| ())
        .or_else(|e| {
            // No control schema yet: nothing recorded.
            if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "cannot forget target `{target}`: {}",
                    describe(&e)
                ))
            }
        })
}
