//! Planning: what each target has applied, whether that agrees with the files, and what
//! it lacks, found before anything is changed.
//!
//! All pool and bridge targets live in the shared database, so one query finds which of
//! their schemas exist and have a ledger, and one `UNION ALL` query per
//! [`LEDGER_QUERY_CHUNK`] schemas reads every ledger, over the control connection. Silo
//! targets are separate databases: each is probed over a connection of its own, a few at
//! a time. A silo database that does not exist is "not provisioned"; one that cannot be
//! reached is an error of that target only.
//!
//! [`check_ledgers`] then refuses the whole run if any ledger disagrees with the files: a
//! migration edited after it was applied, or applied and since removed.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{TargetOutcome, TargetReport, TargetState};
use crate::db::connect::PgContext;
use crate::db::ident::{ident, literal};
use crate::db::migrations::{Migration, MigrationSet};
use crate::db::sql;
use crate::db::{Database, Location, Target};

/// How many schemas one ledger-reading query covers.
const LEDGER_QUERY_CHUNK: usize = 200;

/// A migration applied on a target, as its ledger records it.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    pub name: String,
    pub checksum: String,
}

/// What planning found on one target.
#[derive(Debug, Clone)]
pub(super) enum Probe {
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
    pub fn applied(&self) -> Option<&BTreeMap<i32, Applied>> {
        match self {
            Probe::Present { applied, .. } => Some(applied),
            _ => None,
        }
    }

    /// The highest applied version.
    pub fn version(&self) -> Option<i32> {
        self.applied().and_then(|a| a.keys().next_back().copied())
    }

    /// Whether the ledger table exists, and the migrations to apply, in order.
    pub fn work<'a>(&self, set: &'a MigrationSet) -> (bool, Vec<&'a Migration>) {
        match self {
            Probe::Present {
                has_ledger,
                applied,
            } => (*has_ledger, pending(set, applied)),
            _ => (false, Vec::new()),
        }
    }
}

pub(super) fn pending<'a>(
    set: &'a MigrationSet,
    applied: &BTreeMap<i32, Applied>,
) -> Vec<&'a Migration> {
    set.migrations
        .iter()
        .filter(|m| !applied.contains_key(&m.version))
        .collect()
}

/// `user@host:port/dbname` of the database holding `t`.
pub(super) fn database_label(db: &Database, t: &Target) -> String {
    match &t.location {
        Location::Shared => db.admin().label(),
        Location::Silo(ep) => ep.label(),
        Location::Unavailable(_) => "unavailable".into(),
    }
}

/// An applied migration whose file changed, or that has no file.
#[derive(Debug)]
pub(super) enum Mismatch {
    Edited,
    Unknown,
}

pub(super) fn mismatches(
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

/// Refuses the run if any target's ledger disagrees with the files; `done` says what
/// was therefore not done ("applied", "rolled back").
pub(super) fn check_ledgers(
    set: &MigrationSet,
    targets: &[Target],
    probes: &[Probe],
    done: &str,
) -> Result<()> {
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
    let list = |names: &Vec<String>| list_targets(names);
    if let Some((file, names)) = edited.iter().next() {
        bail!(
            "migration `{file}` was edited after it was applied: its checksum differs from the one recorded on {} target(s) ({}); nothing was {done}\nhint: restore the applied file and put the change in a new migration",
            names.len(),
            list(names)
        );
    }
    if let Some((file, names)) = unknown.iter().next() {
        bail!(
            "migration `{file}` is applied on {} target(s) ({}) but is not in `{}`; nothing was {done}\nhint: migration files are append-only: restore it",
            names.len(),
            list(names),
            set.dir.display()
        );
    }
    Ok(())
}

/// "a, b, c, d, e and 3 more".
pub(super) fn list_targets(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(5);
    let mut s = shown.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// Which of `schemas` exist in the database `client` is connected to, and their ledgers.
pub(super) async fn probe_schemas(
    client: &Client,
    schemas: &[String],
) -> Result<HashMap<String, Probe>> {
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

/// One target's schema in the database `client` is connected to.
pub(super) async fn probe_one(client: &Client, target: &Target) -> Result<Probe> {
    Ok(probe_schemas(client, std::slice::from_ref(&target.schema))
        .await?
        .remove(&target.schema)
        .unwrap_or(Probe::Missing))
}

/// A silo target: its own database, its own connection (closed when probed).
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
    probe_one(&client, target)
        .await
        .unwrap_or_else(|e| Probe::Error(format!("{e:#}")))
}

/// Probes every target: the shared ones over `client` with a few queries, the silos
/// `connections` at a time (each its own connection, besides `client`).
pub(super) async fn probe_all(
    client: &Client,
    targets: &[Target],
    connections: usize,
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
    let mut silo_probes: HashMap<usize, Probe> = futures::stream::iter(
        targets
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.location, Location::Shared)),
    )
    .map(|(i, t)| async move { (i, probe_silo(t, purpose).await) })
    .buffer_unordered(connections.max(1))
    .collect()
    .await;
    Ok(targets
        .iter()
        .enumerate()
        .map(|(i, t)| match t.location {
            Location::Shared => shared_probes.remove(&t.schema).unwrap_or(Probe::Missing),
            _ => silo_probes.remove(&i).unwrap_or(Probe::Missing),
        })
        .collect())
}

/// A target's row as planning leaves it: up to date, not provisioned, unreachable, or
/// `NotRun` until a worker takes it.
pub(super) fn report(db: &Database, t: &Target, probe: &Probe, set: &MigrationSet) -> TargetReport {
    let from = probe.version();
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
        applied_concurrently: Vec::new(),
        outcome,
        failed_migration: None,
        error,
    }
}

/// A target's state as `db status` shows it, with its detail (the error, or the file
/// that disagrees), and its pending count.
pub(super) fn state(probe: &Probe, set: &MigrationSet) -> (TargetState, Option<String>, usize) {
    match probe {
        Probe::Missing => (TargetState::NotProvisioned, None, set.migrations.len()),
        Probe::Error(e) => (TargetState::Unreachable, Some(e.clone()), 0),
        Probe::Present { applied, .. } => {
            let n = pending(set, applied).len();
            match mismatches(set, applied).into_iter().next() {
                Some((_, file, Mismatch::Edited)) => (TargetState::ChecksumMismatch, Some(file), n),
                Some((_, file, Mismatch::Unknown)) => {
                    (TargetState::UnknownMigration, Some(file), n)
                }
                None if n == 0 => (TargetState::UpToDate, None, n),
                None => (TargetState::Pending, None, n),
            }
        }
    }
}
