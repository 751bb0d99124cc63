//! The export index: one small JSON object per export, kept beside tenantctl's records
//! (`.tenantctl/records/exports/<id>/<time>.json` with the local backend,
//! `<key_prefix>/records/exports/<id>/<time>.json` in the state bucket with the S3
//! backend), so exports stay listed after the tenant itself is removed. The tenant
//! records (`<id>.json`) are not touched: removing a tenant deletes its record, not its
//! exports' entries.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::export::Exported;
use crate::fsutil::write_atomic;
use crate::records::RecordStore;
use crate::tenant::{Isolation, TenantId, Tier};

const DIR: &str = "exports";

/// What `tenantctl exports` lists about one export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub tenant: String,
    pub tier: Tier,
    pub isolation: Isolation,
    pub created_at: DateTime<Utc>,
    /// `s3://bucket/prefix/` or a local directory (as given to `--to`, made absolute).
    pub location: String,
    /// Size of all files, manifest included.
    pub bytes: u64,
    pub tables: usize,
    pub rows: u64,
    pub schema_version: Option<i32>,
    pub manifest_sha256: String,
    /// The KMS key the export's objects are encrypted under (S3), as S3 reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl ExportRecord {
    pub fn of(e: &Exported) -> ExportRecord {
        let m = &e.manifest;
        let location = match &e.location {
            crate::archive::Location::Dir(p) => std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
            other => other.to_string(),
        };
        ExportRecord {
            tenant: m.tenant.clone(),
            tier: m.tier,
            isolation: m.isolation,
            created_at: m.created_at,
            location,
            bytes: e.bytes(),
            tables: m.tables.len(),
            rows: m.rows(),
            schema_version: m.schema_version.as_ref().map(|v| v.version),
            manifest_sha256: e.manifest_sha256.clone(),
            kms_key_id: e
                .kms_key_id
                .clone()
                .or_else(|| m.encryption.kms_key_id.clone()),
        }
    }

    fn name(&self) -> String {
        format!("{}.json", self.created_at.format("%Y%m%dT%H%M%S%.3fZ"))
    }
}

/// Adds an export to the index.
pub async fn record(store: &RecordStore, rec: &ExportRecord) -> Result<()> {
    let body = serde_json::to_vec_pretty(rec)?;
    match store {
        RecordStore::Local(dir) => {
            write_atomic(&dir.join(DIR).join(&rec.tenant).join(rec.name()), &body)
        }
        RecordStore::S3 {
            client,
            bucket,
            prefix,
        } => {
            let key = format!("{prefix}/{DIR}/{}/{}", rec.tenant, rec.name());
            client
                .put_object()
                .bucket(bucket)
                .key(&key)
                .content_type("application/json")
                .body(body.into())
                .send()
                .await
                .map_err(|e| anyhow::Error::new(e.into_service_error()))
                .with_context(|| format!("cannot write s3://{bucket}/{key}"))?;
            Ok(())
        }
    }
}

/// The exports of `tenant` (or of every tenant), oldest first per tenant, tenants by id.
pub async fn list(store: &RecordStore, tenant: Option<&TenantId>) -> Result<Vec<ExportRecord>> {
    let mut out = Vec::new();
    match store {
        RecordStore::Local(dir) => {
            let base = dir.join(DIR);
            let tenants: Vec<std::path::PathBuf> = match tenant {
                Some(id) => vec![base.join(id.as_str())],
                None => read_dir_sorted(&base)?,
            };
            for t in tenants {
                for f in read_dir_sorted(&t)? {
                    if f.extension().is_some_and(|e| e == "json") {
                        let bytes = std::fs::read(&f)
                            .with_context(|| format!("cannot read `{}`", f.display()))?;
                        out.push(
                            serde_json::from_slice(&bytes).with_context(|| {
                                format!("invalid export record `{}`", f.display())
                            })?,
                        );
                    }
                }
            }
        }
        RecordStore::S3 {
            client,
            bucket,
            prefix,
        } => {
            let list_prefix = match tenant {
                Some(id) => format!("{prefix}/{DIR}/{id}/"),
                None => format!("{prefix}/{DIR}/"),
            };
            let mut keys: Vec<String> = crate::records::list_keys(client, bucket, &list_prefix)
                .await?
                .into_iter()
                .filter(|k| k.ends_with(".json"))
                .collect();
            keys.sort();
            let mut bodies = crate::records::get_objects(client, bucket, keys.clone()).await?;
            for key in keys {
                let Some(bytes) = bodies.remove(&key) else {
                    continue; // deleted between the listing and the read
                };
                out.push(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("invalid export record s3://{bucket}/{key}"))?,
                );
            }
        }
    }
    Ok(out)
}

fn read_dir_sorted(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", dir.display())),
    };
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tenant: &str, at: &str) -> ExportRecord {
        ExportRecord {
            tenant: tenant.into(),
            tier: Tier::Growth,
            isolation: Isolation::Bridge,
            created_at: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            location: format!("s3://b/archive/tenants/{tenant}/x/"),
            bytes: 10,
            tables: 2,
            rows: 3,
            schema_version: Some(3),
            manifest_sha256: "0".repeat(64),
            kms_key_id: None,
        }
    }

    #[tokio::test]
    async fn exports_are_listed_per_tenant_oldest_first_and_outlive_the_tenant_record() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordStore::Local(tmp.path().to_path_buf());
        let acme = TenantId::parse("acme").unwrap();
        for r in [
            rec("acme", "2025-03-04T05:06:07.500Z"),
            rec("acme", "2025-03-04T05:06:07.100Z"),
            rec("globex", "2025-01-01T00:00:00Z"),
        ] {
            record(&store, &r).await.unwrap();
        }
        // Removing the tenant's record leaves its exports listed.
        store.delete(&acme).await.unwrap();
        let mine = list(&store, Some(&acme)).await.unwrap();
        assert_eq!(mine.len(), 2);
        assert!(mine[0].created_at < mine[1].created_at, "oldest first");
        let all = list(&store, None).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
            ["acme", "acme", "globex"]
        );
        let none = list(&store, Some(&TenantId::parse("initech").unwrap()))
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}
