//! A tenant's data as tables and rows, the same way in every isolation model: what
//! tables hold it (in foreign-key order), streaming rows out and in with COPY, carrying
//! identity columns and sequences on, and freezing writes. The isolation models
//! (`crate::isolation`) decide *which* rows are the tenant's (pool: its `tenant_id` rows
//! of the shared tables; bridge and silo: the whole schema) and call these helpers.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use tokio_postgres::{Client, CopyInSink, CopyOutStream};

use crate::db::connect::PgContext;
use crate::db::ident::{ident, literal, qualified};
use crate::db::sql;

/// One column of a tenant table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// As `format_type` prints it, e.g. `bigint`, `jsonb`, `character varying(20)`.
    pub type_name: String,
    /// `GENERATED ... AS IDENTITY` or owns a sequence (serial): its values are carried
    /// over as they are, and the sequence moved past them.
    pub sequence: Option<String>,
}

/// One table holding tenant rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    pub fn qualified(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The ordinary tables of `schema` (the ledger excluded), parents before children so
/// rows can be loaded without breaking a foreign key. A cycle is an error naming it.
pub async fn list_tables(client: &Client, schema: &str) -> Result<Vec<TableInfo>> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text,
                    pg_catalog.format_type(a.atttypid, a.atttypmod),
                    pg_catalog.pg_get_serial_sequence(pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), a.attname)
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND c.relname <> $2 AND a.attgenerated = ''
             ORDER BY c.relname, a.attnum",
            &[&schema, &sql::LEDGER],
        )
        .await
        .pg_context(|| format!("cannot list the tables of schema `{schema}`"))?;
    let mut tables: BTreeMap<String, TableInfo> = BTreeMap::new();
    for r in rows {
        let table: String = r.get(0);
        tables
            .entry(table.clone())
            .or_insert_with(|| TableInfo {
                schema: schema.to_string(),
                name: table,
                columns: Vec::new(),
            })
            .columns
            .push(ColumnInfo {
                name: r.get(1),
                type_name: r.get(2),
                sequence: r.get(3),
            });
    }
    let fks = client
        .query(
            "SELECT child.relname::text, parent.relname::text
             FROM pg_catalog.pg_constraint k
             JOIN pg_catalog.pg_class child ON child.oid = k.conrelid
             JOIN pg_catalog.pg_class parent ON parent.oid = k.confrelid
             WHERE k.contype = 'f' AND child.relnamespace = pg_catalog.to_regnamespace($1)
               AND parent.relnamespace = child.relnamespace AND child.oid <> parent.oid",
            &[&ident(schema)],
        )
        .await
        .pg_context(|| format!("cannot read the foreign keys of schema `{schema}`"))?;
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in fks {
        parents.entry(r.get(0)).or_default().insert(r.get(1));
    }
    order_by_dependencies(tables, &parents)
}

/// Kahn's algorithm over table names, alphabetical among equals so the order is stable.
fn order_by_dependencies(
    mut tables: BTreeMap<String, TableInfo>,
    parents: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<TableInfo>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready: Vec<String> = tables
            .keys()
            .filter(|t| {
                parents.get(*t).is_none_or(|ps| {
                    ps.iter()
                        .all(|p| done.contains(p) || !tables.contains_key(p) && !ps.contains(*t))
                })
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            let left: Vec<&String> = tables.keys().collect();
            bail!(
                "the foreign keys between tables {} form a cycle: their rows cannot be copied in an order that satisfies them",
                left.iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for t in ready {
            if let Some(info) = tables.remove(&t) {
                out.push(info);
            }
            done.insert(t);
        }
    }
    Ok(out)
}

/// Streams the rows of `table` that match `filter` (an SQL condition, or none for every
/// row) as COPY text with a header-less CSV layout in column order.
pub async fn copy_out(
    client: &Client,
    table: &TableInfo,
    filter: Option<&str>,
) -> Result<CopyOutStream> {
    let sql = format!(
        "COPY (SELECT {cols} FROM {t}{cond} ORDER BY {cols}) TO STDOUT WITH (FORMAT csv)",
        cols = table.column_list(),
        t = table.qualified(),
        cond = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default(),
    );
    client
        .copy_out(&sql)
        .await
        .pg_context(|| format!("cannot read the rows of {}", table.qualified()))
}

/// Opens a COPY into `table` (same column order as [`copy_out`]). Identity columns take
/// the copied values (COPY always does), so ids stay what they were.
pub async fn copy_in(client: &Client, table: &TableInfo) -> Result<CopyInSink<bytes::Bytes>> {
    let sql = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
        table.qualified(),
        table.column_list()
    );
    client
        .copy_in(&sql)
        .await
        .pg_context(|| format!("cannot load rows into {}", table.qualified()))
}

/// Moves each sequence of `table` past the highest value its column now holds (never
/// backwards: in the pool the sequence serves every tenant), so the next insert does not
/// collide with a copied row.
pub async fn advance_sequences(client: &Client, table: &TableInfo) -> Result<()> {
    for c in &table.columns {
        let Some(seq) = &c.sequence else { continue };
        client
            .batch_execute(&format!(
                "SELECT pg_catalog.setval({seq}::regclass, GREATEST(
                     (SELECT pg_catalog.max({col}) FROM {t}),
                     (SELECT last_value FROM {seq_id}),
                     1))",
                seq = literal(seq),
                seq_id = seq,
                col = ident(&c.name),
                t = table.qualified(),
            ))
            .await
            .pg_context(|| format!("cannot advance sequence {seq}"))?;
    }
    Ok(())
}

/// Ends every session of `role` (best effort: needs `pg_signal_backend`), so an open
/// transaction cannot commit a write after a freeze.
pub fn terminate_sessions(role: &str) -> String {
    format!(
        r#"DO $tenantctl$
BEGIN
    PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
    WHERE usename = {name} AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid();
EXCEPTION WHEN insufficient_privilege THEN NULL;
END $tenantctl$;
"#,
        name = literal(role)
    )
}

/// The freeze marker: membership in the NOLOGIN role `tenantctl_frozen`. Provisioning
/// and migrations read it before granting write privileges, so a rerun of either never
/// thaws a tenant in the middle of a move. Cluster-wide, like roles.
pub fn mark_frozen(role: &str, frozen: bool) -> String {
    let group = ident(sql::FROZEN_GROUP);
    let member = ident(role);
    let change = if frozen {
        format!("GRANT {group} TO {member};")
    } else {
        format!(
            "IF pg_catalog.pg_has_role({role_lit}, {group_lit}, 'MEMBER') THEN REVOKE {group} FROM {member}; END IF;",
            role_lit = literal(role),
            group_lit = literal(sql::FROZEN_GROUP),
        )
    };
    format!(
        r#"DO $tenantctl$
BEGIN
    CREATE ROLE {group} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $tenantctl$;
DO $tenantctl$
BEGIN
    {change}
END $tenantctl$;
"#
    )
}

/// Whether `role` carries the freeze marker.
pub async fn is_frozen(client: &Client, role: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT pg_catalog.to_regrole($2) IS NOT NULL AND pg_catalog.to_regrole($1) IS NOT NULL
                    AND pg_catalog.pg_has_role(pg_catalog.to_regrole($1), pg_catalog.to_regrole($2), 'MEMBER')",
            &[&ident(role), &ident(sql::FROZEN_GROUP)],
        )
        .await
        .pg_context(|| format!("cannot read whether `{role}` is frozen"))?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableInfo {
        TableInfo {
            schema: "s".into(),
            name: name.into(),
            columns: Vec::new(),
        }
    }

    #[test]
    fn parents_come_first_and_cycles_are_named() {
        let tables: BTreeMap<String, TableInfo> = ["tasks", "accounts", "projects"]
            .into_iter()
            .map(|n| (n.to_string(), t(n)))
            .collect();
        let mut parents = BTreeMap::new();
        parents.insert(
            "tasks".to_string(),
            BTreeSet::from(["projects".to_string()]),
        );
        parents.insert(
            "projects".to_string(),
            BTreeSet::from(["accounts".to_string()]),
        );
        let order: Vec<String> = order_by_dependencies(tables.clone(), &parents)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(order, ["accounts", "projects", "tasks"]);
        parents.insert(
            "accounts".to_string(),
            BTreeSet::from(["tasks".to_string()]),
        );
        let err = order_by_dependencies(tables, &parents)
            .unwrap_err()
            .to_string();
        assert!(err.contains("form a cycle"), "{err}");
    }
}
