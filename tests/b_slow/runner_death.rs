//! A killed runner (SIGKILL: a cancelled CI job, an OOM kill) never kills the Terraform
//! it started: Terraform writes to files, not to tenantctl, so it finishes, saves state
//! and releases the lock alone. A rerun waits for it (`--lock-timeout`) or names it
//! (exit 4), then converges with no manual step and no duplicate resource.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Workdir, state_list, unique};

/// Whether any of the tenant's log files holds `needle` (Terraform's output files sit
/// beside the log and grow even after tenantctl is gone).
fn logs_contain(ws: &Workdir, id: &str, needle: &str) -> bool {
    let dir = ws.path().join(".tenantctl/logs").join(id);
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path())
                .map(|t| t.contains(needle))
                .unwrap_or(false)
        })
}

fn spawn_add(ws: &Workdir, id: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = ws.command(&["add", id, "--tier", "starter"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tenantctl ended ({status}) before {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigkill(mut child: Child) {
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
}

fn marker(ws: &Workdir, id: &str) -> Option<serde_json::Value> {
    let p = ws
        .path()
        .join(".tenantctl/roots")
        .join(id)
        .join(".tenantctl-terraform.json");
    std::fs::read_to_string(p)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let rest = &s[s.rfind(')').unwrap() + 2..];
            !rest.starts_with('Z')
        })
        .unwrap_or(false)
}

/// The rerun converged: plan finds nothing, verify passes, every resource is in state
/// once, and AWS holds one of each (one role, one record, one task definition revision).
fn assert_converged(ws: &Workdir, id: &str) {
    ws.tenantctl(&["plan", id]).assert_code(0);
    ws.tenantctl(&["verify", id]).assert_code(0);
    let state = state_list(ws, id);
    let mut unique_state = state.clone();
    unique_state.sort();
    unique_state.dedup();
    assert_eq!(
        state.len(),
        unique_state.len(),
        "duplicates in state: {state:?}"
    );
    let m = format!("module.tenant[\"{id}\"]");
    for addr in [
        "aws_iam_role.task",
        "aws_iam_role.execution",
        "aws_secretsmanager_secret.db",
        "aws_cloudwatch_log_group.this",
        "aws_route53_record.this",
        "aws_ecs_task_definition.this",
    ] {
        let want = format!("{m}.{addr}");
        assert!(
            state.contains(&want),
            "{want} missing from state: {state:?}"
        );
    }
    let roles = ws
        .aws(&["iam", "list-roles", "--path-prefix", "/"])
        .unwrap();
    let name = format!("tenant-{id}");
    let n = roles["Roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["RoleName"] == name.as_str())
        .count();
    assert_eq!(n, 1, "role {name} exists {n} times");
    let tds = ws
        .aws(&[
            "ecs",
            "list-task-definitions",
            "--family-prefix",
            &name,
            "--status",
            "ACTIVE",
        ])
        .unwrap();
    let n = tds["taskDefinitionArns"].as_array().unwrap().len();
    assert_eq!(
        n, 1,
        "task definition family {name} has {n} active revisions"
    );
}

#[test]
fn sigkill_during_plan_then_rerun_converges() {
    let ws = Workdir::new().with_database();
    let id = unique("kplan");
    let mut child = spawn_add(&ws, &id, &[]);
    wait_until(&mut child, "the plan started", || {
        logs_contain(&ws, &id, "terraform plan")
    });
    std::thread::sleep(Duration::from_millis(500));
    sigkill(child);
    ws.tenantctl(&["add", &id, "--tier", "starter", "--lock-timeout", "300"])
        .assert_code(0);
    assert_converged(&ws, &id);
}

#[test]
fn sigkill_during_apply_rerun_reports_then_waits_and_converges() {
    let ws = Workdir::new().with_database();
    let id = unique("kapply");
    let mut child = spawn_add(&ws, &id, &[]);
    wait_until(&mut child, "the apply started", || {
        logs_contain(&ws, &id, "\"type\":\"apply_start\"")
    });
    // Resources in flight (the Route53 record takes ~15 s here).
    std::thread::sleep(Duration::from_secs(2));
    sigkill(child);

    // Terraform outlives tenantctl, and the root says who holds it.
    let m = marker(&ws, &id).expect("no marker for the running Terraform");
    let pid = m["pid"].as_i64().unwrap();
    assert!(alive(pid), "Terraform (pid {pid}) died with tenantctl");
    assert!(m["command"].as_str().unwrap().contains("apply"), "{m}");

    // A rerun that may not wait names the process and when it started; exit 4.
    let busy = ws.tenantctl(&["add", &id, "--tier", "starter", "--lock-timeout", "0"]);
    busy.assert_code(4);
    let err = busy.stderr();
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("started"), "{err}");
    assert!(err.contains("--lock-timeout"), "{err}");

    // One that may wait does, then converges.
    let run = ws.tenantctl(&["add", &id, "--tier", "starter", "--lock-timeout", "300"]);
    run.assert_code(0);
    assert!(
        run.stderr()
            .contains(&format!("waiting for Terraform pid {pid}")),
        "{}",
        run.dump()
    );
    assert!(!alive(pid));
    assert!(marker(&ws, &id).is_none(), "marker left behind");
    let root = ws.path().join(".tenantctl/roots").join(&id);
    assert!(!root.join(".terraform.tfstate.lock.info").exists());
    assert_converged(&ws, &id);
}

#[test]
fn sigkill_after_apply_before_database_then_rerun_converges() {
    let ws = Workdir::new().with_database();
    let id = unique("kdb");
    let mut child = spawn_add(&ws, &id, &[("TENANTCTL_PAUSE_AT", "database")]);
    let stderr = child.stderr.take().unwrap();
    let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p = paused.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("paused at database") {
                p.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    wait_until(&mut child, "the pause after apply", || {
        paused.load(std::sync::atomic::Ordering::SeqCst)
    });
    sigkill(child);
    // The rerun finds a stale marker or none, plans no change, provisions the database.
    ws.tenantctl(&["add", &id, "--tier", "starter"])
        .assert_code(0);
    assert_converged(&ws, &id);
}

#[test]
fn stale_marker_of_a_dead_process_is_removed() {
    let ws = Workdir::new().with_database();
    let id = unique("kstale");
    let root = ws.path().join(".tenantctl/roots").join(&id);
    std::fs::create_dir_all(&root).unwrap();
    // A pid that is surely gone: a child that has exited and been reaped.
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    std::fs::write(
        root.join(".tenantctl-terraform.json"),
        format!(
            r#"{{"pid":{dead},"proc_start":1,"command":"terraform apply","started":"2026-01-01T00:00:00Z","tenantctl_pid":1,"output":"/nonexistent"}}"#
        ),
    )
    .unwrap();
    ws.tenantctl(&["add", &id, "--tier", "starter"])
        .assert_code(0);
    assert!(marker(&ws, &id).is_none());
}
