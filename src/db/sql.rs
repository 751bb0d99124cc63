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
        "SELECT pg_advisory_xact_lock({TARGET_LOCK_CLASS}, hashtext({}));\n",
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
    IF NOT pg_has_role(current_user, {admin_lit}, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', {admin_lit}, current_user);
    END IF;
END $tenantctl$;
"#,
        control = ident(CONTROL_SCHEMA),
        admin_role = create_group_role(ADMIN_GROUP),
        admin_lit = literal(ADMIN_GROUP),
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
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %s', current_database(), {id_lit});
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

/// Growth and enterprise: a login that used to be a starter leaves the pool group.
pub fn leave_pool(role: &str) -> String {
    format!(
        r#"DO $tenantctl$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_auth_members m
        WHERE m.roleid = to_regrole({group}) AND m.member = to_regrole({role_lit})
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

/// A silo database belongs to one tenant: nobody else may connect or use `public`.
pub fn silo_database_lockdown() -> String {
    r#"DO $tenantctl$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
END $tenantctl$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
"#
    .to_string()
}

/// Runs after every migration on the pool target, in the same transaction: every table
/// carries `tenant_id text not null`, has RLS enabled and forced, the tenant policy (USING
/// and WITH CHECK) and the admin policy; views run with the caller's rights (a view
/// owned by the admin would otherwise read through the admin policy); tables RLS cannot
/// protect are refused. Then the pool group gets DML on the tables, never on the ledger.
pub fn pool_after_migration() -> String {
    let pool = ident(POOL_SCHEMA);
    format!(
        r#"
DO $tenantctl$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid, c.oid::regclass AS t, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
               coalesce(c.reloptions, '{{}}') AS opts
        FROM pg_class c
        WHERE c.relnamespace = {pool_reg}::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND c.relname <> {ledger}
    LOOP
        IF r.relkind IN ('m', 'f') THEN
            RAISE EXCEPTION '% cannot live in the pool: row-level security cannot protect a materialized view or foreign table', r.t;
        END IF;
        IF r.relkind = 'v' THEN
            IF NOT ('security_invoker=true' = ANY (r.opts) OR 'security_invoker=on' = ANY (r.opts)) THEN
                EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', r.t);
            END IF;
            CONTINUE;
        END IF;
        PERFORM 1 FROM pg_attribute a
        WHERE a.attrelid = r.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          AND a.attnotnull AND a.atttypid = 'text'::regtype;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'table % has no column tenant_id text not null', r.t
                USING HINT = 'every table carries tenant_id text not null: row-level security filters on it in the pool, and rows can move between tiers';
        END IF;
        IF NOT r.relrowsecurity THEN
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.t);
        END IF;
        IF NOT r.relforcerowsecurity THEN
            EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', r.t);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = r.oid AND polname = {policy}) THEN
            EXECUTE format(
                'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (tenant_id = {pool_q}.current_tenant()) WITH CHECK (tenant_id = {pool_q}.current_tenant())',
                {policy}, r.t);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = r.oid AND polname = {admin_policy}) THEN
            EXECUTE format(
                'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO %I USING (true) WITH CHECK (true)',
                {admin_policy}, r.t, {admin_group});
        END IF;
    END LOOP;
END $tenantctl$;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {pool} TO {group};
{ro_role}
GRANT USAGE ON SCHEMA {pool} TO {ro};
GRANT SELECT ON ALL TABLES IN SCHEMA {pool} TO {ro};
REVOKE ALL ON {pool}.{ledger_id} FROM {ro};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {pool} TO {group};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {pool} FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {pool} TO {group};
REVOKE ALL ON {pool}.{ledger_id} FROM {group};
"#,
        pool_reg = reg_literal(POOL_SCHEMA),
        // Inside format(): the schema as a quoted identifier, with `'` doubled for the
        // literal it sits in (it has none).
        pool_q = ident(POOL_SCHEMA),
        ledger = literal(LEDGER),
        ledger_id = ident(LEDGER),
        policy = literal(POOL_POLICY),
        admin_policy = literal(ADMIN_POLICY),
        admin_group = literal(ADMIN_GROUP),
        group = ident(POOL_GROUP),
        ro = ident(POOL_RO_GROUP),
        ro_role = create_group_role(POOL_RO_GROUP),
    )
}

/// Runs after every migration on a bridge or silo target, in the same transaction: every
/// table carries `tenant_id text not null` and a CHECK that it equals this tenant (rows
/// stay copyable between tiers, and `UPDATE ... SET tenant_id = 'other'` fails here as it
/// does in the pool); the tenant's role gets DML on the tables and EXECUTE on functions
/// (which PostgreSQL grants to PUBLIC by default: revoked), never access to the ledger.
pub fn tenant_after_migration(schema: &str, role: &str, tenant: &str) -> String {
    let s = ident(schema);
    let r = ident(role);
    format!(
        r#"
DO $tenantctl$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid, c.oid::regclass AS t
        FROM pg_class c
        WHERE c.relnamespace = {schema_reg}::regnamespace
          AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
          AND c.relname <> {ledger}
    LOOP
        PERFORM 1 FROM pg_attribute a
        WHERE a.attrelid = r.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          AND a.attnotnull AND a.atttypid = 'text'::regtype;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'table % has no column tenant_id text not null', r.t
                USING HINT = 'every table carries tenant_id text not null, so the same migrations serve every tier and rows can move between tiers';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = r.oid AND conname = {check}) THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (tenant_id = %L)', r.t, {check}, {tenant});
        END IF;
    END LOOP;
END $tenantctl$;
{writes}GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r};
REVOKE ALL ON {s}.{ledger_id} FROM PUBLIC, {r};
"#,
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
            SELECT c.oid::regclass AS t
            FROM pg_class c
            WHERE c.relnamespace = {pool_reg}::regnamespace
              AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND c.relname <> {ledger}
              AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        LOOP
            BEGIN
                EXECUTE format('DELETE FROM %s WHERE tenant_id = %L', r.t, {tenant});
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
    IF to_regrole({role_lit}) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER ROLE %s NOLOGIN', {id_lit});
    BEGIN
        PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE usename = {name_lit} AND pid <> pg_backend_pid();
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM %s', current_database(), {id_lit});
    IF EXISTS (
        SELECT 1 FROM pg_auth_members m
        WHERE m.roleid = to_regrole({group}) AND m.member = to_regrole({role_lit})
    ) THEN
        EXECUTE format('REVOKE %I FROM %s', {group}, {id_lit});
    END IF;
    EXECUTE format('DROP ROLE %s', {id_lit});
END $tenantctl$;
"#,
        role_lit = literal(&id),
        id_lit = literal(&id),
        name_lit = literal(role),
        group = literal(POOL_GROUP),
    )
}
