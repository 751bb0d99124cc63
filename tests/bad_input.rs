//! Bad input is one clear error naming the value and the rule, before any file is
//! written, any Terraform run or any AWS call. The work dir points AWS at a closed port
//! and Terraform at a binary that does not exist, so either would fail loudly.

use crate::support::Workdir;

/// The work dir's files, but the audit log: a refused action on a valid tenant id is
/// recorded there (README, "Audit trail"), the one file a refusal writes.
fn snapshot(ws: &Workdir) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = ws
        .all_files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.ends_with(".tenantctl/audit.jsonl"))
        .collect();
    files.sort();
    files
}

#[test]
fn bad_tenant_ids_are_refused_before_anything_happens() {
    let ws = Workdir::offline();
    let before = snapshot(&ws);
    let too_long = "a".repeat(53);
    let cases: &[(&str, &str)] = &[
        ("ACME", "only lowercase ASCII letters"),
        ("acme_corp", "only lowercase ASCII letters"),
        ("-acme", "must start with a lowercase letter"),
        ("acme-", "must not end with `-`"),
        ("a--b", "must not contain `--`"),
        ("acme${x}", "only lowercase ASCII letters"),
        ("acme\"", "only lowercase ASCII letters"),
        ("acme/..", "only lowercase ASCII letters"),
        ("аcme", "only lowercase ASCII letters"), // Cyrillic а
        ("acmе", "only lowercase ASCII letters"), // Cyrillic е
        ("ａcme", "only lowercase ASCII letters"), // fullwidth a
        (
            &too_long,
            "too long (at most 52, so that IAM role `tenant-<id>-exec` fits in 64)",
        ),
        ("www", "reserved name"),
        ("", "tenant id is empty"),
    ];
    for (id, rule) in cases {
        let r = ws.tenantctl(&["add", id, "--tier", "starter"]);
        r.assert_code(1);
        let err = r.stderr();
        assert!(
            err.contains(rule),
            "id {id:?}: expected rule {rule:?}\n{}",
            r.dump()
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line of error for {id:?}\n{}",
            r.dump()
        );
        assert!(err.starts_with("error: "), "{}", r.dump());
        assert!(r.stdout().is_empty(), "{}", r.dump());
    }
    assert_eq!(snapshot(&ws), before, "a bad id wrote files");
    assert!(
        !ws.path().join(".tenantctl").exists(),
        "a bad id created .tenantctl"
    );
}

#[test]
fn bad_ids_are_refused_by_every_command() {
    let ws = Workdir::offline();
    for args in [
        vec!["remove", "Bad_Id", "--yes"],
        vec!["verify", "Bad_Id"],
        vec!["plan", "Bad_Id"],
        vec!["apply", "Bad_Id"],
        vec!["render", "Bad_Id"],
    ] {
        let r = ws.tenantctl(&args);
        r.assert_code(1);
        assert!(
            r.stderr().contains("invalid tenant id `Bad_Id`"),
            "{}",
            r.dump()
        );
    }
    let r = ws.tenantctl(&["add", "acme", "--tier", "gold"]);
    r.assert_code(1);
    assert!(r.stderr().contains("gold"), "{}", r.dump());
    assert!(!ws.path().join("tenants/acme.toml").exists());
}

#[test]
fn bad_config_and_missing_platform_values_fail_before_writing() {
    let ws = Workdir::offline();
    ws.edit_config(
        "[terraform]",
        "[tiers.starter]\nmemory = 3000\n\n[terraform]",
    );
    let r = ws.tenantctl(&["add", "acme", "--tier", "starter"]);
    r.assert_code(1);
    assert!(
        r.stderr().contains("not a valid Fargate task size"),
        "{}",
        r.dump()
    );
    assert!(!ws.path().join("tenants/acme.toml").exists());

    let ws = Workdir::offline();
    let mut ws = ws;
    ws.set_env("TENANTCTL_DATABASE_URL", "postgres://admin@127.0.0.1:9/app");
    // No platform applied and no [platform] hosted_zone_id: refused before any write.
    let r = ws.tenantctl(&["add", "acme", "--tier", "starter"]);
    r.assert_code(1);
    assert!(r.stderr().contains("hosted_zone_id"), "{}", r.dump());
    assert!(!ws.path().join("tenants/acme.toml").exists());
}

/// A tier change that crosses isolation models is never applied as a plain apply (which
/// would point the tenant at an empty schema and strand its rows): refused before any
/// Terraform run or database change, naming the move.
#[test]
fn move_requests_that_cannot_be_carried_out_are_refused_before_anything_runs() {
    let mut ws = Workdir::offline();
    ws.set_env("TENANTCTL_DATABASE_URL", "postgres://admin@127.0.0.1:9/app");
    std::fs::write(
        ws.path().join("tenants/mover.toml"),
        "# the mover\nid = \"mover\"\ntier = \"starter\"\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("tenants/third.toml"),
        "id = \"third\"\ntier = \"enterprise\"\n",
    )
    .unwrap();
    let records = ws.path().join(".tenantctl/records");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(
        records.join("mover.json"),
        r#"{"last_apply": {"at": "2026-01-01T00:00:00Z", "fingerprint": "x", "provider_lock": null, "tier": "starter"}}"#,
    )
    .unwrap();
    // `third` is in the middle of a move starter → growth; its file now asks enterprise.
    std::fs::write(
        records.join("third.json"),
        r#"{"last_apply": {"at": "2026-01-01T00:00:00Z", "fingerprint": "x", "provider_lock": null, "tier": "starter"},
            "moving": {"from": "starter", "to": "growth", "step": "frozen", "started_at": "2026-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    let before = snapshot(&ws);
    let cases: [(&[&str], i32, &str); 7] = [
        (&["move", "mover"], 1, "--tier"),
        (&["move", "mover", "--tier", "platinum"], 1, "platinum"),
        (
            &["move", "mover", "--tier", "growth", "--finish"],
            1,
            "cannot be used with",
        ),
        (&["move", "mover", "--finish"], 1, "no finished cut-over"),
        (
            &["move", "mover", "--rollback"],
            1,
            "is not moving: nothing to roll back",
        ),
        (
            &["move", "nobody", "--tier", "growth"],
            1,
            "unknown tenant `nobody`",
        ),
        (
            &["move", "mover", "--tier", "starter"],
            1,
            "on tier starter already",
        ),
    ];
    for (args, code, wanted) in cases {
        let r = ws.tenantctl(args);
        r.assert_code(code);
        assert!(r.stderr().contains(wanted), "{args:?}\n{}", r.dump());
        assert_eq!(
            r.stderr().matches("error").count(),
            1,
            "one error: {}",
            r.dump()
        );
    }
    for command in ["apply", "plan"] {
        let r = ws.tenantctl(&[command, "third"]);
        r.assert_code(1);
        let out = r.stdout() + &r.stderr();
        assert!(
            out.contains("cannot move to enterprise too: one move at a time"),
            "{command}\n{}",
            r.dump()
        );
        // Terraform never ran: it is a nonexistent binary in this work dir.
        assert!(!out.contains("cannot run"), "{command}\n{}", r.dump());
    }
    assert_eq!(snapshot(&ws), before, "a refused move wrote files");
    let audit = std::fs::read_to_string(ws.path().join(".tenantctl/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(r#""action":"move","tenant":"mover""#)
                && l.contains(r#""result":"failed""#)),
        "{audit}"
    );
    // `apply` records the tenants it changed or failed on, with the applied tier before.
    assert!(
        audit.lines().any(|l| l.contains(
            r#""action":"apply","tenant":"third","tier_before":"starter","tier_after":"enterprise","result":"failed""#
        )),
        "{audit}"
    );
}
