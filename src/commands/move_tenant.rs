//! `tenantctl move <id> --tier <tier> | --finish | --rollback`: a tier change as one
//! command. `--tier` edits the tenant's file (the desired state stays declarative, as
//! CI applies it) and applies that tenant, which carries out the move; `--rollback`
//! puts the file's tier back and applies; `--finish` deletes the retained source now.
//! Prints the move's per-table rows and checksums, the freeze and the total time, then
//! exits like `apply`: 0 verified, 3 drift, 1 error, 4 locked, 130 interrupted.

use anyhow::{Result, bail};
use serde_json::json;

use crate::cli::MoveArgs;
use crate::context::{Ctx, OutputFormat};
use crate::lifecycle::{self, ApplyOptions, Services};
use crate::moves::flow::{self, Decision, MoveOptions};
use crate::moves::report::MoveReport;
use crate::output::{Progress, Report, Table};
use crate::render::RenderOptions;
use crate::report;
use crate::tenant::TenantId;

pub async fn run(ctx: &Ctx, args: &MoveArgs) -> Result<u8> {
    let id = TenantId::parse(&args.id)?;
    let spec = ctx.ws.tenant(&id)?;
    let mut svc = Services::new(ctx, true).await?;
    let rec = svc.records.get(&id).await?;
    let mut finished = None;
    // Everything is checked before the file is edited or anything runs.
    let spec = match (args.tier, args.finish, args.rollback) {
        (Some(tier), _, _) => {
            if tier == spec.tier && rec.moving.is_none() {
                let applied = rec.last_apply.as_ref().map(|a| a.tier.as_str());
                if applied == Some(tier.as_str()) {
                    bail!("tenant `{id}` is on tier {tier} already: nothing to move");
                }
            }
            svc.render(
                &crate::workspace::TenantSpec {
                    id: id.clone(),
                    tier,
                },
                RenderOptions::default(),
            )?;
            if tier != spec.tier {
                let spec = ctx.ws.set_tier(&id, tier)?;
                ctx.info(format!(
                    "{id}: tier {tier} written to `{}`",
                    ctx.ws.tenant_file(&id).display()
                ));
                spec
            } else {
                spec
            }
        }
        (None, true, _) => {
            let Some(j) = rec.moving.clone().filter(|j| j.is_cut_over()) else {
                bail!(
                    "tenant `{id}` has no finished cut-over whose source could be deleted{}",
                    match &rec.moving {
                        Some(j) => format!(
                            " (its move {} → {} stands at {})\nhint: `tenantctl apply {id}` resumes it",
                            j.from, j.to, j.step
                        ),
                        None => String::new(),
                    }
                );
            };
            let bar = indicatif::ProgressBar::hidden();
            let opts = MoveOptions {
                lock_timeout: args.lock_timeout,
                retain_days: ctx.config().moves.retain_days,
            };
            let done = flow::run(&svc, &id, Decision::Finish(j), &opts, &bar).await?;
            let report = MoveReport::of(&done);
            ctx.info(format!("{id}: {}", report.line()));
            finished = Some(report);
            spec
        }
        (None, false, true) => {
            let Some(j) = rec.moving.clone() else {
                bail!(
                    "tenant `{id}` is not moving: nothing to roll back\nhint: a move whose source was deleted (`--finish`) is undone by moving again: `tenantctl move {id} --tier <tier>`"
                );
            };
            if spec.tier.isolation() == j.from.isolation() {
                spec
            } else {
                let spec = ctx.ws.set_tier(&id, j.from)?;
                ctx.info(format!(
                    "{id}: tier {} written back to `{}`",
                    j.from,
                    ctx.ws.tenant_file(&id).display()
                ));
                spec
            }
        }
        (None, false, false) => bail!("name `--tier <tier>`, `--finish` or `--rollback`"),
    };

    // A move works on the tenant's own root: out of its cell first (`crate::cells`).
    if let Some((_, e)) =
        crate::cells::evict_moving(&mut svc, std::slice::from_ref(&spec), args.lock_timeout)
            .await?
            .pop()
    {
        return Err(e.context(format!("cannot move tenant `{id}`'s state out of its cell")));
    }
    let progress = Progress::new(ctx, 1, "move");
    let bar = progress.item(id.as_str());
    let opts = ApplyOptions {
        lock_timeout: args.lock_timeout,
        refresh: true,
        render: RenderOptions::default(),
    };
    let res = lifecycle::apply_tenant(&svc, &spec, &opts, bar.clone()).await;
    bar.finish_and_clear();
    progress.finish();
    let (mut outcome, checks) = res?;
    if outcome.moved.is_none() {
        outcome.moved = finished;
    }
    // A finished move to a celled tier ends in a cell.
    let rec = svc.records.get(&id).await?;
    if ctx.config().cells.holds(spec.tier)
        && rec.moving.is_none()
        && svc.cells.cell_of(&id).is_none()
    {
        for s in super::cells::adopt_tenants(&svc, vec![spec.clone()], args.lock_timeout).await? {
            match (s.status, s.error, s.detail) {
                (crate::fleet::Status::Failed, Some(e), _) => ctx.info(format!(
                    "{id}: moved, but its state stays in its own root: {e}\nhint: `tenantctl cells adopt {id}` retries"
                )),
                (_, _, Some(d)) => ctx.info(format!("{id}: {d}")),
                _ => {}
            }
        }
    }
    let verdict = report::verdict(&checks);
    let failing: Vec<&str> = checks
        .iter()
        .filter(|c| c.status != report::CheckStatus::Pass)
        .map(|c| c.check.as_str())
        .collect();
    let table = match &outcome.moved {
        Some(m) => m.table(id.as_str()),
        None => {
            let mut t =
                Table::new(&["table", "rows", "checksum"]).titled(format!("tenantctl move {id}"));
            t.summary(format!(
                "{id}: no move was needed; the tenant is applied at tier {}",
                spec.tier
            ));
            t
        }
    };
    let json = json!({
        "command": "move",
        "tenant": id.as_str(),
        "tier": spec.tier,
        "move": outcome.moved,
        "verify": verdict,
        "failed_checks": failing,
    });
    Report::new(table, json).emit(ctx.output)?;
    if verdict != report::Verdict::Pass && ctx.output != OutputFormat::Json {
        let text = report::checks_report(&checks, &[id.to_string()]).render(OutputFormat::Human);
        crate::output::status_line(text.trim_end());
    }
    Ok(verdict.exit_code())
}
