//! `tenantctl db status` as CI reads it: exit 0 when every target is current, 2 when
//! migrations are pending (a declared tenant not provisioned yet included), 1 when a target
//! failed (a recorded error, an edited or unknown migration) or cannot be reached.

use std::process::Output;

use serde_json::Value;
use tenantctl::tenant::Tier;

use crate::support::postgres::{DbWorkDir, show};

const ACCOUNTS: &str = include_str!("../migrations/0001_accounts.sql");
const NOTES: &str = "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text);\n";

const STATUS: [&str; 4] = ["db", "status", "--output", "json"];

/// `db status --output json`: the exit code and each target's state.
fn status(w: &DbWorkDir) -> (i32, Vec<(String, String)>, Output) {
    let out = w.tenantctl(&STATUS);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", show(&STATUS, &out)));
    let states = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), states, out)
}

#[track_caller]
fn assert_status(w: &DbWorkDir, code: i32, states: &[(&str, &str)]) {
    let (got, rows, out) = status(w);
    let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(rows, states, "{}", show(&STATUS, &out));
    assert_eq!(got, code, "{}", show(&STATUS, &out));
}

#[track_caller]
fn migrate(w: &DbWorkDir, code: i32) {
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(code), "{}", show(&args, &out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_0_current_2_pending_1_failed() {
    let w = DbWorkDir::empty("st_codes").await;
    // Nothing declared: nothing to do.
    assert_status(&w, 0, &[]);

    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("st-s1", Tier::Starter).await;
    w.provision("st-g1", Tier::Growth).await;
    w.provision("st-e1", Tier::Enterprise).await;
    let current = [
        ("pool", "up_to_date"),
        ("st-e1", "up_to_date"),
        ("st-g1", "up_to_date"),
    ];
    assert_status(&w, 0, &current);
    // The human table exits the same way.
    let out = w.tenantctl(&["db", "status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        show(&["db", "status"], &out)
    );

    // A declared tenant that was never provisioned has every migration still to apply.
    w.declare("st-g2", Tier::Growth);
    assert_status(
        &w,
        2,
        &[
            ("pool", "up_to_date"),
            ("st-e1", "up_to_date"),
            ("st-g1", "up_to_date"),
            ("st-g2", "not_provisioned"),
        ],
    );
    w.provision("st-g2", Tier::Growth).await;
    assert_status(
        &w,
        0,
        &[
            ("pool", "up_to_date"),
            ("st-e1", "up_to_date"),
            ("st-g1", "up_to_date"),
            ("st-g2", "up_to_date"),
        ],
    );

    // A new migration: every target pending.
    w.write_migration("0002_notes.sql", NOTES);
    let pending = [
        ("pool", "pending"),
        ("st-e1", "pending"),
        ("st-g1", "pending"),
        ("st-g2", "pending"),
    ];
    assert_status(&w, 2, &pending);
    let out = w.tenantctl(&["db", "status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        show(&["db", "status"], &out)
    );

    // It fails on one target: that target's recorded error makes status exit 1, though
    // its state is still only "pending".
    w.admin()
        .await
        .batch_execute("CREATE TABLE \"tenant_st-g1\".notes (tenant_id text NOT NULL)")
        .await
        .unwrap();
    migrate(&w, 1);
    let (code, rows, out) = status(&w);
    assert_eq!(code, 1, "{}", show(&STATUS, &out));
    assert!(
        rows.contains(&("st-g1".into(), "pending".into())),
        "{rows:?}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let g1 = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "st-g1")
        .unwrap();
    assert!(
        g1["last_error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{g1}"
    );

    // Fixed and migrated again: the error is cleared, everything current.
    w.admin()
        .await
        .batch_execute("DROP TABLE \"tenant_st-g1\".notes")
        .await
        .unwrap();
    migrate(&w, 0);
    assert_status(
        &w,
        0,
        &[
            ("pool", "up_to_date"),
            ("st-e1", "up_to_date"),
            ("st-g1", "up_to_date"),
            ("st-g2", "up_to_date"),
        ],
    );

    // An applied migration edited afterwards: failed, whatever else is pending.
    let path = w.migrations().join("0002_notes.sql");
    std::fs::write(&path, format!("{NOTES}-- edited after it was applied\n")).unwrap();
    w.write_migration("0003_more.sql", "SELECT 1;\n");
    let (code, rows, out) = status(&w);
    assert_eq!(code, 1, "{}", show(&STATUS, &out));
    assert!(
        rows.iter().all(|(_, s)| s == "checksum_mismatch"),
        "{rows:?}"
    );
    // An applied migration whose file is gone: failed too.
    std::fs::remove_file(&path).unwrap();
    let (code, rows, out) = status(&w);
    assert_eq!(code, 1, "{}", show(&STATUS, &out));
    assert!(
        rows.iter().all(|(_, s)| s == "unknown_migration"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_makes_status_exit_1() {
    let w = DbWorkDir::empty("st_unreach").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("su-g1", Tier::Growth).await;
    w.provision("su-e1", Tier::Enterprise).await;
    assert_status(&w, 0, &[("su-e1", "up_to_date"), ("su-g1", "up_to_date")]);
    // The dedicated database moves to a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = w.path().join("tenantctl.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let from = format!("local_silo = {{ host = \"127.0.0.1\", port = {} }}", w.port);
    assert!(text.contains(&from), "{text}");
    let to = format!("local_silo = {{ host = \"127.0.0.1\", port = {closed} }}");
    std::fs::write(&cfg, text.replace(&from, &to)).unwrap();
    assert_status(&w, 1, &[("su-e1", "unreachable"), ("su-g1", "up_to_date")]);
}
