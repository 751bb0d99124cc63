//! Database isolation per tier, and migrations across every tenant.
//!
//! Each tier's isolation lives in one PostgreSQL construct, built by [`provision`] and
//! checked by [`verify`]:
//!
//! - starter (pool): shared tables in schema `pool`, row-level security enabled and
//!   forced, a policy bound to the tenant's own login (see [`sql`] for why a session
//!   variable alone is not enough);
//! - growth (bridge): schema `tenant_<id>` in the shared database, reachable by the
//!   tenant's role only, `search_path` pinned to it;
//! - enterprise (silo): a dedicated database (the tenant's RDS instance; against the
//!   emulator, database `tenant_<id>` on `[database] local_silo`), laid out like a bridge.
//!
//! A *target* is one place migrations run: the pool schema (once, for all starter
//! tenants), each bridge schema, each silo database. [`migrate`] plans every target with a
//! few queries, then applies pending migrations one transaction each, with bounded
//! parallelism and a fleet-wide advisory lock. The admin login comes from the environment
//! (`TENANTCTL_DATABASE_URL` unless the config names another variable); tenants' logins
//! come from their Secrets Manager entries and are never printed.

pub mod connect;
pub mod data;
pub mod ident;
pub mod migrate;
pub mod migrations;
pub mod provision;
pub mod sql;
pub mod tls;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize};

use crate::aws::AwsClients;
use crate::config::{Config, DatabaseConfig};
use crate::isolation::{self, Model};
use crate::tenant::{Isolation, TenantId, Tier, TierProfile};
use crate::workspace::{TenantSpec, Workspace};

pub use connect::Endpoint;
pub use migrate::{
    LockHeld, MigrateOptions, MigrateReport, RollbackOptions, RollbackOutcome, RollbackPlan,
    RollbackReport, RollbackTarget, RolledBack, TargetOutcome, TargetReport, TargetState,
    TargetStatus, TxMode,
};
pub use migrations::{Migration, MigrationSet};
pub use tls::{SslMode, TlsSettings};

/// A database secret as AWS stores them (`engine`, `host`, `port`, `dbname`, `username`,
/// `password`), plus `schema` for bridge tenants. The application and AWS tooling read
/// it as is. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSecret {
    pub engine: String,
    pub host: String,
    #[serde(deserialize_with = "port_number_or_string")]
    pub port: u16,
    pub dbname: String,
    pub username: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

impl std::fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSecret")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Some AWS tools write the port as a string.
fn port_number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        N(u16),
        S(String),
    }
    match Port::deserialize(d)? {
        Port::N(n) => Ok(n),
        Port::S(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("port is not a number")),
    }
}

impl DbSecret {
    /// Connects with exactly what the secret holds, over TLS as `tls` says (the secret
    /// has no TLS fields: [`Database::tenant_tls`] gives `[database] sslmode/sslrootcert`).
    pub fn endpoint(&self, source: impl Into<String>, tls: &TlsSettings) -> Endpoint {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.username)
            .password(&self.password);
        Endpoint::new(config, source).with_tls(tls.clone())
    }
}

/// Where a target's schema lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// The shared database (pool and bridge).
    Shared,
    /// A dedicated database, reached with the admin login for it.
    Silo(Box<Endpoint>),
    /// A dedicated database tenantctl cannot reach (no admin login); the reason.
    Unavailable(String),
}

/// One place migrations run.
#[derive(Debug, Clone)]
pub struct Target {
    /// `pool`, or the tenant id.
    pub name: String,
    pub tier: Tier,
    pub isolation: Isolation,
    pub schema: String,
    pub tenant: Option<TenantId>,
    pub location: Location,
}

/// The admin side of the platform's PostgreSQL.
#[derive(Clone)]
pub struct Database {
    admin: Endpoint,
    /// TLS for tenant and silo connections (`[database] sslmode/sslrootcert`).
    tenant_tls: TlsSettings,
    settings: DatabaseConfig,
    profiles: BTreeMap<Tier, TierProfile>,
    migrations_dir: PathBuf,
    aws: Option<AwsClients>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.admin.label())
    }
}

/// The admin URL's variable is unset or empty: callers (and tests) branch on this.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database admin credential is missing: environment variable `{var}` is not set\nhint: export {var}=postgresql://USER:PASSWORD@HOST:PORT/DBNAME (the variable is named by `[database] admin_url_env`; the URL is never stored in the config file)"
)]
pub struct MissingAdminUrl {
    pub var: String,
}

impl Database {
    /// Reads the admin URL from the environment variable the config names. Relative
    /// `migrations_dir` is resolved against the current directory; prefer
    /// [`from_workspace`](Self::from_workspace), which resolves it against the work dir.
    pub fn from_config(cfg: &Config) -> Result<Database> {
        Database::build(cfg, cfg.database.migrations_dir.clone())
    }

    /// Like [`from_config`](Self::from_config), with relative paths of `[database]`
    /// (`migrations_dir`, `sslrootcert`) resolved against the work dir.
    pub fn from_workspace(ws: &Workspace) -> Result<Database> {
        let mut cfg = ws.config.clone();
        if let Some(root) = &cfg.database.sslrootcert {
            cfg.database.sslrootcert = Some(ws.root.join(root));
        }
        Database::build(&cfg, ws.migrations_dir())
    }

    fn build(cfg: &Config, migrations_dir: PathBuf) -> Result<Database> {
        let var = cfg.database.admin_url_env.clone();
        let url = match std::env::var(&var) {
            Ok(v) if !v.trim().is_empty() => v,
            Ok(_) | Err(std::env::VarError::NotPresent) => {
                return Err(MissingAdminUrl { var }.into());
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("environment variable `{var}` (the database admin URL) is not valid UTF-8")
            }
        };
        Database::with_admin_url(
            cfg,
            &url,
            &format!("the admin URL in `{var}`"),
            migrations_dir,
        )
    }

    /// Builds from an admin URL given directly (tests, embedding); `source` says where
    /// it came from in error messages. The CLI always reads it from the environment.
    pub fn with_admin_url(
        cfg: &Config,
        url: &str,
        source: &str,
        migrations_dir: PathBuf,
    ) -> Result<Database> {
        let (config, url_tls) = connect::parse_url(url, source)?;
        if config.get_user().is_none() {
            bail!("{source} names no user\nhint: postgresql://USER:PASSWORD@HOST:PORT/DBNAME");
        }
        let profiles = Tier::ALL.iter().map(|t| (*t, cfg.profile(*t))).collect();
        Ok(Database {
            admin: Endpoint::new(config, source)
                .with_tls(TlsSettings::for_admin(cfg, &url_tls, source))
                .admin_session(),
            tenant_tls: TlsSettings::for_tenants(cfg),
            settings: cfg.database.clone(),
            profiles,
            migrations_dir,
            aws: None,
        })
    }

    /// Lets the database side read a silo tenant's `tenants/<id>/db-admin` secret when
    /// its dedicated database is a real RDS instance.
    pub fn with_aws(mut self, aws: AwsClients) -> Database {
        self.aws = Some(aws);
        self
    }

    pub fn with_migrations_dir(mut self, dir: impl Into<PathBuf>) -> Database {
        self.migrations_dir = dir.into();
        self
    }

    pub fn admin(&self) -> &Endpoint {
        &self.admin
    }

    /// TLS for connections made with a tenant's or a silo's login.
    pub fn tenant_tls(&self) -> &TlsSettings {
        &self.tenant_tls
    }

    pub fn settings(&self) -> &DatabaseConfig {
        &self.settings
    }

    pub fn migrations_dir(&self) -> &Path {
        &self.migrations_dir
    }

    pub(crate) fn profile(&self, tier: Tier) -> TierProfile {
        self.profiles
            .get(&tier)
            .cloned()
            .unwrap_or_else(|| tier.default_profile())
    }

    /// The admin login for a silo tenant's dedicated database: the local mapping, the
    /// given `db-admin` secret, or that secret read from Secrets Manager.
    pub async fn silo_admin(&self, id: &TenantId, given: Option<&DbSecret>) -> Result<Endpoint> {
        if let Some(local) = &self.settings.local_silo {
            let mut ep = self
                .admin
                .with_server(&local.host, local.port, &id.db_name())
                .with_tls(self.tenant_tls.clone());
            ep.source = format!("{} mapped by `[database] local_silo`", self.admin.source);
            return Ok(ep);
        }
        let name = id.db_admin_secret_name();
        // The instance's master login: an admin session like the shared database's.
        if let Some(secret) = given {
            return Ok(secret
                .endpoint(format!("secret `{name}`"), &self.tenant_tls)
                .admin_session());
        }
        let Some(aws) = &self.aws else {
            bail!(
                "the dedicated database of tenant `{id}` needs its admin login from secret `{name}`, and no AWS clients were given"
            );
        };
        let secret: DbSecret = aws.secret_json(&name).await?;
        Ok(secret
            .endpoint(format!("secret `{name}`"), &self.tenant_tls)
            .admin_session())
    }

    /// An admin connection to the database a target lives in.
    pub async fn connect_target(
        &self,
        target: &Target,
        purpose: &str,
    ) -> Result<tokio_postgres::Client> {
        match &target.location {
            Location::Shared => self.admin.connect(purpose).await,
            Location::Silo(ep) => ep.connect(purpose).await,
            Location::Unavailable(why) => {
                bail!("target `{}` cannot be reached: {why}", target.name)
            }
        }
    }

    /// The targets of `specs`: the pool once if any tenant is a starter, then every
    /// other tenant's, sorted by tenant id. A target whose database cannot be reached
    /// (no admin login) is listed as unavailable, so it is reported rather than skipped.
    pub async fn targets(
        &self,
        specs: &[TenantSpec],
        silo_admins: &BTreeMap<TenantId, DbSecret>,
    ) -> Vec<Target> {
        let mut specs: Vec<&TenantSpec> = specs.iter().collect();
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out: Vec<Target> = Vec::new();
        for spec in specs {
            let target = match isolation::of(spec.tier)
                .target(self, spec, silo_admins.get(&spec.id))
                .await
            {
                Ok(t) => t,
                Err(e) => tenant_target(spec, Location::Unavailable(format!("{e:#}"))),
            };
            // Pooled tenants share one target.
            if !out.iter().any(|t| t.name == target.name) {
                out.push(target);
            }
        }
        out.sort_by_key(|t| t.tenant.is_some());
        out
    }

    /// Checks a tenant's secret names what provisioning will build, before anything is
    /// changed. Errors name the field, never the password.
    fn check_secret(&self, spec: &TenantSpec, secret: &DbSecret) -> Result<()> {
        let model = isolation::of(spec.tier);
        let name = spec.id.db_secret_name();
        let role = spec.id.db_role();
        if secret.engine != "postgres" {
            bail!(
                "secret `{name}` has engine `{}`, expected `postgres`",
                secret.engine
            );
        }
        if secret.username != role {
            bail!(
                "secret `{name}` names user `{}`, expected `{role}`: the pool policy and the grants are bound to the login role `tenant_<id>`",
                secret.username
            );
        }
        if secret.password.is_empty() {
            bail!("secret `{name}` has an empty password");
        }
        let expected_schema = model.secret_schema(&spec.id);
        if let (Some(want), got) = (expected_schema.as_deref(), secret.schema.as_deref())
            && got != Some(want)
        {
            bail!(
                "secret `{name}` has schema {}, expected `{want}`",
                got.map(|g| format!("`{g}`"))
                    .unwrap_or_else(|| "missing".into())
            );
        }
        if model.in_shared_database() && secret.dbname != self.admin.dbname() {
            bail!(
                "secret `{name}` names database `{}`, but {} connects to `{}`: tenants would not find their tables",
                secret.dbname,
                self.admin.source,
                self.admin.dbname()
            );
        }
        Ok(())
    }
}

/// The name of the pool's one target (a tenant id cannot be `pool`: it is reserved).
pub(crate) const POOL_TARGET: &str = "pool";

/// The pool's one target, shared by every starter tenant.
pub(crate) fn pool_target() -> Target {
    Target {
        name: POOL_TARGET.into(),
        tier: Tier::Starter,
        isolation: crate::isolation::pool::Pool.isolation(),
        schema: sql::POOL_SCHEMA.into(),
        tenant: None,
        location: Location::Shared,
    }
}

/// A tenant's own target (its schema, in the shared database or a dedicated one).
pub(crate) fn tenant_target(spec: &TenantSpec, location: Location) -> Target {
    Target {
        name: spec.id.to_string(),
        tier: spec.tier,
        isolation: spec.tier.isolation(),
        schema: spec.id.db_schema(),
        tenant: Some(spec.id.clone()),
        location,
    }
}

/// Any error as one line without the password of `secret`, in case a lower layer echoed
/// it (none should; this is the last guard before text reaches a terminal or a file).
pub(crate) fn scrub(text: String, secret: &str) -> String {
    if secret.len() >= 4 && text.contains(secret) {
        text.replace(secret, "<redacted>")
    } else {
        text
    }
}

pub(crate) fn err_scrub(e: anyhow::Error, secret: &str) -> anyhow::Error {
    anyhow!(scrub(format!("{e:#}"), secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> DbSecret {
        DbSecret {
            engine: "postgres".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "app".into(),
            username: "tenant_acme".into(),
            password: "correct horse battery".into(),
            schema: Some("tenant_acme".into()),
        }
    }

    #[test]
    fn secret_debug_redacts_the_password() {
        let shown = format!("{:?}", secret());
        assert!(!shown.contains("correct horse"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn secret_json_is_the_aws_shape() {
        let json = serde_json::to_value(secret()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "engine": "postgres", "host": "127.0.0.1", "port": 5432, "dbname": "app",
                "username": "tenant_acme", "password": "correct horse battery",
                "schema": "tenant_acme"
            })
        );
        // Pool and silo secrets have no schema; AWS tools may add fields and quote the port.
        let s: DbSecret = serde_json::from_str(
            r#"{"engine":"postgres","host":"h","port":"5433","dbname":"d","username":"u","password":"p","dbInstanceIdentifier":"x"}"#,
        )
        .unwrap();
        assert_eq!(s.port, 5433);
        assert_eq!(s.schema, None);
        assert!(!serde_json::to_string(&s).unwrap().contains("schema"));
    }

    #[test]
    fn scrub_removes_a_leaked_password() {
        assert_eq!(
            scrub(
                "failed: correct horse battery".into(),
                "correct horse battery"
            ),
            "failed: <redacted>"
        );
    }
}
