//! Applying: a target's pending migrations, one transaction each, and the worker loop
//! that does it for every target that planning found behind.
//!
//! Each pending migration gets its own transaction, opened with `lock_timeout`,
//! `statement_timeout`, `search_path` = the target's schema and a per-target advisory
//! lock, then the file, then the tier's post-migration step ([`after_migration`]), then
//! the ledger row, then COMMIT, all in one round trip. A failure rolls that transaction
//! back and stops that target; the others go on (or, with `fail_fast`, no new target
//! starts). Ctrl-C stops between migrations: what is applied stays applied.
//!
//! Pool, bridge and silo targets go through the same loop; only where a target's
//! connection comes from differs, and [`Connections::get`] decides that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::conns::Connections;
use super::plan::Probe;
use super::{AppliedMigration, MigrateOptions, TargetOutcome, TargetReport};
use crate::db::connect::describe;
use crate::db::ident::{ident, literal};
use crate::db::migrations::{Migration, MigrationSet, line_col};
use crate::db::sql;
use crate::db::{Location, Target};
use crate::interrupt::Interrupt;

/// What a run's workers share.
pub(super) struct Run<'a> {
    pub set: &'a MigrationSet,
    pub opts: &'a MigrateOptions,
    pub on_done: &'a (dyn Fn(&TargetReport) + Sync),
    /// `lock_timeout` and `statement_timeout` of each migration, in ms.
    pub timeouts: (u64, u64),
    pub conns: &'a Connections,
    /// How many targets are migrated at once: at most the budget's worker slots.
    pub workers: usize,
}

/// Migrates every target whose planned report is `NotRun`, `run.workers` at a time, and
/// returns the reports with their outcomes. `on_done` is called as each one settles.
pub(super) async fn run_targets(
    run: &Run<'_>,
    targets: &[Target],
    probes: &[Probe],
    mut reports: Vec<TargetReport>,
) -> Vec<TargetReport> {
    let opts = run.opts;
    let mut work: Vec<usize> = (0..reports.len())
        .filter(|&i| reports[i].outcome == TargetOutcome::NotRun)
        .collect();
    // Shared targets first: the pool's idle connections are then closed once, when the
    // silos start, not each time a silo comes up between two bridges.
    work.sort_by_key(|&i| !matches!(targets[i].location, Location::Shared));
    let stop = AtomicBool::new(
        opts.fail_fast && reports.iter().any(|r| r.outcome == TargetOutcome::Failed),
    );
    let skip = |mut r: TargetReport| {
        r.outcome = if opts.interrupt.is_set() {
            TargetOutcome::Interrupted
        } else {
            TargetOutcome::NotRun
        };
        (run.on_done)(&r);
        r
    };
    let settle = |r: TargetReport| {
        if r.outcome == TargetOutcome::Failed && opts.fail_fast {
            stop.store(true, Ordering::SeqCst);
        }
        (run.on_done)(&r);
        r
    };
    let done: Vec<(usize, TargetReport)> = futures::stream::iter(work)
        .map(|i| {
            let base = reports[i].clone();
            let (stop, skip, settle) = (&stop, &skip, &settle);
            async move {
                if stop.load(Ordering::SeqCst) || opts.interrupt.is_set() {
                    return (i, skip(base));
                }
                let r = migrate_target(run, &targets[i], &probes[i], base).await;
                (i, settle(r))
            }
        })
        .buffer_unordered(run.workers.max(1))
        .collect()
        .await;
    for (i, r) in done {
        reports[i] = r;
    }
    reports
}

/// One target, start to end, over the connection [`Connections::get`] gives it; the
/// connection is given back (or closed) before this returns, so before the slot frees.
async fn migrate_target(
    run: &Run<'_>,
    target: &Target,
    probe: &Probe,
    base: TargetReport,
) -> TargetReport {
    let (has_ledger, todo) = probe.work(run.set);
    let conn = match run.conns.get(target).await {
        Ok(c) => c,
        Err(e) => return failed(base, format!("{e:#}")),
    };
    let applying = apply_target(
        &conn,
        target,
        &todo,
        has_ledger,
        run.timeouts,
        &run.opts.interrupt,
    )
    .await;
    drop(conn);
    finish(base, applying, todo.len())
}

/// The post-migration step of a target's tier.
fn after_migration(target: &Target) -> String {
    crate::isolation::model(target.isolation).after_migration(target)
}

/// The result of applying a target's pending migrations.
pub(super) struct Applying {
    pub applied: Vec<AppliedMigration>,
    /// Pending when planned, found in the ledger when their turn came (another session
    /// applied them meanwhile); not applied by this run.
    pub found_applied: Vec<i32>,
    /// The file that failed and the error.
    pub failure: Option<(String, String)>,
    pub interrupted: bool,
}

/// Applies `pending` to `target` over `client`, one transaction per migration; stops at
/// the first failure (rolled back).
pub(super) async fn apply_target(
    client: &Client,
    target: &Target,
    pending: &[&Migration],
    mut has_ledger: bool,
    timeouts: (u64, u64),
    interrupt: &Interrupt,
) -> Applying {
    let mut out = Applying {
        applied: Vec::new(),
        found_applied: Vec::new(),
        failure: None,
        interrupted: false,
    };
    let (lock_ms, statement_ms) = timeouts;
    let ledger = format!("{}.{}", ident(&target.schema), ident(sql::LEDGER));
    let hook = after_migration(target);
    for m in pending {
        if interrupt.is_set() {
            out.interrupted = true;
            break;
        }
        let started = Instant::now();
        let open = format!(
            "BEGIN;
SET LOCAL lock_timeout = {lock_ms};
SET LOCAL statement_timeout = {statement_ms};
SET LOCAL search_path TO {schema};
{lock}{create_ledger}SELECT 'applied' FROM {ledger} WHERE version = {version};",
            schema = ident(&target.schema),
            lock = sql::target_lock(&target.schema),
            create_ledger = if has_ledger {
                String::new()
            } else {
                sql::ledger_ddl(&target.schema)
            },
            version = m.version,
        );
        let already = match client.simple_query(&open).await {
            Ok(msgs) => msgs.iter().any(
                |msg| matches!(msg, SimpleQueryMessage::Row(r) if r.get(0) == Some("applied")),
            ),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                out.failure = Some((
                    m.file_name(),
                    format!(
                        "cannot start the transaction for `{}`: {}",
                        m.file_name(),
                        describe(&e)
                    ),
                ));
                break;
            }
        };
        has_ledger = true;
        if already {
            // Applied by a concurrent provisioning of the same target since planning.
            let _ = client.batch_execute("ROLLBACK").await;
            out.found_applied.push(m.version);
            continue;
        }
        let body_chars = m.sql.chars().count();
        let apply = format!(
            "{body}\n;\n{hook}\nINSERT INTO {ledger} (version, name, checksum, applied_at, duration_ms) VALUES ({version}, {name}, {checksum}, now(), (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint);\nCOMMIT;",
            body = m.sql,
            version = m.version,
            name = literal(&m.name),
            checksum = literal(&m.checksum),
        );
        match client.batch_execute(&apply).await {
            Ok(()) => out.applied.push(AppliedMigration {
                version: m.version,
                name: m.name.clone(),
                duration_ms: started.elapsed().as_millis() as u64,
            }),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                out.failure = Some((m.file_name(), migration_error(m, body_chars, &e)));
                break;
            }
        }
    }
    out
}

/// "`0003_x.sql` line 2, column 1: ERROR 42601: syntax error at or near "CREAT"".
fn migration_error(m: &Migration, body_chars: usize, e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("`{}`: {}", m.file_name(), describe(e));
    };
    let mut s = format!("`{}`", m.file_name());
    if let Some(ErrorPosition::Original(pos)) = db.position()
        && (*pos as usize) <= body_chars
    {
        let (line, col) = line_col(&m.sql, *pos as usize);
        s.push_str(&format!(" line {line}, column {col}"));
    }
    s.push_str(&format!(": {}", describe(e)));
    if let Some(w) = db.where_() {
        // PL/pgSQL context of an error inside a DO block or function.
        let w = w.lines().next().unwrap_or("");
        if !w.is_empty() {
            s.push_str(&format!(" (where: {w})"));
        }
    }
    s
}

/// The planned report of a target, completed with what applying it did. `want` is how
/// many migrations were pending.
fn finish(mut r: TargetReport, run: Applying, want: usize) -> TargetReport {
    let reached = run
        .applied
        .iter()
        .map(|a| a.version)
        .chain(run.found_applied.iter().copied())
        .max();
    r.to_version = r.to_version.max(reached);
    let done = run.applied.len() + run.found_applied.len();
    r.applied = run.applied;
    r.applied_concurrently = run.found_applied;
    r.outcome = if let Some((file, err)) = run.failure {
        r.failed_migration = Some(file);
        r.error = Some(err);
        TargetOutcome::Failed
    } else if run.interrupted && done < want {
        TargetOutcome::Interrupted
    } else if r.applied.is_empty() {
        TargetOutcome::UpToDate
    } else {
        TargetOutcome::Migrated
    };
    r
}

fn failed(mut r: TargetReport, error: String) -> TargetReport {
    r.outcome = TargetOutcome::Failed;
    r.error = Some(error);
    r
}
