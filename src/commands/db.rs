//! `tenantctl db migrate|rollback|status`: schema migrations across every tenant.
//!
//! A target is the pool schema (once, shared by every starter tenant), a bridge schema,
//! or a silo database. `migrate` and `status` work on all declared tenants, or on the
//! given ids (a starter id selects the pool target); `rollback`, which usually drops
//! data, needs an explicit selection (`--all` for the whole fleet) and a typed
//! confirmation unless `--yes`. Data goes to stdout (a table, JSON or Markdown),
//! progress and failures to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use crate::cli::{DbAction, MigrateArgs, RollbackArgs, StatusArgs};
use crate::context::Ctx;
use crate::db::{
    Database, MigrateOptions, MigrateReport, MigrationSet, RollbackOptions, RollbackOutcome,
    RollbackPlan, RollbackReport, TargetOutcome, TargetState, TargetStatus, TxMode,
};
use crate::exit::{ERROR, Interrupted, Outcome};
use crate::isolation;
use crate::output::{Align, Progress, Report, Table};
use crate::tenant::{TenantId, Tier};
use crate::workspace::TenantSpec;
use anyhow::{Context, Result, bail};

pub async fn run(ctx: &Ctx, action: &DbAction) -> Result<u8> {
    match action {
        DbAction::Migrate(args) => migrate(ctx, args).await,
        DbAction::Rollback(args) => rollback(ctx, args).await,
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
        tx_mode: args.tx_mode.unwrap_or(ctx.config().database.tx_mode),
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
    let touched = report.targets.iter().filter_map(|t| {
        let code = match t.outcome {
            TargetOutcome::Migrated => Outcome::Success.code(),
            TargetOutcome::Failed => ERROR,
            _ => return None,
        };
        let detail = format!(
            "{} → {} ({} applied{})",
            version_name(&set, t.from_version),
            version_name(&set, t.to_version),
            t.applied.len(),
            t.failed_migration
                .as_ref()
                .map(|f| format!(", {f} failed"))
                .unwrap_or_default()
        );
        Some((t.target.as_str(), code, detail, t.error.clone()))
    });
    let events = db_events("migrate", &specs, touched, report.elapsed_ms);
    super::record_audit(ctx, events).await;
    crate::metrics::publish_migrate_run(&ctx.config().aws, &ctx.config().metrics, &report).await;
    Ok(if report.count(TargetOutcome::Failed) > 0 {
        ERROR
    } else {
        Outcome::Success.code()
    })
}

/// The audit events of a `db migrate` or `db rollback` run: one per tenant of each target
/// it changed or failed on (`(target, exit code, versions, error)`). The pool target is
/// every pooled tenant selected: its shared tables changed under each of them.
fn db_events<'a>(
    action: &str,
    specs: &[TenantSpec],
    touched: impl Iterator<Item = (&'a str, u8, String, Option<String>)>,
    elapsed_ms: u64,
) -> Vec<crate::audit::Event> {
    let mut events = Vec::new();
    for (target, code, detail, error) in touched {
        let tenants = specs.iter().filter(|s| {
            s.id.as_str() == target
                || (isolation::of(s.tier).pool_member() && target == crate::db::POOL_TARGET)
        });
        for spec in tenants {
            let mut e = crate::audit::Event::new(action, spec.id.clone(), code, elapsed_ms);
            e.tier_before = Some(spec.tier);
            e.tier_after = Some(spec.tier);
            e.detail = Some(detail.clone());
            e.error = error.as_deref().map(crate::output::one_line);
            events.push(e);
        }
    }
    events
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
        "{} target(s): {} migrated, {} up to date, {} failed, {} not provisioned, {} not run{} (latest {}); {} migration(s) applied to {} target(s) in {:.1} s ({})",
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
        report.elapsed_ms as f64 / 1000.0,
        match report.tx_mode {
            TxMode::Target => "one transaction per target",
            TxMode::Migration => "one transaction per migration",
        }
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

/// The tenants a rollback works on: ids, `--tier`, or `--all`; never the fleet by default.
fn rollback_selection(ctx: &Ctx, args: &RollbackArgs) -> Result<Vec<TenantSpec>> {
    if args.ids.is_empty() && !args.all && args.tier.is_none() {
        bail!(
            "no targets selected: name tenant ids, or use `--tier <tier>` or `--all`\nhint: rolling back every tenant's database needs `--all`, on purpose"
        );
    }
    if !args.ids.is_empty() && args.all {
        bail!("`--all` and explicit tenant ids exclude each other");
    }
    let mut specs = if args.ids.is_empty() {
        ctx.ws.tenants()?
    } else {
        selected(ctx, &args.ids)?
    };
    if let Some(tier) = args.tier {
        specs.retain(|s| s.tier == tier);
    }
    Ok(specs)
}

async fn rollback(ctx: &Ctx, args: &RollbackArgs) -> Result<u8> {
    let specs = rollback_selection(ctx, args)?;
    let set = MigrationSet::load(&ctx.ws.migrations_dir())?;
    // The parser keeps `--to` within i32.
    let to = args.to as i32;
    if to != 0 && set.get(to).is_none() {
        let known = match (set.migrations.first(), set.latest()) {
            (Some(a), Some(b)) => format!("the versions are {:04} to {:04}", a.version, b.version),
            _ => "there are no migrations".to_string(),
        };
        bail!(
            "invalid --to {to}: no migration has version {to:04} in `{}`\nhint: {known}; `--to 0` rolls back every migration",
            set.dir.display()
        );
    }
    let db = database(ctx, &specs).await?;
    let targets = db.targets(&specs, &BTreeMap::new()).await;
    if targets.is_empty() {
        ctx.info("no tenant selected is declared: nothing to roll back");
        return Ok(Outcome::Success.code());
    }
    if !ctx.yes {
        let plan = db
            .rollback_plan(targets.clone(), &set, to)
            .await
            .context("`tenantctl db rollback` stopped before changing any target")?;
        if plan.migrations() > 0 {
            confirm_rollback(&plan)?;
        }
    }
    let progress = Progress::new(ctx, targets.len(), "rolling back");
    let on_done = |r: &crate::db::RollbackTarget| {
        progress.inc();
        if r.outcome == RollbackOutcome::Failed {
            progress.line(&format!(
                "{}: failed: {}",
                r.target,
                r.error.as_deref().unwrap_or("unknown error")
            ));
        }
    };
    let opts = RollbackOptions {
        to,
        fail_fast: args.fail_fast,
        parallelism: ctx.parallelism.max(1),
        lock_wait: std::time::Duration::from_secs(args.lock_timeout),
        interrupt: ctx.interrupt.clone(),
    };
    let report = db
        .rollback(targets, &set, &opts, &on_done)
        .await
        .context("`tenantctl db rollback` stopped before changing any target");
    progress.finish();
    let report = report?;
    rollback_report(ctx, &set, &report).emit(ctx.output)?;
    if report.interrupted() {
        return Err(Interrupted.into());
    }
    let touched = report.targets.iter().filter_map(|t| {
        let code = match t.outcome {
            RollbackOutcome::RolledBack => Outcome::Success.code(),
            RollbackOutcome::Failed => ERROR,
            _ => return None,
        };
        let detail = format!(
            "{} → {} ({} rolled back{})",
            version_name(&set, t.from_version),
            version_name(&set, t.to_version),
            t.rolled_back.len(),
            t.failed_migration
                .as_ref()
                .map(|f| format!(", {f} failed"))
                .unwrap_or_default()
        );
        Some((t.target.as_str(), code, detail, t.error.clone()))
    });
    let events = db_events("rollback", &specs, touched, report.elapsed_ms);
    super::record_audit(ctx, events).await;
    Ok(if report.count(RollbackOutcome::Failed) > 0 {
        ERROR
    } else {
        Outcome::Success.code()
    })
}

/// Shows what will run and asks for `yes` typed back, as `remove` asks for the id.
fn confirm_rollback(plan: &RollbackPlan) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to roll back without confirmation: stdin is not a terminal\nhint: pass `--yes` in non-interactive runs"
        );
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "This runs {} down migration(s) on {} target(s), newest first; down migrations usually drop tables and the data in them:",
        plan.migrations(),
        plan.targets.len()
    )?;
    for (name, tier, files) in &plan.targets {
        // The pool target is the only one without a tenant of its own.
        let who = if *tier == Tier::Starter {
            "shared by every starter tenant".to_string()
        } else {
            tier.to_string()
        };
        writeln!(err, "  {name} ({who}): {}", files.join(", "))?;
    }
    write!(err, "Type `yes` to roll back to version {}: ", plan.to)?;
    err.flush()?;
    drop(err);
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if line.trim() != "yes" {
        bail!("confirmation was not `yes`: nothing was rolled back");
    }
    Ok(())
}

fn rollback_report(ctx: &Ctx, set: &MigrationSet, report: &RollbackReport) -> Report {
    let summary = format!(
        "{} target(s): {} rolled back, {} unchanged, {} failed, {} not provisioned, {} not run{} (to {}); {} down migration(s) run on {} target(s) in {:.1} s",
        report.targets.len(),
        report.count(RollbackOutcome::RolledBack),
        report.count(RollbackOutcome::Unchanged),
        report.count(RollbackOutcome::Failed),
        report.count(RollbackOutcome::NotProvisioned),
        report.count(RollbackOutcome::NotRun),
        match report.count(RollbackOutcome::Interrupted) {
            0 => String::new(),
            n => format!(", {n} interrupted"),
        },
        match report.to {
            0 => "no migration".to_string(),
            v => version_name(set, Some(v)),
        },
        report.migrations_rolled_back,
        report.targets_rolled_back,
        report.elapsed_ms as f64 / 1000.0
    );
    let mut table = Table::new(&["target", "tier", "from", "to", "outcome", "error"])
        .titled("tenantctl db rollback")
        .code(0);
    for t in report
        .targets
        .iter()
        .filter(|t| ctx.verbose > 0 || t.outcome != RollbackOutcome::Unchanged)
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
    let status = if report.count(RollbackOutcome::Failed) > 0 {
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
