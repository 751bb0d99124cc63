//! `tenantctl export <id> [--to DIR|s3://BUCKET/PREFIX/]`: a consistent snapshot of the
//! tenant's database data as gzip CSV files and a manifest (see `archive`). Progress per
//! table on stderr; the files (table, rows, bytes, sha256) on stdout.

use anyhow::Result;
use serde_json::json;

use crate::archive::{self, Location};
use crate::cli::ExportArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::lifecycle::Services;
use crate::output::{Align, Report, Table};
use crate::tenant::TenantId;

pub async fn run(ctx: &Ctx, args: &ExportArgs) -> Result<u8> {
    // Bad input is refused before any connection or AWS call.
    let id = TenantId::parse(&args.id)?;
    let to = args.to.as_deref().map(Location::parse).transpose()?;
    let spec = ctx.ws.tenant(&id)?;
    let svc = Services::new(ctx, true).await?;
    ctx.info(format!("{id}: exporting ({} tier)", spec.tier));
    let exported = archive::export_tenant(&svc, &spec, to.as_ref(), &|t| {
        ctx.info(format!(
            "{id}: {} ({} rows, {})",
            t.name,
            t.rows,
            human_bytes(t.bytes)
        ))
    })
    .await?;
    let m = &exported.manifest;
    let mut table = Table::new(&["table", "rows", "bytes", "sha256"])
        .titled(format!("tenantctl export {id}"))
        .align(1, Align::Right)
        .align(2, Align::Right)
        .code(0);
    for t in &m.tables {
        table.row([
            t.name.clone(),
            t.rows.to_string(),
            t.bytes.to_string(),
            t.sha256.clone(),
        ]);
    }
    let key = exported
        .kms_key_id
        .clone()
        .or_else(|| m.encryption.kms_key_id.clone());
    let encryption = match (m.encryption.sse.as_str(), &key) {
        ("none", _) => "not encrypted by tenantctl (a local directory)".to_string(),
        (sse, Some(k)) => format!("{sse} with key {k}"),
        (sse, None) => format!("{sse} with the bucket's AWS-managed key"),
    };
    table.summary(format!(
        "exported tenant `{id}` ({}, schema version {}) to {}: {} tables, {} rows, {} ({} bytes) with the manifest; {}",
        m.tier,
        archive::manifest::show_version(&m.schema_version),
        exported.location,
        m.tables.len(),
        m.rows(),
        human_bytes(exported.bytes()),
        exported.bytes(),
        encryption
    ));
    let json = json!({
        "tenant": m.tenant,
        "tier": m.tier,
        "isolation": m.isolation,
        "location": exported.location.to_string(),
        "created_at": m.created_at,
        "schema_version": m.schema_version,
        "bytes": exported.bytes(),
        "rows": m.rows(),
        "manifest_sha256": exported.manifest_sha256,
        "encryption": {
            "sse": m.encryption.sse,
            "kms_key_id": key,
            "key_source": m.encryption.key_source,
        },
        "tables": m.tables.iter().map(|t| json!({
            "table": t.name,
            "file": t.file,
            "rows": t.rows,
            "bytes": t.bytes,
            "sha256": t.sha256,
            "rows_checksum": t.rows_checksum,
        })).collect::<Vec<_>>(),
    });
    Report::new(table, json).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}

/// `1.5 MiB`, for people; JSON and the table keep exact byte counts.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(5 << 30), "5.0 GiB");
    }
}
