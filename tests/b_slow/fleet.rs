//! Fleet operations on shared remote state: the S3 backend (with lockfile locking) on the
//! moto server, several tenantctl processes at once, drift audits in every format.

use std::process::Stdio;

use serde_json::Value;

use crate::support::{Workdir, unique};

/// A work dir in team mode: state and records in an S3 bucket on moto.
fn team_workdir(bucket: &str) -> Workdir {
    let ws = Workdir::new().with_database();
    let _ = ws.aws(&["s3api", "create-bucket", "--bucket", bucket]);
    ws.edit_config(
        "[state]\nbackend = \"local\"",
        &format!("[state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nkey_prefix = \"team\""),
    );
    ws
}

/// A second machine of the same team: its own work dir, the same config and tenants.
fn clone_workdir(from: &Workdir) -> Workdir {
    let ws = Workdir::new().with_database();
    std::fs::copy(
        from.path().join("tenantctl.toml"),
        ws.path().join("tenantctl.toml"),
    )
    .unwrap();
    for e in std::fs::read_dir(from.path().join("tenants"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), ws.path().join("tenants").join(e.file_name())).unwrap();
    }
    ws
}

fn declare(ws: &Workdir, id: &str, tier: &str) {
    std::fs::write(
        ws.path().join(format!("tenants/{id}.toml")),
        format!("id = \"{id}\"\ntier = \"{tier}\"\n"),
    )
    .unwrap();
}

fn shard_of(ws: &Workdir, shard: &str) -> Vec<String> {
    let r = ws.tenantctl(&["render", "--shard", shard, "--output", "json"]);
    r.assert_code(0);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["tenant"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn team_fleet_shards_drift_and_repair() {
    let bucket = unique("team-state");
    let a = team_workdir(&bucket);
    let ids: Vec<String> = (0..6).map(|i| unique(&format!("fl{i}"))).collect();
    for id in &ids {
        declare(&a, id, "starter");
    }
    let b = clone_workdir(&a);

    // Shards are disjoint and cover the fleet.
    let s1 = shard_of(&a, "1/2");
    let s2 = shard_of(&a, "2/2");
    assert!(s1.iter().all(|t| !s2.contains(t)));
    let mut union: Vec<String> = s1.iter().chain(&s2).cloned().collect();
    union.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(union, all);

    // Two machines apply disjoint shards at the same time.
    let pa = a
        .command(&[
            "apply",
            "--shard",
            "1/2",
            "--parallelism",
            "1",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pb = b
        .command(&[
            "apply",
            "--shard",
            "2/2",
            "--parallelism",
            "1",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    for (o, s) in [(&oa, &s1), (&ob, &s2)] {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["summary"]["changed"], s.len(), "{v}");
    }
    // State and records are shared: machine A sees B's tenants as applied and unchanged.
    let noop = a.tenantctl(&["apply", "--all", "--output", "json"]);
    noop.assert_code(0);
    let v: Value = serde_json::from_str(&noop.stdout()).unwrap();
    assert_eq!(v["summary"]["skipped"], ids.len(), "{}", noop.dump());
    let keys = a
        .aws(&["s3api", "list-objects-v2", "--bucket", &bucket])
        .unwrap()
        .to_string();
    for id in &ids {
        assert!(
            keys.contains(&format!("team/tenants/{id}.tfstate")),
            "{keys}"
        );
        assert!(keys.contains(&format!("team/records/{id}.json")), "{keys}");
    }
    a.tenantctl(&["verify", "--all"]).assert_code(0);

    // Drift behind tenantctl's back on three tenants.
    let (d_iam, d_secret, d_env) = (&ids[0], &ids[1], &ids[2]);
    let role = format!("tenant-{d_iam}");
    let pname = a
        .aws(&["iam", "list-role-policies", "--role-name", &role])
        .unwrap()["PolicyNames"][0]
        .as_str()
        .unwrap()
        .to_string();
    a.aws(&["iam", "put-role-policy", "--role-name", &role, "--policy-name", &pname, "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::tenantctl-local-data/tenants/*"}]}"#]).unwrap();
    a.aws(&[
        "secretsmanager",
        "delete-secret",
        "--secret-id",
        &format!("tenants/{d_secret}/db"),
        "--force-delete-without-recovery",
    ])
    .unwrap();
    let td = a
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            &format!("tenant-{d_env}"),
        ])
        .unwrap();
    let mut cd = td["taskDefinition"]["containerDefinitions"].clone();
    cd[0]["environment"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "RATE_LIMIT_PER_MINUTE_OVERRIDE", "value": "999999"}));
    a.aws(&[
        "ecs",
        "register-task-definition",
        "--family",
        &format!("tenant-{d_env}"),
        "--requires-compatibilities",
        "FARGATE",
        "--network-mode",
        "awsvpc",
        "--cpu",
        "256",
        "--memory",
        "512",
        "--task-role-arn",
        td["taskDefinition"]["taskRoleArn"].as_str().unwrap(),
        "--execution-role-arn",
        td["taskDefinition"]["executionRoleArn"].as_str().unwrap(),
        "--container-definitions",
        &cd.to_string(),
    ])
    .unwrap();

    let expected = [
        (d_iam.as_str(), "iam.task_role.s3_resources"),
        (d_secret.as_str(), "secrets.db"),
        (d_env.as_str(), "ecs.task_definition.env"),
    ];
    let json = a.tenantctl(&["verify", "--all", "--output", "json"]);
    json.assert_code(3);
    let v: Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(v["status"], "drift");
    let failing: Vec<(String, String)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| {
            (
                c["tenant"].as_str().unwrap().to_string(),
                c["check"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (t, c) in expected {
        assert!(
            failing.iter().any(|(ft, fc)| ft == t && fc == c),
            "{c} on {t} not reported: {failing:?}"
        );
    }
    let drifted: std::collections::BTreeSet<&str> =
        failing.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        drifted,
        expected.iter().map(|(t, _)| *t).collect(),
        "only the broken tenants fail"
    );
    for c in v["checks"].as_array().unwrap() {
        for k in ["tenant", "check", "expected", "actual", "status"] {
            assert!(c.get(k).is_some(), "check lacks {k}: {c}");
        }
    }
    let md = a.tenantctl(&["verify", "--all", "--output", "markdown"]);
    md.assert_code(3);
    let human = a.tenantctl(&["verify", "--all"]);
    human.assert_code(3);
    for (t, c) in expected {
        assert!(
            md.stdout().contains(&format!("| `{t}` | `{c}` |")),
            "{}",
            md.dump()
        );
        assert!(
            human
                .stdout()
                .lines()
                .any(|l| l.contains(t) && l.contains(c)),
            "{}",
            human.dump()
        );
    }

    // `apply` repairs exactly the drifted tenants; then the audit is clean.
    let repair = a.tenantctl(&["apply", "--all", "--output", "json"]);
    repair.assert_code(0);
    let v: Value = serde_json::from_str(&repair.stdout()).unwrap();
    assert_eq!(v["summary"]["changed"], 3, "{}", repair.dump());
    a.tenantctl(&["verify", "--all"]).assert_code(0);
}

#[test]
fn same_tenant_from_two_machines_waits_or_fails_clearly() {
    let bucket = unique("lock-state");
    let a = team_workdir(&bucket);
    let id = unique("locked");
    declare(&a, &id, "starter");
    let b = clone_workdir(&a);
    // A holds the lock for the length of a Route53 change (~15 s); B does not wait.
    let pa = a
        .command(&["apply", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock_key = format!("team/tenants/{id}.tfstate.tflock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let keys = a
            .aws(&["s3api", "list-objects-v2", "--bucket", &bucket])
            .unwrap()
            .to_string();
        if keys.contains(&lock_key) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A never took the lock: {keys}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let rb = b.tenantctl(&["apply", &id, "--refresh"]);
    // A held state lock has its own exit code, so CI can retry.
    rb.assert_code(4);
    let err = rb.stdout() + &rb.stderr();
    assert!(
        err.contains(&format!("state of `{id}` is locked by another run")),
        "{}",
        rb.dump()
    );
    assert!(err.contains("held by"), "{}", rb.dump());
    let oa = pa.wait_with_output().unwrap();
    assert_eq!(
        oa.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    // With --lock-timeout the second run waits for the first and then succeeds. Both
    // runs wait: under load either may reach the lock first.
    let pa = a
        .command(&["apply", &id, "--refresh", "--lock-timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    b.tenantctl(&["apply", &id, "--refresh", "--lock-timeout", "120"])
        .assert_code(0);
    assert_eq!(pa.wait_with_output().unwrap().status.code(), Some(0));
    // State intact: nothing left to do.
    a.tenantctl(&["plan", &id]).assert_code(0);
}

#[test]
fn one_failing_tenant_does_not_stop_the_others() {
    let ws = Workdir::new().with_database();
    let good = unique("ok");
    let bad = unique("bad");
    declare(&ws, &good, "starter");
    declare(&ws, &bad, "starter");
    // Make `bad` fail on purpose: its IAM role name is already taken, by a role tagged for
    // another tenant (an untagged one would be adopted, see src/adopt.rs).
    ws.aws(&["iam", "create-role", "--role-name", &format!("tenant-{bad}"), "--assume-role-policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        "--tags", "Key=tenant,Value=someone-else"]).unwrap();
    let r = ws.tenantctl(&["apply", "--all", "--output", "json"]);
    r.assert_code(1);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    let by_id = |id: &str| {
        v["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(&good)["status"], "changed", "{v}");
    assert_eq!(by_id(&bad)["status"], "failed", "{v}");
    assert!(
        by_id(&bad)["error"]
            .as_str()
            .unwrap()
            .contains("belong to another tenant"),
        "{v}"
    );
    assert_eq!(v["summary"]["failed"], 1);
    assert!(
        r.stderr().contains(&format!("{bad}: failed")),
        "{}",
        r.dump()
    );
}
