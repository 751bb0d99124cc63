//! Plan and apply of cells, reported per tenant.
//!
//! One Terraform run covers every tenant of a cell that has work: all of them at once
//! when the whole cell changed, otherwise only their module instances (`-target`), so a
//! single tenant's add or apply in a cell of 50 neither refreshes nor touches the other
//! 49. Terraform's JSON events name each resource's module instance, which gives each
//! tenant its own changes and errors: one tenant's failing resource fails that tenant,
//! and every other tenant is reported as what really happened to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;
use chrono::Utc;
use futures::StreamExt;
use indicatif::ProgressBar;

use crate::fleet::{Status, TenantSummary};
use crate::lifecycle::{self, ApplyOptions, Services};
use crate::records::ApplyRecord;
use crate::report::Check;
use crate::tenant::TenantId;
use crate::terraform::{ChangeSummary, PlanOptions, TenantEvents};
use crate::workspace::TenantSpec;

use super::{Member, cell_name};

/// Plan only, or plan and apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// What a run over cells produced: a summary per selected tenant, and the checks of the
/// tenants it applied.
#[derive(Default)]
pub struct CellsOutcome {
    pub summaries: Vec<TenantSummary>,
    pub checks: Vec<Check>,
}

/// Splits `specs` into the tenants with their own root and those in cells (by cell).
pub fn split(
    svc: &Services,
    specs: Vec<TenantSpec>,
) -> (Vec<TenantSpec>, BTreeMap<u32, Vec<TenantSpec>>) {
    let mut own = Vec::new();
    let mut cells: BTreeMap<u32, Vec<TenantSpec>> = BTreeMap::new();
    for spec in specs {
        match svc.cells.cell_of(&spec.id) {
            Some(n) => cells.entry(n).or_default().push(spec),
            None => own.push(spec),
        }
    }
    (own, cells)
}

/// Runs `mode` over the selected tenants of each cell, `parallelism` cells at a time.
pub async fn run(
    svc: &Services,
    cells: BTreeMap<u32, Vec<TenantSpec>>,
    mode: Mode,
    opts: &ApplyOptions,
) -> Result<CellsOutcome> {
    if cells.is_empty() {
        return Ok(CellsOutcome::default());
    }
    let declared = super::declared(&svc.ctx.ws)?;
    let declared = &declared;
    let outcomes: Vec<CellsOutcome> = futures::stream::iter(cells)
        .map(|(n, selected)| async move {
            let started = Instant::now();
            let ids: Vec<String> = selected.iter().map(|s| s.id.to_string()).collect();
            match run_cell(svc, n, selected, declared, mode, opts).await {
                Ok(o) => o,
                // The cell as a whole could not run (init, state lock, an unreadable
                // record): every selected tenant of it failed with that error.
                Err(e) => CellsOutcome {
                    summaries: ids.into_iter().map(|id| failed(id, &e, started)).collect(),
                    checks: Vec::new(),
                },
            }
        })
        .buffer_unordered(svc.ctx.parallelism.max(1))
        .collect()
        .await;
    let mut out = CellsOutcome::default();
    for o in outcomes {
        out.summaries.extend(o.summaries);
        out.checks.extend(o.checks);
    }
    for s in &out.summaries {
        svc.ctx.info(crate::fleet::summary_line(s));
    }
    Ok(out)
}

/// The outcome of a run over one tenant of a cell, as [`lifecycle::apply_tenant`] gives
/// it (for `add`): its failure is the error.
pub fn single(
    mut outcome: CellsOutcome,
    id: &TenantId,
) -> Result<(crate::fleet::StepOutcome, Vec<Check>)> {
    let pos = outcome
        .summaries
        .iter()
        .position(|s| s.tenant == id.as_str())
        .ok_or_else(|| anyhow::anyhow!("tenant `{id}` was not run"))?;
    let s = outcome.summaries.swap_remove(pos);
    if let Some(e) = s.error {
        anyhow::bail!("{e}");
    }
    Ok((
        crate::fleet::StepOutcome {
            status: s.status,
            changes: s.changes,
            detail: s.detail,
            moved: None,
        },
        outcome.checks,
    ))
}

async fn run_cell(
    svc: &Services,
    n: u32,
    selected: Vec<TenantSpec>,
    declared: &HashMap<TenantId, TenantSpec>,
    mode: Mode,
    opts: &ApplyOptions,
) -> Result<CellsOutcome> {
    let started = Instant::now();
    let name = cell_name(n);
    let selected_ids: BTreeSet<TenantId> = selected.iter().map(|s| s.id.clone()).collect();
    let mut out = CellsOutcome::default();
    // Apply never lifts protections: only `remove` does, for the tenant it removes.
    let members = super::members(svc, n, declared, None).await?;
    for m in &members {
        let Some(to) = m.pending_tier.filter(|_| selected_ids.contains(&m.spec.id)) else {
            continue;
        };
        // `apply` takes such a tenant out of its cell before the run (`evict_moving`);
        // a plan says what apply will do.
        out.summaries.push(match mode {
            Mode::Plan => TenantSummary {
                tenant: m.spec.id.to_string(),
                status: Status::Changed,
                changes: None,
                duration_ms: 0,
                detail: Some(format!(
                    "tier {} → {to} moves its data: `apply` moves its state out of {name} into its own root first, then moves the data",
                    m.spec.tier
                )),
                error: None,
                locked: false,
                moved: None,
            },
            Mode::Apply => failed(
                m.spec.id.to_string(),
                &anyhow::anyhow!(
                    "tenant `{}` is still in {name} with a tier change to `{to}` that moves its data: its state must leave the cell first (`tenantctl apply {}` does that)",
                    m.spec.id,
                    m.spec.id
                ),
                started,
            ),
        });
    }

    // The selected tenants with work: in a plan every one, in an apply those whose
    // inputs changed (or all with --refresh).
    let refused: HashSet<String> = out.summaries.iter().map(|s| s.tenant.clone()).collect();
    let mut work: Vec<&Member> = Vec::new();
    for m in &members {
        let id = m.spec.id.to_string();
        if !selected_ids.contains(&m.spec.id) || refused.contains(&id) {
            continue;
        }
        // A removal or a state move owns the tenant now: kept in the root (never dropped
        // from it), never planned by apply.
        let owned = match (&m.record.removing, &m.record.cell_move) {
            (Some(_), _) => Some("being removed (rerun `tenantctl remove` to finish)"),
            (None, Some(_)) => Some(
                "its state is moving between roots (rerun `tenantctl cells adopt`, or the tier move, to finish)",
            ),
            (None, None) => None,
        };
        if let Some(why) = owned {
            out.summaries.push(TenantSummary::skipped(id, why));
            continue;
        }
        let has_work = mode == Mode::Plan
            || opts.refresh
            || lifecycle::is_changed(&m.spec, &m.record, &m.rendered);
        if has_work {
            work.push(m);
        } else {
            out.summaries.push(TenantSummary::skipped(
                id,
                "inputs unchanged since the last apply (--refresh plans anyway)",
            ));
        }
    }
    if work.is_empty() {
        return Ok(out);
    }

    // The cell's root, with every member.
    let ws = &svc.ctx.ws;
    crate::render::write_modules(ws)?;
    let inputs: Vec<_> = members.iter().map(|m| m.rendered.inputs.clone()).collect();
    let dir = super::cell_dir(ws, n);
    crate::render::cell_root(ws, n, &inputs)?.write(&dir)?;
    let command = if mode == Mode::Plan { "plan" } else { "apply" };
    let tf = svc
        .cell_terraform(n, command, ProgressBar::hidden())?
        .with_lock_timeout(opts.lock_timeout);
    tf.init().await?;

    // Before the plan: secrets of a re-added id restored, orphans adopted. A tenant
    // whose orphan belongs to someone else fails alone.
    if mode == Mode::Apply {
        let mut adoptions = Vec::new();
        let mut ok = Vec::new();
        for m in work {
            let prepared = async {
                lifecycle::reclaim_secrets(svc, &m.spec, &m.rendered).await?;
                // The state is listed only for a tenant with resources found in AWS.
                crate::adopt::orphans(&svc.aws, None, &tf, &m.rendered.inputs).await
            }
            .await;
            match prepared {
                Ok(a) => {
                    for x in &a {
                        svc.ctx.info(format!(
                            "{}: adopting {} (exists in AWS, missing from state)",
                            m.spec.id, x.what
                        ));
                    }
                    adoptions.extend(a);
                    ok.push(m);
                }
                Err(e) => out
                    .summaries
                    .push(failed(m.spec.id.to_string(), &e, started)),
            }
        }
        work = ok;
        crate::adopt::write_all(&dir, &adoptions)?;
        if work.is_empty() {
            crate::adopt::clear(&dir);
            return Ok(out);
        }
    }

    let result = plan_and_apply(svc, &tf, &members, work, mode, opts, started, &mut out).await;
    crate::adopt::clear(&dir);
    result?;
    Ok(out)
}

/// The plan and the apply, then each applied tenant's database, record and
/// verification. A plan or apply that fails on some tenants' resources is run once more
/// without them, so one tenant's broken resource does not hold back the rest of the
/// cell: those tenants fail with their own errors, the others are applied.
#[allow(clippy::too_many_arguments)]
async fn plan_and_apply<'a>(
    svc: &Services,
    tf: &crate::terraform::Terraform,
    members: &'a [Member],
    mut work: Vec<&'a Member>,
    mode: Mode,
    opts: &ApplyOptions,
    started: Instant,
    out: &mut CellsOutcome,
) -> Result<()> {
    let mut done: Vec<(&Member, ChangeSummary)> = Vec::new();
    // What was applied to each tenant over the attempts.
    let mut applied: HashMap<String, ChangeSummary> = HashMap::new();
    for attempt in 0..2 {
        let last = attempt == 1;
        let plan = tf.plan_cell(plan_options(members, &work, opts)).await?;
        if let Some(error) = plan.error {
            let (bad, rest) = split_by_errors(&work, &plan.tenants);
            if bad.is_empty() || rest.is_empty() || last {
                return Err(error);
            }
            fail_with_errors(&bad, &plan.tenants, "terraform plan", started, out);
            work = rest;
            continue;
        }
        let planned = |id: &TenantId| {
            plan.tenants
                .get(id.as_str())
                .map(|t| t.planned)
                .unwrap_or_default()
        };
        if mode == Mode::Plan {
            let _ = std::fs::remove_file(tf.dir().join("tfplan"));
            for m in &work {
                let changes = planned(&m.spec.id);
                out.summaries.push(summary(m, changes, None, started));
            }
            return Ok(());
        }
        if plan.changes.is_empty() {
            let _ = std::fs::remove_file(tf.dir().join("tfplan"));
            done.extend(work.iter().map(|m| {
                (
                    *m,
                    applied.get(m.spec.id.as_str()).copied().unwrap_or_default(),
                )
            }));
            break;
        }
        let a = tf.apply_plan_cell(opts.lock_timeout).await?;
        for (id, t) in &a.tenants {
            let total = applied.entry(id.clone()).or_default();
            total.add += t.applied.add;
            total.change += t.applied.change;
            total.remove += t.applied.remove;
            total.import += t.applied.import;
        }
        let Some(error) = a.error else {
            done.extend(work.iter().map(|m| {
                (
                    *m,
                    applied.get(m.spec.id.as_str()).copied().unwrap_or_default(),
                )
            }));
            break;
        };
        let (bad, rest) = split_by_errors(&work, &a.tenants);
        fail_with_errors(&bad, &a.tenants, "terraform apply", started, out);
        // Complete tenants are applied; the others went unfinished because Terraform
        // stopped: once more without the failing ones, or reported as they are.
        let (complete, unfinished): (Vec<&Member>, Vec<&Member>) =
            rest.into_iter().partition(|m| {
                let events = a
                    .tenants
                    .get(m.spec.id.as_str())
                    .cloned()
                    .unwrap_or_default();
                covers(&events.applied, &planned(&m.spec.id))
            });
        done.extend(complete.iter().map(|m| {
            (
                *m,
                applied.get(m.spec.id.as_str()).copied().unwrap_or_default(),
            )
        }));
        if unfinished.is_empty() {
            break;
        }
        if bad.is_empty() || last {
            let first = format!("{error:#}");
            let first = first.lines().next().unwrap_or_default().to_string();
            for m in unfinished {
                out.summaries.push(failed(
                    m.spec.id.to_string(),
                    &anyhow::anyhow!(
                        "not applied: Terraform stopped before this tenant's changes were complete ({} done): {first}",
                        applied.get(m.spec.id.as_str()).copied().unwrap_or_default()
                    ),
                    started,
                ));
            }
            break;
        }
        work = unfinished;
    }

    // The database, the record and the verification of each applied tenant, side by
    // side (they are API and SQL calls, not Terraform runs).
    let finished: Vec<(TenantSummary, Vec<Check>)> = futures::stream::iter(done)
        .map(|(m, changes)| async move {
            match finish_tenant(svc, m, tf.dir()).await {
                Ok((checks, detail)) => (summary(m, changes, detail, started), checks),
                Err(e) => (failed(m.spec.id.to_string(), &e, started), Vec::new()),
            }
        })
        .buffer_unordered(svc.ctx.parallelism.max(1))
        .collect()
        .await;
    for (s, checks) in finished {
        out.summaries.push(s);
        out.checks.extend(checks);
    }
    Ok(())
}

/// The tenants whose resources Terraform's errors name, and the others.
fn split_by_errors<'a>(
    work: &[&'a Member],
    tenants: &BTreeMap<String, TenantEvents>,
) -> (Vec<&'a Member>, Vec<&'a Member>) {
    work.iter().partition(|m| {
        tenants
            .get(m.spec.id.as_str())
            .is_some_and(|t| !t.errors.is_empty())
    })
}

fn fail_with_errors(
    bad: &[&Member],
    tenants: &BTreeMap<String, TenantEvents>,
    command: &str,
    started: Instant,
    out: &mut CellsOutcome,
) {
    for m in bad {
        let errors = tenants
            .get(m.spec.id.as_str())
            .map(|t| t.errors.join("\n"))
            .unwrap_or_default();
        out.summaries.push(failed(
            m.spec.id.to_string(),
            &anyhow::anyhow!("{command} failed on this tenant's resources:\n{errors}"),
            started,
        ));
    }
}

fn summary(
    m: &Member,
    changes: ChangeSummary,
    detail: Option<String>,
    started: Instant,
) -> TenantSummary {
    TenantSummary {
        tenant: m.spec.id.to_string(),
        status: if changes.is_empty() {
            Status::Unchanged
        } else {
            Status::Changed
        },
        changes: Some(changes),
        duration_ms: started.elapsed().as_millis() as u64,
        detail,
        error: None,
        locked: false,
        moved: None,
    }
}

/// Targets: none when every member of the root has work (a plain plan of the cell),
/// otherwise the module instances of those that do.
fn plan_options(members: &[Member], work: &[&Member], opts: &ApplyOptions) -> PlanOptions {
    let targets = if work.len() == members.len() {
        Vec::new()
    } else {
        work.iter()
            .map(|m| format!("module.tenant[\"{}\"]", m.spec.id))
            .collect()
    };
    PlanOptions {
        destroy: false,
        lock_timeout: opts.lock_timeout,
        replace: work
            .iter()
            .flat_map(|m| lifecycle::repairs(&m.spec, &m.record))
            .collect(),
        targets,
    }
}

/// Whether the completed changes cover the planned ones.
fn covers(done: &ChangeSummary, planned: &ChangeSummary) -> bool {
    done.add >= planned.add && done.change >= planned.change && done.remove >= planned.remove
}

/// Provisions the tenant's database, records the apply and verifies the tenant.
async fn finish_tenant(
    svc: &Services,
    m: &Member,
    dir: &std::path::Path,
) -> Result<(Vec<Check>, Option<String>)> {
    use anyhow::Context;
    let secret = match &svc.db {
        Some(db) => {
            let secret = svc.db_secret(&m.spec).await?;
            db.provision(&m.spec, &secret).await.with_context(|| {
                format!("cannot provision the database of tenant `{}`", m.spec.id)
            })?;
            Some(secret)
        }
        None => None,
    };
    svc.records
        .update(&m.spec.id, |r| {
            r.last_apply = Some(ApplyRecord {
                at: Utc::now(),
                fingerprint: m.rendered.fingerprint.clone(),
                provider_lock: lifecycle::lock_digest(dir),
                tier: m.spec.tier.to_string(),
            })
        })
        .await?;
    let checks = lifecycle::verify_tenant(svc, &m.spec, Some(&m.rendered), secret.as_ref()).await?;
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.status != crate::report::CheckStatus::Pass)
        .map(|c| c.check.clone())
        .collect();
    let detail = (!failing.is_empty()).then(|| format!("verify failed: {}", failing.join(", ")));
    Ok((checks, detail))
}

fn failed(tenant: String, e: &anyhow::Error, started: Instant) -> TenantSummary {
    TenantSummary::failed(tenant, e, started.elapsed().as_millis() as u64)
}
