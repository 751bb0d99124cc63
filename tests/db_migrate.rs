//! `tenantctl db migrate|status` over many targets, driven through the real binary:
//! failures isolated per target, fail-fast, the fleet lock, edited and broken migration
//! files, unreachable databases and a missing admin credential.

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::Value;
use tenantctl::tenant::Tier;

use crate::support::postgres::{DbWorkDir, show};

const ACCOUNTS: &str = include_str!("../migrations/0001_accounts.sql");

fn tasks_and_projects() -> &'static str {
    // Creates `tasks` first, so a failure on `projects` proves the rollback of the whole
    // migration (no `tasks` left behind).
    "CREATE TABLE tasks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, title text NOT NULL);
CREATE TABLE projects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, name text NOT NULL);
"
}

const NOTES: &str = "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text);\n";

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

/// Applied versions per schema, read from the ledgers as the admin.
async fn ledgers(w: &DbWorkDir, schemas: &[&str]) -> BTreeMap<String, Vec<i32>> {
    let admin = w.admin().await;
    let mut out = BTreeMap::new();
    for s in schemas {
        let rows = admin
            .query(
                &format!("SELECT version FROM \"{s}\".schema_migrations ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        out.insert(s.to_string(), rows.iter().map(|r| r.get(0)).collect());
    }
    out
}

async fn table_exists(w: &DbWorkDir, qualified: &str) -> bool {
    w.admin()
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .unwrap()
        .get(0)
}

/// Five bridge tenants at 0001, then 0002 (fails on the third: a conflicting `projects`
/// already exists there) and 0003.
async fn five_bridges(label: &str, prefix: &str) -> (DbWorkDir, Vec<String>) {
    let w = DbWorkDir::empty(label).await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    let mut schemas = Vec::new();
    for i in 1..=5 {
        let id = format!("{prefix}{i}");
        w.provision(&id, Tier::Growth).await;
        schemas.push(format!("tenant_{id}"));
    }
    w.admin()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{}\".projects (tenant_id text NOT NULL)",
            schemas[2]
        ))
        .await
        .unwrap();
    w.write_migration("0002_tasks_projects.sql", tasks_and_projects());
    w.write_migration("0003_notes.sql", NOTES);
    (w, schemas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_target_3_of_5_rolls_back_that_target_only_and_a_rerun_finishes() {
    let (w, schemas) = five_bridges("mig_fail", "mf-").await;
    let s: Vec<&str> = schemas.iter().map(String::as_str).collect();
    let args = ["db", "migrate", "--parallelism", "1", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    let outcomes: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["migrated", "migrated", "failed", "migrated", "migrated"]
    );
    let failed = &report["targets"][2];
    assert_eq!(failed["failed_migration"], "0002_tasks_projects.sql");
    let err = failed["error"].as_str().unwrap();
    assert!(err.contains("already exists"), "{err}");
    assert!(
        stderr(&out).contains("mf-3: failed"),
        "{}",
        show(&args, &out)
    );

    let l = ledgers(&w, &s).await;
    for (i, schema) in s.iter().enumerate() {
        let want = if i == 2 { vec![1] } else { vec![1, 2, 3] };
        assert_eq!(l[*schema], want, "{schema}");
    }
    // The failed migration left nothing behind on target 3.
    assert!(!table_exists(&w, "\"tenant_mf-3\".tasks").await);
    assert!(table_exists(&w, "\"tenant_mf-2\".tasks").await);

    // db status shows it, as a table and as JSON, and exits 1: a target failed.
    let st = ["db", "status", "--output", "json"];
    let out = w.tenantctl(&st);
    assert_code(&st, &out, 1);
    let status = json(&st, &out);
    let t3 = &status["targets"][2];
    assert_eq!(t3["target"], "mf-3");
    assert_eq!(t3["version"], 1);
    assert_eq!(t3["pending"], 2);
    assert!(
        t3["last_error"]
            .as_str()
            .unwrap()
            .contains("0002_tasks_projects.sql")
    );
    assert_eq!(status["targets"][0]["pending"], 0);
    assert_eq!(status["targets"][0]["last_error"], Value::Null);
    let human = w.tenantctl(&["db", "status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("TARGET") && text.contains("LAST ERROR"),
        "{text}"
    );
    let line = text.lines().find(|l| l.starts_with("mf-3")).unwrap();
    assert!(
        line.contains("growth")
            && line.contains("0001_accounts")
            && line.contains("already exists"),
        "{line}"
    );

    // Fix the cause; the rerun finishes target 3 and clears its error.
    w.admin()
        .await
        .batch_execute("DROP TABLE \"tenant_mf-3\".projects")
        .await
        .unwrap();
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let l = ledgers(&w, &s).await;
    assert!(l.values().all(|v| v == &vec![1, 2, 3]), "{l:?}");
    let status = json(&st, &w.tenantctl(&st));
    assert_eq!(status["targets"][2]["last_error"], Value::Null);
    assert_eq!(status["targets"][2]["state"], "up_to_date");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_leaves_the_targets_after_the_failure_untouched() {
    let (w, schemas) = five_bridges("mig_ff", "ff-").await;
    let s: Vec<&str> = schemas.iter().map(String::as_str).collect();
    let args = [
        "db",
        "migrate",
        "--fail-fast",
        "--parallelism",
        "1",
        "--output",
        "json",
    ];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    let outcomes: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["migrated", "migrated", "failed", "not_run", "not_run"]
    );
    let l = ledgers(&w, &s).await;
    assert_eq!(
        l.values().cloned().collect::<Vec<_>>(),
        [vec![1, 2, 3], vec![1, 2, 3], vec![1], vec![1], vec![1]]
    );
    assert!(!table_exists(&w, "\"tenant_ff-4\".tasks").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_never_both_apply() {
    let w = DbWorkDir::empty("mig_lock").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    let ids = ["lk-1", "lk-2", "lk-3"];
    for id in ids {
        w.provision(id, Tier::Growth).await;
    }
    let schemas: Vec<String> = ids.iter().map(|i| format!("tenant_{i}")).collect();
    let s: Vec<&str> = schemas.iter().map(String::as_str).collect();

    // A held lock: the run refuses at once, naming the holder, and applies nothing.
    w.write_migration("0002_slow.sql", &format!("SELECT pg_sleep(0.4);\n{NOTES}"));
    let holder = w.admin().await;
    holder
        .batch_execute(&format!(
            "SET application_name = 'the other run'; SELECT pg_advisory_lock({}, {})",
            tenantctl::db::sql::LOCK_CLASS,
            tenantctl::db::sql::LOCK_RUN
        ))
        .await
        .unwrap();
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    // A held lock has its own exit code, so CI can retry.
    assert_code(&args, &out, 4);
    let err = stderr(&out);
    assert!(
        err.contains("holds the migration lock") && err.contains("the other run"),
        "{err}"
    );
    assert!(ledgers(&w, &s).await.values().all(|v| v == &vec![1]));
    drop(holder);

    // Two runs started together: one applies, the other fails on the lock (or, waiting
    // for it, finds nothing left to do). Never both.
    let spawn = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        cmd.args(["db", "migrate", "--parallelism", "1", "--output", "json"])
            .args(extra)
            .current_dir(w.path())
            .env("TENANTCTL_DATABASE_URL", w.admin_url())
            .env("CI", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let applied = |out: &Output| -> usize {
        serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| {
                v["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["applied"].as_array().unwrap().len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let a = spawn(&[]);
    let b = spawn(&[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(4)),
        "{codes:?}\n{}\n{}",
        show(&args, &a),
        show(&args, &b)
    );
    assert_eq!(applied(&a) + applied(&b), 3);
    let loser = if a.status.code() == Some(4) { &a } else { &b };
    assert!(
        stderr(loser).contains("holds the migration lock"),
        "{}",
        stderr(loser)
    );

    // With --lock-timeout the second waits, then finds nothing pending.
    w.write_migration(
        "0003_slow.sql",
        "SELECT pg_sleep(0.4);\nCREATE TABLE more_notes (tenant_id text NOT NULL);\n",
    );
    let a = spawn(&["--lock-timeout", "60"]);
    let b = spawn(&["--lock-timeout", "60"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(
        (a.status.code(), b.status.code()),
        (Some(0), Some(0)),
        "{}\n{}",
        show(&args, &a),
        show(&args, &b)
    );
    assert_eq!(applied(&a) + applied(&b), 3);
    assert!(ledgers(&w, &s).await.values().all(|v| v == &vec![1, 2, 3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_migration_is_refused_before_anything_is_applied() {
    let w = DbWorkDir::new("mig_edit").await;
    w.provision("ed-1", Tier::Growth).await;
    w.provision("ed-2", Tier::Starter).await;
    let path = w.migrations().join("0001_accounts.sql");
    std::fs::write(&path, format!("{ACCOUNTS}\n-- a harmless-looking edit\n")).unwrap();
    w.write_migration("0003_notes.sql", NOTES);
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("`0001_accounts.sql` was edited after it was applied")
            && err.contains("nothing was applied"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(!table_exists(&w, "\"tenant_ed-1\".notes").await);
    assert!(!table_exists(&w, "pool.notes").await);
    let st = ["db", "status", "--output", "json"];
    let status = json(&st, &w.tenantctl(&st));
    assert!(
        status["targets"][0]["state"]
            .as_str()
            .unwrap()
            .starts_with("checksum_mismatch"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_migration_names_file_and_line_and_leaves_no_target_half_migrated() {
    let w = DbWorkDir::new("mig_syntax").await;
    w.provision("sx-1", Tier::Growth).await;
    w.provision("sx-2", Tier::Starter).await;
    w.provision("sx-3", Tier::Enterprise).await;
    // A syntax error on line 3: nothing of the file may run anywhere.
    w.write_migration(
        "0003_bad.sql",
        &format!("{NOTES}\nCREAT TABLE oops (x int);\n"),
    );
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    for t in report["targets"].as_array().unwrap() {
        assert_eq!(t["outcome"], "failed", "{t}");
        let e = t["error"].as_str().unwrap();
        assert!(
            e.contains("`0003_bad.sql` line 3, column 1") && e.contains("syntax error"),
            "{e}"
        );
    }
    assert!(!table_exists(&w, "\"tenant_sx-1\".notes").await);
    assert!(!table_exists(&w, "pool.notes").await);
    // A runtime error after a statement that succeeded: rolled back too.
    w.write_migration(
        "0003_bad.sql",
        &format!("{NOTES}INSERT INTO no_such_table VALUES (1);\n"),
    );
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    assert!(!table_exists(&w, "\"tenant_sx-1\".notes").await);
    assert!(!table_exists(&w, "pool.notes").await);
    let l = ledgers(&w, &["tenant_sx-1", "pool"]).await;
    assert!(l.values().all(|v| v == &vec![1, 2]), "{l:?}");
    // Transaction control in a file is refused when the file is read.
    w.write_migration("0003_bad.sql", &format!("{NOTES}COMMIT;\n"));
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    assert!(
        stderr(&out).contains("`0003_bad.sql` line 2: `COMMIT` is not allowed"),
        "{}",
        stderr(&out)
    );
    // Fixed: every tier gets it.
    w.write_migration("0003_bad.sql", NOTES);
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    assert!(table_exists(&w, "\"tenant_sx-1\".notes").await);
    assert!(table_exists(&w, "pool.notes").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pool_tables_get_rls_forced_and_the_tenant_policy() {
    let w = DbWorkDir::new("mig_rls").await;
    w.provision("rl-1", Tier::Starter).await;
    w.provision("rl-2", Tier::Growth).await;
    w.write_migration(
        "0003_invoices.sql",
        "CREATE TABLE invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, total numeric NOT NULL);
CREATE VIEW big_invoices AS SELECT * FROM invoices WHERE total > 1000;
",
    );
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let admin = w.admin().await;
    let row = admin
        .query_one(
            "SELECT c.relrowsecurity, c.relforcerowsecurity,
                    (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = c.oid AND polname = 'tenant_isolation'),
                    (SELECT pg_get_expr(polwithcheck, polrelid) FROM pg_policy WHERE polrelid = c.oid AND polname = 'tenant_isolation'),
                    (SELECT reloptions FROM pg_class WHERE oid = 'pool.big_invoices'::regclass)
             FROM pg_class c WHERE c.oid = 'pool.invoices'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("(tenant_id = pool.current_tenant())")
    );
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("(tenant_id = pool.current_tenant())")
    );
    assert_eq!(
        row.get::<_, Option<Vec<String>>>(4),
        Some(vec!["security_invoker=true".to_string()])
    );
    // In the bridge schema the same table carries the tenant CHECK.
    let check: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = '\"tenant_rl-2\".invoices'::regclass AND conname = 'tenantctl_tenant_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(check, 1);
    // A table without tenant_id is refused on every target, naming the table.
    w.write_migration(
        "0004_global.sql",
        "CREATE TABLE settings (key text PRIMARY KEY, value text);\n",
    );
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    for t in report["targets"].as_array().unwrap() {
        let e = t["error"].as_str().unwrap_or("");
        assert!(
            e.contains("settings has no column tenant_id text not null"),
            "{t}"
        );
    }
    assert!(!table_exists(&w, "pool.settings").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tier_is_a_target_and_a_noop_rerun_changes_nothing() {
    let w = DbWorkDir::empty("mig_tiers").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("ti-s1", Tier::Starter).await;
    w.provision("ti-s2", Tier::Starter).await;
    w.provision("ti-g", Tier::Growth).await;
    w.provision("ti-e", Tier::Enterprise).await;
    w.write_migration("0002_notes.sql", NOTES);
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let report = json(&args, &out);
    let targets: Vec<(String, String, String)> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                t["isolation"].as_str().unwrap().to_string(),
                t["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("pool".into(), "pool".into(), "migrated".into()),
            ("ti-e".into(), "silo".into(), "migrated".into()),
            ("ti-g".into(), "bridge".into(), "migrated".into()),
        ]
    );
    // The silo's table lives in its own database.
    let silo = crate::support::postgres::connect(
        &crate::support::postgres::cluster().admin_url("tenant_ti-e"),
    )
    .await;
    let n: i64 = silo
        .query_one(
            "SELECT count(*) FROM \"tenant_ti-e\".schema_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // A no-op rerun: every target up to date, exit 0, a one-line summary for humans.
    let out = w.tenantctl(&["db", "migrate"]);
    assert_code(&["db", "migrate"], &out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 target(s): 0 migrated, 3 up to date, 0 failed"),
        "{text}"
    );
    // The audit trail: one event per tenant the first run changed (the pool target
    // for each pooled tenant), none for the no-op rerun.
    let audit = std::fs::read_to_string(w.dir.path().join(".tenantctl/audit.jsonl")).unwrap();
    let mut events: Vec<(String, String, String)> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            assert_eq!(
                (&e["action"], &e["result"]),
                (&"migrate".into(), &"ok".into())
            );
            (
                e["tenant"].as_str().unwrap().into(),
                e["tier_after"].as_str().unwrap().into(),
                e["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    events.sort();
    let detail = "0001_accounts → 0002_notes (1 applied)".to_string();
    assert_eq!(
        events,
        [
            ("ti-e".into(), "enterprise".into(), detail.clone()),
            ("ti-g".into(), "growth".into(), detail.clone()),
            ("ti-s1".into(), "starter".into(), detail.clone()),
            ("ti-s2".into(), "starter".into(), detail),
        ],
        "{audit}"
    );
    // Selecting tenants: a starter id selects the pool.
    let st = ["db", "status", "--output", "json", "ti-s2"];
    let status = json(&st, &w.tenantctl(&st));
    assert_eq!(status["targets"].as_array().unwrap().len(), 1);
    assert_eq!(status["targets"][0]["target"], "pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_silo_fails_alone_and_is_named() {
    let w = DbWorkDir::empty("mig_unreach").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("ur-g", Tier::Growth).await;
    w.provision("ur-e", Tier::Enterprise).await;
    w.write_migration("0002_notes.sql", NOTES);
    // The dedicated database moves to a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = w.path().join("tenantctl.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        &format!("local_silo = {{ host = \"127.0.0.1\", port = {} }}", w.port),
        &format!("local_silo = {{ host = \"127.0.0.1\", port = {closed} }}"),
    );
    std::fs::write(&cfg, text).unwrap();
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    let by_name: BTreeMap<String, Value> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    assert_eq!(by_name["ur-g"]["outcome"], "migrated");
    assert_eq!(by_name["ur-e"]["outcome"], "failed");
    let e = by_name["ur-e"]["error"].as_str().unwrap();
    assert!(
        e.contains(&format!(
            "cannot connect to PostgreSQL at postgres@127.0.0.1:{closed}/tenant_ur-e"
        )),
        "{e}"
    );
    assert!(
        !e.contains(crate::support::postgres::SUPERUSER_PASSWORD),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_admin_database_and_a_missing_credential_are_one_clear_error() {
    let w = DbWorkDir::new("mig_badenv").await;
    w.declare("be-1", Tier::Growth);
    // Missing credential.
    let args = ["db", "migrate"];
    let out = w.tenantctl_env(&args, &[]);
    assert_code(&args, &out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("environment variable `TENANTCTL_DATABASE_URL` is not set"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    // Unreachable server: names the server, never the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://postgres:hunter2-secret@127.0.0.1:{closed}/app");
    for args in [&["db", "migrate"][..], &["db", "status"][..]] {
        let out = w.tenantctl_env(args, &[("TENANTCTL_DATABASE_URL", Some(&url))]);
        assert_code(args, &out, 1);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "cannot connect to PostgreSQL at postgres@127.0.0.1:{closed}/app"
            )) && err.contains("TENANTCTL_DATABASE_URL"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    // A malformed URL does not echo it either.
    let out = w.tenantctl_env(
        &args,
        &[(
            "TENANTCTL_DATABASE_URL",
            Some("postgresql://postgres:hunter2@127.0.0.1:notaport/app"),
        )],
    );
    assert_code(&args, &out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("is not a valid PostgreSQL connection string") && !err.contains("hunter2"),
        "{err}"
    );
}

/// The index's validity, or None when it does not exist.
async fn index_valid(w: &DbWorkDir, qualified: &str) -> Option<bool> {
    w.admin()
        .await
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&qualified],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_build_that_fails_halfway_is_rebuilt_by_the_rerun() {
    let w = DbWorkDir::empty("mig_cic_fail").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("cf-1", Tier::Growth).await;
    w.provision("cf-2", Tier::Growth).await;
    // Two accounts with one name in cf-1: the unique build fails there, after the first
    // statement succeeded.
    w.admin()
        .await
        .batch_execute(
            "INSERT INTO \"tenant_cf-1\".accounts (tenant_id, email, name) VALUES
                 ('cf-1', 'a@example.com', 'Ann'), ('cf-1', 'b@example.com', 'Ann')",
        )
        .await
        .unwrap();
    w.write_migration(
        "0002_indexes.sql",
        "-- tenantctl:no-transaction
CREATE INDEX CONCURRENTLY accounts_created_idx ON accounts (tenant_id, created_at);
CREATE UNIQUE INDEX CONCURRENTLY accounts_name_key ON accounts (tenant_id, name);
",
    );
    let args = ["db", "migrate", "--parallelism", "1", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    let t1 = &report["targets"][0];
    assert_eq!(t1["outcome"], "failed", "{t1}");
    assert_eq!(t1["failed_migration"], "0002_indexes.sql");
    let e = t1["error"].as_str().unwrap();
    assert!(
        e.contains("`0002_indexes.sql` line 3")
            && e.contains("could not create unique index")
            && e.contains("the 1 statement(s) before line 3 stay done"),
        "{e}"
    );
    assert_eq!(report["targets"][1]["outcome"], "migrated");
    // What the failed build left: the first index valid, the second invalid, no ledger row.
    assert_eq!(
        index_valid(&w, "\"tenant_cf-1\".accounts_created_idx").await,
        Some(true)
    );
    assert_eq!(
        index_valid(&w, "\"tenant_cf-1\".accounts_name_key").await,
        Some(false)
    );
    let l = ledgers(&w, &["tenant_cf-1", "tenant_cf-2"]).await;
    assert_eq!(l["tenant_cf-1"], vec![1]);
    assert_eq!(l["tenant_cf-2"], vec![1, 2]);

    // Fix the data; the rerun skips the valid index, drops and rebuilds the invalid one,
    // and records the migration once.
    w.admin()
        .await
        .batch_execute("DELETE FROM \"tenant_cf-1\".accounts WHERE email = 'b@example.com'")
        .await
        .unwrap();
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 0);
    let report = json(&args, &out);
    assert_eq!(report["targets"][0]["outcome"], "migrated");
    assert_eq!(report["targets"][0]["applied"][0]["version"], 2);
    assert_eq!(report["targets"][1]["outcome"], "up_to_date");
    for idx in ["accounts_created_idx", "accounts_name_key"] {
        assert_eq!(
            index_valid(&w, &format!("\"tenant_cf-1\".{idx}")).await,
            Some(true),
            "{idx}"
        );
    }
    let rows: i64 = w
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM \"tenant_cf-1\".schema_migrations WHERE version = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // Nothing left behind: one index per name, and the session settings of the pooled
    // connection were reset (the tenant's CHECK and grants came from the post step).
    let n: i64 = w
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = '\"tenant_cf-1\"'::regnamespace AND relkind = 'i' AND relname LIKE 'accounts_name_key%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_mode_rolls_a_failing_target_back_to_its_previous_version() {
    let w = DbWorkDir::empty("mig_txmode").await;
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    let ids = ["tm-1", "tm-2", "tm-3"];
    for id in ids {
        w.provision(id, Tier::Growth).await;
    }
    let schemas: Vec<String> = ids.iter().map(|i| format!("tenant_{i}")).collect();
    let s: Vec<&str> = schemas.iter().map(String::as_str).collect();
    // The 2nd of 3 pending migrations fails on tm-2 only.
    w.admin()
        .await
        .batch_execute("CREATE TABLE \"tenant_tm-2\".projects (tenant_id text NOT NULL)")
        .await
        .unwrap();
    w.write_migration("0002_notes.sql", NOTES);
    w.write_migration("0003_tasks_projects.sql", tasks_and_projects());
    w.write_migration(
        "0004_more_notes.sql",
        "CREATE TABLE more_notes (tenant_id text NOT NULL);\n",
    );
    let args = [
        "db",
        "migrate",
        "--tx-mode",
        "target",
        "--parallelism",
        "1",
        "--output",
        "json",
    ];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    assert_eq!(report["tx_mode"], "target");
    let t2 = &report["targets"][1];
    assert_eq!(t2["outcome"], "failed", "{t2}");
    assert_eq!(t2["failed_migration"], "0003_tasks_projects.sql");
    assert_eq!(
        (t2["from_version"].as_i64(), t2["to_version"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(t2["applied"].as_array().unwrap().len(), 0);
    let e = t2["error"].as_str().unwrap();
    assert!(
        e.contains("already exists")
            && e.contains("rolled back with `0002_notes.sql`, `0004_more_notes.sql`"),
        "{e}"
    );
    for i in [0, 2] {
        let t = &report["targets"][i];
        assert_eq!(t["outcome"], "migrated", "{t}");
        let durations: Vec<i64> = t["applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["duration_ms"].as_i64().unwrap())
            .collect();
        assert_eq!(durations.len(), 3, "{t}");
    }
    let l = ledgers(&w, &s).await;
    assert_eq!(l["tenant_tm-1"], vec![1, 2, 3, 4]);
    assert_eq!(l["tenant_tm-2"], vec![1]);
    assert_eq!(l["tenant_tm-3"], vec![1, 2, 3, 4]);
    // Nothing of the 1st pending migration was kept on tm-2.
    assert!(!table_exists(&w, "\"tenant_tm-2\".notes").await);
    assert!(!table_exists(&w, "\"tenant_tm-2\".tasks").await);
    assert!(table_exists(&w, "\"tenant_tm-3\".more_notes").await);
    // The post-migration step ran for the whole transaction: the CHECK is on every table.
    let checks: i64 = w
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE connamespace = '\"tenant_tm-1\"'::regnamespace AND conname = 'tenantctl_tenant_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(checks, 5);

    // Per migration, the same failure keeps the migration before it.
    let args = [
        "db",
        "migrate",
        "--tx-mode",
        "migration",
        "--output",
        "json",
    ];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    let report = json(&args, &out);
    assert_eq!(report["tx_mode"], "migration");
    assert_eq!(ledgers(&w, &s).await["tenant_tm-2"], vec![1, 2]);
    assert!(table_exists(&w, "\"tenant_tm-2\".notes").await);

    // `[database] tx_mode` sets the default.
    let cfg = w.path().join("tenantctl.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[database]\n", "[database]\ntx_mode = \"migration\"\n"),
    )
    .unwrap();
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_code(&args, &out, 1);
    assert_eq!(json(&args, &out)["tx_mode"], "migration");
}
