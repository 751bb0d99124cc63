//! The CI trust boundary (README, "CI"). The example workflow `examples/ci/tenants.yml`
//! gives the jobs a pull request can start no secret and no role that writes, and only
//! jobs on `main` apply or migrate; `.ci/run` also validates it against GitHub's workflow
//! schema. In CI, the config file (which a pull request can edit) cannot choose the
//! Terraform binary.

use serde_norway::Value;

use crate::support::{Workdir, repo_root};

const WORKFLOW: &str = "examples/ci/tenants.yml";

fn workflow() -> Value {
    let path = repo_root().join(WORKFLOW);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(v: &Value) -> String {
    serde_norway::to_string(v).unwrap()
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn steps(job: &Value) -> Vec<&Value> {
    get(job, "steps")
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// The `run:` scripts of a job, in order.
fn scripts(job: &Value) -> Vec<String> {
    steps(job)
        .iter()
        .filter_map(|s| get(s, "run").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The event a job runs for, from its `if:` (`github.event_name == '<event>'`): every job
/// must name exactly one, so none can run for an event it was not written for.
fn event_of(name: &str, job: &Value) -> Result<String, String> {
    let cond = get(job, "if").and_then(Value::as_str).unwrap_or_default();
    let events: Vec<&str> = cond
        .split("github.event_name == '")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .collect();
    match events.as_slice() {
        [one] if !cond.contains("||") && !cond.contains("!=") => Ok(one.to_string()),
        _ => Err(format!(
            "job `{name}`: its `if` must require exactly one event (`github.event_name == '...'`, no `||`), not {cond:?}"
        )),
    }
}

const WRITE_COMMANDS: &[&str] = &[
    "tenantctl apply",
    "tenantctl add",
    "tenantctl remove",
    "tenantctl move",
    "tenantctl db",
    "tenantctl platform",
];

/// Everything wrong with a workflow's trust boundary; empty when it holds.
fn problems(wf: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let on = get(wf, "on").and_then(Value::as_mapping);
    let triggers: Vec<String> = on
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for t in &triggers {
        // These run with the base repository's secrets for events a fork can cause.
        if ["pull_request_target", "workflow_run"].contains(&t.as_str()) {
            out.push(format!(
                "trigger `{t}` runs with secrets for a fork's change"
            ));
        }
    }
    let push_branches = on
        .and_then(|m| m.get("push"))
        .and_then(|p| get(p, "branches"))
        .map(yaml)
        .unwrap_or_default();
    if push_branches.trim() != "- main" {
        out.push(format!(
            "`on.push.branches` must be exactly [main], not {push_branches:?}"
        ));
    }
    match get(wf, "permissions") {
        Some(p) if p.as_mapping().is_some_and(|m| m.is_empty()) => {}
        other => out.push(format!(
            "top-level `permissions` must be {{}} (each job asks for its own), not {:?}",
            other.map(yaml)
        )),
    }
    let env = get(wf, "env").map(yaml).unwrap_or_default();
    if env.contains("secrets.") || env.contains("TENANTCTL_DATABASE_URL") {
        out.push("the workflow-wide `env` holds a secret: every job would get it".into());
    }
    if get(wf, "env")
        .and_then(|e| get(e, "TENANTCTL_TERRAFORM"))
        .and_then(Value::as_str)
        != Some("terraform")
    {
        out.push("the workflow must set TENANTCTL_TERRAFORM: terraform".into());
    }

    let jobs = get(wf, "jobs").and_then(Value::as_mapping);
    let mut pr_jobs = 0;
    let mut apply_jobs = 0;
    for (name, job) in jobs.into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        let text = yaml(job);
        let event = match event_of(name, job) {
            Ok(e) => e,
            Err(e) => {
                out.push(e);
                continue;
            }
        };
        if event.starts_with("pull_request") {
            pr_jobs += 1;
            for secret in ["secrets.", "TENANTCTL_DATABASE_URL", "environment"] {
                if text.contains(secret) {
                    out.push(format!("pull request job `{name}` mentions `{secret}`"));
                }
            }
            if text.contains("APPLY_ROLE") || text.contains("AUDIT_ROLE") {
                out.push(format!(
                    "pull request job `{name}` assumes a role other than the plan role"
                ));
            }
            for s in steps(job) {
                let role = get(s, "with").and_then(|w| get(w, "role-to-assume"));
                if role.is_some_and(|r| r.as_str() != Some("${{ vars.TENANTCTL_PLAN_ROLE }}")) {
                    out.push(format!(
                        "pull request job `{name}` assumes {role:?}, not the read-only plan role"
                    ));
                }
                let uses = get(s, "uses").and_then(Value::as_str).unwrap_or_default();
                if uses.starts_with("actions/checkout")
                    && get(s, "with")
                        .and_then(|w| get(w, "persist-credentials"))
                        .and_then(Value::as_bool)
                        != Some(false)
                {
                    out.push(format!(
                        "pull request job `{name}`: checkout must not persist the token (`persist-credentials: false`)"
                    ));
                }
            }
            let cond = get(job, "if").and_then(Value::as_str).unwrap_or_default();
            if !cond.contains("github.event.pull_request.head.repo.full_name == github.repository")
            {
                out.push(format!(
                    "pull request job `{name}` must skip forks (head.repo.full_name == github.repository)"
                ));
            }
            let tf_args = get(job, "env")
                .and_then(|e| get(e, "TF_CLI_ARGS_plan"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            for flag in ["-refresh=false", "-lock=false"] {
                if !tf_args.contains(flag) {
                    out.push(format!(
                        "pull request job `{name}`: TF_CLI_ARGS_plan lacks `{flag}` (the plan role reads no secret and writes no lock)"
                    ));
                }
            }
            let runs = scripts(job);
            let first_tenantctl = runs.iter().position(|r| r.contains("tenantctl "));
            let cleaned = runs.iter().position(|r| r.contains("rm -rf .tenantctl"));
            if !matches!((cleaned, first_tenantctl), (Some(c), Some(t)) if c < t) {
                out.push(format!(
                    "pull request job `{name}` must `rm -rf .tenantctl` before running tenantctl (a pull request may carry .tf files there)"
                ));
            }
            for r in &runs {
                for w in WRITE_COMMANDS {
                    if r.contains(w) {
                        out.push(format!("pull request job `{name}` runs `{w}`"));
                    }
                }
            }
        }
        let writes = scripts(job)
            .iter()
            .any(|r| r.contains("tenantctl apply") || r.contains("tenantctl db migrate"));
        if writes {
            apply_jobs += 1;
            let cond = get(job, "if").and_then(Value::as_str).unwrap_or_default();
            if event != "push" || !cond.contains("github.ref == 'refs/heads/main'") {
                out.push(format!(
                    "job `{name}` applies or migrates but does not require a push to main: {cond:?}"
                ));
            }
            if get(job, "environment").and_then(Value::as_str) != Some("production") {
                out.push(format!(
                    "job `{name}` applies or migrates outside the protected environment `production`"
                ));
            }
        }
        if text.contains("secrets.") && get(job, "environment").is_none() {
            out.push(format!(
                "job `{name}` reads a secret that is not an environment's (protected) secret"
            ));
        }
    }
    if pr_jobs == 0 || apply_jobs == 0 {
        out.push(format!(
            "expected pull request and apply jobs, found {pr_jobs} and {apply_jobs}"
        ));
    }
    out
}

#[test]
fn the_example_workflow_keeps_secrets_and_writes_off_pull_requests() {
    let wf = workflow();
    assert_eq!(problems(&wf), Vec::<String>::new(), "{WORKFLOW}");
}

/// The checks above catch what they are for: each breach, made in a copy, is reported.
#[test]
fn the_workflow_checks_catch_each_breach() {
    let original = std::fs::read_to_string(repo_root().join(WORKFLOW)).unwrap();
    let breaches: &[(&str, &str, &str)] = &[
        (
            "      TF_CLI_ARGS_plan: \"-refresh=false -lock=false\"\n",
            "      TF_CLI_ARGS_plan: \"-refresh=false -lock=false\"\n      TENANTCTL_DATABASE_URL: ${{ secrets.TENANTCTL_DATABASE_URL }}\n",
            "pull request job `plan` mentions `secrets.`",
        ),
        (
            "vars.TENANTCTL_PLAN_ROLE",
            "vars.TENANTCTL_APPLY_ROLE",
            "assumes a role other than the plan role",
        ),
        (
            "tenantctl plan --changed --output markdown > plan.md",
            "tenantctl apply --all --yes > plan.md",
            "applies or migrates but does not require a push to main",
        ),
        (
            "  pull_request:\n",
            "  pull_request_target:\n",
            "trigger `pull_request_target`",
        ),
        (
            "        run: rm -rf .tenantctl\n",
            "        run: ls\n",
            "must `rm -rf .tenantctl` before running tenantctl",
        ),
        (
            "      TF_CLI_ARGS_plan: \"-refresh=false -lock=false\"\n",
            "      TF_CLI_ARGS_plan: \"-lock=false\"\n",
            "TF_CLI_ARGS_plan lacks `-refresh=false`",
        ),
        (
            "    if: github.event_name == 'push' && github.ref == 'refs/heads/main'\n",
            "    if: github.event_name == 'push'\n",
            "job `apply` applies or migrates but does not require a push to main",
        ),
        (
            "    environment: production\n",
            "",
            "job `apply` applies or migrates outside the protected environment `production`",
        ),
        (
            "  TENANTCTL_TERRAFORM: terraform\n",
            "  TENANTCTL_TERRAFORM: terraform\n  TENANTCTL_DATABASE_URL: ${{ secrets.TENANTCTL_DATABASE_URL }}\n",
            "the workflow-wide `env` holds a secret",
        ),
        (
            "      github.event.pull_request.head.repo.full_name == github.repository\n",
            "      true\n",
            "must skip forks",
        ),
    ];
    for (old, new, wanted) in breaches {
        assert!(original.contains(old), "{WORKFLOW} has no {old:?}");
        let changed: Value = serde_norway::from_str(&original.replacen(old, new, 1)).unwrap();
        let found = problems(&changed);
        assert!(
            found.iter().any(|p| p.contains(wanted)),
            "replacing {old:?} by {new:?}: expected a problem containing {wanted:?}, got {found:#?}"
        );
    }
}

/// A work dir whose config names its own Terraform binary, a script that would leave a
/// mark if it ever ran.
fn work_dir_naming_a_binary(binary: &str) -> Workdir {
    let mut ws = Workdir::offline();
    let tool = ws.path().join("tools/terraform");
    std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
    std::fs::write(
        &tool,
        "#!/bin/sh\ntouch \"$(dirname \"$0\")/ran\"\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    ws.edit_config(
        "[terraform]\n",
        &format!("[terraform]\nbinary = {binary:?}\n"),
    );
    // Only the config chooses: no override from the environment.
    ws.set_env("TENANTCTL_TERRAFORM", "");
    ws.set_env("TENANTCTL_DATABASE_URL", "postgres://admin@127.0.0.1:9/app");
    std::fs::write(
        ws.path().join("tenants/acme.toml"),
        "id = \"acme\"\ntier = \"starter\"\n",
    )
    .unwrap();
    ws
}

/// The work dir's files, but the audit log, where a refused `add` is recorded.
fn files(ws: &Workdir) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut f = ws.all_files();
    f.retain(|(p, _)| !p.ends_with(".tenantctl/audit.jsonl"));
    f.sort();
    f
}

#[test]
fn in_ci_a_config_cannot_choose_the_terraform_binary() {
    let mut ws = work_dir_naming_a_binary("./tools/terraform");
    ws.set_env("CI", "true");
    let before = files(&ws);
    for args in [
        vec!["plan", "--all"],
        vec!["apply", "--all", "--yes"],
        vec!["add", "globex", "--tier", "growth"],
        vec!["platform", "plan"],
        vec!["render", "--all"],
        vec!["list"],
    ] {
        let r = ws.tenantctl(&args);
        r.assert_code(1);
        let err = r.stderr();
        assert!(
            err.contains(
                "[terraform] binary = \"./tools/terraform\" is refused in CI (`CI` is set): there the config file is part of the change under test, so it may only name `terraform` or `tofu` (looked up on PATH)"
            ),
            "{}",
            r.dump()
        );
        assert!(
            err.contains("\nhint: let the workflow choose the program: set `TENANTCTL_TERRAFORM`"),
            "{}",
            r.dump()
        );
        assert!(r.stdout().is_empty(), "{}", r.dump());
    }
    assert!(!ws.path().join("tools/ran").exists(), "the binary ran");
    assert_eq!(files(&ws), before, "a refused run wrote files");
    assert!(!ws.path().join(".tenantctl").exists());
}

#[test]
fn in_ci_the_environment_or_the_allow_list_chooses_the_binary() {
    // The allow-list: a bare name looked up on PATH.
    for allowed in ["terraform", "tofu"] {
        let mut ws = work_dir_naming_a_binary(allowed);
        ws.set_env("CI", "true");
        ws.tenantctl(&["list"]).assert_code(0);
    }
    // The workflow's TENANTCTL_TERRAFORM decides: the config's value is not used.
    let mut ws = work_dir_naming_a_binary("./tools/terraform");
    ws.set_env("CI", "true");
    ws.set_env(
        "TENANTCTL_TERRAFORM",
        "/nonexistent/terraform-from-the-workflow",
    );
    ws.tenantctl(&["list"]).assert_code(0);
    let r = ws.tenantctl(&["platform", "plan"]);
    r.assert_code(1);
    assert!(
        r.stderr()
            .contains("cannot run `/nonexistent/terraform-from-the-workflow`"),
        "{}",
        r.dump()
    );
    // Outside CI (`CI` unset, empty or false) the config may name any binary.
    for ci in ["", "false", "0"] {
        let mut ws = work_dir_naming_a_binary("./tools/terraform");
        ws.set_env("CI", ci);
        ws.tenantctl(&["list"]).assert_code(0);
    }
    assert!(!ws.path().join("tools/ran").exists());
}

/// checkov's inline skips in the modules each name one check and say why (`.ci/run` fails
/// on any check that is neither passed nor skipped).
#[test]
fn every_checkov_skip_in_the_modules_gives_its_reason() {
    let mut skips = 0;
    for module in ["tenant", "platform"] {
        let dir = repo_root().join("terraform/modules").join(module);
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("tf") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if !line.contains("checkov:") {
                    continue;
                }
                let at = format!("{}:{}", path.display(), n + 1);
                let rest = line
                    .trim()
                    .strip_prefix("#checkov:skip=")
                    .unwrap_or_else(|| panic!("{at}: not `#checkov:skip=<id>:<reason>`: {line}"));
                let (id, reason) = rest
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{at}: a skip without its reason: {line}"));
                let number = id
                    .strip_prefix("CKV_AWS_")
                    .or_else(|| id.strip_prefix("CKV2_AWS_"))
                    .unwrap_or_default();
                assert!(
                    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
                    "{at}: `{id}` is not one checkov check id"
                );
                assert!(
                    reason.split_whitespace().count() >= 5,
                    "{at}: the reason for skipping {id} is too short to be one: {reason:?}"
                );
                skips += 1;
            }
        }
    }
    assert!(skips > 0, "no checkov skips found: was the module moved?");
}

/// The example's pull request job against the emulator: no database URL, and Terraform
/// told not to refresh or lock (`TF_CLI_ARGS_plan`). Nothing changed plans clean; a tier
/// change is planned as a move, without its row counts.
#[test]
fn a_pull_request_plan_needs_no_database_refresh_or_lock() {
    let mut ws = Workdir::new().with_database();
    let id = crate::support::unique("ci-pr");
    ws.tenantctl(&["add", &id, "--tier", "starter"])
        .assert_code(0);

    ws.set_env("TENANTCTL_DATABASE_URL", "");
    ws.set_env("TF_CLI_ARGS_plan", "-refresh=false -lock=false");
    ws.tenantctl(&["plan", &id]).assert_code(0);

    let file = ws.path().join(format!("tenants/{id}.toml"));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("tier = \"starter\"", "tier = \"growth\""),
    )
    .unwrap();
    let r = ws.tenantctl(&["plan", &id]);
    r.assert_code(2);
    assert!(
        r.stdout().contains(
            "move starter (pool) → growth (bridge): rows not counted (no database credential)"
        ),
        "{}",
        r.dump()
    );
    assert!(
        r.stderr().contains(
            "`TENANTCTL_DATABASE_URL` is not set: pending moves are shown without their row counts"
        ),
        "{}",
        r.dump()
    );
    let r = ws.tenantctl(&["plan", &id, "--output", "json"]);
    r.assert_code(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert!(
        v.to_string()
            .contains(r#""state":"planned, rows not counted""#),
        "{}",
        r.dump()
    );
}
