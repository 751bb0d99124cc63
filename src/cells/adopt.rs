//! Moving a tenant's Terraform state between its own root and a cell, never by
//! destroy and create.
//!
//! A tenant's resources have the same addresses in both roots (`module.tenant["<id>"]`
//! …), so the move is state surgery: `terraform state pull` from one root, the tenant's
//! resources added to the other root's state (serial + 1, its lineage kept) and pushed
//! under its lock, then `terraform state rm` of the tenant's module in the first root.
//!
//! Each step is recorded (`TenantRecord::cell_move`) before the next starts and each is
//! idempotent, so a killed run is finished by the next one. While the move is under way
//! the tenant is never planned by a cell's apply (its module instance is kept in the
//! cell's configuration and left out of the targets), so neither root destroys it.

use anyhow::{Context, Result, bail};
use chrono::Utc;
use futures::StreamExt;
use indicatif::ProgressBar;
use serde_json::Value;

use crate::lifecycle::{self, Services};
use crate::records::CellMove;
use crate::render::RenderOptions;
use crate::terraform::{PlanOptions, Terraform};
use crate::workspace::TenantSpec;

use super::{Assignment, cell_name};

/// What an adoption or eviction did, for the command's report.
#[derive(Debug, Clone)]
pub struct Moved {
    pub cell: u32,
    /// Resources whose state moved (0 when an earlier run had moved them).
    pub resources: usize,
    /// Changes Terraform plans for the tenant afterwards (none is the expected result).
    pub changes: Option<crate::terraform::ChangeSummary>,
}

fn module_address(spec: &TenantSpec) -> String {
    format!("module.tenant[\"{}\"]", spec.id)
}

/// Whether a state resource belongs to the tenant's module instance.
fn is_tenants(resource: &Value, module: &str) -> bool {
    resource["module"]
        .as_str()
        .is_some_and(|m| m == module || m.starts_with(&format!("{module}.")))
}

fn tenants_resources(state: Option<&Value>, module: &str) -> Vec<Value> {
    state
        .and_then(|s| s["resources"].as_array())
        .map(|rs| {
            rs.iter()
                .filter(|r| is_tenants(r, module))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// `state` with `resources` added (serial + 1), or a new state holding only them.
fn with_resources(state: Option<Value>, resources: Vec<Value>, like: &Value) -> Value {
    match state {
        Some(mut s) => {
            let serial = s["serial"].as_u64().unwrap_or(0) + 1;
            s["serial"] = serial.into();
            match s["resources"].as_array_mut() {
                Some(rs) => rs.extend(resources),
                None => s["resources"] = Value::Array(resources),
            }
            s
        }
        None => serde_json::json!({
            "version": like["version"].clone(),
            "terraform_version": like["terraform_version"].clone(),
            "serial": 1,
            "lineage": new_lineage(),
            "outputs": {},
            "resources": resources,
            "check_results": null,
        }),
    }
}

/// A fresh state lineage (a random UUID, as Terraform makes them).
fn new_lineage() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The tenant's own root, written and initialised.
async fn own_root(svc: &Services, spec: &TenantSpec, bar: &ProgressBar) -> Result<Terraform> {
    let plain =
        crate::render::render_root(&svc.ctx.ws, &svc.platform, spec, RenderOptions::default())?;
    plain.write(&svc.ctx.ws)?;
    let tf = svc.own_terraform(spec, "cells", bar.clone())?;
    tf.init().await?;
    Ok(tf)
}

/// Cell `n`'s root, written with its members as `svc` places them, and initialised.
async fn cell_root(svc: &Services, n: u32, bar: &ProgressBar) -> Result<Terraform> {
    super::write_cell_root(svc, n, &super::declared(&svc.ctx.ws)?, None).await?;
    let tf = svc.cell_terraform(n, "cells", bar.clone())?;
    tf.init().await?;
    Ok(tf)
}

fn with_cells(svc: &Services, cells: &Assignment) -> Services {
    Services {
        cells: std::sync::Arc::new(cells.clone()),
        ..svc.clone()
    }
}

/// Takes a slot for an applied tenant of a celled tier that has its own root, and
/// records the move (a tenant whose move an earlier run recorded keeps its cell). The
/// caller saves `cells` before [`adopt_cell`] moves any state.
pub async fn prepare(svc: &Services, cells: &mut Assignment, spec: &TenantSpec) -> Result<u32> {
    let id = &spec.id;
    let rec = svc.records.get(id).await?;
    let resumed = rec.cell_move.as_ref().and_then(|m| m.to);
    let n = match (resumed, cells.cell_of(id)) {
        (Some(n), _) => n,
        (None, Some(n)) => bail!("tenant `{id}` is already in {}", cell_name(n)),
        (None, None) => {
            if rec.last_apply.is_none() {
                bail!(
                    "tenant `{id}` was never applied: there is no state to move (`tenantctl apply {id}` places it in a cell)"
                );
            }
            if rec.moving.is_some() || rec.removing.is_some() {
                bail!(
                    "tenant `{id}` is in the middle of a tier move or a removal: finish it first"
                );
            }
            if !svc.ctx.config().cells.holds(spec.tier) {
                bail!(
                    "tenant `{id}` has tier `{}`, which is not in `[cells] tiers` (or cells are off): it keeps its own root",
                    spec.tier
                );
            }
            cells.place(id, svc.ctx.config().cells.size)
        }
    };
    // Recorded before the slot is saved: from here on no apply plans the tenant until
    // its state has moved.
    svc.records
        .update(id, |r| {
            r.cell_move = Some(CellMove {
                from: None,
                to: Some(n),
                started_at: Utc::now(),
            })
        })
        .await?;
    if cells.cell_of(id) != Some(n) {
        cells.place_in(id, n);
    }
    Ok(n)
}

/// Moves the state of `specs` (prepared, their slots in cell `n` saved) into the cell:
/// one pull and one push of the cell's state for all of them, then each own root
/// emptied, then one plan of them in the cell, which must show no change. Returns each
/// tenant's result.
pub async fn adopt_cell(
    placed: &Services,
    n: u32,
    specs: &[TenantSpec],
    lock_timeout: u64,
) -> Result<Vec<(TenantSpec, Result<Moved>)>> {
    let bar = ProgressBar::hidden();
    let cell = cell_root(placed, n, &bar).await?;
    let mut cell_state = cell.state_pull().await?;
    // Each own root, side by side (an init and a pull each).
    let owns: Vec<Result<(Terraform, Option<Value>)>> = futures::stream::iter(specs)
        .map(|spec| {
            let bar = bar.clone();
            async move {
                let own = own_root(placed, spec, &bar).await?;
                let state = own.state_pull().await?;
                Ok((own, state))
            }
        })
        .buffered(placed.ctx.parallelism.max(1))
        .collect()
        .await;
    let mut results: Vec<(TenantSpec, Result<Moved>)> = Vec::new();
    let mut pushed = Vec::new();
    let mut added = Vec::new();
    let mut like_state: Option<Value> = None;
    for (spec, own) in specs.iter().zip(owns) {
        let module = module_address(spec);
        let (own, own_state) = match own {
            Ok(o) => o,
            Err(e) => {
                results.push((spec.clone(), Err(e)));
                continue;
            }
        };
        let moving = tenants_resources(own_state.as_ref(), &module);
        if like_state.is_none() {
            like_state = own_state.clone();
        }
        let there = tenants_resources(cell_state.as_ref(), &module);
        if !there.is_empty() && !moving.is_empty() && addresses(&there) != addresses(&moving) {
            results.push((
                spec.clone(),
                Err(anyhow::anyhow!(
                    "{} already holds some of tenant `{}`'s resources, but not the ones its own root holds: the two states disagree; nothing was changed\nhint: compare `terraform state list` in `{}` and `{}`",
                    cell_name(n),
                    spec.id,
                    own.dir().display(),
                    cell.dir().display()
                )),
            ));
            continue;
        }
        let count = if there.is_empty() { moving.len() } else { 0 };
        // Whether the own root still holds the tenant's resources (to remove there).
        let holds = !moving.is_empty();
        if there.is_empty() && holds {
            added.extend(moving);
        }
        pushed.push((spec.clone(), own, count, holds));
    }
    if !added.is_empty() {
        // A cell without a state yet takes the format of the states it receives.
        let like = cell_state
            .clone()
            .or_else(|| like_state.clone())
            .unwrap_or_else(|| serde_json::json!({"version": 4}));
        let merged = with_resources(cell_state.take(), added, &like);
        cell.state_push(&merged, lock_timeout)
            .await
            .with_context(|| format!("cannot move the tenants' state into {}", cell_name(n)))?;
    }
    // Out of the own roots: only now that the cell holds them; side by side (each root
    // has its own state).
    let emptied: Vec<(TenantSpec, usize, Result<()>)> = futures::stream::iter(pushed)
        .map(|(spec, own, count, holds)| async move {
            let r = async {
                if holds {
                    own.state_rm(&module_address(&spec), lock_timeout).await?;
                }
                let _ = std::fs::remove_dir_all(placed.ctx.ws.root_dir(&spec.id));
                anyhow::Ok(())
            }
            .await;
            (spec, count, r)
        })
        .buffered(placed.ctx.parallelism.max(1))
        .collect()
        .await;
    let mut adopted = Vec::new();
    for (spec, count, r) in emptied {
        match r {
            Ok(()) => adopted.push((spec, count)),
            Err(e) => results.push((spec, Err(e))),
        }
    }
    if adopted.is_empty() {
        return Ok(results);
    }

    // The proof: the adopted tenants planned in the cell.
    let plan = cell
        .plan_cell(PlanOptions {
            destroy: false,
            lock_timeout,
            replace: Vec::new(),
            targets: adopted.iter().map(|(s, _)| module_address(s)).collect(),
        })
        .await?;
    let _ = std::fs::remove_file(cell.dir().join("tfplan"));
    if let Some(e) = &plan.error {
        placed.ctx.info(format!(
            "{}: the plan after the move failed: {e:#}",
            cell_name(n)
        ));
    }
    for (spec, count) in adopted {
        let changes = plan.error.is_none().then(|| {
            plan.tenants
                .get(spec.id.as_str())
                .map(|t| t.planned)
                .unwrap_or_default()
        });
        let unchanged = changes.is_some_and(|c| c.is_empty());
        let rendered = placed.render(&spec, RenderOptions::default())?;
        placed
            .records
            .update(&spec.id, |r| {
                r.cell_move = None;
                // Nothing to do in the cell: the apply record follows the tenant, so a
                // no-op `apply --all` stays a no-op.
                if unchanged && let Some(a) = r.last_apply.as_mut() {
                    a.fingerprint = rendered.fingerprint.clone();
                    a.provider_lock = lifecycle::lock_digest(cell.dir());
                }
            })
            .await?;
        results.push((
            spec,
            Ok(Moved {
                cell: n,
                resources: count,
                changes,
            }),
        ));
    }
    Ok(results)
}

/// Moves a tenant's state out of its cell into its own root (before a tier move, which
/// works on a tenant's own root); its slot is freed.
pub async fn evict(
    svc: &Services,
    cells: &mut Assignment,
    spec: &TenantSpec,
    lock_timeout: u64,
) -> Result<Moved> {
    let id = &spec.id;
    let rec = svc.records.get(id).await?;
    let n = match (
        rec.cell_move.as_ref().and_then(|m| m.from),
        cells.cell_of(id),
    ) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => bail!("tenant `{id}` is not in a cell"),
    };
    svc.records
        .update(id, |r| {
            r.cell_move = Some(CellMove {
                from: Some(n),
                to: None,
                started_at: Utc::now(),
            })
        })
        .await?;
    let bar = ProgressBar::hidden();
    let module = module_address(spec);
    let mut resources = 0;
    if cells.cell_of(id) == Some(n) {
        let cell = cell_root(svc, n, &bar).await?;
        let cell_state = cell.state_pull().await?;
        let moving = tenants_resources(cell_state.as_ref(), &module);
        if !moving.is_empty() {
            let own = own_root(svc, spec, &bar).await?;
            let own_state = own.state_pull().await?;
            if tenants_resources(own_state.as_ref(), &module).is_empty() {
                resources = moving.len();
                let like = cell_state.clone().unwrap_or_default();
                let state = with_resources(own_state, moving, &like);
                own.state_push(&state, lock_timeout)
                    .await
                    .with_context(|| {
                        format!("cannot move tenant `{id}`'s state out of {}", cell_name(n))
                    })?;
            }
            cell.state_rm(&module, lock_timeout).await?;
        }
        // Only once the cell's state no longer holds the tenant may its configuration
        // drop it (the other way round, the cell's next apply would destroy it).
        cells.release(id);
        cells.save(&svc.records).await?;
        let released = with_cells(svc, cells);
        super::write_cell_root(&released, n, &super::declared(&svc.ctx.ws)?, None).await?;
    }
    svc.records.update(id, |r| r.cell_move = None).await?;
    Ok(Moved {
        cell: n,
        resources,
        changes: None,
    })
}

fn addresses(resources: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}.{}.{}",
                r["module"].as_str().unwrap_or_default(),
                r["type"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(module: &str, name: &str) -> Value {
        serde_json::json!({"module": module, "mode": "managed", "type": "aws_iam_role", "name": name, "instances": []})
    }

    #[test]
    fn only_the_tenants_module_is_taken() {
        let state = serde_json::json!({"resources": [
            resource("module.tenant[\"a\"]", "task"),
            resource("module.tenant[\"ab\"]", "task"),
            resource("module.tenant[\"a\"].module.db", "x"),
        ]});
        let got = tenants_resources(Some(&state), "module.tenant[\"a\"]");
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| {
            r["module"]
                .as_str()
                .unwrap()
                .starts_with("module.tenant[\"a\"]")
        }));
    }

    #[test]
    fn merging_keeps_the_lineage_and_bumps_the_serial() {
        let cell = serde_json::json!({"version": 4, "serial": 7, "lineage": "L", "resources": [resource("module.tenant[\"b\"]", "task")]});
        let merged = with_resources(
            Some(cell),
            vec![resource("module.tenant[\"a\"]", "task")],
            &Value::Null,
        );
        assert_eq!(merged["serial"], 8);
        assert_eq!(merged["lineage"], "L");
        assert_eq!(merged["resources"].as_array().unwrap().len(), 2);
        let like = serde_json::json!({"version": 4, "terraform_version": "1.11.0"});
        let fresh = with_resources(None, vec![resource("module.tenant[\"a\"]", "task")], &like);
        assert_eq!(fresh["serial"], 1);
        assert_eq!(fresh["version"], 4);
        assert_eq!(fresh["lineage"].as_str().unwrap().len(), 36);
    }
}
