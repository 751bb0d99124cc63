//! Pool (starter): the tenant's rows live in shared tables of schema `pool`, next to every
//! other starter tenant's. Row-level security (enabled and forced) filters every table
//! on `tenant_id = pool.current_tenant()`, a context that only counts when it names the
//! login running the query (see `db::sql`). The login reaches the tables through the
//! group `tenantctl_pool`; freezing swaps that for the read-only `tenantctl_pool_ro`.

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio_postgres::Client;

use crate::db::connect::PgContext;
use crate::db::data;
use crate::db::ident::{ident, literal};
use crate::db::migrate::setup_tx;
use crate::db::provision::schema_exists;
use crate::db::{Database, DbSecret, Target, pool_target, sql};
use crate::isolation::Model;
use crate::report::{Checks, list_or};
use crate::tenant::{Isolation, TenantId};
use crate::workspace::TenantSpec;

/// The policy expression as PostgreSQL prints it back (`pg_get_expr`).
const POLICY_EXPR: &str = sql::POOL_POLICY_EXPR;

pub struct Pool;

#[async_trait]
impl Model for Pool {
    fn isolation(&self) -> Isolation {
        Isolation::Pool
    }

    fn pool_member(&self) -> bool {
        true
    }

    async fn target(
        &self,
        _db: &Database,
        _spec: &TenantSpec,
        _silo_admin: Option<&DbSecret>,
    ) -> Result<Target> {
        Ok(pool_target())
    }

    fn structure_sql(&self, target: &Target, role: &str, _id: &TenantId) -> String {
        let mut body = sql::pool_setup();
        body.push_str(&sql::grant_connect(role));
        // The post-migration step again, so a rerun repairs drift (RLS switched off,
        // grants widened) even when no migration is pending.
        body.push_str(&sql::target_lock(&target.schema));
        body.push_str(&sql::pool_after_migration());
        body
    }

    fn attach_sql(&self, role: &str) -> String {
        sql::pool_membership(role)
    }

    fn hide_sql(&self, _target: &Target, role: &str) -> String {
        // Both groups: a move froze the login into the read-only one.
        sql::leave_pool_groups(role)
    }

    async fn drop_data(&self, db: &Database, spec: &TenantSpec, drop_login: bool) -> Result<()> {
        let shared = db.admin().connect("tenantctl deprovision").await?;
        let mut body = String::new();
        if schema_exists(&shared, sql::POOL_SCHEMA).await? {
            body.push_str(&sql::pool_delete_rows(spec.id.as_str()));
        }
        if drop_login {
            body.push_str(&sql::drop_tenant_role(&spec.id.db_role()));
        }
        setup_tx(&shared, &body)
            .await
            .with_context(|| format!("cannot remove tenant `{}` from the pool", spec.id))
    }

    async fn verify_catalog(
        &self,
        admin: &Client,
        _target: &Target,
        role: &str,
        c: &mut Checks,
    ) -> Result<()> {
        pool_checks(admin, c).await?;
        rule_checks(admin, role, c).await
    }

    /// As the tenant, with its own context set: no row of another tenant is visible.
    async fn verify_as_tenant(
        &self,
        tenant: &Client,
        spec: &TenantSpec,
        c: &mut Checks,
    ) -> Result<()> {
        let tables = tenant
            .query(
                "SELECT c.oid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_class c
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('r', 'p')
               AND pg_catalog.has_table_privilege(c.oid, 'SELECT') ORDER BY 1",
                &[&ident(sql::POOL_SCHEMA)],
            )
            .await
            .pg_context(|| "cannot list the pool tables as the tenant".into())?;
        let mut foreign = Vec::new();
        for t in &tables {
            let table: String = t.get(0);
            // The context is set for this transaction only, as the application does.
            tenant
                .batch_execute("BEGIN READ ONLY")
                .await
                .pg_context(|| "cannot start a transaction as the tenant".into())?;
            let counted = async {
                tenant
                    .execute(
                        "SELECT pg_catalog.set_config($1, $2, true)",
                        &[&sql::CONTEXT_SETTING, &spec.id.as_str()],
                    )
                    .await?;
                tenant
                    .query_one(
                        &format!(
                            "SELECT pg_catalog.count(*) FROM {table} WHERE tenant_id OPERATOR(pg_catalog.<>) $1"
                        ),
                        &[&spec.id.as_str()],
                    )
                    .await
            }
            .await;
            let _ = tenant.batch_execute("ROLLBACK").await;
            let visible: i64 = counted
                .pg_context(|| format!("cannot read {table} as the tenant"))?
                .get(0);
            if visible > 0 {
                foreign.push(format!("{table}: {visible} row(s)"));
            }
        }
        c.add(
            "db.pool.no_foreign_rows",
            "as the tenant, no row of another tenant is visible",
            list_or(&foreign, "none visible"),
            foreign.is_empty(),
        );
        Ok(())
    }

    fn after_migration(&self, _target: &Target) -> String {
        sql::pool_after_migration()
    }

    fn row_filter(&self, id: &TenantId) -> Option<String> {
        Some(format!("tenant_id = {}", literal(id.as_str())))
    }

    async fn freeze(&self, client: &Client, _target: &Target, id: &TenantId) -> Result<()> {
        let role = id.db_role();
        let mut body = sql::pool_setup();
        body.push_str(&data::mark_frozen(&role, true));
        body.push_str(&sql::pool_membership(&role));
        body.push_str(&data::terminate_sessions(&role));
        setup_tx(client, &body)
            .await
            .with_context(|| format!("cannot freeze the writes of tenant `{id}` in the pool"))
    }

    async fn unfreeze(&self, client: &Client, _target: &Target, id: &TenantId) -> Result<()> {
        let role = id.db_role();
        let mut body = data::mark_frozen(&role, false);
        body.push_str(&sql::pool_membership(&role));
        setup_tx(client, &body)
            .await
            .with_context(|| format!("cannot unfreeze the writes of tenant `{id}` in the pool"))
    }
}

/// Pool tables: RLS enabled and forced, the tenant policy and nothing more permissive.
async fn pool_checks(admin: &Client, c: &mut Checks) -> Result<()> {
    let rows = admin
        .query(
            "SELECT c.relname::pg_catalog.text, c.relkind::pg_catalog.text, c.relrowsecurity, c.relforcerowsecurity,
                    COALESCE(c.reloptions, '{}') @> '{security_invoker=true}'
                      OR COALESCE(c.reloptions, '{}') @> '{security_invoker=on}'
             FROM pg_catalog.pg_class c
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND c.relname <> $2
             ORDER BY 1",
            &[&ident(sql::POOL_SCHEMA), &sql::LEDGER],
        )
        .await
        .pg_context(|| "cannot list the pool tables".into())?;
    let mut not_enabled = Vec::new();
    let mut not_forced = Vec::new();
    let mut bad_views = Vec::new();
    let mut tables = Vec::new();
    for r in &rows {
        let (name, kind, rls, force, invoker): (String, String, bool, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        match kind.as_str() {
            "v" if !invoker => bad_views.push(name),
            "v" => {}
            "m" | "f" => bad_views.push(name),
            _ => {
                if !rls {
                    not_enabled.push(name.clone());
                }
                if !force {
                    not_forced.push(name.clone());
                }
                tables.push(name);
            }
        }
    }
    c.add(
        "db.pool.rls_enabled",
        "row-level security enabled on every pool table",
        if not_enabled.is_empty() {
            format!("enabled on {} table(s)", tables.len())
        } else {
            format!("disabled on {}", not_enabled.join(", "))
        },
        not_enabled.is_empty(),
    );
    c.add(
        "db.pool.rls_forced",
        "row-level security forced on every pool table (applies to the owner too)",
        if not_forced.is_empty() {
            format!("forced on {} table(s)", tables.len())
        } else {
            format!("not forced on {}", not_forced.join(", "))
        },
        not_forced.is_empty(),
    );
    c.add(
        "db.pool.views",
        "views run with the caller's rights (security_invoker); no materialized views or foreign tables",
        list_or(&bad_views, "ok"),
        bad_views.is_empty(),
    );

    // Every permissive policy must be the tenant policy (for everyone, USING and WITH
    // CHECK on the login-bound context) or the admin policy (for tenantctl_admin only):
    // any other permissive policy would widen what a tenant sees.
    let policies = admin
        .query(
            "SELECT c.relname::pg_catalog.text, p.polname::pg_catalog.text, p.polcmd::pg_catalog.text, p.polpermissive,
                    COALESCE((SELECT pg_catalog.array_agg(CASE WHEN r = 0 THEN 'public'
                                                               ELSE r::pg_catalog.regrole::pg_catalog.text END ORDER BY 1)
                              FROM pg_catalog.unnest(p.polroles) r), '{}'),
                    pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
             FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1)
             ORDER BY 1, 2",
            &[&ident(sql::POOL_SCHEMA)],
        )
        .await
        .pg_context(|| "cannot list the pool policies".into())?;
    let mut has_policy: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for p in &policies {
        let (table, name, cmd, permissive, roles, qual, check): (
            String,
            String,
            String,
            bool,
            Vec<String>,
            Option<String>,
            Option<String>,
        ) = (
            p.get(0),
            p.get(1),
            p.get(2),
            p.get(3),
            p.get(4),
            p.get(5),
            p.get(6),
        );
        if !permissive {
            continue;
        }
        let tenant_policy = name == sql::POOL_POLICY
            && cmd == "*"
            && roles == ["public"]
            && qual.as_deref() == Some(POLICY_EXPR)
            && check.as_deref() == Some(POLICY_EXPR);
        let admin_policy = name == sql::ADMIN_POLICY && roles == [sql::ADMIN_GROUP];
        if tenant_policy {
            has_policy.push(table);
        } else if !admin_policy {
            problems.push(format!(
                "{table}: policy {name} for {} USING {}",
                roles.join(","),
                qual.unwrap_or_else(|| "-".into())
            ));
        }
    }
    for t in &tables {
        if !has_policy.contains(t) {
            problems.push(format!("{t}: no {} policy", sql::POOL_POLICY));
        }
    }
    c.add(
        "db.pool.policy",
        "each pool table: policy tenant_isolation USING and WITH CHECK (tenant_id = pool.current_tenant()), no other permissive policy but tenantctl_admin",
        list_or(&problems, "ok"),
        problems.is_empty(),
    );
    Ok(())
}

/// The pool's safety rules (`sql::pool_rule`), one check each. The post-migration step
/// refuses a migration that breaks one; these catch what changed behind tenantctl's back
/// and, for keys, what the step tolerates (a primary key on a lone identity column, which
/// tenants cannot write but which collides when rows move into the pool with their ids).
/// "Tenants" are PUBLIC, the pool groups and the tenant's own login.
async fn rule_checks(admin: &Client, role: &str, c: &mut Checks) -> Result<()> {
    let pool = ident(sql::POOL_SCHEMA);
    let tenants = vec![
        "public".to_string(),
        sql::POOL_GROUP.to_string(),
        sql::POOL_RO_GROUP.to_string(),
        role.to_string(),
    ];

    let keys = admin
        .query(
            "SELECT c.relname::pg_catalog.text,
                    pg_catalog.quote_ident(COALESCE(k.conname, ic.relname))::pg_catalog.text,
                    (SELECT pg_catalog.string_agg(pg_catalog.pg_get_indexdef(i.indexrelid, n, true), ', ' ORDER BY n)
                     FROM pg_catalog.generate_series(1, i.indnkeyatts::pg_catalog.int4) n)
             FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             LEFT JOIN pg_catalog.pg_constraint k
                    ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('r', 'p')
               AND c.relname <> $2
               AND (i.indisunique OR i.indisexclusion)
               AND NOT EXISTS (
                   SELECT 1 FROM pg_catalog.pg_attribute a, pg_catalog.generate_series(0, i.indnkeyatts - 1) n
                   WHERE a.attrelid = i.indrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped
                     AND a.attnum = i.indkey[n])
             ORDER BY 1, 2",
            &[&pool, &sql::LEDGER],
        )
        .await
        .pg_context(|| "cannot read the keys of the pool tables".into())?;
    let bad: Vec<String> = keys
        .iter()
        .map(|r| {
            let (table, key, cols): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            format!("{table}: {key} ({cols})")
        })
        .collect();
    c.add(
        "db.pool.keys",
        "every primary key, unique constraint or index and exclusion constraint of a pool table includes tenant_id",
        list_or(&bad, "ok"),
        bad.is_empty(),
    );

    let writable = admin
        .query(
            "SELECT c.relname::pg_catalog.text, a.attname::pg_catalog.text, g.name,
                    pg_catalog.has_column_privilege(g.name, c.oid, a.attnum, 'INSERT'),
                    pg_catalog.has_column_privilege(g.name, c.oid, a.attnum, 'UPDATE')
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             CROSS JOIN pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY g(name, o)
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('r', 'p')
               AND (a.attidentity <> '' OR a.attgenerated <> '')
               AND (g.name = 'public' OR pg_catalog.to_regrole(pg_catalog.quote_ident(g.name)) IS NOT NULL)
             ORDER BY 1, a.attnum, g.o",
            &[&pool, &tenants],
        )
        .await
        .pg_context(|| "cannot read the column privileges of the pool tables".into())?;
    let mut bad = Vec::new();
    for r in &writable {
        let (table, col, who, ins, upd): (String, String, String, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let privs: Vec<&str> = [(ins, "INSERT"), (upd, "UPDATE")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, p)| *p)
            .collect();
        if !privs.is_empty() {
            bad.push(format!("{table}.{col}: {} for {who}", privs.join(", ")));
        }
    }
    c.add(
        "db.pool.identity",
        "identity and generated columns of pool tables: no INSERT or UPDATE for tenants (no OVERRIDING SYSTEM VALUE)",
        list_or(&bad, "ok"),
        bad.is_empty(),
    );

    let seqs = admin
        .query(
            "SELECT s.relname::pg_catalog.text, g.name
             FROM pg_catalog.pg_class s
             CROSS JOIN pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY g(name, o)
             WHERE s.relnamespace = pg_catalog.to_regnamespace($1) AND s.relkind = 'S'
               AND CASE WHEN g.name = 'public' OR pg_catalog.to_regrole(pg_catalog.quote_ident(g.name)) IS NOT NULL
                        THEN pg_catalog.has_sequence_privilege(g.name, s.oid, 'USAGE, SELECT, UPDATE')
                        ELSE false END
             ORDER BY 1, g.o",
            &[&pool, &tenants],
        )
        .await
        .pg_context(|| "cannot read the privileges on the pool sequences".into())?;
    let mut bad: Vec<String> = seqs
        .iter()
        .map(|r| {
            let (seq, who): (String, String) = (r.get(0), r.get(1));
            format!("{seq}: readable by {who}")
        })
        .collect();
    let nextval = admin
        .query(
            "SELECT c.relname::pg_catalog.text, a.attname::pg_catalog.text, s.oid::pg_catalog.regclass::pg_catalog.text
             FROM pg_catalog.pg_attrdef ad
             JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
             JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
             JOIN pg_catalog.pg_depend d
                  ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
                 AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
             JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('r', 'p')
             ORDER BY 1, a.attnum",
            &[&pool],
        )
        .await
        .pg_context(|| "cannot read the column defaults of the pool tables".into())?;
    for r in &nextval {
        let (table, col, seq): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        bad.push(format!("{table}.{col}: default nextval({seq})"));
    }
    c.add(
        "db.pool.sequences",
        "no privilege on pool sequences for tenants, no nextval() default (identity columns instead)",
        list_or(&bad, "ok"),
        bad.is_empty(),
    );

    let definers = admin
        .query(
            "SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text
             FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = pg_catalog.to_regnamespace($1) AND p.prosecdef
             ORDER BY 1",
            &[&pool],
        )
        .await
        .pg_context(|| "cannot read the functions of the pool".into())?;
    let bad: Vec<String> = definers
        .iter()
        .map(|r| format!("{}: SECURITY DEFINER", r.get::<_, String>(0)))
        .collect();
    c.add(
        "db.pool.functions",
        "no SECURITY DEFINER function in schema pool (every starter tenant may execute every pool function)",
        list_or(&bad, "ok"),
        bad.is_empty(),
    );
    Ok(())
}
