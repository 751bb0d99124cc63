//! `tenantctl db migrate|status`: schema migrations across every tenant.
//!
//! A target is the pool schema (once, shared by every starter tenant), a bridge schema,
//! or a silo database. Both commands work on all declared tenants, or on the given ids
//! (a starter id selects the pool target). Data goes to stdout (a table, JSON or
//! Markdown), progress and failures to stderr.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::context::{Ctx, OutputFormat};
use crate::db::{
    Database, MigrateOptions, MigrateReport, MigrationSet, TargetOutcome, TargetStatus,
};
use crate::exit::{ERROR, Interrupted, Outcome};
use crate::fleet::md_cell;
use crate::tenant::{Isolation, TenantId};
use crate::workspace::TenantSpec;

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Apply pending migrations to every target: the pool schema once, each bridge
    /// schema, each silo database; each migration in its own transaction.
    Migrate(MigrateArgs),
    /// Per target: tier, version, pending count, state and last error.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only the targets of these tenants (a starter tenant selects the shared pool).
    pub ids: Vec<String>,
    /// Stop starting new targets after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Seconds to wait for another `db migrate` run to finish (0: fail at once).
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the targets of these tenants.
    pub ids: Vec<String>,
}

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
        && specs.iter().any(|s| s.tier.isolation() == Isolation::Silo)
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
    let bar = ProgressBar::new(targets.len() as u64);
    if !ctx.progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("migrating");
    let quiet = ctx.quiet;
    let on_done = |r: &crate::db::TargetReport| {
        bar.inc(1);
        if r.outcome == TargetOutcome::Failed && !quiet {
            let line = format!(
                "{}: failed: {}",
                r.target,
                r.error.as_deref().unwrap_or("unknown error")
            );
            bar.suspend(|| eprintln!("{line}"));
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
    bar.finish_and_clear();
    let report = report?;
    print_migrate(ctx, &set, &report)?;
    if report.interrupted() {
        return Err(Interrupted.into());
    }
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

fn first_line(s: &Option<String>) -> String {
    s.as_deref()
        .and_then(|e| e.lines().next())
        .unwrap_or("")
        .to_string()
}

fn print_migrate(ctx: &Ctx, set: &MigrationSet, report: &MigrateReport) -> Result<()> {
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
    // Unchanged targets are noise in a run over hundreds of tenants; -v shows them.
    let shown: Vec<_> = report
        .targets
        .iter()
        .filter(|t| ctx.verbose > 0 || t.outcome != TargetOutcome::UpToDate)
        .collect();
    match ctx.output {
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct Out<'a> {
                status: &'static str,
                #[serde(flatten)]
                report: &'a MigrateReport,
            }
            let status = if report.count(TargetOutcome::Failed) > 0 {
                "failed"
            } else {
                "ok"
            };
            println!("{}", serde_json::to_string_pretty(&Out { status, report })?);
        }
        OutputFormat::Markdown => {
            println!("| target | tier | from | to | outcome | error |");
            println!("|---|---|---|---|---|---|");
            for t in &shown {
                println!(
                    "| `{}` | {} | {} | {} | {} | {} |",
                    t.target,
                    t.tier,
                    version_name(set, t.from_version),
                    version_name(set, t.to_version),
                    t.outcome.as_str(),
                    md_cell(&first_line(&t.error))
                );
            }
            println!("\n{summary}");
        }
        OutputFormat::Human => {
            if !shown.is_empty() {
                let w = shown
                    .iter()
                    .map(|t| t.target.len())
                    .max()
                    .unwrap_or(6)
                    .max(6);
                let vw = set
                    .migrations
                    .iter()
                    .map(|m| m.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                println!(
                    "{:<w$}  {:<10}  {:<vw$}  {:<vw$}  {:<15}  ERROR",
                    "TARGET", "TIER", "FROM", "TO", "OUTCOME"
                );
                for t in &shown {
                    println!(
                        "{:<w$}  {:<10}  {:<vw$}  {:<vw$}  {:<15}  {}",
                        t.target,
                        t.tier.as_str(),
                        version_name(set, t.from_version),
                        version_name(set, t.to_version),
                        t.outcome.as_str(),
                        first_line(&t.error)
                    );
                }
            }
            println!("{summary}");
        }
    }
    Ok(())
}

async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<u8> {
    let specs = selected(ctx, &args.ids)?;
    let set = MigrationSet::load(&ctx.ws.migrations_dir())?;
    let db = database(ctx, &specs).await?;
    let targets = db.targets(&specs, &BTreeMap::new()).await;
    let rows = db.status(targets, &set).await?;
    print_status(ctx, &set, &rows)?;
    Ok(Outcome::Success.code())
}

fn print_status(ctx: &Ctx, set: &MigrationSet, rows: &[TargetStatus]) -> Result<()> {
    match ctx.output {
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct Out<'a> {
                latest: Option<i32>,
                targets: &'a [TargetStatus],
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&Out {
                    latest: set.latest().map(|m| m.version),
                    targets: rows
                })?
            );
        }
        OutputFormat::Markdown => {
            println!("| target | tier | isolation | version | pending | state | last error |");
            println!("|---|---|---|---|---|---|---|");
            for r in rows {
                println!(
                    "| `{}` | {} | {} | {} | {} | {} | {} |",
                    r.target,
                    r.tier,
                    r.isolation,
                    r.version_name.as_deref().unwrap_or("-"),
                    r.pending,
                    md_cell(&r.state_text()),
                    md_cell(&first_line(&r.last_error))
                );
            }
        }
        OutputFormat::Human => {
            let w = rows
                .iter()
                .map(|r| r.target.len())
                .max()
                .unwrap_or(6)
                .max(6);
            let vw = rows
                .iter()
                .filter_map(|r| r.version_name.as_ref().map(String::len))
                .max()
                .unwrap_or(7)
                .max(7);
            println!(
                "{:<w$}  {:<10}  {:<9}  {:<vw$}  {:>7}  {:<15}  LAST ERROR",
                "TARGET", "TIER", "ISOLATION", "VERSION", "PENDING", "STATE"
            );
            for r in rows {
                let err = match (&r.last_error, &r.last_error_at) {
                    (Some(e), Some(at)) => format!("{at} {}", first_line(&Some(e.clone()))),
                    (Some(e), None) => first_line(&Some(e.clone())),
                    _ => "-".into(),
                };
                println!(
                    "{:<w$}  {:<10}  {:<9}  {:<vw$}  {:>7}  {:<15}  {}",
                    r.target,
                    r.tier.as_str(),
                    r.isolation.as_str(),
                    r.version_name.as_deref().unwrap_or("-"),
                    r.pending,
                    r.state_text(),
                    err
                );
            }
            println!(
                "latest: {}",
                set.latest().map(|m| m.name.as_str()).unwrap_or("-")
            );
        }
    }
    Ok(())
}
