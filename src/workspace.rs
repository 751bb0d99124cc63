//! The work dir: `tenantctl.toml`, the desired state in `tenants/<id>.toml`, and
//! tenantctl's own files under `.tenantctl/` (rendered roots, logs, records).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::{CONFIG_FILE, Config};
use crate::tenant::{TenantId, Tier};

/// One tenant's desired state: the reviewable file CI diffs and applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub id: TenantId,
    pub tier: Tier,
}

impl TenantSpec {
    pub fn to_toml(&self) -> String {
        format!(
            "# Desired state of tenant `{id}`, managed by tenantctl.\nid = \"{id}\"\ntier = \"{tier}\"\n",
            id = self.id,
            tier = self.tier
        )
    }
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub config: Config,
}

impl Workspace {
    /// Loads the config at `config_path`; the work dir is the directory holding it.
    pub fn load(config_path: &Path) -> Result<Workspace> {
        let config = Config::load(config_path)?;
        let root = config_path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        let root = std::fs::canonicalize(&root)
            .with_context(|| format!("cannot resolve work dir `{}`", root.display()))?;
        Ok(Workspace { root, config })
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn tenants_dir(&self) -> PathBuf {
        self.root.join("tenants")
    }
    pub fn tenant_file(&self, id: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!("{id}.toml"))
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".tenantctl")
    }
    pub fn roots_dir(&self) -> PathBuf {
        self.state_dir().join("roots")
    }
    pub fn root_dir(&self, id: &TenantId) -> PathBuf {
        self.roots_dir().join(id.as_str())
    }
    pub fn modules_dir(&self) -> PathBuf {
        self.state_dir().join("modules")
    }
    pub fn platform_dir(&self) -> PathBuf {
        self.state_dir().join("platform")
    }
    pub fn platform_outputs_file(&self) -> PathBuf {
        self.state_dir().join("platform.json")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }
    pub fn records_dir(&self) -> PathBuf {
        self.state_dir().join("records")
    }
    pub fn migrations_dir(&self) -> PathBuf {
        self.root.join(&self.config.database.migrations_dir)
    }

    pub fn read_tenant(&self, id: &TenantId) -> Result<Option<TenantSpec>> {
        let path = self.tenant_file(id);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(parse_spec(&path, &text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        }
    }

    /// Like [`read_tenant`](Self::read_tenant) but a missing tenant is an error.
    pub fn tenant(&self, id: &TenantId) -> Result<TenantSpec> {
        self.read_tenant(id)?.with_context(|| {
            format!(
                "unknown tenant `{id}`: no `{}`\nhint: `tenantctl list` shows the declared tenants",
                self.tenant_file(id).display()
            )
        })
    }

    pub fn write_tenant(&self, spec: &TenantSpec) -> Result<()> {
        std::fs::create_dir_all(self.tenants_dir())?;
        let path = self.tenant_file(&spec.id);
        crate::fsutil::write_atomic(&path, spec.to_toml().as_bytes())
    }

    /// Changes the tier in the tenant's file, keeping the rest of the file (comments,
    /// other keys) as it is.
    pub fn set_tier(&self, id: &TenantId, tier: crate::tenant::Tier) -> Result<TenantSpec> {
        let path = self.tenant_file(id);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let line = regex::Regex::new(r#"(?m)^(\s*tier\s*=\s*)"[^"\n]*""#).expect("valid regex");
        let edited = if line.is_match(&text) {
            line.replace(&text, format!("${{1}}\"{tier}\"").as_str())
                .into_owned()
        } else {
            TenantSpec {
                id: id.clone(),
                tier,
            }
            .to_toml()
        };
        let spec = parse_spec(&path, &edited)?;
        crate::fsutil::write_atomic(&path, edited.as_bytes())?;
        Ok(spec)
    }

    /// Every declared tenant, sorted by id. A file whose name and `id` disagree is an
    /// error: the file name is what reviewers see.
    pub fn tenants(&self) -> Result<Vec<TenantSpec>> {
        let dir = self.tenants_dir();
        let mut specs = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(specs),
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let spec = parse_spec(&path, &text)?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if stem != spec.id.as_str() {
                bail!(
                    "`{}` declares id `{}`: the file must be named `{}.toml`",
                    path.display(),
                    spec.id,
                    spec.id
                );
            }
            specs.push(spec);
        }
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(specs)
    }
}

fn parse_spec(path: &Path, text: &str) -> Result<TenantSpec> {
    toml::from_str(text).with_context(|| format!("invalid tenant file `{}`", path.display()))
}
