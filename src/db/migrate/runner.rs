//! Applying: a target's pending migrations, and the worker loop that does it for every
//! target that planning found behind.
//!
//! A target's pending migrations are cut into groups, each one transaction:
//!
//! - `--tx-mode target`: every run of consecutive transactional migrations is one group,
//!   so a target normally gets one transaction, one COMMIT and one post-migration step
//!   for all it lacks, and a failure anywhere leaves it at its previous version;
//! - `--tx-mode migration`: each migration is its own group, so a failure keeps the
//!   migrations before it;
//! - a no-transaction migration is never in a group: its statements run one at a time
//!   outside a transaction ([`run_no_tx`]), then the post-migration step and its ledger
//!   row commit in a transaction of their own.
//!
//! A group is sent as a pipeline, one round trip whatever its size: `BEGIN`; the opening
//! (`lock_timeout`, `statement_timeout`, `search_path` = the target's schema, the
//! per-target advisory lock, and the group's ledger rows claimed up front); each file,
//! each followed by the time it took written into its ledger row; the tier's
//! post-migration step ([`after_migration`]) once; `COMMIT`. Each part is a message of
//! its own, so an error names the file it came from (and its line), and once anything
//! fails the server refuses the rest and turns the `COMMIT` into a rollback. `BEGIN` is
//! alone in the first message: every later message then runs inside the transaction or
//! not at all. Claiming the ledger rows first is what detects another session having
//! applied one of them meanwhile (a unique violation on the ledger, before any file
//! ran): those are reported as applied concurrently and the rest is retried.
//!
//! Failures stop that target; the others go on (or, with `fail_fast`, no new target
//! starts). Ctrl-C stops between groups: what is committed stays committed.
//!
//! Pool, bridge and silo targets go through the same loop; only where a target's
//! connection comes from differs, and [`Connections::get`] decides that.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::conns::Connections;
use super::plan::Probe;
use super::{AppliedMigration, MigrateOptions, TargetOutcome, TargetReport, TxMode};
use crate::db::connect::describe;
use crate::db::ident::{ident, literal};
use crate::db::migrations::{Migration, MigrationSet, Statement, line_col};
use crate::db::sql;
use crate::db::{Location, Target};
use crate::interrupt::Interrupt;

/// How a run applies migrations: per-statement timeouts in ms, and the transaction mode.
#[derive(Debug, Clone, Copy)]
pub(super) struct Apply {
    pub lock_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub tx_mode: TxMode,
}

/// What a run's workers share.
pub(super) struct Run<'a> {
    pub set: &'a MigrationSet,
    pub opts: &'a MigrateOptions,
    pub on_done: &'a (dyn Fn(&TargetReport) + Sync),
    pub apply: Apply,
    pub conns: &'a Connections,
    /// How many targets are migrated at once: at most the budget's worker slots.
    pub workers: usize,
}

/// A target's report as the worker loop handles it.
pub(super) trait Settle: Clone {
    fn failed(&self) -> bool;
    /// Not started: after Ctrl-C (`interrupted`), or after a failure with fail-fast.
    fn skipped(self, interrupted: bool) -> Self;
}

impl Settle for TargetReport {
    fn failed(&self) -> bool {
        self.outcome == TargetOutcome::Failed
    }

    fn skipped(mut self, interrupted: bool) -> Self {
        self.outcome = if interrupted {
            TargetOutcome::Interrupted
        } else {
            TargetOutcome::NotRun
        };
        self
    }
}

/// How the worker loop runs.
pub(super) struct Workers<'a> {
    /// Targets worked on at once.
    pub workers: usize,
    pub fail_fast: bool,
    pub interrupt: &'a Interrupt,
}

/// Runs `work` (indexes into `reports` and `targets`) `w.workers` at a time through
/// `each`, which gets a target's planned report and returns it settled; shared-database
/// targets go first, so the pool's idle connections are closed once, when the silos
/// start. With `fail_fast`, no target starts after one failed (or after a planning
/// failure already in `reports`); after Ctrl-C none starts. `on_done` is called as each
/// one settles.
pub(super) async fn run_each<R, F, Fut>(
    w: Workers<'_>,
    mut reports: Vec<R>,
    mut work: Vec<usize>,
    targets: &[Target],
    on_done: &(dyn Fn(&R) + Sync),
    each: F,
) -> Vec<R>
where
    R: Settle,
    F: Fn(usize, R) -> Fut,
    Fut: Future<Output = R>,
{
    let Workers {
        workers,
        fail_fast,
        interrupt,
    } = w;
    work.sort_by_key(|&i| !matches!(targets[i].location, Location::Shared));
    let stop = AtomicBool::new(fail_fast && reports.iter().any(Settle::failed));
    let done: Vec<(usize, R)> = futures::stream::iter(work)
        .map(|i| {
            let base = reports[i].clone();
            let (stop, each) = (&stop, &each);
            async move {
                if stop.load(Ordering::SeqCst) || interrupt.is_set() {
                    let r = base.skipped(interrupt.is_set());
                    on_done(&r);
                    return (i, r);
                }
                let r = each(i, base).await;
                if r.failed() && fail_fast {
                    stop.store(true, Ordering::SeqCst);
                }
                on_done(&r);
                (i, r)
            }
        })
        .buffer_unordered(workers.max(1))
        .collect()
        .await;
    for (i, r) in done {
        reports[i] = r;
    }
    reports
}

/// Migrates every target whose planned report is `NotRun`, `run.workers` at a time, and
/// returns the reports with their outcomes.
pub(super) async fn run_targets(
    run: &Run<'_>,
    targets: &[Target],
    probes: &[Probe],
    reports: Vec<TargetReport>,
) -> Vec<TargetReport> {
    let work: Vec<usize> = (0..reports.len())
        .filter(|&i| reports[i].outcome == TargetOutcome::NotRun)
        .collect();
    let w = Workers {
        workers: run.workers,
        fail_fast: run.opts.fail_fast,
        interrupt: &run.opts.interrupt,
    };
    run_each(w, reports, work, targets, run.on_done, |i, base| {
        migrate_target(run, &targets[i], &probes[i], base)
    })
    .await
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
        run.apply,
        &run.opts.interrupt,
    )
    .await;
    if applying.dirty {
        conn.discard();
    } else {
        drop(conn);
    }
    finish(base, applying, todo.len())
}

/// The post-migration step of a target's tier.
pub(super) fn after_migration(target: &Target) -> String {
    crate::isolation::model(target.isolation).after_migration(target)
}

/// `schema.schema_migrations`, quoted.
pub(super) fn ledger(target: &Target) -> String {
    format!("{}.{}", ident(&target.schema), ident(sql::LEDGER))
}

/// The start of every migration transaction: timeouts, `search_path`, the target lock.
pub(super) fn tx_settings(target: &Target, apply: Apply) -> String {
    format!(
        "SET LOCAL lock_timeout = {};\nSET LOCAL statement_timeout = {};\nSET LOCAL search_path TO {};\n{}",
        apply.lock_timeout_ms,
        apply.statement_timeout_ms,
        ident(&target.schema),
        sql::target_lock(&target.schema)
    )
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
    /// A no-transaction file ran on the session: discard the connection after.
    pub dirty: bool,
}

/// Cuts `pending` into the transactions `mode` asks for; a no-transaction migration is
/// always alone.
fn groups<'a>(pending: &[&'a Migration], mode: TxMode) -> Vec<Vec<&'a Migration>> {
    let mut out: Vec<Vec<&Migration>> = Vec::new();
    for m in pending {
        let joins = mode == TxMode::Target
            && !m.no_transaction
            && out
                .last()
                .and_then(|g| g.last())
                .is_some_and(|last| !last.no_transaction);
        match out.last_mut() {
            Some(g) if joins => g.push(m),
            _ => out.push(vec![m]),
        }
    }
    out
}

/// Applies `pending` to `target` over `client`, in the transactions `apply.tx_mode`
/// asks for; stops at the first failure (that transaction rolled back).
pub(super) async fn apply_target(
    client: &Client,
    target: &Target,
    pending: &[&Migration],
    mut has_ledger: bool,
    apply: Apply,
    interrupt: &Interrupt,
) -> Applying {
    let mut out = Applying {
        applied: Vec::new(),
        found_applied: Vec::new(),
        failure: None,
        interrupted: false,
        dirty: false,
    };
    let mut queue = groups(pending, apply.tx_mode);
    queue.reverse();
    while let Some(group) = queue.pop() {
        if interrupt.is_set() {
            out.interrupted = true;
            break;
        }
        if group[0].no_transaction {
            let m = group[0];
            out.dirty = true;
            match run_no_tx(client, target, m, Direction::Up, has_ledger, apply).await {
                Ok(NoTx::Done(duration_ms)) => out.applied.push(AppliedMigration {
                    version: m.version,
                    name: m.name.clone(),
                    duration_ms,
                }),
                Ok(NoTx::AlreadyDone) => out.found_applied.push(m.version),
                Err(failure) => {
                    out.failure = Some(failure);
                    break;
                }
            }
            has_ledger = true;
            continue;
        }
        match apply_group(client, target, &group, has_ledger, apply).await {
            Ok(applied) => out.applied.extend(applied),
            Err(GroupError::Concurrent) => {
                // Which of them another session applied; the rest is tried again.
                match applied_among(client, target, &group).await {
                    Ok(done) if !done.is_empty() => {
                        out.found_applied.extend(&done);
                        let rest: Vec<&Migration> = group
                            .iter()
                            .copied()
                            .filter(|m| !done.contains(&m.version))
                            .collect();
                        if !rest.is_empty() {
                            queue.push(rest);
                        }
                    }
                    Ok(_) => {
                        out.failure = Some((
                            group[0].file_name(),
                            format!(
                                "`{}`: the ledger refused its row, yet holds none of the versions being applied",
                                group[0].file_name()
                            ),
                        ));
                        break;
                    }
                    Err(e) => {
                        out.failure = Some((
                            group[0].file_name(),
                            format!(
                                "cannot read the ledger of `{}`: {}",
                                target.schema,
                                describe(&e)
                            ),
                        ));
                        break;
                    }
                }
            }
            Err(GroupError::Failed { file, error }) => {
                out.failure = Some((file, error));
                break;
            }
        }
        has_ledger = true;
    }
    out
}

/// The versions of `group` the target's ledger holds.
async fn applied_among(
    client: &Client,
    target: &Target,
    group: &[&Migration],
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let versions: Vec<i32> = group.iter().map(|m| m.version).collect();
    let rows = client
        .query(
            &format!(
                "SELECT version FROM {} WHERE version = ANY($1)",
                ledger(target)
            ),
            &[&versions],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

enum GroupError {
    /// A version of the group was in the ledger already: nothing ran.
    Concurrent,
    Failed {
        file: String,
        error: String,
    },
}

/// Which message of a group's pipeline a result belongs to.
#[derive(Debug, Clone, Copy)]
enum Step {
    Begin,
    Open,
    Body(usize),
    Ledger(usize),
    Hook,
    Commit,
}

/// Sends `messages` one after the other without waiting for the answers (one round
/// trip), and returns each one's result in order.
pub(super) async fn pipeline(
    client: &Client,
    messages: &[String],
) -> Vec<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>> {
    // join_all polls the futures in order on its first poll, and each sends its query
    // on its first poll: the server receives them in this order.
    futures::future::join_all(messages.iter().map(|m| client.simple_query(m))).await
}

/// One transaction over `group`, as one pipeline (see the module docs).
async fn apply_group(
    client: &Client,
    target: &Target,
    group: &[&Migration],
    has_ledger: bool,
    apply: Apply,
) -> Result<Vec<AppliedMigration>, GroupError> {
    let ledger = ledger(target);
    let mark =
        "SELECT pg_catalog.set_config('tenantctl.mark', pg_catalog.clock_timestamp()::text, true);";
    let rows: Vec<String> = group
        .iter()
        .map(|m| {
            format!(
                "({}, {}, {}, now(), 0)",
                m.version,
                literal(&m.name),
                literal(&m.checksum)
            )
        })
        .collect();
    let open = format!(
        "{settings}{create_ledger}INSERT INTO {ledger} (version, name, checksum, applied_at, duration_ms) VALUES {rows};\n{mark}",
        settings = tx_settings(target, apply),
        create_ledger = if has_ledger {
            String::new()
        } else {
            sql::ledger_ddl(&target.schema)
        },
        rows = rows.join(", "),
    );
    let mut steps = vec![(Step::Begin, "BEGIN".to_string()), (Step::Open, open)];
    for (k, m) in group.iter().enumerate() {
        steps.push((Step::Body(k), m.sql.clone()));
        steps.push((
            Step::Ledger(k),
            format!(
                "UPDATE {ledger} SET duration_ms = (extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.current_setting('tenantctl.mark')::timestamptz) * 1000)::bigint WHERE version = {v} RETURNING duration_ms;\n{mark}",
                v = m.version
            ),
        ));
    }
    steps.push((Step::Hook, after_migration(target)));
    steps.push((Step::Commit, "COMMIT".to_string()));
    let messages: Vec<String> = steps.iter().map(|(_, s)| s.clone()).collect();
    let results = pipeline(client, &messages).await;

    let first_error = steps
        .iter()
        .zip(&results)
        .find_map(|((step, _), r)| r.as_ref().err().map(|e| (*step, e)));
    let Some((step, e)) = first_error else {
        let mut applied = Vec::new();
        for ((step, _), r) in steps.iter().zip(&results) {
            if let (Step::Ledger(k), Ok(msgs)) = (step, r) {
                let ms = msgs
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
                        _ => None,
                    })
                    .unwrap_or(0);
                applied.push(AppliedMigration {
                    version: group[*k].version,
                    name: group[*k].name.clone(),
                    duration_ms: ms,
                });
            }
        }
        return Ok(applied);
    };
    // The COMMIT already ended the transaction (as a rollback) unless the connection
    // broke; this only makes sure.
    if !client.is_closed() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    let files = |g: &[&Migration]| {
        g.iter()
            .map(|m| format!("`{}`", m.file_name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // In target mode, say what else the failure took with it.
    let with_others = |k: usize| {
        let others: Vec<&Migration> = group
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, m)| *m)
            .collect();
        if others.is_empty() {
            String::new()
        } else {
            format!(
                " (rolled back with {} in the target's one transaction)",
                files(&others)
            )
        }
    };
    let last = group.len() - 1;
    let (file, error) = match step {
        Step::Begin | Step::Open => {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && e.as_db_error().and_then(|d| d.table()) == Some(sql::LEDGER)
            {
                return Err(GroupError::Concurrent);
            }
            (
                group[0].file_name(),
                format!(
                    "cannot start the transaction for {}: {}",
                    files(group),
                    describe(e)
                ),
            )
        }
        Step::Body(k) => {
            let m = group[k];
            (
                m.file_name(),
                format!(
                    "{}{}",
                    script_error(&m.file_name(), &m.sql, 0, m.sql.chars().count(), e),
                    with_others(k)
                ),
            )
        }
        Step::Ledger(k) => (
            group[k].file_name(),
            format!(
                "cannot record `{}` in the ledger: {}{}",
                group[k].file_name(),
                describe(e),
                with_others(k)
            ),
        ),
        Step::Hook if group.len() == 1 => (
            group[0].file_name(),
            script_error(&group[0].file_name(), "", 0, 0, e),
        ),
        Step::Hook => (
            group[last].file_name(),
            format!(
                "the post-migration step after {} (run once for the target's one transaction): {}; all of them rolled back",
                files(group),
                error_with_where(e)
            ),
        ),
        Step::Commit => (
            group[last].file_name(),
            format!("COMMIT of {} failed: {}", files(group), describe(e)),
        ),
    };
    Err(GroupError::Failed { file, error })
}

/// "ERROR 42P07: ... (where: PL/pgSQL function ...)".
pub(super) fn error_with_where(e: &tokio_postgres::Error) -> String {
    let mut s = describe(e);
    if let Some(w) = e.as_db_error().and_then(|d| d.where_()) {
        // PL/pgSQL context of an error inside a DO block or function.
        let w = w.lines().next().unwrap_or("");
        if !w.is_empty() {
            s.push_str(&format!(" (where: {w})"));
        }
    }
    s
}

/// "`0003_x.sql` line 2, column 1: ERROR 42601: syntax error at or near "CREAT"".
/// `offset` is the character offset in `sql` of the text the server ran, whose length is
/// `chars`: a position past it is in text tenantctl added, and not shown as a line.
pub(super) fn script_error(
    file: &str,
    sql: &str,
    offset: usize,
    chars: usize,
    e: &tokio_postgres::Error,
) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("`{file}`: {}", describe(e));
    };
    let mut s = format!("`{file}`");
    if let Some(ErrorPosition::Original(pos)) = db.position()
        && (*pos as usize) <= chars
    {
        let (line, col) = line_col(sql, offset + *pos as usize);
        s.push_str(&format!(" line {line}, column {col}"));
    }
    s.push_str(&format!(": {}", error_with_where(e)));
    s
}

/// Like [`script_error`] for one statement of `sql` run on its own: the line is the
/// error's if the server gave a position, else the statement's.
fn statement_error(file: &str, sql: &str, s: &Statement, e: &tokio_postgres::Error) -> String {
    let text = s.text(sql);
    let has_position = matches!(
        e.as_db_error().and_then(|d| d.position()),
        Some(ErrorPosition::Original(pos)) if (*pos as usize) <= text.chars().count()
    );
    if has_position {
        let offset = sql[..s.start].chars().count();
        script_error(file, sql, offset, text.chars().count(), e)
    } else {
        format!("`{file}` line {}: {}", s.line, error_with_where(e))
    }
}

/// Which way a no-transaction file runs: applying a migration, or its down file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Up,
    Down,
}

pub(super) enum NoTx {
    /// Ran, in this many ms.
    Done(u64),
    /// The ledger already says it is done (applied, or rolled back).
    AlreadyDone,
}

/// Runs a no-transaction file (`m`'s, or its down file's) one statement at a time, then
/// commits the post-migration step with the ledger change, all under the target lock
/// taken for the session. A `CREATE INDEX CONCURRENTLY` whose index exists is skipped
/// if the index is valid, and dropped and built again if it is not (what a failed
/// concurrent build leaves behind), so a rerun after a failure halfway goes through.
/// The session's lock is released and its timeouts and `search_path` restored
/// afterwards; whatever else the file set stays with the session, which the caller
/// therefore closes rather than pools.
pub(super) async fn run_no_tx(
    client: &Client,
    target: &Target,
    m: &Migration,
    dir: Direction,
    has_ledger: bool,
    apply: Apply,
) -> Result<NoTx, (String, String)> {
    let started = Instant::now();
    let (file, sql_text, statements): (String, &str, &[Statement]) = match (dir, &m.down) {
        (Direction::Up, _) => (m.file_name(), &m.sql, &m.statements),
        (Direction::Down, Some(d)) => (m.down_file_name(), &d.sql, &d.statements),
        (Direction::Down, None) => {
            return Err((
                m.down_file_name(),
                format!("`{}` is missing", m.down_file_name()),
            ));
        }
    };
    let ledger = ledger(target);
    let key = format!(
        "{}, pg_catalog.hashtext({})",
        sql::TARGET_LOCK_CLASS,
        literal(&target.schema)
    );
    let saved = "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('lock_timeout'), pg_catalog.current_setting('statement_timeout')";
    let saved: Vec<String> = match client.simple_query(saved).await {
        Ok(msgs) => msgs
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    (0..3)
                        .map(|i| r.get(i).unwrap_or_default().to_string())
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default(),
        Err(e) => {
            return Err((
                file.clone(),
                format!(
                    "cannot start `{file}` on `{}`: {}",
                    target.schema,
                    describe(&e)
                ),
            ));
        }
    };
    let restore: String = ["search_path", "lock_timeout", "statement_timeout"]
        .iter()
        .zip(&saved)
        .map(|(name, value)| {
            format!(
                "SELECT pg_catalog.set_config({}, {}, false);\n",
                literal(name),
                literal(value)
            )
        })
        .collect();
    let open = format!(
        "SET lock_timeout = {lock}; SET statement_timeout = {stmt}; SET search_path TO {schema};
SELECT pg_catalog.pg_advisory_lock({key});
{create_ledger}SELECT 'done' FROM {ledger} WHERE version = {v};",
        lock = apply.lock_timeout_ms,
        stmt = apply.statement_timeout_ms,
        schema = ident(&target.schema),
        create_ledger = if has_ledger {
            String::new()
        } else {
            sql::ledger_ddl(&target.schema)
        },
        v = m.version,
    );
    let close = format!("{restore}SELECT pg_catalog.pg_advisory_unlock({key});");
    let result = async {
        let in_ledger = client
            .simple_query(&open)
            .await
            .map_err(|e| {
                (
                    file.clone(),
                    format!("cannot start `{file}` on `{}`: {}", target.schema, describe(&e)),
                )
            })?
            .iter()
            .any(|msg| matches!(msg, SimpleQueryMessage::Row(r) if r.get(0) == Some("done")));
        // Applied when it should not be yet, or rolled back already: another session
        // did it since planning.
        let done_already = match dir {
            Direction::Up => in_ledger,
            Direction::Down => !in_ledger,
        };
        if done_already {
            return Ok(NoTx::AlreadyDone);
        }
        for (n, s) in statements.iter().enumerate() {
            let text = s.text(sql_text);
            if let Some(Some(index)) = s.concurrent_index() {
                match index_state(client, &index).await {
                    Ok(Some((true, _))) => {
                        tracing::info!(
                            "{}: `{file}` line {}: index `{}` exists and is valid: skipped",
                            target.name,
                            s.line,
                            index.name
                        );
                        continue;
                    }
                    Ok(Some((false, regclass))) => {
                        tracing::info!(
                            "{}: `{file}` line {}: index {regclass} is invalid (a failed concurrent build): dropping it to build it again",
                            target.name,
                            s.line
                        );
                        if let Err(e) = client
                            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {regclass}"))
                            .await
                        {
                            return Err((
                                file.clone(),
                                format!(
                                    "`{file}` line {}: cannot drop the invalid index {regclass} a failed build left: {}",
                                    s.line,
                                    describe(&e)
                                ),
                            ));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err((
                            file.clone(),
                            format!("cannot look for index `{}`: {}", index.name, describe(&e)),
                        ));
                    }
                }
            }
            if let Err(e) = client.batch_execute(text).await {
                let mut error = statement_error(&file, sql_text, s, &e);
                if n > 0 {
                    error.push_str(&format!(
                        "; it runs outside a transaction: the {n} statement(s) before line {} stay done, and a rerun starts the file again",
                        s.line
                    ));
                }
                return Err((file.clone(), error));
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let record = match dir {
            Direction::Up => format!(
                "INSERT INTO {ledger} (version, name, checksum, applied_at, duration_ms) VALUES ({}, {}, {}, now(), {duration_ms});",
                m.version,
                literal(&m.name),
                literal(&m.checksum)
            ),
            Direction::Down => format!("DELETE FROM {ledger} WHERE version = {};", m.version),
        };
        let finish = format!(
            "BEGIN;\n{settings}{hook}\n{record}\nCOMMIT;",
            settings = tx_settings(target, apply),
            hook = after_migration(target),
        );
        if let Err(e) = client.batch_execute(&finish).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err((
                file.clone(),
                format!(
                    "`{file}` ran, but the post-migration step or its ledger change failed (rolled back; a rerun runs the file again): {}",
                    error_with_where(&e)
                ),
            ));
        }
        Ok(NoTx::Done(duration_ms))
    }
    .await;
    if !client.is_closed() {
        let _ = client.batch_execute(&close).await;
    }
    result
}

/// Whether the index a concurrent build makes exists: (valid, its name as a regclass).
async fn index_state(
    client: &Client,
    index: &crate::db::migrations::IndexName,
) -> Result<Option<(bool, String)>, tokio_postgres::Error> {
    let name = match &index.schema {
        Some(s) => format!("{}.{}", ident(s), ident(&index.name)),
        None => ident(&index.name),
    };
    let row = client
        .query_opt(
            "SELECT i.indisvalid, c.oid::pg_catalog.regclass::text
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
             WHERE c.oid = pg_catalog.to_regclass($1)",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(version: i32, no_transaction: bool) -> Migration {
        Migration {
            version,
            name: format!("{version:04}_m"),
            path: Default::default(),
            sql: String::new(),
            checksum: String::new(),
            no_transaction,
            statements: Vec::new(),
            down: None,
        }
    }

    #[test]
    fn no_transaction_migrations_cut_the_target_transaction() {
        let all = [
            m(1, false),
            m(2, false),
            m(3, true),
            m(4, false),
            m(5, true),
            m(6, true),
        ];
        let pending: Vec<&Migration> = all.iter().collect();
        let shape = |mode| {
            groups(&pending, mode)
                .iter()
                .map(|g| g.iter().map(|m| m.version).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(TxMode::Target),
            vec![vec![1, 2], vec![3], vec![4], vec![5], vec![6]]
        );
        assert_eq!(
            shape(TxMode::Migration),
            vec![vec![1], vec![2], vec![3], vec![4], vec![5], vec![6]]
        );
    }
}
