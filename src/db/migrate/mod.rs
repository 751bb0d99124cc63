//! The migration runner: plan every target with a few queries, then apply what each one
//! lacks, one transaction per migration, failures isolated per target.
//!
//! Planning is what makes a no-op run over hundreds of tenants fast. All pool and bridge
//! targets live in the shared database, so one query finds which schemas exist and have a
//! ledger, and one `UNION ALL` query per 200 schemas reads every ledger; only silo
//! targets, being separate databases, need a connection each. Nothing is applied until
//! every ledger has been checked against the files: an applied migration whose file
//! changed (checksum mismatch) or disappeared stops the run before any work starts.
//!
//! Applying: each pending migration gets its own transaction, opened with
//! `lock_timeout`, `statement_timeout`, `search_path` = the target's schema and a
//! per-target advisory lock, then the file, then the tier's post-migration step (pool:
//! RLS + policies on new tables; bridge/silo: the `tenant_id` check and grants), then the
//! ledger row, then COMMIT, all in one round trip. A failure rolls that transaction back,
//! stops that target, and the run goes on with the others (or stops starting new ones
//! with `fail_fast`). A run holds an exclusive session-level advisory lock in the shared
//! database for its whole duration, so two runs never apply concurrently; provisioning a
//! single tenant takes the same lock in shared mode.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use serde::Serialize;
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::db::connect::{Endpoint, PgContext, describe};
use crate::db::ident::{ident, literal};
use crate::db::migrations::{Migration, MigrationSet, line_col};
use crate::db::sql;
use crate::db::{Database, Location, Target};
use crate::interrupt::Interrupt;
use crate::tenant::{Isolation, Tier};

/// How many schemas one ledger-reading query covers.
const LEDGER_QUERY_CHUNK: usize = 200;

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Stop starting targets after the first failure.
    pub fail_fast: bool,
    /// Targets migrated at once (bounded further by `[database] connection_budget`).
    pub parallelism: usize,
    /// How long to wait for another run's lock; zero fails at once.
    pub lock_wait: Duration,
    pub interrupt: Interrupt,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            fail_fast: false,
            parallelism: 1,
            lock_wait: Duration::ZERO,
            interrupt: Interrupt::never(),
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
    pub applied: Vec<AppliedMigration>,
    pub outcome: TargetOutcome,
    /// The file that failed, e.g. `0003_invoices.sql`.
    pub failed_migration: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub latest: Option<i32>,
    pub targets: Vec<TargetReport>,
    pub elapsed_ms: u64,
}

impl MigrateReport {
    pub fn count(&self, outcome: TargetOutcome) -> usize {
        self.targets.iter().filter(|t| t.outcome == outcome).count()
    }
    pub fn interrupted(&self) -> bool {
        self.count(TargetOutcome::Interrupted) > 0
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
    /// up_to_date, pending, not_provisioned, unreachable, checksum_mismatch,
    /// unknown_migration.
    pub state: String,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// Another run holds the fleet lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another `tenantctl db migrate` run holds the migration lock on {database}{holder}\nhint: wait for it to finish, or pass `--lock-timeout SECONDS` to wait for it"
)]
pub struct LockHeld {
    pub database: String,
    pub holder: String,
}

/// A migration applied on a target, as its ledger records it.
#[derive(Debug, Clone)]
struct Applied {
    name: String,
    checksum: String,
}

/// What planning found on one target.
#[derive(Debug, Clone)]
enum Probe {
    /// The schema (or silo database) does not exist.
    Missing,
    Present {
        has_ledger: bool,
        applied: BTreeMap<i32, Applied>,
    },
    /// Could not look (unreachable silo, no admin login).
    Error(String),
}

impl Probe {
    fn applied(&self) -> Option<&BTreeMap<i32, Applied>> {
        match self {
            Probe::Present { applied, .. } => Some(applied),
            _ => None,
        }
    }
}

fn pending<'a>(set: &'a MigrationSet, applied: &BTreeMap<i32, Applied>) -> Vec<&'a Migration> {
    set.migrations
        .iter()
        .filter(|m| !applied.contains_key(&m.version))
        .collect()
}

fn database_label(db: &Database, t: &Target) -> String {
    match &t.location {
        Location::Shared => db.admin().label(),
        Location::Silo(ep) => ep.label(),
        Location::Unavailable(_) => "unavailable".into(),
    }
}

/// An applied migration whose file changed, or that has no file.
#[derive(Debug)]
enum Mismatch {
    Edited,
    Unknown,
}

fn mismatches(
    set: &MigrationSet,
    applied: &BTreeMap<i32, Applied>,
) -> Vec<(i32, String, Mismatch)> {
    let mut out = Vec::new();
    for (version, a) in applied {
        match set.get(*version) {
            Some(m) if m.checksum == a.checksum => {}
            Some(m) => out.push((*version, m.file_name(), Mismatch::Edited)),
            None => out.push((*version, format!("{}.sql", a.name), Mismatch::Unknown)),
        }
    }
    out
}

/// Refuses the run if any target's ledger disagrees with the files.
fn check_ledgers(set: &MigrationSet, targets: &[Target], probes: &[Probe]) -> Result<()> {
    let mut edited: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, p) in targets.iter().zip(probes) {
        if let Some(applied) = p.applied() {
            for (_, file, kind) in mismatches(set, applied) {
                match kind {
                    Mismatch::Edited => edited.entry(file).or_default().push(t.name.clone()),
                    Mismatch::Unknown => unknown.entry(file).or_default().push(t.name.clone()),
                }
            }
        }
    }
    let list = |names: &Vec<String>| {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        let more = names.len().saturating_sub(5);
        let mut s = shown.join(", ");
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    };
    if let Some((file, names)) = edited.iter().next() {
        bail!(
            "migration `{file}` was edited after it was applied: its checksum differs from the one recorded on {} target(s) ({}); nothing was applied\nhint: restore the applied file and put the change in a new migration",
            names.len(),
            list(names)
        );
    }
    if let Some((file, names)) = unknown.iter().next() {
        bail!(
            "migration `{file}` is applied on {} target(s) ({}) but is not in `{}`; nothing was applied\nhint: migration files are append-only: restore it",
            names.len(),
            list(names),
            set.dir.display()
        );
    }
    Ok(())
}

/// Which of `schemas` exist in the database `client` is connected to, and their ledgers.
async fn probe_schemas(client: &Client, schemas: &[String]) -> Result<HashMap<String, Probe>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, EXISTS (
                 SELECT 1 FROM pg_class c
                 WHERE c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p'))
             FROM pg_namespace n WHERE n.nspname = ANY($1::text[])",
            &[&schemas, &sql::LEDGER],
        )
        .await
        .pg_context(|| "cannot list the tenant schemas".into())?;
    let mut out: HashMap<String, Probe> = HashMap::new();
    let mut with_ledger = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let has_ledger: bool = row.get(1);
        if has_ledger {
            with_ledger.push(name.clone());
        }
        out.insert(
            name,
            Probe::Present {
                has_ledger,
                applied: BTreeMap::new(),
            },
        );
    }
    for chunk in with_ledger.chunks(LEDGER_QUERY_CHUNK) {
        let query = chunk
            .iter()
            .map(|s| {
                format!(
                    "SELECT {}::text, version::text, name, checksum FROM {}.{}",
                    literal(s),
                    ident(s),
                    ident(sql::LEDGER)
                )
            })
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n");
        let messages = client
            .simple_query(&query)
            .await
            .pg_context(|| "cannot read the migration ledgers".into())?;
        for msg in messages {
            let SimpleQueryMessage::Row(row) = msg else {
                continue;
            };
            let (Some(schema), Some(version), Some(name), Some(checksum)) =
                (row.get(0), row.get(1), row.get(2), row.get(3))
            else {
                continue;
            };
            let version: i32 = version
                .parse()
                .map_err(|_| anyhow!("ledger of `{schema}` has a bad version `{version}`"))?;
            if let Some(Probe::Present { applied, .. }) = out.get_mut(schema) {
                applied.insert(
                    version,
                    Applied {
                        name: name.to_string(),
                        checksum: checksum.to_string(),
                    },
                );
            }
        }
    }
    for s in schemas {
        out.entry(s.clone()).or_insert(Probe::Missing);
    }
    Ok(out)
}

/// A silo target: its own database, its own connection.
async fn probe_silo(target: &Target, purpose: &str) -> Probe {
    let ep = match &target.location {
        Location::Silo(ep) => ep,
        Location::Unavailable(why) => return Probe::Error(why.clone()),
        Location::Shared => return Probe::Error("not a silo target".into()),
    };
    let client = match ep.connect_raw(purpose).await {
        Ok(c) => c,
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => return Probe::Missing,
        Err(e) => return Probe::Error(format!("{:#}", ep.connect_error(&e))),
    };
    match probe_schemas(&client, std::slice::from_ref(&target.schema)).await {
        Ok(mut m) => m.remove(&target.schema).unwrap_or(Probe::Missing),
        Err(e) => Probe::Error(format!("{e:#}")),
    }
}

/// Probes every target: the shared ones with one connection and a few queries, the silos
/// `workers` at a time.
async fn probe_all(
    client: &Client,
    targets: &[Target],
    workers: usize,
    purpose: &str,
) -> Result<Vec<Probe>> {
    let shared: Vec<String> = targets
        .iter()
        .filter(|t| matches!(t.location, Location::Shared))
        .map(|t| t.schema.clone())
        .collect();
    let mut shared_probes = if shared.is_empty() {
        HashMap::new()
    } else {
        probe_schemas(client, &shared).await?
    };
    let silo_probes: HashMap<usize, Probe> = futures::stream::iter(
        targets
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.location, Location::Shared)),
    )
    .map(|(i, t)| async move { (i, probe_silo(t, purpose).await) })
    .buffer_unordered(workers.max(1))
    .collect()
    .await;
    let mut silo_probes = silo_probes;
    Ok(targets
        .iter()
        .enumerate()
        .map(|(i, t)| match t.location {
            Location::Shared => shared_probes.remove(&t.schema).unwrap_or(Probe::Missing),
            _ => silo_probes.remove(&i).unwrap_or(Probe::Missing),
        })
        .collect())
}

/// Takes the fleet lock: exclusive for `db migrate`, shared for provisioning.
pub(crate) async fn lock_run(
    client: &Client,
    exclusive: bool,
    wait: Duration,
    database: &str,
) -> Result<()> {
    let (try_fn, wait_fn) = if exclusive {
        ("pg_try_advisory_lock", "pg_advisory_lock")
    } else {
        ("pg_try_advisory_lock_shared", "pg_advisory_lock_shared")
    };
    let key = format!("{}, {}", sql::LOCK_CLASS, sql::LOCK_RUN);
    if wait.is_zero() {
        let got: bool = client
            .query_one(&format!("SELECT {try_fn}({key})"), &[])
            .await
            .pg_context(|| "cannot take the migration lock".into())?
            .get(0);
        if got {
            return Ok(());
        }
    } else {
        let ms = wait.as_millis().max(1);
        let res = client
            .batch_execute(&format!(
                "SET lock_timeout = {ms}; SELECT {wait_fn}({key}); RESET lock_timeout;"
            ))
            .await;
        match res {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                let _ = client.batch_execute("RESET lock_timeout").await;
            }
            Err(e) => return Err(anyhow!("cannot take the migration lock: {}", describe(&e))),
        }
    }
    Err(LockHeld {
        database: database.to_string(),
        holder: lock_holder(client).await,
    }
    .into())
}

/// Releases the fleet lock taken by [`lock_run`] (closing the session would too, but not
/// before the connection's task next runs).
pub(crate) async fn unlock_run(client: &Client, exclusive: bool) {
    let f = if exclusive {
        "pg_advisory_unlock"
    } else {
        "pg_advisory_unlock_shared"
    };
    let _ = client
        .batch_execute(&format!(
            "SELECT {f}({}, {})",
            sql::LOCK_CLASS,
            sql::LOCK_RUN
        ))
        .await;
}

/// " (held by pid 123, `tenantctl db migrate` from 10.0.0.5 since ...)" or "".
async fn lock_holder(client: &Client) -> String {
    let q = format!(
        "SELECT a.pid::text, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'),
                to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.classid = {} AND l.objid = {} AND l.objsubid = 2
           AND l.granted AND l.mode = 'ExclusiveLock'
           -- advisory locks are per database; pg_locks shows every database's
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         LIMIT 1",
        sql::LOCK_CLASS,
        sql::LOCK_RUN
    );
    match client.query_opt(&q, &[]).await {
        Ok(Some(row)) => {
            let (pid, app, from, since): (String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            format!(" (held by pid {pid}, `{app}` from {from} since {since})")
        }
        _ => String::new(),
    }
}

/// Creates tenantctl's control schema if it is missing (older or fresh databases).
pub(crate) async fn ensure_control(client: &Client) -> Result<()> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.target_status', $1::text)) IS NOT NULL",
            &[&sql::CONTROL_SCHEMA],
        )
        .await
        .pg_context(|| "cannot look for tenantctl's control schema".into())?
        .get(0);
    if present {
        return Ok(());
    }
    setup_tx(client, &sql::control_setup()).await
}

/// Runs `body` in a transaction holding the setup lock: concurrent GRANTs on the same
/// catalog row fail with "tuple concurrently updated", so shared objects are changed one
/// session at a time.
pub(crate) async fn setup_tx(client: &Client, body: &str) -> Result<()> {
    let text = format!(
        "BEGIN;\nSELECT pg_advisory_xact_lock({}, {});\n{body}\nCOMMIT;",
        sql::LOCK_CLASS,
        sql::LOCK_SETUP
    );
    if let Err(e) = client.batch_execute(&text).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(anyhow!("{}", describe(&e)));
    }
    Ok(())
}

/// Targets with a recorded error, to clear when they succeed.
async fn targets_with_errors(client: &Client) -> Result<HashSet<String>> {
    let rows = client
        .query(
            &format!(
                "SELECT target FROM {}.target_status WHERE last_error IS NOT NULL",
                ident(sql::CONTROL_SCHEMA)
            ),
            &[],
        )
        .await
        .pg_context(|| "cannot read the last migration errors".into())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records (or clears) the last error of each given target in one statement.
pub(crate) async fn record_status(
    client: &Client,
    rows: &[(String, Tier, Option<String>)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let tiers: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|r| r.2.as_deref()).collect();
    client
        .execute(
            &format!(
                "INSERT INTO {}.target_status AS s (target, tier, last_error, last_error_at, updated_at)
                 SELECT u.target, u.tier, u.err, CASE WHEN u.err IS NULL THEN NULL ELSE now() END, now()
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(target, tier, err)
                 ON CONFLICT (target) DO UPDATE SET
                     tier = excluded.tier, last_error = excluded.last_error,
                     last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
                ident(sql::CONTROL_SCHEMA)
            ),
            &[&names, &tiers, &errors],
        )
        .await
        .pg_context(|| "cannot record the migration results".into())?;
    Ok(())
}

/// The post-migration step of a target's tier.
fn after_migration(target: &Target) -> String {
    match target.isolation {
        Isolation::Pool => sql::pool_after_migration(),
        Isolation::Bridge | Isolation::Silo => {
            let tenant = target.tenant.as_ref().map(|t| t.as_str()).unwrap_or("");
            sql::tenant_after_migration(&target.schema, &target.schema, tenant)
        }
    }
}

/// The result of applying a target's pending migrations.
struct Applying {
    applied: Vec<AppliedMigration>,
    failure: Option<(String, String)>,
    interrupted: bool,
}

/// Applies `pending` to `target` over `client`, one transaction per migration; stops at
/// the first failure (rolled back).
async fn apply_target(
    client: &Client,
    target: &Target,
    pending: &[&Migration],
    mut has_ledger: bool,
    timeouts: (u64, u64),
    interrupt: &Interrupt,
) -> Applying {
    let mut out = Applying {
        applied: Vec::new(),
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

/// Connections to the shared database, reused across targets. The first one holds the
/// run's advisory lock and is never closed before the end.
struct SharedConns {
    endpoint: Endpoint,
    purpose: String,
    idle: Mutex<Vec<Conn>>,
}

struct Conn {
    client: Client,
    /// This session holds the run's advisory lock.
    holds_lock: bool,
}

impl SharedConns {
    async fn take(&self) -> Result<Conn> {
        let reused = self.idle.lock().expect("pool lock").pop();
        match reused {
            Some(c) => Ok(c),
            None => Ok(Conn {
                client: self.endpoint.connect(&self.purpose).await?,
                holds_lock: false,
            }),
        }
    }
    fn put(&self, c: Conn) {
        if !c.client.is_closed() {
            self.idle.lock().expect("pool lock").push(c);
        }
    }
}

/// A target's row as planning leaves it: up to date, not provisioned, unreachable, or
/// `NotRun` until a worker takes it.
fn report(db: &Database, t: &Target, probe: &Probe, set: &MigrationSet) -> TargetReport {
    let from = probe.applied().and_then(|a| a.keys().next_back().copied());
    let (outcome, error) = match probe {
        Probe::Missing => (TargetOutcome::NotProvisioned, None),
        Probe::Error(e) => (TargetOutcome::Failed, Some(e.clone())),
        Probe::Present { applied, .. } => {
            if pending(set, applied).is_empty() {
                (TargetOutcome::UpToDate, None)
            } else {
                (TargetOutcome::NotRun, None)
            }
        }
    };
    TargetReport {
        target: t.name.clone(),
        tier: t.tier,
        isolation: t.isolation,
        schema: t.schema.clone(),
        database: database_label(db, t),
        from_version: from,
        to_version: from,
        applied: Vec::new(),
        outcome,
        failed_migration: None,
        error,
    }
}

fn finish(mut r: TargetReport, run: Applying, want: usize) -> TargetReport {
    if let Some(last) = run.applied.last() {
        r.to_version = Some(last.version);
    }
    r.applied = run.applied;
    r.outcome = if let Some((file, err)) = run.failure {
        r.failed_migration = Some(file);
        r.error = Some(err);
        TargetOutcome::Failed
    } else if run.interrupted && r.applied.len() < want {
        TargetOutcome::Interrupted
    } else if r.applied.is_empty() {
        TargetOutcome::UpToDate
    } else {
        TargetOutcome::Migrated
    };
    r
}

impl Database {
    fn timeouts(&self) -> (u64, u64) {
        (
            self.settings.lock_timeout_ms,
            self.settings.statement_timeout_ms,
        )
    }

    /// Applies every pending migration to every target. `on_done` is called as each
    /// target finishes (progress). An error returned here means no target was changed
    /// (no admin connection, lock held, edited migration); failures of single targets
    /// are in the report.
    pub async fn migrate(
        &self,
        targets: Vec<Target>,
        set: &MigrationSet,
        opts: &MigrateOptions,
        on_done: &(dyn Fn(&TargetReport) + Sync),
    ) -> Result<MigrateReport> {
        let started = Instant::now();
        let purpose = "tenantctl db migrate";
        let control = self.admin.connect(purpose).await?;
        ensure_control(&control).await?;
        lock_run(&control, true, opts.lock_wait, &self.admin.label()).await?;

        let budget = self.settings.connection_budget.max(1);
        let workers = opts.parallelism.clamp(1, budget);
        let probes = probe_all(&control, &targets, workers, purpose).await?;
        check_ledgers(set, &targets, &probes)?;
        let had_errors = targets_with_errors(&control).await?;

        let mut reports: Vec<TargetReport> = targets
            .iter()
            .zip(&probes)
            .map(|(t, p)| report(self, t, p, set))
            .collect();
        for r in &reports {
            if r.outcome != TargetOutcome::NotRun {
                on_done(r);
            }
        }
        // Work: targets whose schema exists and that lack something.
        let work: Vec<usize> = reports
            .iter()
            .enumerate()
            .filter(|(_, r)| r.outcome == TargetOutcome::NotRun)
            .map(|(i, _)| i)
            .collect();
        let stop = AtomicBool::new(
            opts.fail_fast && reports.iter().any(|r| r.outcome == TargetOutcome::Failed),
        );
        let conns = SharedConns {
            endpoint: self.admin.clone(),
            purpose: purpose.into(),
            idle: Mutex::new(vec![Conn {
                client: control,
                holds_lock: true,
            }]),
        };
        // Shared targets first (they reuse connections, the lock holder among them), then
        // silos (one connection each, closed after use), so the budget holds in both.
        let (shared, silos): (Vec<usize>, Vec<usize>) = work
            .into_iter()
            .partition(|i| matches!(targets[*i].location, Location::Shared));
        let skip = |base: TargetReport| {
            let mut r = base;
            r.outcome = if opts.interrupt.is_set() {
                TargetOutcome::Interrupted
            } else {
                TargetOutcome::NotRun
            };
            on_done(&r);
            r
        };
        let settle = |r: TargetReport| {
            if r.outcome == TargetOutcome::Failed && opts.fail_fast {
                stop.store(true, Ordering::SeqCst);
            }
            on_done(&r);
            r
        };
        let shared_done: Vec<(usize, TargetReport)> = futures::stream::iter(shared)
            .map(|i| {
                let base = reports[i].clone();
                let (conns, stop, targets, probes) = (&conns, &stop, &targets, &probes);
                let (skip, settle) = (&skip, &settle);
                async move {
                    if stop.load(Ordering::SeqCst) || opts.interrupt.is_set() {
                        return (i, skip(base));
                    }
                    let r = match conns.take().await {
                        Ok(conn) => {
                            let (has_ledger, todo) = work_of(&probes[i], set);
                            let run = apply_target(
                                &conn.client,
                                &targets[i],
                                &todo,
                                has_ledger,
                                self.timeouts(),
                                &opts.interrupt,
                            )
                            .await;
                            conns.put(conn);
                            finish(base, run, todo.len())
                        }
                        Err(e) => failed(base, format!("{e:#}")),
                    };
                    (i, settle(r))
                }
            })
            .buffer_unordered(workers)
            .collect()
            .await;
        for (i, r) in shared_done {
            reports[i] = r;
        }
        // Close the other shared connections; the lock holder stays open to the end.
        let control = conns
            .idle
            .lock()
            .expect("pool lock")
            .drain(..)
            .find(|c| c.holds_lock)
            .map(|c| c.client);
        let silo_workers = workers.min(budget.saturating_sub(1)).max(1);
        let silo_done: Vec<(usize, TargetReport)> = futures::stream::iter(silos)
            .map(|i| {
                let base = reports[i].clone();
                let (stop, targets, probes) = (&stop, &targets, &probes);
                let (skip, settle) = (&skip, &settle);
                async move {
                    if stop.load(Ordering::SeqCst) || opts.interrupt.is_set() {
                        return (i, skip(base));
                    }
                    let t = &targets[i];
                    let r = match &t.location {
                        Location::Silo(ep) => match ep.connect(purpose).await {
                            Ok(client) => {
                                let (has_ledger, todo) = work_of(&probes[i], set);
                                let run = apply_target(
                                    &client,
                                    t,
                                    &todo,
                                    has_ledger,
                                    self.timeouts(),
                                    &opts.interrupt,
                                )
                                .await;
                                finish(base, run, todo.len())
                            }
                            Err(e) => failed(base, format!("{e:#}")),
                        },
                        _ => failed(base, "no connection for this target".into()),
                    };
                    (i, settle(r))
                }
            })
            .buffer_unordered(silo_workers)
            .collect()
            .await;
        for (i, r) in silo_done {
            reports[i] = r;
        }

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
        // The targets are done either way: failing to record is a warning, not an error
        // that would hide the report.
        let recorder = match control {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.admin.connect(purpose).await,
        };
        match recorder {
            Ok(c) => {
                if let Err(e) = record_status(&c, &rows).await {
                    tracing::warn!("{e:#}");
                }
                unlock_run(&c, true).await;
            }
            Err(e) => tracing::warn!("cannot record the migration results: {e:#}"),
        }
        Ok(MigrateReport {
            latest: set.latest().map(|m| m.version),
            targets: reports,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
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
        let workers = self.settings.connection_budget.clamp(1, 8);
        let probes = probe_all(&client, &targets, workers, purpose).await?;
        let mut errors: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        let has_control: bool = client
            .query_one(
                "SELECT to_regclass(format('%I.target_status', $1::text)) IS NOT NULL",
                &[&sql::CONTROL_SCHEMA],
            )
            .await
            .pg_context(|| "cannot look for tenantctl's control schema".into())?
            .get(0);
        if has_control {
            let rows = client
                .query(
                    &format!(
                        "SELECT target, last_error, to_char(last_error_at, 'YYYY-MM-DD\"T\"HH24:MI:SSOF') FROM {}.target_status",
                        ident(sql::CONTROL_SCHEMA)
                    ),
                    &[],
                )
                .await
                .pg_context(|| "cannot read the last migration errors".into())?;
            for r in rows {
                errors.insert(r.get(0), (r.get(1), r.get(2)));
            }
        }
        let latest = set.latest().map(|m| m.version);
        Ok(targets
            .iter()
            .zip(&probes)
            .map(|(t, p)| {
                let (last_error, last_error_at) = errors.remove(&t.name).unwrap_or_default();
                let (version, version_name, pending_n, state) = match p {
                    Probe::Missing => (None, None, set.migrations.len(), "not_provisioned".into()),
                    Probe::Error(e) => (None, None, 0, format!("unreachable: {e}")),
                    Probe::Present { applied, .. } => {
                        let top = applied.iter().next_back();
                        let n = pending(set, applied).len();
                        let bad = mismatches(set, applied);
                        let state = match bad.first() {
                            Some((_, file, Mismatch::Edited)) => {
                                format!("checksum_mismatch: {file}")
                            }
                            Some((_, file, Mismatch::Unknown)) => {
                                format!("unknown_migration: {file}")
                            }
                            None if n == 0 => "up_to_date".into(),
                            None => "pending".into(),
                        };
                        (
                            top.map(|(v, _)| *v),
                            top.map(|(_, a)| a.name.clone()),
                            n,
                            state,
                        )
                    }
                };
                TargetStatus {
                    target: t.name.clone(),
                    tier: t.tier,
                    isolation: t.isolation,
                    schema: t.schema.clone(),
                    database: database_label(self, t),
                    version,
                    version_name,
                    latest,
                    pending: pending_n,
                    state,
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
        let probe = probe_schemas(client, std::slice::from_ref(&target.schema))
            .await?
            .remove(&target.schema)
            .unwrap_or(Probe::Missing);
        check_ledgers(
            set,
            std::slice::from_ref(target),
            std::slice::from_ref(&probe),
        )?;
        let (has_ledger, todo) = work_of(&probe, set);
        let run = apply_target(
            client,
            target,
            &todo,
            has_ledger,
            self.timeouts(),
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
        let probe = probe_schemas(client, std::slice::from_ref(&target.schema))
            .await?
            .remove(&target.schema)
            .unwrap_or(Probe::Missing);
        match probe {
            Probe::Present { applied, .. } => {
                let top = applied.keys().next_back().copied();
                let todo = pending(set, &applied)
                    .iter()
                    .map(|m| m.file_name())
                    .collect();
                let bad = mismatches(set, &applied)
                    .into_iter()
                    .map(|(_, f, _)| f)
                    .collect();
                Ok((top, todo, bad))
            }
            _ => bail!("schema `{}` does not exist", target.schema),
        }
    }
}

fn work_of<'a>(probe: &Probe, set: &'a MigrationSet) -> (bool, Vec<&'a Migration>) {
    match probe {
        Probe::Present {
            has_ledger,
            applied,
        } => (*has_ledger, pending(set, applied)),
        _ => (false, Vec::new()),
    }
}

fn failed(mut r: TargetReport, error: String) -> TargetReport {
    r.outcome = TargetOutcome::Failed;
    r.error = Some(error);
    r
}
