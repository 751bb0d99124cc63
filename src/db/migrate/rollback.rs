//! `db rollback --to <version>`: on each selected target, every applied migration above
//! `<version>` is undone by its down file (`NNNN_name.down.sql`), newest first.
//!
//! A rollback is planned like a run of `db migrate`, under the same exclusive fleet
//! lock: the ledgers are read with a few queries and checked against the files (an
//! edited or vanished migration stops everything), then every down file the plan needs
//! must exist, or nothing runs anywhere and the error names each missing file and the
//! targets that need it. [`Database::rollback_plan`] is the same plan without the lock,
//! for the confirmation prompt.
//!
//! Each down file runs in its own transaction, opened like a migration's (timeouts,
//! `search_path`, the per-target lock), which first deletes the migration's ledger row
//! (finding none means another session rolled it back: skipped), then runs the file,
//! then the tier's post-migration step so grants and row-level security match the
//! schema that remains, then commits: the ledger never claims what the schema lacks. A
//! no-transaction down file runs statement by statement like a no-transaction migration.
//! Failures stop their target only, as in `db migrate`.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::conns::{self, Connections};
use super::plan::{self, Probe};
use super::runner::{
    self, Apply, Direction, NoTx, Settle, after_migration, ledger, pipeline, script_error,
    tx_settings,
};
use super::{TxMode, control};
use crate::db::connect::describe;
use crate::db::migrations::{Migration, MigrationSet};
use crate::db::{Database, Target};
use crate::interrupt::Interrupt;
use crate::tenant::{Isolation, Tier};

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// Undo every applied migration above this version (0: all of them).
    pub to: i32,
    /// Stop starting targets after the first failure.
    pub fail_fast: bool,
    /// Targets rolled back at once (bounded further by `[database] connection_budget`).
    pub parallelism: usize,
    /// How long to wait for another run's lock; zero fails at once.
    pub lock_wait: Duration,
    pub interrupt: Interrupt,
}

/// A migration a rollback undid.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub version: i32,
    pub name: String,
    /// The down file that ran, and its SHA-256 (down files are not recorded anywhere
    /// else: this says exactly what ran).
    pub down_file: String,
    pub down_checksum: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackOutcome {
    /// Every migration above the version was undone.
    RolledBack,
    /// Nothing was applied above the version.
    Unchanged,
    /// A down file (or reaching the target) failed; that one was rolled back.
    Failed,
    /// The schema or database does not exist.
    NotProvisioned,
    /// Not started: `--fail-fast` after an earlier failure.
    NotRun,
    /// Stopped by Ctrl-C between down files.
    Interrupted,
}

impl RollbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackOutcome::RolledBack => "rolled back",
            RollbackOutcome::Unchanged => "unchanged",
            RollbackOutcome::Failed => "failed",
            RollbackOutcome::NotProvisioned => "not provisioned",
            RollbackOutcome::NotRun => "not run",
            RollbackOutcome::Interrupted => "interrupted",
        }
    }
}

/// What a rollback did to one target.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackTarget {
    pub target: String,
    pub tier: Tier,
    pub isolation: Isolation,
    pub schema: String,
    /// `user@host:port/dbname`.
    pub database: String,
    pub from_version: Option<i32>,
    pub to_version: Option<i32>,
    /// Migrations undone, newest first.
    pub rolled_back: Vec<RolledBack>,
    /// Versions planned but found rolled back by another session when their turn came.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rolled_back_concurrently: Vec<i32>,
    pub outcome: RollbackOutcome,
    /// The down file that failed, e.g. `0003_invoices.down.sql`.
    pub failed_migration: Option<String>,
    pub error: Option<String>,
    /// Applied versions as planned, to say where a target ended up.
    #[serde(skip)]
    applied: Vec<i32>,
}

impl Settle for RollbackTarget {
    fn failed(&self) -> bool {
        self.outcome == RollbackOutcome::Failed
    }

    fn skipped(mut self, interrupted: bool) -> Self {
        self.outcome = if interrupted {
            RollbackOutcome::Interrupted
        } else {
            RollbackOutcome::NotRun
        };
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// The version rolled back to (0: none left).
    pub to: i32,
    /// Down files this run ran, over all targets.
    pub migrations_rolled_back: usize,
    /// Targets this run undid at least one migration on.
    pub targets_rolled_back: usize,
    pub targets: Vec<RollbackTarget>,
    pub elapsed_ms: u64,
}

impl RollbackReport {
    /// Targets whose outcome is `outcome`.
    pub fn count(&self, outcome: RollbackOutcome) -> usize {
        self.targets.iter().filter(|t| t.outcome == outcome).count()
    }

    pub fn interrupted(&self) -> bool {
        self.count(RollbackOutcome::Interrupted) > 0
    }
}

/// What a rollback would run, for the confirmation prompt.
#[derive(Debug, Clone)]
pub struct RollbackPlan {
    pub to: i32,
    /// Per target with something to undo: its name, tier and the down files, in order.
    pub targets: Vec<(String, Tier, Vec<String>)>,
}

impl RollbackPlan {
    /// Down files to run, over all targets.
    pub fn migrations(&self) -> usize {
        self.targets.iter().map(|t| t.2.len()).sum()
    }
}

/// Per target, the applied migrations above `to`, newest first. Refuses, naming every
/// missing down file and the targets that need it, when one is missing.
fn undo<'a>(
    set: &'a MigrationSet,
    targets: &[Target],
    probes: &[Probe],
    to: i32,
) -> Result<Vec<Vec<&'a Migration>>> {
    let mut missing: BTreeMap<std::cmp::Reverse<i32>, (String, Vec<String>)> = BTreeMap::new();
    let mut out = Vec::new();
    for (t, p) in targets.iter().zip(probes) {
        let todo: Vec<&Migration> = p
            .applied()
            .map(|a| {
                a.keys()
                    .rev()
                    .filter(|v| **v > to)
                    // Every applied version has a file: check_ledgers ran first.
                    .filter_map(|v| set.get(*v))
                    .collect()
            })
            .unwrap_or_default();
        for m in &todo {
            if m.down.is_none() {
                missing
                    .entry(std::cmp::Reverse(m.version))
                    .or_insert_with(|| (m.down_file_name(), Vec::new()))
                    .1
                    .push(t.name.clone());
            }
        }
        out.push(todo);
    }
    if !missing.is_empty() {
        let files: Vec<String> = missing
            .values()
            .map(|(file, names)| {
                format!(
                    "`{file}` (needed on {} target(s): {})",
                    names.len(),
                    plan::list_targets(names)
                )
            })
            .collect();
        bail!(
            "cannot roll back to version {to}: {} down file(s) missing: {}; nothing was rolled back\nhint: write each missing NNNN_name.down.sql beside its migration in `{}`, or roll back to a version above it",
            files.len(),
            files.join(", "),
            set.dir.display()
        );
    }
    Ok(out)
}

/// A target's row as planning leaves it.
fn planned(db: &Database, t: &Target, probe: &Probe, todo: &[&Migration]) -> RollbackTarget {
    let (outcome, error) = match probe {
        Probe::Missing => (RollbackOutcome::NotProvisioned, None),
        Probe::Error(e) => (RollbackOutcome::Failed, Some(e.clone())),
        Probe::Present { .. } if todo.is_empty() => (RollbackOutcome::Unchanged, None),
        Probe::Present { .. } => (RollbackOutcome::NotRun, None),
    };
    let from = probe.version();
    RollbackTarget {
        target: t.name.clone(),
        tier: t.tier,
        isolation: t.isolation,
        schema: t.schema.clone(),
        database: plan::database_label(db, t),
        from_version: from,
        to_version: from,
        rolled_back: Vec::new(),
        rolled_back_concurrently: Vec::new(),
        outcome,
        failed_migration: None,
        error,
        applied: probe
            .applied()
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default(),
    }
}

/// What undoing a target's migrations did.
struct Undoing {
    rolled_back: Vec<RolledBack>,
    found: Vec<i32>,
    failure: Option<(String, String)>,
    interrupted: bool,
    /// A no-transaction down file ran on the session: discard the connection after.
    dirty: bool,
}

/// Undoes `todo` (newest first) on `target` over `client`, one transaction per down
/// file; stops at the first failure.
async fn undo_target(
    client: &Client,
    target: &Target,
    todo: &[&Migration],
    apply: Apply,
    interrupt: &Interrupt,
) -> Undoing {
    let mut out = Undoing {
        rolled_back: Vec::new(),
        found: Vec::new(),
        failure: None,
        interrupted: false,
        dirty: false,
    };
    for m in todo {
        if interrupt.is_set() {
            out.interrupted = true;
            break;
        }
        let Some(down) = &m.down else {
            // Planning refuses a rollback with a missing down file.
            out.failure = Some((
                m.down_file_name(),
                format!("`{}` is missing", m.down_file_name()),
            ));
            break;
        };
        let result = if down.no_transaction {
            out.dirty = true;
            runner::run_no_tx(client, target, m, Direction::Down, true, apply)
                .await
                .map(|r| match r {
                    NoTx::Done(ms) => Some(ms),
                    NoTx::AlreadyDone => None,
                })
        } else {
            undo_one(client, target, m, &down.sql, apply).await
        };
        match result {
            Ok(Some(duration_ms)) => out.rolled_back.push(RolledBack {
                version: m.version,
                name: m.name.clone(),
                down_file: m.down_file_name(),
                down_checksum: down.checksum.clone(),
                duration_ms,
            }),
            Ok(None) => out.found.push(m.version),
            Err(failure) => {
                out.failure = Some(failure);
                break;
            }
        }
    }
    out
}

/// One transactional down file: the ledger row goes first (none: already rolled back),
/// then the file, the post-migration step and COMMIT, pipelined. `Ok(None)`: nothing to
/// do any more.
async fn undo_one(
    client: &Client,
    target: &Target,
    m: &Migration,
    down_sql: &str,
    apply: Apply,
) -> Result<Option<u64>, (String, String)> {
    let started = Instant::now();
    let file = m.down_file_name();
    let open = format!(
        "BEGIN;\n{}DELETE FROM {} WHERE version = {} RETURNING 'deleted';",
        tx_settings(target, apply),
        ledger(target),
        m.version
    );
    let rollback = || async {
        if !client.is_closed() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
    };
    match client.simple_query(&open).await {
        Err(e) => {
            rollback().await;
            return Err((
                file.clone(),
                format!(
                    "cannot start the transaction for `{file}`: {}",
                    describe(&e)
                ),
            ));
        }
        Ok(msgs) => {
            let deleted = msgs.iter().any(
                |msg| matches!(msg, SimpleQueryMessage::Row(r) if r.get(0) == Some("deleted")),
            );
            if !deleted {
                rollback().await;
                return Ok(None);
            }
        }
    }
    let steps = [
        down_sql.to_string(),
        after_migration(target),
        "COMMIT".to_string(),
    ];
    let results = pipeline(client, &steps).await;
    let Some((k, e)) = results
        .iter()
        .enumerate()
        .find_map(|(k, r)| r.as_ref().err().map(|e| (k, e)))
    else {
        return Ok(Some(started.elapsed().as_millis() as u64));
    };
    rollback().await;
    let error = match k {
        0 => script_error(&file, down_sql, 0, down_sql.chars().count(), e),
        1 => format!(
            "the post-migration step after `{file}` failed (rolled back): {}",
            runner::error_with_where(e)
        ),
        _ => format!("COMMIT of `{file}` failed: {}", describe(e)),
    };
    Err((file, error))
}

/// The planned report of a target, completed with what undoing it did.
fn finish(mut r: RollbackTarget, run: Undoing, want: usize) -> RollbackTarget {
    let gone: HashSet<i32> = run
        .rolled_back
        .iter()
        .map(|m| m.version)
        .chain(run.found.iter().copied())
        .collect();
    r.to_version = r
        .applied
        .iter()
        .copied()
        .filter(|v| !gone.contains(v))
        .max();
    let done = gone.len();
    r.rolled_back = run.rolled_back;
    r.rolled_back_concurrently = run.found;
    r.outcome = if let Some((file, err)) = run.failure {
        r.failed_migration = Some(file);
        r.error = Some(err);
        RollbackOutcome::Failed
    } else if run.interrupted && done < want {
        RollbackOutcome::Interrupted
    } else if r.rolled_back.is_empty() {
        RollbackOutcome::Unchanged
    } else {
        RollbackOutcome::RolledBack
    };
    r
}

impl Database {
    /// What [`rollback`](Self::rollback) would run, read without taking the lock (the
    /// confirmation prompt). Refuses as the rollback would: an edited or unknown applied
    /// migration, a missing down file.
    pub async fn rollback_plan(
        &self,
        targets: Vec<Target>,
        set: &MigrationSet,
        to: i32,
    ) -> Result<RollbackPlan> {
        let purpose = "tenantctl db rollback";
        let client = self.admin.connect(purpose).await?;
        let silo_conns = conns::worker_slots(self.settings.connection_budget).min(8);
        let probes = plan::probe_all(&client, &targets, silo_conns, purpose).await?;
        plan::check_ledgers(set, &targets, &probes, "rolled back")?;
        let todo = undo(set, &targets, &probes, to)?;
        Ok(RollbackPlan {
            to,
            targets: targets
                .iter()
                .zip(todo)
                .filter(|(_, todo)| !todo.is_empty())
                .map(|(t, todo)| {
                    (
                        t.name.clone(),
                        t.tier,
                        todo.iter().map(|m| m.down_file_name()).collect(),
                    )
                })
                .collect(),
        })
    }

    /// Undoes every applied migration above `opts.to` on every target, newest first.
    /// An error returned here means no target was changed (no admin connection, lock
    /// held, edited migration, missing down file); failures of single targets are in
    /// the report.
    pub async fn rollback(
        &self,
        mut targets: Vec<Target>,
        set: &MigrationSet,
        opts: &RollbackOptions,
        on_done: &(dyn Fn(&RollbackTarget) + Sync),
    ) -> Result<RollbackReport> {
        let started = Instant::now();
        let mut seen = HashSet::new();
        targets.retain(|t| seen.insert(t.name.clone()));
        let purpose = "tenantctl db rollback";
        let workers = opts
            .parallelism
            .clamp(1, conns::worker_slots(self.settings.connection_budget));

        let control = self.admin.connect(purpose).await?;
        control::ensure_control(&control).await?;
        control::lock_run(&control, true, opts.lock_wait, &self.admin.label()).await?;
        let probes = plan::probe_all(&control, &targets, workers, purpose).await?;
        plan::check_ledgers(set, &targets, &probes, "rolled back")?;
        let todo = undo(set, &targets, &probes, opts.to)?;
        let had_errors = control::targets_with_errors(&control).await?;

        let reports: Vec<RollbackTarget> = targets
            .iter()
            .zip(&probes)
            .zip(&todo)
            .map(|((t, p), todo)| planned(self, t, p, todo))
            .collect();
        for r in &reports {
            if r.outcome != RollbackOutcome::NotRun {
                on_done(r);
            }
        }
        let work: Vec<usize> = (0..reports.len())
            .filter(|&i| reports[i].outcome == RollbackOutcome::NotRun)
            .collect();
        // The transaction mode does not apply: each down file is its own transaction.
        let apply = self.apply_settings(TxMode::Migration);
        let conns = Connections::new(&self.admin, purpose, workers);
        let w = runner::Workers {
            workers,
            fail_fast: opts.fail_fast,
            interrupt: &opts.interrupt,
        };
        let reports = runner::run_each(w, reports, work, &targets, on_done, |i, base| {
            let (target, todo, conns) = (&targets[i], &todo[i], &conns);
            async move {
                let conn = match conns.get(target).await {
                    Ok(c) => c,
                    Err(e) => {
                        let mut r = base;
                        r.outcome = RollbackOutcome::Failed;
                        r.error = Some(format!("{e:#}"));
                        return r;
                    }
                };
                let run = undo_target(&conn, target, todo, apply, &opts.interrupt).await;
                if run.dirty {
                    conn.discard();
                } else {
                    drop(conn);
                }
                finish(base, run, todo.len())
            }
        })
        .await;
        drop(conns);

        let rows: Vec<(String, Tier, Option<String>)> = reports
            .iter()
            .filter_map(|r| match r.outcome {
                RollbackOutcome::Failed => Some((r.target.clone(), r.tier, r.error.clone())),
                RollbackOutcome::RolledBack | RollbackOutcome::Unchanged
                    if had_errors.contains(&r.target) =>
                {
                    Some((r.target.clone(), r.tier, None))
                }
                _ => None,
            })
            .collect();
        self.end_run(control, &rows, purpose).await;
        Ok(RollbackReport {
            to: opts.to,
            migrations_rolled_back: reports.iter().map(|r| r.rolled_back.len()).sum(),
            targets_rolled_back: reports.iter().filter(|r| !r.rolled_back.is_empty()).count(),
            targets: reports,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}
