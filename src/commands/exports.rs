//! `tenantctl exports [<id>]`: the recorded exports (see `archive::index`), including
//! those of tenants that have since been removed.

use anyhow::Result;
use chrono::SecondsFormat;
use serde_json::json;

use crate::archive::index;
use crate::cli::ExportsArgs;
use crate::commands::export::human_bytes;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::lifecycle::Services;
use crate::output::{Align, Report, Table};
use crate::tenant::TenantId;

pub async fn run(ctx: &Ctx, args: &ExportsArgs) -> Result<u8> {
    let id = args.id.as_deref().map(TenantId::parse).transpose()?;
    let svc = Services::new(ctx, false).await?;
    let records = index::list(&svc.records, id.as_ref()).await?;
    let mut table = Table::new(&[
        "tenant",
        "created",
        "tier",
        "tenant state",
        "location",
        "size",
        "tables",
        "rows",
    ])
    .titled("tenantctl exports")
    .align(5, Align::Right)
    .align(6, Align::Right)
    .align(7, Align::Right)
    .code(0)
    .code(4);
    let mut rows = Vec::new();
    for r in &records {
        // A tenant whose file is gone was removed: its exports are what is left of it.
        let declared = TenantId::parse(&r.tenant)
            .ok()
            .map(|t| ctx.ws.read_tenant(&t))
            .transpose()?
            .flatten()
            .is_some();
        let state = if declared { "declared" } else { "removed" };
        table.row([
            r.tenant.clone(),
            r.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            r.tier.to_string(),
            state.to_string(),
            r.location.clone(),
            human_bytes(r.bytes),
            r.tables.to_string(),
            r.rows.to_string(),
        ]);
        let mut v = serde_json::to_value(r)?;
        v["tenant_state"] = json!(state);
        rows.push(v);
    }
    if records.is_empty() {
        table.summary(match &id {
            Some(id) => format!("no exports recorded for tenant `{id}`"),
            None => "no exports recorded".to_string(),
        });
    }
    Report::new(table, serde_json::Value::Array(rows)).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}
