//! The database half of `tenantctl verify`: what the tier promises, read back from the
//! catalogs as the admin and tried as the tenant with exactly what its secret holds.
//!
//! Check names start with `db.`; the tier's own checks with `db.pool.`, `db.bridge.` or
//! `db.silo.`. A check that could not run (no connection) is an error, not a pass.

use tokio_postgres::Client;

use crate::db::connect::PgContext;
use crate::db::ident::ident;
use crate::db::migrations::MigrationSet;
use crate::db::{Database, DbSecret, Location, Target, scrub, secret_name, sql};
use crate::report::Check;
use crate::tenant::Isolation;
use crate::workspace::TenantSpec;

/// The policy expression as PostgreSQL prints it back (`pg_get_expr`).
const POLICY_EXPR: &str = "(tenant_id = pool.current_tenant())";

struct Checks {
    tenant: String,
    out: Vec<Check>,
}

impl Checks {
    fn push(&mut self, check: &str, expected: &str, actual: impl Into<String>, pass: bool) {
        self.out
            .push(Check::new(&self.tenant, check, expected, actual, pass));
    }
    fn error(&mut self, check: &str, expected: &str, err: impl std::fmt::Display) {
        self.out
            .push(Check::error(&self.tenant, check, expected, err));
    }
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

impl Database {
    /// Database checks for one tenant. Silo tenants on real RDS need the `db-admin`
    /// login: see [`verify_with`](Self::verify_with).
    pub async fn verify(&self, spec: &TenantSpec, secret: &DbSecret) -> Vec<Check> {
        self.verify_with(spec, secret, None).await
    }

    pub async fn verify_with(
        &self,
        spec: &TenantSpec,
        secret: &DbSecret,
        silo_admin: Option<&DbSecret>,
    ) -> Vec<Check> {
        let mut c = Checks {
            tenant: spec.id.to_string(),
            out: Vec::new(),
        };
        self.verify_inner(spec, secret, silo_admin, &mut c).await;
        // Last guard: no check may carry the tenant's password, whatever a driver said.
        for check in &mut c.out {
            check.actual = scrub(std::mem::take(&mut check.actual), &secret.password);
        }
        c.out
    }

    async fn verify_inner(
        &self,
        spec: &TenantSpec,
        secret: &DbSecret,
        silo_admin: Option<&DbSecret>,
        c: &mut Checks,
    ) {
        let role = spec.id.pg_name();
        let iso = spec.tier.isolation();
        let prefix = format!("db.{}", iso.as_str());

        // The secret is what the application reads: its shape is part of the contract.
        let expected_secret = format!(
            "engine postgres, username {role}{}",
            if iso == Isolation::Bridge {
                format!(", schema {role}")
            } else {
                String::new()
            }
        );
        let actual_secret = format!(
            "engine {}, username {}{}",
            secret.engine,
            secret.username,
            secret
                .schema
                .as_ref()
                .map(|s| format!(", schema {s}"))
                .unwrap_or_default()
        );
        let mut secret_ok = self.check_secret(spec, secret).is_ok();
        let mut where_expected = String::new();
        if iso != Isolation::Silo {
            if let (Some(h), Some(p)) = (&self.settings.host, self.settings.port) {
                where_expected = format!("{h}:{p}/{}", self.admin.dbname());
                secret_ok &= secret.host == *h && secret.port == p;
            }
        } else if let Some(local) = &self.settings.local_silo {
            where_expected = format!("{}:{}/{role}", local.host, local.port);
            secret_ok &=
                secret.host == local.host && secret.port == local.port && secret.dbname == role;
        }
        let shown_where = format!("{}:{}/{}", secret.host, secret.port, secret.dbname);
        c.push(
            "db.secret.fields",
            &if where_expected.is_empty() {
                expected_secret
            } else {
                format!("{expected_secret}, at {where_expected}")
            },
            format!("{actual_secret}, at {shown_where}"),
            secret_ok,
        );

        let target = match self.target_of(spec, silo_admin).await {
            Ok(t) => t,
            Err(e) => {
                c.error(
                    &format!("{prefix}.admin"),
                    "admin login for the tenant's database",
                    format!("{e:#}"),
                );
                return;
            }
        };
        let admin_ep = match &target.location {
            Location::Shared => self.admin.clone(),
            Location::Silo(ep) => (**ep).clone(),
            Location::Unavailable(why) => {
                c.error(
                    &format!("{prefix}.admin"),
                    "admin login for the tenant's database",
                    why,
                );
                return;
            }
        };
        let admin = match admin_ep.connect("tenantctl verify").await {
            Ok(a) => a,
            Err(e) => {
                c.error(
                    &format!("{prefix}.admin"),
                    "admin connection",
                    format!("{e:#}"),
                );
                return;
            }
        };

        if let Err(e) = role_checks(&admin, &role, iso, c).await {
            c.error(
                "db.role.attributes",
                "readable role attributes",
                format!("{e:#}"),
            );
        }
        let tier_result = match iso {
            Isolation::Pool => pool_checks(&admin, c).await,
            Isolation::Bridge | Isolation::Silo => {
                schema_checks(&admin, &target, &role, &prefix, c).await
            }
        };
        if let Err(e) = tier_result {
            c.error(
                &format!("{prefix}.catalog"),
                "readable catalogs",
                format!("{e:#}"),
            );
        }
        if let Err(e) = self.migration_check(&admin, &target, c).await {
            c.error(
                "db.migrations.latest",
                "every migration applied",
                format!("{e:#}"),
            );
        }

        // As the tenant, with exactly what the secret holds.
        let tenant_ep = secret.endpoint(
            format!("secret `{}`", secret_name(&spec.id)),
            &self.tenant_tls,
        );
        match tenant_ep.connect("tenantctl verify").await {
            Ok(tenant) => {
                c.push(
                    "db.tenant.connect",
                    "the secret's login connects",
                    "connected",
                    true,
                );
                if let Err(e) = tenant_checks(&tenant, spec, &target, &prefix, c).await {
                    c.error(
                        &format!("{prefix}.as_tenant"),
                        "queries as the tenant",
                        format!("{e:#}"),
                    );
                }
            }
            Err(e) => c.error(
                "db.tenant.connect",
                "the secret's login connects",
                format!("{e:#}"),
            ),
        }
    }

    async fn migration_check(
        &self,
        admin: &Client,
        target: &Target,
        c: &mut Checks,
    ) -> anyhow::Result<()> {
        let set = MigrationSet::load_or_empty(self.migrations_dir())?;
        let latest = set
            .latest()
            .map(|m| m.name.clone())
            .unwrap_or_else(|| "none".into());
        let (top, pending, bad) = self.target_version(admin, target, &set).await?;
        let top_name = top
            .and_then(|v| set.get(v).map(|m| m.name.clone()))
            .or(top.map(|v| format!("{v:04}")))
            .unwrap_or_else(|| "none".into());
        let actual = if !bad.is_empty() {
            format!("{top_name}; edited or unknown: {}", bad.join(", "))
        } else if !pending.is_empty() {
            format!("{top_name}; pending: {}", pending.join(", "))
        } else {
            top_name
        };
        c.push(
            "db.migrations.latest",
            &format!("target `{}` at {latest}", target.name),
            actual,
            pending.is_empty() && bad.is_empty(),
        );
        Ok(())
    }
}

/// The runtime login may log in and nothing more.
async fn role_checks(
    admin: &Client,
    role: &str,
    iso: Isolation,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let row = admin
        .query_opt(
            "SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
                    CASE WHEN to_regrole($2) IS NULL THEN false ELSE pg_has_role(r.oid, to_regrole($2), 'MEMBER') END,
                    coalesce((SELECT true FROM pg_auth_members m WHERE m.member = r.oid AND m.roleid = to_regrole($3)), false),
                    (SELECT count(*) FROM pg_class WHERE relowner = r.oid)
                      + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)
             FROM pg_roles r WHERE r.rolname = $1",
            &[&role, &sql::ADMIN_GROUP, &sql::POOL_GROUP],
        )
        .await
        .pg_context(|| format!("cannot read role `{role}`"))?;
    let Some(row) = row else {
        c.push(
            "db.role.exists",
            &format!("login role {role}"),
            "missing",
            false,
        );
        return Ok(());
    };
    let (login, sup, bypass, createrole, createdb, repl): (bool, bool, bool, bool, bool, bool) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    let admin_member: bool = row.get(6);
    let pool_member: bool = row.get(7);
    let owned: i64 = row.get(8);
    let mut extra = Vec::new();
    for (on, name) in [
        (sup, "SUPERUSER"),
        (bypass, "BYPASSRLS"),
        (createrole, "CREATEROLE"),
        (createdb, "CREATEDB"),
        (repl, "REPLICATION"),
        (admin_member, "member of tenantctl_admin"),
    ] {
        if on {
            extra.push(name.to_string());
        }
    }
    if !login {
        extra.push("NOLOGIN".into());
    }
    c.push(
        "db.role.attributes",
        "LOGIN only: not superuser, not BYPASSRLS, no CREATEROLE/CREATEDB/REPLICATION, not an admin",
        list_or(&extra, "LOGIN only"),
        extra.is_empty(),
    );
    c.push(
        "db.role.owns_nothing",
        "owns no table, view or schema",
        format!("owns {owned}"),
        owned == 0,
    );
    let want_pool = iso == Isolation::Pool;
    c.push(
        &format!("db.{}.pool_membership", iso.as_str()),
        if want_pool {
            "member of tenantctl_pool"
        } else {
            "not a member of tenantctl_pool"
        },
        if pool_member {
            "member"
        } else {
            "not a member"
        },
        pool_member == want_pool,
    );
    Ok(())
}

/// Pool tables: RLS enabled and forced, the tenant policy and nothing more permissive.
async fn pool_checks(admin: &Client, c: &mut Checks) -> anyhow::Result<()> {
    let rows = admin
        .query(
            "SELECT c.relname::text, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity,
                    coalesce(c.reloptions, '{}') @> '{security_invoker=true}'
                      OR coalesce(c.reloptions, '{}') @> '{security_invoker=on}'
             FROM pg_class c
             WHERE c.relnamespace = to_regnamespace($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
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
    c.push(
        "db.pool.rls_enabled",
        "row-level security enabled on every pool table",
        if not_enabled.is_empty() {
            format!("enabled on {} table(s)", tables.len())
        } else {
            format!("disabled on {}", not_enabled.join(", "))
        },
        not_enabled.is_empty(),
    );
    c.push(
        "db.pool.rls_forced",
        "row-level security forced on every pool table (applies to the owner too)",
        if not_forced.is_empty() {
            format!("forced on {} table(s)", tables.len())
        } else {
            format!("not forced on {}", not_forced.join(", "))
        },
        not_forced.is_empty(),
    );
    c.push(
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
            "SELECT c.relname::text, p.polname::text, p.polcmd::text, p.polpermissive,
                    coalesce((SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END ORDER BY 1)
                              FROM unnest(p.polroles) r), '{}'),
                    pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
             FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
             WHERE c.relnamespace = to_regnamespace($1)
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
    c.push(
        "db.pool.policy",
        "each pool table: policy tenant_isolation USING and WITH CHECK (tenant_id = pool.current_tenant()), no other permissive policy but tenantctl_admin",
        list_or(&problems, "ok"),
        problems.is_empty(),
    );
    Ok(())
}

/// Bridge and silo: the schema is the admin's, the tenant may use it, nobody else may.
async fn schema_checks(
    admin: &Client,
    target: &Target,
    role: &str,
    prefix: &str,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let schema = &target.schema;
    let row = admin
        .query_opt(
            "SELECT pg_get_userbyid(n.nspowner)::text, current_user::text,
                    has_schema_privilege($2, n.oid, 'USAGE'), has_schema_privilege($2, n.oid, 'CREATE'),
                    coalesce((SELECT array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END)
                              FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner), '{}')
             FROM pg_namespace n WHERE n.nspname = $1",
            &[&schema, &role],
        )
        .await
        .pg_context(|| format!("cannot read schema `{schema}`"))?;
    let Some(row) = row else {
        c.push(
            &format!("{prefix}.schema"),
            &format!("schema {schema} exists"),
            "missing",
            false,
        );
        return Ok(());
    };
    let (owner, admin_user, usage, create, grantees): (String, String, bool, bool, Vec<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    c.push(
        &format!("{prefix}.schema_owner"),
        &format!("schema {schema} owned by the admin ({admin_user}), not by {role}"),
        format!("owned by {owner}"),
        owner == admin_user,
    );
    // Schema grants: USAGE for the tenant, nothing for PUBLIC or any other role.
    let others: Vec<String> = grantees
        .iter()
        .filter(|g| g.as_str() != role)
        .cloned()
        .collect();
    let mut problems = Vec::new();
    if !usage {
        problems.push(format!("{role} lacks USAGE"));
    }
    if create {
        problems.push(format!("{role} has CREATE"));
    }
    if !others.is_empty() {
        problems.push(format!("also granted to {}", others.join(", ")));
    }
    // Table and function grants: only the tenant (and the owner); the ledger not even to
    // the tenant. A function without an ACL has PostgreSQL's default: EXECUTE for PUBLIC.
    let tables = admin
        .query(
            "WITH grants AS (
                 SELECT c.relname::text AS obj, c.relowner AS owner, a.grantee
                 FROM pg_class c, aclexplode(c.relacl) a
                 WHERE c.relnamespace = to_regnamespace($1)
                 UNION ALL
                 SELECT p.proname::text || '()', p.proowner, a.grantee
                 FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                 WHERE p.pronamespace = to_regnamespace($1)
             )
             SELECT obj, CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(grantee)::text END
             FROM grants
             WHERE grantee <> owner
               AND (CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(grantee)::text END <> $2
                    OR obj = $3)
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&ident(schema), &role, &sql::LEDGER],
        )
        .await
        .pg_context(|| format!("cannot read the grants in schema `{schema}`"))?;
    for t in &tables {
        let (table, grantee): (String, String) = (t.get(0), t.get(1));
        problems.push(format!("{table} granted to {grantee}"));
    }
    c.push(
        &format!("{prefix}.grants"),
        &format!("USAGE on {schema} and its tables for {role} only; nothing for PUBLIC; ledger admin-only"),
        list_or(&problems, "ok"),
        problems.is_empty(),
    );
    if target.isolation == Isolation::Silo {
        let public_connect: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                                WHERE d.datname = current_database() AND a.grantee = 0)",
                &[],
            )
            .await
            .pg_context(|| "cannot read the database's grants".into())?
            .get(0);
        c.push(
            "db.silo.database_private",
            "PUBLIC may not connect to the dedicated database",
            if public_connect {
                "PUBLIC has privileges"
            } else {
                "private"
            },
            !public_connect,
        );
    }
    Ok(())
}

/// As the tenant: `search_path` is exactly the tier's schema, and (pool) no row of
/// another tenant is visible even with the tenant's own context set.
async fn tenant_checks(
    tenant: &Client,
    spec: &TenantSpec,
    target: &Target,
    prefix: &str,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let row = tenant
        .query_one(
            "SELECT current_user::text, current_setting('search_path'), current_schemas(false)::text[]",
            &[],
        )
        .await
        .pg_context(|| "cannot read the tenant's session".into())?;
    let (user, path, schemas): (String, String, Vec<String>) = (row.get(0), row.get(1), row.get(2));
    let pinned = schemas == [target.schema.clone()] && !path.contains(',');
    c.push(
        &format!("{prefix}.search_path"),
        &format!(
            "search_path is {} only (no public, no $user)",
            target.schema
        ),
        format!("search_path = {path} (user {user})"),
        pinned,
    );
    if spec.tier.isolation() == Isolation::Pool {
        let tables = tenant
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c
                 WHERE c.relnamespace = to_regnamespace($1) AND c.relkind IN ('r', 'p')
                   AND has_table_privilege(c.oid, 'SELECT') ORDER BY 1",
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
                        "SELECT set_config($1, $2, true)",
                        &[&sql::CONTEXT_SETTING, &spec.id.as_str()],
                    )
                    .await?;
                tenant
                    .query_one(
                        &format!("SELECT count(*) FROM {table} WHERE tenant_id <> $1"),
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
        c.push(
            "db.pool.no_foreign_rows",
            "as the tenant, no row of another tenant is visible",
            list_or(&foreign, "none visible"),
            foreign.is_empty(),
        );
    }
    Ok(())
}
