//! State cells end to end: a tenant removed from a cell and a new one filling its slot,
//! and a tier change that moves data taking the tenant's state out of its cell and,
//! once the move is finished, back in, with nothing recreated. (Adoption of an existing
//! fleet, drift, failures and shards: `a_slowest::cells`.)

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{Workdir, state_list, unique};

pub(crate) fn declare(ws: &Workdir, id: &str, tier: &str) {
    std::fs::write(
        ws.path().join(format!("tenants/{id}.toml")),
        format!("id = \"{id}\"\ntier = \"{tier}\"\n"),
    )
    .unwrap();
}

/// The per-tenant rows of a fleet command's JSON summary, by tenant.
pub(crate) fn rows(run: &crate::support::Run) -> BTreeMap<String, Value> {
    let v: Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.dump()));
    v["tenants"]
        .as_array()
        .unwrap_or_else(|| panic!("no tenants\n{}", run.dump()))
        .iter()
        .map(|r| (r["tenant"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// The recorded assignment: cell number → slots (None for a free slot).
pub(crate) fn assignment(ws: &Workdir) -> BTreeMap<u32, Vec<Option<String>>> {
    let text = std::fs::read_to_string(ws.path().join(".tenantctl/records/cells/assignment.json"))
        .expect("cell assignment recorded");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cells"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, slots)| {
            let slots = slots
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect();
            (n.parse().unwrap(), slots)
        })
        .collect()
}

pub(crate) fn role_id(ws: &Workdir, id: &str) -> String {
    let v = ws
        .aws(&["iam", "get-role", "--role-name", &format!("tenant-{id}")])
        .unwrap_or_else(|e| panic!("role of {id}: {e}"));
    v["Role"]["RoleId"].as_str().unwrap().to_string()
}

pub(crate) fn status(rows: &BTreeMap<String, Value>, id: &str) -> String {
    rows.get(id)
        .unwrap_or_else(|| panic!("{id} not in the summary: {rows:?}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_removed_tenants_slot_is_reused_and_a_tier_move_leaves_and_rejoins_its_cell() {
    let ws = Workdir::new().with_database();
    let p = unique("cm");
    let id = |s: &str| format!("{p}{s}");
    let cfg = ws.path().join("tenantctl.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[cells]\nenabled = true\nsize = 3\n");
    std::fs::write(&cfg, text).unwrap();
    let tenants = [id("a"), id("b"), id("c"), id("d")];
    for t in &tenants {
        declare(&ws, t, "starter");
    }
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(0);
    assert!(
        rows(&r).values().all(|row| row["status"] == "changed"),
        "{}",
        r.dump()
    );
    let cells = assignment(&ws);
    assert_eq!(
        cells[&1],
        tenants[..3].iter().cloned().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(cells[&2], [Some(tenants[3].clone())]);
    let roles_before: Vec<String> = tenants.iter().map(|t| role_id(&ws, t)).collect();

    // A tenant removed from cell-1; the next new tenant takes its slot.
    let gone = &tenants[1];
    ws.tenantctl(&["--yes", "remove", gone]).assert_code(0);
    assert!(
        ws.aws(&["iam", "get-role", "--role-name", &format!("tenant-{gone}")])
            .is_err()
    );
    let slots = assignment(&ws)[&1].clone();
    assert_eq!(slots[1], None, "{slots:?}");
    assert!(
        !state_list(&ws, "cell-1")
            .iter()
            .any(|a| a.contains(gone.as_str()))
    );
    let late = id("z1");
    ws.tenantctl(&["add", &late, "--tier", "growth"])
        .assert_code(0);
    let slots = assignment(&ws)[&1].clone();
    assert_eq!(slots[1].as_deref(), Some(late.as_str()), "{slots:?}");
    assert_eq!(
        role_id(&ws, &tenants[0]),
        roles_before[0],
        "a neighbour was recreated"
    );
    let r = ws.tenantctl(&["plan", "--all", "--output", "json"]);
    r.assert_code(0);
    assert!(
        rows(&r).values().all(|row| row["status"] == "unchanged"),
        "{}",
        r.dump()
    );

    // A tier change that moves data (starter → growth): the tenant's state leaves its
    // cell for its own root, the data moves, and finishing the move brings it back into
    // its old slot; no resource is recreated on the way.
    let mover = &tenants[0];
    let role = role_id(&ws, mover);
    let r = ws.tenantctl(&["move", mover, "--tier", "growth"]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("left cell-1 for its own root"),
        "{}",
        r.dump()
    );
    assert!(ws.path().join(".tenantctl/roots").join(mover).is_dir());
    assert!(!assignment(&ws)[&1].contains(&Some(mover.clone())));
    assert!(
        !state_list(&ws, "cell-1")
            .iter()
            .any(|a| a.contains(mover.as_str()))
    );
    let r = ws.tenantctl(&["move", mover, "--finish"]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("state moved into cell-1"),
        "{}",
        r.dump()
    );
    assert_eq!(
        assignment(&ws)[&1][0].as_deref(),
        Some(mover.as_str()),
        "its old slot"
    );
    assert!(!ws.path().join(".tenantctl/roots").join(mover).exists());
    assert_eq!(
        role_id(&ws, mover),
        role,
        "the move recreated the tenant's role"
    );
    ws.tenantctl(&["verify", mover]).assert_code(0);
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(0);
    assert!(
        rows(&r).values().all(|row| row["status"] == "skipped"),
        "{}",
        r.dump()
    );
}
