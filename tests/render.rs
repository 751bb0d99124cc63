//! Rendered roots and the modules are valid, formatted Terraform: `terraform fmt -check`
//! and `terraform validate` with the real binary and provider (no AWS calls).

use std::path::Path;
use std::process::Command;

use crate::support::{Workdir, tf_cli_config};

fn terraform(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", tf_cli_config())
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("terraform is not on PATH: install Terraform 1.11")
}

#[track_caller]
fn ok(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn modules_are_formatted() {
    let root = crate::support::repo_root();
    ok(
        terraform(&root, &["fmt", "-check", "-recursive", "terraform"]),
        "terraform fmt -check terraform/",
    );
}

#[test]
fn rendered_roots_are_formatted_and_valid() {
    let ws = Workdir::offline();
    // Platform values as an operator would set them for an existing platform.
    ws.edit_config(
        "create_load_balancer = false",
        "create_load_balancer = false\nhosted_zone_id = \"Z123\"\ncluster_arn = \"arn:aws:ecs:us-east-1:123456789012:cluster/x\"\nvpc_id = \"vpc-1\"\nsubnet_ids = [\"subnet-1\", \"subnet-2\"]\nservice_security_group_ids = [\"sg-1\"]",
    );
    for (id, tier) in [
        ("initech", "starter"),
        ("globex", "growth"),
        ("acme-corp", "enterprise"),
    ] {
        std::fs::write(
            ws.path().join(format!("tenants/{id}.toml")),
            format!("id = \"{id}\"\ntier = \"{tier}\"\n"),
        )
        .unwrap();
    }
    ws.tenantctl(&["render", "--all"]).assert_code(0);
    for id in ["initech", "globex", "acme-corp"] {
        let dir = ws.path().join(".tenantctl/roots").join(id);
        ok(
            terraform(&dir, &["fmt", "-check", "-diff"]),
            &format!("fmt -check of {id}"),
        );
        ok(
            terraform(&dir, &["init", "-backend=false", "-input=false"]),
            &format!("init of {id}"),
        );
        ok(terraform(&dir, &["validate"]), &format!("validate of {id}"));
    }
    // Rendering is deterministic: a second render changes nothing.
    let before: Vec<_> = ws
        .all_files()
        .into_iter()
        .filter(|(p, _)| {
            p.to_string_lossy().contains("roots") && !p.to_string_lossy().contains(".terraform")
        })
        .collect();
    ws.tenantctl(&["render", "--all"]).assert_code(0);
    let after: Vec<_> = ws
        .all_files()
        .into_iter()
        .filter(|(p, _)| {
            p.to_string_lossy().contains("roots") && !p.to_string_lossy().contains(".terraform")
        })
        .collect();
    assert_eq!(before, after);
}

#[test]
fn module_refuses_bad_input_without_tenantctl() {
    // The module's own validation blocks: driven directly, a bad id or tier is refused.
    let ws = Workdir::offline();
    let dir = ws.path().join("direct");
    std::fs::create_dir_all(&dir).unwrap();
    let module = crate::support::repo_root().join("terraform/modules/tenant");
    std::fs::write(
        dir.join("main.tf"),
        format!(
            "module \"t\" {{\n  source = \"{}\"\n  tenant_id = \"Bad_Id\"\n  tier = \"gold\"\n  isolation = \"pool\"\n  cpu = 256\n  memory = 512\n  limits = {{}}\n  image = \"x\"\n  data_bucket = \"b\"\n  domain = \"d.test\"\n  hosted_zone_id = \"Z\"\n  dns_target = {{ name = \"x.d.test\" }}\n  cluster_arn = \"c\"\n  vpc_id = \"\"\n  subnet_ids = []\n  service_security_group_ids = []\n  database = {{ host = \"h\", port = 5432, dbname = \"app\" }}\n}}\n",
            module.display()
        ),
    )
    .unwrap();
    ok(
        terraform(&dir, &["init", "-backend=false", "-input=false"]),
        "init",
    );
    let out = terraform(&dir, &["validate", "-no-color"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "validate accepted a bad id:\n{text}");
    assert!(text.contains("tenant_id"), "{text}");
    assert!(text.contains("tier"), "{text}");
}
