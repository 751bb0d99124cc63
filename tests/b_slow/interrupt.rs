//! Ctrl-C during an apply: tenantctl forwards one SIGINT to Terraform, which finishes the
//! resource in flight, saves state and releases the lock; tenantctl exits 130, and a
//! rerun converges.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Workdir, unique};

fn apply_started(ws: &Workdir, id: &str) -> bool {
    let dir = ws.path().join(".tenantctl/logs").join(id);
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path())
                .map(|t| t.contains("\"type\":\"apply_start\""))
                .unwrap_or(false)
        })
}

#[test]
fn ctrl_c_during_apply_exits_130_and_rerun_converges() {
    let ws = Workdir::new().with_database();
    let id = unique("intr");
    let mut child = ws
        .command(&["add", &id, "--tier", "starter"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !apply_started(&ws, &id) {
        assert!(Instant::now() < deadline, "apply never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "tenantctl ended before the apply started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the apply get some resources in flight (the Route53 record takes ~15 s here).
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    // State is consistent and the lock released.
    let root = ws.path().join(".tenantctl/roots").join(&id);
    assert!(
        !root.join(".terraform.tfstate.lock.info").exists(),
        "state lock left behind"
    );
    let resources = crate::support::state_list(&ws, &id).len();
    assert!(resources > 0, "nothing was applied before the interrupt");

    // A rerun converges, and then there is nothing left to do.
    ws.tenantctl(&["add", &id, "--tier", "starter"])
        .assert_code(0);
    ws.tenantctl(&["plan", &id]).assert_code(0);
}
