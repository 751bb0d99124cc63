//! `tenantctl verify`: the drift audit. AWS SDK checks (and SQL checks of the tenant's
//! database isolation) for every selected tenant, with a bounded number of tenants — and
//! so API calls — in flight. Exit 0 clean, 3 drift, 1 the audit itself failed.

use std::sync::Mutex;

use anyhow::Result;

use crate::cli::SelectArgs;
use crate::context::Ctx;
use crate::exit::{ERROR, Interrupted};
use crate::fleet::{self, Status, StepOutcome};
use crate::lifecycle::{self, Services};
use crate::report::{self, Check, Verdict};

pub async fn run(ctx: &Ctx, sel: &SelectArgs) -> Result<u8> {
    fleet::select(&ctx.ws.tenants()?, &sel.selection())?;
    let mut svc = Services::new(ctx, true).await?;
    let specs = svc.select(&sel.selection(), false).await?;
    let specs = lifecycle::only_changed(&svc, specs, sel.changed).await?;
    let tenants: Vec<String> = specs.iter().map(|s| s.id.to_string()).collect();
    let all: Mutex<Vec<Check>> = Mutex::new(Vec::new());
    // Verification is API calls, not Terraform processes: more can run at once.
    let mut vctx = ctx.clone();
    vctx.parallelism = ctx.api_parallelism;
    vctx.quiet = true;
    let results = fleet::run(&vctx, specs, "verify", sel.fail_fast, |spec, _bar| {
        let svc = &svc;
        let all = &all;
        async move {
            let checks = lifecycle::verify_tenant(svc, &spec, None, None).await?;
            let verdict = report::verdict(&checks);
            if let Ok(mut all) = all.lock() {
                all.extend(checks);
            }
            Ok(StepOutcome {
                // Drift is this step's failure (it stops `--fail-fast`), not an error.
                status: if verdict == Verdict::Pass {
                    Status::Unchanged
                } else {
                    Status::Failed
                },
                changes: None,
                detail: Some(verdict.to_string()),
                moved: None,
            })
        }
    })
    .await;
    let mut checks = all.into_inner().unwrap_or_default();
    // A tenant whose verification could not even start is an error check, not a silence.
    for r in &results {
        if let Some(e) = &r.error {
            checks.push(Check::error(&r.tenant, "verify", "tenant verified", e));
        }
    }
    checks.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    report::checks_report(&checks, &tenants).emit(ctx.output)?;
    if ctx.interrupt.is_set() {
        return Err(Interrupted.into());
    }
    if checks.is_empty() && !tenants.is_empty() {
        return Ok(ERROR);
    }
    Ok(report::exit_code(&checks))
}
