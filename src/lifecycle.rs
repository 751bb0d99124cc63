//! The steps of one tenant's lifecycle, shared by `add`, `plan`, `apply`, `verify` and
//! `remove`: render → terraform → database → verify → record.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::aws::AwsClients;
use crate::backend::StateLocation;
use crate::cells::Assignment;
use crate::config::PlatformValues;
use crate::context::Ctx;
use crate::db::{Database, DbSecret};
use crate::fleet::{Status, StepOutcome};
use crate::moves::flow::{self, Decision, MoveOptions};
use crate::moves::report::MoveReport;
use crate::records::{ApplyRecord, RecordStore, TenantRecord, VerifyRecord};
use crate::render::{self, RenderOptions, RenderedRoot};
use crate::report::{self, Check, CheckStatus, Verdict};
use crate::tenant::TenantId;
use crate::terraform::{ChangeSummary, PlanOptions, Terraform};
use crate::workspace::TenantSpec;

/// Everything a tenant step needs, built once per command.
#[derive(Clone)]
pub struct Services {
    pub ctx: Ctx,
    pub aws: AwsClients,
    /// None only for commands that never touch the database (`plan`).
    pub db: Option<Arc<Database>>,
    pub records: RecordStore,
    /// Platform values (config over `platform apply` outputs), read once per command.
    pub platform: PlatformValues,
    /// One timestamp per command run, naming its log files.
    pub run_id: String,
    /// Which tenant is in which cell (`crate::cells`), read once per command; commands
    /// that place new tenants update it before their tenants' work starts.
    pub cells: Arc<Assignment>,
}

impl Services {
    /// Checks everything that can be checked without touching AWS (config, database
    /// admin credential) before any work starts.
    pub async fn new(ctx: &Ctx, need_db: bool) -> Result<Services> {
        let db = if need_db {
            Some(Database::from_workspace(&ctx.ws)?)
        } else {
            None
        };
        let aws = AwsClients::new(&ctx.config().aws).await;
        // A dedicated database on real RDS is administered with its own master login,
        // read from the tenant's `db-admin` secret.
        let db = db.map(|d| Arc::new(d.with_aws(aws.clone())));
        let records = RecordStore::new(&ctx.ws, Some(&aws))?;
        records
            .fetch_platform(&ctx.ws.platform_outputs_file())
            .await?;
        let platform = render::platform_values(&ctx.ws)?;
        let cells = Arc::new(Assignment::load(&records).await?);
        Ok(Services {
            ctx: ctx.clone(),
            aws,
            db,
            records,
            platform,
            run_id: Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
            cells,
        })
    }

    /// Places the declared tenants of celled tiers that have no root yet
    /// ([`Assignment::place_new`]); with `save`, records the assignment so the next run
    /// (on any machine) finds them there. Commands that only read place in memory.
    pub async fn place_new(&mut self, specs: &[TenantSpec], save: bool) -> Result<()> {
        let cfg = &self.ctx.ws.config;
        let candidates: Vec<TenantId> = specs
            .iter()
            .filter(|s| cfg.cells.holds(s.tier) && self.cells.cell_of(&s.id).is_none())
            .map(|s| s.id.clone())
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let records = self.records.get_many(&candidates).await?;
        let mut cells = (*self.cells).clone();
        let placed = cells.place_new(cfg, specs, &records);
        if placed.is_empty() {
            return Ok(());
        }
        if save {
            cells.save(&self.records).await?;
            for id in &placed {
                tracing::info!(
                    "{id}: placed in {}",
                    crate::cells::cell_name(cells.cell_of(id).unwrap_or(0))
                );
            }
        }
        self.cells = Arc::new(cells);
        Ok(())
    }

    /// The selection over the declared tenants once new tenants of celled tiers are
    /// placed (saved with `save`): `--shard` shards cells, not their tenants.
    pub async fn select(
        &mut self,
        sel: &crate::fleet::Selection,
        save: bool,
    ) -> Result<Vec<TenantSpec>> {
        let all = self.ctx.ws.tenants()?;
        if save {
            self.release_withdrawn(&all).await?;
        }
        self.place_new(&all, save).await?;
        let cells = self.cells.clone();
        crate::fleet::select_placed(&all, sel, &|id| {
            cells.cell_of(id).map(crate::cells::cell_name)
        })
    }

    /// Frees the slots of tenants placed in a cell whose file is gone and that never had
    /// anything applied (a new tenant withdrawn after a failed first apply): nothing of
    /// theirs is in the cell's state, and their slot would otherwise stay taken.
    async fn release_withdrawn(&mut self, all: &[TenantSpec]) -> Result<()> {
        let declared: std::collections::HashSet<&TenantId> = all.iter().map(|s| &s.id).collect();
        let orphans: Vec<TenantId> = self
            .cells
            .cells()
            .into_iter()
            .flat_map(|n| self.cells.members(n))
            .filter(|id| !declared.contains(id))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        let records = self.records.get_many(&orphans).await?;
        let mut cells = (*self.cells).clone();
        let mut released = false;
        for id in &orphans {
            let r = &records[id];
            if r.last_apply.is_none()
                && r.removing.is_none()
                && r.cell_move.is_none()
                && r.moving.is_none()
            {
                cells.release(id);
                released = true;
                tracing::info!("{id}: slot released (withdrawn before its first apply)");
            }
        }
        if released {
            cells.save(&self.records).await?;
            self.cells = Arc::new(cells);
        }
        Ok(())
    }

    /// `terraform` in cell `n`'s root.
    pub fn cell_terraform(&self, n: u32, command: &str, bar: ProgressBar) -> Result<Terraform> {
        let ws = &self.ctx.ws;
        let name = crate::cells::cell_name(n);
        let log = ws
            .logs_dir()
            .join(&name)
            .join(format!("{}-{command}.log", self.run_id));
        let dir = crate::cells::cell_dir(ws, n);
        let wanted = StateLocation::wanted(
            &ws.config,
            &ws.config.aws.effective(),
            &dir,
            &crate::cells::state_key(n),
        );
        Ok(Terraform::new(
            ws.config.terraform.binary(),
            dir,
            name,
            Some(&log),
            self.ctx.interrupt.clone(),
        )?
        .with_progress(bar)
        .with_backend(wanted))
    }

    pub fn terraform(
        &self,
        spec: &TenantSpec,
        command: &str,
        bar: ProgressBar,
    ) -> Result<Terraform> {
        if let Some(n) = self.cells.cell_of(&spec.id) {
            // Work on one tenant's own root would not see (or would destroy) its cell.
            anyhow::bail!(
                "tenant `{}` is in {}: `{command}` does not work on tenants in cells yet\nhint: `tenantctl apply`, `plan`, `verify`, `list` and `remove` do",
                spec.id,
                crate::cells::cell_name(n)
            );
        }
        self.own_terraform(spec, command, bar)
    }

    /// `terraform` in the tenant's own root, wherever the assignment puts it: for the
    /// state moves between that root and a cell (`crate::cells::adopt`).
    pub fn own_terraform(
        &self,
        spec: &TenantSpec,
        command: &str,
        bar: ProgressBar,
    ) -> Result<Terraform> {
        let ws = &self.ctx.ws;
        let log = ws
            .logs_dir()
            .join(spec.id.as_str())
            .join(format!("{}-{command}.log", self.run_id));
        let dir = ws.root_dir(&spec.id);
        let wanted = StateLocation::wanted(
            &ws.config,
            &ws.config.aws.effective(),
            &dir,
            &render::state_key(&spec.id),
        );
        Ok(Terraform::new(
            ws.config.terraform.binary(),
            dir,
            spec.id.as_str(),
            Some(&log),
            self.ctx.interrupt.clone(),
        )?
        .with_progress(bar)
        .with_backend(wanted))
    }

    /// Renders the tenant's root in memory (no file written).
    pub fn render(&self, spec: &TenantSpec, opts: RenderOptions) -> Result<RenderedRoot> {
        let root = render::render_root(&self.ctx.ws, &self.platform, spec, opts)?;
        Ok(match self.cells.cell_of(&spec.id) {
            Some(n) => root.in_cell(&self.ctx.ws, n),
            None => root,
        })
    }

    /// How the tenant is rendered now: its file's tier, or, during a move, what the
    /// move journal says (the source's tier until the cut-over, a dedicated database
    /// kept beside the other side).
    pub async fn render_options(&self, spec: &TenantSpec) -> Result<(TenantSpec, RenderOptions)> {
        let rec = self.records.get(&spec.id).await?;
        Ok(flow::render_options(&rec, spec))
    }

    /// Renders the tenant's root as it stands now (see [`render_options`](Self::render_options)).
    pub async fn render_current(&self, spec: &TenantSpec) -> Result<RenderedRoot> {
        let (spec, opts) = self.render_options(spec).await?;
        self.render(&spec, opts)
    }

    /// Renders the tenant's root and writes it, ready for Terraform.
    pub fn render_and_write(&self, spec: &TenantSpec, opts: RenderOptions) -> Result<RenderedRoot> {
        let root = self.render(spec, opts)?;
        root.write(&self.ctx.ws)?;
        Ok(root)
    }

    /// The tenant's database secret (`tenants/<id>/db`), read once per command.
    pub async fn db_secret(&self, spec: &TenantSpec) -> Result<DbSecret> {
        self.aws.secret_json(&spec.id.db_secret_name()).await
    }
}

/// Digest of `.terraform.lock.hcl`, if the root has been initialised.
pub fn lock_digest(dir: &std::path::Path) -> Option<String> {
    std::fs::read(dir.join(".terraform.lock.hcl"))
        .ok()
        .map(|b| hex::encode(Sha256::digest(&b)))
}

pub struct ApplyOptions {
    pub lock_timeout: u64,
    /// Plan even when the fingerprint says nothing changed.
    pub refresh: bool,
    pub render: RenderOptions,
}

/// Whether a tenant's inputs differ from its last successful apply (`rec` is its record).
pub fn is_changed(spec: &TenantSpec, rec: &TenantRecord, rendered: &RenderedRoot) -> bool {
    // Drift found by the last verification is a reason to plan even with unchanged
    // inputs: that is how `verify --all` followed by `apply --all` repairs it.
    let drifted = rec
        .last_verify
        .as_ref()
        .is_some_and(|v| v.status != Verdict::Pass);
    let why = match &rec.last_apply {
        _ if drifted => Some("its last verification did not pass"),
        None => Some("it was never applied"),
        Some(a) if a.fingerprint != rendered.fingerprint => {
            Some("its inputs differ from the last apply")
        }
        Some(a) => match (&a.provider_lock, lock_digest(&rendered.dir)) {
            (Some(old), Some(new)) if *old != new => Some("the provider lock changed"),
            _ => None,
        },
    };
    if let Some(why) = why {
        tracing::info!("{}: planned: {why}", spec.id);
    }
    why.is_some()
}

/// Render, plan, apply if needed, provision the database, verify, record. A tier change
/// that crosses isolation models is carried out as a move first (`crate::moves`), as is
/// the rest of a move an earlier run left. Returns the step outcome and the checks.
pub async fn apply_tenant(
    svc: &Services,
    spec: &TenantSpec,
    opts: &ApplyOptions,
    bar: ProgressBar,
) -> Result<(StepOutcome, Vec<Check>)> {
    // The record is read once; only a move (which writes it) makes a second read.
    let rec = svc.records.get(&spec.id).await?;
    let moved = run_move(svc, spec, &rec, opts, &bar).await?;
    let rec = match moved {
        Some(_) => svc.records.get(&spec.id).await?,
        None => rec,
    };
    let (rspec, ropts) = flow::render_options(&rec, spec);
    let rendered = svc.render(
        &rspec,
        RenderOptions {
            allow_destroy: opts.render.allow_destroy,
            ..ropts
        },
    )?;
    if moved.is_none() && !opts.refresh && !is_changed(spec, &rec, &rendered) {
        return Ok((
            StepOutcome {
                status: Status::Skipped,
                changes: None,
                detail: Some(
                    "inputs unchanged since the last apply (--refresh plans anyway)".into(),
                ),
                moved: None,
            },
            Vec::new(),
        ));
    }
    rendered.write(&svc.ctx.ws)?;
    let replace = repairs(spec, &rec);
    let changes = converge(svc, &rspec, &rendered, opts.lock_timeout, replace, &bar).await?;
    crate::moves::pause::point("database").await;
    svc.ctx.interrupt.check()?;
    bar.set_message("database");
    // Read once: provisioning sets the role's password from it, verify logs in with it.
    let secret = match &svc.db {
        Some(db) => {
            let secret = svc.db_secret(&rspec).await?;
            db.provision(&rspec, &secret).await.with_context(|| {
                format!("cannot provision the database of tenant `{}`", spec.id)
            })?;
            Some(secret)
        }
        None => None,
    };
    svc.records
        .update(&spec.id, |r| {
            r.last_apply = Some(ApplyRecord {
                at: Utc::now(),
                fingerprint: rendered.fingerprint.clone(),
                provider_lock: lock_digest(&rendered.dir),
                tier: rspec.tier.to_string(),
            })
        })
        .await?;
    bar.set_message("verify");
    let checks = verify_tenant(svc, &rspec, Some(&rendered), secret.as_ref()).await?;
    let status = if changes.is_empty() && moved.is_none() {
        Status::Unchanged
    } else {
        Status::Changed
    };
    Ok((
        StepOutcome {
            status,
            changes: Some(changes),
            detail: moved.as_ref().map(|m| m.line()),
            moved,
        },
        checks,
    ))
}

/// Carries out the move the tenant's record and file ask for, if any: a new tier
/// change, the rest of an interrupted move, a rollback, or the end of a retention.
async fn run_move(
    svc: &Services,
    spec: &TenantSpec,
    rec: &TenantRecord,
    opts: &ApplyOptions,
    bar: &ProgressBar,
) -> Result<Option<MoveReport>> {
    let decision = flow::decide(&spec.id, rec, spec.tier)?;
    if decision == Decision::None {
        return Ok(None);
    }
    let mopts = MoveOptions {
        lock_timeout: opts.lock_timeout,
        retain_days: svc.ctx.config().moves.retain_days,
    };
    let mut moved = flow::run(svc, &spec.id, decision, &mopts, bar).await?;
    // No retention (`retain_days = 0`): the same run deletes the source.
    if !moved.aborted && !moved.finished && moved.journal.retention_over(Utc::now()) {
        let finish = flow::Decision::Finish(moved.journal.clone());
        let done = flow::run(svc, &spec.id, finish, &mopts, bar).await?;
        moved.finished = true;
        moved.elapsed += done.elapsed;
    }
    let report = MoveReport::of(&moved);
    svc.ctx.info(format!("{}: {}", spec.id, report.line()));
    Ok(Some(report))
}

/// Plans and applies the rendered root if Terraform finds changes; the saved plan is
/// removed when there is nothing to apply.
pub async fn converge(
    svc: &Services,
    spec: &TenantSpec,
    rendered: &RenderedRoot,
    lock_timeout: u64,
    replace: Vec<String>,
    bar: &ProgressBar,
) -> Result<ChangeSummary> {
    let tf = svc
        .terraform(spec, "apply", bar.clone())?
        .with_lock_timeout(lock_timeout);
    tf.init().await?;
    reclaim_secrets(svc, spec, rendered).await?;
    let adopted = crate::adopt::prepare(&svc.aws, &tf, &rendered.inputs, &rendered.dir).await?;
    for a in &adopted {
        svc.ctx.info(format!(
            "{}: adopting {} (exists in AWS, missing from state)",
            spec.id, a.what
        ));
    }
    let result = async {
        let pending = tf
            .plan(PlanOptions {
                destroy: false,
                lock_timeout,
                replace,
                targets: Vec::new(),
            })
            .await?;
        if pending.is_empty() {
            let _ = std::fs::remove_file(rendered.dir.join("tfplan"));
            Ok(ChangeSummary::default())
        } else {
            tf.apply_plan(lock_timeout).await
        }
    }
    .await;
    crate::adopt::clear(&rendered.dir);
    result
}

/// An id added again inside the secret recovery window of its removal: its secrets still
/// exist, scheduled for deletion, and creating them again would fail halfway with
/// `ResourceExistsException`. They are restored deliberately, before anything is
/// created, and the apply adopts them and writes new values.
pub(crate) async fn reclaim_secrets(
    svc: &Services,
    spec: &TenantSpec,
    rendered: &RenderedRoot,
) -> Result<()> {
    let mut names = vec![spec.id.db_secret_name()];
    if rendered.inputs.dedicated_database {
        names.push(spec.id.db_admin_secret_name());
    }
    let pending = crate::offboard::pending_secrets(&svc.aws, &names).await?;
    for p in &pending {
        svc.ctx.info(format!(
            "{}: restoring secret `{}` (scheduled for deletion on {} by an earlier removal of the same id, [terraform] secret_recovery_window_days); the apply adopts it and writes a new value",
            spec.id,
            p.name,
            p.deleted.as_deref().unwrap_or("?")
        ));
    }
    crate::offboard::restore_secrets(&svc.aws, &pending).await
}

/// Resources to replace because the last verification found drift Terraform cannot see.
/// A task definition revision registered behind Terraform's back becomes the family's
/// latest while Terraform's own revision still looks fine to a refresh; registering a
/// fresh revision from the desired state makes the desired one the latest again.
pub(crate) fn repairs(spec: &TenantSpec, rec: &TenantRecord) -> Vec<String> {
    let failed = rec
        .last_verify
        .as_ref()
        .map(|v| v.failed.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    if failed.iter().any(|c| c.starts_with("ecs.task_definition")) {
        out.push(format!(
            "module.tenant[\"{}\"].aws_ecs_task_definition.this",
            spec.id
        ));
    }
    out
}

/// AWS checks plus database checks; records the result. `rendered` and `secret` are
/// reused when the caller has them already (apply), read once here otherwise.
pub async fn verify_tenant(
    svc: &Services,
    spec: &TenantSpec,
    rendered: Option<&RenderedRoot>,
    secret: Option<&DbSecret>,
) -> Result<Vec<Check>> {
    // During a move the tenant is what its journal says, not yet (or no longer) what
    // its file says. A caller that rendered already (apply) passes the spec it
    // rendered, so the record is read only here, when nothing was rendered.
    let owned;
    let (spec, rendered) = match rendered {
        Some(r) => (spec, r),
        None => {
            let (spec, opts) = svc.render_options(spec).await?;
            let root = svc.render(&spec, opts)?;
            owned = (spec, root);
            (&owned.0, &owned.1)
        }
    };
    let mut checks = crate::verify::verify_aws(&svc.aws, &rendered.inputs).await;
    if let Some(db) = &svc.db {
        let read;
        let secret = match secret {
            Some(s) => Ok(s),
            None => {
                read = svc.db_secret(spec).await;
                read.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))
            }
        };
        match secret {
            Ok(secret) => checks.extend(db.verify(spec, secret).await),
            Err(e) => checks.push(Check::error(
                spec.id.as_str(),
                "db",
                "tenant database reachable with its secret",
                format!("{e:#}"),
            )),
        }
    }
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .map(|c| c.check.clone())
        .collect();
    let status = report::verdict(&checks);
    svc.records
        .update(&spec.id, |r| {
            r.last_verify = Some(VerifyRecord {
                at: Utc::now(),
                status,
                failed,
            })
        })
        .await?;
    Ok(checks)
}

/// `--changed`: keep only tenants whose inputs differ from their last successful apply.
/// Rendering is local and cheap, so this costs no Terraform run.
pub async fn only_changed(
    svc: &Services,
    specs: Vec<TenantSpec>,
    changed: bool,
) -> Result<Vec<TenantSpec>> {
    if !changed {
        return Ok(specs);
    }
    let ids: Vec<TenantId> = specs.iter().map(|s| s.id.clone()).collect();
    let records = svc.records.get_many(&ids).await?;
    let mut out = Vec::new();
    for spec in specs {
        let rec = &records[&spec.id];
        let (rspec, ropts) = flow::render_options(rec, &spec);
        let rendered = svc.render(&rspec, ropts)?;
        if is_changed(&spec, rec, &rendered) {
            out.push(spec);
        }
    }
    Ok(out)
}
