//! Moving a tenant's data between isolation models, step by step on a real PostgreSQL:
//! every direction between pool, bridge and silo, with neighbours on both sides; the
//! freeze, the verified copy, the cut-over, the retained source hidden, the finish; a
//! corrupted copy stopping the move; a rerun after an interrupted copy; a rollback that
//! brings back rows written after the cut-over.

use tenantctl::db::{Database, DbSecret, Location};
use tenantctl::moves::db::{self as mv, CopyMismatch, Side};
use tenantctl::tenant::{TenantId, Tier};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::support::postgres::{DbWorkDir, connect_secret, try_connect_secret};

/// Three tables, tenant-scoped keys, a foreign key chain, identity, jsonb and bytea.
const FIXTURE: &str = "
CREATE TABLE mv_accounts (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    email text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE mv_docs (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    account_id bigint NOT NULL,
    body jsonb NOT NULL,
    blob bytea,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES mv_accounts (tenant_id, id)
);
CREATE TABLE mv_tags (
    tenant_id text NOT NULL,
    doc_id bigint NOT NULL,
    tag text NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, tag),
    FOREIGN KEY (tenant_id, doc_id) REFERENCES mv_docs (tenant_id, id)
);
";

const TABLES: [&str; 3] = ["mv_accounts", "mv_docs", "mv_tags"];

async fn workdir(label: &str) -> DbWorkDir {
    let w = DbWorkDir::empty(label).await;
    w.write_migration("0001_move_fixture.sql", FIXTURE);
    w
}

/// Runs `sql` as the tenant in a transaction with its context set (what the app does).
async fn as_tenant(c: &Client, tenant: &str, sql: &str) -> Result<i64, SqlState> {
    crate::support::postgres::as_tenant(c, Some(tenant), sql).await
}

/// What the tenant sees: per table, the count and an md5 of all rows in key order.
async fn seen(c: &Client, tenant: &str) -> Result<Vec<(i64, String)>, SqlState> {
    let mut out = Vec::new();
    for t in TABLES {
        c.batch_execute("BEGIN").await.unwrap();
        let res = async {
            c.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant])
                .await?;
            c.query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {t} x"
                ),
                &[],
            )
            .await
        }
        .await;
        let _ = c.batch_execute("COMMIT").await;
        match res {
            Ok(row) => out.push((row.get(0), row.get(1))),
            Err(e) => return Err(e.code().cloned().unwrap_or_else(|| panic!("{e}"))),
        }
    }
    Ok(out)
}

/// A few thousand rows: accounts, two docs each (jsonb, bytea with every byte value),
/// three tags per doc.
async fn seed(c: &Client, tenant: &str, accounts: i64) {
    as_tenant(
        c,
        tenant,
        &format!(
            "INSERT INTO mv_accounts (tenant_id, email) SELECT '{tenant}', 'u' || g || '@x' FROM generate_series(1, {accounts}) g"
        ),
    )
    .await
    .unwrap();
    as_tenant(
        c,
        tenant,
        &format!(
            "INSERT INTO mv_docs (tenant_id, account_id, body, blob)
             SELECT '{tenant}', a.id, jsonb_build_object('n', a.id, 'k', d, 'q', 'it''s \"quoted\"\n'), decode(lpad(to_hex(a.id), 8, '0') || '00ff0a0d5c', 'hex')
             FROM mv_accounts a, generate_series(1, 2) d"
        ),
    )
    .await
    .unwrap();
    as_tenant(
        c,
        tenant,
        &format!(
            "INSERT INTO mv_tags (tenant_id, doc_id, tag) SELECT '{tenant}', d.id, 't' || g FROM mv_docs d, generate_series(1, 3) g"
        ),
    )
    .await
    .unwrap();
}

struct Tenant {
    id: TenantId,
    tier: Tier,
    secret: DbSecret,
}

async fn provision(w: &DbWorkDir, db: &Database, id: &str, tier: Tier) -> Tenant {
    let spec = w.declare(id, tier);
    let secret = w.secret(&spec);
    db.provision(&spec, &secret)
        .await
        .unwrap_or_else(|e| panic!("provision {id}: {e:#}"));
    Tenant {
        id: spec.id,
        tier,
        secret,
    }
}

/// The whole protocol for one tenant, from its tier to `to`; returns the new secret.
async fn move_tenant(w: &DbWorkDir, db: &Database, t: &Tenant, to: Tier) -> DbSecret {
    let source = Side::of(db, &t.id, t.tier, None).await.unwrap();
    let dest = Side::of(db, &t.id, to, None).await.unwrap();
    mv::prepare(db, &source, &dest).await.unwrap();
    mv::freeze(db, &source).await.unwrap();
    mv::copy(db, &source, &dest, &|_, _| {}).await.unwrap();
    let secret = w.secret(&w.declare(t.id.as_str(), to));
    mv::cut_over(db, &source, &dest, &secret).await.unwrap();
    secret
}

async fn one_direction(from: Tier, to: Tier, label: &str) {
    let w = workdir(label).await;
    let db = w.database();
    let mover = provision(&w, &db, &format!("{label}-m"), from).await;
    // Neighbours where the tenant comes from and where it goes.
    let n_from = provision(&w, &db, &format!("{label}-nf"), from).await;
    let n_to = provision(&w, &db, &format!("{label}-nt"), to).await;
    for (t, n) in [(&n_from, 40), (&n_to, 30), (&mover, 500)] {
        seed(&connect_secret(&t.secret).await, t.id.as_str(), n).await;
    }
    let id = mover.id.as_str();
    let before = seen(&connect_secret(&mover.secret).await, id)
        .await
        .unwrap();
    assert_eq!(before[0].0, 500);
    assert_eq!(before[2].0, 3000, "a few thousand rows");
    let neighbours = [
        seen(&connect_secret(&n_from.secret).await, n_from.id.as_str())
            .await
            .unwrap(),
        seen(&connect_secret(&n_to.secret).await, n_to.id.as_str())
            .await
            .unwrap(),
    ];

    let source = Side::of(&db, &mover.id, from, None).await.unwrap();
    let dest = Side::of(&db, &mover.id, to, None).await.unwrap();
    mv::prepare(&db, &source, &dest).await.unwrap();
    mv::freeze(&db, &source).await.unwrap();
    // Frozen: reads work, writes fail.
    let c = connect_secret(&mover.secret).await;
    assert_eq!(
        seen(&c, id).await.unwrap(),
        before,
        "{label}: reads while frozen"
    );
    assert_eq!(
        as_tenant(
            &c,
            id,
            &format!("INSERT INTO mv_accounts (tenant_id, email) VALUES ('{id}', 'late@x')")
        )
        .await,
        Err(SqlState::INSUFFICIENT_PRIVILEGE),
        "{label}: a write while frozen fails"
    );
    let copied = mv::copy(&db, &source, &dest, &|_, _| {}).await.unwrap();
    // A rerun of the copy (an interrupted move resumed) neither loses nor duplicates.
    let again = mv::copy(&db, &source, &dest, &|_, _| {}).await.unwrap();
    assert_eq!(copied, again, "{label}: rerun of the copy");
    assert_eq!(
        copied.iter().map(|c| c.rows).collect::<Vec<_>>(),
        [500, 1000, 3000]
    );
    let new_secret = w.secret(&w.declare(id, to));
    mv::cut_over(&db, &source, &dest, &new_secret)
        .await
        .unwrap();
    // Cut over twice is harmless (a rerun after an interrupt).
    mv::cut_over(&db, &source, &dest, &new_secret)
        .await
        .unwrap();

    // The tenant's own login, through its new secret: exactly its rows, writable.
    let c = connect_secret(&new_secret).await;
    assert_eq!(
        seen(&c, id).await.unwrap(),
        before,
        "{label}: same rows after the move"
    );
    assert_eq!(
        as_tenant(
            &c,
            id,
            &format!("INSERT INTO mv_accounts (tenant_id, email) VALUES ('{id}', 'new@x')")
        )
        .await,
        Ok(1),
        "{label}: a new insert works (identity carried on)"
    );
    // Neighbours untouched.
    assert_eq!(
        seen(&connect_secret(&n_from.secret).await, n_from.id.as_str())
            .await
            .unwrap(),
        neighbours[0],
        "{label}: source neighbour"
    );
    assert_eq!(
        seen(&connect_secret(&n_to.secret).await, n_to.id.as_str())
            .await
            .unwrap(),
        neighbours[1],
        "{label}: destination neighbour"
    );
    // Verify passes on the destination.
    let spec = w.declare(id, to);
    let checks = db.verify(&spec, &new_secret).await;
    let failing: Vec<_> = checks
        .iter()
        .filter(|c| c.status != tenantctl::report::CheckStatus::Pass)
        .collect();
    assert!(
        failing.is_empty(),
        "{label}: verify after the move: {failing:#?}"
    );

    // The retained source still holds the rows, hidden from the tenant.
    let admin = db.connect_target(&source.target, "test").await.unwrap();
    let filter = source
        .model
        .row_filter(&mover.id)
        .map(|f| format!(" WHERE {f}"))
        .unwrap_or_default();
    let retained: i64 = admin
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".mv_accounts{filter}",
                source.target.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(retained, 500, "{label}: source retained");
    if mv::same_server(&db, &source.target, &dest.target) {
        // The tenant's new login, on the source's database, with its own context set.
        let mut probe = new_secret.clone();
        probe.dbname = match &source.target.location {
            Location::Silo(ep) => ep.dbname().to_string(),
            _ => w.dbname.clone(),
        };
        let hidden = match try_connect_secret(&probe).await {
            Ok(pc) => {
                as_tenant(
                    &pc,
                    id,
                    &format!("SELECT 1 FROM \"{}\".mv_accounts", source.target.schema),
                )
                .await
            }
            // Not even allowed to connect: hidden too.
            Err(_) => Err(SqlState::INSUFFICIENT_PRIVILEGE),
        };
        assert_eq!(
            hidden,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "{label}: the retained source is hidden from the tenant"
        );
    }

    // Finish: the source is gone, the destination intact.
    mv::drop_source(&db, &source, &dest).await.unwrap();
    mv::drop_source(&db, &source, &dest).await.unwrap();
    assert_eq!(
        seen(&c, id).await.unwrap()[0].0,
        501,
        "{label}: destination after finish"
    );
    let gone = db.connect_target(&source.target, "test").await;
    if let Ok(admin) = gone {
        let left: i64 = admin
            .query_one(
                &format!(
                    "SELECT CASE WHEN to_regclass('\"{s}\".mv_accounts') IS NULL THEN 0 ELSE (SELECT count(*) FROM \"{s}\".mv_accounts{filter}) END",
                    s = source.target.schema
                ),
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        assert_eq!(left, 0, "{label}: source rows gone after finish");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_to_bridge() {
    one_direction(Tier::Starter, Tier::Growth, "mv-pb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_to_pool() {
    one_direction(Tier::Growth, Tier::Starter, "mv-bp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_to_silo() {
    one_direction(Tier::Starter, Tier::Enterprise, "mv-ps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silo_to_pool() {
    one_direction(Tier::Enterprise, Tier::Starter, "mv-sp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_to_silo() {
    one_direction(Tier::Growth, Tier::Enterprise, "mv-bs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silo_to_bridge() {
    one_direction(Tier::Enterprise, Tier::Growth, "mv-sb").await;
}

/// A difference between source and copy (here a trigger on the destination corrupting
/// one row) stops the move: a typed error naming the table, the source still holds the
/// rows and takes writes again once unfrozen, the destination is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_copy_stops_the_move_and_the_source_stays_authoritative() {
    let w = workdir("mv-bad").await;
    let db = w.database();
    let mover = provision(&w, &db, "mv-bad-m", Tier::Growth).await;
    seed(&connect_secret(&mover.secret).await, "mv-bad-m", 50).await;
    let before = seen(&connect_secret(&mover.secret).await, "mv-bad-m")
        .await
        .unwrap();
    let source = Side::of(&db, &mover.id, Tier::Growth, None).await.unwrap();
    let dest = Side::of(&db, &mover.id, Tier::Starter, None).await.unwrap();
    mv::prepare(&db, &source, &dest).await.unwrap();
    let admin = db.connect_target(&dest.target, "test").await.unwrap();
    admin
        .batch_execute(
            "CREATE FUNCTION pool.corrupt() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.tenant_id = 'mv-bad-m' AND NEW.email = 'u7@x' THEN NEW.email := 'evil@x'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER corrupt BEFORE INSERT ON pool.mv_accounts FOR EACH ROW EXECUTE FUNCTION pool.corrupt();",
        )
        .await
        .unwrap();
    mv::freeze(&db, &source).await.unwrap();
    let err = mv::copy(&db, &source, &dest, &|_, _| {}).await.unwrap_err();
    let mismatch = err
        .downcast_ref::<CopyMismatch>()
        .unwrap_or_else(|| panic!("not a CopyMismatch: {err:#}"));
    assert_eq!(mismatch.tables.len(), 1, "{err:#}");
    assert!(mismatch.tables[0].contains("mv_accounts"), "{err:#}");
    mv::clear_destination(&db, &source, &dest).await.unwrap();
    mv::unfreeze(&db, &source).await.unwrap();
    let c = connect_secret(&mover.secret).await;
    assert_eq!(seen(&c, "mv-bad-m").await.unwrap(), before);
    assert_eq!(
        as_tenant(
            &c,
            "mv-bad-m",
            "INSERT INTO mv_accounts (tenant_id, email) VALUES ('mv-bad-m', 'ok@x')"
        )
        .await,
        Ok(1),
        "writable again"
    );
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pool.mv_accounts WHERE tenant_id = 'mv-bad-m'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "nothing of the failed copy stays in the pool");
}

/// Moving back before the finish brings the rows written on the destination too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_brings_back_rows_written_after_the_cut_over() {
    let w = workdir("mv-rb").await;
    let db = w.database();
    let mover = provision(&w, &db, "mv-rb-m", Tier::Starter).await;
    seed(&connect_secret(&mover.secret).await, "mv-rb-m", 20).await;
    let secret = move_tenant(&w, &db, &mover, Tier::Enterprise).await;
    let c = connect_secret(&secret).await;
    as_tenant(
        &c,
        "mv-rb-m",
        "INSERT INTO mv_accounts (tenant_id, email) VALUES ('mv-rb-m', 'after@x')",
    )
    .await
    .unwrap();
    let on_silo = seen(&c, "mv-rb-m").await.unwrap();
    assert_eq!(on_silo[0].0, 21);
    let moved = Tenant {
        id: mover.id.clone(),
        tier: Tier::Enterprise,
        secret,
    };
    let back = move_tenant(&w, &db, &moved, Tier::Starter).await;
    let c = connect_secret(&back).await;
    assert_eq!(
        seen(&c, "mv-rb-m").await.unwrap(),
        on_silo,
        "rows written after the cut-over came back"
    );
}
