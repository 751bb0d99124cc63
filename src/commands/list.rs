//! `tenantctl list`: id, tier, isolation, state, last apply, last verify.

use anyhow::Result;
use chrono::SecondsFormat;
use serde::Serialize;

use crate::context::{Ctx, OutputFormat};
use crate::exit::Outcome;
use crate::lifecycle::{self, Services};
use crate::render::RenderOptions;

#[derive(Serialize)]
struct Row {
    id: String,
    tier: String,
    isolation: String,
    /// `pending` (never applied), `applied`, or `changed` (inputs differ from the last apply).
    state: String,
    last_apply: Option<String>,
    last_verify: Option<String>,
    verify_status: Option<String>,
}

pub async fn run(ctx: &Ctx) -> Result<u8> {
    let svc = Services::new(ctx, false).await?;
    let mut rows = Vec::new();
    for spec in ctx.ws.tenants()? {
        let rec = svc.records.get(&spec.id).await?;
        let state = match &rec.last_apply {
            None => "pending".to_string(),
            Some(_) => match lifecycle::render_tenant(&svc, &spec, RenderOptions::default()) {
                Ok(r) if lifecycle::is_changed(&svc, &spec, &r).await? => "changed".into(),
                Ok(_) => "applied".into(),
                Err(_) => "unrenderable".into(),
            },
        };
        rows.push(Row {
            id: spec.id.to_string(),
            tier: spec.tier.to_string(),
            isolation: spec.tier.isolation().to_string(),
            state,
            last_apply: rec
                .last_apply
                .as_ref()
                .map(|a| a.at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            last_verify: rec
                .last_verify
                .as_ref()
                .map(|v| v.at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            verify_status: rec.last_verify.as_ref().map(|v| v.status.clone()),
        });
    }
    match ctx.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        OutputFormat::Markdown => {
            println!("| id | tier | isolation | state | last apply | last verify |");
            println!("|---|---|---|---|---|---|");
            for r in &rows {
                println!(
                    "| `{}` | {} | {} | {} | {} | {} |",
                    r.id,
                    r.tier,
                    r.isolation,
                    r.state,
                    r.last_apply.as_deref().unwrap_or("-"),
                    verify_cell(r)
                );
            }
        }
        OutputFormat::Human => {
            let w = rows.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
            println!(
                "{:<w$}  {:<10}  {:<9}  {:<8}  {:<20}  LAST VERIFY",
                "ID", "TIER", "ISOLATION", "STATE", "LAST APPLY"
            );
            for r in &rows {
                println!(
                    "{:<w$}  {:<10}  {:<9}  {:<8}  {:<20}  {}",
                    r.id,
                    r.tier,
                    r.isolation,
                    r.state,
                    r.last_apply.as_deref().unwrap_or("-"),
                    verify_cell(r)
                );
            }
        }
    }
    Ok(Outcome::Success.code())
}

fn verify_cell(r: &Row) -> String {
    match (&r.last_verify, &r.verify_status) {
        (Some(at), Some(st)) => format!("{at} ({st})"),
        _ => "-".into(),
    }
}
