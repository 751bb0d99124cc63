//! `tenantctl plan`: Terraform's own view of each selected tenant (with a refresh, so it
//! also reports drift Terraform can see). A pending move (a tier change across
//! isolation models, or the rest of one) is shown as such: from and to, the tables and
//! row counts the copy will carry, and Terraform's plan of where the move ends.
//! Exit 0 no changes, 2 changes pending, 1 error.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;

use crate::cells::converge::{self, Mode};
use crate::cli::PlanArgs;
use crate::context::Ctx;
use crate::db::{Database, MissingAdminUrl};
use crate::exit::{Interrupted, Outcome};
use crate::fleet::{self, Status, StepOutcome};
use crate::lifecycle::ApplyOptions;
use crate::lifecycle::{self, Services};
use crate::moves::db::{Side, inventory};
use crate::moves::flow::{self, Decision};
use crate::moves::journal::{Journal, Step};
use crate::moves::report::MoveReport;
use crate::render::RenderOptions;
use crate::tenant::TenantId;
use crate::terraform::PlanOptions;
use crate::workspace::TenantSpec;

pub async fn run(ctx: &Ctx, args: &PlanArgs) -> Result<u8> {
    fleet::select(&ctx.ws.tenants()?, &args.select.selection())?;
    let mut svc = Services::new(ctx, false).await?;
    // New tenants are placed in cells in memory only: a plan writes no assignment.
    let specs = svc.select(&args.select.selection(), false).await?;
    let specs = lifecycle::only_changed(&svc, specs, args.select.changed).await?;
    let (specs, cells) = converge::split(&svc, specs);
    // Each tenant's record is read once: what its move (if any) will do. Only a pending
    // move needs the database (to count the rows it will copy).
    let ids: Vec<TenantId> = specs.iter().map(|s| s.id.clone()).collect();
    let records = svc.records.get_many(&ids).await?;
    let mut decisions = HashMap::new();
    for spec in &specs {
        let rec = &records[&spec.id];
        decisions.insert(spec.id.clone(), flow::decide(&spec.id, rec, spec.tier)?);
    }
    if decisions.values().any(|d| *d != Decision::None) {
        match Database::from_workspace(&ctx.ws) {
            Ok(db) => svc.db = Some(Arc::new(db.with_aws(svc.aws.clone()))),
            // A pull request's plan job has no database credential (README, "CI"): the
            // moves are planned all the same, without their row counts.
            Err(e) if e.is::<MissingAdminUrl>() => ctx.info(format!(
                "plan: `{}` is not set: pending moves are shown without their row counts",
                ctx.ws.config.database.admin_url_env
            )),
            Err(e) => return Err(e),
        }
    }
    let opts = ApplyOptions {
        lock_timeout: args.lock_timeout,
        refresh: true,
        render: RenderOptions::default(),
    };
    let celled = converge::run(&svc, cells, Mode::Plan, &opts).await?;
    let mut results = fleet::run(ctx, specs, "plan", args.select.fail_fast, |spec, bar| {
        let svc = &svc;
        let decision = decisions.get(&spec.id).cloned().unwrap_or(Decision::None);
        async move {
            let (rspec, ropts) = end_state(svc, &spec, &decision).await?;
            let moved = planned_move(svc, &spec.id, &decision).await?;
            let rendered = svc.render(&rspec, ropts)?;
            rendered.write(&svc.ctx.ws)?;
            let tf = svc.terraform(&spec, "plan", bar)?;
            tf.init().await?;
            let changes = tf
                .plan(PlanOptions {
                    destroy: false,
                    lock_timeout: args.lock_timeout,
                    replace: Vec::new(),
                    targets: Vec::new(),
                })
                .await?;
            // The saved plan is not applied by `plan`; do not leave it behind.
            let _ = std::fs::remove_file(rendered.dir.join("tfplan"));
            Ok(StepOutcome {
                status: if changes.is_empty() && moved.is_none() {
                    Status::Unchanged
                } else {
                    Status::Changed
                },
                changes: Some(changes),
                detail: moved.as_ref().map(|m| match m.state.as_str() {
                    UNCOUNTED => format!(
                        "move {} ({}) → {} ({}): rows not counted (no database credential)",
                        m.from, m.from_isolation, m.to, m.to_isolation
                    ),
                    _ => m.line(),
                }),
                moved,
            })
        }
    })
    .await;
    results.extend(celled.summaries);
    results.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    fleet::summary_report("plan", &results).emit(ctx.output)?;
    if ctx.interrupt.is_set() {
        return Err(Interrupted.into());
    }
    let pending = if results.iter().any(|r| r.status == Status::Changed) {
        Outcome::Changes
    } else {
        Outcome::Success
    };
    Ok(fleet::exit_code(&results, pending.code()))
}

/// The state of a planned move whose rows were not counted: the run had no database.
const UNCOUNTED: &str = "planned, rows not counted";

/// How the tenant's root looks once what `apply` would do is done: Terraform's plan of
/// a move is the plan of its end.
async fn end_state(
    svc: &Services,
    spec: &TenantSpec,
    decision: &Decision,
) -> Result<(TenantSpec, RenderOptions)> {
    let ended = |from, to, step| {
        let mut j = Journal::new(from, to, false);
        j.step = step;
        flow::render_options(
            &crate::records::TenantRecord {
                moving: Some(j),
                ..Default::default()
            },
            spec,
        )
    };
    Ok(match decision {
        Decision::None => svc.render_options(spec).await?,
        Decision::Start { from, to } => ended(*from, *to, Step::CutOver),
        Decision::Resume(j) => ended(j.from, j.to, Step::CutOver),
        Decision::Rollback(j) => ended(j.to, j.from, Step::CutOver),
        Decision::Abort(j) => ended(j.from, j.from, Step::Finishing),
        Decision::Finish(j) => ended(j.from, j.to, Step::Finishing),
    })
}

/// The move a decision will carry out, with the rows it will copy.
async fn planned_move(
    svc: &Services,
    id: &TenantId,
    decision: &Decision,
) -> Result<Option<MoveReport>> {
    let (from, to) = match decision {
        Decision::None => return Ok(None),
        Decision::Start { from, to } => (*from, *to),
        Decision::Resume(j) => (j.from, j.to),
        Decision::Rollback(j) => (j.to, j.from),
        // No copy: an undo, or the deletion of a retained source.
        Decision::Abort(j) => return Ok(Some(standing(j, "abort planned"))),
        Decision::Finish(j) => return Ok(Some(standing(j, "finish planned"))),
    };
    let Some(db) = svc.db.as_deref() else {
        let mut r = MoveReport::planned(from, to, Vec::new());
        r.state = UNCOUNTED.into();
        return Ok(Some(r));
    };
    let source = Side::of(db, id, from, None).await?;
    let tables = inventory(db, &source).await?;
    Ok(Some(MoveReport::planned(from, to, tables)))
}

fn standing(j: &Journal, state: &str) -> MoveReport {
    let mut r = crate::moves::report::standing(j);
    r.state = state.to_string();
    r
}
