//! `tenantctl cells adopt`: moves applied tenants of celled tiers from their own roots
//! into cells, by moving their Terraform state (`crate::cells::adopt`), never by
//! destroying and creating; each is then planned in its cell, which must show no change.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::cells::{self, adopt};
use crate::cli::CellsAdoptArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::fleet::{self, Status, TenantSummary};
use crate::lifecycle::Services;
use crate::workspace::TenantSpec;

pub async fn adopt(ctx: &Ctx, args: &CellsAdoptArgs) -> Result<u8> {
    let specs = fleet::select(&ctx.ws.tenants()?, &args.select.selection())?;
    if !ctx.config().cells.enabled {
        anyhow::bail!(
            "cells are off: set `[cells] enabled = true` (and `tiers`, `size`) in tenantctl.toml first"
        );
    }
    let svc = Services::new(ctx, false).await?;
    let summaries = adopt_tenants(&svc, specs, args.lock_timeout).await?;
    fleet::summary_report("cells adopt", &summaries).emit(ctx.output)?;
    Ok(fleet::exit_code(&summaries, Outcome::Success.code()))
}

/// Adopts `specs` into cells; a tenant already in a cell, or that cannot be adopted, is
/// reported as skipped or failed with the reason. Used by `cells adopt` and by `apply`
/// once cells are enabled.
pub async fn adopt_tenants(
    svc: &Services,
    specs: Vec<TenantSpec>,
    lock_timeout: u64,
) -> Result<Vec<TenantSummary>> {
    let mut cells = (*svc.cells).clone();
    let mut summaries = Vec::new();
    let mut by_cell: BTreeMap<u32, Vec<TenantSpec>> = BTreeMap::new();
    for spec in specs {
        let resumed = svc.records.get(&spec.id).await?.cell_move.is_some();
        if let (Some(n), false) = (cells.cell_of(&spec.id), resumed) {
            summaries.push(summary(
                &spec,
                Status::Skipped,
                Some(format!("already in {}", cells::cell_name(n))),
                None,
            ));
            continue;
        }
        match adopt::prepare(svc, &mut cells, &spec).await {
            Ok(n) => by_cell.entry(n).or_default().push(spec),
            Err(e) => summaries.push(summary(
                &spec,
                Status::Skipped,
                Some(format!("{e:#}")),
                None,
            )),
        }
    }
    if by_cell.is_empty() {
        return Ok(summaries);
    }
    cells.save(&svc.records).await?;
    let placed = Services {
        cells: std::sync::Arc::new(cells),
        ..svc.clone()
    };
    for (n, specs) in by_cell {
        let started = std::time::Instant::now();
        match adopt::adopt_cell(&placed, n, &specs, lock_timeout).await {
            Ok(results) => {
                for (spec, r) in results {
                    let s = match r {
                        Ok(m) => {
                            let detail = match m.changes {
                                Some(c) if c.is_empty() => format!(
                                    "state moved into {} ({} resources); plan there: no changes",
                                    cells::cell_name(m.cell),
                                    m.resources
                                ),
                                Some(c) => format!(
                                    "state moved into {} ({} resources); plan there: {c} (run `tenantctl apply {}`)",
                                    cells::cell_name(m.cell),
                                    m.resources,
                                    spec.id
                                ),
                                None => format!(
                                    "state moved into {} ({} resources); its plan there failed",
                                    cells::cell_name(m.cell),
                                    m.resources
                                ),
                            };
                            summary(&spec, Status::Changed, Some(detail), None)
                        }
                        Err(e) => summary(&spec, Status::Failed, None, Some(format!("{e:#}"))),
                    };
                    placed.ctx.info(fleet::summary_line(&s));
                    summaries.push(s);
                }
            }
            Err(e) => {
                for spec in specs {
                    let mut s = summary(&spec, Status::Failed, None, Some(format!("{e:#}")));
                    s.duration_ms = started.elapsed().as_millis() as u64;
                    s.locked = crate::exit::is_lock_held(&e);
                    summaries.push(s);
                }
            }
        }
    }
    summaries.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(summaries)
}

fn summary(
    spec: &TenantSpec,
    status: Status,
    detail: Option<String>,
    error: Option<String>,
) -> TenantSummary {
    TenantSummary {
        tenant: spec.id.to_string(),
        status,
        changes: None,
        duration_ms: 0,
        detail,
        error,
        locked: false,
        moved: None,
    }
}
