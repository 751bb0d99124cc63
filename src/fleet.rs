//! Running one step over many tenants: selection (`--all`, ids, `--tier`, `--shard`),
//! bounded parallelism, failures isolated per tenant, progress bars, and the summary.
//!
//! Terraform is CPU-bound (a plan is ~9 s of CPU), so the default parallelism is the core
//! count: more processes than cores only adds memory. Each tenant's work is one future;
//! `buffer_unordered` keeps at most `parallelism` of them in flight, and the subprocesses
//! do the heavy lifting, so no extra threads are needed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::moves::report::MoveReport;
use crate::output::{Align, Progress, Report, Table};
use crate::tenant::{TenantId, Tier};
use crate::terraform::{ChangeSummary, humanize};
use crate::workspace::TenantSpec;

/// A `--shard K/N`: runner K of N (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard> {
        let err = || {
            anyhow::anyhow!(
                "invalid shard `{}`: must be K/N with 1 <= K <= N, e.g. `2/4`",
                s.escape_debug()
            )
        };
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let index: u32 = k.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index == 0 || index > count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    /// Stable assignment: a hash of the id alone, so adding or removing a tenant never
    /// moves any other tenant to another shard.
    pub fn contains(&self, id: &TenantId) -> bool {
        self.contains_key(id.as_str())
    }

    /// Whether the shard holds `key`: a tenant id, or the name of a cell (all the
    /// tenants of a cell go to the same runner, which plans the cell once).
    pub fn contains_key(&self, key: &str) -> bool {
        shard_of_key(key, self.count) == self.index
    }
}

/// The 1-based shard of `id` among `count`.
pub fn shard_of(id: &TenantId, count: u32) -> u32 {
    shard_of_key(id.as_str(), count)
}

fn shard_of_key(key: &str, count: u32) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % count as u64) as u32 + 1
}

/// Which tenants a fleet command works on: the selection flags as plain data, so the
/// fleet runner does not depend on the command line's types.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ids: Vec<String>,
    pub all: bool,
    pub tier: Option<Tier>,
    pub changed: bool,
    pub shard: Option<String>,
}

/// Applies the selection flags to the declared tenants. Ids are validated first (a bad
/// id is an error even if other ids are fine); an id that is not declared is an error.
pub fn select(all_specs: &[TenantSpec], sel: &Selection) -> Result<Vec<TenantSpec>> {
    select_placed(all_specs, sel, &|_| None)
}

/// [`select`], where `cell` names the cell holding a tenant, if any: `--shard` then
/// shards tenants in cells by cell.
pub fn select_placed(
    all_specs: &[TenantSpec],
    sel: &Selection,
    cell: &dyn Fn(&TenantId) -> Option<String>,
) -> Result<Vec<TenantSpec>> {
    let ids = sel
        .ids
        .iter()
        .map(|s| TenantId::parse(s).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let shard = sel.shard.as_deref().map(Shard::parse).transpose()?;
    if ids.is_empty() && !sel.all && sel.tier.is_none() && shard.is_none() && !sel.changed {
        bail!(
            "no tenants selected: name tenant ids, or use `--all`, `--tier`, `--changed` or `--shard K/N`"
        );
    }
    if !ids.is_empty() && sel.all {
        bail!("`--all` and explicit tenant ids exclude each other");
    }
    let mut out = Vec::new();
    if !ids.is_empty() {
        // A map, so naming thousands of ids is not quadratic.
        let by_id: std::collections::HashMap<&TenantId, &TenantSpec> =
            all_specs.iter().map(|s| (&s.id, s)).collect();
        for id in &ids {
            match by_id.get(id) {
                Some(s) => out.push((*s).clone()),
                None => bail!(
                    "unknown tenant `{id}`: no `tenants/{id}.toml`\nhint: `tenantctl list` shows the declared tenants"
                ),
            }
        }
    } else {
        out = all_specs.to_vec();
    }
    if let Some(t) = sel.tier {
        out.retain(|s| s.tier == t);
    }
    if let Some(sh) = shard {
        out.retain(|s| match cell(&s.id) {
            Some(name) => sh.contains_key(&name),
            None => sh.contains(&s.id),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

/// What happened to one tenant.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Changed,
    Unchanged,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Changed => "changed",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantSummary {
    pub tenant: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeSummary>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure was a lock held by another run (retryable, exit 4).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
    /// A tier change that moved (or, in a plan, will move) the tenant's data.
    #[serde(rename = "move", skip_serializing_if = "Option::is_none")]
    pub moved: Option<MoveReport>,
}

impl TenantSummary {
    /// A tenant not acted on, and why.
    pub fn skipped(tenant: impl Into<String>, why: impl Into<String>) -> TenantSummary {
        TenantSummary {
            tenant: tenant.into(),
            status: Status::Skipped,
            changes: None,
            duration_ms: 0,
            detail: Some(why.into()),
            error: None,
            locked: false,
            moved: None,
        }
    }

    /// A tenant whose step failed with `e` after `duration_ms`.
    pub fn failed(tenant: impl Into<String>, e: &anyhow::Error, duration_ms: u64) -> TenantSummary {
        TenantSummary {
            tenant: tenant.into(),
            status: Status::Failed,
            changes: None,
            duration_ms,
            detail: None,
            error: Some(format!("{e:#}")),
            locked: crate::exit::is_lock_held(e),
            moved: None,
        }
    }
}

/// What a step returns for a tenant that did not fail.
pub struct StepOutcome {
    pub status: Status,
    pub changes: Option<ChangeSummary>,
    pub detail: Option<String>,
    pub moved: Option<MoveReport>,
}

/// Runs `step` for each tenant with at most `ctx.parallelism` in flight. A failing
/// tenant never stops the others unless `fail_fast`; after an interrupt no new tenant
/// starts. Returns the per-tenant summaries in id order.
pub async fn run<F, Fut>(
    ctx: &Ctx,
    specs: Vec<TenantSpec>,
    verb: &str,
    fail_fast: bool,
    step: F,
) -> Vec<TenantSummary>
where
    F: Fn(TenantSpec, ProgressBar) -> Fut,
    Fut: Future<Output = Result<StepOutcome>>,
{
    let progress = Progress::new(ctx, specs.len(), verb);
    let stop = Arc::new(AtomicBool::new(false));
    let parallelism = ctx.parallelism.max(1);
    let step = &step;
    let progress = &progress;
    let mut results: Vec<TenantSummary> = futures::stream::iter(specs)
        .map(|spec| {
            let stop = stop.clone();
            async move {
                let id = spec.id.to_string();
                if stop.load(Ordering::SeqCst) || ctx.interrupt.is_set() {
                    let why = if ctx.interrupt.is_set() {
                        "interrupted"
                    } else {
                        "--fail-fast: an earlier tenant failed"
                    };
                    return TenantSummary::skipped(id, why);
                }
                let bar = progress.item(spec.id.as_str());
                let started = Instant::now();
                let res = step(spec, bar.clone()).await;
                let elapsed = started.elapsed();
                bar.finish_and_clear();
                progress.inc();
                let summary = match res {
                    Ok(o) => {
                        // A step may report a failure it handled itself (verify: drift).
                        if o.status == Status::Failed && fail_fast {
                            stop.store(true, Ordering::SeqCst);
                        }
                        TenantSummary {
                            tenant: id,
                            status: o.status,
                            changes: o.changes,
                            duration_ms: elapsed.as_millis() as u64,
                            detail: o.detail,
                            error: None,
                            locked: false,
                            moved: o.moved,
                        }
                    }
                    Err(e) => {
                        if fail_fast {
                            stop.store(true, Ordering::SeqCst);
                        }
                        TenantSummary::failed(id, &e, elapsed.as_millis() as u64)
                    }
                };
                progress.line(&summary_line(&summary));
                summary
            }
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    progress.finish();
    results.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    results
}

pub fn summary_line(s: &TenantSummary) -> String {
    let d = humanize(Duration::from_millis(s.duration_ms));
    match (&s.status, &s.error) {
        (Status::Failed, Some(e)) => {
            // The whole error: Terraform's own diagnostics follow the first line.
            format!("{}: failed after {d}: {e}", s.tenant)
        }
        _ => {
            let mut line = format!("{}: {} in {d}", s.tenant, s.status.as_str());
            if let Some(c) = &s.changes {
                line.push_str(&format!(" ({c})"));
            }
            if let Some(detail) = &s.detail {
                line.push_str(&format!(" — {detail}"));
            }
            line
        }
    }
}

/// The fleet summary of a command: one row per tenant, counts, and the JSON contract
/// `{command, tenants, summary}`.
pub fn summary_report(command: &str, results: &[TenantSummary]) -> Report {
    let count = |st: Status| results.iter().filter(|r| r.status == st).count();
    let (changed, unchanged, failed, skipped) = (
        count(Status::Changed),
        count(Status::Unchanged),
        count(Status::Failed),
        count(Status::Skipped),
    );
    let mut table = Table::new(&["tenant", "result", "changes", "time", "detail"])
        .titled(format!("tenantctl {command}"))
        .align(3, Align::Right)
        .code(0);
    for r in results {
        table.row([
            r.tenant.clone(),
            r.status.as_str().to_string(),
            r.changes
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            humanize(Duration::from_millis(r.duration_ms)),
            r.error
                .clone()
                .or_else(|| r.detail.clone())
                .unwrap_or_default(),
        ]);
    }
    table.summary(format!(
        "{changed} changed, {unchanged} unchanged, {failed} failed, {skipped} skipped"
    ));
    let json = serde_json::json!({
        "command": command,
        "tenants": results,
        "summary": {"changed": changed, "unchanged": unchanged, "failed": failed, "skipped": skipped},
    });
    Report::new(table, json)
}

/// The exit code of a fleet step: 1 if a tenant failed for any reason but a held lock,
/// 4 if every failure was a held lock (CI retries those), else `otherwise`.
pub fn exit_code(results: &[TenantSummary], otherwise: u8) -> u8 {
    let failed: Vec<&TenantSummary> = results
        .iter()
        .filter(|r| r.status == Status::Failed)
        .collect();
    if failed.is_empty() {
        otherwise
    } else if failed.iter().all(|r| r.locked) {
        crate::exit::LOCKED
    } else {
        crate::exit::ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> TenantSpec {
        TenantSpec {
            id: TenantId::parse(id).unwrap(),
            tier: Tier::Starter,
        }
    }

    #[test]
    fn shards_partition_the_fleet_stably() {
        let fleet: Vec<TenantSpec> = (0..200).map(|i| spec(&format!("t{i}"))).collect();
        let n = 4;
        let mut seen = std::collections::BTreeMap::new();
        for k in 1..=n {
            let sel = Selection {
                shard: Some(format!("{k}/{n}")),
                ..Default::default()
            };
            for s in select(&fleet, &sel).unwrap() {
                assert!(
                    seen.insert(s.id.clone(), k).is_none(),
                    "{} in two shards",
                    s.id
                );
            }
        }
        assert_eq!(seen.len(), fleet.len(), "union of shards is the fleet");
        // Adding tenants moves no existing tenant.
        let mut bigger = fleet.clone();
        bigger.extend((200..260).map(|i| spec(&format!("t{i}"))));
        for (id, k) in &seen {
            assert_eq!(shard_of(id, n), *k);
        }
        let sel = Selection {
            shard: Some("1/4".into()),
            ..Default::default()
        };
        let before: Vec<_> = select(&fleet, &sel)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        let after: Vec<_> = select(&bigger, &sel)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert!(before.iter().all(|id| after.contains(id)));
        // Each shard gets a fair share.
        for k in 1..=n {
            let c = seen.values().filter(|v| **v == k).count();
            assert!((30..=70).contains(&c), "shard {k} has {c}");
        }
    }

    #[test]
    fn bad_shards_and_ids_are_refused() {
        for s in ["0/4", "5/4", "1/0", "x", "1/", "a/b"] {
            let e = Shard::parse(s).unwrap_err().to_string();
            assert!(e.contains("K/N"), "{e}");
        }
        let fleet = vec![spec("acme")];
        let sel = Selection {
            ids: vec!["ACME".into()],
            ..Default::default()
        };
        assert!(
            select(&fleet, &sel)
                .unwrap_err()
                .to_string()
                .contains("lowercase")
        );
        let sel = Selection {
            ids: vec!["nope".into()],
            ..Default::default()
        };
        assert!(
            select(&fleet, &sel)
                .unwrap_err()
                .to_string()
                .contains("unknown tenant")
        );
        assert!(select(&fleet, &Selection::default()).is_err());
    }
}
