//! The steps of one tenant's lifecycle, shared by `add`, `plan`, `apply`, `verify` and
//! `remove`: render → terraform → database → verify → record.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::aws::AwsClients;
use crate::config::PlatformValues;
use crate::context::Ctx;
use crate::db::{Database, DbSecret};
use crate::fleet::{Status, StepOutcome};
use crate::records::{ApplyRecord, RecordStore, VerifyRecord};
use crate::render::{self, RenderOptions, RenderedRoot};
use crate::report::{self, Check, CheckStatus, Verdict};
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
        Ok(Services {
            ctx: ctx.clone(),
            aws,
            db,
            records,
            platform,
            run_id: Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
        })
    }

    pub fn terraform(
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
        Ok(Terraform::new(
            ws.config.terraform.binary(),
            ws.root_dir(&spec.id),
            spec.id.as_str(),
            Some(&log),
            self.ctx.interrupt.clone(),
        )?
        .with_progress(bar))
    }

    /// Renders the tenant's root in memory (no file written).
    pub fn render(&self, spec: &TenantSpec, opts: RenderOptions) -> Result<RenderedRoot> {
        render::render_root(&self.ctx.ws, &self.platform, spec, opts)
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

/// Whether a tenant's inputs differ from its last successful apply.
pub async fn is_changed(
    svc: &Services,
    spec: &TenantSpec,
    rendered: &RenderedRoot,
) -> Result<bool> {
    let rec = svc.records.get(&spec.id).await?;
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
    Ok(why.is_some())
}

/// Render, plan, apply if needed, provision the database, verify, record.
/// Returns the step outcome and the verification checks.
pub async fn apply_tenant(
    svc: &Services,
    spec: &TenantSpec,
    opts: &ApplyOptions,
    bar: ProgressBar,
) -> Result<(StepOutcome, Vec<Check>)> {
    refuse_isolation_change(svc, spec).await?;
    let rendered = svc.render(spec, opts.render)?;
    if !opts.refresh && !is_changed(svc, spec, &rendered).await? {
        return Ok((
            StepOutcome {
                status: Status::Skipped,
                changes: None,
                detail: Some(
                    "inputs unchanged since the last apply (--refresh plans anyway)".into(),
                ),
            },
            Vec::new(),
        ));
    }
    rendered.write(&svc.ctx.ws)?;
    let tf = svc.terraform(spec, "apply", bar.clone())?;
    tf.init().await?;
    let pending = tf
        .plan(PlanOptions {
            destroy: false,
            lock_timeout: opts.lock_timeout,
            replace: repairs(svc, spec).await?,
        })
        .await?;
    let changes = if pending.is_empty() {
        let _ = std::fs::remove_file(rendered.dir.join("tfplan"));
        ChangeSummary::default()
    } else {
        tf.apply_plan(opts.lock_timeout).await?
    };
    svc.ctx.interrupt.check()?;
    bar.set_message("database");
    // Read once: provisioning sets the role's password from it, verify logs in with it.
    let secret = match &svc.db {
        Some(db) => {
            let secret = svc.db_secret(spec).await?;
            db.provision(spec, &secret).await.with_context(|| {
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
                tier: spec.tier.to_string(),
            })
        })
        .await?;
    bar.set_message("verify");
    let checks = verify_tenant(svc, spec, Some(&rendered), secret.as_ref()).await?;
    let status = if changes.is_empty() {
        Status::Unchanged
    } else {
        Status::Changed
    };
    Ok((
        StepOutcome {
            status,
            changes: Some(changes),
            detail: None,
        },
        checks,
    ))
}

/// Resources to replace because the last verification found drift Terraform cannot see.
/// A task definition revision registered behind Terraform's back becomes the family's
/// latest while Terraform's own revision still looks fine to a refresh; registering a
/// fresh revision from the desired state makes the desired one the latest again.
async fn repairs(svc: &Services, spec: &TenantSpec) -> Result<Vec<String>> {
    let rec = svc.records.get(&spec.id).await?;
    let failed = rec.last_verify.map(|v| v.failed).unwrap_or_default();
    let mut out = Vec::new();
    if failed.iter().any(|c| c.starts_with("ecs.task_definition")) {
        out.push(format!(
            "module.tenant[\"{}\"].aws_ecs_task_definition.this",
            spec.id
        ));
    }
    Ok(out)
}

/// AWS checks plus database checks; records the result. `rendered` and `secret` are
/// reused when the caller has them already (apply), read once here otherwise.
pub async fn verify_tenant(
    svc: &Services,
    spec: &TenantSpec,
    rendered: Option<&RenderedRoot>,
    secret: Option<&DbSecret>,
) -> Result<Vec<Check>> {
    let owned;
    let rendered = match rendered {
        Some(r) => r,
        None => {
            owned = svc.render(spec, RenderOptions::default())?;
            &owned
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
    let mut out = Vec::new();
    for spec in specs {
        let rendered = svc.render(&spec, RenderOptions::default())?;
        if is_changed(svc, &spec, &rendered).await? {
            out.push(spec);
        }
    }
    Ok(out)
}

/// A tier change that crosses isolation models moves the tenant's data (its rows live in
/// the pool, its schema or its own database): a plain apply would re-point the tenant
/// at an empty place and strand its rows. Refused, before anything runs, until the move
/// protocol carries the data.
#[derive(Debug, thiserror::Error)]
#[error(
    "tenant `{id}` changes tier {from_tier} → {to_tier}, which moves its data from {from} to {to} isolation: `apply` never changes a tenant's isolation without moving its data, and moving data between isolation models is not available yet; nothing was changed\nhint: restore `tier = \"{from_tier}\"` in `{file}` (tier changes within one isolation model apply as usual)"
)]
pub struct IsolationChange {
    pub id: String,
    pub from_tier: crate::tenant::Tier,
    pub to_tier: crate::tenant::Tier,
    pub from: crate::tenant::Isolation,
    pub to: crate::tenant::Isolation,
    pub file: String,
}

/// Refuses a desired tier whose isolation differs from the one last applied.
pub async fn refuse_isolation_change(svc: &Services, spec: &TenantSpec) -> Result<()> {
    let rec = svc.records.get(&spec.id).await?;
    let Some(applied) = rec.last_apply else {
        return Ok(());
    };
    let Ok(from_tier) = applied.tier.parse::<crate::tenant::Tier>() else {
        return Ok(());
    };
    if from_tier.isolation() != spec.tier.isolation() {
        return Err(IsolationChange {
            id: spec.id.to_string(),
            from_tier,
            to_tier: spec.tier,
            from: from_tier.isolation(),
            to: spec.tier.isolation(),
            file: svc.ctx.ws.tenant_file(&spec.id).display().to_string(),
        }
        .into());
    }
    Ok(())
}
