//! Writing an export: one consistent snapshot of the tenant's target, one gzip CSV file
//! per table streamed straight from `COPY` to the store, the manifest last.

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::StreamExt;
use tokio_postgres::Client;

use crate::archive::manifest::{
    ColumnEntry, CsvFormat, Encryption, FORMAT, FORMAT_VERSION, MANIFEST_FILE, Manifest,
    SchemaVersion, TableEntry, file_name,
};
use crate::archive::rows::{Rows, header_line};
use crate::archive::store::{Location, Store};
use crate::archive::{SESSION_SETTINGS, schema_version, target_exists};
use crate::db::connect::PgContext;
use crate::db::data::TableInfo;
use crate::db::ident::literal;
use crate::db::{Database, sql};
use crate::isolation::{self, Model};
use crate::workspace::TenantSpec;

/// Compressed bytes gathered before they go to the store.
const FLUSH_BYTES: usize = 1 << 20;

/// A finished export.
#[derive(Debug, Clone)]
pub struct Exported {
    pub location: Location,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    /// The manifest's own size: with the tables' files, the export's size.
    pub manifest_bytes: u64,
    /// The KMS key S3 reports having encrypted the objects under (S3 exports).
    pub kms_key_id: Option<String>,
}

impl Exported {
    pub fn bytes(&self) -> u64 {
        self.manifest.bytes() + self.manifest_bytes
    }
}

/// Exports the database data of `spec` into `store`, which must be empty. `encryption`
/// is recorded in the manifest as the store applies it. `on_table` is called as each
/// table's file is complete.
///
/// The snapshot: one `REPEATABLE READ READ ONLY` transaction on the tenant's target reads
/// the migration ledger and every table, so the files agree with each other and with the
/// schema version. A shared lock on the target (the one migrations and provisioning take
/// exclusively) keeps the tables' definitions from changing while they are read; the
/// tenant keeps working meanwhile. On failure, what was written is removed.
pub async fn export(
    db: &Database,
    spec: &TenantSpec,
    store: &Store,
    encryption: Encryption,
    on_table: &(dyn Fn(&TableEntry) + Sync),
) -> Result<Exported> {
    let model = isolation::of(spec.tier);
    let target = model.target(db, spec, None).await?;
    let client = db.connect_target(&target, "tenantctl export").await?;
    if !target_exists(&client, &target.schema).await? {
        bail!(
            "tenant `{}` has no schema `{}` in {}: it is not provisioned, there is nothing to export\nhint: `tenantctl apply {}` provisions it",
            spec.id,
            target.schema,
            target.name,
            spec.id
        );
    }
    store.prepare_empty().await?;

    let lock = format!(
        "{}, pg_catalog.hashtext({}))",
        sql::TARGET_LOCK_CLASS,
        literal(&target.schema)
    );
    client
        .batch_execute(&format!("SELECT pg_catalog.pg_advisory_lock_shared({lock}"))
        .await
        .pg_context(|| format!("cannot lock target `{}`", target.name))?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n{SESSION_SETTINGS}"
        ))
        .await
        .pg_context(|| format!("cannot open a snapshot of `{}`", target.name))?;

    let mut written: Vec<String> = Vec::new();
    let result = async {
        let version = schema_version(&client, &target.schema).await?;
        let tables = model.tables(&client, &target).await?;
        let mut entries = Vec::with_capacity(tables.len());
        for t in &tables {
            let file = file_name(&t.name);
            if entries.iter().any(|e: &TableEntry| e.file == file) {
                bail!(
                    "tables of `{}` map to the same file name `{file}`: rename one of them",
                    target.name
                );
            }
            written.push(file.clone());
            let entry = export_table(&client, model, spec, t, store, &file).await?;
            on_table(&entry);
            entries.push(entry);
        }
        anyhow::Ok((version, entries))
    }
    .await;
    let _ = client.batch_execute("COMMIT").await;
    let _ = client
        .batch_execute(&format!(
            "SELECT pg_catalog.pg_advisory_unlock_shared({lock}"
        ))
        .await;
    let (version, tables) = match result {
        Ok(r) => r,
        Err(e) => {
            store.remove_all(&written).await;
            return Err(e);
        }
    };

    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        tenant: spec.id.to_string(),
        tier: spec.tier,
        isolation: spec.tier.isolation(),
        schema_version: version.map(|(version, name)| SchemaVersion { version, name }),
        created_at: Utc::now(),
        tenantctl_version: env!("CARGO_PKG_VERSION").into(),
        csv: CsvFormat::current(),
        encryption,
        tables,
    };
    let mut body = serde_json::to_vec_pretty(&manifest)?;
    body.push(b'\n');
    let put = store
        .put(MANIFEST_FILE, &body, "application/json")
        .await
        .with_context(|| format!("cannot write the manifest of the export of `{}`", spec.id));
    let put = match put {
        Ok(p) => p,
        Err(e) => {
            store.remove_all(&written).await;
            return Err(e);
        }
    };
    Ok(Exported {
        location: store.location(),
        manifest,
        manifest_sha256: put.sha256,
        manifest_bytes: put.bytes,
        kms_key_id: put.kms_key_id,
    })
}

/// One table: COPY out → row count and checksum → gzip → the store, chunk by chunk.
async fn export_table(
    client: &Client,
    model: &dyn Model,
    spec: &TenantSpec,
    table: &TableInfo,
    store: &Store,
    file: &str,
) -> Result<TableEntry> {
    let mut writer = store.create(file, "application/gzip").await?;
    let streamed = async {
        let stream = model.copy_out(client, &spec.id, table).await?;
        futures::pin_mut!(stream);
        let mut gz = GzEncoder::new(Vec::with_capacity(FLUSH_BYTES * 2), Compression::default());
        gz.write_all(&header_line(table.columns.iter().map(|c| c.name.as_str())))?;
        let mut rows = Rows::new(format!("table `{}`", table.name));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.pg_context(|| format!("cannot read {}", table.qualified()))?;
            rows.feed(&chunk, None)?;
            gz.write_all(&chunk)?;
            if gz.get_ref().len() >= FLUSH_BYTES {
                let buf = std::mem::take(gz.get_mut());
                writer.write(&buf).await?;
            }
        }
        rows.finish()?;
        let rest = gz.finish()?;
        writer.write(&rest).await?;
        anyhow::Ok(rows.input)
    }
    .await;
    let sum = match streamed {
        Ok(s) => s,
        Err(e) => {
            writer.abort().await;
            return Err(e.context(format!("cannot export table `{}`", table.name)));
        }
    };
    let done = writer
        .finish()
        .await
        .with_context(|| format!("cannot store table `{}`", table.name))?;
    Ok(TableEntry {
        name: table.name.clone(),
        file: file.to_string(),
        columns: table
            .columns
            .iter()
            .map(|c| ColumnEntry {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                sequence: c.sequence.is_some(),
            })
            .collect(),
        rows: sum.rows,
        rows_checksum: sum.hex(),
        bytes: done.bytes,
        sha256: done.sha256,
    })
}
