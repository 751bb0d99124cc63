//! The database half of a move: the steps that carry a tenant's rows from one isolation
//! model to another. Each step is idempotent, so a rerun after any interruption repeats
//! the step it stopped in:
//!
//! 1. [`prepare`]: the destination's schema, tables and grants, migrated to the latest
//!    version (refused while the source has pending migrations), without pointing the
//!    tenant's login there;
//! 2. [`freeze`]: the source stops taking writes (privileges, see `Model::freeze`);
//! 3. [`copy`]: in one destination transaction, the tenant's old rows there are deleted
//!    and every table is streamed with COPY, parents first, identity values kept and
//!    sequences moved past them; then counts and a content checksum are compared per
//!    table, and any difference is an error that leaves the source authoritative;
//! 4. [`cut_over`]: the freeze marker goes, the login is pointed at the destination with
//!    the password from its (new) secret, and the source is hidden from the tenant;
//! 5. [`drop_source`]: once the move is finished, the retained source rows go.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tokio_postgres::config::Host;

use crate::db::connect::{Endpoint, PgContext};
use crate::db::data::{self, TableInfo};
use crate::db::ident::{ident, literal};
use crate::db::migrate::setup_tx;
use crate::db::migrations::MigrationSet;
use crate::db::{Database, DbSecret, Location, Target, sql};
use crate::isolation::{self, Model};
use crate::tenant::{TenantId, Tier};
use crate::workspace::TenantSpec;

/// One side of a move: the tenant under one tier, where its rows live then.
pub struct Side {
    pub spec: TenantSpec,
    pub model: &'static dyn Model,
    pub target: Target,
}

impl Side {
    pub async fn of(
        db: &Database,
        id: &TenantId,
        tier: Tier,
        silo_admin: Option<&DbSecret>,
    ) -> Result<Side> {
        let spec = TenantSpec {
            id: id.clone(),
            tier,
        };
        let model = isolation::of(tier);
        let target = model.target(db, &spec, silo_admin).await?;
        Ok(Side {
            spec,
            model,
            target,
        })
    }

    fn role(&self) -> String {
        self.spec.id.db_role()
    }
}

/// What the copy found per table: equal counts and checksums on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCopy {
    pub table: String,
    pub rows: i64,
    /// Order-independent sum of each row's md5, as text.
    pub checksum: String,
}

/// The copy's verification failed: the destination differs from the source.
#[derive(Debug, thiserror::Error)]
#[error(
    "the copy of tenant `{tenant}` differs from its source in {}: the move stopped, the source stays authoritative",
    .tables.join(", ")
)]
pub struct CopyMismatch {
    pub tenant: String,
    /// `table (source N rows/sum, destination M rows/sum)`.
    pub tables: Vec<String>,
}

/// ` WHERE <filter>`, or nothing when the whole table is the tenant's.
fn where_clause(filter: Option<&str>) -> String {
    filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
}

/// Bytes of rows sent to the destination at once (one COPY message).
const COPY_BATCH: usize = 256 * 1024;

/// The server a side's database lives on: logins are per server.
fn server(db: &Database, target: &Target) -> Option<(String, u16)> {
    let ep: &Endpoint = match &target.location {
        Location::Shared => db.admin(),
        Location::Silo(ep) => ep,
        Location::Unavailable(_) => return None,
    };
    let host = match ep.config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    Some((host, ep.config.get_ports().first().copied().unwrap_or(5432)))
}

/// Both sides' tables live on one server, so they share the tenant's login.
pub fn same_server(db: &Database, a: &Target, b: &Target) -> bool {
    server(db, a).is_some() && server(db, a) == server(db, b)
}

/// Step 1: the destination's structures, migrated to the latest version, the login not
/// pointed there. Refused while the source lacks migrations (the copy needs the same
/// tables on both sides).
pub async fn prepare(db: &Database, source: &Side, dest: &Side) -> Result<()> {
    let set = MigrationSet::load_or_empty(db.migrations_dir())?;
    let src = db.connect_target(&source.target, "tenantctl move").await?;
    let (_, pending, bad) = db.target_version(&src, &source.target, &set).await?;
    if !pending.is_empty() || !bad.is_empty() {
        bail!(
            "cannot move tenant `{}`: its source `{}` is not at the latest migration (pending: {}; edited or unknown: {})\nhint: run `tenantctl db migrate` first",
            source.spec.id,
            source.target.name,
            if pending.is_empty() {
                "none".into()
            } else {
                pending.join(", ")
            },
            if bad.is_empty() {
                "none".into()
            } else {
                bad.join(", ")
            },
        );
    }
    dest.model.prepare_database(db, &dest.target).await?;
    let dst = db.connect_target(&dest.target, "tenantctl move").await?;
    let role = dest.role();
    let mut body = String::new();
    if !same_server(db, &source.target, &dest.target) {
        // A server of its own: the login is created there; its password is set at the
        // cut-over, from the secret that then points there.
        let profile = db.profile(dest.spec.tier);
        body.push_str(&sql::tenant_role(
            &role,
            profile.max_db_connections,
            profile.statement_timeout_ms,
            &dest.target.schema,
            false,
        ));
    }
    body.push_str(&dest.model.structure_sql(&dest.target, &role, &dest.spec.id));
    setup_tx(&dst, &body).await.with_context(|| {
        format!(
            "cannot prepare `{}` for tenant `{}`",
            dest.target.name, dest.spec.id
        )
    })?;
    db.migrate_one(&dst, &dest.target, &set).await
}

/// Step 2: the source takes no more writes.
pub async fn freeze(db: &Database, source: &Side) -> Result<()> {
    let src = db.connect_target(&source.target, "tenantctl move").await?;
    source
        .model
        .freeze(&src, &source.target, &source.spec.id)
        .await
}

/// Undoes [`freeze`] (a failed copy leaves the source authoritative and writable).
pub async fn unfreeze(db: &Database, source: &Side) -> Result<()> {
    let src = db.connect_target(&source.target, "tenantctl move").await?;
    source
        .model
        .unfreeze(&src, &source.target, &source.spec.id)
        .await
}

/// The tables of both sides, matched by name in the source's order.
async fn table_pairs(
    source: &Side,
    src: &Client,
    dest: &Side,
    dst: &Client,
) -> Result<Vec<(TableInfo, TableInfo)>> {
    let src_tables = source.model.tables(src, &source.target).await?;
    let mut dst_tables: BTreeMap<String, TableInfo> = dest
        .model
        .tables(dst, &dest.target)
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut pairs = Vec::new();
    for s in src_tables {
        let Some(mut d) = dst_tables.remove(&s.name) else {
            bail!(
                "table `{}` of `{}` has no counterpart in `{}`",
                s.name,
                source.target.name,
                dest.target.name
            );
        };
        // Both sides in the source's column order, so rows stream and hash alike.
        let mut cols = Vec::new();
        for c in &s.columns {
            match d.columns.iter().find(|x| x.name == c.name) {
                Some(x) => cols.push(x.clone()),
                None => bail!(
                    "column `{}.{}` of `{}` has no counterpart in `{}`",
                    s.name,
                    c.name,
                    source.target.name,
                    dest.target.name
                ),
            }
        }
        d.columns = cols;
        pairs.push((s, d));
    }
    Ok(pairs)
}

/// Row count and an order-independent content checksum of the tenant's rows.
async fn fingerprint(
    client: &Client,
    table: &TableInfo,
    filter: Option<&str>,
) -> Result<(i64, String)> {
    let cols = table
        .columns
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let row = client
        .query_one(
            &format!(
                "SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(
                     ('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(ROW({cols})::text), 1, 15))::bit(60)::bigint
                 ), 0)::text
                 FROM {t}{cond}",
                t = table.qualified(),
                cond = where_clause(filter),
            ),
            &[],
        )
        .await
        .pg_context(|| format!("cannot checksum {}", table.qualified()))?;
    Ok((row.get(0), row.get(1)))
}

/// What a copy from `source` would carry: each table's name and the tenant's row count
/// there (what `plan` shows of a pending move).
pub async fn inventory(db: &Database, source: &Side) -> Result<Vec<(String, i64)>> {
    let src = db.connect_target(&source.target, "tenantctl plan").await?;
    let filter = source.model.row_filter(&source.spec.id);
    let mut out = Vec::new();
    for t in source.model.tables(&src, &source.target).await? {
        let n: i64 = src
            .query_one(
                &format!(
                    "SELECT pg_catalog.count(*) FROM {}{}",
                    t.qualified(),
                    where_clause(filter.as_deref())
                ),
                &[],
            )
            .await
            .pg_context(|| format!("cannot count the rows of {}", t.qualified()))?
            .get(0);
        out.push((t.name, n));
    }
    Ok(out)
}

/// Step 3: copies every table of the tenant into the destination in one transaction,
/// then compares counts and checksums per table. `on_table` reports progress.
pub async fn copy(
    db: &Database,
    source: &Side,
    dest: &Side,
    on_table: &(dyn Fn(&str, i64) + Sync),
) -> Result<Vec<TableCopy>> {
    let id = &source.spec.id;
    let src = db.connect_target(&source.target, "tenantctl move").await?;
    let dst = db.connect_target(&dest.target, "tenantctl move").await?;
    let pairs = table_pairs(source, &src, dest, &dst).await?;
    let src_filter = source.model.row_filter(id);
    let dst_filter = dest.model.row_filter(id);

    // The source is frozen; one snapshot still makes the copy consistent by construction.
    src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .pg_context(|| "cannot open a snapshot of the source".into())?;
    dst.batch_execute("BEGIN")
        .await
        .pg_context(|| "cannot open the destination transaction".into())?;
    let copied = async {
        // A rerun starts over: whatever an earlier attempt left is removed first,
        // children before parents.
        for (_, d) in pairs.iter().rev() {
            dst.batch_execute(&format!(
                "DELETE FROM {}{}",
                d.qualified(),
                where_clause(dst_filter.as_deref())
            ))
            .await
            .pg_context(|| format!("cannot clear {}", d.qualified()))?;
        }
        for (s, d) in &pairs {
            let stream = source.model.copy_out(&src, id, s).await?;
            let sink = dest.model.copy_in(&dst, d).await?;
            futures::pin_mut!(sink);
            futures::pin_mut!(stream);
            // The server sends one message per row: sending (and flushing) each on its
            // own costs a write per row. Rows are batched into bounded buffers instead,
            // so memory stays flat and the destination gets large writes.
            let mut batch = bytes::BytesMut::with_capacity(COPY_BATCH);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.pg_context(|| format!("cannot read {}", s.qualified()))?;
                batch.extend_from_slice(&chunk);
                if batch.len() >= COPY_BATCH {
                    sink.send(batch.split().freeze())
                        .await
                        .pg_context(|| format!("cannot write {}", d.qualified()))?;
                }
            }
            if !batch.is_empty() {
                sink.send(batch.split().freeze())
                    .await
                    .pg_context(|| format!("cannot write {}", d.qualified()))?;
            }
            let rows = sink
                .as_mut()
                .finish()
                .await
                .pg_context(|| format!("cannot finish loading {}", d.qualified()))?;
            data::advance_sequences(&dst, d).await?;
            on_table(&s.name, rows as i64);
            crate::moves::pause::point("copy").await;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = src.batch_execute("COMMIT").await;
    if let Err(e) = copied {
        let _ = dst.batch_execute("ROLLBACK").await;
        return Err(e);
    }
    dst.batch_execute("COMMIT")
        .await
        .pg_context(|| "cannot commit the copy".into())?;

    let mut out = Vec::new();
    let mut differ = Vec::new();
    for (s, d) in &pairs {
        let (sn, ss) = fingerprint(&src, s, src_filter.as_deref()).await?;
        let (dn, ds) = fingerprint(&dst, d, dst_filter.as_deref()).await?;
        if sn != dn || ss != ds {
            differ.push(format!(
                "`{}` (source {sn} rows/{ss}, destination {dn} rows/{ds})",
                s.name
            ));
        }
        out.push(TableCopy {
            table: s.name.clone(),
            rows: sn,
            checksum: ss,
        });
    }
    if !differ.is_empty() {
        return Err(CopyMismatch {
            tenant: id.to_string(),
            tables: differ,
        }
        .into());
    }
    Ok(out)
}

/// Removes what a failed copy left in the destination (it never went live).
pub async fn clear_destination(db: &Database, source: &Side, dest: &Side) -> Result<()> {
    let src = db.connect_target(&source.target, "tenantctl move").await?;
    let dst = db.connect_target(&dest.target, "tenantctl move").await?;
    let pairs = table_pairs(source, &src, dest, &dst).await?;
    let filter = dest.model.row_filter(&dest.spec.id);
    let mut body = String::new();
    for (_, d) in pairs.iter().rev() {
        body.push_str(&format!(
            "DELETE FROM {}{};\n",
            d.qualified(),
            where_clause(filter.as_deref())
        ));
    }
    setup_tx(&dst, &body).await
}

/// Step 4: the login now works on the destination, writable, with the password of the
/// secret that points there; the source is hidden from it. Idempotent.
pub async fn cut_over(db: &Database, source: &Side, dest: &Side, secret: &DbSecret) -> Result<()> {
    let role = dest.role();
    let same = same_server(db, &source.target, &dest.target);
    let src = db.connect_target(&source.target, "tenantctl move").await?;
    let dst = db.connect_target(&dest.target, "tenantctl move").await?;
    // Source first: hidden, and (on a server of its own) the login there retired. The
    // freeze marker goes with it, so the destination's grants are complete below.
    let mut body = source.model.hide_sql(&source.target, &role);
    body.push_str(&data::mark_frozen(&role, false));
    if !same {
        body.push_str(&format!(
            "DO $tenantctl$ BEGIN IF pg_catalog.to_regrole({reg}) IS NOT NULL THEN ALTER ROLE {r} NOLOGIN; END IF; END $tenantctl$;\n",
            reg = literal(&ident(&role)),
            r = ident(&role),
        ));
    }
    setup_tx(&src, &body).await.with_context(|| {
        format!(
            "cannot hide `{}` from tenant `{}`",
            source.target.name, source.spec.id
        )
    })?;
    let profile = db.profile(dest.spec.tier);
    let mut body = sql::tenant_role(
        &role,
        profile.max_db_connections,
        profile.statement_timeout_ms,
        &dest.target.schema,
        false,
    );
    body.push_str(&dest.model.provision_sql(&dest.target, &role, &dest.spec.id));
    if same {
        // One login for both sides: hiding the source must not undo the destination
        // (the pool and a bridge schema are both in the shared database).
        body.push_str(&dest.model.attach_sql(&role));
    } else {
        body.push_str(&data::mark_frozen(&role, false));
    }
    setup_tx(&dst, &body).await.with_context(|| {
        format!(
            "cannot point tenant `{}` at `{}`",
            dest.spec.id, dest.target.name
        )
    })?;
    db.set_login_password(&dst, &role, secret).await
}

/// Step 5: the retained source's rows go, once the move is finished. The login stays if
/// the destination shares its server.
pub async fn drop_source(db: &Database, source: &Side, dest: &Side) -> Result<()> {
    let same = same_server(db, &source.target, &dest.target);
    source.model.drop_data(db, &source.spec, !same).await
}
