//! Restoring an export into a provisioned, empty tenant of any tier.
//!
//! Nothing is written until everything that can be checked has been: the manifest, the
//! schema version (the target's latest applied migration must be the export's), the
//! tables and columns, the target being empty, and every file's size and SHA-256. Then
//! one transaction, holding the target's migration lock, loads the tables parents first
//! with COPY, moves identity sequences past the loaded ids, reads every table back and
//! compares its row count and checksum with what was loaded, and commits only if all
//! agree: a failed import leaves the tenant as empty as it was.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use futures::SinkExt;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::archive::manifest::{
    MANIFEST_FILE, MANIFEST_MAX_BYTES, Manifest, TableEntry, show_version,
};
use crate::archive::rows::{RowSum, Rows, TenantField, header_line};
use crate::archive::store::{Location, Store};
use crate::archive::{
    SESSION_SETTINGS, TENANT_COLUMN, VerificationFailed, schema_version, target_exists,
};
use crate::db::connect::PgContext;
use crate::db::data::{self, TableInfo};
use crate::db::{Database, Target, sql};
use crate::isolation::{self, Model};
use crate::workspace::TenantSpec;

/// Rows are handed to COPY in batches of about this size.
const BATCH_BYTES: usize = 256 << 10;

/// One restored table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableImport {
    pub table: String,
    pub rows: u64,
    /// Checksum of the rows as loaded and read back (see `archive::rows`).
    pub rows_checksum: String,
}

#[derive(Debug, Clone)]
pub struct Imported {
    pub from: Location,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    pub tables: Vec<TableImport>,
}

/// Reads and checks the manifest of the export in `store`; returns it with its SHA-256.
pub async fn read_manifest(store: &Store) -> Result<(Manifest, String)> {
    let at = store.describe(MANIFEST_FILE);
    let bytes = store
        .read_all(MANIFEST_FILE, MANIFEST_MAX_BYTES)
        .await
        .with_context(|| {
            format!(
                "cannot read the manifest {at}: is `{}` an export (complete exports end with their manifest)?",
                store.location()
            )
        })?;
    let manifest = Manifest::parse(&bytes, &at)?;
    Ok((manifest, hex::encode(Sha256::digest(&bytes))))
}

/// Checks every file of the export against the manifest (size and SHA-256), reading each
/// once, without decompressing. A mismatch is a [`VerificationFailed`].
pub async fn verify_files(store: &Store, manifest: &Manifest) -> Result<()> {
    let mut bad = Vec::new();
    for t in &manifest.tables {
        let mut r = store.read(&t.file).await?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = r.next().await.with_context(|| store.describe(&t.file))? {
            h.update(&chunk);
            n += chunk.len() as u64;
        }
        let sha = hex::encode(h.finalize());
        if sha != t.sha256 || n != t.bytes {
            bad.push(format!(
                "{} ({n} bytes, sha256 {sha}; the manifest says {} bytes, sha256 {})",
                store.describe(&t.file),
                t.bytes,
                t.sha256
            ));
        }
    }
    if !bad.is_empty() {
        return Err(VerificationFailed(format!(
            "the export at {} does not match its manifest: {}; nothing was imported",
            store.location(),
            bad.join("; ")
        ))
        .into());
    }
    Ok(())
}

/// Restores the export in `store` into `spec`'s (provisioned, empty) target. `on_table`
/// is called as each table is loaded.
pub async fn import(
    db: &Database,
    spec: &TenantSpec,
    store: &Store,
    on_table: &(dyn Fn(&TableImport) + Sync),
) -> Result<Imported> {
    let (manifest, manifest_sha256) = read_manifest(store).await?;
    let model = isolation::of(spec.tier);
    let target = model.target(db, spec, None).await?;
    let client = db.connect_target(&target, "tenantctl import").await?;
    if !target_exists(&client, &target.schema).await? {
        bail!(
            "tenant `{}` has no schema `{}` in {}: import restores into a provisioned tenant\nhint: `tenantctl add {} --tier {}` first",
            spec.id,
            target.schema,
            target.name,
            spec.id,
            spec.tier
        );
    }
    // Everything checkable, before anything is written (and again under the lock).
    check_target(&client, model, &target, spec, &manifest).await?;
    verify_files(store, &manifest).await?;

    let rewrite = (manifest.tenant != spec.id.as_str()).then(|| spec.id.to_string());
    client
        .batch_execute(&format!(
            "BEGIN;\n{}{SESSION_SETTINGS}",
            sql::target_lock(&target.schema)
        ))
        .await
        .pg_context(|| format!("cannot start the import into `{}`", target.name))?;
    let loaded = async {
        // Again under the lock: a migration or a write may have come in meanwhile.
        let plan = check_target(&client, model, &target, spec, &manifest).await?;
        let mut loaded = Vec::new();
        for (table, entry) in &plan {
            let sum = load_table(&client, model, table, entry, store, &manifest, &rewrite).await?;
            data::advance_sequences(&client, table).await?;
            loaded.push(sum);
        }
        // Read back what the transaction holds and compare, before committing.
        let mut out = Vec::new();
        let mut differ = Vec::new();
        for ((table, _), sum) in plan.iter().zip(&loaded) {
            let back = read_back(&client, model, spec, table).await?;
            if back != *sum {
                differ.push(format!(
                    "`{}` (loaded {} rows/{}, read back {} rows/{})",
                    table.name,
                    sum.rows,
                    sum.hex(),
                    back.rows,
                    back.hex()
                ));
            }
            let done = TableImport {
                table: table.name.clone(),
                rows: back.rows,
                rows_checksum: back.hex(),
            };
            on_table(&done);
            out.push(done);
        }
        if !differ.is_empty() {
            return Err(VerificationFailed(format!(
                "the rows read back from `{}` differ from the export in {}; the import was rolled back",
                target.name,
                differ.join(", ")
            ))
            .into());
        }
        anyhow::Ok(out)
    }
    .await;
    let tables = match loaded {
        Ok(t) => t,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    client
        .batch_execute("COMMIT")
        .await
        .pg_context(|| format!("cannot commit the import into `{}`", target.name))?;
    Ok(Imported {
        from: store.location(),
        manifest,
        manifest_sha256,
        tables,
    })
}

/// The target's tables matched with the manifest's (columns in the export's order), in
/// the target's load order; refuses a schema version, table or column that differs, and
/// a target that already holds rows of the tenant.
async fn check_target<'m>(
    client: &Client,
    model: &dyn Model,
    target: &Target,
    spec: &TenantSpec,
    manifest: &'m Manifest,
) -> Result<Vec<(TableInfo, &'m TableEntry)>> {
    let have = schema_version(client, &target.schema)
        .await?
        .map(|(version, name)| crate::archive::manifest::SchemaVersion { version, name });
    let want = &manifest.schema_version;
    if have.as_ref().map(|v| v.version) != want.as_ref().map(|v| v.version) {
        bail!(
            "the export of `{}` was taken at schema version {}, but `{}` is at {}: import needs the same version\nhint: bring `{}` to the export's version (`tenantctl db migrate` or `db rollback --to {}`), or import with a build whose migrations match",
            manifest.tenant,
            show_version(want),
            target.name,
            show_version(&have),
            spec.id,
            want.as_ref().map(|v| v.version).unwrap_or(0)
        );
    }
    let listed = model.tables(client, target).await?;
    let order: Vec<String> = listed.iter().map(|t| t.name.clone()).collect();
    let mut tables: BTreeMap<String, TableInfo> =
        listed.into_iter().map(|t| (t.name.clone(), t)).collect();
    let by_name: BTreeMap<&str, &TableEntry> = manifest
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let missing: Vec<&str> = by_name
        .keys()
        .filter(|n| !tables.contains_key(**n))
        .copied()
        .collect();
    let extra: Vec<&String> = order
        .iter()
        .filter(|n| !by_name.contains_key(n.as_str()))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        bail!(
            "the tables of `{}` do not match the export's: {}{}",
            target.name,
            if missing.is_empty() {
                String::new()
            } else {
                format!("missing in the target: {}", missing.join(", "))
            },
            if extra.is_empty() {
                String::new()
            } else {
                format!(
                    "{}not in the export: {}",
                    if missing.is_empty() { "" } else { "; " },
                    extra
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    let mut plan = Vec::new();
    for name in order {
        let Some(mut table) = tables.remove(&name) else {
            continue;
        };
        let entry = by_name[name.as_str()];
        let mut cols = Vec::with_capacity(entry.columns.len());
        for c in &entry.columns {
            match table.columns.iter().find(|x| x.name == c.name) {
                Some(x) if x.type_name == c.type_name => cols.push(x.clone()),
                Some(x) => bail!(
                    "column `{}.{}` is `{}` in the export but `{}` in `{}`",
                    name,
                    c.name,
                    c.type_name,
                    x.type_name,
                    target.name
                ),
                None => bail!(
                    "column `{}.{}` of the export does not exist in `{}`",
                    name,
                    c.name,
                    target.name
                ),
            }
        }
        if let Some(x) = table
            .columns
            .iter()
            .find(|x| !entry.columns.iter().any(|c| c.name == x.name))
        {
            bail!(
                "column `{}.{}` of `{}` is not in the export",
                name,
                x.name,
                target.name
            );
        }
        table.columns = cols;
        plan.push((table, entry));
    }
    let filter = model.row_filter(&spec.id);
    let mut holding = Vec::new();
    for (t, _) in &plan {
        let any: bool = client
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {}{})",
                    t.qualified(),
                    filter
                        .as_deref()
                        .map(|f| format!(" WHERE {f}"))
                        .unwrap_or_default()
                ),
                &[],
            )
            .await
            .pg_context(|| format!("cannot read {}", t.qualified()))?
            .get(0);
        if any {
            holding.push(format!("`{}`", t.name));
        }
    }
    if !holding.is_empty() {
        bail!(
            "tenant `{}` already has rows in {} of `{}`: import restores into an empty tenant only, nothing was written\nhint: import into a newly added tenant, or remove and add this one again",
            spec.id,
            holding.join(", "),
            target.name
        );
    }
    Ok(plan)
}

/// Streams one file into its table: gunzip → header and tenant checks → COPY. Returns
/// the checksum of the rows as loaded, after checking the file and its rows against the
/// manifest again (the file may have changed since it was verified).
async fn load_table(
    client: &Client,
    model: &dyn Model,
    table: &TableInfo,
    entry: &TableEntry,
    store: &Store,
    manifest: &Manifest,
    rewrite: &Option<String>,
) -> Result<RowSum> {
    let what = store.describe(&entry.file);
    let mut rows = Rows::new(what.clone())
        .with_header(header_line(entry.columns.iter().map(|c| c.name.as_str())));
    if let Some(index) = table.columns.iter().position(|c| c.name == TENANT_COLUMN) {
        rows = rows.with_tenant_field(TenantField {
            index,
            expect: manifest.tenant.clone(),
            replace: rewrite.clone(),
        });
    }
    let mut reader = store.read(&entry.file).await?;
    let sink = model.copy_in(client, table).await?;
    futures::pin_mut!(sink);
    let mut gz = flate2::write::GzDecoder::new(Vec::with_capacity(BATCH_BYTES * 2));
    let mut hash = Sha256::new();
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES * 2);
    while let Some(chunk) = reader.next().await.with_context(|| what.clone())? {
        hash.update(&chunk);
        std::io::Write::write_all(&mut gz, &chunk)
            .with_context(|| format!("{what} is not valid gzip"))?;
        let plain = std::mem::take(gz.get_mut());
        rows.feed(&plain, Some(&mut batch))?;
        if batch.len() >= BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_BYTES * 2));
            sink.send(bytes::Bytes::from(full))
                .await
                .pg_context(|| format!("cannot load {}", table.qualified()))?;
        }
    }
    let plain = gz
        .finish()
        .with_context(|| format!("{what} is not valid gzip (truncated?)"))?;
    rows.feed(&plain, Some(&mut batch))?;
    rows.finish()?;
    let sha = hex::encode(hash.finalize());
    if sha != entry.sha256 {
        return Err(VerificationFailed(format!(
            "{what} changed while it was imported (sha256 {sha}, the manifest says {}); the import was rolled back",
            entry.sha256
        ))
        .into());
    }
    if rows.input.rows != entry.rows || rows.input.hex() != entry.rows_checksum {
        return Err(VerificationFailed(format!(
            "the rows of {what} ({} rows/{}) differ from the manifest's ({} rows/{}); the import was rolled back",
            rows.input.rows,
            rows.input.hex(),
            entry.rows,
            entry.rows_checksum
        ))
        .into());
    }
    if !batch.is_empty() {
        sink.send(bytes::Bytes::from(batch))
            .await
            .pg_context(|| format!("cannot load {}", table.qualified()))?;
    }
    sink.as_mut()
        .finish()
        .await
        .pg_context(|| format!("cannot load {}", table.qualified()))?;
    Ok(rows.output)
}

/// The tenant's rows of `table` as the target now holds them, counted and checksummed
/// the way the export's files were.
async fn read_back(
    client: &Client,
    model: &dyn Model,
    spec: &TenantSpec,
    table: &TableInfo,
) -> Result<RowSum> {
    let stream = model.copy_out(client, &spec.id, table).await?;
    futures::pin_mut!(stream);
    let mut rows = Rows::new(format!("table `{}`", table.name));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.pg_context(|| format!("cannot read {}", table.qualified()))?;
        rows.feed(&chunk, None)?;
    }
    rows.finish()?;
    Ok(rows.input)
}
