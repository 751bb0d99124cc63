//! `tenantctl db migrate|status`: schema migrations across every tenant.
//!
//! A target is the pool schema (once, shared by every starter tenant), a bridge schema,
//! or a silo database. Both commands work on all declared tenants, or on the given ids
//! (a starter id selects the pool target). Data goes to stdout (a table, JSON or
//! Markdown), progress and failures to stderr.

use std::collections::BTreeMap;

use crate::cli::{DbAction, MigrateArgs, StatusArgs};
use crate::context::Ctx;
use crate::db::{
    Database, MigrateOptions, MigrateReport, MigrationSet, TargetOutcome, TargetState, TargetStatus,
};
use crate::exit::{ERROR, Interrupted, Outcome};
use crate::isolation;
use crate::output::{Align, Progress, Report, Table};
use crate::tenant::TenantId;
use crate::workspace::TenantSpec;
use anyhow::{Context, Result};

pub async fn run(ctx: &Ctx, action: &DbAction) -> Result<u8> {
    match action {
        DbAction::Migrate(args) => migrate(ctx, args).await,
        DbAction::Status(args) => status(ctx, args).await,
    }
}

/// The declared tenants, or the given ones (each must be declared).
fn selected(ctx: &Ctx, ids: &[String]) -> Result<Vec<TenantSpec>> {
    if ids.is_empty() {
        return ctx.ws.tenants();
    }
    let mut specs = Vec::new();
    for raw in ids {
        let id = TenantId::parse(raw)?;
        specs.push(ctx.ws.tenant(&id)?);
    }
    Ok(specs)
}

async fn database(ctx: &Ctx, specs: &[TenantSpec]) -> Result<Database> {
    let mut db = Database::from_workspace(&ctx.ws)?;
    // Real dedicated databases are reached with their `db-admin` secret.
    if ctx.config().database.local_silo.is_none()
        && specs.iter().any(|s| isolation::of(s.tier).dedicated())
    {
        db = db.with_aws(crate::aws::AwsClients::new(&ctx.config().aws).await);
    }
    Ok(db)
}

async fn migrate(ctx: &Ctx, args: &MigrateArgs) -> Result<u8> {
    let specs = selected(ctx, &args.ids)?;
    let set = MigrationSet::load(&ctx.ws.migrations_dir())?;
    let db = database(ctx, &specs).await?;
    let targets = db.targets(&specs, &BTreeMap::new()).await;
    if targets.is_empty() {
        ctx.info("no tenants declared: nothing to migrate");
        return Ok(Outcome::Success.code());
    }
    let progress = Progress::new(ctx, targets.len(), "migrating");
    let on_done = |r: &crate::db::TargetReport| {
        progress.inc();
        if r.outcome == TargetOutcome::Failed {
            progress.line(&format!(
                "{}: failed: {}",
                r.target,
                r.error.as_deref().unwrap_or("unknown error")
            ));
        }
    };
    let opts = MigrateOptions {
        fail_fast: args.fail_fast,
        parallelism: ctx.parallelism.max(1),
        lock_wait: std::time::Duration::from_secs(args.lock_timeout),
        interrupt: ctx.interrupt.clone(),
    };
    let report = db
        .migrate(targets, &set, &opts, &on_done)
        .await
        .context("`tenantctl db migrate` stopped before changing any target");
    progress.finish();
    let report = report?;
    migrate_report(ctx, &set, &report).emit(ctx.output)?;
    if report.interrupted() {
        return Err(Interrupted.into());
    }
    crate::metrics::publish_migrate_run(&ctx.config().aws, &ctx.config().metrics, &report).await;
    Ok(if report.count(TargetOutcome::Failed) > 0 {
        ERROR
    } else {
        Outcome::Success.code()
    })
}

fn version_name(set: &MigrationSet, v: Option<i32>) -> String {
    match v {
        None => "-".into(),
        Some(v) => set
            .get(v)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("{v:04}")),
    }
}

fn migrate_report(ctx: &Ctx, set: &MigrationSet, report: &MigrateReport) -> Report {
    let summary = format!(
        "{} target(s): {} migrated, {} up to date, {} failed, {} not provisioned, {} not run{} (latest {}); {} migration(s) applied to {} target(s) in {:.1} s",
        report.targets.len(),
        report.count(TargetOutcome::Migrated),
        report.count(TargetOutcome::UpToDate),
        report.count(TargetOutcome::Failed),
        report.count(TargetOutcome::NotProvisioned),
        report.count(TargetOutcome::NotRun),
        match report.count(TargetOutcome::Interrupted) {
            0 => String::new(),
            n => format!(", {n} interrupted"),
        },
        version_name(set, report.latest),
        report.migrations_applied,
        report.targets_migrated,
        report.elapsed_ms as f64 / 1000.0
    );
    let mut table = Table::new(&["target", "tier", "from", "to", "outcome", "error"])
        .titled("tenantctl db migrate")
        .code(0);
    // Unchanged targets are noise in a run over hundreds of tenants; -v shows them.
    for t in report
        .targets
        .iter()
        .filter(|t| ctx.verbose > 0 || t.outcome != TargetOutcome::UpToDate)
    {
        table.row([
            t.target.clone(),
            t.tier.to_string(),
            version_name(set, t.from_version),
            version_name(set, t.to_version),
            t.outcome.as_str().to_string(),
            t.error.clone().unwrap_or_default(),
        ]);
    }
    table.summary(summary);
    let status = if report.count(TargetOutcome::Failed) > 0 {
        "failed"
    } else {
        "ok"
    };
    let mut json = serde_json::to_value(report).unwrap_or_default();
    if let Some(obj) = json.as_object_mut() {
        obj.insert("status".into(), status.into());
    }
    Report::new(table, json)
}

async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<u8> {
    let specs = selected(ctx, &args.ids)?;
    let set = MigrationSet::load(&ctx.ws.migrations_dir())?;
    let db = database(ctx, &specs).await?;
    let targets = db.targets(&specs, &BTreeMap::new()).await;
    let rows = db.status(targets, &set).await?;
    status_report(&set, &rows).emit(ctx.output)?;
    Ok(status_code(&rows))
}

/// 1 when a target failed (a recorded error, an edited or unknown migration) or cannot
/// be looked at; else 2 when a target has migrations to apply, including a declared
/// tenant whose schema or database does not exist yet; else 0.
fn status_code(rows: &[TargetStatus]) -> u8 {
    let failed = |r: &TargetStatus| match r.state {
        TargetState::Unreachable
        | TargetState::ChecksumMismatch
        | TargetState::UnknownMigration => true,
        TargetState::UpToDate | TargetState::Pending | TargetState::NotProvisioned => {
            r.last_error.is_some()
        }
    };
    if rows.iter().any(failed) {
        ERROR
    } else if rows.iter().any(|r| r.state != TargetState::UpToDate) {
        Outcome::Changes.code()
    } else {
        Outcome::Success.code()
    }
}

fn status_report(set: &MigrationSet, rows: &[TargetStatus]) -> Report {
    let mut table = Table::new(&[
        "target",
        "tier",
        "isolation",
        "version",
        "pending",
        "state",
        "last error",
    ])
    .titled("tenantctl db status")
    .align(4, Align::Right)
    .code(0);
    for r in rows {
        let err = match (&r.last_error, &r.last_error_at) {
            (Some(e), Some(at)) => format!("{at} {e}"),
            (Some(e), None) => e.clone(),
            _ => "-".into(),
        };
        table.row([
            r.target.clone(),
            r.tier.to_string(),
            r.isolation.to_string(),
            r.version_name.clone().unwrap_or_else(|| "-".into()),
            r.pending.to_string(),
            r.state_text(),
            err,
        ]);
    }
    table.summary(format!(
        "latest: {}",
        set.latest().map(|m| m.name.as_str()).unwrap_or("-")
    ));
    let json = serde_json::json!({
        "latest": set.latest().map(|m| m.version),
        "targets": rows,
    });
    Report::new(table, json)
}
