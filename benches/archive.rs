//! `cargo bench --bench archive`: `tenantctl export --to DIR` and `tenantctl import
//! --from DIR` of one growth (bridge) tenant holding 1,000,000 rows, side by side with
//! `pg_dump -Fc --data-only` and `pg_restore --data-only --single-transaction` of the same
//! schema: wall time, peak memory (maximum RSS of the process, from `/usr/bin/time -v`,
//! or getrusage's RUSAGE_CHILDREN without it) and output size.
//!
//! Not a timed test: it prints figures for the README. It starts its own PostgreSQL
//! (initdb + pg_ctl, default durability) and stops it at the end. The same runs at a
//! tenth of the size first show whether tenantctl's memory grows with the tenant (it
//! should not: everything streams). `BENCH_ROWS=200000` runs a smaller tenant;
//! `BENCH_TENANTCTL_BIN=target/release/tenantctl cargo test --bench archive` measures a
//! given binary with a quickly built harness.
//!
//! The two sides do not do the same work, and the table says so: pg_dump copies the
//! tables as they lie; `tenantctl export` reads them in one snapshot ordered by all
//! columns (a deterministic file), counts and checksums every row and writes a manifest;
//! `tenantctl import` reads every file twice (its SHA-256 before writing anything, then
//! the load), rewrites `tenant_id` when the id differs, and reads every table back to
//! compare counts and checksums before it commits. pg_restore checks nothing.

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tenantctl::tenant::Tier;

use postgres::{Cluster, DbWorkDir, SUPERUSER, SUPERUSER_PASSWORD};

const FIXTURE: &str = "
CREATE TABLE ar_accounts (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    email text NOT NULL,
    joined timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE ar_docs (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    account_id bigint NOT NULL,
    body jsonb NOT NULL,
    blob bytea,
    note text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES ar_accounts (tenant_id, id)
);
CREATE TABLE ar_tags (
    tenant_id text NOT NULL,
    doc_id bigint NOT NULL,
    tag text NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, tag),
    FOREIGN KEY (tenant_id, doc_id) REFERENCES ar_docs (tenant_id, id)
);
";

const SRC: &str = "bench-src";

struct Stop<'a>(&'a Cluster);
impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Wall time and peak RSS (KiB) of one command.
struct Measured {
    wall: Duration,
    peak_kib: u64,
}

/// Runs `program args` in `dir` with `env`, under `/usr/bin/time -v` when it exists.
fn measure(program: &str, args: &[&str], dir: &Path, env: &[(&str, String)]) -> Measured {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).current_dir(dir).env("CI", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let peak_kib = if gnu_time {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    } else {
        // The largest child so far: runs go from the smallest to the largest.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
        usage.ru_maxrss as u64
    };
    Measured { wall, peak_kib }
}

fn dir_size(p: &Path) -> u64 {
    if p.is_file() {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

/// Grows the tenant to `accounts` accounts, 3 docs each, 2 tags per doc (10 rows per
/// account).
async fn seed(admin: &tokio_postgres::Client, schema: &str, from: i64, accounts: i64) {
    let s = format!("\"{schema}\"");
    admin
        .batch_execute(&format!(
            "INSERT INTO {s}.ar_accounts (tenant_id, email, joined)
             SELECT '{SRC}', 'user' || g || '@example.com', timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
             FROM generate_series({from} + 1, {accounts}) g;
             INSERT INTO {s}.ar_docs (tenant_id, account_id, body, blob, note)
             SELECT '{SRC}', a.id,
                    jsonb_build_object('n', a.id, 'kind', d, 'title', 'Document ' || a.id || '-' || d, 'tags', jsonb_build_array('a', 'b')),
                    decode(md5(a.id::text || '-' || d), 'hex'),
                    CASE WHEN d = 1 THEN 'first, \"quoted\"' END
             FROM {s}.ar_accounts a, generate_series(1, 3) d WHERE a.id > {from};
             INSERT INTO {s}.ar_tags (tenant_id, doc_id, tag)
             SELECT '{SRC}', d.id, 'tag-' || t FROM {s}.ar_docs d, generate_series(1, 2) t
             WHERE d.account_id > {from};"
        ))
        .await
        .unwrap();
    // One statement each: VACUUM cannot run in the implicit transaction of a batch.
    for t in ["ar_accounts", "ar_docs", "ar_tags"] {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {s}.{t}"))
            .await
            .unwrap();
    }
    admin.batch_execute("CHECKPOINT").await.unwrap();
}

fn main() {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let accounts = (rows / 10).max(10);
    let small = (accounts / 10).max(1);
    // Another build can be measured (say a release binary while this harness runs as a
    // quick debug build: `cargo test --bench archive`).
    let bin = std::env::var("BENCH_TENANTCTL_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tenantctl").to_string());
    let bin = bin.as_str();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("starting PostgreSQL (default durability) ...");
    let cluster = Cluster::start(&[]);
    let _stop = Stop(&cluster);

    rt.block_on(async {
        let w = DbWorkDir::empty_on(&cluster, "archbench").await;
        w.write_migration("0001_archive_fixture.sql", FIXTURE);
        for (id, tier) in [
            (SRC, Tier::Growth),
            ("bench-dst-small", Tier::Growth),
            ("bench-dst", Tier::Growth),
        ] {
            w.provision(id, tier).await;
        }
        let schema = format!("tenant_{SRC}");
        let admin = w.admin().await;
        let pg_env = vec![
            ("PGHOST", "127.0.0.1".to_string()),
            ("PGPORT", w.port.to_string()),
            ("PGUSER", SUPERUSER.to_string()),
            ("PGPASSWORD", SUPERUSER_PASSWORD.to_string()),
        ];
        let tenantctl_env = vec![("TENANTCTL_DATABASE_URL", w.admin_url())];
        let out = w.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut table: Vec<[String; 5]> = Vec::new();
        let mut row = |run: String, rows: i64, m: &Measured, size: String| {
            eprintln!(
                "{run}: {:.2} s, {} KiB",
                m.wall.as_secs_f64(),
                m.peak_kib
            );
            table.push([
                run,
                rows.to_string(),
                format!("{:.2} s", m.wall.as_secs_f64()),
                format!("{:.0} MiB", m.peak_kib as f64 / 1024.0),
                size,
            ]);
        };

        for (size, dst) in [(small, "bench-dst-small"), (accounts, "bench-dst")] {
            let from = if size == small { 0 } else { small };
            eprintln!("seeding {} rows ...", size * 10);
            seed(&admin, &schema, from, size).await;
            let n = size * 10;
            let dir = out.join(format!("export-{n}"));
            let dir_s = dir.display().to_string();
            let m = measure(bin, &["export", SRC, "--to", &dir_s, "-q"], w.path(), &tenantctl_env);
            row("tenantctl export --to DIR".into(), n, &m, mib(dir_size(&dir)));
            admin.batch_execute("CHECKPOINT").await.unwrap();
            let m = measure(
                bin,
                &["import", dst, "--from", &dir_s, "-q"],
                w.path(),
                &tenantctl_env,
            );
            row("tenantctl import --from DIR".into(), n, &m, "-".into());

            // The same data with PostgreSQL's tools: the schema's data, custom format
            // (compressed), restored into an empty copy of the schema in another database.
            let restore_db = cluster.create_database(&format!("restore{n}")).await;
            let ddl = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "pg_dump --schema-only -n '\"{schema}\"' {db} | psql -X -q -v ON_ERROR_STOP=1 {restore_db} > /dev/null",
                    db = w.dbname
                ))
                .envs(pg_env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            assert!(ddl.status.success(), "{}", String::from_utf8_lossy(&ddl.stderr));
            let dump = out.join(format!("dump-{n}.pgdump"));
            let dump_s = dump.display().to_string();
            let schema_arg = format!("\"{schema}\"");
            let m = measure(
                "pg_dump",
                &["-Fc", "--data-only", "-n", &schema_arg, "-f", &dump_s, &w.dbname],
                w.path(),
                &pg_env,
            );
            row("pg_dump -Fc --data-only -n SCHEMA".into(), n, &m, mib(dir_size(&dump)));
            admin.batch_execute("CHECKPOINT").await.unwrap();
            let m = measure(
                "pg_restore",
                &["--data-only", "--single-transaction", "-d", &restore_db, &dump_s],
                w.path(),
                &pg_env,
            );
            row("pg_restore --data-only --single-transaction".into(), n, &m, "-".into());
        }

        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let build = match std::env::var("BENCH_TENANTCTL_BIN") {
            Ok(b) => format!("tenantctl: {b}"),
            Err(_) if cfg!(debug_assertions) => {
                "debug build: run `cargo bench` for release figures".to_string()
            }
            Err(_) => "release build".to_string(),
        };
        println!(
            "\nexport/import of one bridge tenant ({cores} cores, PostgreSQL with default durability, {build})\n"
        );
        println!("| run | rows | wall time | peak memory (max RSS) | output |");
        println!("|---|---:|---:|---:|---:|");
        for r in &table {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    });
}
