//! `tenantctl remove <id>`: guarded offboarding. Asks for the id typed back (unless
//! `--yes`), turns deletion protection off for a dedicated database, destroys, drops the
//! tenant's database objects, and only then removes the tenant file: a failed destroy
//! leaves the desired state in place so a rerun picks up where it stopped.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};

use crate::cli::RemoveArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::isolation;
use crate::lifecycle::Services;
use crate::render::RenderOptions;
use crate::tenant::TenantId;
use crate::terraform::PlanOptions;

pub async fn run(ctx: &Ctx, args: &RemoveArgs) -> Result<u8> {
    let id = TenantId::parse(&args.id)?;
    let spec = ctx.ws.tenant(&id)?;
    let svc = Services::new(ctx, true).await?;
    // A tenant in the middle of a move (or with a retained source) has data on both
    // sides: both go, and the root is rendered as the move stands.
    let moving = svc.records.get(&id).await?.moving;
    let (rspec, ropts) = svc.render_options(&spec).await?;
    // Refuse what cannot be rendered before asking anything.
    svc.render(&rspec, ropts)?;
    if !ctx.yes {
        confirm(&id)?;
    }
    let bar = indicatif::ProgressBar::hidden();
    let allow = RenderOptions {
        allow_destroy: true,
        ..ropts
    };
    let rendered = svc.render_and_write(&rspec, allow)?;
    let tf = svc.terraform(&rspec, "remove", bar)?;
    tf.init().await?;
    if isolation::of(rspec.tier).dedicated() || ropts.dedicated_database {
        // Terraform cannot delete an RDS instance with deletion protection on: apply the
        // protection change first, as its own visible step.
        ctx.info(format!("{id}: turning deletion protection off"));
        let pending = tf
            .plan(PlanOptions {
                destroy: false,
                lock_timeout: args.lock_timeout,
                replace: Vec::new(),
            })
            .await?;
        if !pending.is_empty() {
            tf.apply_plan(args.lock_timeout).await?;
        }
    }
    ctx.info(format!("{id}: destroying"));
    let destroyed = tf.destroy(args.lock_timeout).await?;
    ctx.info(format!("{id}: destroyed ({} resources)", destroyed.remove));
    if let Some(db) = &svc.db {
        let mut tiers = vec![spec.tier];
        if let Some(j) = &moving {
            tiers.extend([j.from, j.to]);
        }
        tiers.sort();
        tiers.dedup();
        for tier in tiers {
            let side = crate::workspace::TenantSpec {
                id: id.clone(),
                tier,
            };
            db.deprovision(&side).await.with_context(|| {
                format!("cannot drop the database objects of tenant `{id}` ({tier})")
            })?;
        }
    }
    std::fs::remove_file(ctx.ws.tenant_file(&id))
        .with_context(|| format!("cannot remove `{}`", ctx.ws.tenant_file(&id).display()))?;
    svc.records.delete(&id).await?;
    // The local state (now empty) stays in the root until the directory goes; keep the
    // root only when the state lives elsewhere is not needed either.
    let _ = std::fs::remove_dir_all(&rendered.dir);
    ctx.info(format!("{id}: removed"));
    Ok(Outcome::Success.code())
}

fn confirm(id: &TenantId) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to remove tenant `{id}` without confirmation: stdin is not a terminal\nhint: pass `--yes` in non-interactive runs"
        );
    }
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "This destroys every resource of tenant `{id}`, its database objects included.\nType the tenant id to confirm: "
    )?;
    err.flush()?;
    drop(err);
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if line.trim() != id.as_str() {
        bail!("confirmation did not match `{id}`: nothing was removed");
    }
    Ok(())
}
