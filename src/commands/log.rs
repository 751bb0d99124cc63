//! `tenantctl log <id>`: the tenant's audit trail (`src/audit.rs`), oldest first, as a
//! table or as the recorded events in JSON. A removed tenant keeps its history.

use anyhow::Result;

use crate::audit;
use crate::cli::LogArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::output::{Align, Report, Table};
use crate::tenant::TenantId;

pub fn run(ctx: &Ctx, args: &LogArgs) -> Result<u8> {
    let id = TenantId::parse(&args.id)?;
    let events = audit::read(&ctx.ws.state_dir(), &id)?;
    let mut table = Table::new(&[
        "at", "action", "who", "tier", "result", "duration", "detail", "error",
    ])
    .titled(format!("tenantctl log {id}"))
    .align(5, Align::Right);
    let tier = |t: Option<crate::tenant::Tier>| t.map(|t| t.to_string()).unwrap_or("-".into());
    for e in &events {
        let tiers = if e.tier_before == e.tier_after {
            tier(e.tier_after)
        } else {
            format!("{} -> {}", tier(e.tier_before), tier(e.tier_after))
        };
        table.row([
            audit::when(e),
            e.action.clone(),
            e.who.clone(),
            tiers,
            e.result.clone(),
            format!("{:.1}s", e.duration_ms as f64 / 1000.0),
            e.detail.clone().unwrap_or_default(),
            e.error.clone().unwrap_or_default(),
        ]);
    }
    table.summary(format!("{} event(s) for tenant `{id}`", events.len()));
    Report::new(table, serde_json::to_value(&events)?).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}
