//! Whole command runs snapshotted with insta (exit code, stdout, stderr, volatile values
//! filtered), so an output change is a reviewed diff; and the conventions users expect
//! of a CLI: completions, a man page, and output that survives a closed or full stdout.

use std::process::{Command, Stdio};

use crate::support::{Run, Workdir, bin, snapshot_text};

fn run_plain(args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run tenantctl");
    Run {
        cmd: format!("tenantctl {}", args.join(" ")),
        cwd: std::path::PathBuf::new(),
        out,
    }
}

/// An offline work dir with two declared, never applied tenants and the platform values
/// an operator would set for an existing platform (so roots render without AWS).
fn fleet() -> Workdir {
    let ws = Workdir::offline();
    ws.edit_config(
        "create_load_balancer = false",
        "create_load_balancer = false\nhosted_zone_id = \"Z123\"\ncluster_arn = \"arn:aws:ecs:us-east-1:123456789012:cluster/x\"",
    );
    for (id, tier) in [("globex", "growth"), ("initech", "starter")] {
        std::fs::write(
            ws.path().join(format!("tenants/{id}.toml")),
            format!("id = \"{id}\"\ntier = \"{tier}\"\n"),
        )
        .unwrap();
    }
    ws
}

#[test]
fn help_is_snapshotted() {
    let help = run_plain(&["--help"]);
    help.assert_code(0);
    insta::assert_snapshot!("help", snapshot_text(&help, &[]));
    let db = run_plain(&["db", "--help"]);
    db.assert_code(0);
    insta::assert_snapshot!("db_help", snapshot_text(&db, &[]));
}

#[test]
fn list_in_every_format_is_snapshotted() {
    let ws = fleet();
    for format in ["human", "json", "markdown"] {
        let r = ws.tenantctl(&["list", "--output", format]);
        r.assert_code(0);
        insta::assert_snapshot!(format!("list_{format}"), snapshot_text(&r, &[]));
    }
}

#[test]
fn bad_input_is_snapshotted() {
    let ws = fleet();
    for (name, args) in [
        ("bad_id", vec!["add", "Acme_Corp", "--tier", "starter"]),
        ("bad_tier", vec!["add", "acme", "--tier", "gold"]),
        ("bad_shard", vec!["plan", "--shard", "5/4"]),
        ("unknown_tenant", vec!["plan", "nobody"]),
    ] {
        let r = ws.tenantctl(&args);
        r.assert_code(1);
        insta::assert_snapshot!(format!("bad_input_{name}"), snapshot_text(&r, &[]));
    }
    // A missing config: the hint comes after the whole cause chain.
    let r = ws.tenantctl(&["--config", "missing.toml", "list"]);
    r.assert_code(1);
    let err = r.stderr();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.dump());
    assert!(
        lines[0].starts_with("error: cannot read config") && lines[0].contains("(os error 2)"),
        "{}",
        r.dump()
    );
    assert!(
        lines[1].starts_with("hint: run `tenantctl init`"),
        "{}",
        r.dump()
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run_plain(&["completions", shell]);
        r.assert_code(0);
        let script = r.stdout();
        for word in ["tenantctl", "verify", "migrate", "output", "parallelism"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bash = run_plain(&["completions", "bash"]).stdout();
    assert!(bash.contains("complete -F"), "not a bash completion script");
    assert!(
        run_plain(&["completions", "zsh"])
            .stdout()
            .starts_with("#compdef tenantctl")
    );
    let man = run_plain(&["man"]);
    man.assert_code(0);
    assert!(
        man.stdout().starts_with(".ie") || man.stdout().contains(".TH tenantctl"),
        "{}",
        man.dump()
    );
    assert!(man.stdout().contains("verify"), "{}", man.dump());
    let bad = run_plain(&["completions", "tcsh"]);
    bad.assert_code(1);
}

/// Spawns `tenantctl args` in the work dir with stdout as given.
fn spawn_with_stdout(ws: &Workdir, args: &[&str], stdout: Stdio) -> std::process::Child {
    ws.command(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tenantctl")
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_is_a_clear_error() {
    let ws = fleet();
    for args in [
        vec!["list"],
        vec!["list", "--output", "json"],
        vec!["render", "--all", "--output", "markdown"],
    ] {
        // `| head -0`: the reader is gone before tenantctl writes.
        let mut child = spawn_with_stdout(&ws, &args, Stdio::piped());
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} with a closed stdout: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");

        // `> /dev/full`: one clear error, exit 1, no panic.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        let out = spawn_with_stdout(&ws, &args, Stdio::from(full))
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} > /dev/full: {stderr}");
        assert!(
            stderr.contains("cannot write the output to stdout: No space left on device"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
