//! Tier changes end to end on moto + Terraform + PostgreSQL: all six directions between
//! starter (pool), growth (bridge) and enterprise (silo), each with a few thousand rows
//! over four tables (foreign keys, identity, jsonb, bytea) and neighbours of every tier
//! in the same database. After a move the tenant's own login sees exactly its rows, the
//! neighbours are untouched, a new insert works, `verify` passes and the retained source
//! is invisible; after `--finish` the source is gone. Along the way: a write during the
//! freeze fails while reads work, SIGINT during the copy and during the cut-over followed
//! by a rerun that finishes, a checksum mismatch that stops the move with the source
//! writable, `--rollback` bringing rows written on the target back, `plan` and `list`
//! showing a move, and a fleet apply where one tenant's move is blocked and the other's
//! is not.

use std::process::Stdio;
use std::sync::OnceLock;

use serde_json::Value;
use tenantctl::db::DbSecret;
use tokio_postgres::error::SqlState;

use crate::support::postgres::{self, as_tenant, try_connect_secret};
use crate::support::{Run, Workdir, start_paused, unique};

/// The fixture beside the repository's migrations: a third level of foreign key with
/// jsonb and bytea, keyed by tenant as pool tables must be.
const FIXTURE: (&str, &str) = (
    "0004_documents.sql",
    "CREATE TABLE documents (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    project_id bigint NOT NULL,
    body jsonb NOT NULL,
    blob bytea,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE
);
",
);

const TABLES: [&str; 3] = ["accounts", "projects", "documents"];

/// The database every move test shares, so pools and clusters have neighbours.
fn moves_database() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| rt().block_on(postgres::cluster().create_database("moves")))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn workdir() -> Workdir {
    Workdir::new().with_database_named(moves_database(), &[FIXTURE])
}

fn secret(ws: &Workdir, id: &str) -> DbSecret {
    let s = ws
        .aws(&[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            &format!("tenants/{id}/db"),
        ])
        .unwrap();
    serde_json::from_str(s["SecretString"].as_str().unwrap()).unwrap()
}

async fn login(ws: &Workdir, id: &str) -> tokio_postgres::Client {
    postgres::connect_secret(&secret(ws, id)).await
}

/// A few thousand rows: accounts, two projects each, three documents per project with
/// jsonb (quotes, newlines) and bytea (every byte value class).
async fn seed(ws: &Workdir, id: &str, accounts: i64) {
    let c = login(ws, id).await;
    for sql in [
        format!(
            "INSERT INTO accounts (tenant_id, email, name) SELECT '{id}', 'u' || g || '@x', 'User ' || g FROM generate_series(1, {accounts}) g"
        ),
        format!(
            "INSERT INTO projects (tenant_id, owner_id, name) SELECT '{id}', a.id, 'p' || a.id || '-' || k FROM accounts a, generate_series(1, 2) k"
        ),
        format!(
            "INSERT INTO documents (tenant_id, project_id, body, blob)
             SELECT '{id}', p.id, jsonb_build_object('p', p.id, 'k', k, 'q', 'it''s \"quoted\"\n'),
                    decode(lpad(to_hex(p.id), 8, '0') || '00ff0a0d5c' || lpad(to_hex(k), 2, '0'), 'hex')
             FROM projects p, generate_series(1, 3) k"
        ),
    ] {
        as_tenant(&c, Some(id), &sql)
            .await
            .unwrap_or_else(|e| panic!("seed {id}: {e:?}\n{sql}"));
    }
}

/// What the tenant sees through its own login: per table, the count and an md5 of all
/// rows in a fixed order.
async fn seen(ws: &Workdir, id: &str) -> Vec<(i64, String)> {
    let c = login(ws, id).await;
    let mut out = Vec::new();
    for t in TABLES {
        c.batch_execute("BEGIN").await.unwrap();
        c.execute("SELECT set_config('app.current_tenant', $1, true)", &[&id])
            .await
            .unwrap();
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {t} x"
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{id} reads {t}: {e}"));
        c.batch_execute("COMMIT").await.unwrap();
        out.push((row.get(0), row.get(1)));
    }
    out
}

async fn insert_account(ws: &Workdir, id: &str, email: &str) -> Result<i64, SqlState> {
    let c = login(ws, id).await;
    as_tenant(
        &c,
        Some(id),
        &format!(
            "INSERT INTO accounts (tenant_id, email, name) VALUES ('{id}', '{email}', 'late')"
        ),
    )
    .await
}

/// The tenant's own schema and dedicated database name: `tenant_<id>`, hyphens kept.
fn pg_name(id: &str) -> String {
    format!("tenant_{id}")
}

/// What the tenant's login can read of a place it no longer owns: nothing, because it is
/// refused (a permission error, or no connection to a dedicated database at all).
async fn hidden_from_tenant(ws: &Workdir, id: &str, tier: &str) {
    let mut s = secret(ws, id);
    let name = pg_name(id);
    let (table, dbname) = match tier {
        "starter" => ("pool.accounts".to_string(), moves_database().to_string()),
        "growth" => (format!("\"{name}\".accounts"), moves_database().to_string()),
        _ => (format!("\"{name}\".accounts"), name.clone()),
    };
    s.dbname = dbname;
    let Ok(c) = try_connect_secret(&s).await else {
        return; // refused at the door
    };
    let r = as_tenant(&c, Some(id), &format!("SELECT count(*) FROM {table}")).await;
    assert_eq!(
        r,
        Err(SqlState::INSUFFICIENT_PRIVILEGE),
        "{id}: the retained {tier} source ({table} in {}) must be refused to the tenant",
        s.dbname
    );
}

/// Rows of the tenant left in its old place, counted as the admin (-1: the place is gone).
async fn left_in_source(id: &str, tier: &str) -> i64 {
    let pg = postgres::cluster();
    let name = pg_name(id);
    match tier {
        "starter" => {
            let c = pg.admin(moves_database()).await;
            c.query_one(
                "SELECT count(*) FROM pool.accounts WHERE tenant_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
        }
        "growth" => {
            let c = pg.admin(moves_database()).await;
            let exists: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            if !exists {
                return -1;
            }
            c.query_one(&format!("SELECT count(*) FROM \"{name}\".accounts"), &[])
                .await
                .unwrap()
                .get(0)
        }
        _ => {
            let c = pg.admin("postgres").await;
            let exists: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            if !exists {
                return -1;
            }
            let c = pg.admin(&name).await;
            c.query_one(&format!("SELECT count(*) FROM \"{name}\".accounts"), &[])
                .await
                .unwrap()
                .get(0)
        }
    }
}

fn rds_exists(ws: &Workdir, id: &str) -> bool {
    ws.aws(&[
        "rds",
        "describe-db-instances",
        "--db-instance-identifier",
        &format!("tenant-{id}"),
    ])
    .is_ok()
}

fn journal(ws: &Workdir, id: &str) -> Value {
    let p = ws.path().join(format!(".tenantctl/records/{id}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["moving"].clone()
}

/// One tenant of every tier, seeded once, never written again: every move must leave
/// them exactly as they were.
struct Neighbours {
    ws: Workdir,
    ids: Vec<String>,
    seen: Vec<Vec<(i64, String)>>,
}

fn neighbours() -> &'static Neighbours {
    static N: OnceLock<Neighbours> = OnceLock::new();
    N.get_or_init(|| {
        let ws = workdir();
        let tiers = ["starter", "growth", "enterprise"];
        let ids: Vec<String> = tiers
            .iter()
            .map(|tier| unique(&format!("nb-{}", &tier[..3])))
            .collect();
        // Added side by side: every move test waits for its neighbours first.
        std::thread::scope(|s| {
            for (id, tier) in ids.iter().zip(tiers) {
                let ws = &ws;
                s.spawn(move || {
                    ws.tenantctl(&["add", id, "--tier", tier]).assert_code(0);
                    rt().block_on(seed(ws, id, 40));
                });
            }
        });
        let seen = ids.iter().map(|id| rt().block_on(seen(&ws, id))).collect();
        Neighbours { ws, ids, seen }
    })
}

fn assert_neighbours_untouched() {
    let n = neighbours();
    for (id, before) in n.ids.iter().zip(&n.seen) {
        assert_eq!(
            &rt().block_on(seen(&n.ws, id)),
            before,
            "neighbour {id} changed"
        );
    }
}

/// A tenant of tier `from` with 300 accounts (600 projects, 1800 documents).
fn mover(ws: &Workdir, label: &str, from: &str) -> (String, Vec<(i64, String)>) {
    let id = unique(label);
    // The mover is added while the neighbours are (or the first test adds them).
    std::thread::scope(|s| {
        s.spawn(neighbours);
        ws.tenantctl(&["add", &id, "--tier", from]).assert_code(0);
    });
    rt().block_on(seed(ws, &id, 300));
    let before = rt().block_on(seen(ws, &id));
    assert_eq!(
        before.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [300, 600, 1800]
    );
    (id, before)
}

/// Everything true after a cut-over, then `--finish` and everything true after it.
fn after_cut_over_and_finish(
    ws: &Workdir,
    id: &str,
    from: &str,
    to: &str,
    before: &[(i64, String)],
) {
    let rt = rt();
    assert_eq!(
        rt.block_on(seen(ws, id)),
        before,
        "{id}: rows after the move"
    );
    assert_eq!(journal(ws, id)["step"], "cut-over", "{id}: journal");
    rt.block_on(hidden_from_tenant(ws, id, from));
    assert!(
        rt.block_on(left_in_source(id, from)) > 0,
        "{id}: the source is retained"
    );
    ws.tenantctl(&["verify", id]).assert_code(0);
    let list = ws.tenantctl(&["--output", "json", "list"]);
    list.assert_code(0);
    let rows: Value = serde_json::from_str(&list.stdout()).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(row["state"], "moved, source retained", "{}", list.dump());
    assert_eq!(row["move"]["from"], from);
    // A new row gets a fresh id: identity carried on.
    assert_eq!(
        rt.block_on(insert_account(ws, id, "new@x")),
        Ok(1),
        "{id}: insert after move"
    );

    let fin = ws.tenantctl(&["--output", "json", "move", id, "--finish"]);
    fin.assert_code(0);
    let out: Value = serde_json::from_str(&fin.stdout()).unwrap();
    assert_eq!(out["move"]["state"], "finished", "{}", fin.dump());
    assert_eq!(journal(ws, id), Value::Null, "{id}: journal gone");
    let left = rt.block_on(left_in_source(id, from));
    assert!(left <= 0, "{id}: {left} rows left in the {from} source");
    if from == "enterprise" {
        assert!(
            !rds_exists(ws, id),
            "{id}: the retained RDS instance is gone"
        );
    }
    if to == "enterprise" {
        assert!(
            rds_exists(ws, id),
            "{id}: the tenant's own RDS instance stays"
        );
    }
    let after: Vec<i64> = rt.block_on(seen(ws, id)).iter().map(|(n, _)| *n).collect();
    assert_eq!(after, [301, 600, 1800], "{id}: rows after finish");
    ws.tenantctl(&["verify", id]).assert_code(0);
    assert_neighbours_untouched();
}

/// Starts `args`, waits until stderr says the move paused at `point`, runs `during`
/// while it is paused, sends SIGINT and returns the finished run.
fn interrupt_at(ws: &Workdir, args: &[&str], point: &str, during: impl FnOnce()) -> Run {
    let (child, reader) = start_paused(ws, args, point, Stdio::piped());
    during();
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    Run {
        cmd: format!("tenantctl {}", args.join(" ")),
        cwd: ws.path().to_path_buf(),
        out: std::process::Output {
            status: out.status,
            stdout: out.stdout,
            stderr: stderr.into_bytes(),
        },
    }
}

#[test]
fn starter_to_growth_survives_sigint_during_the_copy() {
    let ws = workdir();
    let (id, before) = mover(&ws, "mv-sg", "starter");
    let run = interrupt_at(&ws, &["move", &id, "--tier", "growth"], "copy", || {
        // Frozen: reads work, writes fail, enforced by the database.
        let rt = rt();
        assert_eq!(rt.block_on(seen(&ws, &id)), before, "reads while frozen");
        let w = rt.block_on(insert_account(&ws, &id, "frozen@x"));
        assert_eq!(
            w,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "a write while frozen"
        );
    });
    assert_eq!(run.code(), 130, "{}", run.dump());
    assert_eq!(journal(&ws, &id)["step"], "frozen", "{}", run.dump());
    // The copy's transaction rolled back: nothing half-copied is visible anywhere.
    let rerun = ws.tenantctl(&["apply", &id]);
    rerun.assert_code(0);
    assert!(
        rerun
            .stderr()
            .contains("moved starter (pool) → growth (bridge): 3 tables, 2700 rows verified"),
        "{}",
        rerun.dump()
    );
    after_cut_over_and_finish(&ws, &id, "starter", "growth", &before);
}

#[test]
fn growth_to_starter_by_editing_the_file_survives_sigint_during_the_cut_over() {
    let ws = workdir();
    let (id, before) = mover(&ws, "mv-gs", "growth");
    // The old behaviour is gone: editing the tier and applying moves the data.
    let file = ws.path().join(format!("tenants/{id}.toml"));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("tier = \"growth\"", "tier = \"starter\""),
    )
    .unwrap();
    let run = interrupt_at(&ws, &["apply", &id], "cutover", || {});
    assert_eq!(run.code(), 130, "{}", run.dump());
    assert_eq!(journal(&ws, &id)["step"], "copied", "{}", run.dump());
    let rerun = ws.tenantctl(&["--output", "json", "apply", &id]);
    rerun.assert_code(0);
    let out: Value = serde_json::from_str(&rerun.stdout()).unwrap();
    let m = &out["tenants"][0]["move"];
    assert_eq!(m["state"], "cut-over", "{}", rerun.dump());
    assert_eq!(m["from_isolation"], "bridge");
    assert_eq!(m["to_isolation"], "pool");
    let rows: Vec<i64> = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_i64().unwrap())
        .collect();
    assert_eq!(rows, [300, 600, 1800], "{}", rerun.dump());
    after_cut_over_and_finish(&ws, &id, "growth", "starter", &before);
}

#[test]
fn starter_to_enterprise_and_rollback_brings_new_rows_back() {
    let ws = workdir();
    let (id, before) = mover(&ws, "mv-se", "starter");
    let run = ws.tenantctl(&["move", &id, "--tier", "enterprise"]);
    run.assert_code(0);
    assert!(rds_exists(&ws, &id));
    let rt = rt();
    assert_eq!(rt.block_on(seen(&ws, &id)), before);
    rt.block_on(hidden_from_tenant(&ws, &id, "starter"));
    // Written on the target, then the tenant goes back.
    assert_eq!(rt.block_on(insert_account(&ws, &id, "on-silo@x")), Ok(1));
    let back = ws.tenantctl(&["--output", "json", "move", &id, "--rollback"]);
    back.assert_code(0);
    let out: Value = serde_json::from_str(&back.stdout()).unwrap();
    assert_eq!(out["move"]["rollback"], true, "{}", back.dump());
    assert_eq!(out["tier"], "starter");
    let text = std::fs::read_to_string(ws.path().join(format!("tenants/{id}.toml"))).unwrap();
    assert!(text.contains("tier = \"starter\""), "{text}");
    let now: Vec<i64> = rt
        .block_on(seen(&ws, &id))
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        now,
        [301, 600, 1800],
        "the row written on the silo came back"
    );
    // The silo is now the retained source; finishing deletes it and its RDS instance.
    let fin = ws.tenantctl(&["move", &id, "--finish"]);
    fin.assert_code(0);
    assert!(!rds_exists(&ws, &id), "{}", fin.dump());
    assert_eq!(rt.block_on(left_in_source(&id, "enterprise")), -1);
    ws.tenantctl(&["verify", &id]).assert_code(0);
    assert_neighbours_untouched();
}

#[test]
fn enterprise_to_starter_stops_on_a_checksum_mismatch_then_moves() {
    let ws = workdir();
    let (id, before) = mover(&ws, "mv-es", "enterprise");
    let rt = rt();
    // A trigger on the destination alters this tenant's rows as they are copied in.
    let admin = rt.block_on(postgres::cluster().admin(moves_database()));
    let trig = format!("corrupt_{}", id.replace('-', "_"));
    rt.block_on(admin.batch_execute(&format!(
        "CREATE SCHEMA {trig};
         CREATE FUNCTION {trig}.f() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN NEW.body := NEW.body || '{{\"corrupted\": true}}'; RETURN NEW; END $$;
         CREATE TRIGGER {trig} BEFORE INSERT ON pool.documents FOR EACH ROW
           WHEN (NEW.tenant_id = '{id}') EXECUTE FUNCTION {trig}.f();"
    )))
    .unwrap();
    let failed = ws.tenantctl(&["move", &id, "--tier", "starter"]);
    rt.block_on(admin.batch_execute(&format!(
        "DROP TRIGGER {trig} ON pool.documents; DROP SCHEMA {trig} CASCADE;"
    )))
    .unwrap();
    failed.assert_code(1);
    assert!(
        failed
            .stderr()
            .contains("differs from its source in `documents`")
            && failed
                .stderr()
                .contains("stays on enterprise (silo), writable"),
        "{}",
        failed.dump()
    );
    assert_eq!(journal(&ws, &id)["step"], "prepared");
    // The source is authoritative and writable; nothing of the copy stayed in the pool.
    assert_eq!(rt.block_on(seen(&ws, &id)), before);
    assert_eq!(rt.block_on(left_in_source(&id, "starter")), 0);
    assert_eq!(rt.block_on(insert_account(&ws, &id, "still-silo@x")), Ok(1));
    let before = rt.block_on(seen(&ws, &id));
    let run = ws.tenantctl(&["apply", &id]);
    run.assert_code(0);
    let before_rows: Vec<(i64, String)> = before;
    after_cut_over_and_finish_from(&ws, &id, "enterprise", "starter", &before_rows, 302);
}

/// [`after_cut_over_and_finish`] for a tenant with `accounts` accounts.
fn after_cut_over_and_finish_from(
    ws: &Workdir,
    id: &str,
    from: &str,
    to: &str,
    before: &[(i64, String)],
    accounts_after: i64,
) {
    let rt = rt();
    assert_eq!(
        rt.block_on(seen(ws, id)),
        before,
        "{id}: rows after the move"
    );
    rt.block_on(hidden_from_tenant(ws, id, from));
    ws.tenantctl(&["verify", id]).assert_code(0);
    assert_eq!(rt.block_on(insert_account(ws, id, "new@x")), Ok(1));
    ws.tenantctl(&["move", id, "--finish"]).assert_code(0);
    assert!(rt.block_on(left_in_source(id, from)) <= 0);
    if from == "enterprise" && to != "enterprise" {
        assert!(
            !rds_exists(ws, id),
            "{id}: the retained RDS instance is gone"
        );
    }
    let n: Vec<i64> = rt.block_on(seen(ws, id)).iter().map(|(n, _)| *n).collect();
    assert_eq!(n[0], accounts_after);
    assert_neighbours_untouched();
}

#[test]
fn growth_to_enterprise_is_planned_then_moved() {
    let ws = workdir();
    let (id, before) = mover(&ws, "mv-ge", "growth");
    let file = ws.path().join(format!("tenants/{id}.toml"));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("growth", "enterprise")).unwrap();
    let plan = ws.tenantctl(&["--output", "json", "plan", &id]);
    plan.assert_code(2);
    let out: Value = serde_json::from_str(&plan.stdout()).unwrap();
    let m = &out["tenants"][0]["move"];
    assert_eq!(m["state"], "planned", "{}", plan.dump());
    assert_eq!(
        (m["from_isolation"].as_str(), m["to_isolation"].as_str()),
        (Some("bridge"), Some("silo"))
    );
    assert_eq!(m["rows"], 2700, "{}", plan.dump());
    let human = ws.tenantctl(&["plan", &id]);
    assert!(
        human
            .stdout()
            .contains("move growth (bridge) → enterprise (silo): 3 tables, 2700 rows to copy"),
        "{}",
        human.dump()
    );
    assert_eq!(journal(&ws, &id), Value::Null, "plan wrote no journal");
    ws.tenantctl(&["apply", &id]).assert_code(0);
    after_cut_over_and_finish(&ws, &id, "growth", "enterprise", &before);
}

#[test]
fn enterprise_to_growth_in_a_fleet_where_another_move_is_blocked() {
    let ws = workdir();
    let (a, a_before) = mover(&ws, "mv-eg", "enterprise");
    let (b, _) = mover(&ws, "mv-eg-b", "enterprise");
    for id in [&a, &b] {
        let file = ws.path().join(format!("tenants/{id}.toml"));
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("enterprise", "growth")).unwrap();
    }
    // Another run is moving `b`: its move lock is held.
    let rt = rt();
    let holder = rt.block_on(postgres::cluster().admin(moves_database()));
    rt.block_on(holder.execute(
        "SELECT pg_advisory_lock(hashtextextended($1, 0))",
        &[&format!("tenantctl move {b}")],
    ))
    .unwrap();
    let run = ws.tenantctl(&["--parallelism", "2", "--output", "json", "apply", &a, &b]);
    // Every failure was a held lock: exit 4, retryable.
    run.assert_code(4);
    let out: Value = serde_json::from_str(&run.stdout()).unwrap();
    let by_id = |id: &str| {
        out["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&a)["status"], "changed", "{}", run.dump());
    assert_eq!(by_id(&a)["move"]["state"], "cut-over");
    assert_eq!(by_id(&b)["status"], "failed");
    assert!(
        by_id(&b)["error"]
            .as_str()
            .unwrap()
            .contains("is moving tenant")
    );
    drop(holder);
    // The blocked tenant was never touched; the rerun moves it.
    assert_eq!(journal(&ws, &b), Value::Null);
    ws.tenantctl(&["apply", &b]).assert_code(0);
    assert_eq!(journal(&ws, &b)["step"], "cut-over");
    after_cut_over_and_finish(&ws, &a, "enterprise", "growth", &a_before);
}
