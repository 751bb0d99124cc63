//! `cargo bench --bench migrate`: 500 bridge schemas × 5 migrations, side by side in one
//! run: a sequential psql loop, tenantctl with one transaction per migration and with
//! one per target (each sequential and with 8 at once), and no-op reruns.
//!
//! Not a timed test: it prints wall-clock figures for the README. It starts its own
//! PostgreSQL (initdb + pg_ctl, default durability: fsync on) and stops it at the end.
//! `BENCH_TENANTS=50 cargo bench --bench migrate` runs a smaller fleet. Between runs the
//! migrations' tables are dropped, the ledgers emptied, the catalogs vacuumed and a
//! checkpoint taken, so no run pays for the one before it.
//!
//! `BENCH_BASELINE_BIN=/path/to/tenantctl` adds the same runs with another build (say,
//! the previous release) to the table, for before/after figures taken under the same
//! load.
//!
//! The psql loop is the script an operator would write without tenantctl: one psql per
//! schema, the five files in one transaction (`--single-transaction`), `search_path` set
//! to the schema. It records no ledger, runs no per-tier step and takes no lock, so it
//! does strictly less work than tenantctl.

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tenantctl::tenant::Tier;

use postgres::{Cluster, DbWorkDir, SUPERUSER, SUPERUSER_PASSWORD};

const MIGRATIONS: [(&str, &str); 5] = [
    (
        "0001_accounts.sql",
        include_str!("../migrations/0001_accounts.sql"),
    ),
    (
        "0002_projects.sql",
        include_str!("../migrations/0002_projects.sql"),
    ),
    (
        "0003_tasks.sql",
        "CREATE TABLE tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    project_id bigint NOT NULL,
    title text NOT NULL,
    done boolean NOT NULL DEFAULT false
);
CREATE INDEX tasks_project_idx ON tasks (tenant_id, project_id);
",
    ),
    (
        "0004_last_login.sql",
        "ALTER TABLE accounts ADD COLUMN last_login timestamptz;
CREATE INDEX accounts_last_login_idx ON accounts (tenant_id, last_login);
",
    ),
    (
        "0005_audit_log.sql",
        "CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL
);
",
    ),
];

struct Stop<'a>(&'a Cluster);
impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn time_tenantctl(w: &DbWorkDir, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = w.tenantctl(args);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", postgres::show(args, &out));
    took
}

/// Like [`time_tenantctl`] with another build of tenantctl (`BENCH_BASELINE_BIN`).
fn time_binary(w: &DbWorkDir, bin: &str, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .current_dir(w.path())
        .env("TENANTCTL_DATABASE_URL", w.admin_url())
        .env("CI", "1")
        .output()
        .expect("run the baseline tenantctl");
    let took = started.elapsed();
    assert!(out.status.success(), "{}", postgres::show(args, &out));
    took
}

/// Runs a bash loop over the schemas; `body` uses `$s`.
fn time_psql_loop(w: &DbWorkDir, schemas_file: &std::path::Path, body: &str) -> Duration {
    let script = format!(
        "set -e\nwhile read -r s; do\n  {body}\ndone < {}\n",
        schemas_file.display()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(w.migrations())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", w.port.to_string())
        .env("PGUSER", SUPERUSER)
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .env("PGDATABASE", &w.dbname)
        .output()
        .expect("bash");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "psql loop failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Drops what the migrations created, empties the ledgers, vacuums the catalogs the drops
/// bloated and takes a checkpoint, so the next run starts from the same state.
async fn reset(w: &DbWorkDir, schemas: &[String]) {
    let admin = w.admin().await;
    for chunk in schemas.chunks(100) {
        let sql: String = chunk
            .iter()
            .map(|s| {
                format!(
                    "DROP TABLE IF EXISTS \"{s}\".audit_log, \"{s}\".tasks, \"{s}\".projects, \"{s}\".accounts CASCADE; TRUNCATE \"{s}\".schema_migrations;\n"
                )
            })
            .collect();
        admin.batch_execute(&sql).await.unwrap();
    }
    // One statement per call: several in one query string would be one transaction,
    // which VACUUM refuses.
    admin.batch_execute("VACUUM").await.unwrap();
    admin.batch_execute("CHECKPOINT").await.unwrap();
}

async fn count_tables(w: &DbWorkDir) -> i64 {
    w.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'audit_log' AND relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn main() {
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("starting PostgreSQL (default durability) ...");
    let cluster = Cluster::start(&[]);
    let _stop = Stop(&cluster);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let version = Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    rt.block_on(async {
        let w = DbWorkDir::empty_on(&cluster, "bench").await;
        eprintln!("provisioning {n} bridge tenants ...");
        let started = Instant::now();
        let db = w.database();
        let ids: Vec<String> = (1..=n).map(|i| format!("bench-{i:04}")).collect();
        futures::stream::iter(ids.iter())
            .map(|id| {
                let spec = w.declare(id, Tier::Growth);
                let secret = w.secret(&spec);
                let db = &db;
                async move { db.provision(&spec, &secret).await.unwrap() }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        let provision_time = started.elapsed();
        let schemas: Vec<String> = ids.iter().map(|i| format!("tenant_{i}")).collect();
        let schemas_file = w.path().join("schemas.txt");
        std::fs::write(&schemas_file, schemas.join("\n") + "\n").unwrap();
        for (file, sql) in MIGRATIONS {
            w.write_migration(file, sql);
        }

        let files: String = MIGRATIONS
            .iter()
            .map(|(f, _)| format!(" -f {f}"))
            .collect();
        reset(&w, &schemas).await;
        eprintln!("psql loop ...");
        let t_psql = time_psql_loop(
            &w,
            &schemas_file,
            &format!(
                r#"psql -X -q -v ON_ERROR_STOP=1 --single-transaction -c "SET LOCAL search_path TO \"$s\""{files} > /dev/null"#
            ),
        );
        assert_eq!(count_tables(&w).await, n as i64);

        // Another build to compare with (e.g. the previous release), run the same way.
        let mut baseline = Vec::new();
        if let Ok(bin) = std::env::var("BENCH_BASELINE_BIN") {
            for parallelism in ["1", "8"] {
                reset(&w, &schemas).await;
                eprintln!("baseline {bin} db migrate --parallelism {parallelism} ...");
                let args = ["db", "migrate", "--parallelism", parallelism, "-q"];
                let took = time_binary(&w, &bin, &args);
                assert_eq!(count_tables(&w).await, n as i64);
                baseline.push((parallelism, took));
            }
        }

        let mut runs = Vec::new();
        for mode in ["migration", "target"] {
            for parallelism in ["1", "8"] {
                reset(&w, &schemas).await;
                eprintln!("tenantctl db migrate --tx-mode {mode} --parallelism {parallelism} ...");
                let args = [
                    "db",
                    "migrate",
                    "--tx-mode",
                    mode,
                    "--parallelism",
                    parallelism,
                    "-q",
                ];
                let took = time_tenantctl(&w, &args);
                assert_eq!(count_tables(&w).await, n as i64);
                runs.push((mode, parallelism, took));
            }
        }

        eprintln!("no-op reruns ...");
        let t_noop = time_tenantctl(&w, &["db", "migrate", "-q"]);
        let t_noop_seq = time_tenantctl(&w, &["db", "migrate", "--parallelism", "1", "-q"]);
        let t_psql_noop = time_psql_loop(
            &w,
            &schemas_file,
            r#"psql -X -q -At -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM \"$s\".schema_migrations" > /dev/null"#,
        );

        let migrations = n * MIGRATIONS.len();
        let vs = |d: Duration| format!("{:.1}x", t_psql.as_secs_f64() / d.as_secs_f64());
        println!();
        println!(
            "{n} bridge schemas x {} migrations = {migrations} migrations; {version}, fsync on, {cores} cores",
            MIGRATIONS.len()
        );
        println!("(provisioning {n} tenants beforehand: {})", secs(provision_time));
        println!();
        println!("{:<66} {:>10} {:>9}", "apply", "wall time", "vs psql");
        println!(
            "{:<66} {:>10} {:>9}",
            "psql loop, 1 psql per schema, 5 files in 1 txn, no ledger",
            secs(t_psql),
            "1.0x"
        );
        for (parallelism, took) in &baseline {
            println!(
                "{:<66} {:>10} {:>9}",
                format!("baseline build (BENCH_BASELINE_BIN) --parallelism {parallelism}"),
                secs(*took),
                vs(*took)
            );
        }
        for (mode, parallelism, took) in &runs {
            let what = match *mode {
                "migration" => "1 txn per migration",
                _ => "1 txn per target",
            };
            println!(
                "{:<66} {:>10} {:>9}",
                format!("tenantctl db migrate --tx-mode {mode} --parallelism {parallelism} ({what})"),
                secs(*took),
                vs(*took)
            );
        }
        println!();
        println!("{:<66} {:>10}", "no-op rerun (nothing pending)", "wall time");
        println!(
            "{:<66} {:>10}",
            format!("tenantctl db migrate (--parallelism {cores})"),
            secs(t_noop)
        );
        println!(
            "{:<66} {:>10}",
            "tenantctl db migrate --parallelism 1",
            secs(t_noop_seq)
        );
        println!(
            "{:<66} {:>10}",
            "psql loop reading each schema's ledger (1 psql per schema)",
            secs(t_psql_noop)
        );
    });
}
