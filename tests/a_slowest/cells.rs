//! State cells end to end on moto, Terraform and PostgreSQL: an existing fleet on
//! per-tenant roots adopted into cells (state moved, nothing recreated), twelve starter
//! and growth tenants in cells of five beside an enterprise tenant in its own root,
//! drift on one tenant repaired alone, failing tenants reported alone, shards of whole
//! cells. (Removal, slot reuse and tier moves: `b_slow::cells`.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::b_slow::cells::{assignment, declare, role_id, rows, status};
use crate::support::{Workdir, state_list, unique};

#[test]
fn fleet_adopted_into_cells_with_drift_and_failures_reported_per_tenant() {
    let ws = Workdir::new().with_database();
    let p = unique("cl");
    let id = |s: &str| format!("{p}{s}");

    // 1. An existing fleet on per-tenant roots (cells off): three pooled tenants and an
    //    enterprise tenant.
    let old = [id("o1"), id("o2"), id("o3")];
    declare(&ws, &old[0], "starter");
    declare(&ws, &old[1], "starter");
    declare(&ws, &old[2], "growth");
    let ent = id("e1");
    declare(&ws, &ent, "enterprise");
    ws.tenantctl(&["--parallelism", "4", "apply", "--all"])
        .assert_code(0);
    for t in &old {
        assert!(ws.path().join(".tenantctl/roots").join(t).is_dir());
    }
    let roles_before: Vec<String> = old.iter().map(|t| role_id(&ws, t)).collect();
    let entries_before = state_list(&ws, &old[0]).len();
    assert!(entries_before > 5, "{entries_before}");

    // 2. Cells on (cells of five); the existing fleet adopted by moving state.
    let cfg = ws.path().join("tenantctl.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[cells]\nenabled = true\nsize = 5\n");
    std::fs::write(&cfg, text).unwrap();
    let r = ws.tenantctl(&["cells", "adopt", "--all", "--output", "json"]);
    r.assert_code(0);
    let adopted = rows(&r);
    for t in &old {
        assert_eq!(status(&adopted, t), "changed", "{}", r.dump());
        let detail = adopted[t]["detail"].as_str().unwrap();
        assert!(
            detail.contains("state moved into cell-1") && detail.contains("no changes"),
            "{detail}"
        );
        assert!(
            !ws.path().join(".tenantctl/roots").join(t).exists(),
            "{t}'s own root is left"
        );
    }
    assert_eq!(status(&adopted, &ent), "skipped");
    assert!(ws.path().join(".tenantctl/roots").join(&ent).is_dir());
    // Nothing was recreated: the same roles, all of the state in the cell.
    let roles_after: Vec<String> = old.iter().map(|t| role_id(&ws, t)).collect();
    assert_eq!(roles_before, roles_after);
    let cell1 = state_list(&ws, "cell-1");
    for t in &old {
        let n = cell1
            .iter()
            .filter(|a| a.starts_with(&format!("module.tenant[\"{t}\"]")))
            .count();
        assert_eq!(n, entries_before, "{t} in cell-1: {cell1:?}");
    }
    let r = ws.tenantctl(&["plan", "--all", "--output", "json"]);
    r.assert_code(0);
    for row in rows(&r).values() {
        assert_eq!(row["status"], "unchanged", "{}", r.dump());
    }
    // The apply records followed the tenants: a no-op apply plans nothing.
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(0);
    assert!(
        rows(&r).values().all(|row| row["status"] == "skipped"),
        "{}",
        r.dump()
    );

    // 3. Nine more pooled tenants: twelve in cells of five, the enterprise tenant alone.
    let new: Vec<String> = (1..=9).map(|i| id(&format!("n{i}"))).collect();
    for (i, t) in new.iter().enumerate() {
        declare(&ws, t, if i % 3 == 2 { "growth" } else { "starter" });
    }
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(0);
    let applied = rows(&r);
    for t in &new {
        assert_eq!(status(&applied, t), "changed", "{}", r.dump());
    }
    for t in old.iter().chain([&ent]) {
        assert_eq!(status(&applied, t), "skipped", "{}", r.dump());
    }
    let cells = assignment(&ws);
    let members = |n: u32| -> Vec<String> { cells[&n].iter().flatten().cloned().collect() };
    assert_eq!(cells.len(), 3, "{cells:?}");
    assert_eq!(
        members(1),
        [&old[..], &new[..2]].concat(),
        "new tenants fill cell-1 after the adopted ones"
    );
    assert_eq!(members(2), new[2..7].to_vec());
    assert_eq!(members(3), new[7..].to_vec());
    let roots: BTreeSet<String> = std::fs::read_dir(ws.path().join(".tenantctl/roots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        roots,
        BTreeSet::from([
            "cell-1".into(),
            "cell-2".into(),
            "cell-3".into(),
            ent.clone()
        ]),
        "one root per cell and one for the enterprise tenant"
    );
    ws.tenantctl(&["verify", "--all"]).assert_code(0);

    // 4. Drift on one tenant of cell-2: repaired alone, the cell's other tenants untouched.
    let drifted = &new[3];
    ws.aws(&[
        "iam",
        "delete-role-policy",
        "--role-name",
        &format!("tenant-{drifted}"),
        "--policy-name",
        &format!("tenant-{drifted}-data"),
    ])
    .unwrap();
    ws.tenantctl(&["verify", "--all"]).assert_code(3);
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(0);
    let repaired = rows(&r);
    assert_eq!(status(&repaired, drifted), "changed", "{}", r.dump());
    assert_eq!(repaired[drifted]["changes"]["add"], 1, "{}", r.dump());
    for (t, row) in &repaired {
        if t != drifted {
            assert_eq!(row["status"], "skipped", "{t}\n{}", r.dump());
        }
    }
    // Only the drifted tenant's module instance was planned in its cell.
    let log_dir = ws.path().join(".tenantctl/logs/cell-2");
    let logs: String = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-apply.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        logs.contains(&format!("-target=module.tenant[\"{drifted}\"]")),
        "no targeted plan in {}",
        log_dir.display()
    );
    ws.tenantctl(&["verify", "--all"]).assert_code(0);

    // 5. Two tenants made to fail beside one that works, all three in cell-3: one's role
    //    name is taken by another tenant's role, the other's log group exists already.
    let (taken, clash, fine) = (id("f1"), id("f2"), id("f3"));
    ws.aws(&[
        "iam",
        "create-role",
        "--role-name",
        &format!("tenant-{taken}"),
        "--assume-role-policy-document",
        r#"{"Version":"2012-10-17","Statement":[]}"#,
        "--tags",
        "Key=tenant,Value=someone-else",
    ])
    .unwrap();
    ws.aws(&[
        "logs",
        "create-log-group",
        "--log-group-name",
        &format!("/tenants/{clash}"),
    ])
    .unwrap();
    for t in [&taken, &clash, &fine] {
        declare(&ws, t, "starter");
    }
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(1);
    let mixed = rows(&r);
    assert_eq!(status(&mixed, &taken), "failed");
    let e = mixed[&taken]["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("IAM role `tenant-{taken}`")) && e.contains("someone-else"),
        "{e}"
    );
    assert_eq!(status(&mixed, &clash), "failed");
    let e = mixed[&clash]["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("/tenants/{clash}")) && e.contains("already exists"),
        "{e}"
    );
    assert_eq!(status(&mixed, &fine), "changed", "{}", r.dump());
    for (t, row) in &mixed {
        if ![&taken, &clash, &fine].contains(&t) {
            assert_eq!(row["status"], "skipped", "{t}\n{}", r.dump());
        }
    }
    assert_eq!(assignment(&ws)[&3].iter().flatten().count(), 5);
    ws.tenantctl(&["verify", &fine]).assert_code(0);
    // The failed tenants are withdrawn (never applied: nothing to destroy).
    for t in [&taken, &clash] {
        std::fs::remove_file(ws.path().join(format!("tenants/{t}.toml"))).unwrap();
    }
    // Their slots are freed by the next apply (nothing of theirs is in the state).
    ws.tenantctl(&["apply", "--all"]).assert_code(0);
    assert_eq!(
        assignment(&ws)[&3],
        [
            Some(new[7].clone()),
            Some(new[8].clone()),
            None,
            None,
            Some(fine.clone())
        ]
    );

    let r = ws.tenantctl(&["plan", "--all", "--output", "json"]);
    r.assert_code(0);
    assert!(
        rows(&r).values().all(|row| row["status"] == "unchanged"),
        "{}",
        r.dump()
    );

    // 6. Shards of whole cells: disjoint, complete, each cell on one runner.
    let declared: BTreeSet<String> = std::fs::read_dir(ws.path().join("tenants"))
        .unwrap()
        .flatten()
        .map(|e| e.path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let cells = assignment(&ws);
    let mut seen = BTreeSet::new();
    for k in 1..=3 {
        let r = ws.tenantctl(&["render", "--shard", &format!("{k}/3"), "--output", "json"]);
        r.assert_code(0);
        let v: Value = serde_json::from_str(&r.stdout()).unwrap();
        let shard: BTreeSet<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["tenant"].as_str().unwrap().to_string())
            .collect();
        assert!(seen.is_disjoint(&shard), "shard {k} overlaps: {shard:?}");
        for slots in cells.values() {
            let cell: BTreeSet<String> = slots.iter().flatten().cloned().collect();
            assert!(
                cell.is_subset(&declared),
                "a withdrawn tenant keeps a slot: {cell:?}"
            );
            let inside = cell.intersection(&shard).count();
            assert!(
                inside == 0 || inside == cell.len(),
                "a cell split across shards: {cell:?} vs {shard:?}"
            );
        }
        seen.extend(shard);
    }
    assert_eq!(seen, declared);
}
