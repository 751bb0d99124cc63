//! `tenantctl state migrate [--from OLD_CONFIG] [selection]`: moves every root's
//! Terraform state (and tenantctl's records beside it) to where `[state]` now says.
//!
//! Per root: where the state is (the old config's `[state]` with `--from`, else what the
//! root's `.terraform/` recorded at its last `init`) and where it goes; a backup of the
//! state under `.tenantctl/backups/state/`; `terraform init -migrate-state -force-copy`;
//! then the copy is read back and compared (every resource instance's address and id). A destination that
//! already holds another state is never overwritten. A rerun after a kill finds the copy
//! (the same resources) and only finishes what is left, so it converges.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;

use crate::backend::{StateLocation, StateSummary};
use crate::cli::StateMigrateArgs;
use crate::config::Config;
use crate::context::Ctx;
use crate::exit::{Interrupted, Outcome};
use crate::fleet::{self, Status, StepOutcome, TenantSummary};
use crate::fsutil::write_atomic;
use crate::lifecycle::Services;
use crate::moves::flow;
use crate::records::RecordStore;
use crate::render::{self, PLATFORM_STATE_KEY};
use crate::terraform::Terraform;
use crate::workspace::{TenantSpec, Workspace};

pub async fn migrate(ctx: &Ctx, args: &StateMigrateArgs) -> Result<u8> {
    let specs = fleet::select(&ctx.ws.tenants()?, &args.select.selection())?;
    // The old `[state]` only: the rest of that file does not matter here.
    let from = match &args.from {
        Some(path) => {
            let mut config = ctx.ws.config.clone();
            config.state = Config::load(path)
                .with_context(|| format!("--from `{}`", path.display()))?
                .state;
            Some(Arc::new(Workspace {
                root: ctx.ws.root.clone(),
                config,
            }))
        }
        None => None,
    };
    let aws = crate::aws::AwsClients::new(&ctx.config().aws).await;
    // The platform's outputs first: rendering a tenant's root reads them. Only with
    // `--all`: the platform is not one of the selected tenants.
    let platform = if args.select.all {
        migrate_platform(ctx, &aws.s3, from.as_deref(), args.lock_timeout).await
    } else {
        None
    };
    let svc = Services::new(ctx, false).await?;
    let mut results = fleet::run(
        ctx,
        specs,
        "state migrate",
        args.select.fail_fast,
        |spec, bar| {
            let svc = &svc;
            let from = from.as_deref();
            async move { migrate_tenant(svc, &spec, from, args.lock_timeout, bar).await }
        },
    )
    .await;
    if let Some(p) = platform {
        results.insert(0, p);
    }
    fleet::summary_report("state migrate", &results).emit(ctx.output)?;
    if ctx.interrupt.is_set() {
        return Err(Interrupted.into());
    }
    Ok(fleet::exit_code(&results, Outcome::Success.code()))
}

/// One root whose state may move.
struct Root<'a> {
    ws: &'a Workspace,
    s3: &'a aws_sdk_s3::Client,
    /// Tenant id, or `platform`: also the name of its record.
    label: &'a str,
    dir: PathBuf,
    state_key: &'a str,
}

impl Root<'_> {
    fn wanted(&self, ws: &Workspace) -> StateLocation {
        StateLocation::wanted(
            &ws.config,
            &ws.config.aws.effective(),
            &self.dir,
            self.state_key,
        )
    }

    /// Where the state is now: under the old config, else where the root last kept it.
    fn source(&self, from: Option<&Workspace>) -> Option<StateLocation> {
        match from {
            Some(old) => Some(self.wanted(old)),
            None => StateLocation::recorded(&self.dir),
        }
    }

    /// Copies the root's record (`<label>.json`) beside the new state, unless one is
    /// there already (a rerun, or a newer one written since).
    async fn copy_record(&self, source: &StateLocation, wanted: &StateLocation) -> Result<()> {
        let name = format!("{}.json", self.label);
        let old = source.records(self.ws, self.s3, self.state_key);
        let new = wanted.records(self.ws, self.s3, self.state_key);
        if same_store(&old, &new) || new.read(&name).await?.is_some() {
            return Ok(());
        }
        if let Some((bytes, _)) = old.read(&name).await? {
            new.write(&name, bytes).await?;
        }
        Ok(())
    }

    /// Moves the state. `write_old` and `write_new` render the root's files with the old
    /// and the new backend block; `tf` runs in the root.
    async fn migrate(
        &self,
        from: Option<&Workspace>,
        tf: &Terraform,
        lock_timeout: u64,
        write_old: impl FnOnce() -> Result<()>,
        write_new: impl Fn() -> Result<()>,
    ) -> Result<StepOutcome> {
        let wanted = self.wanted(self.ws);
        let Some(source) = self.source(from) else {
            return Ok(outcome(
                Status::Skipped,
                "never initialised here, so no state is known to move (pass --from <old config>)"
                    .into(),
            ));
        };
        if source.same(&wanted) {
            return Ok(outcome(Status::Unchanged, format!("already at {wanted}")));
        }
        let src = source.read(self.s3).await?;
        let src_sum = src.as_deref().map(StateSummary::of).transpose()?;
        let dst_sum = wanted
            .read(self.s3)
            .await?
            .as_deref()
            .map(StateSummary::of)
            .transpose()?;
        if let Some(d) = &dst_sum {
            let ours = src_sum.as_ref().is_none_or(|s| s.identity == d.identity);
            if !ours && d.resources > 0 {
                bail!(
                    "{wanted} already holds another state (lineage {}, {} resources, not those at {source}), so it was not copied over (nothing was changed)\nhint: point `[state]` at an empty location, or remove that state if it is stale",
                    d.lineage,
                    d.resources
                );
            }
            if ours {
                // An earlier run copied it and was stopped before it finished.
                write_new()?;
                tf.init_reconfigure().await?;
                self.copy_record(&source, &wanted).await?;
                return Ok(outcome(
                    Status::Changed,
                    format!("already copied to {wanted} ({} resources)", d.resources),
                ));
            }
        }
        let (Some(bytes), Some(src_sum)) = (src, src_sum) else {
            write_new()?;
            tf.init_reconfigure().await?;
            self.copy_record(&source, &wanted).await?;
            return Ok(outcome(
                Status::Unchanged,
                format!("no state at {source}; the root now uses {wanted}"),
            ));
        };
        let backup = self
            .ws
            .state_dir()
            .join("backups")
            .join("state")
            .join(format!(
                "{}-{}.tfstate",
                self.label,
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ));
        write_atomic(&backup, &bytes)?;
        if from.is_some() {
            // Point the root at the old state first: `-migrate-state` copies from the
            // backend of the last `init`.
            write_old()?;
            tf.init_reconfigure().await?;
        }
        write_new()?;
        tf.init_migrate(lock_timeout).await?;
        let copied = wanted
            .read(self.s3)
            .await?
            .as_deref()
            .map(StateSummary::of)
            .transpose()?;
        match copied {
            Some(c) if c.identity == src_sum.identity => {}
            other => bail!(
                "the state copied to {wanted} does not match {source} ({other:?} vs {src_sum:?}); the original is untouched and backed up at `{}`",
                backup.display()
            ),
        }
        self.copy_record(&source, &wanted).await?;
        Ok(outcome(
            Status::Changed,
            format!(
                "moved {} resources from {source} to {wanted}; backup `{}`",
                src_sum.resources,
                backup.display()
            ),
        ))
    }
}

fn same_store(a: &RecordStore, b: &RecordStore) -> bool {
    match (a, b) {
        (RecordStore::Local(x), RecordStore::Local(y)) => x == y,
        (
            RecordStore::S3 {
                bucket: b1,
                prefix: p1,
                ..
            },
            RecordStore::S3 {
                bucket: b2,
                prefix: p2,
                ..
            },
        ) => b1 == b2 && p1 == p2,
        _ => false,
    }
}

fn outcome(status: Status, detail: String) -> StepOutcome {
    StepOutcome {
        status,
        changes: None,
        detail: Some(detail),
        moved: None,
    }
}

async fn migrate_tenant(
    svc: &Services,
    spec: &TenantSpec,
    from: Option<&Workspace>,
    lock_timeout: u64,
    bar: ProgressBar,
) -> Result<StepOutcome> {
    let ws = &*svc.ctx.ws;
    let state_key = render::state_key(&spec.id);
    let root = Root {
        ws,
        s3: &svc.aws.s3,
        label: spec.id.as_str(),
        dir: ws.root_dir(&spec.id),
        state_key: &state_key,
    };
    // The root is rendered as its record (kept beside the old state) says: a tenant in
    // the middle of a tier move keeps both sides.
    let rec = match root.source(from) {
        Some(source) => {
            let store = source.records(ws, &svc.aws.s3, &state_key);
            store.get(&spec.id).await?
        }
        None => svc.records.get(&spec.id).await?,
    };
    let (rspec, ropts) = flow::render_options(&rec, spec);
    let tf = svc.terraform(spec, "state-migrate", bar)?;
    let write_with = |w: &Workspace| -> Result<()> {
        render::render_root(w, &svc.platform, &rspec, ropts)?.write(w)
    };
    root.migrate(
        from,
        &tf,
        lock_timeout,
        || write_with(from.expect("the old root is written only with --from")),
        || write_with(ws),
    )
    .await
}

/// The platform root, when it was initialised here or `--from` names where its state
/// was; its outputs record (`platform.json`) goes with it.
async fn migrate_platform(
    ctx: &Ctx,
    s3: &aws_sdk_s3::Client,
    from: Option<&Workspace>,
    lock_timeout: u64,
) -> Option<TenantSummary> {
    let ws = &*ctx.ws;
    let root = Root {
        ws,
        s3,
        label: "platform",
        dir: ws.platform_dir(),
        state_key: PLATFORM_STATE_KEY,
    };
    let source = root.source(from)?;
    // A platform this work dir never applied, and with no state under the old config:
    // nothing to do (the config may give the platform's values instead).
    if !root.dir.exists() && !matches!(source.read(s3).await, Ok(Some(_))) {
        return None;
    }
    let started = std::time::Instant::now();
    let result = async {
        let tf = Terraform::new(
            ws.config.terraform.binary(),
            &root.dir,
            "platform",
            Some(&ws.logs_dir().join("platform").join(format!(
                "{}-state-migrate.log",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ))),
            ctx.interrupt.clone(),
        )?;
        let write_with = |w: &Workspace| -> Result<()> {
            render::write_modules(w)?;
            render::platform_root(&w.config, &w.config.aws.effective())?.write(&root.dir)?;
            Ok(())
        };
        root.migrate(
            from,
            &tf,
            lock_timeout,
            || write_with(from.expect("the old root is written only with --from")),
            || write_with(ws),
        )
        .await
    }
    .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status, detail, error, locked) = match result {
        Ok(o) => (o.status, o.detail, None, false),
        Err(e) => (
            Status::Failed,
            None,
            Some(format!("{e:#}")),
            crate::exit::is_lock_held(&e),
        ),
    };
    Some(TenantSummary {
        tenant: "platform".into(),
        status,
        changes: None,
        duration_ms,
        detail,
        error,
        locked,
        moved: None,
    })
}
