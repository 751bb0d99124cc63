//! The pool's safety rules beyond row-level security (`db::sql::pool_rule`): a migration
//! that breaks one is refused on the pool, naming the object and the rule, and nothing of
//! it is applied; `verify` checks each rule; and the attacks they close fail as a tenant
//! login: probing or squatting another tenant's ids with `OVERRIDING SYSTEM VALUE`, and
//! reading the shared sequence.

use serde_json::Value;
use tenantctl::report::{Check, CheckStatus};
use tenantctl::tenant::Tier;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::support::postgres::{DbWorkDir, cluster, connect, connect_secret, show};

/// In a transaction with the tenant context `ctx`: `sql`'s first column as i64 (a query)
/// or the rows it affected, or the SQLSTATE it failed with.
async fn as_tenant(c: &Client, ctx: &str, sql: &str) -> Result<i64, SqlState> {
    crate::support::postgres::as_tenant(c, Some(ctx), sql).await
}

fn insert_account(tenant: &str, email: &str) -> String {
    format!("INSERT INTO accounts (tenant_id, email, name) VALUES ('{tenant}', '{email}', 'n')")
}

fn insert_with_id(id: i64, tenant: &str, email: &str) -> String {
    format!(
        "INSERT INTO accounts (id, tenant_id, email, name) OVERRIDING SYSTEM VALUE VALUES ({id}, '{tenant}', '{email}', 'n')"
    )
}

const DENIED: SqlState = SqlState::INSUFFICIENT_PRIVILEGE;

async fn scalar_i64(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn exists(c: &Client, sql: &str) -> bool {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

fn failing(checks: &[Check]) -> Vec<&Check> {
    checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .collect()
}

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pool_rule_refuses_a_migration_naming_the_object_and_applies_nothing() {
    let w = DbWorkDir::current("rules_refuse").await;
    w.provision("ru-a", Tier::Starter).await;
    let admin = w.admin().await;
    // (file, SQL, what the error names, whether the object exists afterwards)
    let cases: [(&str, &str, &[&str], &str); 7] = [
        (
            "0004_global_unique.sql",
            "ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE (email);\n",
            &[
                "pool rule \"keys\"",
                "unique constraint accounts_email_key of table pool.accounts is on (email), without tenant_id",
                "hint: in the pool, every primary key",
            ],
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'accounts_email_key')",
        ),
        (
            "0004_unique_index.sql",
            "CREATE UNIQUE INDEX accounts_lower_name ON accounts (lower(name));\n",
            &[
                "pool rule \"keys\"",
                "unique index accounts_lower_name of table pool.accounts is on (lower(name))",
            ],
            "SELECT to_regclass('pool.accounts_lower_name') IS NOT NULL",
        ),
        (
            "0004_notes.sql",
            "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY, tenant_id text NOT NULL, slug text NOT NULL, PRIMARY KEY (tenant_id, id), UNIQUE (slug));\n",
            &[
                "pool rule \"keys\"",
                "unique constraint notes_slug_key of table pool.notes is on (slug)",
            ],
            "SELECT to_regclass('pool.notes') IS NOT NULL",
        ),
        (
            "0004_global_pk.sql",
            "CREATE TABLE tags (name text PRIMARY KEY, tenant_id text NOT NULL);\n",
            &[
                "pool rule \"keys\"",
                "primary key tags_pkey of table pool.tags is on (name)",
            ],
            "SELECT to_regclass('pool.tags') IS NOT NULL",
        ),
        (
            "0004_serial.sql",
            "CREATE TABLE tickets (id serial, tenant_id text NOT NULL, PRIMARY KEY (tenant_id, id));\n",
            &[
                "pool rule \"sequences\"",
                "column pool.tickets.id takes its default from sequence pool.tickets_id_seq",
            ],
            "SELECT to_regclass('pool.tickets') IS NOT NULL",
        ),
        (
            "0004_definer.sql",
            "CREATE FUNCTION account_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM pool.accounts';\n",
            &[
                "pool rule \"functions\"",
                "function pool.account_count() is SECURITY DEFINER",
            ],
            "SELECT to_regprocedure('pool.account_count()') IS NOT NULL",
        ),
        (
            "0004_policy.sql",
            "CREATE POLICY everyone ON accounts FOR SELECT USING (true);\n",
            &[
                "pool rule \"policy\"",
                "permissive policy everyone on table pool.accounts is not one of tenantctl's",
            ],
            "SELECT EXISTS (SELECT 1 FROM pg_policy WHERE polname = 'everyone')",
        ),
    ];
    for (file, sql, named, object) in cases {
        w.write_migration(file, sql);
        let args = ["db", "migrate", "--output", "json"];
        let out = w.tenantctl(&args);
        assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let pool = &report["targets"][0];
        assert_eq!(pool["target"], "pool", "{report}");
        assert_eq!(pool["outcome"], "failed", "{report}");
        assert_eq!(pool["failed_migration"], file, "{report}");
        let error = pool["error"].as_str().unwrap();
        for n in named {
            assert!(error.contains(n), "{file}: `{n}` not in: {error}");
        }
        // Nothing applied: the ledger stops at 0003, the object does not exist.
        assert_eq!(
            scalar_i64(
                &admin,
                "SELECT max(version)::bigint FROM pool.schema_migrations"
            )
            .await,
            3,
            "{file}"
        );
        assert!(!exists(&admin, object).await, "{file}: {object}");
        std::fs::remove_file(w.migrations().join(file)).unwrap();
    }
    // A restrictive policy only narrows what tenants see: accepted.
    w.write_migration(
        "0004_restrictive.sql",
        "CREATE POLICY no_deleted ON accounts AS RESTRICTIVE FOR SELECT USING (email <> 'deleted');\n",
    );
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_probe_or_squat_ids_nor_read_the_sequence() {
    let w = DbWorkDir::current("rules_ids").await;
    let a = w.provision("id-a", Tier::Starter).await;
    let b = w.provision("id-b", Tier::Starter).await;
    let ca = connect_secret(&a).await;
    let cb = connect_secret(&b).await;

    // Ordinary inserts take their id from the identity column, with no privilege on its
    // sequence.
    for email in ["b1@x", "b2@x"] {
        assert_eq!(
            as_tenant(&cb, "id-b", &insert_account("id-b", email)).await,
            Ok(1)
        );
    }
    assert_eq!(
        as_tenant(&ca, "id-a", &insert_account("id-a", "a1@x")).await,
        Ok(1)
    );
    let b_id = as_tenant(&cb, "id-b", "SELECT min(id) FROM accounts")
        .await
        .unwrap();
    let next = as_tenant(&ca, "id-a", "SELECT max(id) FROM accounts")
        .await
        .unwrap()
        + 1;

    // A chooses ids: one B has, one nobody has, the next one B would get. Every attempt
    // is refused alike (no duplicate-key error tells B's ids apart), with A's context or
    // B's.
    for ctx in ["id-a", "id-b"] {
        for id in [b_id, 999_999, next, next + 1] {
            assert_eq!(
                as_tenant(&ca, ctx, &insert_with_id(id, "id-a", "probe@x")).await,
                Err(DENIED),
                "{ctx} {id}"
            );
        }
        // Nor through UPDATE (an identity column only takes its default, and A may not
        // even ask for that: it would draw from the shared sequence) or COPY.
        assert_eq!(
            as_tenant(&ca, ctx, &format!("UPDATE accounts SET id = {b_id}")).await,
            Err(SqlState::GENERATED_ALWAYS),
            "{ctx}"
        );
        assert_eq!(
            as_tenant(&ca, ctx, "UPDATE accounts SET id = DEFAULT").await,
            Err(DENIED),
            "{ctx}"
        );
    }
    // (On a connection of its own: the driver gives up the one a refused COPY ran on.)
    let err = connect_secret(&a)
        .await
        .copy_in::<_, bytes::Bytes>("COPY accounts (id, tenant_id, email, name) FROM STDIN")
        .await
        .err()
        .expect("COPY with ids is refused");
    assert_eq!(err.code(), Some(&DENIED), "{err}");
    // B's next insert still works: nothing was squatted.
    assert_eq!(
        as_tenant(&cb, "id-b", &insert_account("id-b", "b3@x")).await,
        Ok(1)
    );
    assert_eq!(
        as_tenant(&cb, "id-b", "SELECT count(*) FROM accounts").await,
        Ok(3)
    );
    // A may still update its own rows' ordinary columns.
    assert_eq!(
        as_tenant(&ca, "id-a", "UPDATE accounts SET name = 'renamed'").await,
        Ok(1)
    );

    // The shared sequence counts every tenant's rows: A cannot read or advance it.
    for sql in [
        "SELECT last_value FROM pool.accounts_id_seq",
        "SELECT currval('pool.accounts_id_seq')",
        "SELECT nextval('pool.accounts_id_seq')",
        "SELECT setval('pool.accounts_id_seq', 1)",
        "SELECT pg_sequence_last_value('pool.accounts_id_seq')",
    ] {
        assert_eq!(as_tenant(&ca, "id-a", sql).await, Err(DENIED), "{sql}");
    }
    let shown: Option<i64> = ca
        .query_one(
            "SELECT last_value FROM pg_sequences WHERE schemaname = 'pool' AND sequencename = 'accounts_id_seq'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, None, "pg_sequences hides the value from the tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_each_pool_rule_and_provisioning_repairs_or_refuses() {
    let w = DbWorkDir::current("rules_verify").await;
    let db = w.database();
    let spec = w.declare("rv-a", Tier::Starter);
    let secret = w.secret(&spec);
    db.provision(&spec, &secret).await.unwrap();
    let checks = db.verify(&spec, &secret).await;
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));
    for name in [
        "db.public_schema",
        "db.pool.keys",
        "db.pool.identity",
        "db.pool.sequences",
        "db.pool.functions",
        "db.pool.policy",
    ] {
        assert_eq!(check(&checks, name).status, CheckStatus::Pass, "{name}");
    }

    // Drift behind tenantctl's back, one per rule.
    let admin = w.admin().await;
    admin
        .batch_execute(
            "GRANT INSERT ON pool.accounts TO tenantctl_pool;
             GRANT SELECT ON SEQUENCE pool.projects_id_seq TO tenantctl_pool;
             CREATE FUNCTION pool.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM pool.accounts';
             CREATE UNIQUE INDEX accounts_email_global ON pool.accounts (email);
             CREATE POLICY peek ON pool.projects FOR SELECT USING (true);",
        )
        .await
        .unwrap();
    let checks = db.verify(&spec, &secret).await;
    for (name, names) in [
        ("db.pool.keys", "accounts: accounts_email_global (email)"),
        ("db.pool.identity", "accounts.id: INSERT for tenantctl_pool"),
        (
            "db.pool.sequences",
            "projects_id_seq: readable by tenantctl_pool",
        ),
        ("db.pool.functions", "pool.leak(): SECURITY DEFINER"),
        ("db.pool.policy", "projects: policy peek"),
    ] {
        let c = check(&checks, name);
        assert_eq!(c.status, CheckStatus::Fail, "{name}: {c:?}");
        assert!(c.actual.contains(names), "{name}: {}", c.actual);
    }
    assert_eq!(tenantctl::report::exit_code(&checks), 3);

    // Provisioning refuses what only a person can decide (a key, a function, a policy)...
    let err = format!("{:#}", db.provision(&spec, &secret).await.unwrap_err());
    assert!(
        err.contains("pool rule \"keys\"") && err.contains("accounts_email_global"),
        "{err}"
    );
    admin
        .batch_execute(
            "DROP INDEX pool.accounts_email_global;
             DROP FUNCTION pool.leak();
             DROP POLICY peek ON pool.projects;",
        )
        .await
        .unwrap();
    // ...and repairs the grants it owns.
    db.provision(&spec, &secret).await.unwrap();
    let checks = db.verify(&spec, &secret).await;
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));

    // tenantctl's own policy, rewritten to let everything through, is written back.
    admin
        .batch_execute(
            "DROP POLICY tenant_isolation ON pool.accounts;
             CREATE POLICY tenant_isolation ON pool.accounts USING (true) WITH CHECK (true);",
        )
        .await
        .unwrap();
    assert_eq!(
        check(&db.verify(&spec, &secret).await, "db.pool.policy").status,
        CheckStatus::Fail
    );
    db.provision(&spec, &secret).await.unwrap();
    let checks = db.verify(&spec, &secret).await;
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0003_moves_existing_installs_to_tenant_scoped_keys_on_every_tier() {
    // An install made with 0001 and 0002 only, with data in every tier.
    let w = DbWorkDir::new("rules_0003").await;
    let db = w.database();
    let tenants = [
        ("k3-p1", Tier::Starter),
        ("k3-p2", Tier::Starter),
        ("k3-g", Tier::Growth),
        ("k3-s", Tier::Enterprise),
    ];
    let mut secrets = Vec::new();
    for (id, tier) in tenants {
        let secret = w.provision(id, tier).await;
        let c = connect_secret(&secret).await;
        as_tenant(&c, id, &insert_account(id, "owner@x"))
            .await
            .unwrap();
        let owner = as_tenant(&c, id, "SELECT max(id) FROM accounts")
            .await
            .unwrap();
        assert_eq!(
            as_tenant(
                &c,
                id,
                &format!(
                    "INSERT INTO projects (tenant_id, owner_id, name) VALUES ('{id}', {owner}, 'p')"
                )
            )
            .await,
            Ok(1)
        );
        secrets.push((w.declare(id, tier), secret, c));
    }
    // verify names the global keys the pool still has.
    let keys = check(
        &db.verify(&secrets[0].0, &secrets[0].1).await,
        "db.pool.keys",
    )
    .clone();
    assert_eq!(keys.status, CheckStatus::Fail);
    assert_eq!(
        keys.actual,
        "accounts: accounts_pkey (id), projects: projects_pkey (id)"
    );

    w.copy_repo_migration("0003_tenant_scoped_keys.sql");
    let args = ["db", "migrate", "--output", "json"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in report["targets"].as_array().unwrap() {
        assert_eq!(t["outcome"], "migrated", "{t}");
    }

    // Every target: primary keys (tenant_id, id), the foreign key on the new accounts
    // key, the redundant unique constraint gone, the rows intact.
    let shared = w.admin().await;
    let silo = connect(&cluster().admin_url("tenant_k3-s")).await;
    for (client, schema) in [
        (&shared, "pool"),
        (&shared, "tenant_k3-g"),
        (&silo, "tenant_k3-s"),
    ] {
        // Names print unqualified when their schema is on the path.
        client
            .batch_execute(&format!("SET search_path = \"{schema}\""))
            .await
            .unwrap();
        let rows = client
            .query(
                "SELECT c.conrelid::regclass::text, c.conname::text, c.contype::text,
                        pg_get_constraintdef(c.oid)
                 FROM pg_constraint c
                 WHERE c.connamespace = to_regnamespace(quote_ident($1)) AND c.contype IN ('p', 'u', 'f')
                   AND c.conrelid::regclass::text NOT LIKE '%schema_migrations'
                 ORDER BY 1, 2",
                &[&schema],
            )
            .await
            .unwrap();
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                let (t, n, _k, d): (String, String, String, String) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                let t = t.rsplit('.').next().unwrap().to_string();
                format!("{t} {n} {d}")
            })
            .collect();
        assert_eq!(
            got,
            [
                "accounts accounts_pkey PRIMARY KEY (tenant_id, id)",
                "accounts accounts_tenant_id_email_key UNIQUE (tenant_id, email)",
                "projects projects_pkey PRIMARY KEY (tenant_id, id)",
                "projects projects_tenant_id_name_key UNIQUE (tenant_id, name)",
                "projects projects_tenant_id_owner_id_fkey FOREIGN KEY (tenant_id, owner_id) REFERENCES accounts(tenant_id, id) ON DELETE CASCADE",
            ],
            "{schema}"
        );
    }
    for (spec, secret, c) in &secrets {
        let id = spec.id.as_str();
        assert_eq!(
            as_tenant(c, id, "SELECT count(*) FROM projects").await,
            Ok(1),
            "{id}"
        );
        // The foreign key still holds, and still cascades.
        assert_eq!(
            as_tenant(
                c,
                id,
                &format!(
                    "INSERT INTO projects (tenant_id, owner_id, name) VALUES ('{id}', 999999, 'q')"
                )
            )
            .await,
            Err(SqlState::FOREIGN_KEY_VIOLATION),
            "{id}"
        );
        assert_eq!(as_tenant(c, id, "DELETE FROM accounts").await, Ok(1));
        assert_eq!(
            as_tenant(c, id, "SELECT count(*) FROM projects").await,
            Ok(0),
            "{id}"
        );
        let checks = db.verify(spec, secret).await;
        assert!(failing(&checks).is_empty(), "{id}: {:#?}", failing(&checks));
    }
}
