//! The database half of `tenantctl verify`: what the tier promises, read back from the
//! catalogs as the admin and tried as the tenant with exactly what its secret holds.
//!
//! Check names start with `db.`; the tier's own checks with `db.pool.`, `db.bridge.` or
//! `db.silo.`. A check that could not run (no connection) is an error, not a pass.

use tokio_postgres::Client;

use crate::db::connect::PgContext;
use crate::db::ident::ident;
use crate::db::migrations::MigrationSet;
use crate::db::{Database, DbSecret, Location, Target, scrub, sql};
use crate::isolation::{self, Model};
use crate::report::{Check, Checks, list_or};
use crate::workspace::TenantSpec;

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
        let mut c = Checks::new(spec.id.as_str());
        self.verify_inner(spec, secret, silo_admin, &mut c).await;
        // Last guard: no check may carry the tenant's password, whatever a driver said.
        for check in c.iter_mut() {
            check.actual = scrub(std::mem::take(&mut check.actual), &secret.password);
        }
        c.into_vec()
    }

    async fn verify_inner(
        &self,
        spec: &TenantSpec,
        secret: &DbSecret,
        silo_admin: Option<&DbSecret>,
        c: &mut Checks,
    ) {
        let role = spec.id.db_role();
        let model = isolation::of(spec.tier);
        let prefix = format!("db.{}", model.isolation());

        // The secret is what the application reads: its shape is part of the contract.
        let expected_secret = format!(
            "engine postgres, username {role}{}",
            model
                .secret_schema(&spec.id)
                .map(|s| format!(", schema {s}"))
                .unwrap_or_default()
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
        if model.in_shared_database() {
            if let (Some(h), Some(p)) = (&self.settings.host, self.settings.port) {
                where_expected = format!("{h}:{p}/{}", self.admin.dbname());
                secret_ok &= secret.host == *h && secret.port == p;
            }
        } else if let Some(local) = &self.settings.local_silo {
            let dbname = spec.id.db_name();
            where_expected = format!("{}:{}/{dbname}", local.host, local.port);
            secret_ok &=
                secret.host == local.host && secret.port == local.port && secret.dbname == dbname;
        }
        let shown_where = format!("{}:{}/{}", secret.host, secret.port, secret.dbname);
        c.add(
            "db.secret.fields",
            &if where_expected.is_empty() {
                expected_secret
            } else {
                format!("{expected_secret}, at {where_expected}")
            },
            format!("{actual_secret}, at {shown_where}"),
            secret_ok,
        );

        let target = match model.target(self, spec, silo_admin).await {
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

        if let Err(e) = role_checks(&admin, &role, model, &self.profile(spec.tier), c).await {
            c.error(
                "db.role.attributes",
                "readable role attributes",
                format!("{e:#}"),
            );
        }
        if let Err(e) = public_schema_check(&admin, &role, c).await {
            c.error(
                "db.public_schema",
                "readable grants of schema public",
                format!("{e:#}"),
            );
        }
        let tier_result = model.verify_catalog(&admin, &target, &role, c).await;
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
            format!("secret `{}`", spec.id.db_secret_name()),
            &self.tenant_tls,
        );
        match tenant_ep.connect("tenantctl verify").await {
            Ok(tenant) => {
                c.add(
                    "db.tenant.connect",
                    "the secret's login connects",
                    "connected",
                    true,
                );
                let checked = match tenant_checks(&tenant, &target, &prefix, c).await {
                    Ok(()) => model.verify_as_tenant(&tenant, spec, c).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = checked {
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
        c.add(
            "db.migrations.latest",
            format!("target `{}` at {latest}", target.name),
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
    model: &dyn Model,
    profile: &crate::tenant::TierProfile,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let row = admin
        .query_opt(
            "SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
                    CASE WHEN pg_catalog.to_regrole($2) IS NULL THEN false
                         ELSE pg_catalog.pg_has_role(r.oid, pg_catalog.to_regrole($2)::pg_catalog.oid, 'MEMBER') END,
                    COALESCE((SELECT true FROM pg_catalog.pg_auth_members m
                              WHERE m.member = r.oid AND m.roleid = pg_catalog.to_regrole($3)), false),
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relowner = r.oid)
                      + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace WHERE nspowner = r.oid),
                    r.rolconnlimit,
                    COALESCE((SELECT pg_catalog.split_part(c, '=', 2) FROM pg_catalog.unnest(r.rolconfig) c
                              WHERE c LIKE 'statement_timeout=%'), 'unset')
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&role, &sql::ADMIN_GROUP, &sql::POOL_GROUP],
        )
        .await
        .pg_context(|| format!("cannot read role `{role}`"))?;
    let Some(row) = row else {
        c.add(
            "db.role.exists",
            format!("login role {role}"),
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
    c.add(
        "db.role.attributes",
        "LOGIN only: not superuser, not BYPASSRLS, no CREATEROLE/CREATEDB/REPLICATION, not an admin",
        list_or(&extra, "LOGIN only"),
        extra.is_empty(),
    );
    // The tier's limits: a tier change (a move above all) must carry them over.
    let (limit, timeout): (i32, String) = (row.get(9), row.get(10));
    c.add(
        "db.role.limits",
        format!(
            "connection limit {}, statement_timeout {} ms (the tier's profile)",
            profile.max_db_connections, profile.statement_timeout_ms
        ),
        format!("connection limit {limit}, statement_timeout {timeout}"),
        i64::from(limit) == i64::from(profile.max_db_connections)
            && timeout == profile.statement_timeout_ms.to_string(),
    );
    c.add(
        "db.role.owns_nothing",
        "owns no table, view or schema",
        format!("owns {owned}"),
        owned == 0,
    );
    let want_pool = model.pool_member();
    c.add(
        &format!("db.{}.pool_membership", model.isolation()),
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

/// Nobody but its owner may create in schema `public` of the tenant's database (shared or
/// dedicated): an object a tenant creates there is one other sessions may run
/// (CVE-2018-1058). PostgreSQL granted CREATE there to PUBLIC before version 15, and
/// upgraded clusters keep it; provisioning revokes it.
async fn public_schema_check(admin: &Client, role: &str, c: &mut Checks) -> anyhow::Result<()> {
    let row = admin
        .query_opt(
            "SELECT pg_catalog.has_schema_privilege('public', n.oid, 'CREATE'),
                    pg_catalog.to_regrole(pg_catalog.quote_ident($1)) IS NOT NULL
                      AND pg_catalog.has_schema_privilege($1::pg_catalog.text, n.oid, 'CREATE'),
                    COALESCE((SELECT pg_catalog.array_agg(DISTINCT g.rolname::pg_catalog.text ORDER BY g.rolname::pg_catalog.text)
                              FROM pg_catalog.aclexplode(n.nspacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
                              WHERE a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
                                AND (g.rolname OPERATOR(pg_catalog.~~) $2 OR g.rolname = ANY ($3::pg_catalog.text[]))), '{}')
             FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public'",
            &[
                &role,
                &format!("{}%", like_escape(sql::ROLE_PREFIX)),
                &vec![sql::POOL_GROUP, sql::POOL_RO_GROUP],
            ],
        )
        .await
        .pg_context(|| "cannot read the grants of schema `public`".into())?;
    let expected = "nobody may create in schema public but its owner (not PUBLIC, no tenant)";
    let Some(row) = row else {
        c.add("db.public_schema", expected, "no schema public", true);
        return Ok(());
    };
    let (public, own, others): (bool, bool, Vec<String>) = (row.get(0), row.get(1), row.get(2));
    let mut problems = Vec::new();
    if public {
        problems.push("PUBLIC has CREATE".to_string());
    }
    for o in &others {
        problems.push(format!("{o} has CREATE"));
    }
    // Through a group of its own rather than PUBLIC or a direct grant.
    if own && !public && !others.iter().any(|o| o == role) {
        problems.push(format!("{role} has CREATE"));
    }
    c.add(
        "db.public_schema",
        expected,
        list_or(&problems, "ok"),
        problems.is_empty(),
    );
    Ok(())
}

/// `value` with LIKE's wildcards escaped (backslash is the default escape).
fn like_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Bridge and silo: the schema is the admin's, the tenant may use it, nobody else may.
pub(crate) async fn schema_checks(
    admin: &Client,
    target: &Target,
    role: &str,
    prefix: &str,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let schema = &target.schema;
    let row = admin
        .query_opt(
            "SELECT pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text, CURRENT_USER::pg_catalog.text,
                    pg_catalog.has_schema_privilege($2::pg_catalog.text, n.oid, 'USAGE'),
                    pg_catalog.has_schema_privilege($2::pg_catalog.text, n.oid, 'CREATE'),
                    COALESCE((SELECT pg_catalog.array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                                          ELSE pg_catalog.pg_get_userbyid(a.grantee)::pg_catalog.text END)
                              FROM pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner), '{}')
             FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
            &[&schema, &role],
        )
        .await
        .pg_context(|| format!("cannot read schema `{schema}`"))?;
    let Some(row) = row else {
        c.add(
            &format!("{prefix}.schema"),
            format!("schema {schema} exists"),
            "missing",
            false,
        );
        return Ok(());
    };
    let (owner, admin_user, usage, create, grantees): (String, String, bool, bool, Vec<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    c.add(
        &format!("{prefix}.schema_owner"),
        format!("schema {schema} owned by the admin ({admin_user}), not by {role}"),
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
                 SELECT c.relname::pg_catalog.text AS obj, c.relowner AS owner, a.grantee
                 FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
                 WHERE c.relnamespace = pg_catalog.to_regnamespace($1)
                 UNION ALL
                 SELECT pg_catalog.textcat(p.proname::pg_catalog.text, '()'), p.proowner, a.grantee
                 FROM pg_catalog.pg_proc p,
                      pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                 WHERE p.pronamespace = pg_catalog.to_regnamespace($1)
             )
             SELECT obj, CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(grantee)::pg_catalog.text END
             FROM grants
             WHERE grantee <> owner
               AND (CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(grantee)::pg_catalog.text END <> $2
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
    c.add(
        &format!("{prefix}.grants"),
        format!("USAGE on {schema} and its tables for {role} only; nothing for PUBLIC; ledger admin-only"),
        list_or(&problems, "ok"),
        problems.is_empty(),
    );
    Ok(())
}

/// As the tenant: `search_path` is exactly the tier's schema (the model adds its own).
async fn tenant_checks(
    tenant: &Client,
    target: &Target,
    prefix: &str,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let row = tenant
        .query_one(
            "SELECT CURRENT_USER::pg_catalog.text, pg_catalog.current_setting('search_path'),
                    pg_catalog.current_schemas(false)::pg_catalog.text[]",
            &[],
        )
        .await
        .pg_context(|| "cannot read the tenant's session".into())?;
    let (user, path, schemas): (String, String, Vec<String>) = (row.get(0), row.get(1), row.get(2));
    let pinned = schemas == [target.schema.clone()] && !path.contains(',');
    c.add(
        &format!("{prefix}.search_path"),
        format!(
            "search_path is {} only (no public, no $user)",
            target.schema
        ),
        format!("search_path = {path} (user {user})"),
        pinned,
    );
    Ok(())
}
