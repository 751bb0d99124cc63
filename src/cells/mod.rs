//! State cells: the tenants of the tiers named in `[cells] tiers` share Terraform roots
//! of at most `[cells] size` tenants (`.tenantctl/roots/cell-<n>/`, one state each).
//!
//! A plan costs 6–9 s of CPU per root whatever it holds (the provider starts and builds
//! its schema each time), so a fleet-wide plan over cells of 50 starts Terraform 50×
//! less often. Each tenant is still its own module instance (`module.tenant["<id>"]`,
//! the same address as in a one-tenant root), so the state of a one-tenant root moves
//! into a cell without anything being recreated (`adopt`), and work on one tenant of a
//! cell plans only that instance (`-target`).
//!
//! Which tenant is in which cell is recorded beside the states (`cells/assignment.json`
//! among the records), so every machine of a team agrees. Assignment is stable: a new
//! tenant takes the first free slot (a removed tenant's slot is reused) or opens a new
//! cell; no tenant ever moves to make room.

pub mod adopt;
pub mod converge;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::lifecycle::Services;
use crate::moves::flow::{self, Decision};
use crate::records::{RecordStore, TenantRecord};
use crate::render::{RenderOptions, RenderedRoot};
use crate::tenant::TenantId;
use crate::workspace::{TenantSpec, Workspace};

/// Where the assignment lives among the records: a name no tenant id can take (ids have
/// no `/`), so it never collides with `<id>.json`.
pub const ASSIGNMENT: &str = "cells/assignment.json";

/// The declared tenants by id, read once per command.
pub fn declared(ws: &Workspace) -> Result<HashMap<TenantId, TenantSpec>> {
    Ok(ws
        .tenants()?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect())
}

/// The name of cell `n`: its root directory, its state key, its label in messages.
pub fn cell_name(n: u32) -> String {
    format!("cell-{n}")
}

pub fn cell_dir(ws: &Workspace, n: u32) -> PathBuf {
    ws.roots_dir().join(cell_name(n))
}

/// The cell's state key under the S3 backend's prefix (beside `tenants/<id>.tfstate`).
pub fn state_key(n: u32) -> String {
    format!("cells/{}.tfstate", cell_name(n))
}

/// One member of a cell, rendered as it stands.
pub struct Member {
    /// As the cell's root holds it (its applied tier while a tier change waits).
    pub spec: TenantSpec,
    pub record: TenantRecord,
    pub rendered: RenderedRoot,
    /// The tier its file asks for when that change needs a data move.
    pub pending_tier: Option<crate::tenant::Tier>,
}

/// Renders every member of cell `n`. A member whose file is gone (a removal under way)
/// stays as last applied: dropping it from the root would destroy it, and only `remove`
/// destroys, after its export. A member never applied and without a file is left out.
pub async fn members(
    svc: &Services,
    n: u32,
    declared: &HashMap<TenantId, TenantSpec>,
    allow_destroy: Option<&TenantId>,
) -> Result<Vec<Member>> {
    let ids = svc.cells.members(n);
    let mut records = svc.records.get_many(&ids).await?;
    let mut out = Vec::new();
    for id in &ids {
        let record = records.remove(id).unwrap_or_default();
        let applied_tier = record.last_apply.as_ref().and_then(|a| a.tier.parse().ok());
        let spec = match (declared.get(id), applied_tier) {
            (Some(s), _) => s.clone(),
            (None, Some(tier)) => TenantSpec {
                id: id.clone(),
                tier,
            },
            (None, None) => continue,
        };
        let decision = flow::decide(&spec.id, &record, spec.tier)?;
        let (rspec, ropts, pending_tier) = if decision == Decision::None {
            let (rspec, ropts) = flow::render_options(&record, &spec);
            (rspec, ropts, None)
        } else {
            // Refused by the commands; until the file is set back the tenant stays as
            // it was applied.
            let tier = applied_tier.unwrap_or(spec.tier);
            let rspec = TenantSpec {
                id: spec.id.clone(),
                tier,
            };
            (rspec, RenderOptions::default(), Some(spec.tier))
        };
        let rendered = svc.render(
            &rspec,
            RenderOptions {
                allow_destroy: allow_destroy == Some(id),
                ..ropts
            },
        )?;
        out.push(Member {
            spec: rspec,
            record,
            rendered,
            pending_tier,
        });
    }
    Ok(out)
}

/// Writes cell `n`'s root (and the shared modules) with every member as it stands, for
/// a command that works on the cell outside `apply` (`remove`). `allow_destroy` names
/// the member whose protections are lifted for its destroy.
pub async fn write_cell_root(
    svc: &Services,
    n: u32,
    declared: &HashMap<TenantId, TenantSpec>,
    allow_destroy: Option<&TenantId>,
) -> Result<PathBuf> {
    let ws = &svc.ctx.ws;
    let members = members(svc, n, declared, allow_destroy).await?;
    let inputs: Vec<_> = members.iter().map(|m| m.rendered.inputs.clone()).collect();
    crate::render::write_modules(ws)?;
    let dir = cell_dir(ws, n);
    crate::render::cell_root(ws, n, &inputs)?.write(&dir)?;
    Ok(dir)
}

/// Tier moves work on a tenant's own root: each selected tenant in a cell whose tier
/// change starts or continues a move (or whose earlier eviction was interrupted) leaves
/// its cell first ([`adopt::evict`]). Returns the tenants that could not, with why.
pub async fn evict_moving(
    svc: &mut Services,
    specs: &[TenantSpec],
    lock_timeout: u64,
) -> Result<Vec<(TenantId, anyhow::Error)>> {
    let in_cells: Vec<&TenantSpec> = specs
        .iter()
        .filter(|s| svc.cells.cell_of(&s.id).is_some())
        .collect();
    let ids: Vec<TenantId> = in_cells.iter().map(|s| s.id.clone()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let records = svc.records.get_many(&ids).await?;
    let mut cells = (*svc.cells).clone();
    let mut failed = Vec::new();
    for spec in in_cells {
        let rec = &records[&spec.id];
        let evicting = rec.cell_move.as_ref().is_some_and(|m| m.to.is_none());
        let moves = flow::decide(&spec.id, rec, spec.tier)? != Decision::None;
        if !(evicting || moves) {
            continue;
        }
        match adopt::evict(svc, &mut cells, spec, lock_timeout).await {
            Ok(m) => svc.ctx.info(format!(
                "{}: left {} for its own root ({} state entries moved) to change tier",
                spec.id,
                cell_name(m.cell),
                m.resources
            )),
            Err(e) => failed.push((spec.id.clone(), e)),
        }
    }
    svc.cells = std::sync::Arc::new(cells);
    Ok(failed)
}

/// Cell number → its slots, in order; a removed tenant's slot is `None` until reused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    cells: BTreeMap<u32, Vec<Option<TenantId>>>,
    #[serde(skip)]
    index: HashMap<TenantId, u32>,
}

impl Assignment {
    /// The recorded assignment (empty when cells were never used).
    pub async fn load(store: &RecordStore) -> Result<Assignment> {
        let Some((bytes, at)) = store.read(ASSIGNMENT).await? else {
            return Ok(Assignment::default());
        };
        let mut a: Assignment = serde_json::from_slice(&bytes)
            .with_context(|| format!("invalid cell assignment {at}"))?;
        a.reindex();
        Ok(a)
    }

    pub async fn save(&self, store: &RecordStore) -> Result<()> {
        store
            .write(ASSIGNMENT, serde_json::to_vec_pretty(self)?)
            .await
    }

    fn reindex(&mut self) {
        self.index = self
            .cells
            .iter()
            .flat_map(|(n, slots)| slots.iter().flatten().map(|id| (id.clone(), *n)))
            .collect();
    }

    pub fn cell_of(&self, id: &TenantId) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The tenants of cell `n`, in slot order.
    pub fn members(&self, n: u32) -> Vec<TenantId> {
        self.cells
            .get(&n)
            .map(|slots| slots.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The cells that hold at least one tenant.
    pub fn cells(&self) -> Vec<u32> {
        self.cells
            .iter()
            .filter(|(_, slots)| slots.iter().any(Option::is_some))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Puts `id` in the first free slot of the lowest-numbered cell with room, or in a
    /// new cell; a tenant already placed stays where it is. Returns its cell.
    pub fn place(&mut self, id: &TenantId, size: u32) -> u32 {
        if let Some(n) = self.cell_of(id) {
            return n;
        }
        let size = size.max(1) as usize;
        let mut chosen = None;
        for (n, slots) in self.cells.iter_mut() {
            if let Some(slot) = slots.iter_mut().find(|s| s.is_none()) {
                *slot = Some(id.clone());
                chosen = Some(*n);
                break;
            }
            if slots.len() < size {
                slots.push(Some(id.clone()));
                chosen = Some(*n);
                break;
            }
        }
        let n = chosen.unwrap_or_else(|| {
            let n = self.cells.keys().next_back().map_or(1, |last| last + 1);
            self.cells.insert(n, vec![Some(id.clone())]);
            n
        });
        self.index.insert(id.clone(), n);
        n
    }

    /// Puts `id` in cell `n` (its first free slot, or a new one): to finish a move into
    /// that cell that an earlier run recorded.
    pub fn place_in(&mut self, id: &TenantId, n: u32) {
        self.release(id);
        let slots = self.cells.entry(n).or_default();
        match slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(id.clone()),
            None => slots.push(Some(id.clone())),
        }
        self.index.insert(id.clone(), n);
    }

    /// Frees the tenant's slot (for the next new tenant). Returns the cell it was in.
    pub fn release(&mut self, id: &TenantId) -> Option<u32> {
        let n = self.index.remove(id)?;
        if let Some(slot) = self
            .cells
            .get_mut(&n)
            .and_then(|slots| slots.iter_mut().find(|s| s.as_ref() == Some(id)))
        {
            *slot = None;
        }
        Some(n)
    }

    /// Places every declared tenant of a celled tier that has no root yet, in id order
    /// (so two machines place the same new tenants the same way). A tenant already
    /// applied in its own root stays there until `cells adopt` moves its state; one in
    /// the middle of a move or a removal is left where it is. Returns the tenants placed.
    pub fn place_new(
        &mut self,
        cfg: &Config,
        specs: &[TenantSpec],
        records: &BTreeMap<TenantId, TenantRecord>,
    ) -> Vec<TenantId> {
        let mut ids: Vec<&TenantSpec> = specs
            .iter()
            .filter(|s| cfg.cells.holds(s.tier) && self.cell_of(&s.id).is_none())
            .filter(|s| {
                records.get(&s.id).is_none_or(|r| {
                    r.last_apply.is_none() && r.moving.is_none() && r.removing.is_none()
                })
            })
            .collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        ids.into_iter()
            .map(|s| {
                self.place(&s.id, cfg.cells.size);
                s.id.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn fills_cells_in_order_and_opens_new_ones() {
        let mut a = Assignment::default();
        let cells: Vec<u32> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|t| a.place(&id(t), 2))
            .collect();
        assert_eq!(cells, [1, 1, 2, 2, 3]);
        assert_eq!(a.members(2), [id("c"), id("d")]);
        assert_eq!(a.cells(), [1, 2, 3]);
    }

    #[test]
    fn placing_again_never_moves_a_tenant() {
        let mut a = Assignment::default();
        for t in ["a", "b", "c"] {
            a.place(&id(t), 2);
        }
        let before = a.clone();
        assert_eq!(a.place(&id("c"), 2), 2);
        assert_eq!(a.place(&id("a"), 5), 1);
        assert_eq!(a, before);
    }

    #[test]
    fn a_removed_tenants_slot_is_reused_and_nobody_else_moves() {
        let mut a = Assignment::default();
        for t in ["a", "b", "c", "d", "e"] {
            a.place(&id(t), 2);
        }
        assert_eq!(a.release(&id("b")), Some(1));
        assert_eq!(a.cell_of(&id("b")), None);
        assert_eq!(a.place(&id("z"), 2), 1);
        assert_eq!(a.members(1), [id("a"), id("z")]);
        for (t, n) in [("c", 2), ("d", 2), ("e", 3)] {
            assert_eq!(a.cell_of(&id(t)), Some(n), "{t} moved");
        }
    }

    #[test]
    fn round_trips_through_json_with_its_index() {
        let mut a = Assignment::default();
        for t in ["a", "b", "c"] {
            a.place(&id(t), 2);
        }
        a.release(&id("a"));
        let json = serde_json::to_string(&a).unwrap();
        let mut back: Assignment = serde_json::from_str(&json).unwrap();
        back.reindex();
        assert_eq!(back, a);
        assert_eq!(back.cell_of(&id("c")), Some(2));
    }

    #[test]
    fn new_tenants_are_placed_in_id_order_and_applied_ones_stay_in_their_roots() {
        let mut cfg: Config = toml::from_str(&Config::template(true)).unwrap();
        cfg.cells.enabled = true;
        cfg.cells.size = 2;
        let spec = |s: &str, tier: &str| TenantSpec {
            id: id(s),
            tier: tier.parse().unwrap(),
        };
        let specs = [
            spec("d", "starter"),
            spec("b", "growth"),
            spec("a", "starter"),
            spec("e", "enterprise"),
            spec("c", "starter"),
        ];
        let mut records = BTreeMap::new();
        let applied: TenantRecord = serde_json::from_str(
            r#"{"last_apply": {"at": "2026-01-01T00:00:00Z", "fingerprint": "x", "tier": "starter"}}"#,
        )
        .unwrap();
        records.insert(id("c"), applied);
        let mut a = Assignment::default();
        let placed = a.place_new(&cfg, &specs, &records);
        assert_eq!(placed, [id("a"), id("b"), id("d")]);
        assert_eq!(a.members(1), [id("a"), id("b")]);
        assert_eq!(a.members(2), [id("d")]);
        assert_eq!(a.cell_of(&id("c")), None, "applied in its own root");
        assert_eq!(a.cell_of(&id("e")), None, "enterprise is not celled");
    }
}
