//! Changing `[state]` keeps the state: a run that finds a root's state somewhere else than
//! the config now says refuses before Terraform runs (instead of starting from an empty
//! state and creating the tenant again); `tenantctl state migrate` moves every state and
//! record, with a backup, from this work dir's roots or, on a fresh checkout, from the old
//! config (`--from`); it never overwrites another state; afterwards a plan shows no change.

use serde_json::Value;

use crate::support::{Workdir, unique};

fn use_s3(ws: &Workdir, bucket: &str, prefix: &str) {
    let p = ws.path().join("tenantctl.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let start = text.find("[state]").expect("config has [state]");
    let end = text[start..]
        .find("\n[terraform]")
        .map(|i| start + i)
        .unwrap();
    let state =
        format!("[state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nkey_prefix = \"{prefix}\"\n");
    std::fs::write(&p, format!("{}{state}{}", &text[..start], &text[end..])).unwrap();
}

fn s3_json(ws: &Workdir, bucket: &str, key: &str) -> Option<Value> {
    let out = ws.path().join("object.json");
    let got = ws.aws(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        key,
        out.to_str().unwrap(),
    ]);
    got.ok()?;
    Some(serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap())
}

/// What a state manages: every resource instance's address and id, sorted (a copy made
/// by `init -migrate-state` gets a lineage of its own).
fn managed(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in state["resources"].as_array().unwrap() {
        for i in r["instances"].as_array().unwrap() {
            out.push(format!(
                "{}.{}.{}[{}]={}",
                r["module"], r["type"], r["name"], i["index_key"], i["attributes"]["id"]
            ));
        }
    }
    out.sort();
    out
}

fn tenant_result<'a>(json: &'a Value, tenant: &str) -> &'a Value {
    json["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .unwrap_or_else(|| panic!("no {tenant} in {json}"))
}

#[test]
fn a_changed_backend_is_refused_then_migrated_with_the_state_intact() {
    let ws = Workdir::new().with_database();
    let id = unique("stmove");
    let bucket = unique("state-move");
    ws.aws(&["s3api", "create-bucket", "--bucket", &bucket])
        .unwrap();
    // A fleet of two, applied on the local backend.
    let id2 = unique("stmove");
    for (t, tier) in [(&id, "starter"), (&id2, "growth")] {
        std::fs::write(
            ws.path().join(format!("tenants/{t}.toml")),
            format!("id = \"{t}\"\ntier = \"{tier}\"\n"),
        )
        .unwrap();
    }
    ws.tenantctl(&["apply", "--all"]).assert_code(0);
    let local_state: Value = serde_json::from_slice(
        &std::fs::read(
            ws.path()
                .join(".tenantctl/roots")
                .join(&id)
                .join("terraform.tfstate"),
        )
        .unwrap(),
    )
    .unwrap();
    let resources = local_state["resources"].as_array().unwrap().len();
    let managed_before = managed(&local_state);
    assert!(resources > 5, "{local_state}");

    // The config moves the state to S3: apply refuses before Terraform runs.
    let old_config = ws.path().join("old.toml");
    std::fs::copy(ws.path().join("tenantctl.toml"), &old_config).unwrap();
    use_s3(&ws, &bucket, "team");
    let key = format!("team/tenants/{id}.tfstate");
    let refused = ws.tenantctl(&["apply", &id, "--refresh"]);
    refused.assert_code(1);
    let err = refused.stderr();
    assert!(
        err.contains("is at local") && err.contains(&format!("s3://{bucket}/{key}")),
        "{}",
        refused.dump()
    );
    assert!(
        err.contains("tenantctl state migrate"),
        "{}",
        refused.dump()
    );
    assert!(
        s3_json(&ws, &bucket, &key).is_none(),
        "nothing may be written at the new place before the state moves"
    );

    // Migrate: the same state (lineage, resources) in S3, the record beside it, a backup.
    let run = ws.tenantctl(&["state", "migrate", "--all", "--output", "json"]);
    run.assert_code(0);
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    let r = tenant_result(&json, &id);
    assert_eq!(r["status"], "changed", "{json}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("moved {resources} resources")),
        "{json}"
    );
    let moved = s3_json(&ws, &bucket, &key).expect("state in S3");
    assert_eq!(managed(&moved), managed_before);
    let record = s3_json(&ws, &bucket, &format!("team/records/{id}.json")).expect("record in S3");
    assert!(record["last_apply"]["fingerprint"].is_string(), "{record}");
    let backups: Vec<_> = std::fs::read_dir(ws.path().join(".tenantctl/backups/state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups.iter().any(|b| b.starts_with(&format!("{id}-"))),
        "{backups:?}"
    );

    assert_eq!(tenant_result(&json, &id2)["status"], "changed", "{json}");
    assert!(s3_json(&ws, &bucket, &format!("team/tenants/{id2}.tfstate")).is_some());

    // Nothing to do any more: a plan sees no change, a second migrate moves nothing.
    ws.tenantctl(&["plan", "--all"]).assert_code(0);
    let again = ws.tenantctl(&["state", "migrate", "--all", "--output", "json"]);
    again.assert_code(0);
    let json: Value = serde_json::from_str(&again.stdout()).unwrap();
    assert_eq!(tenant_result(&json, &id)["status"], "unchanged", "{json}");

    // A fresh checkout (CI) of a change that moves the prefix: `--from` the old config.
    let ci = Workdir::new().with_database();
    for t in [&id, &id2] {
        std::fs::copy(
            ws.path().join(format!("tenants/{t}.toml")),
            ci.path().join(format!("tenants/{t}.toml")),
        )
        .unwrap();
    }
    let team_config = ci.path().join("team.toml");
    std::fs::copy(ws.path().join("tenantctl.toml"), &team_config).unwrap();
    use_s3(&ci, &bucket, "team2");
    let run = ci.tenantctl(&[
        "state",
        "migrate",
        "--all",
        "--from",
        team_config.to_str().unwrap(),
    ]);
    run.assert_code(0);
    let moved = s3_json(&ci, &bucket, &format!("team2/tenants/{id}.tfstate")).expect("moved");
    assert_eq!(managed(&moved), managed_before);
    ci.tenantctl(&["plan", "--all"]).assert_code(0);

    // A destination holding another state is never overwritten.
    let other = serde_json::json!({
        "version": 4, "terraform_version": "1.11.0", "serial": 1,
        "lineage": "someone-elses", "outputs": {},
        "resources": [{"mode": "managed", "type": "aws_iam_role", "name": "x",
                       "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                       "instances": []}]
    });
    let other_file = ci.path().join("other.tfstate");
    std::fs::write(&other_file, other.to_string()).unwrap();
    let team3_key = format!("team3/tenants/{id}.tfstate");
    ci.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        &bucket,
        "--key",
        &team3_key,
        "--body",
        other_file.to_str().unwrap(),
    ])
    .unwrap();
    let team2_config = ci.path().join("team2.toml");
    std::fs::copy(ci.path().join("tenantctl.toml"), &team2_config).unwrap();
    use_s3(&ci, &bucket, "team3");
    let run = ci.tenantctl(&[
        "state",
        "migrate",
        &id,
        "--from",
        team2_config.to_str().unwrap(),
    ]);
    run.assert_code(1);
    assert!(
        run.stdout().contains("already holds another state")
            || run.stderr().contains("already holds another state"),
        "{}",
        run.dump()
    );
    let kept = s3_json(&ci, &bucket, &team3_key).unwrap();
    assert_eq!(kept["lineage"], "someone-elses");
}
