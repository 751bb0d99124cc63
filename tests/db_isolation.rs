//! Tenant isolation on a real PostgreSQL, per tier, tried as the tenant with exactly what
//! its secret holds: tenant A cannot read, insert, update or move rows into tenant B,
//! whatever tenant context the application sets.

use tenantctl::db::{Database, MissingAdminUrl};
use tenantctl::report::CheckStatus;
use tenantctl::tenant::Tier;
use tokio_postgres::error::SqlState;

use crate::support::postgres::{DbWorkDir, as_tenant, connect_secret, try_connect};

fn insert_account(tenant: &str, email: &str) -> String {
    format!("INSERT INTO accounts (tenant_id, email, name) VALUES ('{tenant}', '{email}', 'n')")
}

const RLS_DENIED: SqlState = SqlState::INSUFFICIENT_PRIVILEGE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_tenant_cannot_touch_another_tenants_rows() {
    let w = DbWorkDir::current("iso_pool").await;
    let a = w.provision("iso-pa", Tier::Starter).await;
    let b = w.provision("iso-pb", Tier::Starter).await;
    let ca = connect_secret(&a).await;
    let cb = connect_secret(&b).await;

    assert_eq!(
        as_tenant(&cb, Some("iso-pb"), &insert_account("iso-pb", "b@x")).await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(&ca, Some("iso-pa"), &insert_account("iso-pa", "a@x")).await,
        Ok(1)
    );

    // A claims B's context: sees nothing, changes nothing, cannot write B's rows.
    for ctx in [Some("iso-pb"), None, Some("")] {
        assert_eq!(
            as_tenant(&ca, ctx, "SELECT count(*) FROM accounts").await,
            Ok(0),
            "{ctx:?}"
        );
        assert_eq!(
            as_tenant(&ca, ctx, "UPDATE accounts SET name = 'pwned'").await,
            Ok(0),
            "{ctx:?}"
        );
        assert_eq!(
            as_tenant(&ca, ctx, "DELETE FROM accounts").await,
            Ok(0),
            "{ctx:?}"
        );
        assert_eq!(
            as_tenant(&ca, ctx, &insert_account("iso-pb", "evil@x")).await,
            Err(RLS_DENIED),
            "{ctx:?}"
        );
        // Without its own context A cannot even write its own rows: the policy fails closed.
        assert_eq!(
            as_tenant(&ca, ctx, &insert_account("iso-pa", "a2@x")).await,
            Err(RLS_DENIED),
            "{ctx:?}"
        );
    }
    // With its own context: its row only, and it cannot move rows to B.
    assert_eq!(
        as_tenant(&ca, Some("iso-pa"), "SELECT count(*) FROM accounts").await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(
            &ca,
            Some("iso-pa"),
            "SELECT count(*) FROM accounts WHERE tenant_id = 'iso-pb'"
        )
        .await,
        Ok(0)
    );
    assert_eq!(
        as_tenant(
            &ca,
            Some("iso-pa"),
            "UPDATE accounts SET tenant_id = 'iso-pb'"
        )
        .await,
        Err(RLS_DENIED)
    );
    assert_eq!(
        as_tenant(&ca, Some("iso-pa"), &insert_account("iso-pb", "evil@x")).await,
        Err(RLS_DENIED)
    );
    // A session-wide setting is no better than a local one.
    ca.batch_execute("SET app.current_tenant = 'iso-pb'")
        .await
        .unwrap();
    assert_eq!(
        ca.query_one("SELECT count(*) FROM accounts", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    ca.batch_execute("RESET app.current_tenant").await.unwrap();
    // A cannot become B, switch RLS off, or read the ledger.
    for sql in [
        "SET ROLE \"tenant_iso-pb\"",
        "ALTER TABLE accounts DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON accounts",
        "SELECT count(*) FROM pool.schema_migrations",
    ] {
        let err = ca.batch_execute(sql).await.unwrap_err();
        assert!(
            err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // The foreign key includes tenant_id: A cannot attach a project to B's account.
    let b_account: i64 = {
        cb.batch_execute("BEGIN").await.unwrap();
        cb.execute(
            "SELECT set_config('app.current_tenant', 'iso-pb', true)",
            &[],
        )
        .await
        .unwrap();
        let id = cb
            .query_one("SELECT id FROM accounts", &[])
            .await
            .unwrap()
            .get(0);
        cb.batch_execute("COMMIT").await.unwrap();
        id
    };
    assert_eq!(
        as_tenant(
            &ca,
            Some("iso-pa"),
            &format!("INSERT INTO projects (tenant_id, owner_id, name) VALUES ('iso-pa', {b_account}, 'p')")
        )
        .await,
        Err(SqlState::FOREIGN_KEY_VIOLATION)
    );

    // B's row is untouched.
    assert_eq!(
        as_tenant(
            &cb,
            Some("iso-pb"),
            "SELECT count(*) FROM accounts WHERE name = 'n' AND email = 'b@x'"
        )
        .await,
        Ok(1)
    );
    // The runtime login is not the owner, not superuser, not BYPASSRLS.
    let admin = w.admin().await;
    let row = admin
        .query_one(
            "SELECT r.rolsuper, r.rolbypassrls, pg_get_userbyid(c.relowner) = r.rolname
             FROM pg_roles r, pg_class c
             WHERE r.rolname = 'tenant_iso-pa' AND c.oid = 'pool.accounts'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, false, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_tenant_cannot_touch_another_tenants_rows() {
    let w = DbWorkDir::current("iso_bridge").await;
    let a = w.provision("iso-ba", Tier::Growth).await;
    let b = w.provision("iso-bb", Tier::Growth).await;
    let ca = connect_secret(&a).await;
    let cb = connect_secret(&b).await;
    assert_eq!(
        as_tenant(&cb, Some("iso-bb"), &insert_account("iso-bb", "b@x")).await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(&ca, Some("iso-ba"), &insert_account("iso-ba", "a@x")).await,
        Ok(1)
    );

    for ctx in [Some("iso-bb"), None, Some("")] {
        // Unqualified names reach A's schema only: B's rows are not there.
        assert_eq!(
            as_tenant(
                &ca,
                ctx,
                "SELECT count(*) FROM accounts WHERE tenant_id = 'iso-bb'"
            )
            .await,
            Ok(0),
            "{ctx:?}"
        );
        // B's schema is closed to A, for reading and writing.
        for sql in [
            "SELECT count(*) FROM \"tenant_iso-bb\".accounts".to_string(),
            "UPDATE \"tenant_iso-bb\".accounts SET name = 'pwned'".to_string(),
            "INSERT INTO \"tenant_iso-bb\".accounts (tenant_id, email, name) VALUES ('iso-bb', 'e@x', 'n')".to_string(),
        ] {
            assert_eq!(as_tenant(&ca, ctx, &sql).await, Err(RLS_DENIED), "{ctx:?} {sql}");
        }
        // Rows in A's schema cannot claim to be B's.
        assert_eq!(
            as_tenant(&ca, ctx, "UPDATE accounts SET tenant_id = 'iso-bb'").await,
            Err(SqlState::CHECK_VIOLATION),
            "{ctx:?}"
        );
        assert_eq!(
            as_tenant(&ca, ctx, &insert_account("iso-bb", "evil@x")).await,
            Err(SqlState::CHECK_VIOLATION),
            "{ctx:?}"
        );
    }
    // Pointing search_path at B's schema does not help.
    ca.batch_execute("SET search_path = \"tenant_iso-bb\"")
        .await
        .unwrap();
    let err = ca
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    ca.batch_execute("RESET search_path").await.unwrap();
    // A cannot create objects in its own schema, nor drop its tables (the admin owns them).
    for sql in ["CREATE TABLE sneaky (x int)", "DROP TABLE projects"] {
        let err = ca.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        as_tenant(
            &cb,
            None,
            "SELECT count(*) FROM accounts WHERE email = 'b@x' AND name = 'n'"
        )
        .await,
        Ok(1)
    );
    // Nothing in the bridge schema is granted to PUBLIC.
    let admin = w.admin().await;
    let public: i64 = admin
        .query_one(
            "SELECT count(*) FROM (
                SELECT aclexplode(nspacl) a FROM pg_namespace WHERE nspname = 'tenant_iso-ba'
                UNION ALL
                SELECT aclexplode(relacl) FROM pg_class WHERE relnamespace = '\"tenant_iso-ba\"'::regnamespace
             ) x WHERE (x.a).grantee = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silo_tenant_cannot_touch_another_tenants_rows() {
    let w = DbWorkDir::current("iso_silo").await;
    let a = w.provision("iso-sa", Tier::Enterprise).await;
    let b = w.provision("iso-sb", Tier::Enterprise).await;
    let p = w.provision("iso-sp", Tier::Starter).await;
    let ca = connect_secret(&a).await;
    let cb = connect_secret(&b).await;
    let cp = connect_secret(&p).await;
    assert_eq!(
        as_tenant(&cb, Some("iso-sb"), &insert_account("iso-sb", "b@x")).await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(&cp, Some("iso-sp"), &insert_account("iso-sp", "p@x")).await,
        Ok(1)
    );

    // A's login cannot even connect to B's database.
    let mut into_b = a.clone();
    into_b.dbname = b.dbname.clone();
    let url = format!(
        "postgresql://{}:{}@{}:{}/{}",
        urlencoding::encode(&into_b.username),
        urlencoding::encode(&into_b.password),
        into_b.host,
        into_b.port,
        into_b.dbname
    );
    let Err(err) = try_connect(&url).await else {
        panic!("A must not connect to B's database");
    };
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    for ctx in [Some("iso-sb"), None, Some("")] {
        assert_eq!(
            as_tenant(&ca, ctx, "UPDATE accounts SET tenant_id = 'iso-sb'").await,
            Ok(0),
            "{ctx:?}: no rows yet"
        );
        assert_eq!(
            as_tenant(&ca, ctx, &insert_account("iso-sb", "evil@x")).await,
            Err(SqlState::CHECK_VIOLATION),
            "{ctx:?}"
        );
    }
    assert_eq!(
        as_tenant(&ca, None, &insert_account("iso-sa", "a@x")).await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(
            &ca,
            Some("iso-sa"),
            "UPDATE accounts SET tenant_id = 'iso-sb'"
        )
        .await,
        Err(SqlState::CHECK_VIOLATION)
    );

    // In the shared database (which allows connections), the pool is closed to a silo login.
    let mut into_shared = a.clone();
    into_shared.dbname = w.dbname.clone();
    let cs = connect_secret(&into_shared).await;
    for ctx in [Some("iso-sp"), None] {
        assert_eq!(
            as_tenant(&cs, ctx, "SELECT count(*) FROM pool.accounts").await,
            Err(RLS_DENIED)
        );
    }
    assert_eq!(
        as_tenant(&cb, None, "SELECT count(*) FROM accounts").await,
        Ok(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_never_leaks_a_previous_tenant_context() {
    let w = DbWorkDir::current("iso_reuse").await;
    let a = w.provision("iso-ra", Tier::Starter).await;
    let _b = w.provision("iso-rb", Tier::Starter).await;
    let ca = connect_secret(&a).await;
    assert_eq!(
        as_tenant(&ca, Some("iso-ra"), &insert_account("iso-ra", "a@x")).await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(&ca, Some("iso-ra"), "SELECT count(*) FROM accounts").await,
        Ok(1)
    );
    // The next transaction on the same connection starts without a context.
    assert_eq!(
        as_tenant(&ca, None, "SELECT count(*) FROM accounts").await,
        Ok(0)
    );
    let left: Option<String> = ca
        .query_one(
            "SELECT nullif(current_setting('app.current_tenant', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, None);
    // Also after a rolled-back transaction.
    ca.batch_execute("BEGIN; SELECT set_config('app.current_tenant', 'iso-ra', true); ROLLBACK;")
        .await
        .unwrap();
    assert_eq!(
        as_tenant(&ca, None, "SELECT count(*) FROM accounts").await,
        Ok(0)
    );

    // A pooler-style login that switches roles per transaction: tenant B's transaction
    // after tenant A's sees nothing of A, with no context or with A's context.
    let pooler = w.admin().await;
    let run = |role: &'static str, ctx: Option<&'static str>| {
        let pooler = &pooler;
        async move {
            pooler.batch_execute("BEGIN").await.unwrap();
            pooler
                .batch_execute(&format!("SET LOCAL ROLE \"{role}\""))
                .await
                .unwrap();
            if let Some(ctx) = ctx {
                pooler
                    .execute("SELECT set_config('app.current_tenant', $1, true)", &[&ctx])
                    .await
                    .unwrap();
            }
            let n: i64 = pooler
                .query_one("SELECT count(*) FROM pool.accounts", &[])
                .await
                .unwrap()
                .get(0);
            pooler.batch_execute("COMMIT").await.unwrap();
            n
        }
    };
    assert_eq!(run("tenant_iso-ra", Some("iso-ra")).await, 1);
    assert_eq!(run("tenant_iso-rb", None).await, 0);
    assert_eq!(run("tenant_iso-rb", Some("iso-ra")).await, 0);
    assert_eq!(run("tenant_iso-rb", Some("iso-rb")).await, 0);
    assert_eq!(run("tenant_iso-ra", None).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_bridge_table_errors_instead_of_falling_through_to_public() {
    let w = DbWorkDir::current("iso_drop").await;
    let a = w.provision("iso-da", Tier::Growth).await;
    let admin = w.admin().await;
    // A tempting table of the same name in public, readable by everyone.
    admin
        .batch_execute(
            "CREATE TABLE public.accounts (tenant_id text, email text, name text);
             INSERT INTO public.accounts VALUES ('iso-da', 'public@x', 'from public');
             GRANT ALL ON public.accounts TO PUBLIC;
             DROP TABLE \"tenant_iso-da\".accounts CASCADE;",
        )
        .await
        .unwrap();
    let ca = connect_secret(&a).await;
    let path: String = ca.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(path, "\"tenant_iso-da\"");
    let err = ca.query("SELECT * FROM accounts", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    let err = ca
        .execute(&insert_account("iso-da", "x@x"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    // The public row is untouched.
    let n: i64 = admin
        .query_one("SELECT count(*) FROM public.accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_verify_passes_and_catches_drift() {
    let w = DbWorkDir::current("iso_verify").await;
    let db = w.database();
    let tenants = [
        ("ver-p", Tier::Starter),
        ("ver-b", Tier::Growth),
        ("ver-s", Tier::Enterprise),
    ];
    let mut secrets = Vec::new();
    for (id, tier) in tenants {
        let spec = w.declare(id, tier);
        let secret = w.secret(&spec);
        db.provision(&spec, &secret).await.unwrap();
        // Rerun: nothing changes, nothing fails.
        db.provision(&spec, &secret).await.unwrap();
        secrets.push((spec, secret));
    }
    for (spec, secret) in &secrets {
        let checks = db.verify(spec, secret).await;
        let bad: Vec<_> = checks
            .iter()
            .filter(|c| c.status != CheckStatus::Pass)
            .collect();
        assert!(bad.is_empty(), "{}: {bad:#?}", spec.id);
        for name in [
            "db.secret.fields",
            "db.tenant.connect",
            "db.role.attributes",
            "db.migrations.latest",
        ] {
            assert!(
                checks.iter().any(|c| c.check == name),
                "{}: no {name}",
                spec.id
            );
        }
        // No check ever shows the password.
        let text = serde_json::to_string(&checks).unwrap();
        assert!(!text.contains(&secret.password));
    }

    // Drift, made behind tenantctl's back, is caught by name...
    let admin = w.admin().await;
    admin
        .batch_execute(
            "ALTER TABLE pool.accounts NO FORCE ROW LEVEL SECURITY;
             CREATE POLICY leak ON pool.projects USING (true);
             GRANT USAGE ON SCHEMA \"tenant_ver-b\" TO PUBLIC;
             ALTER ROLE \"tenant_ver-b\" SET search_path = \"tenant_ver-b\", public;
             ALTER ROLE \"tenant_ver-p\" BYPASSRLS;",
        )
        .await
        .unwrap();
    let failed = |checks: &[tenantctl::report::Check]| -> Vec<String> {
        checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.check.clone())
            .collect()
    };
    let pool = failed(&db.verify(&secrets[0].0, &secrets[0].1).await);
    for name in ["db.pool.rls_forced", "db.pool.policy", "db.role.attributes"] {
        assert!(pool.contains(&name.to_string()), "{name} not in {pool:?}");
    }
    let bridge = failed(&db.verify(&secrets[1].0, &secrets[1].1).await);
    for name in ["db.bridge.grants", "db.bridge.search_path"] {
        assert!(
            bridge.contains(&name.to_string()),
            "{name} not in {bridge:?}"
        );
    }
    // ...and a wrong password in the secret is an error naming the login, not the password.
    let mut wrong = secrets[1].1.clone();
    wrong.password = "definitely-not-it".into();
    let checks = db.verify(&secrets[1].0, &wrong).await;
    let connect = checks
        .iter()
        .find(|c| c.check == "db.tenant.connect")
        .unwrap();
    assert_eq!(connect.status, CheckStatus::Error);
    assert!(
        connect.actual.contains("tenant_ver-b"),
        "{}",
        connect.actual
    );
    assert!(!connect.actual.contains("definitely-not-it"));

    // Provisioning again repairs what it owns (the extra policy is someone else's).
    admin
        .batch_execute("DROP POLICY leak ON pool.projects")
        .await
        .unwrap();
    for (spec, secret) in &secrets {
        db.provision(spec, secret).await.unwrap();
        let bad: Vec<_> = db
            .verify(spec, secret)
            .await
            .into_iter()
            .filter(|c| c.status != CheckStatus::Pass)
            .collect();
        assert!(bad.is_empty(), "{}: {bad:#?}", spec.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovision_removes_rows_schema_database_and_role() {
    let w = DbWorkDir::current("iso_deprov").await;
    let db = w.database();
    let a = w.provision("dep-pa", Tier::Starter).await;
    let b = w.provision("dep-pb", Tier::Starter).await;
    let _g = w.provision("dep-g", Tier::Growth).await;
    let _s = w.provision("dep-s", Tier::Enterprise).await;
    for (s, id) in [(&a, "dep-pa"), (&b, "dep-pb")] {
        let c = connect_secret(s).await;
        assert_eq!(
            as_tenant(&c, Some(id), &insert_account(id, "x@x")).await,
            Ok(1)
        );
        let owner: i64 = {
            c.batch_execute("BEGIN").await.unwrap();
            c.execute("SELECT set_config('app.current_tenant', $1, true)", &[&id])
                .await
                .unwrap();
            let v = c
                .query_one("SELECT id FROM accounts", &[])
                .await
                .unwrap()
                .get(0);
            c.batch_execute("COMMIT").await.unwrap();
            v
        };
        assert_eq!(
            as_tenant(
                &c,
                Some(id),
                &format!(
                    "INSERT INTO projects (tenant_id, owner_id, name) VALUES ('{id}', {owner}, 'p')"
                )
            )
            .await,
            Ok(1)
        );
    }
    for id in ["dep-pa", "dep-g", "dep-s"] {
        let spec = w.declare(
            id,
            match id {
                "dep-pa" => Tier::Starter,
                "dep-g" => Tier::Growth,
                _ => Tier::Enterprise,
            },
        );
        db.deprovision(&spec).await.unwrap();
        // Idempotent.
        db.deprovision(&spec).await.unwrap();
    }
    let admin = w.admin().await;
    let q = |sql: &'static str| {
        let admin = &admin;
        async move { admin.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        q("SELECT count(*) FROM pool.accounts WHERE tenant_id = 'dep-pa'").await,
        0
    );
    assert_eq!(
        q("SELECT count(*) FROM pool.projects WHERE tenant_id = 'dep-pa'").await,
        0
    );
    assert_eq!(
        q("SELECT count(*) FROM pool.accounts WHERE tenant_id = 'dep-pb'").await,
        1
    );
    assert_eq!(
        q("SELECT count(*) FROM pool.projects WHERE tenant_id = 'dep-pb'").await,
        1
    );
    assert_eq!(
        q("SELECT count(*) FROM pg_roles WHERE rolname IN ('tenant_dep-pa', 'tenant_dep-g', 'tenant_dep-s')").await,
        0
    );
    assert_eq!(
        q("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_dep-g'").await,
        0
    );
    assert_eq!(
        q("SELECT count(*) FROM pg_database WHERE datname = 'tenant_dep-s'").await,
        0
    );
    // The remaining tenant still works.
    let cb = connect_secret(&b).await;
    assert_eq!(
        as_tenant(&cb, Some("dep-pb"), "SELECT count(*) FROM accounts").await,
        Ok(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_admin_credential_is_one_error_naming_the_variable() {
    let w = DbWorkDir::empty("iso_noenv").await;
    let mut cfg = w.config();
    cfg.database.admin_url_env = "TENANTCTL_TEST_NEVER_SET_ADMIN_URL".into();
    let err = Database::from_config(&cfg).unwrap_err();
    assert!(err.downcast_ref::<MissingAdminUrl>().is_some(), "{err:#}");
    let text = format!("{err:#}");
    assert!(
        text.contains("`TENANTCTL_TEST_NEVER_SET_ADMIN_URL` is not set"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_does_not_match_the_tier_is_refused_before_any_change() {
    let w = DbWorkDir::current("iso_badsecret").await;
    let db = w.database();
    let spec = w.declare("bad-s", Tier::Growth);
    let mut secret = w.secret(&spec);
    secret.username = "tenant_someone-else".into();
    let err = format!("{:#}", db.provision(&spec, &secret).await.unwrap_err());
    assert!(err.contains("expected `tenant_bad-s`"), "{err}");
    assert!(!err.contains(&secret.password), "{err}");
    let admin = w.admin().await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('tenant_bad-s', 'tenant_someone-else')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
