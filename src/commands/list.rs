//! `tenantctl list`: id, tier, isolation, state, last apply, last verify; a tenant in the
//! middle of a move, or whose moved-from source is retained, says so. Removed tenants
//! whose exports are recorded are listed too (state `removed`), with their exports (time,
//! location, size). Reads only: roots are rendered in memory to compare fingerprints,
//! nothing is written.

use anyhow::Result;
use chrono::SecondsFormat;
use serde::Serialize;

use crate::context::Ctx;
use crate::exit::Outcome;
use crate::lifecycle::{self, Services};
use crate::moves::journal::Step;
use crate::moves::report::{MoveReport, standing};
use crate::output::{Report, Table};
use crate::render::RenderOptions;
use crate::report::Verdict;

#[derive(Serialize)]
struct Row {
    id: String,
    tier: String,
    isolation: String,
    /// `pending` (never applied), `applied`, or `changed` (inputs differ from the last apply).
    state: String,
    last_apply: Option<String>,
    last_verify: Option<String>,
    verify_status: Option<Verdict>,
    /// A move in progress, or one whose source is still retained.
    #[serde(rename = "move", skip_serializing_if = "Option::is_none")]
    moving: Option<MoveReport>,
    /// The cell whose root holds the tenant (`crate::cells`); none for its own root.
    #[serde(skip_serializing_if = "Option::is_none")]
    cell: Option<String>,
    /// A removed tenant's exports (what is left of it), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<ExportRow>,
}

#[derive(Serialize)]
struct ExportRow {
    created_at: String,
    location: String,
    bytes: u64,
}

pub async fn run(ctx: &Ctx) -> Result<u8> {
    let mut svc = Services::new(ctx, false).await?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let specs = ctx.ws.tenants()?;
    // Where a new tenant of a celled tier will go (recorded by `add` and `apply`).
    svc.place_new(&specs, false).await?;
    let ids: Vec<_> = specs.iter().map(|s| s.id.clone()).collect();
    let mut records = svc.records.get_many(&ids).await?;
    for spec in specs {
        let rec = records.remove(&spec.id).unwrap_or_default();
        let state = match (&rec.moving, &rec.last_apply) {
            _ if rec.removing.is_some() => {
                "removing (rerun `tenantctl remove` to finish)".to_string()
            }
            (Some(j), _) if j.step == Step::CutOver => "moved, source retained".to_string(),
            (Some(j), _) if j.step == Step::Finishing => "moved, deleting source".to_string(),
            (Some(j), _) => format!("moving ({})", j.step),
            (None, None) => "pending".to_string(),
            (None, Some(_)) => match svc.render(&spec, RenderOptions::default()) {
                Ok(r) if lifecycle::is_changed(&spec, &rec, &r) => "changed".into(),
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
            verify_status: rec.last_verify.as_ref().map(|v| v.status),
            moving: rec.moving.as_ref().map(standing),
            cell: svc.cells.cell_of(&spec.id).map(crate::cells::cell_name),
            exports: Vec::new(),
        });
        if let Some(j) = &rec.moving {
            notes.push(format!("{}: {}", spec.id, j.describe()));
        }
    }
    // Removed tenants: what is left of them are their exports.
    let declared: std::collections::BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut removed: std::collections::BTreeMap<String, Row> = std::collections::BTreeMap::new();
    for e in crate::archive::index::list(&svc.records, None).await? {
        if declared.contains(&e.tenant) {
            continue;
        }
        let row = removed.entry(e.tenant.clone()).or_insert_with(|| Row {
            id: e.tenant.clone(),
            tier: e.tier.to_string(),
            isolation: e.isolation.to_string(),
            state: "removed".into(),
            last_apply: None,
            last_verify: None,
            verify_status: None,
            moving: None,
            cell: None,
            exports: Vec::new(),
        });
        // The tier the tenant had when last exported.
        row.tier = e.tier.to_string();
        row.isolation = e.isolation.to_string();
        let at = e.created_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        notes.push(format!(
            "{}: removed; export {at} at {} ({} bytes)",
            e.tenant, e.location, e.bytes
        ));
        row.exports.push(ExportRow {
            created_at: at,
            location: e.location,
            bytes: e.bytes,
        });
    }
    rows.extend(removed.into_values());
    let mut table = Table::new(&[
        "id",
        "tier",
        "isolation",
        "state",
        "last apply",
        "last verify",
    ])
    .titled("tenantctl list")
    .code(0);
    for r in &rows {
        let verify = match (&r.last_verify, &r.verify_status) {
            (Some(at), Some(st)) => format!("{at} ({st})"),
            _ => "-".into(),
        };
        table.row([
            r.id.clone(),
            r.tier.clone(),
            r.isolation.clone(),
            match &r.cell {
                Some(c) => format!("{} ({c})", r.state),
                None => r.state.clone(),
            },
            r.last_apply.clone().unwrap_or_else(|| "-".into()),
            verify,
        ]);
    }
    if rows.is_empty() {
        table.summary("no tenants declared");
    }
    for n in notes {
        table.summary(n);
    }
    Report::new(table, serde_json::to_value(&rows)?).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}
