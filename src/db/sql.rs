//! The SQL that makes a tier's isolation real, in one place so a reviewer can read the
//! whole security model here.
//!
//! Objects tenantctl owns:
//!
//! - schema `tenantctl` in the shared database: `target_status` (the last migration error
//!   per target). Nothing granted to anyone.
//! - role `tenantctl_admin` (NOLOGIN): the admin login is made a member. Pool tables get
//!   an extra policy for it, so migrations, backfills and offboarding can see every row
//!   even when the admin is not a superuser (RDS masters are not, and cannot bypass RLS).
//! - pool: schema `pool`, role `tenantctl_pool` (NOLOGIN, holds the table grants; every
//!   starter login is a member), role `tenantctl_pool_ro` (SELECT only: a frozen
//!   starter's group), function `pool.current_tenant()`.
//! - role `tenantctl_frozen` (NOLOGIN): the freeze marker. A member login gets read
//!   privileges only, whatever provisioning or a migration grants afterwards.
//! - per tenant: login role `tenant_<id>` (never owner, superuser, BYPASSRLS, CREATEDB or
//!   CREATEROLE; connection limit and statement timeout from the tier profile);
//!   bridge and silo: schema `tenant_<id>` owned by the admin, usage granted to the
//!   tenant's role only.
//! - per target: `<schema>.schema_migrations`, readable by the admin only.
//!
//! Why the pool policy is bound to the login: `app.current_tenant` is a session variable
//! any client can set, so a policy on it alone lets a tenant's credentials read another
//! tenant by setting the wrong value. `pool.current_tenant()` returns the context only
//! when it names the tenant whose login role is running the query (`tenant_<context>` =
//! `current_user`), and NULL otherwise (unset, empty, another tenant), and NULL matches
//! no row. The function is a plain SQL expression so the planner inlines it and still uses
//! indexes on `tenant_id`.
//!
//! Hostile tenants beyond RLS:
//!
//! - Nothing here runs a tenant-creatable object. Admin sessions pin `search_path` to
//!   `pg_catalog, pg_temp` at connect time (see `db::connect`), every catalog function
//!   below is called as `pg_catalog.<name>` anyway, and the post-migration steps pin the
//!   path again for the rest of the migration's transaction. Migrations themselves run
//!   with `search_path` = the target's schema, where tenants cannot create anything (the
//!   pool group and bridge/silo logins have USAGE only). Schema `public` of the databases
//!   tenantctl provisions is closed to PUBLIC and tenants ([`lock_public_schema`]).
//! - The pool's safety rules ([`pool_rule`]): keys include `tenant_id`, identity columns
//!   are not writable by tenants, sequences are not readable by them, no SECURITY
//!   DEFINER function and no foreign permissive policy. The post-migration step refuses
//!   a migration that breaks one (rolled back, nothing applied) and `verify` checks each.

use crate::db::connect::ADMIN_SEARCH_PATH;
use crate::db::ident::{ident, literal, reg_literal};

pub const CONTROL_SCHEMA: &str = "tenantctl";
pub const POOL_SCHEMA: &str = "pool";
pub const POOL_GROUP: &str = "tenantctl_pool";
/// Read-only access to the pool tables: what a frozen starter keeps during a move.
pub const POOL_RO_GROUP: &str = "tenantctl_pool_ro";
/// The freeze marker: a login that is a member has its writes stopped (see `db::data`).
pub const FROZEN_GROUP: &str = "tenantctl_frozen";
pub const ADMIN_GROUP: &str = "tenantctl_admin";
pub const LEDGER: &str = "schema_migrations";
pub const CONTEXT_SETTING: &str = "app.current_tenant";
pub const POOL_POLICY: &str = "tenant_isolation";
pub const ADMIN_POLICY: &str = "tenantctl_admin";
pub const TENANT_CHECK: &str = "tenantctl_tenant_id";
/// The prefix of every tenant login role; `pool.current_tenant()` depends on it.
pub const ROLE_PREFIX: &str = "tenant_";

/// Advisory lock keys (the two-int form, so they cannot collide with an application's
/// single bigint keys). Session-level `(LOCK_CLASS, LOCK_RUN)`: exclusive for a whole
/// `db migrate` run, shared for provisioning. Transaction-level `(LOCK_CLASS,
/// LOCK_SETUP)`: creating shared objects. `(TARGET_LOCK_CLASS, hashtext(target))`: one
/// target's migration transaction.
pub const LOCK_CLASS: i32 = 0x7463_746c; // "tctl"
pub const LOCK_RUN: i32 = 1;
pub const LOCK_SETUP: i32 = 2;
pub const TARGET_LOCK_CLASS: i32 = 0x7463_746d;

/// The transaction-level lock a target's migrations take; provisioning takes it too
/// before touching the target's tables.
pub fn target_lock(schema: &str) -> String {
    format!(
        "SELECT pg_catalog.pg_advisory_xact_lock({TARGET_LOCK_CLASS}, pg_catalog.hashtext({}));\n",
        literal(schema)
    )
}

/// Shared objects in the shared database. Runs under the setup lock.
pub fn control_setup() -> String {
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS {control};
REVOKE ALL ON SCHEMA {control} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {control}.target_status (
    target text PRIMARY KEY,
    tier text NOT NULL,
    last_error text,
    last_error_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {control}.target_status FROM PUBLIC;
{admin_role}
DO $tenantctl$
BEGIN
    -- Superusers are members of every role already.
    IF NOT pg_catalog.pg_has_role(CURRENT_USER, {admin_lit}, 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT %I TO %I', {admin_lit}, CURRENT_USER);
    END IF;
END $tenantctl$;
{public}"#,
        control = ident(CONTROL_SCHEMA),
        admin_role = create_group_role(ADMIN_GROUP),
        admin_lit = literal(ADMIN_GROUP),
        public = lock_public_schema(None),
    )
}

/// Nobody may create objects in schema `public` of the database this runs in: not PUBLIC
/// (PostgreSQL granted it CREATE there before version 15, and upgraded clusters, RDS
/// included, keep that), nor the tenant's login `role`. An object a tenant can create
/// where other sessions look up names is an object it can make them run (CVE-2018-1058);
/// tenantctl's own sessions never search `public`, the application's might. Where the
/// admin may not revoke (not the schema's owner), PostgreSQL only warns, and `verify`
/// reports it (`db.public_schema`).
pub fn lock_public_schema(role: Option<&str>) -> String {
    let role = role.map(|r| format!(", {}", ident(r))).unwrap_or_default();
    format!(
        r#"DO $tenantctl$
BEGIN
    IF pg_catalog.to_regnamespace('public') IS NOT NULL THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC{role};
    END IF;
END $tenantctl$;
"#
    )
}

/// `CREATE ROLE` that tolerates the role existing (or being created concurrently from
/// another database of the same cluster: roles are cluster-wide).
fn create_group_role(role: &str) -> String {
    format!(
        r#"DO $tenantctl$
BEGIN
    CREATE ROLE {role} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $tenantctl$;
"#,
        role = ident(role)
    )
}

/// The pool: schema, group role, context function, ledger.
pub fn pool_setup() -> String {
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS {pool};
REVOKE ALL ON SCHEMA {pool} FROM PUBLIC;
{group}
GRANT USAGE ON SCHEMA {pool} TO {group_id};
{ro_group}
GRANT USAGE ON SCHEMA {pool} TO {ro_id};
CREATE OR REPLACE FUNCTION {pool}.current_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $tenantctl$
        SELECT CASE
            WHEN pg_catalog.current_setting({setting}, true) OPERATOR(pg_catalog.<>) ''
             AND CAST(current_user AS pg_catalog.text) OPERATOR(pg_catalog.=)
                 pg_catalog.textcat({prefix}, pg_catalog.current_setting({setting}, true))
            THEN pg_catalog.current_setting({setting}, true)
        END
    $tenantctl$;
COMMENT ON FUNCTION {pool}.current_tenant() IS
    'The tenant context (app.current_tenant) if it names the tenant of the login running the query, else NULL. Managed by tenantctl.';
REVOKE ALL ON FUNCTION {pool}.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {pool}.current_tenant() TO {group_id}, {ro_id};
{ledger}
"#,
        pool = ident(POOL_SCHEMA),
        group = create_group_role(POOL_GROUP),
        group_id = ident(POOL_GROUP),
        ro_group = create_group_role(POOL_RO_GROUP),
        ro_id = ident(POOL_RO_GROUP),
        prefix = literal(ROLE_PREFIX),
        setting = literal(CONTEXT_SETTING),
        ledger = ledger_ddl(POOL_SCHEMA),
    )
}

/// The per-target ledger. Nobody but the admin may read or write it.
pub fn ledger_ddl(schema: &str) -> String {
    let table = format!("{}.{}", ident(schema), ident(LEDGER));
    format!(
        r#"CREATE TABLE IF NOT EXISTS {table} (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL
);
REVOKE ALL ON {table} FROM PUBLIC;
"#
    )
}

/// A tenant's login role with everything but its password. `admin_is_superuser`: only a
/// superuser may even mention SUPERUSER/REPLICATION/BYPASSRLS in ALTER ROLE; a
/// non-superuser creator cannot have granted them, and `verify` checks they are off.
pub fn tenant_role(
    role: &str,
    connection_limit: u32,
    statement_timeout_ms: u32,
    search_path: &str,
    admin_is_superuser: bool,
) -> String {
    let id = ident(role);
    let privileged = if admin_is_superuser {
        " NOSUPERUSER NOREPLICATION NOBYPASSRLS"
    } else {
        ""
    };
    format!(
        r#"DO $tenantctl$
BEGIN
    CREATE ROLE {id} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $tenantctl$;
ALTER ROLE {id} WITH LOGIN NOCREATEDB NOCREATEROLE INHERIT CONNECTION LIMIT {connection_limit}{privileged};
ALTER ROLE {id} SET search_path TO {path};
ALTER ROLE {id} SET statement_timeout TO {statement_timeout_ms};
"#,
        path = ident(search_path),
    )
}

/// The tenant may connect to the database this runs in (needed where PUBLIC's CONNECT is
/// revoked, as in silo databases).
pub fn grant_connect(role: &str) -> String {
    format!(
        r#"DO $tenantctl$
BEGIN
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %s', pg_catalog.current_database(), {id_lit});
END $tenantctl$;
"#,
        id_lit = literal(&ident(role)),
    )
}

/// Starter: the login joins the pool group, or, while it carries the freeze marker, the
/// read-only pool group instead (never both).
pub fn pool_membership(role: &str) -> String {
    format!(
        r#"DO $tenantctl$
DECLARE
    frozen boolean := pg_catalog.to_regrole({frozen_lit}) IS NOT NULL
        AND pg_catalog.pg_has_role({name_lit}, {frozen_lit}, 'MEMBER');
    keep text := CASE WHEN frozen THEN {ro_lit} ELSE {group_lit} END;
    drop text := CASE WHEN frozen THEN {group_lit} ELSE {ro_lit} END;
BEGIN
    EXECUTE pg_catalog.format('GRANT %I TO %I', keep, {name_lit});
    IF pg_catalog.to_regrole(pg_catalog.quote_ident(drop)) IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                   WHERE m.roleid = pg_catalog.to_regrole(pg_catalog.quote_ident(drop))
                     AND m.member = pg_catalog.to_regrole({role_lit})) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM %I', drop, {name_lit});
    END IF;
END $tenantctl$;
"#,
        frozen_lit = literal(FROZEN_GROUP),
        role_lit = literal(&ident(role)),
        name_lit = literal(role),
        ro_lit = literal(POOL_RO_GROUP),
        group_lit = literal(POOL_GROUP),
    )
}

/// The tenant's write privileges on its schema's tables: granted, or revoked while it
/// carries the freeze marker (SELECT stays either way).
pub fn tenant_write_grants(schema: &str, role: &str) -> String {
    format!(
        r#"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r};
DO $tenantctl$
BEGIN
    IF pg_catalog.to_regrole({frozen_lit}) IS NOT NULL
       AND pg_catalog.pg_has_role({name_lit}, {frozen_lit}, 'MEMBER') THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {s} FROM {r};
    ELSE
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};
    END IF;
END $tenantctl$;
"#,
        s = ident(schema),
        r = ident(role),
        frozen_lit = literal(FROZEN_GROUP),
        name_lit = literal(role),
    )
}

/// A move's retained pool source: the login leaves the pool group and the read-only one.
pub fn leave_pool_groups(role: &str) -> String {
    let mut body = leave_pool(role);
    body.push_str(&format!(
        r#"DO $tenantctl$
BEGIN
    IF pg_catalog.to_regrole({group}) IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_auth_members m
        WHERE m.roleid = pg_catalog.to_regrole({group}) AND m.member = pg_catalog.to_regrole({role_lit})
    ) THEN
        REVOKE {group_id} FROM {role_id};
    END IF;
END $tenantctl$;
"#,
        group = literal(POOL_RO_GROUP),
        group_id = ident(POOL_RO_GROUP),
        role_lit = literal(&ident(role)),
        role_id = ident(role),
    ));
    body
}

/// Growth and enterprise: a login that used to be a starter leaves the pool group.
pub fn leave_pool(role: &str) -> String {
    format!(
        r#"DO $tenantctl$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_auth_members m
        WHERE m.roleid = pg_catalog.to_regrole({group}) AND m.member = pg_catalog.to_regrole({role_lit})
    ) THEN
        REVOKE {group_id} FROM {role_id};
    END IF;
END $tenantctl$;
"#,
        group = literal(POOL_GROUP),
        group_id = ident(POOL_GROUP),
        role_lit = literal(&ident(role)),
        role_id = ident(role),
    )
}

/// Bridge and silo: the tenant's schema, owned by the admin (the tenant can use its
/// tables but not drop or alter them), nothing for PUBLIC.
pub fn tenant_schema(schema: &str, role: &str) -> String {
    format!(
        r#"CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION CURRENT_USER;
ALTER SCHEMA {s} OWNER TO CURRENT_USER;
REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
GRANT USAGE ON SCHEMA {s} TO {r};
{ledger}"#,
        s = ident(schema),
        r = ident(role),
        ledger = ledger_ddl(schema),
    )
}

/// A move's retained source schema: the tenant loses every privilege on it and its
/// tables (its rows stay for `move --rollback` until the move is finished).
pub fn hide_schema(schema: &str, role: &str) -> String {
    format!(
        r#"DO $tenantctl$
BEGIN
    IF pg_catalog.to_regnamespace({schema_reg}) IS NOT NULL THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r};
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {r};
        REVOKE ALL ON SCHEMA {s} FROM {r};
    END IF;
END $tenantctl$;
"#,
        schema_reg = reg_literal(schema),
        s = ident(schema),
        r = ident(role),
    )
}

/// A schema of the tenant's own (bridge, silo): connect, the schema, its tables' check
/// and grants, under the target's lock.
pub fn own_schema_structure(schema: &str, role: &str, tenant: &str) -> String {
    let mut body = grant_connect(role);
    body.push_str(&target_lock(schema));
    body.push_str(&tenant_schema(schema, role));
    body.push_str(&tenant_after_migration(schema, role, tenant));
    body
}

/// A silo database belongs to one tenant: nobody else may connect or use `public`.
pub fn silo_database_lockdown() -> String {
    r#"DO $tenantctl$
BEGIN
    EXECUTE pg_catalog.format('REVOKE ALL ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
END $tenantctl$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
"#
    .to_string()
}

/// The pool's safety rules, by the name their refusals and `verify`'s `db.pool.<rule>`
/// checks carry. Each closes a way for one starter tenant to learn about or interfere
/// with another through what the tables share, beyond the rows RLS filters.
pub mod pool_rule {
    /// Primary keys, unique constraints and indexes, exclusion constraints include
    /// `tenant_id`: otherwise one tenant's insert fails on another tenant's value, which
    /// reveals the value (probe) or takes it first (squat).
    pub const KEYS: &str = "keys";
    /// Identity and generated columns are neither insertable nor updatable by tenants
    /// (no `OVERRIDING SYSTEM VALUE`: ids come from the shared sequence only).
    pub const IDENTITY: &str = "identity";
    /// Tenants have no privilege on pool sequences (a sequence counts every tenant's
    /// rows), and no column takes its default from `nextval()`, which would need one.
    pub const SEQUENCES: &str = "sequences";
    /// No `SECURITY DEFINER` function in the pool: every starter may execute every pool
    /// function, and such a function runs with the admin's rights, past RLS.
    pub const FUNCTIONS: &str = "functions";
    /// No permissive policy but tenantctl's two: permissive policies are OR-ed, so any
    /// other one widens what a tenant sees.
    pub const POLICY: &str = "policy";
}

/// The tenant policy's expression as PostgreSQL prints it back (`pg_get_expr`) when
/// `pool` is not on the search_path (admin sessions, the post-migration step).
pub const POOL_POLICY_EXPR: &str = "(tenant_id = pool.current_tenant())";

/// Runs after every migration on the pool target, in the same transaction (and at every
/// provisioning of a starter, to repair drift).
///
/// First it refuses, naming the object and the rule, what would let one tenant reach
/// another: a materialized view or foreign table (RLS cannot protect them), a table
/// without `tenant_id text not null`, and a breach of a [`pool_rule`]. A refusal is an
/// error, so the migration's transaction rolls back and nothing is applied.
///
/// Then it makes the pool what tenantctl promises: RLS enabled and forced on every
/// table, the tenant policy (USING and WITH CHECK) and the admin policy exactly as
/// tenantctl writes them (recreated if changed); views with the caller's rights (a view
/// owned by the admin would otherwise read through the admin policy). The pool group
/// gets SELECT and DELETE on the tables, INSERT and UPDATE on every column but identity
/// and generated ones (so `tenant_id` changes only as the policy's WITH CHECK allows),
/// EXECUTE on the functions, nothing on sequences or the ledger; PUBLIC gets nothing.
///
/// A primary key on a lone identity column is tolerated here (tenants cannot write such
/// a column, so it can be neither probed nor squatted, and migrations written before
/// the rule must still build an install), but `verify` reports it: rows moved into the
/// pool keep their ids, which collide across tenants under a global key.
///
/// The step first pins `search_path` to the catalogs for the rest of the transaction,
/// whatever the migration set it to.
pub fn pool_after_migration() -> String {
    let pool = ident(POOL_SCHEMA);
    format!(
        r#"
SELECT pg_catalog.set_config('search_path', {safe_path}, true);
DO $tenantctl$
DECLARE
    pool_ns oid := {pool_reg}::pg_catalog.regnamespace;
    r record;
    cols text;
BEGIN
    FOR r IN
        SELECT c.oid, c.oid::pg_catalog.regclass AS t, c.relkind
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = pool_ns
          AND c.relkind IN ('r', 'p', 'm', 'f')
          AND c.relname OPERATOR(pg_catalog.<>) {ledger}
        ORDER BY c.relname
    LOOP
        IF r.relkind IN ('m', 'f') THEN
            RAISE EXCEPTION '% cannot live in the pool: row-level security cannot protect a materialized view or foreign table', r.t;
        END IF;
        PERFORM 1 FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = r.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          AND a.attnotnull AND a.atttypid = 'pg_catalog.text'::pg_catalog.regtype;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'table % has no column tenant_id text not null', r.t
                USING HINT = 'every table carries tenant_id text not null: row-level security filters on it in the pool, and rows can move between tiers';
        END IF;
    END LOOP;

    FOR r IN
        SELECT i.indrelid::pg_catalog.regclass AS t,
               CASE WHEN i.indisprimary THEN 'primary key'
                    WHEN i.indisexclusion THEN 'exclusion constraint'
                    WHEN k.oid IS NOT NULL THEN 'unique constraint'
                    ELSE 'unique index' END AS kind,
               pg_catalog.quote_ident(COALESCE(k.conname, ic.relname)) AS name,
               (SELECT pg_catalog.string_agg(pg_catalog.pg_get_indexdef(i.indexrelid, n, true), ', ' ORDER BY n)
                FROM pg_catalog.generate_series(1, i.indnkeyatts::pg_catalog.int4) n) AS cols
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
        JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        LEFT JOIN pg_catalog.pg_constraint k
               ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
        WHERE c.relnamespace = pool_ns AND c.relkind IN ('r', 'p')
          AND c.relname OPERATOR(pg_catalog.<>) {ledger}
          AND (i.indisunique OR i.indisexclusion)
          AND NOT EXISTS (
              SELECT 1 FROM pg_catalog.pg_attribute a, pg_catalog.generate_series(0, i.indnkeyatts - 1) n
              WHERE a.attrelid = i.indrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped
                AND a.attnum = i.indkey[n])
          AND NOT (i.indisprimary AND i.indnkeyatts = 1 AND EXISTS (
              SELECT 1 FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0] AND a.attidentity <> ''))
        ORDER BY c.relname, ic.relname
    LOOP
        RAISE EXCEPTION 'pool rule "{keys}": % % of table % is on (%), without tenant_id', r.kind, r.name, r.t, r.cols
            USING HINT = 'in the pool, every primary key, unique constraint, unique index and exclusion constraint includes tenant_id (e.g. UNIQUE (tenant_id, email)): otherwise one tenant''s insert fails on another tenant''s value, which reveals it or takes it first';
    END LOOP;

    FOR r IN
        SELECT c.oid::pg_catalog.regclass AS t, pg_catalog.quote_ident(a.attname) AS col,
               s.oid::pg_catalog.regclass AS seq
        FROM pg_catalog.pg_attrdef ad
        JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
        JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
        JOIN pg_catalog.pg_depend d
             ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
            AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
        JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
        WHERE c.relnamespace = pool_ns AND c.relkind IN ('r', 'p')
        ORDER BY c.relname, a.attnum
    LOOP
        RAISE EXCEPTION 'pool rule "{sequences}": column %.% takes its default from sequence % (serial or nextval())', r.t, r.col, r.seq
            USING HINT = 'tenants get no privilege on pool sequences (a sequence counts every tenant''s rows), and nextval() would need one: use GENERATED ALWAYS AS IDENTITY, whose default needs no privilege';
    END LOOP;

    FOR r IN
        SELECT p.oid::pg_catalog.regprocedure AS f
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = pool_ns AND p.prosecdef
        ORDER BY p.proname
    LOOP
        RAISE EXCEPTION 'pool rule "{functions}": function % is SECURITY DEFINER', r.f
            USING HINT = 'every starter tenant may execute every pool function, and a SECURITY DEFINER function runs with its owner''s rights, past row-level security: make it SECURITY INVOKER, or keep it out of schema pool';
    END LOOP;

    FOR r IN
        SELECT pg_catalog.quote_ident(p.polname) AS name, p.polrelid::pg_catalog.regclass AS t
        FROM pg_catalog.pg_policy p
        JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
        WHERE c.relnamespace = pool_ns AND p.polpermissive
          AND p.polname OPERATOR(pg_catalog.<>) ALL (ARRAY[{policy}, {admin_policy}]::pg_catalog.name[])
        ORDER BY c.relname, p.polname
    LOOP
        RAISE EXCEPTION 'pool rule "{policy_rule}": permissive policy % on table % is not one of tenantctl''s', r.name, r.t
            USING HINT = 'permissive policies are OR-ed together, so any besides tenant_isolation and tenantctl_admin widens what a tenant sees: make it AS RESTRICTIVE, or drop it';
    END LOOP;

    FOR r IN
        SELECT c.oid, c.oid::pg_catalog.regclass AS t, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
               COALESCE(c.reloptions, '{{}}') AS opts
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = pool_ns
          AND c.relkind IN ('r', 'p', 'v')
          AND c.relname OPERATOR(pg_catalog.<>) {ledger}
        ORDER BY c.relname
    LOOP
        IF r.relkind = 'v' THEN
            IF NOT ('security_invoker=true' = ANY (r.opts) OR 'security_invoker=on' = ANY (r.opts)) THEN
                EXECUTE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true)', r.t);
            END IF;
            -- Writes through a view are checked against the table's column privileges
            -- (security_invoker), so the identity rule holds there too.
            EXECUTE pg_catalog.format('GRANT INSERT, UPDATE ON %s TO %I', r.t, {group_lit});
            CONTINUE;
        END IF;
        IF NOT r.relrowsecurity THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.t);
        END IF;
        IF NOT r.relforcerowsecurity THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', r.t);
        END IF;
        -- tenantctl's policies, exactly as written below: one changed behind tenantctl's
        -- back (or by a migration) is dropped and written again.
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                   WHERE p.polrelid = r.oid AND p.polname = {policy}
                     AND NOT (p.polpermissive AND p.polcmd = '*' AND p.polroles = '{{0}}'::pg_catalog.oid[]
                              AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) IS NOT DISTINCT FROM {policy_expr}
                              AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) IS NOT DISTINCT FROM {policy_expr})) THEN
            EXECUTE pg_catalog.format('DROP POLICY %I ON %s', {policy}, r.t);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = r.oid AND polname = {policy}) THEN
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (tenant_id OPERATOR(pg_catalog.=) {pool_q}.current_tenant()) WITH CHECK (tenant_id OPERATOR(pg_catalog.=) {pool_q}.current_tenant())',
                {policy}, r.t);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                   WHERE p.polrelid = r.oid AND p.polname = {admin_policy}
                     AND NOT (p.polpermissive AND p.polcmd = '*'
                              AND p.polroles = ARRAY[pg_catalog.to_regrole({admin_group_reg})::pg_catalog.oid]
                              AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) IS NOT DISTINCT FROM 'true'
                              AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) IS NOT DISTINCT FROM 'true')) THEN
            EXECUTE pg_catalog.format('DROP POLICY %I ON %s', {admin_policy}, r.t);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = r.oid AND polname = {admin_policy}) THEN
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO %I USING (true) WITH CHECK (true)',
                {admin_policy}, r.t, {admin_group});
        END IF;
        -- Writes: every column but identity and generated ones. Revoking the table-wide
        -- privileges first also drops column privileges granted before.
        EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE ON %s FROM %I', r.t, {group_lit});
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attidentity = '' AND a.attgenerated = '';
        IF cols IS NOT NULL THEN
            EXECUTE pg_catalog.format('GRANT INSERT (%s), UPDATE (%s) ON %s TO %I', cols, cols, r.t, {group_lit});
        END IF;
    END LOOP;
END $tenantctl$;
REVOKE ALL ON ALL TABLES IN SCHEMA {pool} FROM PUBLIC;
GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA {pool} TO {group};
{ro_role}
GRANT USAGE ON SCHEMA {pool} TO {ro};
GRANT SELECT ON ALL TABLES IN SCHEMA {pool} TO {ro};
REVOKE ALL ON {pool}.{ledger_id} FROM {ro};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA {pool} FROM PUBLIC, {group}, {ro};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {pool} FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {pool} TO {group};
REVOKE ALL ON {pool}.{ledger_id} FROM {group};
"#,
        safe_path = literal(ADMIN_SEARCH_PATH),
        pool_reg = reg_literal(POOL_SCHEMA),
        // Inside format(): the schema as a quoted identifier, with `'` doubled for the
        // literal it sits in (it has none).
        pool_q = ident(POOL_SCHEMA),
        ledger = literal(LEDGER),
        ledger_id = ident(LEDGER),
        policy = literal(POOL_POLICY),
        policy_expr = literal(POOL_POLICY_EXPR),
        admin_policy = literal(ADMIN_POLICY),
        admin_group = literal(ADMIN_GROUP),
        admin_group_reg = reg_literal(ADMIN_GROUP),
        group = ident(POOL_GROUP),
        group_lit = literal(POOL_GROUP),
        ro = ident(POOL_RO_GROUP),
        ro_role = create_group_role(POOL_RO_GROUP),
        keys = pool_rule::KEYS,
        sequences = pool_rule::SEQUENCES,
        functions = pool_rule::FUNCTIONS,
        policy_rule = pool_rule::POLICY,
    )
}

/// Runs after every migration on a bridge or silo target, in the same transaction: every
/// table carries `tenant_id text not null` and a CHECK that it equals this tenant (rows
/// stay copyable between tiers, and `UPDATE ... SET tenant_id = 'other'` fails here as it
/// does in the pool); the tenant's role gets DML on the tables and EXECUTE on functions
/// (which PostgreSQL grants to PUBLIC by default: revoked), never access to the ledger.
/// Like the pool's, the step pins `search_path` to the catalogs first.
pub fn tenant_after_migration(schema: &str, role: &str, tenant: &str) -> String {
    let s = ident(schema);
    let r = ident(role);
    format!(
        r#"
SELECT pg_catalog.set_config('search_path', {safe_path}, true);
DO $tenantctl$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid, c.oid::pg_catalog.regclass AS t
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = {schema_reg}::pg_catalog.regnamespace
          AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
          AND c.relname OPERATOR(pg_catalog.<>) {ledger}
    LOOP
        PERFORM 1 FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = r.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          AND a.attnotnull AND a.atttypid = 'pg_catalog.text'::pg_catalog.regtype;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'table % has no column tenant_id text not null', r.t
                USING HINT = 'every table carries tenant_id text not null, so the same migrations serve every tier and rows can move between tiers';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = r.oid AND conname = {check}) THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (tenant_id OPERATOR(pg_catalog.=) %L)', r.t, {check}, {tenant});
        END IF;
    END LOOP;
END $tenantctl$;
{writes}GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r};
REVOKE ALL ON {s}.{ledger_id} FROM PUBLIC, {r};
"#,
        safe_path = literal(ADMIN_SEARCH_PATH),
        schema_reg = reg_literal(schema),
        ledger = literal(LEDGER),
        ledger_id = ident(LEDGER),
        check = literal(TENANT_CHECK),
        tenant = literal(tenant),
        writes = tenant_write_grants(schema, role),
    )
}

/// Offboarding a starter: delete the tenant's rows from every pool table. Foreign keys
/// between pool tables make the order matter and it is not known here, so tables whose
/// delete violates a foreign key are retried after the others, until a pass deletes
/// nothing new.
pub fn pool_delete_rows(tenant: &str) -> String {
    format!(
        r#"
DO $tenantctl$
DECLARE
    r record;
    pending boolean := true;
    progressed boolean;
    passes integer := 0;
BEGIN
    WHILE pending AND passes < 50 LOOP
        pending := false;
        progressed := false;
        passes := passes + 1;
        FOR r IN
            SELECT c.oid::pg_catalog.regclass AS t
            FROM pg_catalog.pg_class c
            WHERE c.relnamespace = {pool_reg}::pg_catalog.regnamespace
              AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND c.relname OPERATOR(pg_catalog.<>) {ledger}
              AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        LOOP
            BEGIN
                EXECUTE pg_catalog.format('DELETE FROM %s WHERE tenant_id OPERATOR(pg_catalog.=) %L', r.t, {tenant});
                progressed := true;
            EXCEPTION WHEN foreign_key_violation THEN
                pending := true;
            END;
        END LOOP;
        IF pending AND NOT progressed THEN
            RAISE EXCEPTION 'cannot delete the rows of tenant %: foreign keys form a cycle', {tenant};
        END IF;
    END LOOP;
END $tenantctl$;
"#,
        pool_reg = reg_literal(POOL_SCHEMA),
        ledger = literal(LEDGER),
        tenant = literal(tenant),
    )
}

/// Offboarding: the login can no longer log in, its sessions end (best effort: needs
/// pg_signal_backend), its privileges go, then the role.
pub fn drop_tenant_role(role: &str) -> String {
    let id = ident(role);
    format!(
        r#"
DO $tenantctl$
BEGIN
    IF pg_catalog.to_regrole({role_lit}) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE pg_catalog.format('ALTER ROLE %s NOLOGIN', {id_lit});
    BEGIN
        PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
        WHERE usename = {name_lit} AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid();
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    EXECUTE pg_catalog.format('REVOKE ALL ON DATABASE %I FROM %s', pg_catalog.current_database(), {id_lit});
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_auth_members m
        WHERE m.roleid = pg_catalog.to_regrole({group}) AND m.member = pg_catalog.to_regrole({role_lit})
    ) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM %s', {group}, {id_lit});
    END IF;
    EXECUTE pg_catalog.format('DROP ROLE %s', {id_lit});
END $tenantctl$;
"#,
        role_lit = literal(&id),
        id_lit = literal(&id),
        name_lit = literal(role),
        group = literal(POOL_GROUP),
    )
}
