//! tenantctl's own memory of each tenant: the last successful apply (with the
//! fingerprint of its inputs), the last verification, and the journal of a move in
//! progress.
//!
//! Records live beside the Terraform state: under `.tenantctl/records/` with the local
//! backend, and in the state bucket (`<key_prefix>/records/<id>.json`) with the S3 backend,
//! so every machine of a team sees the same "last applied" and `--changed` agrees
//! between CI runners.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
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
    /// The move journal while a tier change moves the tenant's data (`src/moves/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<crate::moves::journal::Journal>,
    /// The progress of a `remove` under way: a rerun continues at the recorded step
    /// (`src/commands/remove.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing: Option<RemoveJournal>,
    /// The tenant's state is moving between its own root and a cell
    /// (`crate::cells::adopt`): a rerun finishes the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_move: Option<CellMove>,
}

/// A state move between a tenant's own root and a cell, recorded before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMove {
    /// The cell the state leaves (None: the tenant's own root).
    pub from: Option<u32>,
    /// The cell the state goes to (None: the tenant's own root).
    pub to: Option<u32>,
    pub started_at: DateTime<Utc>,
}

/// What a `remove` has done so far. Each step is recorded once it is complete, and each
/// is idempotent, so an interrupted remove is simply run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveJournal {
    /// When the removal started: names the final snapshot and the archived objects.
    pub started_at: DateTime<Utc>,
    /// `--shred` as the first run asked (a rerun keeps it, or adds it).
    #[serde(default)]
    pub shred: bool,
    /// Where the export went; `skipped` with `--no-export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<String>,
    /// Terraform is destroying the tenant (set before the destroy starts, so a rerun
    /// after a destroy that completed but was not recorded can tell).
    #[serde(default)]
    pub destroying: bool,
    /// The destroy removed the tenant's resources (and how many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroyed: Option<u64>,
    /// The final snapshot's copy under the archive key (dedicated database only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The tenant's S3 objects were archived or deleted (the policy applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<String>,
    /// The tenant's database objects were dropped.
    #[serde(default)]
    pub database_dropped: bool,
    /// The tenant's KMS key (ARN), read before the destroy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key was taken out of the destroy (no `--shred`): it outlives the tenant.
    #[serde(default)]
    pub key_kept: bool,
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
    /// Serialized as `pass`, `drift` or `error`, as earlier records wrote it.
    pub status: crate::report::Verdict,
    #[serde(default)]
    pub failed: Vec<String>,
}

/// Name of the shared platform outputs among the records (`platform` is a reserved id).
const PLATFORM: &str = "platform.json";

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
                Ok(RecordStore::S3 {
                    client: aws.s3.clone(),
                    bucket: ws.config.state.bucket.clone().unwrap_or_default(),
                    prefix: format!("{}/records", crate::backend::key_prefix(&ws.config)),
                })
            }
        }
    }

    pub async fn get(&self, id: &TenantId) -> Result<TenantRecord> {
        let name = format!("{id}.json");
        match self.read(&name).await? {
            Some((bytes, at)) => {
                serde_json::from_slice(&bytes).with_context(|| format!("invalid record {at}"))
            }
            None => Ok(TenantRecord::default()),
        }
    }

    /// The records of `ids`, read for a whole fleet at once. On S3 the record keys are
    /// listed first (paged), so a tenant that has no record costs no request, and the
    /// records that exist are fetched [`READ_CONCURRENCY`] at a time: 10,000 sequential
    /// GETs would take minutes, 10,000 concurrent ones would exhaust sockets.
    pub async fn get_many(&self, ids: &[TenantId]) -> Result<BTreeMap<TenantId, TenantRecord>> {
        let mut out = BTreeMap::new();
        match self {
            RecordStore::Local(_) => {
                for id in ids {
                    out.insert(id.clone(), self.get(id).await?);
                }
            }
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let present: std::collections::HashSet<String> =
                    list_keys(client, bucket, &format!("{prefix}/"))
                        .await?
                        .into_iter()
                        .collect();
                let keys: Vec<String> = ids
                    .iter()
                    .map(|id| format!("{prefix}/{id}.json"))
                    .filter(|k| present.contains(k))
                    .collect();
                let mut bodies = get_objects(client, bucket, keys).await?;
                for id in ids {
                    let key = format!("{prefix}/{id}.json");
                    let rec = match bodies.remove(&key) {
                        Some(bytes) => serde_json::from_slice(&bytes)
                            .with_context(|| format!("invalid record s3://{bucket}/{key}"))?,
                        None => TenantRecord::default(),
                    };
                    out.insert(id.clone(), rec);
                }
            }
        }
        Ok(out)
    }

    pub async fn put(&self, id: &TenantId, rec: &TenantRecord) -> Result<()> {
        self.write(&format!("{id}.json"), serde_json::to_vec_pretty(rec)?)
            .await
    }

    pub async fn delete(&self, id: &TenantId) -> Result<()> {
        let name = format!("{id}.json");
        match self {
            RecordStore::Local(dir) => {
                let _ = std::fs::remove_file(dir.join(name));
                Ok(())
            }
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{prefix}/{name}");
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
        match self {
            RecordStore::Local(_) => Ok(()),
            RecordStore::S3 { .. } => self.write(PLATFORM, bytes.to_vec()).await,
        }
    }

    /// Fetches the shared platform outputs into `path` when the local copy is missing.
    pub async fn fetch_platform(&self, path: &std::path::Path) -> Result<()> {
        if matches!(self, RecordStore::Local(_)) || path.exists() {
            return Ok(());
        }
        match self.read(PLATFORM).await? {
            Some((bytes, _)) => write_atomic(path, &bytes),
            None => Ok(()),
        }
    }

    /// Reads one object; None when it does not exist. Also returns where it was read,
    /// for messages.
    pub(crate) async fn read(&self, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        match self {
            RecordStore::Local(dir) => {
                let path = dir.join(name);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some((b, format!("`{}`", path.display())))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
                }
            }
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{prefix}/{name}");
                let at = format!("s3://{bucket}/{key}");
                Ok(get_object(client, bucket, &key).await?.map(|b| (b, at)))
            }
        }
    }

    pub(crate) async fn write(&self, name: &str, body: Vec<u8>) -> Result<()> {
        match self {
            RecordStore::Local(dir) => write_atomic(&dir.join(name), &body),
            RecordStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = format!("{prefix}/{name}");
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

    /// Read-modify-write of one record. Two runs never touch the same tenant at once
    /// (the Terraform state lock serialises them), so no record lock is needed.
    pub async fn update(&self, id: &TenantId, f: impl FnOnce(&mut TenantRecord)) -> Result<()> {
        let mut rec = self.get(id).await?;
        f(&mut rec);
        self.put(id, &rec).await
    }
}

/// How many record reads are in flight at once against S3.
pub const READ_CONCURRENCY: usize = 32;

/// Every key under `prefix`, following ListObjectsV2's continuation tokens (1,000 keys a
/// page).
pub async fn list_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.into_service_error()))
            .with_context(|| format!("cannot list s3://{bucket}/{prefix}"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_string),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(keys)
}

/// The bytes of each of `keys` that exists, read [`READ_CONCURRENCY`] at a time.
pub async fn get_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    keys: Vec<String>,
) -> Result<std::collections::HashMap<String, Vec<u8>>> {
    let reads = futures::stream::iter(keys)
        .map(|key| async move {
            let body = get_object(client, bucket, &key).await?;
            Ok::<_, anyhow::Error>(body.map(|b| (key, b)))
        })
        .buffer_unordered(READ_CONCURRENCY);
    futures::pin_mut!(reads);
    let mut out = std::collections::HashMap::new();
    while let Some(read) = reads.next().await {
        if let Some((key, bytes)) = read? {
            out.insert(key, bytes);
        }
    }
    Ok(out)
}

/// An S3 object's bytes; None when there is no such key.
pub async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    let at = || format!("cannot read s3://{bucket}/{key}");
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let bytes = out.body.collect().await.with_context(at)?.into_bytes();
            Ok(Some(bytes.to_vec()))
        }
        Err(e) => {
            let e = e.into_service_error();
            if e.is_no_such_key() {
                Ok(None)
            } else {
                Err(anyhow::Error::new(e)).with_context(at)
            }
        }
    }
}
