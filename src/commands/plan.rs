//! `tenantctl plan`: Terraform's own view of each selected tenant (with a refresh, so it
//! also reports drift Terraform can see). Exit 0 no changes, 2 changes pending, 1 error.

use anyhow::Result;

use crate::cli::PlanArgs;
use crate::context::Ctx;
use crate::exit::{Interrupted, Outcome};
use crate::fleet::{self, Status, StepOutcome};
use crate::lifecycle::{self, Services};
use crate::render::RenderOptions;
use crate::terraform::PlanOptions;

pub async fn run(ctx: &Ctx, args: &PlanArgs) -> Result<u8> {
    let specs = fleet::select(&ctx.ws.tenants()?, &args.select.selection())?;
    let svc = Services::new(ctx, false).await?;
    let specs = lifecycle::only_changed(&svc, specs, args.select.changed).await?;
    let results = fleet::run(ctx, specs, "plan", args.select.fail_fast, |spec, bar| {
        let svc = &svc;
        async move {
            lifecycle::refuse_isolation_change(svc, &spec).await?;
            let rendered = svc.render_and_write(&spec, RenderOptions::default())?;
            let tf = svc.terraform(&spec, "plan", bar)?;
            tf.init().await?;
            let changes = tf
                .plan(PlanOptions {
                    destroy: false,
                    lock_timeout: args.lock_timeout,
                    replace: Vec::new(),
                })
                .await?;
            // The saved plan is not applied by `plan`; do not leave it behind.
            let _ = std::fs::remove_file(rendered.dir.join("tfplan"));
            Ok(StepOutcome {
                status: if changes.is_empty() {
                    Status::Unchanged
                } else {
                    Status::Changed
                },
                changes: Some(changes),
                detail: None,
            })
        }
    })
    .await;
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
