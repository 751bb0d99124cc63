//! The data hooks of each isolation model, on a real PostgreSQL: which tables hold the
//! tenant's rows (parents first), streaming exactly its rows out, loading them into
//! another model's target with identity values and sequences carried on, and freezing
//! its writes in a way its own session cannot undo (nor a reprovisioning).

use futures::{SinkExt, StreamExt};
use tenantctl::db::data::advance_sequences;
use tenantctl::db::{Database, DbSecret};
use tenantctl::isolation;
use tenantctl::tenant::Tier;
use tenantctl::workspace::TenantSpec;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::support::postgres::{DbWorkDir, connect_secret};

/// Runs `sql` as the tenant in a transaction with its context set (what the app does).
async fn as_tenant(c: &Client, tenant: &str, sql: &str) -> Result<i64, SqlState> {
    crate::support::postgres::as_tenant(c, Some(tenant), sql).await
}

async fn count_as_tenant(c: &Client, tenant: &str, table: &str) -> i64 {
    as_tenant(c, tenant, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap()
}

/// `accounts` rows and one project per account, as the tenant.
async fn seed(c: &Client, tenant: &str, accounts: usize) {
    for i in 0..accounts {
        as_tenant(
            c,
            tenant,
            &format!(
                "INSERT INTO accounts (tenant_id, email, name) VALUES ('{tenant}', 'u{i}@x', 'n{i}')"
            ),
        )
        .await
        .unwrap();
    }
    as_tenant(
        c,
        tenant,
        "INSERT INTO projects (tenant_id, owner_id, name) SELECT tenant_id, id, 'p' || id FROM accounts",
    )
    .await
    .unwrap();
}

async fn provision(w: &DbWorkDir, db: &Database, id: &str, tier: Tier) -> (TenantSpec, DbSecret) {
    let spec = w.declare(id, tier);
    let secret = w.secret(&spec);
    db.provision(&spec, &secret)
        .await
        .unwrap_or_else(|e| panic!("provision {id}: {e:#}"));
    (spec, secret)
}

/// Collects a tenant's rows of every table through the model's hooks.
async fn dump(db: &Database, spec: &TenantSpec) -> Vec<(String, Vec<u8>)> {
    let model = isolation::of(spec.tier);
    let target = model.target(db, spec, None).await.unwrap();
    let admin = db.connect_target(&target, "test dump").await.unwrap();
    let mut out = Vec::new();
    for table in model.tables(&admin, &target).await.unwrap() {
        let mut stream = Box::pin(model.copy_out(&admin, &spec.id, &table).await.unwrap());
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        out.push((table.name.clone(), bytes));
    }
    out
}

fn lines(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

/// Each model lists the tenant's tables parents-first and streams only its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_lists_and_streams_only_the_tenants_rows() {
    let w = DbWorkDir::new("hooks_list").await;
    let db = w.database();
    for (tier, me, neighbour) in [
        (Tier::Starter, "hk-pool", "hk-pool-n"),
        (Tier::Growth, "hk-bridge", "hk-bridge-n"),
        (Tier::Enterprise, "hk-silo", "hk-silo-n"),
    ] {
        let (spec, secret) = provision(&w, &db, me, tier).await;
        let (_, n_secret) = provision(&w, &db, neighbour, tier).await;
        seed(&connect_secret(&secret).await, me, 5).await;
        seed(&connect_secret(&n_secret).await, neighbour, 7).await;
        let tables = dump(&db, &spec).await;
        let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["accounts", "projects"], "{tier}: parents first");
        for (name, bytes) in &tables {
            assert_eq!(lines(bytes), 5, "{tier} {name}: exactly the tenant's rows");
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains(neighbour), "{tier} {name}: no neighbour row");
        }
    }
}

/// A frozen tenant can read but not write; a rerun of provisioning does not thaw it;
/// unfreezing restores writes. For every model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_freezes_writes_and_keeps_reads() {
    let w = DbWorkDir::new("hooks_freeze").await;
    let db = w.database();
    for (tier, id) in [
        (Tier::Starter, "fz-pool"),
        (Tier::Growth, "fz-bridge"),
        (Tier::Enterprise, "fz-silo"),
    ] {
        let (spec, secret) = provision(&w, &db, id, tier).await;
        let model = isolation::of(tier);
        let target = model.target(&db, &spec, None).await.unwrap();
        let admin = db.connect_target(&target, "test freeze").await.unwrap();
        seed(&connect_secret(&secret).await, id, 2).await;

        model.freeze(&admin, &target, &spec.id).await.unwrap();
        // The freeze ended the tenant's sessions: a new one sees the frozen state.
        let c = connect_secret(&secret).await;
        let insert =
            format!("INSERT INTO accounts (tenant_id, email, name) VALUES ('{id}', 'f@x', 'f')");
        assert_eq!(
            as_tenant(&c, id, &insert).await,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "{tier}: write while frozen"
        );
        assert_eq!(
            as_tenant(&c, id, "UPDATE accounts SET name = 'x'").await,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "{tier}: update while frozen"
        );
        assert_eq!(
            count_as_tenant(&c, id, "accounts").await,
            2,
            "{tier}: reads work"
        );
        // A session setting cannot lift it.
        assert!(
            c.batch_execute("SET ROLE NONE; SET default_transaction_read_only = off")
                .await
                .is_ok()
        );
        assert_eq!(
            as_tenant(&c, id, &insert).await,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "{tier}: still frozen after session settings"
        );
        // An apply reprovisions the tenant: it stays frozen.
        db.provision(&spec, &secret).await.unwrap();
        assert_eq!(
            as_tenant(&connect_secret(&secret).await, id, &insert).await,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "{tier}: reprovisioning must not thaw"
        );

        model.unfreeze(&admin, &target, &spec.id).await.unwrap();
        let c = connect_secret(&secret).await;
        assert_eq!(as_tenant(&c, id, &insert).await, Ok(1), "{tier}: unfrozen");
        assert_eq!(count_as_tenant(&c, id, "accounts").await, 3);
    }
}

/// Pool rows of a tenant streamed into its new bridge schema: same rows, same ids, and
/// the next insert takes a fresh id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stream_from_one_model_into_another_with_ids_carried_on() {
    let w = DbWorkDir::new("hooks_copy").await;
    let db = w.database();
    let (pool_spec, pool_secret) = provision(&w, &db, "cp-mover", Tier::Starter).await;
    let (_, n_secret) = provision(&w, &db, "cp-neighbour", Tier::Starter).await;
    seed(&connect_secret(&n_secret).await, "cp-neighbour", 3).await;
    seed(&connect_secret(&pool_secret).await, "cp-mover", 4).await;
    let before = dump(&db, &pool_spec).await;

    // The same tenant, provisioned in the bridge model beside its pool rows.
    let (bridge_spec, bridge_secret) = provision(&w, &db, "cp-mover", Tier::Growth).await;
    let source = isolation::of(Tier::Starter);
    let dest = isolation::of(Tier::Growth);
    let src_target = source.target(&db, &pool_spec, None).await.unwrap();
    let dst_target = dest.target(&db, &bridge_spec, None).await.unwrap();
    let src = db
        .connect_target(&src_target, "test copy out")
        .await
        .unwrap();
    let dst = db
        .connect_target(&dst_target, "test copy in")
        .await
        .unwrap();
    let src_tables = source.tables(&src, &src_target).await.unwrap();
    let dst_tables = dest.tables(&dst, &dst_target).await.unwrap();
    for (s, d) in src_tables.iter().zip(&dst_tables) {
        assert_eq!(s.name, d.name);
        let stream = source.copy_out(&src, &pool_spec.id, s).await.unwrap();
        let sink = dest.copy_in(&dst, d).await.unwrap();
        futures::pin_mut!(sink);
        let mut stream = Box::pin(stream);
        while let Some(chunk) = stream.next().await {
            sink.send(chunk.unwrap()).await.unwrap();
        }
        sink.as_mut().finish().await.unwrap();
        advance_sequences(&dst, d).await.unwrap();
    }
    assert_eq!(dump(&db, &bridge_spec).await, before, "same rows, same ids");
    let c = connect_secret(&bridge_secret).await;
    assert_eq!(
        as_tenant(
            &c,
            "cp-mover",
            "INSERT INTO accounts (tenant_id, email, name) VALUES ('cp-mover', 'new@x', 'new')"
        )
        .await,
        Ok(1),
        "the next identity value does not collide with a copied row"
    );
    assert_eq!(count_as_tenant(&c, "cp-mover", "accounts").await, 5);
}
