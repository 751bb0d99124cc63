//! The Terraform contract in one place: the tenant module refuses exactly what
//! `src/tenant.rs` refuses, with its own messages naming the value and the rule, and every
//! root under `terraform/examples/` validates. Real Terraform and provider, no AWS.
//!
//! Three ways to reach the module's variable validation, cheapest first (Terraform 1.11.4,
//! 2 cores; the larger numbers with other builds running):
//! - `terraform test` on a root holding only the module's own `variables.tf`: no provider,
//!   30-50 ms a case, so whole tables of cases are compared with the Rust rules. One test
//!   file per case, because a run that fails skips the rest of its file.
//! - `terraform validate` on a root calling the module with literal values (4-5 s, the
//!   provider schema): rules that read one variable.
//! - `terraform plan` of such a root (11 s, up to 40 s): rules that read two variables
//!   (tier and isolation, cpu and memory). Terraform 1.11 evaluates those only at plan;
//!   `validate` treats the other variable as unknown. A plan also stops before them while
//!   a single-variable rule fails, so the two kinds live in different roots. Validation
//!   needs no API call, but the plan reads data sources and opens ephemeral resources
//!   anyway: the provider has fake credentials and every endpoint on a closed local port,
//!   so those calls fail at once without leaving the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tenantctl::tenant::{Isolation, MAX_LEN, RESERVED, TenantId, Tier};

use crate::support::{repo_root, tf_cli_config};

/// Where every AWS endpoint points: nothing listens there, so a call fails at once.
const CLOSED: &str = "http://127.0.0.1:1";

const VALIDATION: &str = "Invalid value for variable";

struct Tf {
    cmd: String,
    dir: std::path::PathBuf,
    out: Output,
}

impl Tf {
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    fn dump(&self) -> String {
        format!(
            "command: {}\ncwd: {}\nexit: {:?}\n{}",
            self.cmd,
            self.dir.display(),
            self.out.status.code(),
            self.text()
        )
    }

    #[track_caller]
    fn ok(&self) -> &Tf {
        assert!(self.out.status.success(), "failed:\n{}", self.dump());
        self
    }

    /// The JSON lines of a `-json` run.
    fn json_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn terraform(dir: &Path, args: &[&str]) -> Tf {
    let out = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", tf_cli_config())
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_DATA_DIR")
        // Nothing may reach AWS even by mistake: fake credentials, no profile or shared
        // config, no instance metadata, every endpoint on a closed local port.
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", "/nonexistent/tenantctl-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/tenantctl-test-aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", CLOSED)
        .stdin(Stdio::null())
        .output()
        .expect(
            "terraform is not on PATH: install Terraform 1.11 (these tests run real Terraform)",
        );
    Tf {
        cmd: format!("terraform {}", args.join(" ")),
        dir: dir.to_path_buf(),
        out,
    }
}

/// A string as an HCL literal: JSON quoting, plus escaping Terraform's template sequences.
pub(crate) fn hcl_str(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tenantctl-contract-")
        .tempdir()
        .unwrap()
}

/// Copies `src` to `dst` without what Terraform leaves in a working directory, so a test
/// never writes into the checkout and never picks up a developer's state.
fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".terraform") || name.starts_with("terraform.tfstate") {
            continue;
        }
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&e.path(), &dst.join(&name));
        } else if ft.is_file() {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The examples

#[test]
fn every_example_validates() {
    let tmp = tempdir();
    copy_tree(
        &repo_root().join("terraform"),
        &tmp.path().join("terraform"),
    );
    let examples_dir = tmp.path().join("terraform/examples");
    let mut examples: Vec<String> = std::fs::read_dir(&examples_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    examples.sort();
    for expected in ["enterprise", "growth", "local", "starter"] {
        assert!(
            examples.iter().any(|e| e == expected),
            "terraform/examples/{expected} is missing: {examples:?}"
        );
    }
    for name in &examples {
        let dir = examples_dir.join(name);
        terraform(
            &dir,
            &["init", "-backend=false", "-input=false", "-no-color"],
        )
        .ok();
        terraform(&dir, &["validate", "-no-color"]).ok();
    }
}

// ---------------------------------------------------------------------------------------
// The module called from a root, as tenantctl's rendered roots and the examples call it

struct Call {
    name: &'static str,
    tenant_id: String,
    tier: &'static str,
    isolation: &'static str,
    cpu: u32,
    memory: u32,
}

fn call(
    name: &'static str,
    tenant_id: &str,
    tier: &'static str,
    isolation: &'static str,
    cpu: u32,
    memory: u32,
) -> Call {
    Call {
        name,
        tenant_id: tenant_id.to_string(),
        tier,
        isolation,
        cpu,
        memory,
    }
}

/// A root calling the module once per case with literal values (placeholder platform
/// values), initialised against the provider mirror.
fn module_root(calls: &[Call]) -> tempfile::TempDir {
    let tmp = tempdir();
    let source = hcl_str(
        &repo_root()
            .join("terraform/modules/tenant")
            .display()
            .to_string(),
    );
    // The services the module uses (src/render.rs ENDPOINT_SERVICES); AWS_ENDPOINT_URL
    // catches any other.
    let endpoints: String = [
        "ec2",
        "ecs",
        "elbv2",
        "iam",
        "kms",
        "logs",
        "rds",
        "route53",
        "s3",
        "secretsmanager",
        "sts",
    ]
    .iter()
    .map(|s| format!("    {s} = \"{CLOSED}\"\n"))
    .collect();
    let mut hcl = format!(
        r#"provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  max_retries                 = 1

  endpoints {{
{endpoints}  }}
}}
"#
    );
    for c in calls {
        hcl.push_str(&format!(
            r#"
module "{name}" {{
  source         = {source}
  tenant_id      = {id}
  tier           = "{tier}"
  isolation      = "{isolation}"
  cpu            = {cpu}
  memory         = {memory}
  image          = "public.ecr.aws/nginx/nginx:stable"
  data_bucket    = "example-tenant-data"
  domain         = "tenants.example.test"
  hosted_zone_id = "Z0123456789EXAMPLE"
  dns_target     = {{ name = "lb.example.test" }}
  cluster_arn    = "arn:aws:ecs:us-east-1:111122223333:cluster/example"
  vpc_id         = "vpc-0123456789abcdef0"
  subnet_ids     = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  database       = {{ host = "db.example.test", port = 5432, dbname = "app" }}
}}
"#,
            name = c.name,
            id = hcl_str(&c.tenant_id),
            tier = c.tier,
            isolation = c.isolation,
            cpu = c.cpu,
            memory = c.memory,
        ));
    }
    std::fs::write(tmp.path().join("main.tf"), hcl).unwrap();
    terraform(
        tmp.path(),
        &["init", "-backend=false", "-input=false", "-no-color"],
    )
    .ok();
    tmp
}

/// One diagnostic of a `-json` run, with the block it points at (`module "x"`).
#[derive(Debug, Clone)]
struct Diag {
    summary: String,
    detail: String,
    context: String,
    address: String,
}

struct Results {
    dump: String,
    diags: Vec<Diag>,
    planned: BTreeSet<String>,
}

impl Results {
    fn from_json(tf: &Tf, diagnostics: Vec<serde_json::Value>, planned: BTreeSet<String>) -> Self {
        let diags = diagnostics
            .iter()
            .map(|d| Diag {
                summary: d["summary"].as_str().unwrap_or_default().to_string(),
                detail: d["detail"].as_str().unwrap_or_default().to_string(),
                context: d["snippet"]["context"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                address: d["address"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        Results {
            dump: tf.dump(),
            diags,
            planned,
        }
    }

    /// The validation messages reported for `module "<name>"`.
    fn refusals(&self, module: &str) -> Vec<&str> {
        let context = format!("module \"{module}\"");
        self.diags
            .iter()
            .filter(|d| d.summary == VALIDATION && d.context == context)
            .map(|d| d.detail.as_str())
            .collect()
    }

    #[track_caller]
    fn assert_refused(&self, module: &str, wanted: &[&str]) {
        let refusals = self.refusals(module);
        assert_eq!(
            refusals.len(),
            1,
            "module {module}: expected one validation error\n{}",
            self.dump
        );
        for w in wanted {
            assert!(
                refusals[0].contains(w),
                "module {module}: the message lacks `{w}`: {}",
                refusals[0]
            );
        }
    }
}

/// Rules that read one variable, caught by `terraform validate` (literal values).
fn validated() -> &'static Results {
    static R: OnceLock<Results> = OnceLock::new();
    R.get_or_init(|| {
        let root = module_root(&[
            call("reserved", "www", "starter", "pool", 256, 512),
            call("reserved_last", "test", "starter", "pool", 256, 512),
            call(
                "too_long",
                &"a".repeat(MAX_LEN + 1),
                "starter",
                "pool",
                256,
                512,
            ),
            call("cpu_8192", "acme", "starter", "pool", 8192, 16384),
            call("ok", "acme", "starter", "pool", 256, 512),
        ]);
        let tf = terraform(root.path(), &["validate", "-json", "-no-color"]);
        let v: serde_json::Value = serde_json::from_slice(&tf.out.stdout)
            .unwrap_or_else(|e| panic!("validate -json: {e}\n{}", tf.dump()));
        let diags = v["diagnostics"].as_array().cloned().unwrap_or_default();
        Results::from_json(&tf, diags, BTreeSet::new())
    })
}

/// Rules that read two variables, caught by `terraform plan` only; plus one valid call per
/// tier with tenantctl's default profile, which must get past validation.
fn planned() -> &'static Results {
    static R: OnceLock<Results> = OnceLock::new();
    R.get_or_init(|| {
        let mut calls = vec![
            call("mismatch", "acme", "starter", "silo", 256, 512),
            call("bad_pair", "acme", "starter", "pool", 256, 4096),
            call("bad_step", "acme", "growth", "bridge", 512, 1536),
        ];
        for (tier, name) in
            Tier::ALL
                .iter()
                .zip(["valid_starter", "valid_growth", "valid_enterprise"])
        {
            let p = tier.default_profile();
            calls.push(call(
                name,
                &format!("{}-co", tier.as_str()),
                tier.as_str(),
                tier.isolation().as_str(),
                p.cpu,
                p.memory,
            ));
        }
        let root = module_root(&calls);
        let started = std::time::Instant::now();
        let tf = terraform(
            root.path(),
            &[
                "plan",
                "-input=false",
                "-lock=false",
                "-refresh=false",
                "-json",
            ],
        );
        eprintln!(
            "module_contract: offline plan took {:.1?}",
            started.elapsed()
        );
        assert!(
            !tf.out.status.success(),
            "the offline plan cannot succeed:\n{}",
            tf.dump()
        );
        let lines = tf.json_lines();
        let diags = lines
            .iter()
            .filter(|l| l["type"] == "diagnostic")
            .map(|l| l["diagnostic"].clone())
            .collect();
        let planned = lines
            .iter()
            .filter(|l| l["type"] == "planned_change")
            .filter_map(|l| l["change"]["resource"]["addr"].as_str().map(String::from))
            .collect();
        Results::from_json(&tf, diags, planned)
    })
}

#[test]
fn module_refuses_tier_isolation_mismatch() {
    planned().assert_refused(
        "mismatch",
        &[
            "The isolation \"silo\" does not match the tier \"starter\"",
            "starter -> pool, growth -> bridge, enterprise -> silo",
        ],
    );
}

#[test]
fn module_refuses_reserved_id() {
    let r = validated();
    for (module, id) in [("reserved", "www"), ("reserved_last", "test")] {
        r.assert_refused(
            module,
            &[&format!("The tenant_id \"{id}\" is a reserved name")],
        );
    }
}

#[test]
fn module_refuses_invalid_cpu_memory_pair() {
    let r = planned();
    r.assert_refused(
        "bad_pair",
        &[
            "The cpu 256 / memory 4096 pair is not a valid Fargate task size",
            "memory must be 512, 1024 or 2048 with cpu 256",
        ],
    );
    r.assert_refused(
        "bad_step",
        &[
            "The cpu 512 / memory 1536 pair",
            "a multiple of 1024 in 1024-4096 with cpu 512",
        ],
    );
    validated().assert_refused(
        "cpu_8192",
        &["The cpu 8192 is invalid", "256, 512, 1024, 2048 or 4096"],
    );
}

#[test]
fn module_refuses_too_long_id() {
    validated().assert_refused("too_long", &["(53 characters) is invalid", "at most 52"]);
}

#[test]
fn module_accepts_each_tiers_default_profile() {
    let r = planned();
    for name in ["valid_starter", "valid_growth", "valid_enterprise"] {
        assert!(
            r.refusals(name).is_empty(),
            "module {name} was refused:\n{}",
            r.dump
        );
        // Any resource planned means the module's validations accepted every input; the
        // DNS record is the one that needs no data source (those fail on the closed
        // endpoint, and whatever depends on them, the KMS key and so the log group, is
        // not planned).
        let record = format!("module.{name}.aws_route53_record.this");
        assert!(
            r.planned.contains(&record),
            "{record} not planned:\n{}",
            r.dump
        );
    }
    assert!(
        validated().refusals("ok").is_empty(),
        "{}",
        validated().dump
    );
    // Past validation, the plan's only errors are API calls to the closed port: nothing
    // else was contacted.
    for d in r.diags.iter().filter(|d| d.summary != VALIDATION) {
        assert!(
            d.summary.contains("127.0.0.1:1") || d.detail.contains("127.0.0.1:1"),
            "unexpected error at {}: {}: {}\n{}",
            d.address,
            d.summary,
            d.detail,
            r.dump
        );
    }
}

// ---------------------------------------------------------------------------------------
// The rules themselves, case by case against src/tenant.rs

/// The reserved list is written out in variables.tf (a variable's validation cannot read a
/// local); this keeps it equal to `RESERVED`.
#[test]
fn module_reserved_list_is_tenantctls() {
    let text =
        std::fs::read_to_string(repo_root().join("terraform/modules/tenant/variables.tf")).unwrap();
    let start = text
        .find("!contains([")
        .expect("variables.tf: the reserved-id rule `!contains([...], var.tenant_id)` is gone");
    let len = text[start..]
        .find("], var.tenant_id)")
        .expect("variables.tf: the reserved list must end with `], var.tenant_id)`");
    let list: Vec<&str> = text[start..start + len]
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    let in_tf: BTreeSet<&str> = list.iter().copied().collect();
    assert_eq!(
        in_tf.len(),
        list.len(),
        "duplicates in variables.tf: {list:?}"
    );
    let in_rust: BTreeSet<&str> = RESERVED.iter().copied().collect();
    assert_eq!(
        in_tf, in_rust,
        "terraform/modules/tenant/variables.tf and RESERVED in src/tenant.rs differ"
    );
}

/// Runs every case through the module's own `variables.tf` with `terraform test` (no
/// provider), one file per case, and returns per case: accepted, and the validation
/// messages. Any other error fails the test.
pub(crate) fn variable_rules(
    cases: &BTreeMap<String, String>,
) -> BTreeMap<String, (bool, Vec<String>)> {
    let tmp = tempdir();
    std::fs::copy(
        repo_root().join("terraform/modules/tenant/variables.tf"),
        tmp.path().join("variables.tf"),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("tests")).unwrap();
    for (name, vars) in cases {
        let base = [
            ("tenant_id", "\"acme\""),
            ("tier", "\"starter\""),
            ("isolation", "\"pool\""),
            ("cpu", "256"),
            ("memory", "512"),
            ("image", "\"public.ecr.aws/nginx/nginx:stable\""),
            ("data_bucket", "\"example-tenant-data\""),
            ("domain", "\"tenants.example.test\""),
            ("hosted_zone_id", "\"Z0123456789EXAMPLE\""),
            ("dns_target", "{ name = \"lb.example.test\" }"),
            (
                "cluster_arn",
                "\"arn:aws:ecs:us-east-1:111122223333:cluster/example\"",
            ),
            ("vpc_id", "\"vpc-0123456789abcdef0\""),
            ("subnet_ids", "[\"subnet-0123456789abcdef0\"]"),
            (
                "database",
                "{ host = \"db.example.test\", port = 5432, dbname = \"app\" }",
            ),
        ];
        let overridden: BTreeSet<&str> = vars
            .lines()
            .filter_map(|l| l.split('=').next())
            .map(str::trim)
            .collect();
        let mut body = String::new();
        for (k, v) in base {
            if !overridden.contains(k) {
                body.push_str(&format!("    {k} = {v}\n"));
            }
        }
        for l in vars.lines() {
            body.push_str(&format!("    {l}\n"));
        }
        std::fs::write(
            tmp.path().join(format!("tests/{name}.tftest.hcl")),
            format!("run \"{name}\" {{\n  command = plan\n\n  variables {{\n{body}  }}\n}}\n"),
        )
        .unwrap();
    }
    let started = std::time::Instant::now();
    let tf = terraform(tmp.path(), &["test", "-json", "-no-color"]);
    eprintln!(
        "module_contract: terraform test, {} cases: {:.1?}",
        cases.len(),
        started.elapsed()
    );
    let mut out: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    for l in tf.json_lines() {
        let Some(run) = l["@testrun"].as_str() else {
            continue;
        };
        let entry = out.entry(run.to_string()).or_default();
        if l["type"] == "test_run" && l["test_run"]["progress"] == "complete" {
            entry.0 = l["test_run"]["status"] == "pass";
        }
        if l["type"] == "diagnostic" {
            let d = &l["diagnostic"];
            assert_eq!(
                d["summary"], VALIDATION,
                "case {run}: not a validation error:\n{d:#}"
            );
            entry
                .1
                .push(d["detail"].as_str().unwrap_or_default().to_string());
        }
    }
    let missing: Vec<_> = cases.keys().filter(|k| !out.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "no result for {missing:?}:\n{}",
        tf.dump()
    );
    out
}

/// The module accepts a tenant id exactly when `TenantId::parse` does, and names the id
/// when it refuses it.
#[test]
fn module_id_rule_is_tenant_id_parse() {
    let mut ids: Vec<String> = [
        "acme-corp",
        "globex",
        "initech",
        "a",
        "a1",
        "x-1-y",
        "acme2",
        "www1",
        "apis",
        "tenant-a",
        "foo-exec",
        "executive",
        "foo-exe",
        "ACME",
        "acme_corp",
        "-acme",
        "1acme",
        "acme-",
        "a--b",
        "acme${x}",
        "acme%{x}",
        "acme\"",
        "acme/..",
        "acme corp",
        "аcme",
        "acme\u{200b}",
        "ａcme",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("a".repeat(MAX_LEN));
    ids.push("a".repeat(MAX_LEN + 1));
    ids.extend(RESERVED.iter().map(|s| s.to_string()));
    let cases: BTreeMap<String, String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("id{i:03}"), format!("tenant_id = {}", hcl_str(id))))
        .collect();
    let results = variable_rules(&cases);
    let mut wrong = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (accepted, messages) = &results[&format!("id{i:03}")];
        let rust = TenantId::parse(id);
        if *accepted != rust.is_ok() {
            wrong.push(format!(
                "{id:?}: Terraform accepted={accepted}, tenantctl says {rust:?}; {messages:?}"
            ));
        } else if !accepted && !messages.iter().any(|m| m.contains(&format!("\"{id}\""))) {
            wrong.push(format!(
                "{id:?}: the message does not name the id: {messages:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the module's id rule differs from TenantId::parse:\n{}",
        wrong.join("\n")
    );
}

/// The module accepts a tier and isolation pair exactly when `Tier::isolation` gives it.
#[test]
fn module_isolation_rule_is_tier_isolation() {
    let isolations = [Isolation::Pool, Isolation::Bridge, Isolation::Silo];
    let mut cases = BTreeMap::new();
    for tier in Tier::ALL {
        for iso in isolations {
            cases.insert(
                format!("{tier}_{iso}"),
                format!("tier = \"{tier}\"\nisolation = \"{iso}\"\ncpu = 256\nmemory = 512"),
            );
        }
    }
    let results = variable_rules(&cases);
    let mut wrong = Vec::new();
    for tier in Tier::ALL {
        for iso in isolations {
            let (accepted, messages) = &results[&format!("{tier}_{iso}")];
            let rust = tier.isolation() == iso;
            if *accepted != rust {
                wrong.push(format!(
                    "{tier}/{iso}: Terraform accepted={accepted}, tenantctl {rust}; {messages:?}"
                ));
            } else if !accepted
                && !messages.iter().any(|m| {
                    m.contains(&format!(
                        "isolation \"{iso}\" does not match the tier \"{tier}\""
                    ))
                })
            {
                wrong.push(format!(
                    "{tier}/{iso}: the message does not name both: {messages:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the module's isolation rule differs from Tier::isolation:\n{}",
        wrong.join("\n")
    );
}

/// The module accepts a cpu/memory pair exactly when `TierProfile::validate` does: every
/// allowed cpu with every memory from 0 to 32 GiB in steps of 512, and a few cpus Fargate
/// has but tenantctl does not allow.
#[test]
fn module_cpu_memory_rule_is_tier_profile_validate() {
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for cpu in [256, 512, 1024, 2048, 4096] {
        pairs.extend((0..=32768).step_by(512).map(|m| (cpu, m)));
    }
    for cpu in [128, 8192, 16384] {
        pairs.extend([512, 16384, 30720, 32768].map(|m| (cpu, m)));
    }
    let cases: BTreeMap<String, String> = pairs
        .iter()
        .map(|(c, m)| (format!("c{c}_m{m}"), format!("cpu = {c}\nmemory = {m}")))
        .collect();
    let results = variable_rules(&cases);
    let mut wrong = Vec::new();
    for (cpu, memory) in pairs {
        let (accepted, messages) = &results[&format!("c{cpu}_m{memory}")];
        let mut profile = Tier::Starter.default_profile();
        profile.cpu = cpu;
        profile.memory = memory;
        let rust = profile.validate(Tier::Starter);
        if *accepted != rust.is_ok() {
            wrong.push(format!("cpu {cpu} / memory {memory}: Terraform accepted={accepted}, tenantctl {rust:?}; {messages:?}"));
        } else if !accepted
            && !messages.iter().any(|m| {
                m.contains(&format!("cpu {cpu}")) || m.contains(&format!("memory {memory}"))
            })
        {
            wrong.push(format!(
                "cpu {cpu} / memory {memory}: the message names neither: {messages:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the module's cpu/memory rule differs from TierProfile::validate:\n{}",
        wrong.join("\n")
    );
}
