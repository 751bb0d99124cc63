//! The migration runner: plan every target with a few queries, then apply what each one
//! lacks, one transaction per target (or per migration), failures isolated per target;
//! and its reverse, `db rollback`, which runs down files newest first.
//!
//! Planning is what makes a no-op run over hundreds of tenants fast. All pool and bridge
//! targets live in the shared database, so one query finds which schemas exist and have a
//! ledger, and one `UNION ALL` query per 200 schemas reads every ledger; only silo
//! targets, being separate databases, need a connection each. Nothing is applied until
//! every ledger has been checked against the files: an applied migration whose file
//! changed (checksum mismatch) or disappeared stops the run before any work starts.
//!
//! Applying ([`TxMode`]): by default a target's pending migrations share one transaction,
//! opened with `lock_timeout`, `statement_timeout`, `search_path` = the target's schema
//! and a per-target advisory lock, then the files, then the tier's post-migration step
//! once (pool: RLS + policies on new tables; bridge/silo: the `tenant_id` check and
//! grants), the ledger rows and COMMIT, all in one round trip; `--tx-mode migration`
//! gives each migration that transaction instead. A no-transaction file runs statement
//! by statement between them. A failure rolls its transaction back, stops that target,
//! and the run goes on with the others (or stops starting new ones with `fail_fast`). A
//! run holds an exclusive session-level advisory lock in the shared database for its
//! whole duration, so two runs (migrate or rollback) never work concurrently;
//! provisioning a single tenant takes the same lock in shared mode.
//!
//! Connections: a run never holds more than `[database] connection_budget`. The control
//! connection, which holds the lock, is one of them; the others are worker slots, each
//! working over a pooled connection to the shared database (pool and bridge targets) or
//! a connection of the silo's own.
//!
//! Where each part lives, in the order a run uses them:
//!
//! - [`control`]: the fleet lock and the control table (last error per target);
//! - [`plan`]: probing targets, reading ledgers, checking them against the files, what
//!   is pending;
//! - [`conns`]: the connection budget, the pool of shared-database connections, and the
//!   one function that gives a target its connection;
//! - [`runner`]: applying a target's pending migrations, and the worker loop;
//! - [`rollback`]: what `db rollback` undoes per target, and undoing it.
//!
//! This file holds the options, the report types and the entry points.

mod conns;
mod control;
mod plan;
mod rollback;
mod runner;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;
use tokio_postgres::Client;

use crate::db::migrations::MigrationSet;
use crate::db::{Database, Target};
use crate::interrupt::Interrupt;
use crate::tenant::{Isolation, Tier};

pub use control::LockHeld;
pub(crate) use control::{ensure_control, lock_run, record_status, setup_tx, unlock_run};
pub use rollback::{
    RollbackOptions, RollbackOutcome, RollbackPlan, RollbackReport, RollbackTarget, RolledBack,
};

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Stop starting targets after the first failure.
    pub fail_fast: bool,
    /// Targets migrated at once (bounded further by `[database] connection_budget`).
    pub parallelism: usize,
    /// How long to wait for another run's lock; zero fails at once.
    pub lock_wait: Duration,
    pub interrupt: Interrupt,
    pub tx_mode: TxMode,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            fail_fast: false,
            parallelism: 1,
            lock_wait: Duration::ZERO,
            interrupt: Interrupt::never(),
            tx_mode: TxMode::default(),
        }
    }
}

/// How many transactions `db migrate` uses per target.
///
/// `target` (the default): a target's pending migrations run in one transaction, with
/// their ledger rows and the tier's post-migration step run once, so a target is either
/// at its old version or at the new one, never in between, and a run costs one COMMIT
/// per target instead of one per migration (`cargo bench --bench migrate`: see the
/// README). `migration`: one transaction per migration, so a failure keeps the ones
/// before it, for long chains of independent migrations where partial progress is
/// worth keeping. A no-transaction migration always runs on its own.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum TxMode {
    /// One transaction per migration.
    Migration,
    /// One transaction per target for all its pending migrations.
    #[default]
    Target,
}

impl TxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TxMode::Migration => "migration",
            TxMode::Target => "target",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetOutcome {
    /// Nothing was pending.
    UpToDate,
    /// Every pending migration applied.
    Migrated,
    /// A migration (or reaching the target) failed; that migration was rolled back.
    Failed,
    /// The schema or database does not exist yet (provisioning has not run).
    NotProvisioned,
    /// Not started: `--fail-fast` after an earlier failure.
    NotRun,
    /// Stopped by Ctrl-C between migrations.
    Interrupted,
}

impl TargetOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetOutcome::UpToDate => "up to date",
            TargetOutcome::Migrated => "migrated",
            TargetOutcome::Failed => "failed",
            TargetOutcome::NotProvisioned => "not provisioned",
            TargetOutcome::NotRun => "not run",
            TargetOutcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: String,
    pub duration_ms: u64,
}

/// What a run did to one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub tier: Tier,
    pub isolation: Isolation,
    pub schema: String,
    /// `user@host:port/dbname`.
    pub database: String,
    pub from_version: Option<i32>,
    pub to_version: Option<i32>,
    /// Migrations this run applied, in order; a failed or interrupted target may have
    /// some.
    pub applied: Vec<AppliedMigration>,
    /// Versions pending when planned but found applied by another session when their
    /// turn came; not counted as applied by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied_concurrently: Vec<i32>,
    pub outcome: TargetOutcome,
    /// The file that failed, e.g. `0003_invoices.sql`.
    pub failed_migration: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub latest: Option<i32>,
    pub tx_mode: TxMode,
    /// Migrations this run applied, over all targets, whatever each target's outcome.
    pub migrations_applied: usize,
    /// Targets this run applied at least one migration to.
    pub targets_migrated: usize,
    pub targets: Vec<TargetReport>,
    pub elapsed_ms: u64,
}

impl MigrateReport {
    fn new(
        latest: Option<i32>,
        tx_mode: TxMode,
        targets: Vec<TargetReport>,
        elapsed: Duration,
    ) -> MigrateReport {
        MigrateReport {
            latest,
            tx_mode,
            migrations_applied: targets.iter().map(|t| t.applied.len()).sum(),
            targets_migrated: targets.iter().filter(|t| !t.applied.is_empty()).count(),
            targets,
            elapsed_ms: elapsed.as_millis() as u64,
        }
    }

    /// Targets whose outcome is `outcome`.
    pub fn count(&self, outcome: TargetOutcome) -> usize {
        self.targets.iter().filter(|t| t.outcome == outcome).count()
    }

    pub fn interrupted(&self) -> bool {
        self.count(TargetOutcome::Interrupted) > 0
    }
}

/// A target's state as `db status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    UpToDate,
    Pending,
    /// The schema or silo database does not exist yet.
    NotProvisioned,
    /// Could not be looked at; the detail says why.
    Unreachable,
    /// An applied migration's file was edited since; the detail names the file.
    ChecksumMismatch,
    /// An applied migration has no file any more; the detail names it.
    UnknownMigration,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::UpToDate => "up_to_date",
            TargetState::Pending => "pending",
            TargetState::NotProvisioned => "not_provisioned",
            TargetState::Unreachable => "unreachable",
            TargetState::ChecksumMismatch => "checksum_mismatch",
            TargetState::UnknownMigration => "unknown_migration",
        }
    }
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One target as `db status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub tier: Tier,
    pub isolation: Isolation,
    pub schema: String,
    pub database: String,
    /// Highest applied version.
    pub version: Option<i32>,
    pub version_name: Option<String>,
    pub latest: Option<i32>,
    pub pending: usize,
    pub state: TargetState,
    /// Why it is unreachable, or the file behind a mismatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl TargetStatus {
    /// "up_to_date", or "checksum_mismatch: 0001_accounts.sql" (state and detail).
    pub fn state_text(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.state),
            None => self.state.to_string(),
        }
    }
}

impl Database {
    fn apply_settings(&self, tx_mode: TxMode) -> runner::Apply {
        runner::Apply {
            lock_timeout_ms: self.settings.lock_timeout_ms,
            statement_timeout_ms: self.settings.statement_timeout_ms,
            tx_mode,
        }
    }

    /// Applies every pending migration to every target. `on_done` is called as each
    /// target finishes (progress). An error returned here means no target was changed
    /// (no admin connection, lock held, edited migration); failures of single targets
    /// are in the report.
    pub async fn migrate(
        &self,
        mut targets: Vec<Target>,
        set: &MigrationSet,
        opts: &MigrateOptions,
        on_done: &(dyn Fn(&TargetReport) + Sync),
    ) -> Result<MigrateReport> {
        let started = Instant::now();
        // A tenant named twice is still one target: two workers on one schema would
        // each apply part of it and report it twice.
        let mut seen = HashSet::new();
        targets.retain(|t| seen.insert(t.name.clone()));
        let purpose = "tenantctl db migrate";
        let budget = self.settings.connection_budget;
        if budget < 2 {
            tracing::warn!(
                "`[database] connection_budget = {budget}` leaves no connection to work over beside the one holding the migration lock: this run uses 2"
            );
        }
        let slots = conns::worker_slots(budget);
        let workers = opts.parallelism.clamp(1, slots);

        let control = self.admin.connect(purpose).await?;
        ensure_control(&control).await?;
        lock_run(&control, true, opts.lock_wait, &self.admin.label()).await?;
        let probes = plan::probe_all(&control, &targets, workers, purpose).await?;
        plan::check_ledgers(set, &targets, &probes, "applied")?;
        let had_errors = control::targets_with_errors(&control).await?;

        let planned: Vec<TargetReport> = targets
            .iter()
            .zip(&probes)
            .map(|(t, p)| plan::report(self, t, p, set))
            .collect();
        for r in &planned {
            if r.outcome != TargetOutcome::NotRun {
                on_done(r);
            }
        }
        let conns = conns::Connections::new(&self.admin, purpose, workers);
        let run = runner::Run {
            set,
            opts,
            on_done,
            apply: self.apply_settings(opts.tx_mode),
            conns: &conns,
            workers,
        };
        let reports = runner::run_targets(&run, &targets, &probes, planned).await;
        drop(conns);

        // Record failures, and clear old errors of targets that are now fine.
        let rows: Vec<(String, Tier, Option<String>)> = reports
            .iter()
            .filter_map(|r| match r.outcome {
                TargetOutcome::Failed => Some((r.target.clone(), r.tier, r.error.clone())),
                TargetOutcome::Migrated | TargetOutcome::UpToDate
                    if had_errors.contains(&r.target) =>
                {
                    Some((r.target.clone(), r.tier, None))
                }
                _ => None,
            })
            .collect();
        self.end_run(control, &rows, purpose).await;
        Ok(MigrateReport::new(
            set.latest().map(|m| m.version),
            opts.tx_mode,
            reports,
            started.elapsed(),
        ))
    }

    /// Ends a run (migrate or rollback): records each target's last error (`rows`: set,
    /// or cleared with `None`) and releases the fleet lock. The targets are done either
    /// way: failing to record is a warning, not an error that would hide the report.
    async fn end_run(
        &self,
        control: Client,
        rows: &[(String, Tier, Option<String>)],
        purpose: &str,
    ) {
        let recorder = if control.is_closed() {
            self.admin.connect(purpose).await
        } else {
            Ok(control)
        };
        match recorder {
            Ok(c) => {
                if let Err(e) = record_status(&c, rows).await {
                    tracing::warn!("{e:#}");
                }
                unlock_run(&c, true).await;
            }
            Err(e) => tracing::warn!("cannot record the results: {e:#}"),
        }
    }

    /// Per target: version, pending count, state and last error. Read-only: takes no lock
    /// and creates nothing.
    pub async fn status(
        &self,
        targets: Vec<Target>,
        set: &MigrationSet,
    ) -> Result<Vec<TargetStatus>> {
        let purpose = "tenantctl db status";
        let client = self.admin.connect(purpose).await?;
        let silo_conns = conns::worker_slots(self.settings.connection_budget).min(8);
        let probes = plan::probe_all(&client, &targets, silo_conns, purpose).await?;
        let mut errors = control::last_errors(&client).await?;
        let latest = set.latest().map(|m| m.version);
        Ok(targets
            .iter()
            .zip(&probes)
            .map(|(t, p)| {
                let (last_error, last_error_at) = errors.remove(&t.name).unwrap_or_default();
                let (state, detail, pending) = plan::state(p, set);
                let top = p.applied().and_then(|a| a.iter().next_back());
                TargetStatus {
                    target: t.name.clone(),
                    tier: t.tier,
                    isolation: t.isolation,
                    schema: t.schema.clone(),
                    database: plan::database_label(self, t),
                    version: top.map(|(v, _)| *v),
                    version_name: top.map(|(_, a)| a.name.clone()),
                    latest,
                    pending,
                    state,
                    detail,
                    last_error,
                    last_error_at,
                }
            })
            .collect())
    }

    /// Applies what one target lacks over an admin connection that already holds the
    /// fleet lock (shared) — provisioning's path. Returns the error of the first failed
    /// migration.
    pub(crate) async fn migrate_one(
        &self,
        client: &Client,
        target: &Target,
        set: &MigrationSet,
    ) -> Result<()> {
        let probe = plan::probe_one(client, target).await?;
        plan::check_ledgers(
            set,
            std::slice::from_ref(target),
            std::slice::from_ref(&probe),
            "applied",
        )?;
        let (has_ledger, todo) = probe.work(set);
        let run = runner::apply_target(
            client,
            target,
            &todo,
            has_ledger,
            self.apply_settings(self.settings.tx_mode),
            &Interrupt::never(),
        )
        .await;
        if let Some((_, err)) = run.failure {
            bail!("migration failed on target `{}`: {err}", target.name);
        }
        Ok(())
    }

    /// The highest applied version of one target and what is pending (verify).
    pub(crate) async fn target_version(
        &self,
        client: &Client,
        target: &Target,
        set: &MigrationSet,
    ) -> Result<(Option<i32>, Vec<String>, Vec<String>)> {
        match plan::probe_one(client, target).await? {
            plan::Probe::Present { applied, .. } => {
                let top = applied.keys().next_back().copied();
                let todo = plan::pending(set, &applied)
                    .iter()
                    .map(|m| m.file_name())
                    .collect();
                let bad = plan::mismatches(set, &applied)
                    .into_iter()
                    .map(|(_, f, _)| f)
                    .collect();
                Ok((top, todo, bad))
            }
            _ => bail!("schema `{}` does not exist", target.schema),
        }
    }
}
