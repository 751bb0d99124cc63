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

use crate::db::connect::{PgContext, describe, execute_secret};
use crate::db::ident::{ident, literal};
use crate::db::migrate::{ensure_control, lock_run, record_status, setup_tx, unlock_run};
use crate::db::migrations::MigrationSet;
use crate::db::{Database, DbSecret, Location, err_scrub, sql};
use crate::isolation;
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
        let model = isolation::of(spec.tier);
        self.check_secret(spec, secret)?;
        let set = MigrationSet::load_or_empty(self.migrations_dir())?;
        let target = model.target(self, spec, silo_admin).await?;
        let role = spec.id.db_role();
        let profile = self.profile(spec.tier);
        let shared = self.admin.connect("tenantctl provision").await?;
        ensure_control(&shared).await?;
        lock_run(&shared, false, PROVISION_LOCK_WAIT, &self.admin.label()).await?;

        let result = async {
            // The tenant's tables live in the shared database or in its own.
            let own;
            let client = match &target.location {
                Location::Shared => &shared,
                Location::Silo(ep) => {
                    // The dedicated database's `public` is closed below, the shared
                    // database's here (tenantctl closes it at every provisioning).
                    setup_tx(&shared, &sql::lock_public_schema(None))
                        .await
                        .context("cannot close schema `public` of the shared database")?;
                    if secret.dbname != ep.dbname() {
                        bail!(
                            "secret `{}` names database `{}`, but the dedicated database is `{}` ({})",
                            spec.id.db_secret_name(),
                            secret.dbname,
                            ep.dbname(),
                            ep.source
                        );
                    }
                    model.prepare_database(self, &target).await?;
                    own = ep.connect("tenantctl provision").await?;
                    &own
                }
                Location::Unavailable(why) => bail!("{why}"),
            };
            let is_super = is_superuser(client).await?;
            let mut body = sql::tenant_role(
                &role,
                profile.max_db_connections,
                profile.statement_timeout_ms,
                &target.schema,
                is_super,
            );
            // Nobody creates in `public` of the tenant's database, the tenant least of all.
            body.push_str(&sql::lock_public_schema(Some(&role)));
            body.push_str(&model.provision_sql(&target, &role, &spec.id));
            setup_tx(client, &body)
                .await
                .with_context(|| format!("cannot set up role `{role}`"))?;
            set_password(client, &role, secret).await?;
            self.migrate_one(client, &target, &set).await
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
        let shared = self.admin.connect("tenantctl deprovision").await?;
        lock_run(&shared, false, PROVISION_LOCK_WAIT, &self.admin.label()).await?;
        let result = isolation::of(spec.tier).drop_data(self, spec, true).await;
        if result.is_ok() {
            forget_target(&shared, spec.id.as_str()).await?;
        }
        unlock_run(&shared, false).await;
        result
    }
}

async fn is_superuser(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER",
            &[],
        )
        .await
        .pg_context(|| "cannot read the admin login's attributes".into())?
        .get(0))
}

pub(crate) async fn schema_exists(client: &Client, schema: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .pg_context(|| format!("cannot look for schema `{schema}`"))?
        .get(0))
}

impl Database {
    /// Sets the login's password to the secret's (a move's cut-over).
    pub(crate) async fn set_login_password(
        &self,
        client: &Client,
        role: &str,
        secret: &DbSecret,
    ) -> Result<()> {
        set_password(client, role, secret)
            .await
            .map_err(|e| err_scrub(e, &secret.password))
    }
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
