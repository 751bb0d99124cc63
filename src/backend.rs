//! Where a root's Terraform state lives.
//!
//! The config's `[state]` says where it should be ([`StateLocation::wanted`]); the root's
//! `.terraform/` says where Terraform last kept it ([`StateLocation::recorded`]). When the
//! two differ, the state must be moved (`tenantctl state migrate`): `init -reconfigure`
//! alone would start from an empty state at the new place, and the next apply would try
//! to create every resource of the tenant again. [`check_unchanged`] refuses that before
//! Terraform runs.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::{AwsSettings, Backend, Config};
use crate::records::RecordStore;
use crate::workspace::Workspace;

/// One state: a file beside the root, or an S3 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StateLocation {
    Local {
        path: PathBuf,
    },
    S3 {
        bucket: String,
        key: String,
        region: String,
    },
}

/// The config's `[state] key_prefix`, without a trailing slash.
pub fn key_prefix(cfg: &Config) -> String {
    cfg.state
        .key_prefix
        .clone()
        .unwrap_or_else(|| "tenantctl".into())
        .trim_end_matches('/')
        .to_string()
}

impl StateLocation {
    /// Where the config puts the state of the root in `dir` (its key `state_key` under
    /// the S3 prefix).
    pub fn wanted(cfg: &Config, aws: &AwsSettings, dir: &Path, state_key: &str) -> StateLocation {
        match cfg.state.backend {
            Backend::Local => StateLocation::Local {
                path: dir.join("terraform.tfstate"),
            },
            Backend::S3 => StateLocation::S3 {
                bucket: cfg.state.bucket.clone().unwrap_or_default(),
                key: format!("{}/{state_key}", key_prefix(cfg)),
                region: cfg
                    .state
                    .region
                    .clone()
                    .unwrap_or_else(|| aws.region_or_default()),
            },
        }
    }

    /// Where Terraform kept the state of the root in `dir` at its last `init`; None when
    /// the root was never initialised here (a fresh checkout).
    pub fn recorded(dir: &Path) -> Option<StateLocation> {
        let data = dir.join(".terraform");
        if !data.is_dir() {
            return None;
        }
        // Terraform writes `.terraform/terraform.tfstate` only for a non-local backend.
        let Ok(bytes) = std::fs::read(data.join("terraform.tfstate")) else {
            return Some(StateLocation::Local {
                path: dir.join("terraform.tfstate"),
            });
        };
        #[derive(Deserialize)]
        struct Recorded {
            backend: Option<RecordedBackend>,
        }
        #[derive(Deserialize)]
        struct RecordedBackend {
            #[serde(rename = "type")]
            kind: String,
            config: serde_json::Map<String, serde_json::Value>,
        }
        let rec: Recorded = serde_json::from_slice(&bytes).ok()?;
        // No backend left in it: the last `init` moved the state back to a local file.
        let Some(b) = rec.backend else {
            return Some(StateLocation::Local {
                path: dir.join("terraform.tfstate"),
            });
        };
        let s = |k: &str| {
            b.config
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        match b.kind.as_str() {
            "s3" => Some(StateLocation::S3 {
                bucket: s("bucket"),
                key: s("key"),
                region: s("region"),
            }),
            "local" => Some(StateLocation::Local {
                path: dir.join("terraform.tfstate"),
            }),
            _ => None,
        }
    }

    /// The same state (the region says where to reach a bucket, not which state it is).
    pub fn same(&self, other: &StateLocation) -> bool {
        match (self, other) {
            (StateLocation::Local { path: a }, StateLocation::Local { path: b }) => a == b,
            (
                StateLocation::S3 {
                    bucket: a, key: ka, ..
                },
                StateLocation::S3 {
                    bucket: b, key: kb, ..
                },
            ) => a == b && ka == kb,
            _ => false,
        }
    }

    /// The state's bytes; None when there is none yet.
    pub async fn read(&self, s3: &aws_sdk_s3::Client) -> Result<Option<Vec<u8>>> {
        match self {
            StateLocation::Local { path } => match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
            },
            StateLocation::S3 { bucket, key, .. } => {
                crate::records::get_object(s3, bucket, key).await
            }
        }
    }

    /// tenantctl's records kept beside this state (see [`crate::records`]): the local
    /// records directory, or `<prefix>/records/` in the state bucket.
    pub fn records(&self, ws: &Workspace, s3: &aws_sdk_s3::Client, state_key: &str) -> RecordStore {
        match self {
            StateLocation::Local { .. } => RecordStore::Local(ws.records_dir()),
            StateLocation::S3 { bucket, key, .. } => {
                let prefix = key
                    .strip_suffix(state_key)
                    .unwrap_or(key)
                    .trim_end_matches('/');
                let prefix = if prefix.is_empty() {
                    "records".to_string()
                } else {
                    format!("{prefix}/records")
                };
                RecordStore::S3 {
                    client: s3.clone(),
                    bucket: bucket.clone(),
                    prefix,
                }
            }
        }
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Local { path } => write!(f, "local `{}`", path.display()),
            StateLocation::S3 { bucket, key, .. } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// What a state holds, enough to tell two states apart and to check a copy. Terraform
/// gives the copy made by `init -migrate-state` a new lineage and serial, so a copy is
/// recognised by what it manages: every resource instance's address and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSummary {
    pub lineage: String,
    pub resources: usize,
    /// sha256 of the sorted `address=id` lines of every resource instance.
    pub identity: String,
}

impl StateSummary {
    pub fn of(bytes: &[u8]) -> Result<StateSummary> {
        #[derive(Deserialize)]
        struct State {
            #[serde(default)]
            lineage: String,
            #[serde(default)]
            resources: Vec<Resource>,
        }
        #[derive(Deserialize)]
        struct Resource {
            #[serde(default)]
            module: String,
            mode: String,
            #[serde(rename = "type")]
            kind: String,
            name: String,
            #[serde(default)]
            instances: Vec<Instance>,
        }
        #[derive(Deserialize)]
        struct Instance {
            #[serde(default)]
            index_key: serde_json::Value,
            #[serde(default)]
            attributes: serde_json::Map<String, serde_json::Value>,
        }
        let s: State = serde_json::from_slice(bytes).context("the state is not Terraform JSON")?;
        let mut lines: Vec<String> = s
            .resources
            .iter()
            .flat_map(|r| {
                r.instances.iter().map(move |i| {
                    format!(
                        "{}/{}.{}.{}[{}]={}",
                        r.module,
                        r.mode,
                        r.kind,
                        r.name,
                        i.index_key,
                        i.attributes.get("id").cloned().unwrap_or_default()
                    )
                })
            })
            .collect();
        lines.sort();
        let digest = sha2::Sha256::digest(lines.join("\n").as_bytes());
        Ok(StateSummary {
            lineage: s.lineage,
            resources: s.resources.len(),
            identity: hex::encode(digest),
        })
    }
}

/// The state of `label` is somewhere else than the config now says.
#[derive(Debug, thiserror::Error)]
#[error(
    "the state of `{label}` is at {from}, but `[state]` in the config now puts it at {to}: starting there would start from an empty state (nothing was run)\nhint: run `tenantctl state migrate` to move the state of every root (a backup of each is kept), or set `[state]` back"
)]
pub struct BackendChanged {
    pub label: String,
    pub from: String,
    pub to: String,
}

/// Fails with [`BackendChanged`] when the root in `dir` keeps a state somewhere other
/// than `wanted`. A local state file with no resources (a root initialised but never
/// applied) holds nothing to lose.
pub fn check_unchanged(label: &str, dir: &Path, wanted: &StateLocation) -> Result<()> {
    let Some(recorded) = StateLocation::recorded(dir) else {
        return Ok(());
    };
    if recorded.same(wanted) {
        return Ok(());
    }
    if let StateLocation::Local { path } = &recorded {
        let holds = std::fs::read(path)
            .ok()
            .and_then(|b| StateSummary::of(&b).ok())
            .is_some_and(|s| s.resources > 0);
        if !holds {
            return Ok(());
        }
    }
    Err(BackendChanged {
        label: label.to_string(),
        from: recorded.to_string(),
        to: wanted.to_string(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(key: &str) -> StateLocation {
        StateLocation::S3 {
            bucket: "b".into(),
            key: key.into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn recorded_reads_the_backend_terraform_initialised() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StateLocation::recorded(dir.path()), None);
        std::fs::create_dir(dir.path().join(".terraform")).unwrap();
        assert_eq!(
            StateLocation::recorded(dir.path()),
            Some(StateLocation::Local {
                path: dir.path().join("terraform.tfstate")
            })
        );
        std::fs::write(
            dir.path().join(".terraform/terraform.tfstate"),
            r#"{"version":3,"backend":{"type":"s3","config":{"bucket":"b","key":"p/tenants/a.tfstate","region":"eu-west-1"}}}"#,
        )
        .unwrap();
        let rec = StateLocation::recorded(dir.path()).unwrap();
        assert!(rec.same(&s3("p/tenants/a.tfstate")));
        assert!(!rec.same(&s3("q/tenants/a.tfstate")));
        assert_eq!(rec.to_string(), "s3://b/p/tenants/a.tfstate");
    }

    #[test]
    fn a_moved_state_is_refused_unless_the_old_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".terraform")).unwrap();
        let wanted = s3("p/tenants/a.tfstate");
        // Initialised locally but never applied: nothing to lose.
        check_unchanged("a", dir.path(), &wanted).unwrap();
        std::fs::write(
            dir.path().join("terraform.tfstate"),
            r#"{"version":4,"lineage":"l","serial":3,"resources":[{"mode":"managed","type":"aws_iam_role","name":"task","instances":[{"attributes":{"id":"tenant-a"}}]}]}"#,
        )
        .unwrap();
        let err = check_unchanged("a", dir.path(), &wanted).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("s3://b/p/tenants/a.tfstate"), "{text}");
        assert!(text.contains("tenantctl state migrate"), "{text}");
        assert!(err.is::<BackendChanged>());
    }

    #[test]
    fn a_copy_is_recognised_by_its_resources_not_its_lineage() {
        let state = |lineage: &str, id: &str| {
            format!(
                r#"{{"version":4,"lineage":"{lineage}","serial":9,"resources":[{{"module":"module.tenant[\"a\"]","mode":"managed","type":"aws_iam_role","name":"task","instances":[{{"attributes":{{"id":"{id}"}}}}]}}]}}"#
            )
        };
        let a = StateSummary::of(state("one", "tenant-a").as_bytes()).unwrap();
        let copy = StateSummary::of(state("two", "tenant-a").as_bytes()).unwrap();
        let other = StateSummary::of(state("one", "tenant-b").as_bytes()).unwrap();
        assert_eq!(a.identity, copy.identity);
        assert_ne!(a.identity, other.identity);
        assert_eq!(a.resources, 1);
    }

    #[test]
    fn records_live_beside_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace {
            root: dir.path().to_path_buf(),
            config: toml::from_str(&Config::template(false)).unwrap(),
        };
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        match s3("team/x/tenants/a.tfstate").records(&ws, &client, "tenants/a.tfstate") {
            RecordStore::S3 { bucket, prefix, .. } => {
                assert_eq!((bucket.as_str(), prefix.as_str()), ("b", "team/x/records"))
            }
            RecordStore::Local(_) => panic!("an S3 state keeps its records in S3"),
        }
    }
}
