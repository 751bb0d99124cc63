//! `tenantctl import <id> --from DIR|s3://BUCKET/PREFIX/`: restores an export into a
//! provisioned, empty tenant of any tier, after checking the manifest, the schema
//! version, the target's emptiness and every file's SHA-256 (see `archive::import`).
//! Exit 3 when the export does not match its manifest.

use anyhow::Result;
use serde_json::json;

use crate::archive::{self, Location};
use crate::cli::ImportArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::lifecycle::Services;
use crate::output::{Align, Report, Table};
use crate::tenant::TenantId;

pub async fn run(ctx: &Ctx, args: &ImportArgs) -> Result<u8> {
    let id = TenantId::parse(&args.id)?;
    let from = Location::parse(&args.from)?;
    let spec = ctx.ws.tenant(&id)?;
    let svc = Services::new(ctx, true).await?;
    ctx.info(format!("{id}: importing {from}"));
    let imported = archive::import_tenant(&svc, &spec, &from, &|t| {
        ctx.info(format!("{id}: {} ({} rows, verified)", t.table, t.rows))
    })
    .await?;
    let m = &imported.manifest;
    let rows: u64 = imported.tables.iter().map(|t| t.rows).sum();
    let mut table = Table::new(&["table", "rows", "rows checksum"])
        .titled(format!("tenantctl import {id}"))
        .align(1, Align::Right)
        .code(0);
    for t in &imported.tables {
        table.row([t.table.clone(), t.rows.to_string(), t.rows_checksum.clone()]);
    }
    table.summary(format!(
        "imported the export of `{}` ({}, taken {}) into tenant `{id}` ({}): {} tables, {rows} rows; files, row counts and checksums verified",
        m.tenant,
        m.tier,
        m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        spec.tier,
        imported.tables.len(),
    ));
    let json = json!({
        "tenant": id.as_str(),
        "tier": spec.tier,
        "from": imported.from.to_string(),
        "source": {
            "tenant": m.tenant,
            "tier": m.tier,
            "created_at": m.created_at,
            "manifest_sha256": imported.manifest_sha256,
        },
        "schema_version": m.schema_version,
        "rows": rows,
        "tables": imported.tables,
    });
    Report::new(table, json).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}
