//! `tenantctl apply [<id>...|--all|--tier|--changed|--shard K/N]`: converge the selected
//! tenants, skipping those whose inputs did not change since their last successful
//! apply (unless `--refresh`), then verify what was applied.

use std::sync::Mutex;

use anyhow::Result;

use crate::cli::ApplyArgs;
use crate::context::{Ctx, OutputFormat};
use crate::exit::{Interrupted, Outcome};
use crate::fleet::{self, Status};
use crate::lifecycle::{self, ApplyOptions, Services};
use crate::render::RenderOptions;
use crate::report::{self, CheckStatus, Verdict};

pub async fn run(ctx: &Ctx, args: &ApplyArgs) -> Result<u8> {
    let specs = fleet::select(&ctx.ws.tenants()?, &args.select.selection())?;
    let svc = Services::new(ctx, true).await?;
    let specs = lifecycle::only_changed(&svc, specs, args.select.changed).await?;
    let opts = ApplyOptions {
        lock_timeout: args.lock_timeout,
        refresh: args.refresh,
        render: RenderOptions::default(),
    };
    let all_checks = Mutex::new(Vec::new());
    let results = fleet::run(ctx, specs, "apply", args.select.fail_fast, |spec, bar| {
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
