//! `tenantctl db rollback` through the real binary: down files run newest first on pool,
//! bridge and silo targets, the ledger kept true, a missing down file refused before
//! anything runs, failures isolated per target, and no-transaction down files.

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::Value;
use tenantctl::tenant::Tier;

use crate::support::postgres::{DbWorkDir, cluster, connect, show};

const ACCOUNTS: &str = include_str!("../migrations/0001_accounts.sql");
const NOTES: &str = "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text);\n";
const TAGS: &str = "CREATE TABLE tags (tenant_id text NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, name));\n";

fn json(args: &[&str], out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", show(args, out)))
}

#[track_caller]
fn assert_code(args: &[&str], out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(args, out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The admin connection to the database holding `target`'s schema (silo: its own).
async fn admin_for(w: &DbWorkDir, target: &str) -> tokio_postgres::Client {
    match target {
        t if t.ends_with("-e") => connect(&cluster().admin_url(&format!("tenant_{t}"))).await,
        _ => w.admin().await,
    }
}

fn schema_of(target: &str) -> String {
    if target == "pool" {
        "pool".into()
    } else {
        format!("tenant_{target}")
    }
}

/// Applied versions and tables (among accounts, notes, tags) of each target.
async fn state(w: &DbWorkDir, targets: &[&str]) -> BTreeMap<String, (Vec<i32>, Vec<String>)> {
    let mut out = BTreeMap::new();
    for t in targets {
        let c = admin_for(w, t).await;
        let s = schema_of(t);
        let versions: Vec<i32> = c
            .query(
                &format!("SELECT version FROM \"{s}\".schema_migrations ORDER BY 1"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let tables: Vec<String> = c
            .query(
                "SELECT relname::text FROM pg_class WHERE relnamespace = $1::text::regnamespace
                   AND relkind = 'r' AND relname IN ('accounts', 'notes', 'tags') ORDER BY 1",
                &[&format!("\"{s}\"")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.insert(t.to_string(), (versions, tables));
    }
    out
}

fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                t["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(t: &str, o: &str) -> (String, String) {
    (t.to_string(), o.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_runs_down_files_newest_first_on_every_tier_and_keeps_the_ledger_true() {
    let w = DbWorkDir::empty("rb_tiers").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.write_migration("0001_accounts.down.sql", "DROP TABLE accounts;\n");
    w.write_migration("0002_notes.sql", NOTES);
    w.write_migration("0002_notes.down.sql", "DROP TABLE notes;\n");
    w.write_migration("0003_tags.sql", TAGS);
    w.provision("rb-s", Tier::Starter).await;
    w.provision("rb-g", Tier::Growth).await;
    w.provision("rb-g2", Tier::Growth).await;
    w.provision("rb-e", Tier::Enterprise).await;
    let all = ["pool", "rb-e", "rb-g", "rb-g2"];
    let full = (
        vec![1, 2, 3],
        vec!["accounts".to_string(), "notes".into(), "tags".into()],
    );
    let before = state(&w, &all).await;
    assert!(before.values().all(|s| s == &full), "{before:?}");

    // The whole fleet only with --all; ids and --all exclude each other.
    let args = ["db", "rollback", "--to", "1", "--yes"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    assert!(
        stderr(&out).contains("no targets selected") && stderr(&out).contains("needs `--all`"),
        "{}",
        show(&args, &out)
    );
    let args = ["db", "rollback", "rb-g", "--all", "--to", "1", "--yes"];
    assert_code(&args, &w.tenantctl(&args), 1);
    // An unknown version is refused, naming the known ones.
    let args = ["db", "rollback", "--all", "--to", "7", "--yes"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    assert!(
        stderr(&out).contains("no migration has version 0007")
            && stderr(&out).contains("the versions are 0001 to 0003"),
        "{}",
        show(&args, &out)
    );
    // 0003 has no down file: refused before anything runs, naming it and its targets.
    let args = ["db", "rollback", "--all", "--to", "1", "--yes"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("`0003_tags.down.sql` (needed on 4 target(s): pool, rb-e, rb-g, rb-g2)")
            && err.contains("nothing was rolled back"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert_eq!(state(&w, &all).await, before);

    w.write_migration("0003_tags.down.sql", "DROP TABLE tags;\n");
    // Without --yes and without a terminal: refused, nothing runs.
    let args = ["db", "rollback", "rb-g", "--to", "2"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    assert!(
        stderr(&out).contains("refusing to roll back without confirmation")
            && stderr(&out).contains("pass `--yes`"),
        "{}",
        show(&args, &out)
    );
    assert_eq!(state(&w, &all).await, before);

    // One tenant: its target only, newest first, down to 0001.
    let args = [
        "db", "rollback", "rb-g", "--to", "1", "--yes", "--output", "json",
    ];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let report = json(&args, &out);
    assert_eq!(outcomes(&report), [pair("rb-g", "rolled_back")]);
    let t = &report["targets"][0];
    assert_eq!(
        (t["from_version"].as_i64(), t["to_version"].as_i64()),
        (Some(3), Some(1))
    );
    let undone: Vec<&str> = t["rolled_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["down_file"].as_str().unwrap())
        .collect();
    assert_eq!(undone, ["0003_tags.down.sql", "0002_notes.down.sql"]);
    assert_eq!(
        t["rolled_back"][1]["down_checksum"].as_str().unwrap().len(),
        64
    );
    let s = state(&w, &all).await;
    assert_eq!(s["rb-g"], (vec![1], vec!["accounts".to_string()]));
    assert_eq!(s["rb-g2"], full);
    assert_eq!(s["pool"], full);

    // A down file failing on one target stops that target only, its ledger still true.
    w.admin()
        .await
        .batch_execute("DROP TABLE \"tenant_rb-g2\".tags")
        .await
        .unwrap();
    let args = [
        "db", "rollback", "--all", "--to", "1", "--yes", "--output", "json",
    ];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    assert_eq!(
        outcomes(&report),
        [
            pair("pool", "rolled_back"),
            pair("rb-e", "rolled_back"),
            pair("rb-g", "unchanged"),
            pair("rb-g2", "failed"),
        ]
    );
    let failed = &report["targets"][3];
    assert_eq!(failed["failed_migration"], "0003_tags.down.sql");
    assert!(
        failed["error"].as_str().unwrap().contains("does not exist"),
        "{failed}"
    );
    let s = state(&w, &all).await;
    let at_1 = (vec![1], vec!["accounts".to_string()]);
    for t in ["pool", "rb-e", "rb-g"] {
        assert_eq!(s[t], at_1, "{t}");
    }
    assert_eq!(
        s["rb-g2"],
        (vec![1, 2, 3], vec!["accounts".to_string(), "notes".into()])
    );
    // db status names the failure.
    let st = ["db", "status", "--output", "json", "rb-g2"];
    let status = json(&st, &w.tenantctl(&st));
    assert!(
        status["targets"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("0003_tags.down.sql"),
        "{status}"
    );

    // Repaired, rerun: every target at 0001; a starter id selects the pool.
    w.admin()
        .await
        .batch_execute(
            "CREATE TABLE \"tenant_rb-g2\".tags (tenant_id text NOT NULL CHECK (tenant_id = 'rb-g2'), name text)",
        )
        .await
        .unwrap();
    let args = ["db", "rollback", "--tier", "growth", "--to", "1", "--yes"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 target(s): 1 rolled back, 1 unchanged, 0 failed"),
        "{text}"
    );
    assert!(state(&w, &all).await.values().all(|s| s == &at_1));
    let st = ["db", "status", "--output", "json"];
    let status = json(&st, &w.tenantctl(&st));
    for t in status["targets"].as_array().unwrap() {
        assert_eq!(t["pending"], 2, "{t}");
        assert_eq!(t["last_error"], Value::Null, "{t}");
    }

    // Migrating again works on every tier, the pool's new tables get RLS again.
    let args = ["db", "migrate"];
    assert_code(&args, &w.tenantctl(&args), 0);
    assert!(state(&w, &all).await.values().all(|s| s == &full));
    let rls: bool = w
        .admin()
        .await
        .query_one(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'pool.notes'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(rls);

    // --to 0 undoes everything; a starter id selects the pool target.
    let args = [
        "db", "rollback", "rb-s", "--to", "0", "--yes", "--output", "json",
    ];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    assert_eq!(outcomes(&json(&args, &out)), [pair("pool", "rolled_back")]);
    assert_eq!(state(&w, &["pool"]).await["pool"], (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_index_is_built_and_dropped_outside_a_transaction_on_every_tier() {
    let w = DbWorkDir::empty("rb_cic").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("ci-s", Tier::Starter).await;
    w.provision("ci-g", Tier::Growth).await;
    w.provision("ci-e", Tier::Enterprise).await;
    // A transactional file with a concurrent build is refused when loaded, with the hint.
    w.write_migration(
        "0002_name_idx.sql",
        "CREATE TABLE x (tenant_id text NOT NULL);\nCREATE INDEX CONCURRENTLY accounts_name_idx ON accounts (tenant_id, name);\n",
    );
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("`0002_name_idx.sql` line 2: `CREATE INDEX CONCURRENTLY` cannot run inside a transaction")
            && err.contains("hint: put it in a migration of its own whose first line is `-- tenantctl:no-transaction`"),
        "{err}"
    );
    let targets = ["pool", "ci-e", "ci-g"];
    for t in targets {
        assert_eq!(state(&w, &[t]).await[t].0, vec![1], "{t}");
    }

    w.write_migration(
        "0002_name_idx.sql",
        "-- tenantctl:no-transaction\n-- Built without blocking writes.\nCREATE INDEX CONCURRENTLY accounts_name_idx ON accounts (tenant_id, name);\n",
    );
    w.write_migration(
        "0002_name_idx.down.sql",
        "-- tenantctl:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS accounts_name_idx;\n",
    );
    w.write_migration("0003_notes.sql", NOTES);
    w.write_migration("0003_notes.down.sql", "DROP TABLE notes;\n");
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let report = json(&args, &out);
    for t in report["targets"].as_array().unwrap() {
        let applied: Vec<i64> = t["applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["version"].as_i64().unwrap())
            .collect();
        assert_eq!(applied, [2, 3], "{t}");
    }
    let index_valid = |t: &'static str| {
        let w = &w;
        async move {
            admin_for(w, t)
                .await
                .query_opt(
                    "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
                    &[&format!("\"{}\".accounts_name_idx", schema_of(t))],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, bool>(0))
        }
    };
    for t in targets {
        assert_eq!(index_valid(t).await, Some(true), "{t}");
        assert_eq!(state(&w, &[t]).await[t].0, vec![1, 2, 3], "{t}");
    }
    // The pooled connection went back clean: the bridge after the pool migrated in its
    // own schema (checked above), and nothing leaked into the session defaults.
    // Rolling back through a no-transaction down file.
    let args = ["db", "rollback", "--all", "--to", "1", "--yes"];
    assert_code(&args, &w.tenantctl(&args), 0);
    for t in targets {
        assert_eq!(index_valid(t).await, None, "{t}");
        assert_eq!(
            state(&w, &[t]).await[t],
            (vec![1], vec!["accounts".to_string()]),
            "{t}"
        );
    }
}

/// Runs tenantctl under a pseudo-terminal (`script`), typing `input`.
fn tenantctl_on_a_terminal(w: &DbWorkDir, args: &str, input: &str) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_tenantctl")),
        ])
        .arg("/dev/null")
        .current_dir(w.path())
        .env("TENANTCTL_DATABASE_URL", w.admin_url())
        .env("NO_COLOR", "1")
        .env("CI", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run `script`");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_asks_for_yes_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is needed for a pseudo-terminal");
        return;
    }
    let w = DbWorkDir::empty("rb_confirm").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.write_migration("0002_notes.sql", NOTES);
    w.write_migration("0002_notes.down.sql", "DROP TABLE notes;\n");
    w.provision("cy-g", Tier::Growth).await;
    let out = tenantctl_on_a_terminal(&w, "db rollback cy-g --to 1", "no\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("This runs 1 down migration(s) on 1 target(s)")
            && text.contains("cy-g (growth): 0002_notes.down.sql")
            && text.contains("confirmation was not `yes`: nothing was rolled back"),
        "{text}"
    );
    assert_eq!(state(&w, &["cy-g"]).await["cy-g"].0, vec![1, 2]);
    let out = tenantctl_on_a_terminal(&w, "db rollback cy-g --to 1", "yes\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        state(&w, &["cy-g"]).await["cy-g"],
        (vec![1], vec!["accounts".to_string()])
    );
}
