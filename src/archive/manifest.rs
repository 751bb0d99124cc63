//! `manifest.json`: what an export holds, written last (an export without it is
//! incomplete) and read first by `import`, which trusts nothing in the files it does not
//! list and checks each file against its size and SHA-256 before loading anything.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::tenant::{Isolation, TenantId, Tier};

/// The `format` field: what kind of document this is.
pub const FORMAT: &str = "tenantctl-export";
/// Bumped on any change an older `import` could misread.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// A manifest larger than this is refused unread (it lists tables, not rows).
pub const MANIFEST_MAX_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub tenant: String,
    pub tier: Tier,
    pub isolation: Isolation,
    /// The latest migration applied to the tenant's target when the snapshot was taken
    /// (none: the target had no migration).
    pub schema_version: Option<SchemaVersion>,
    pub created_at: DateTime<Utc>,
    pub tenantctl_version: String,
    /// How the CSV files are written, for readers other than tenantctl.
    pub csv: CsvFormat,
    /// Server-side encryption of the files (S3 exports).
    pub encryption: Encryption,
    /// Parents before children: the order the rows can be loaded in.
    pub tables: Vec<TableEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    pub version: i32,
    /// The migration's name as the ledger records it.
    pub name: String,
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.version, self.name)
    }
}

/// Shows an optional version the way messages need it.
pub fn show_version(v: &Option<SchemaVersion>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "none (no migration applied)".into())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvFormat {
    pub encoding: String,
    pub header: bool,
    pub delimiter: String,
    pub quote: String,
    /// NULL is an empty, unquoted field; an empty string is `""`.
    pub null: String,
    pub timezone: String,
    pub datestyle: String,
    pub intervalstyle: String,
    pub bytea_output: String,
    pub compression: String,
}

impl CsvFormat {
    pub fn current() -> CsvFormat {
        CsvFormat {
            encoding: "UTF-8".into(),
            header: true,
            delimiter: ",".into(),
            quote: "\"".into(),
            null: "empty unquoted field".into(),
            timezone: "UTC".into(),
            datestyle: "ISO, YMD".into(),
            intervalstyle: "iso_8601".into(),
            bytea_output: "hex".into(),
            compression: "gzip".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    /// `aws:kms`, or `none` for a local directory.
    pub sse: String,
    /// The key asked for: the tenant's own, `[archive] kms_key_id`, or none (the bucket's
    /// AWS-managed `aws/s3` key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Where the key came from: `tenant`, `config` or `aws-managed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    /// The file beside the manifest: `<table>.csv.gz`.
    pub file: String,
    pub columns: Vec<ColumnEntry>,
    pub rows: u64,
    /// Order-independent checksum of the rows (see `archive::rows`).
    pub rows_checksum: String,
    /// Size and SHA-256 of the file as stored (compressed).
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnEntry {
    pub name: String,
    /// As PostgreSQL's `format_type` prints it.
    #[serde(rename = "type")]
    pub type_name: String,
    /// An identity or serial column: its sequence is moved past the imported values.
    #[serde(default)]
    pub sequence: bool,
}

impl Manifest {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }

    /// Parses and checks a manifest read from `at`: a format this build reads, a valid
    /// tenant id, file names that stay inside the export, no table listed twice.
    pub fn parse(bytes: &[u8], at: &str) -> Result<Manifest> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .with_context(|| format!("{at} is not a JSON document"))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => bail!(
                "{at} is not a tenantctl export manifest (format {}, expected `{FORMAT}`)",
                other
                    .map(|f| format!("`{f}`"))
                    .unwrap_or_else(|| "missing".into())
            ),
        }
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(FORMAT_VERSION as u64) {
            bail!(
                "{at} has format_version {}, and this tenantctl reads version {FORMAT_VERSION}\nhint: import with the tenantctl version that wrote it ({})",
                version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "missing".into()),
                value
                    .get("tenantctl_version")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
            );
        }
        let m: Manifest = serde_json::from_value(value)
            .with_context(|| format!("{at} is not a valid manifest"))?;
        TenantId::parse(&m.tenant).with_context(|| format!("{at} names a bad tenant"))?;
        if m.isolation != m.tier.isolation() {
            bail!(
                "{at} says tier `{}` with isolation `{}`, which do not go together",
                m.tier,
                m.isolation
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &m.tables {
            if !seen.insert(t.name.as_str()) {
                bail!("{at} lists table `{}` twice", t.name);
            }
            check_file_name(&t.file).with_context(|| format!("{at}, table `{}`", t.name))?;
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{at}, table `{}`: sha256 is not 64 hex digits", t.name);
            }
            if t.columns.is_empty() {
                bail!("{at}, table `{}` has no columns", t.name);
            }
        }
        Ok(m)
    }
}

/// The file of a table: its name, made safe as a file name and an S3 key segment.
pub fn file_name(table: &str) -> String {
    let safe: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.csv.gz")
}

/// A file a manifest names must be a plain name beside it: no path, nothing hidden.
fn check_file_name(name: &str) -> Result<()> {
    let ok = name.ends_with(".csv.gz")
        && !name.starts_with('.')
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        bail!(
            "file `{}` is not a plain `<name>.csv.gz` beside the manifest",
            name.escape_debug()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            tenant: "acme".into(),
            tier: Tier::Growth,
            isolation: Isolation::Bridge,
            schema_version: Some(SchemaVersion {
                version: 3,
                name: "tenant_scoped_keys".into(),
            }),
            created_at: Utc::now(),
            tenantctl_version: "0.1.0".into(),
            csv: CsvFormat::current(),
            encryption: Encryption {
                sse: "none".into(),
                kms_key_id: None,
                key_source: None,
            },
            tables: vec![TableEntry {
                name: "accounts".into(),
                file: file_name("accounts"),
                columns: vec![ColumnEntry {
                    name: "id".into(),
                    type_name: "bigint".into(),
                    sequence: true,
                }],
                rows: 2,
                rows_checksum: "0".repeat(32),
                bytes: 10,
                sha256: "a".repeat(64),
            }],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_bad_ones_are_refused_by_name() {
        let m = sample();
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::parse(&bytes, "`m`").unwrap(), m);

        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(sample()).unwrap();
            edit(&mut v);
            format!(
                "{:#}",
                Manifest::parse(&serde_json::to_vec(&v).unwrap(), "`m`").unwrap_err()
            )
        };
        assert!(bad(&|v| v["format"] = "zip".into()).contains("format `zip`"));
        assert!(bad(&|v| v["format_version"] = 9.into()).contains("format_version 9"));
        assert!(
            bad(&|v| v["tables"][0]["file"] = "../../etc/passwd.csv.gz".into())
                .contains("not a plain")
        );
        assert!(bad(&|v| v["tenant"] = "Bad Id".into()).contains("bad tenant"));
        assert!(bad(&|v| v["isolation"] = "pool".into()).contains("do not go together"));
        assert!(
            bad(&|v| {
                let t = v["tables"][0].clone();
                v["tables"].as_array_mut().unwrap().push(t);
            })
            .contains("twice")
        );
        assert_eq!(file_name("my table.x"), "my_table_x.csv.gz");
    }
}
