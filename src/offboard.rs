//! What offboarding does to a tenant's data beyond Terraform: its S3 objects (archived or
//! deleted, never left readable in place), the final snapshot of a dedicated database
//! (copied under the platform's archive key, which outlives the tenant), and, when an id
//! is added again, the secrets a removal left scheduled for deletion.
//!
//! Every step here is idempotent: `remove` records each once done (see
//! `records::RemoveJournal`), and a rerun after an interruption repeats at most the step
//! that was under way.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};

use crate::archive::ObjectsPolicy;
use crate::aws::AwsClients;
use crate::tenant::TenantId;

/// Where the live objects of a tenant are: `tenants/<id>/` in the data bucket.
pub fn live_prefix(id: &TenantId) -> String {
    format!("tenants/{id}/")
}

/// Archives (copies under `to_prefix` in `to_bucket`, SSE-KMS under `kms_key`) or deletes
/// the tenant's objects, then deletes them from the live prefix. Returns a line saying
/// what was done. Rerunning after an interruption copies again what is still live.
pub async fn clear_objects(
    aws: &AwsClients,
    id: &TenantId,
    data_bucket: &str,
    policy: ObjectsPolicy,
    to_bucket: &str,
    to_prefix: &str,
    kms_key: Option<&str>,
) -> Result<String> {
    let s3 = &aws.s3;
    let prefix = live_prefix(id);
    let mut token = None;
    let mut count = 0usize;
    let mut bytes = 0i64;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(data_bucket)
            .prefix(&prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.into_service_error()))
            .with_context(|| format!("cannot list s3://{data_bucket}/{prefix}"))?;
        let mut batch = Vec::new();
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            if policy == ObjectsPolicy::Archive {
                let rel = key.strip_prefix(&prefix).unwrap_or(key);
                let dest = format!("{to_prefix}{rel}");
                let mut copy = s3
                    .copy_object()
                    .copy_source(format!("{data_bucket}/{}", urlencoding::encode(key)))
                    .bucket(to_bucket)
                    .key(&dest)
                    .server_side_encryption(ServerSideEncryption::AwsKms);
                if let Some(k) = kms_key {
                    copy = copy.ssekms_key_id(k);
                }
                copy.send()
                    .await
                    .map_err(|e| anyhow::Error::new(e.into_service_error()))
                    .with_context(|| {
                        format!(
                            "cannot archive s3://{data_bucket}/{key} to s3://{to_bucket}/{dest}: nothing was deleted from the tenant's prefix after this object"
                        )
                    })?;
            }
            count += 1;
            bytes += o.size().unwrap_or(0);
            batch.push(ObjectIdentifier::builder().key(key).build()?);
        }
        if !batch.is_empty() {
            let out = s3
                .delete_objects()
                .bucket(data_bucket)
                .delete(Delete::builder().set_objects(Some(batch)).build()?)
                .send()
                .await
                .map_err(|e| anyhow::Error::new(e.into_service_error()))
                .with_context(|| {
                    format!("cannot delete objects under s3://{data_bucket}/{prefix}")
                })?;
            if let Some(e) = out.errors().first() {
                bail!(
                    "cannot delete s3://{data_bucket}/{}: {}",
                    e.key().unwrap_or("?"),
                    e.message().unwrap_or("unknown error")
                );
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(match (policy, count) {
        (_, 0) => format!("no objects under s3://{data_bucket}/{prefix}"),
        (ObjectsPolicy::Archive, n) => format!(
            "{n} objects ({bytes} bytes) archived from s3://{data_bucket}/{prefix} to s3://{to_bucket}/{to_prefix} and deleted from the tenant's prefix"
        ),
        (ObjectsPolicy::Delete, n) => format!(
            "{n} objects ({bytes} bytes) deleted from s3://{data_bucket}/{prefix} ([archive] objects = \"delete\")"
        ),
    })
}

/// Copies the final snapshot `source` of a dedicated database to `target` under the
/// archive key, waits until the copy is available, and deletes `source` (encrypted under
/// the tenant's key, which `--shred` deletes). Idempotent: an existing `target` is kept.
pub async fn archive_snapshot(
    aws: &AwsClients,
    source: &str,
    target: &str,
    kms_key: &str,
) -> Result<()> {
    let rds = &aws.rds;
    if snapshot_status(aws, target).await?.is_none() {
        if snapshot_status(aws, source).await?.is_none() {
            bail!(
                "the final snapshot `{source}` of the dedicated database does not exist: the destroy did not take it\nhint: look for it with `aws rds describe-db-snapshots`; nothing else was deleted"
            );
        }
        wait_available(aws, source).await?;
        rds.copy_db_snapshot()
            .source_db_snapshot_identifier(source)
            .target_db_snapshot_identifier(target)
            .kms_key_id(kms_key)
            .copy_tags(true)
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.into_service_error()))
            .with_context(|| {
                format!("cannot copy the final snapshot `{source}` to `{target}` under the archive key `{kms_key}`")
            })?;
    }
    wait_available(aws, target).await?;
    if snapshot_status(aws, source).await?.is_some() {
        rds.delete_db_snapshot()
            .db_snapshot_identifier(source)
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.into_service_error()))
            .with_context(|| {
                format!("cannot delete the final snapshot `{source}` (its copy `{target}` is kept)")
            })?;
    }
    Ok(())
}

/// A snapshot's status, None when it does not exist.
async fn snapshot_status(aws: &AwsClients, id: &str) -> Result<Option<String>> {
    match aws
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .db_snapshots()
            .first()
            .map(|s| s.status().unwrap_or("available").to_string())),
        Err(e) => {
            let e = e.into_service_error();
            if e.is_db_snapshot_not_found_fault() {
                Ok(None)
            } else {
                Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot look up snapshot `{id}`"))
            }
        }
    }
}

/// Snapshots of a large database take a while: poll for up to two hours.
async fn wait_available(aws: &AwsClients, id: &str) -> Result<()> {
    for _ in 0..(2 * 60 * 4) {
        match snapshot_status(aws, id).await? {
            Some(s) if s == "available" => return Ok(()),
            Some(s) if s == "failed" || s == "deleted" => {
                bail!("snapshot `{id}` is {s}")
            }
            _ => tokio::time::sleep(Duration::from_secs(15)).await,
        }
    }
    bail!(
        "snapshot `{id}` is not available after two hours; rerun `tenantctl remove` to keep waiting"
    )
}

/// A secret of the tenant's that a removal left scheduled for deletion (the recovery
/// window, `[terraform] secret_recovery_window_days`).
#[derive(Debug, Clone)]
pub struct PendingSecret {
    pub name: String,
    pub deleted: Option<String>,
}

/// The tenant's secrets that are scheduled for deletion (a removed tenant's, inside the
/// recovery window): re-adding the id would fail on them halfway.
pub async fn pending_secrets(aws: &AwsClients, names: &[String]) -> Result<Vec<PendingSecret>> {
    let mut out = Vec::new();
    for name in names {
        match aws.secrets.describe_secret().secret_id(name).send().await {
            Ok(s) => {
                if let Some(d) = s.deleted_date() {
                    out.push(PendingSecret {
                        name: name.clone(),
                        deleted: Some(d.to_string()),
                    });
                }
            }
            Err(e) => {
                let e = e.into_service_error();
                if !e.is_resource_not_found_exception() {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("cannot look up secret `{name}`"));
                }
            }
        }
    }
    Ok(out)
}

/// Restores the secrets a removal of the same id left scheduled for deletion, so the
/// apply adopts them (`crate::adopt`) and writes new values, instead of failing halfway
/// on `ResourceExistsException`.
pub async fn restore_secrets(aws: &AwsClients, pending: &[PendingSecret]) -> Result<()> {
    for p in pending {
        aws.secrets
            .restore_secret()
            .secret_id(&p.name)
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.into_service_error()))
            .with_context(|| {
                format!(
                    "cannot restore secret `{}`, scheduled for deletion by the removal of the same tenant id ([terraform] secret_recovery_window_days)\nhint: wait until the recovery window is over, or delete it with `aws secretsmanager delete-secret --force-delete-without-recovery --secret-id {}`",
                    p.name, p.name
                )
            })?;
    }
    Ok(())
}
