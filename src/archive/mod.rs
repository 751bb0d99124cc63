//! Exports and imports of a tenant's database data: a copy tenantctl can write out,
//! verify and put back, in any tier.
//!
//! An export is a directory of files — under an S3 prefix (by default
//! `s3://<data bucket>/archive/tenants/<id>/<time>/`) or in a local directory:
//!
//! - one `<table>.csv.gz` per table: PostgreSQL's own CSV output (`COPY ... (FORMAT csv)`,
//!   with fixed session settings so values print the same everywhere: UTC, ISO dates,
//!   hex bytea) behind a header line of column names, gzip-compressed, readable by any
//!   tool;
//! - `manifest.json`, written last ([`manifest`]): tenant, tier, schema version (the
//!   latest migration applied to the tenant's target), tables with columns and types,
//!   row counts, an order-independent row checksum, and each file's size and SHA-256.
//!
//! [`export`] takes one consistent snapshot of the tenant's target (pool rows of the
//! tenant only, the bridge schema, the silo database) and streams every table from
//! `COPY` through gzip into the store ([`store`]: S3 multipart uploads or files), so
//! memory stays flat whatever the tenant's size. [`import`] checks everything first, then
//! loads an export into a provisioned, empty tenant of any tier in one transaction.
//! [`index`] records each export beside tenantctl's records, so they stay listed after
//! the tenant is gone.
//!
//! The isolation models supply the data hooks ([`crate::isolation::Model`]: target,
//! tables in foreign-key order, row filter, COPY out and in); this module never matches
//! on the tier, except in [`tenant_kms_key`], the one place that says which tenants have
//! a KMS key of their own.
//!
//! Encryption (S3): SSE-KMS always. The key is the tenant's own when it has one
//! (enterprise: `alias/tenant-<id>`, created by the tenant module), else `[archive]
//! kms_key_id`, else the bucket's AWS-managed key (`aws/s3`). A local directory is not
//! encrypted by tenantctl: its files are readable by their owner only.

pub mod export;
pub mod import;
pub mod index;
pub mod manifest;
pub mod rows;
pub mod store;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

pub use export::Exported;
pub use import::Imported;
pub use manifest::{Encryption, Manifest, TableEntry};
pub use store::{Location, Sse, Store};

use crate::config::PlatformValues;
use crate::db::connect::PgContext;
use crate::db::ident::qualified;
use crate::db::{Database, sql};
use crate::isolation;
use crate::lifecycle::Services;
use crate::tenant::TenantId;
use crate::workspace::TenantSpec;

/// The column every tenant table carries (see `migrations/0001_accounts.sql`): rewritten
/// to the new id when an export is restored under another tenant.
pub const TENANT_COLUMN: &str = "tenant_id";

pub const DEFAULT_PREFIX: &str = "archive/tenants";

/// Session settings of every export and import transaction: values print (and parse)
/// the same whatever the server's or the admin role's defaults, so a file is readable by
/// any tool and rows read back after an import compare byte for byte. No statement or
/// idle timeout: a large tenant's COPY, or a pause while a part uploads, is expected.
pub(crate) const SESSION_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC';
SET LOCAL DateStyle = 'ISO, YMD';
SET LOCAL IntervalStyle = 'iso_8601';
SET LOCAL extra_float_digits = 1;
SET LOCAL bytea_output = 'hex';
SET LOCAL statement_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0;
";

/// An export's files do not match its manifest, or rows read back after an import do
/// not match what was loaded: exit 3 (verification failed), like `verify`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerificationFailed(pub String);

/// `[archive]` in `tenantctl.toml`: where `tenantctl export` writes by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Default: the platform's data bucket (`[platform] data_bucket`).
    pub bucket: Option<String>,
    /// Exports go under `<prefix>/<id>/<time>/`. Default `archive/tenants`: outside
    /// `tenants/<id>/`, so the tenant's own task role cannot read or change them.
    pub prefix: Option<String>,
    /// SSE-KMS key for tenants without a key of their own (key id, key ARN, alias name
    /// or alias ARN). Default: the bucket's AWS-managed key `aws/s3`. Also the archive
    /// key that outlives tenants: `remove` copies a dedicated database's final snapshot
    /// and the tenant's archived objects under it.
    pub kms_key_id: Option<String>,
    /// What `remove` does with the tenant's objects under `s3://<data bucket>/tenants/<id>/`:
    /// `archive` (default: copied under `<prefix>/<id>/objects-<time>/`, then deleted) or
    /// `delete`. Never left in place.
    #[serde(default)]
    pub objects: ObjectsPolicy,
}

/// `[archive] objects`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsPolicy {
    #[default]
    Archive,
    Delete,
}

impl ArchiveConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(b) = &self.bucket {
            store::check_bucket(b).map_err(|e| anyhow::anyhow!("[archive] bucket: {e}"))?;
        }
        if let Some(p) = &self.prefix {
            store::check_prefix(p).map_err(|e| anyhow::anyhow!("[archive] prefix: {e}"))?;
        }
        if let Some(k) = &self.kms_key_id {
            let ok = !k.is_empty()
                && k.len() <= 2048
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b));
            if !ok {
                bail!(
                    "[archive] kms_key_id: `{k}` is not a KMS key id, key ARN, alias name (alias/...) or alias ARN"
                );
            }
        }
        Ok(())
    }
}

/// The tenant's own KMS key, if its tier gives it one (`[tiers.<tier>] tenant_key`, on
/// by default for enterprise; a dedicated database always has one), by the alias the
/// tenant module creates.
pub fn tenant_kms_key(config: &crate::config::Config, spec: &TenantSpec) -> Option<String> {
    (isolation::of(spec.tier).dedicated() || config.profile(spec.tier).tenant_key)
        .then(|| format!("alias/{}", spec.id.resource_name()))
}

/// The key an S3 export of `spec` is encrypted under, and the manifest's note of it.
pub fn encryption_for(config: &crate::config::Config, spec: &TenantSpec) -> (Sse, Encryption) {
    let cfg = &config.archive;
    let (key, source) = match (tenant_kms_key(config, spec), &cfg.kms_key_id) {
        (Some(k), _) => (Some(k), "tenant"),
        (None, Some(k)) => (Some(k.clone()), "config"),
        (None, None) => (None, "aws-managed"),
    };
    (
        Sse {
            kms_key_id: key.clone(),
        },
        Encryption {
            sse: "aws:kms".into(),
            kms_key_id: key,
            key_source: Some(source.into()),
        },
    )
}

/// Where an export of `id` taken at `time` goes by default:
/// `s3://<[archive] bucket or the data bucket>/<prefix>/<id>/<time>/`.
pub fn default_location(
    cfg: &ArchiveConfig,
    platform: &PlatformValues,
    id: &TenantId,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<Location> {
    let Some(bucket) = cfg.bucket.clone().or_else(|| platform.data_bucket.clone()) else {
        bail!(
            "no bucket for exports: neither `[archive] bucket` nor `[platform] data_bucket` is set, and no platform outputs are recorded\nhint: set `[archive] bucket`, run `tenantctl platform apply`, or export to a directory with `--to <dir>`"
        );
    };
    let prefix = cfg.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
    Ok(Location::S3 {
        bucket,
        prefix: format!("{prefix}/{id}/{}/", time.format("%Y%m%dT%H%M%SZ")),
    })
}

/// Exports `spec`'s data to `to` (None: the default archive location), records the
/// export in the index, and returns it. What `tenantctl export` runs, and what an
/// offboarding can call before it deletes anything.
pub async fn export_tenant(
    svc: &Services,
    spec: &TenantSpec,
    to: Option<&Location>,
    on_table: &(dyn Fn(&TableEntry) + Sync),
) -> Result<Exported> {
    let db = database(svc)?;
    let cfg = &svc.ctx.config().archive;
    let location = match to {
        Some(l) => l.clone(),
        None => default_location(cfg, &svc.platform, &spec.id, chrono::Utc::now())?,
    };
    let (store, encryption) = match &location {
        Location::Dir(_) => (
            Store::open(&location, None, None)?,
            Encryption {
                sse: "none".into(),
                kms_key_id: None,
                key_source: None,
            },
        ),
        Location::S3 { .. } => {
            let (sse, enc) = encryption_for(svc.ctx.config(), spec);
            (Store::open(&location, Some(&svc.aws.s3), Some(sse))?, enc)
        }
    };
    let exported = export::export(db, spec, &store, encryption, on_table).await?;
    index::record(&svc.records, &index::ExportRecord::of(&exported))
        .await
        .with_context(|| {
            format!(
                "the export is complete at {}, but it could not be added to the export index",
                exported.location
            )
        })?;
    Ok(exported)
}

/// Restores the export at `from` into `spec`.
pub async fn import_tenant(
    svc: &Services,
    spec: &TenantSpec,
    from: &Location,
    on_table: &(dyn Fn(&import::TableImport) + Sync),
) -> Result<Imported> {
    let db = database(svc)?;
    let store = Store::open(from, Some(&svc.aws.s3), None)?;
    import::import(db, spec, &store, on_table).await
}

fn database(svc: &Services) -> Result<&Database> {
    svc.db
        .as_deref()
        .context("exports need the database admin connection")
}

/// Whether the target's schema exists in the database `client` is connected to.
pub(crate) async fn target_exists(client: &Client, schema: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .pg_context(|| format!("cannot look for schema `{schema}`"))?
        .get(0))
}

/// The latest migration applied to the target (version and name), None without one.
pub(crate) async fn schema_version(client: &Client, schema: &str) -> Result<Option<(i32, String)>> {
    let ledger = qualified(schema, sql::LEDGER);
    let exists: bool = client
        .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[&ledger])
        .await
        .pg_context(|| format!("cannot look for the ledger of `{schema}`"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT version, name FROM {ledger} ORDER BY version DESC LIMIT 1"),
            &[],
        )
        .await
        .pg_context(|| format!("cannot read the ledger of `{schema}`"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Tier;

    fn spec(id: &str, tier: Tier) -> TenantSpec {
        TenantSpec {
            id: TenantId::parse(id).unwrap(),
            tier,
        }
    }

    #[test]
    fn the_key_is_the_tenants_own_then_the_configured_one_then_aws_managed() {
        let none = crate::config::Config::default();
        let mut cfg = crate::config::Config::default();
        cfg.archive.kms_key_id = Some("alias/platform-archive".into());
        let (sse, enc) = encryption_for(&cfg, &spec("acme", Tier::Enterprise));
        assert_eq!(sse.kms_key_id.as_deref(), Some("alias/tenant-acme"));
        assert_eq!(enc.key_source.as_deref(), Some("tenant"));
        let (sse, _) = encryption_for(&cfg, &spec("acme", Tier::Growth));
        assert_eq!(sse.kms_key_id.as_deref(), Some("alias/platform-archive"));
        let (sse, enc) = encryption_for(&none, &spec("acme", Tier::Starter));
        assert_eq!(sse.kms_key_id, None);
        assert_eq!(enc.sse, "aws:kms");
        assert_eq!(enc.key_source.as_deref(), Some("aws-managed"));
        // A tier configured with keys of its own uses them too.
        cfg.tiers.insert(
            Tier::Growth,
            crate::tenant::TierProfileOverride {
                tenant_key: Some(true),
                ..Default::default()
            },
        );
        let (sse, _) = encryption_for(&cfg, &spec("acme", Tier::Growth));
        assert_eq!(sse.kms_key_id.as_deref(), Some("alias/tenant-acme"));
    }

    #[test]
    fn the_default_location_is_the_data_bucket_under_archive() {
        let platform = PlatformValues {
            data_bucket: Some("data".into()),
            ..Default::default()
        };
        let t = chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let id = TenantId::parse("acme").unwrap();
        assert_eq!(
            default_location(&ArchiveConfig::default(), &platform, &id, t)
                .unwrap()
                .to_string(),
            "s3://data/archive/tenants/acme/20250304T050607Z/"
        );
        let cfg = ArchiveConfig {
            bucket: Some("vault".into()),
            prefix: Some("exports".into()),
            ..Default::default()
        };
        assert_eq!(
            default_location(&cfg, &platform, &id, t)
                .unwrap()
                .to_string(),
            "s3://vault/exports/acme/20250304T050607Z/"
        );
        let err = default_location(
            &ArchiveConfig::default(),
            &PlatformValues::default(),
            &id,
            t,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("[archive] bucket"), "{err}");
    }

    #[test]
    fn archive_settings_are_checked() {
        let bad = |c: ArchiveConfig| c.validate().unwrap_err().to_string();
        assert!(
            bad(ArchiveConfig {
                bucket: Some("Bad_Bucket".into()),
                ..Default::default()
            })
            .starts_with("[archive] bucket: `Bad_Bucket`")
        );
        assert!(
            bad(ArchiveConfig {
                prefix: Some("/abs".into()),
                ..Default::default()
            })
            .starts_with("[archive] prefix: `/abs`")
        );
        assert!(
            bad(ArchiveConfig {
                kms_key_id: Some("my key".into()),
                ..Default::default()
            })
            .contains("`my key` is not a KMS key")
        );
        ArchiveConfig {
            bucket: Some("vault.example".into()),
            prefix: Some("a/b".into()),
            kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab".into()),
            objects: ObjectsPolicy::Delete,
        }
        .validate()
        .unwrap();
    }
}
