//! tenantctl's own memory of each tenant: the last successful apply (with the
//! fingerprint of its inputs) and the last verification.
//!
//! Records live beside the Terraform state: under `.tenantctl/records/` with the local
//! backend, and in the state bucket (`<key_prefix>/records/<id>.json`) with the S3 backend,
//! so every machine of a team sees the same "last applied" and `--changed` agrees
//! between CI runners.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::AwsClients;
use crate::config::Backend;
use crate::fsutil::write_atomic;
use crate::tenant::TenantId;
use crate::workspace::Workspace;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<ApplyRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<VerifyRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyRecord {
    pub at: DateTime<Utc>,
    pub fingerprint: String,
    /// Digest of the provider lock file the apply ran with.
    #[serde(default)]
    pub provider_lock: Option<String>,
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub at: DateTime<Utc>,
    /// `pass`, `drift` or `error`.
    pub status: String,
    #[serde(default)]
    pub failed: Vec<String>,
}

/// Where records are read and written.
#[derive(Clone)]
pub enum RecordStore {
    Local(std::path::PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
}

impl RecordStore {
    pub fn new(ws: &Workspace, aws: Option<&AwsClients>) -> Result<RecordStore> {
        match ws.config.state.backend {
            Backend::Local => Ok(RecordStore::Local(ws.records_dir())),
            Backend::S3 => {
                let aws = aws.context("the S3 state backend needs AWS clients for records")?;
                let prefix = ws
                    .config
                    .state
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| "tenantctl".into());
                Ok(RecordStore::S3 {
                    client: aws.s3.clone(),
                    bucket: ws.config.state.bucket.clone().unwrap_or_default(),
                    prefix: format!("{}/records", prefix.trim_end_matches('/')),
                })
            }
        }
    }

    pub async fn get(&self, id: &TenantId) -> Result<TenantRecord> {
        match self {
            RecordStore::Local(dir) => {
                let path = dir.join(format!("{id}.json"));
                match std::fs::read_to_string(&path) {
                    Ok(t) => serde_json::from_str(&t)
                        .with_context(|| format!("invalid record `{}`", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok(TenantRecord::default())
                    }
                    Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
                }
            }
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{prefix}/{id}.json");
                match client.get_object().bucket(bucket).key(&key).send().await {
                    Ok(out) => {
                        let bytes = out
                            .body
                            .collect()
                            .await
                            .with_context(|| format!("cannot read s3://{bucket}/{key}"))?
                            .into_bytes();
                        serde_json::from_slice(&bytes)
                            .with_context(|| format!("invalid record s3://{bucket}/{key}"))
                    }
                    Err(e) => {
                        let e = e.into_service_error();
                        if e.is_no_such_key() {
                            Ok(TenantRecord::default())
                        } else {
                            Err(anyhow::Error::new(e))
                                .with_context(|| format!("cannot read s3://{bucket}/{key}"))
                        }
                    }
                }
            }
        }
    }

    pub async fn put(&self, id: &TenantId, rec: &TenantRecord) -> Result<()> {
        let body = serde_json::to_vec_pretty(rec)?;
        match self {
            RecordStore::Local(dir) => write_atomic(&dir.join(format!("{id}.json")), &body),
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{prefix}/{id}.json");
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(body.into())
                    .content_type("application/json")
                    .send()
                    .await
                    .map_err(|e| anyhow::Error::new(e.into_service_error()))
                    .with_context(|| format!("cannot write s3://{bucket}/{key}"))?;
                Ok(())
            }
        }
    }

    pub async fn delete(&self, id: &TenantId) -> Result<()> {
        match self {
            RecordStore::Local(dir) => {
                let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
                Ok(())
            }
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{prefix}/{id}.json");
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| anyhow::Error::new(e.into_service_error()))
                    .with_context(|| format!("cannot delete s3://{bucket}/{key}"))?;
                Ok(())
            }
        }
    }

    /// The platform outputs, shared in team mode so every machine renders the same roots.
    pub async fn put_platform(&self, bytes: &[u8]) -> Result<()> {
        if let RecordStore::S3 {
            client,
            bucket,
            prefix,
        } = self
        {
            let key = format!("{prefix}/platform.json");
            client
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(bytes.to_vec().into())
                .send()
                .await
                .map_err(|e| anyhow::Error::new(e.into_service_error()))
                .with_context(|| format!("cannot write s3://{bucket}/{key}"))?;
        }
        Ok(())
    }

    /// Fetches the shared platform outputs into `path` when the local copy is missing.
    pub async fn fetch_platform(&self, path: &std::path::Path) -> Result<()> {
        let RecordStore::S3 {
            client,
            bucket,
            prefix,
        } = self
        else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        let key = format!("{prefix}/platform.json");
        match client.get_object().bucket(bucket).key(&key).send().await {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("cannot read s3://{bucket}/{key}"))?
                    .into_bytes();
                write_atomic(path, &bytes)
            }
            Err(e) => {
                let e = e.into_service_error();
                if e.is_no_such_key() {
                    Ok(())
                } else {
                    Err(anyhow::Error::new(e))
                        .with_context(|| format!("cannot read s3://{bucket}/{key}"))
                }
            }
        }
    }

    /// Read-modify-write of one record. Two runs never touch the same tenant at once
    /// (the Terraform state lock serialises them), so no record lock is needed.
    pub async fn update(&self, id: &TenantId, f: impl FnOnce(&mut TenantRecord)) -> Result<()> {
        let mut rec = self.get(id).await?;
        f(&mut rec);
        self.put(id, &rec).await
    }
}
