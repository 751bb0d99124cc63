//! `tenantctl add <id> --tier <tier>`: declare, render, plan, apply, provision the
//! database, verify. Rerunning it on an existing tenant converges with no changes.

use anyhow::{Result, bail};

use crate::cells::converge::{self, Mode};
use crate::cli::AddArgs;
use crate::context::Ctx;
use crate::lifecycle::{self, ApplyOptions, Services};
use crate::output::Progress;
use crate::render::RenderOptions;
use crate::report;
use crate::tenant::TenantId;
use crate::workspace::TenantSpec;

pub async fn run(ctx: &Ctx, args: &AddArgs) -> Result<u8> {
    // Everything that can be refused is refused before a file is written or AWS is called.
    let id = TenantId::parse(&args.id)?;
    let spec = TenantSpec {
        id,
        tier: args.tier,
    };
    if let Some(existing) = ctx.ws.read_tenant(&spec.id)?
        && existing.tier != spec.tier
    {
        bail!(
            "tenant `{}` already exists with tier `{}`\nhint: changing tier changes its isolation; edit `{}` and run `tenantctl apply {}`",
            spec.id,
            existing.tier,
            ctx.ws.tenant_file(&spec.id).display(),
            spec.id
        );
    }
    let mut svc = Services::new(ctx, true).await?;
    // Everything the render needs is checked before the tenant file is written.
    svc.render(&spec, RenderOptions::default())?;

    ctx.ws.write_tenant(&spec)?;
    // A tenant of a celled tier takes a slot in a cell (`crate::cells`).
    svc.place_new(std::slice::from_ref(&spec), true).await?;
    ctx.info(format!(
        "{}: applying tier `{}` ({} isolation)",
        spec.id,
        spec.tier,
        spec.tier.isolation()
    ));
    let progress = Progress::new(ctx, 1, "add");
    let tbar = progress.item(spec.id.as_str());
    let opts = ApplyOptions {
        lock_timeout: args.lock_timeout,
        refresh: true,
        render: RenderOptions::default(),
    };
    let res = match svc.cells.cell_of(&spec.id) {
        None => lifecycle::apply_tenant(&svc, &spec, &opts, tbar.clone()).await,
        Some(n) => {
            let cell = std::collections::BTreeMap::from([(n, vec![spec.clone()])]);
            converge::run(&svc, cell, Mode::Apply, &opts)
                .await
                .and_then(|o| converge::single(o, &spec.id))
        }
    };
    tbar.finish_and_clear();
    progress.finish();
    let (outcome, checks) = res?;
    match outcome.changes {
        Some(c) if !c.is_empty() => ctx.info(format!("{}: applied ({c})", spec.id)),
        _ => ctx.info(format!("{}: no changes, already up to date", spec.id)),
    }
    report::checks_report(&checks, &[spec.id.to_string()]).emit(ctx.output)?;
    Ok(report::exit_code(&checks))
}
