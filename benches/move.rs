//! `cargo bench --bench move`: moving one tenant with 1,000,000 rows over three tables
//! from the pool to a silo, tenantctl side by side with `pg_dump --data-only | psql`.
//!
//! Not a timed test: it prints wall-clock figures for the README. It starts its own
//! PostgreSQL (initdb + pg_ctl, default durability: fsync on) and stops it at the end;
//! the silo is a local dedicated database on the same server (`[database] local_silo`).
//! `BENCH_ROWS=100000 cargo bench --bench move` moves a smaller tenant (a tenth of the
//! rows are accounts, three tenths documents, six tenths tags).
//!
//! Setup (not measured): three tables as in `tests/moves.rs` (accounts; documents with
//! jsonb and bytea and a foreign key to accounts; tags with a foreign key to documents;
//! identity keys), a starter tenant `bench-mover` holding the rows and a starter
//! neighbour `bench-neighbour` with 10,000 rows in the same pool tables.
//!
//! tenantctl: the library's steps, as `tests/moves.rs` drives them: `prepare` (the silo
//! database, its schema, login and migrations), `freeze`, `copy` (COPY streaming in one
//! destination transaction, then per-table count and checksum on both sides), `cut_over`.
//! The write freeze runs from the start of `freeze` to the end of `cut_over`, when the
//! tenant can write again. `drop_source` (after the move) is not timed.
//!
//! Baseline: what an operator would run without tenantctl, `pg_dump --data-only` of the
//! three tables piped into `psql --single-transaction` loading a fresh database that has
//! the same three tables (same keys and foreign keys). pg_dump cannot select rows, and the
//! pool tables hold the neighbour's rows too, so dumping them would copy another tenant's
//! data into the silo: the baseline instead dumps a database prepared beforehand (not
//! measured) whose tables hold only the mover's rows, copied from the pool. That is the
//! baseline's best case: preparing such a copy would itself be part of a real move, as
//! would stopping the tenant's writes, pointing its login at the new database and hiding
//! the old rows, none of which the baseline does. Its tables keep the schema name `pool`
//! on both sides, so no rename is needed either. It writes to the destination the whole
//! time, so its write freeze is its whole duration. It checks nothing; the same count and
//! checksum queries tenantctl runs are timed after it as a separate line.
//!
//! Peak RSS: of the bench process (which runs the tenantctl library) after the tenantctl
//! run, and of the baseline's pipeline (the largest of bash, pg_dump and psql, through
//! GNU time's `%M` if `/usr/bin/time` exists). The server's memory is in neither.

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tenantctl::moves::db::{self as mv, Side};
use tenantctl::tenant::Tier;
use tokio_postgres::Client;

use postgres::{Cluster, DbWorkDir, SUPERUSER, SUPERUSER_PASSWORD};

/// The three tables, pool rules kept (tenant_id in every key).
const FIXTURE: &str = "
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    email text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE docs (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    account_id bigint NOT NULL,
    body jsonb NOT NULL,
    blob bytea,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);
CREATE TABLE tags (
    tenant_id text NOT NULL,
    doc_id bigint NOT NULL,
    tag text NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, tag),
    FOREIGN KEY (tenant_id, doc_id) REFERENCES docs (tenant_id, id)
);
";

/// Table and its columns in table order, parents first.
const TABLES: [(&str, &str); 3] = [
    ("accounts", "id, tenant_id, email"),
    ("docs", "id, tenant_id, account_id, body, blob"),
    ("tags", "tenant_id, doc_id, tag"),
];

const MOVER: &str = "bench-mover";
const NEIGHBOUR: &str = "bench-neighbour";
const NEIGHBOUR_ROWS: i64 = 10_000;
const BASE_SRC: &str = "bench_baseline_src";
const BASE_DST: &str = "bench_baseline_dst";

struct Stop<'a>(&'a Cluster);
impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn rate(rows: i64, d: Duration) -> String {
    let r = (rows as f64 / d.as_secs_f64()).round() as i64;
    thousands(r)
}

fn thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: i64) -> String {
    format!("{} MiB", (kib + 512) / 1024)
}

/// Peak resident set size of this process so far, in KiB: `VmHWM`, the high-water mark
/// of this process's own memory. (Not getrusage's `ru_maxrss`: it also keeps the peak of
/// what ran before the exec, here cargo.)
fn self_max_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs a bash script with the cluster's admin connection in the environment; returns
/// its wall time and, when GNU time is installed, the peak RSS (KiB) of the largest
/// process in it. (Not `wait4` on our own child: a child forked from this process starts
/// with this process's peak RSS, which would hide the script's.)
fn run_bash(cluster: &Cluster, script: &str) -> (Duration, Option<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let rss = dir.path().join("rss");
    let gnu_time = std::path::Path::new("/usr/bin/time");
    let mut cmd = if gnu_time.exists() {
        let mut c = Command::new(gnu_time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss).arg("bash");
        c
    } else {
        Command::new("bash")
    };
    let started = Instant::now();
    let out = cmd
        .arg("-c")
        .arg(format!("set -eo pipefail\n{script}"))
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", SUPERUSER)
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("bash");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "bash failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = std::fs::read_to_string(&rss)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    (took, peak)
}

/// Count and checksum of `schema.table`'s rows with `filter`: the query tenantctl's
/// copy verification runs on each side.
async fn fingerprint(
    c: &Client,
    schema: &str,
    table: &str,
    cols: &str,
    filter: &str,
) -> (i64, String) {
    let row = c
        .query_one(
            &format!(
                "SELECT count(*), COALESCE(sum(('x' || substr(md5(ROW({cols})::text), 1, 15))::bit(60)::bigint), 0)::text
                 FROM \"{schema}\".{table}{filter}"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `accounts` accounts of `tenant`, three documents each, two tags per document.
async fn seed(admin: &Client, tenant: &str, accounts: i64) {
    admin
        .batch_execute(&format!(
            "INSERT INTO pool.accounts (tenant_id, email)
             SELECT '{tenant}', 'user' || g || '@example.com' FROM generate_series(1, {accounts}) g;
             INSERT INTO pool.docs (tenant_id, account_id, body, blob)
             SELECT '{tenant}', a.id,
                    jsonb_build_object('n', a.id, 'k', d, 'title', 'document ' || d || ' of ' || a.email, 'q', 'it''s \"quoted\"'),
                    decode(lpad(to_hex(a.id), 8, '0') || '00ff0a0d5c', 'hex')
             FROM pool.accounts a, generate_series(1, 3) d WHERE a.tenant_id = '{tenant}';
             INSERT INTO pool.tags (tenant_id, doc_id, tag)
             SELECT '{tenant}', d.id, 'tag-' || g FROM pool.docs d, generate_series(1, 2) g
             WHERE d.tenant_id = '{tenant}';"
        ))
        .await
        .unwrap();
}

/// VACUUM ANALYZE (one statement per call: VACUUM refuses a transaction) and a checkpoint,
/// so no run pays for the writes before it.
async fn settle(c: &Client) {
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    c.batch_execute("CHECKPOINT").await.unwrap();
}

struct Step {
    name: &'static str,
    took: Duration,
}

fn main() {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let accounts = (rows / 10).max(1);
    let rows = accounts * 10;
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
    let version = Command::new("pg_dump")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    rt.block_on(async {
        let w = DbWorkDir::empty_on(&cluster, "bench").await;
        w.write_migration("0001_move_bench.sql", FIXTURE);
        let db = w.database();
        eprintln!("provisioning {MOVER} and {NEIGHBOUR} (starter, the pool) ...");
        for id in [NEIGHBOUR, MOVER] {
            w.provision(id, Tier::Starter).await;
        }
        eprintln!("seeding {NEIGHBOUR} with {NEIGHBOUR_ROWS} rows and {MOVER} with {rows} rows ...");
        let started = Instant::now();
        let admin = w.admin().await;
        seed(&admin, NEIGHBOUR, NEIGHBOUR_ROWS / 10).await;
        seed(&admin, MOVER, accounts).await;
        let seed_time = started.elapsed();
        let mover_filter = format!(" WHERE tenant_id = '{MOVER}'");
        let mut expected = Vec::new();
        for (t, cols) in TABLES {
            expected.push(fingerprint(&admin, "pool", t, cols, &mover_filter).await);
        }
        assert_eq!(
            expected.iter().map(|e| e.0).sum::<i64>(),
            rows,
            "seeded rows"
        );

        // The baseline's source: a database whose tables hold only the mover's rows (so
        // pg_dump copies no neighbour's rows), and its empty destination.
        eprintln!("preparing the baseline's source and destination databases ...");
        let postgres_db = cluster.admin("postgres").await;
        let ddl = format!("CREATE SCHEMA pool; SET search_path TO pool; {FIXTURE}");
        for name in [BASE_SRC, BASE_DST] {
            postgres_db
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            cluster.admin(name).await.batch_execute(&ddl).await.unwrap();
        }
        let fill: String = TABLES
            .iter()
            .map(|(t, cols)| {
                format!(
                    "psql -X -q -d {shared} -c \"COPY (SELECT {cols} FROM pool.{t} WHERE tenant_id = '{MOVER}') TO STDOUT\" \
                     | psql -X -q -v ON_ERROR_STOP=1 -d {BASE_SRC} -c \"COPY pool.{t} ({cols}) FROM STDIN\"\n",
                    shared = w.dbname
                )
            })
            .collect();
        run_bash(&cluster, &fill);
        let base_src = cluster.admin(BASE_SRC).await;
        // Sequences past the copied keys, as they are in the pool: pg_dump carries them.
        base_src
            .batch_execute(
                "SELECT setval(pg_get_serial_sequence('pool.accounts', 'id'), max(id)) FROM pool.accounts;
                 SELECT setval(pg_get_serial_sequence('pool.docs', 'id'), max(id)) FROM pool.docs;",
            )
            .await
            .unwrap();
        for (i, (t, cols)) in TABLES.iter().enumerate() {
            assert_eq!(
                fingerprint(&base_src, "pool", t, cols, "").await,
                expected[i],
                "the baseline's source holds the mover's rows"
            );
        }
        settle(&base_src).await;
        settle(&admin).await;

        // tenantctl: pool -> silo.
        eprintln!("tenantctl: moving {MOVER} pool -> silo ...");
        let rss_before = self_max_rss_kib();
        let id = tenantctl::tenant::TenantId::parse(MOVER).unwrap();
        let mut steps = Vec::new();
        let started = Instant::now();
        let source = Side::of(&db, &id, Tier::Starter, None).await.unwrap();
        let dest = Side::of(&db, &id, Tier::Enterprise, None).await.unwrap();
        mv::prepare(&db, &source, &dest).await.unwrap();
        steps.push(Step {
            name: "prepare (silo database, login, migrations)",
            took: started.elapsed(),
        });
        let frozen = Instant::now();
        mv::freeze(&db, &source).await.unwrap();
        steps.push(Step {
            name: "freeze",
            took: frozen.elapsed(),
        });
        let copy_start = Instant::now();
        let last_table: Mutex<Option<Instant>> = Mutex::new(None);
        let copied = mv::copy(&db, &source, &dest, &|_, _| {
            *last_table.lock().unwrap() = Some(Instant::now());
        })
        .await
        .unwrap();
        let copy_end = Instant::now();
        let streamed = last_table.lock().unwrap().expect("tables copied");
        steps.push(Step {
            name: "copy (COPY streaming into one transaction)",
            took: streamed - copy_start,
        });
        steps.push(Step {
            name: "commit + verify (count and checksum per table, both sides)",
            took: copy_end - streamed,
        });
        let secret = w.secret(&w.declare(MOVER, Tier::Enterprise));
        let cut = Instant::now();
        mv::cut_over(&db, &source, &dest, &secret).await.unwrap();
        let end = Instant::now();
        steps.push(Step {
            name: "cut-over",
            took: end - cut,
        });
        let t_total = end - started;
        let t_freeze = end - frozen;
        let rss_tenantctl = self_max_rss_kib();
        for (i, c) in copied.iter().enumerate() {
            assert_eq!(c.table, TABLES[i].0);
            assert_eq!((c.rows, c.checksum.clone()), expected[i], "{}", c.table);
        }
        let silo = postgres::connect(&cluster.admin_url(&id.db_name())).await;
        for (i, (t, cols)) in TABLES.iter().enumerate() {
            assert_eq!(
                fingerprint(&silo, &id.db_schema(), t, cols, "").await,
                expected[i],
                "the silo holds the mover's rows"
            );
        }
        settle(&silo).await;
        settle(&admin).await;

        // Baseline: pg_dump --data-only | psql.
        eprintln!("baseline: pg_dump --data-only | psql ...");
        let (t_base, rss_base) = run_bash(
            &cluster,
            &format!(
                "pg_dump --data-only -t pool.accounts -t pool.docs -t pool.tags -d {BASE_SRC} \
                 | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d {BASE_DST} > /dev/null"
            ),
        );
        let base_dst = cluster.admin(BASE_DST).await;
        let verified = Instant::now();
        for (i, (t, cols)) in TABLES.iter().enumerate() {
            let s = fingerprint(&base_src, "pool", t, cols, "").await;
            let d = fingerprint(&base_dst, "pool", t, cols, "").await;
            assert_eq!(s, d, "baseline: {t}");
            assert_eq!(s, expected[i], "baseline: {t}");
        }
        let t_base_verify = verified.elapsed();

        let rows_s = thousands(rows);
        println!();
        println!(
            "moving {MOVER}: {rows_s} rows ({} accounts, {} docs, {} tags), pool -> silo; \
             neighbour in the pool: {} rows; {version}, fsync on, {cores} cores",
            thousands(accounts),
            thousands(accounts * 3),
            thousands(accounts * 6),
            thousands(NEIGHBOUR_ROWS)
        );
        println!("(seeding beforehand: {})", secs(seed_time));
        println!();
        println!(
            "{:<52} {:>10} {:>10} {:>13} {:>10} {:>9}",
            "method", "rows", "total", "write freeze", "rows/s", "peak RSS"
        );
        println!(
            "{:<52} {:>10} {:>10} {:>13} {:>10} {:>9}",
            "tenantctl (prepare, freeze, copy + verify, cut-over)",
            rows_s,
            secs(t_total),
            secs(t_freeze),
            rate(rows, t_total),
            mib(rss_tenantctl)
        );
        println!(
            "{:<52} {:>10} {:>10} {:>13} {:>10} {:>9}",
            "pg_dump --data-only | psql --single-transaction",
            rows_s,
            secs(t_base),
            secs(t_base),
            rate(rows, t_base),
            rss_base.map(mib).unwrap_or_else(|| "n/a".into())
        );
        println!(
            "{:<52} {:>10} {:>10} {:>13} {:>10} {:>9}",
            "  + the same count and checksum queries afterwards",
            rows_s,
            secs(t_base + t_base_verify),
            secs(t_base + t_base_verify),
            rate(rows, t_base + t_base_verify),
            ""
        );
        println!();
        println!("tenantctl by step:");
        for s in &steps {
            println!("  {:<62} {:>10}", s.name, secs(s.took));
        }
        println!("  (bench process peak RSS before the move: {})", mib(rss_before));
        println!("baseline verification alone: {}", secs(t_base_verify));

        println!();
        println!("Markdown:");
        println!();
        println!("| method | rows | total | write freeze | rows/s | peak RSS |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| `tenantctl` (prepare, freeze, copy, verify, cut-over) | {rows_s} | {} | {} | {} | {} |",
            secs(t_total),
            secs(t_freeze),
            rate(rows, t_total),
            mib(rss_tenantctl)
        );
        println!(
            "| baseline: `pg_dump --data-only \\| psql --single-transaction`, no checks | {rows_s} | {} | {} | {} | {} |",
            secs(t_base),
            secs(t_base),
            rate(rows, t_base),
            rss_base.map(mib).unwrap_or_else(|| "n/a".into())
        );
        println!(
            "| baseline + the same count and checksum queries | {rows_s} | {} | {} | {} | |",
            secs(t_base + t_base_verify),
            secs(t_base + t_base_verify),
            rate(rows, t_base + t_base_verify)
        );
        println!();
        println!(
            "tenantctl by step: {}",
            steps
                .iter()
                .map(|s| format!("{} {}", s.name, secs(s.took)))
                .collect::<Vec<_>>()
                .join("; ")
        );
    });
}
