//! `tenantctl apply [<id>...|--all|--tier|--changed|--shard K/N]`: converge the selected
//! tenants, skipping those whose inputs did not change since their last successful
//! apply (unless `--refresh`), then verify what was applied.

use std::sync::Mutex;

use anyhow::Result;

use crate::cells::converge::{self, Mode};
use crate::cli::ApplyArgs;
use crate::context::{Ctx, OutputFormat};
use crate::exit::{Interrupted, Outcome};
use crate::fleet::{self, Status};
use crate::lifecycle::{self, ApplyOptions, Services};
use crate::render::RenderOptions;
use crate::report::{self, CheckStatus, Verdict};

pub async fn run(ctx: &Ctx, args: &ApplyArgs) -> Result<u8> {
    // Bad selections are refused before any cloud call.
    fleet::select(&ctx.ws.tenants()?, &args.select.selection())?;
    let mut svc = Services::new(ctx, true).await?;
    let specs = svc.select(&args.select.selection(), true).await?;
    let specs = lifecycle::only_changed(&svc, specs, args.select.changed).await?;
    // The tier each tenant was applied with, for the audit events of those that change.
    let ids: Vec<_> = specs.iter().map(|s| s.id.clone()).collect();
    let mut records = svc.records.get_many(&ids).await?;
    let mut applied = std::collections::BTreeMap::new();
    for spec in &specs {
        let rec = records.remove(&spec.id).unwrap_or_default();
        let tier = rec.last_apply.and_then(|a| a.tier.parse().ok());
        applied.insert(spec.id.to_string(), (spec.id.clone(), tier, spec.tier));
    }
    let opts = ApplyOptions {
        lock_timeout: args.lock_timeout,
        refresh: args.refresh,
        render: RenderOptions::default(),
    };
    let all_checks = Mutex::new(Vec::new());
    // A tenant in a cell whose tier change moves its data leaves the cell first: moves
    // work on a tenant's own root.
    let not_evicted = crate::cells::evict_moving(&mut svc, &specs, args.lock_timeout).await?;
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| !not_evicted.iter().any(|(id, _)| *id == s.id))
        .collect();
    // Tenants in cells are planned and applied a cell at a time (`crate::cells`).
    let (specs, cells) = converge::split(&svc, specs);
    let adoptable: Vec<_> = specs.clone();
    let celled = converge::run(&svc, cells, Mode::Apply, &opts).await?;
    let mut results = fleet::run(ctx, specs, "apply", args.select.fail_fast, |spec, bar| {
        let svc = &svc;
        let opts = &opts;
        let all_checks = &all_checks;
        async move {
            let (mut outcome, checks) = lifecycle::apply_tenant(svc, &spec, opts, bar).await?;
            let failing: Vec<String> = checks
                .iter()
                .filter(|c| c.status != CheckStatus::Pass)
                .map(|c| c.check.clone())
                .collect();
            if !failing.is_empty() {
                outcome.detail = Some(format!("verify failed: {}", failing.join(", ")));
            }
            if let Ok(mut all) = all_checks.lock() {
                all.extend(checks);
            }
            Ok(outcome)
        }
    })
    .await;
    results.extend(celled.summaries);
    for (id, e) in not_evicted {
        let e = e.context("cannot move its state out of its cell");
        results.push(fleet::TenantSummary::failed(id.to_string(), &e, 0));
    }
    // With cells on, the tenants of celled tiers that this run left in their own roots
    // (applied before cells were on, or back from a tier move) move into cells.
    let adopt = adoptable_now(&svc, &adoptable, &results).await?;
    if !adopt.is_empty() && !ctx.interrupt.is_set() {
        let at: std::collections::HashMap<String, usize> = results
            .iter()
            .enumerate()
            .map(|(i, r)| (r.tenant.clone(), i))
            .collect();
        for s in super::cells::adopt_tenants(&svc, adopt, args.lock_timeout).await? {
            if let Some(r) = at.get(&s.tenant).map(|i| &mut results[*i]) {
                match s.status {
                    Status::Failed => {
                        r.status = Status::Failed;
                        r.error = s.error;
                    }
                    _ => {
                        let line = s.detail.unwrap_or_default();
                        r.detail = Some(match r.detail.take() {
                            Some(d) => format!("{d}; {line}"),
                            None => line,
                        });
                    }
                }
            }
        }
    }
    results.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    if let Ok(mut all) = all_checks.lock() {
        all.extend(celled.checks);
    }
    super::record_audit(ctx, audit(&results, &applied)).await;
    fleet::summary_report("apply", &results).emit(ctx.output)?;
    if ctx.interrupt.is_set() {
        return Err(Interrupted.into());
    }
    if results.iter().any(|r| r.status == Status::Failed) {
        return Ok(fleet::exit_code(&results, Outcome::Success.code()));
    }
    let checks = all_checks.into_inner().unwrap_or_default();
    let verdict = report::verdict(&checks);
    if verdict != Verdict::Pass {
        // stdout holds the apply summary; the failing checks go with the logs.
        let tenants: Vec<String> = results.iter().map(|r| r.tenant.clone()).collect();
        let text = report::checks_report(&checks, &tenants).render(OutputFormat::Human);
        crate::output::status_line(text.trim_end());
    }
    Ok(verdict.exit_code())
}

/// The tenants of `specs` (applied in their own roots by this run, without failing) that
/// belong in a cell now: cells on, a celled tier, no move or removal under way.
async fn adoptable_now(
    svc: &Services,
    specs: &[crate::workspace::TenantSpec],
    results: &[fleet::TenantSummary],
) -> Result<Vec<crate::workspace::TenantSpec>> {
    let cfg = &svc.ctx.ws.config.cells;
    let ok: std::collections::HashSet<&str> = results
        .iter()
        .filter(|r| r.status != Status::Failed)
        .map(|r| r.tenant.as_str())
        .collect();
    let candidates: Vec<_> = specs
        .iter()
        .filter(|s| cfg.holds(s.tier) && ok.contains(s.id.as_str()))
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let ids: Vec<_> = candidates.iter().map(|s| s.id.clone()).collect();
    let records = svc.records.get_many(&ids).await?;
    Ok(candidates
        .into_iter()
        .filter(|s| {
            let r = &records[&s.id];
            r.last_apply.is_some() && r.moving.is_none() && r.removing.is_none()
        })
        .collect())
}

/// An audit event per tenant the apply changed or failed on (an unchanged or skipped
/// tenant was not acted on).
fn audit(
    results: &[fleet::TenantSummary],
    applied: &std::collections::BTreeMap<
        String,
        (
            crate::tenant::TenantId,
            Option<crate::tenant::Tier>,
            crate::tenant::Tier,
        ),
    >,
) -> Vec<crate::audit::Event> {
    let mut events = Vec::new();
    for r in results {
        if !matches!(r.status, Status::Changed | Status::Failed) {
            continue;
        }
        let Some((id, before, after)) = applied.get(&r.tenant) else {
            continue;
        };
        // `detail` also carries a move's line; a failed verification starts so.
        let drift = r
            .detail
            .as_deref()
            .filter(|d| d.starts_with("verify failed"));
        let exit_code = if r.status == Status::Changed {
            if drift.is_some() {
                Outcome::Drift.code()
            } else {
                Outcome::Success.code()
            }
        } else if r.locked {
            crate::exit::LOCKED
        } else {
            crate::exit::ERROR
        };
        let mut event = crate::audit::Event::new("apply", id.clone(), exit_code, r.duration_ms);
        event.tier_before = *before;
        event.tier_after = Some(*after);
        event.error = r
            .error
            .as_deref()
            .map(crate::output::one_line)
            .or_else(|| drift.map(str::to_string));
        events.push(event);
    }
    events
}
