//! Rendering: desired state + config + platform values → a Terraform root on disk.
//!
//! A root is `main.tf` and `variables.tf` (structure only, from the tera templates in
//! `templates/`) plus `terraform.tfvars.json` (every value). User-supplied strings reach
//! Terraform only through that JSON file, so no id, domain or name is ever parsed as HCL.
//! The few config values that must sit in HCL (the S3 backend block cannot read
//! variables) go through the `hcl` filter, which escapes them as HCL string literals.
//!
//! A root holds a map of tenants (`module "tenant"` uses `for_each`). Today every tenant
//! gets its own root and state, but nothing here assumes one root = one tenant, so pooled
//! tenants can later share a state cell to save the ~9 s a plan costs per root.
//!
//! The Terraform modules are embedded in the binary and written under
//! `.tenantctl/modules/`, so an installed tenantctl needs no checkout of this repository.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::StateLocation;
use crate::config::{AwsSettings, Config, PlatformValues};
use crate::fsutil::write_if_changed;
use crate::tenant::{Isolation, TenantId};
use crate::workspace::{TenantSpec, Workspace};

/// Services whose endpoint the rendered provider points at an emulator.
const ENDPOINT_SERVICES: &[&str] = &[
    "cloudwatch",
    "ec2",
    "ecs",
    "elbv2",
    "iam",
    "kms",
    "logs",
    "rds",
    "route53",
    "s3",
    "secretsmanager",
    "sts",
];

const DEFAULT_IMAGE: &str = "public.ecr.aws/nginx/nginx:stable";

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)))),*]
    };
}

/// Templates, by name relative to `templates/`.
const TEMPLATES: &[(&str, &str)] = embedded!(
    "templates/common/root_header.tf.tera",
    "templates/tenant/main.tf.tera",
    "templates/tenant/variables.tf",
    "templates/platform/main.tf.tera",
);

/// Module files, by path relative to the repository root.
pub const MODULE_FILES: &[(&str, &str)] = embedded!(
    "terraform/modules/tenant/main.tf",
    "terraform/modules/tenant/alarms.tf",
    "terraform/modules/tenant/variables.tf",
    "terraform/modules/tenant/outputs.tf",
    "terraform/modules/tenant/versions.tf",
    "terraform/modules/platform/main.tf",
    "terraform/modules/platform/variables.tf",
    "terraform/modules/platform/outputs.tf",
    "terraform/modules/platform/versions.tf",
);

/// Escapes a string as an HCL quoted literal: JSON escaping plus the two template
/// introducers `${` and `%{`, which HCL would otherwise interpolate.
pub fn hcl_string(s: &str) -> String {
    let json = serde_json::to_string(s).expect("string serializes");
    json.replace("${", "$${").replace("%{", "%%{")
}

fn hcl_filter(value: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    match value {
        tera::Value::String(s) => Ok(tera::Value::String(hcl_string(s))),
        other => Err(tera::Error::msg(format!(
            "the hcl filter takes a string, got {other}"
        ))),
    }
}

/// The templates, parsed once per process.
fn tera() -> &'static tera::Tera {
    static TERA: OnceLock<tera::Tera> = OnceLock::new();
    TERA.get_or_init(build_tera)
}

fn build_tera() -> tera::Tera {
    let mut t = tera::Tera::default();
    let templates = TEMPLATES
        .iter()
        .map(|(p, c)| (p.trim_start_matches("templates/"), *c));
    t.add_raw_templates(templates)
        .expect("embedded templates parse");
    t.register_filter("hcl", hcl_filter);
    // HCL is not HTML: autoescaping would corrupt values.
    t.autoescape_on(vec![]);
    t
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DnsTarget {
    pub name: String,
    pub zone_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DbEndpoint {
    pub host: String,
    pub port: u16,
    pub dbname: String,
}

/// The tenant module's inputs for one tenant, exactly as written to the tfvars file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantInputs {
    pub tenant_id: TenantId,
    pub tier: String,
    pub isolation: Isolation,
    /// A dedicated database beside a non-silo isolation: a move into silo provisions it
    /// before the cut-over, a move out of silo retains it until the move is finished.
    pub dedicated_database: bool,
    pub cpu: u32,
    pub memory: u32,
    pub limits: BTreeMap<String, String>,
    pub image: String,
    pub data_bucket: String,
    pub domain: String,
    pub hosted_zone_id: String,
    pub dns_target: DnsTarget,
    pub cluster_arn: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub service_security_group_ids: Vec<String>,
    /// Silo only: tenantctl's own way into the dedicated database (`[database]
    /// admin_cidr_blocks`, `admin_security_group_ids`). Left out of the tfvars when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin_cidr_blocks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin_security_group_ids: Vec<String>,
    pub database: DbEndpoint,
    pub silo_database_override: Option<DbEndpoint>,
    pub db_instance_class: String,
    pub db_allocated_storage: u32,
    pub deletion_protection: bool,
    pub skip_final_snapshot: bool,
    /// Set while offboarding (`remove`): a unique name per removal, so the same id can
    /// be removed twice. Null otherwise (the module's default name).
    pub final_snapshot_identifier: Option<String>,
    /// The tenant's own KMS key (`[tiers.<tier>] tenant_key`).
    pub tenant_key: bool,
    pub key_deletion_window_days: u32,
    pub secret_recovery_window_days: u32,
    pub secret_version: u32,
    pub tags: BTreeMap<String, String>,
    /// The tenant's CloudWatch alarms (`[alarms]`, thresholds from the tier profile);
    /// None with `[alarms] enabled = false`.
    pub alarms: Option<AlarmInputs>,
}

/// The tenant module's `alarms` input.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlarmInputs {
    pub namespace: String,
    pub topic_arn: Option<String>,
    pub error_rate_percent: u32,
    pub p99_latency_ms: u32,
    /// Four fifths of the tenant login's connection limit.
    pub db_connections: u32,
}

/// Knobs that differ between an ordinary render and offboarding.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Offboarding an enterprise tenant turns deletion protection off before destroying.
    pub allow_destroy: bool,
    /// Keep a dedicated database whatever the tier: a move into or out of silo (see
    /// `moves::Journal::render`).
    pub dedicated_database: bool,
    /// Offboarding: when the removal started, naming the final snapshot of a
    /// dedicated database (`tenant-<id>-final-<time>`).
    pub final_snapshot_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Platform values from the config, filled from `platform apply` outputs.
pub fn platform_values(ws: &Workspace) -> Result<PlatformValues> {
    let recorded = read_platform_outputs(ws)?.unwrap_or_default();
    Ok(ws.config.platform.merged_over(&recorded))
}

pub fn read_platform_outputs(ws: &Workspace) -> Result<Option<PlatformValues>> {
    let path = ws.platform_outputs_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("invalid platform record `{}`", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

fn required(value: &Option<String>, field: &str) -> Result<String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => bail!(
            "platform value `{field}` is not set\nhint: run `tenantctl platform apply`, or set `[platform] {field}` in tenantctl.toml"
        ),
    }
}

impl TenantInputs {
    pub fn build(
        cfg: &Config,
        platform: &PlatformValues,
        spec: &TenantSpec,
        opts: RenderOptions,
    ) -> Result<TenantInputs> {
        let profile = cfg.profile(spec.tier);
        let isolation = spec.tier.isolation();
        // A dedicated database needs the VPC, and a local one is mapped per tenant.
        let silo = crate::isolation::model(isolation).dedicated() || opts.dedicated_database;
        let domain = required(&platform.domain, "domain")?;
        let dns_target = DnsTarget {
            name: platform
                .dns_target_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("ingress.{domain}")),
            zone_id: platform
                .dns_target_zone_id
                .clone()
                .filter(|s| !s.is_empty()),
        };
        let db = &cfg.database;
        let database = DbEndpoint {
            host: db.host.clone().with_context(
                || "`[database] host` is not set: tenants' secrets need the shared database's address",
            )?,
            port: db.port.unwrap_or(5432),
            dbname: db.name.clone().unwrap_or_else(|| "app".into()),
        };
        let silo_database_override = match (&db.local_silo, silo) {
            (Some(l), true) => Some(DbEndpoint {
                host: l.host.clone(),
                port: l.port,
                dbname: spec.id.pg_name(),
            }),
            _ => None,
        };
        let (vpc_id, subnet_ids) = if silo {
            let subnets = platform.subnet_ids.clone();
            if subnets.len() < 2 {
                bail!(
                    "platform value `subnet_ids` needs at least two subnets for an enterprise tenant's database\nhint: run `tenantctl platform apply`, or set `[platform] subnet_ids`"
                );
            }
            (required(&platform.vpc_id, "vpc_id")?, subnets)
        } else {
            (String::new(), Vec::new())
        };
        // The module tags every resource with `tenant`, `tier`, `isolation` and
        // `managed-by` itself (so does a root that uses it without tenantctl); these are
        // extra tags, none so far.
        let tags = BTreeMap::new();
        Ok(TenantInputs {
            tenant_id: spec.id.clone(),
            tier: spec.tier.to_string(),
            isolation,
            dedicated_database: silo,
            cpu: profile.cpu,
            memory: profile.memory,
            limits: profile.limit_env(),
            image: platform
                .image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
            data_bucket: required(&platform.data_bucket, "data_bucket")?,
            hosted_zone_id: required(&platform.hosted_zone_id, "hosted_zone_id")?,
            domain,
            dns_target,
            cluster_arn: required(&platform.cluster_arn, "cluster_arn")?,
            vpc_id,
            subnet_ids,
            service_security_group_ids: platform.service_security_group_ids.clone(),
            admin_cidr_blocks: if silo {
                db.admin_cidr_blocks.clone()
            } else {
                Vec::new()
            },
            admin_security_group_ids: if silo {
                db.admin_security_group_ids.clone()
            } else {
                Vec::new()
            },
            database,
            silo_database_override,
            db_instance_class: profile
                .db_instance_class
                .clone()
                .unwrap_or_else(|| "db.t3.micro".into()),
            db_allocated_storage: profile.db_allocated_storage.unwrap_or(20),
            deletion_protection: !opts.allow_destroy,
            skip_final_snapshot: cfg.terraform.skip_final_snapshot.unwrap_or(false),
            final_snapshot_identifier: opts
                .final_snapshot_at
                .map(|at| final_snapshot_name(&spec.id, at)),
            tenant_key: profile.tenant_key,
            key_deletion_window_days: cfg.keys.deletion_window_days,
            secret_recovery_window_days: cfg.terraform.secret_recovery_window_days.unwrap_or(7),
            secret_version: 1,
            tags,
            alarms: cfg.alarms.enabled.then(|| AlarmInputs {
                namespace: cfg.alarms.namespace.clone(),
                topic_arn: cfg
                    .alarms
                    .topic_arn
                    .clone()
                    .or_else(|| platform.alarm_topic_arn.clone()),
                error_rate_percent: profile.alarm_error_rate_percent,
                p99_latency_ms: profile.alarm_p99_latency_ms,
                db_connections: (profile.max_db_connections * 4 / 5).max(1),
            }),
        })
    }
}

/// The final snapshot of a dedicated database removed at `at`: unique per removal.
pub fn final_snapshot_name(id: &TenantId, at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}-final-{}", id.resource_name(), at.format("%Y%m%d%H%M%S"))
}

#[derive(Debug, Serialize)]
struct BackendCtx {
    kind: &'static str,
    bucket: String,
    key: String,
    region: String,
    endpoint: Option<String>,
}

fn backend_ctx(cfg: &Config, aws: &AwsSettings, state_key: &str) -> BackendCtx {
    match StateLocation::wanted(cfg, aws, Path::new(""), state_key) {
        StateLocation::Local { .. } => BackendCtx {
            kind: "local",
            bucket: String::new(),
            key: String::new(),
            region: String::new(),
            endpoint: None,
        },
        StateLocation::S3 {
            bucket,
            key,
            region,
        } => BackendCtx {
            kind: "s3",
            bucket,
            key,
            region,
            endpoint: aws.endpoint_url.clone(),
        },
    }
}

fn header_context(cfg: &Config, aws: &AwsSettings, state_key: &str) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("backend", &backend_ctx(cfg, aws, state_key));
    ctx.insert("emulator", &aws.endpoint_url.is_some());
    // Pre-padded so the `=` signs line up as `terraform fmt` wants.
    let width = ENDPOINT_SERVICES.iter().map(|s| s.len()).max().unwrap_or(0);
    let padded: Vec<String> = ENDPOINT_SERVICES
        .iter()
        .map(|s| format!("{s:<width$}"))
        .collect();
    ctx.insert("endpoint_services", &padded);
    ctx
}

fn provider_vars(aws: &AwsSettings) -> serde_json::Map<String, serde_json::Value> {
    let aws = aws.clone();
    let mut vars = serde_json::Map::new();
    vars.insert("aws_region".into(), aws.region_or_default().into());
    vars.insert(
        "aws_profile".into(),
        aws.profile
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null),
    );
    vars.insert(
        "aws_endpoint_url".into(),
        aws.endpoint_url
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null),
    );
    vars
}

/// The files of one rendered root, before they are written.
#[derive(Debug, Clone, PartialEq)]
pub struct RootFiles {
    pub files: BTreeMap<String, String>,
}

impl RootFiles {
    /// A digest of every rendered file, for change detection.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, content) in &self.files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(content.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    /// Writes the files; returns whether any changed.
    pub fn write(&self, dir: &Path) -> Result<bool> {
        let mut changed = false;
        for (name, content) in &self.files {
            changed |= write_if_changed(&dir.join(name), content.as_bytes())?;
        }
        Ok(changed)
    }
}

/// Renders the root holding `tenants` (today always one). `state_key` names its state;
/// `aws` is the effective AWS settings (config overridden by the environment).
pub fn tenant_root(
    cfg: &Config,
    aws: &AwsSettings,
    state_key: &str,
    tenants: &[TenantInputs],
) -> Result<RootFiles> {
    let t = tera();
    let ctx = header_context(cfg, aws, state_key);
    let main = t
        .render("tenant/main.tf.tera", &ctx)
        .context("cannot render tenant root")?;
    let mut vars = provider_vars(aws);
    let map: BTreeMap<&str, &TenantInputs> =
        tenants.iter().map(|i| (i.tenant_id.as_str(), i)).collect();
    vars.insert("tenants".into(), serde_json::to_value(map)?);
    let mut files = BTreeMap::new();
    files.insert("main.tf".to_string(), main);
    files.insert(
        "variables.tf".to_string(),
        t.render("tenant/variables.tf", &tera::Context::new())?,
    );
    files.insert(
        "terraform.tfvars.json".to_string(),
        serde_json::to_string_pretty(&vars)? + "\n",
    );
    Ok(RootFiles { files })
}

/// Renders the platform root.
pub fn platform_root(cfg: &Config, aws: &AwsSettings) -> Result<RootFiles> {
    let t = tera();
    let ctx = header_context(cfg, aws, PLATFORM_STATE_KEY);
    let main = t
        .render("platform/main.tf.tera", &ctx)
        .context("cannot render platform root")?;
    let p = &cfg.platform;
    let create_load_balancer = p.create_load_balancer.unwrap_or(true);
    check_certificate(create_load_balancer, p.certificate_arn.as_deref())?;
    let mut vars = provider_vars(aws);
    vars.insert(
        "platform".into(),
        serde_json::json!({
            "name": p.name.clone().unwrap_or_else(|| "tenantctl".into()),
            "domain": required(&p.domain, "domain")?,
            "data_bucket": required(&p.data_bucket, "data_bucket")?,
            "create_load_balancer": create_load_balancer,
            "certificate_arn": p.certificate_arn,
            "dns_target_name": p.dns_target_name,
            // Against the emulator the bucket and zone may be emptied on destroy;
            // for real they must be emptied by hand first.
            "force_destroy": cfg.local,
            "create_dashboard": cfg.metrics.enabled(aws),
            "metrics_namespace": cfg.metrics.namespace(),
            // An endpoint reached over plain HTTP (the local emulator) would be locked out
            // of the data bucket by its TLS-only policy: exports and offboarding use it.
            "deny_insecure_transport": p.deny_insecure_transport.unwrap_or_else(|| {
                !aws
                    .endpoint_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("http://"))
            }),
        }),
    );
    let mut files = BTreeMap::new();
    files.insert("main.tf".to_string(), main);
    files.insert(
        "terraform.tfvars.json".to_string(),
        serde_json::to_string_pretty(&vars)? + "\n",
    );
    Ok(RootFiles { files })
}

/// The platform module's rule, checked before any file is written: a load balancer
/// serves HTTPS only, so it needs a certificate.
fn check_certificate(create_load_balancer: bool, certificate_arn: Option<&str>) -> Result<()> {
    match certificate_arn {
        None if create_load_balancer => bail!(
            "platform value `certificate_arn` is not set, but `create_load_balancer` is true: the load balancer serves HTTPS only (HTTP is redirected to it)\nhint: set `[platform] certificate_arn` to an ACM certificate for `*.<domain>`, or `create_load_balancer = false`"
        ),
        Some(arn)
            if !(arn.starts_with("arn:aws")
                && (arn.contains(":acm:") || arn.contains(":iam:"))) =>
        {
            bail!(
                "[platform] certificate_arn = {arn:?} is not a certificate ARN: it must be an ACM certificate (`arn:aws:acm:...`) or an IAM server certificate (`arn:aws:iam:...`)"
            )
        }
        _ => Ok(()),
    }
}

/// Writes the embedded modules under `.tenantctl/modules/`.
pub fn write_modules(ws: &Workspace) -> Result<()> {
    for (path, content) in MODULE_FILES {
        let rel = path.trim_start_matches("terraform/modules/");
        write_if_changed(&ws.modules_dir().join(rel), content.as_bytes())?;
    }
    Ok(())
}

/// A digest of the embedded modules: part of every tenant's fingerprint. Computed once
/// per process: the modules are compiled in.
pub fn modules_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let mut h = Sha256::new();
        for (path, content) in MODULE_FILES {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(content.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    })
}

/// One tenant's root, rendered in memory: what `list` and `--changed` compare without
/// writing anything, and what the lifecycle writes, applies and verifies against.
#[derive(Debug, Clone)]
pub struct RenderedRoot {
    pub dir: PathBuf,
    pub files: RootFiles,
    /// The module inputs, which `verify` checks the deployed resources against.
    pub inputs: TenantInputs,
    /// Covers the tenant file, its tier profile, the rendered root and the module
    /// contents; the provider lock is compared separately because a fresh checkout has
    /// none until `init`.
    pub fingerprint: String,
    /// The cell holding the tenant (`crate::cells`): `dir` is then the cell's root, and
    /// `files` (a one-tenant root) must never be written there.
    pub cell: Option<u32>,
}

impl RenderedRoot {
    /// Writes the root (and the modules it sources) to disk.
    pub fn write(&self, ws: &Workspace) -> Result<()> {
        if let Some(n) = self.cell {
            anyhow::bail!(
                "tenant `{}` is in {}: its root is written with the whole cell",
                self.inputs.tenant_id,
                crate::cells::cell_name(n)
            );
        }
        write_modules(ws)?;
        self.files.write(&self.dir)?;
        Ok(())
    }
}

/// Renders one tenant's root in memory from already-resolved platform values.
pub fn render_root(
    ws: &Workspace,
    platform: &PlatformValues,
    spec: &TenantSpec,
    opts: RenderOptions,
) -> Result<RenderedRoot> {
    let inputs = TenantInputs::build(&ws.config, platform, spec, opts)?;
    let files = tenant_root(
        &ws.config,
        &ws.config.aws.effective(),
        &state_key(&spec.id),
        std::slice::from_ref(&inputs),
    )?;
    let mut h = Sha256::new();
    h.update(spec.to_toml().as_bytes());
    h.update(serde_json::to_vec(&ws.config.profile(spec.tier))?);
    h.update(files.digest().as_bytes());
    h.update(modules_digest().as_bytes());
    Ok(RenderedRoot {
        dir: ws.root_dir(&spec.id),
        files,
        inputs,
        fingerprint: hex::encode(h.finalize()),
        cell: None,
    })
}

impl RenderedRoot {
    /// The tenant as a member of cell `n`: the cell's root, and a fingerprint that also
    /// covers which cell (a tenant adopted into a cell is planned there once).
    pub fn in_cell(mut self, ws: &Workspace, n: u32) -> RenderedRoot {
        let mut h = Sha256::new();
        h.update(self.fingerprint.as_bytes());
        h.update(crate::cells::cell_name(n).as_bytes());
        self.fingerprint = hex::encode(h.finalize());
        self.dir = crate::cells::cell_dir(ws, n);
        self.cell = Some(n);
        self
    }
}

/// The root of cell `n`, holding `members` (their module inputs).
pub fn cell_root(ws: &Workspace, n: u32, members: &[TenantInputs]) -> Result<RootFiles> {
    tenant_root(
        &ws.config,
        &ws.config.aws.effective(),
        &crate::cells::state_key(n),
        members,
    )
}

/// The state key of the platform root under the S3 backend's prefix.
pub const PLATFORM_STATE_KEY: &str = "platform.tfstate";

/// The state key of a tenant's root under the S3 backend's prefix.
pub fn state_key(id: &TenantId) -> String {
    format!("tenants/{id}.tfstate")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Tier;

    fn fixture() -> (Config, PlatformValues) {
        let mut cfg: Config = toml::from_str(&Config::template(true)).unwrap();
        cfg.database.port = Some(5432);
        // What `platform apply` would have recorded, under the config's own values.
        let recorded = PlatformValues {
            hosted_zone_id: Some("Z0TEST".into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:123456789012:cluster/t".into()),
            vpc_id: Some("vpc-1".into()),
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            service_security_group_ids: vec!["sg-1".into()],
            ..Default::default()
        };
        let platform = cfg.platform.merged_over(&recorded);
        (cfg, platform)
    }

    fn emulator() -> AwsSettings {
        AwsSettings {
            region: Some("us-east-1".into()),
            profile: None,
            endpoint_url: Some("http://127.0.0.1:5000".into()),
        }
    }

    fn render(id: &str, tier: Tier, cfg: &Config, aws: &AwsSettings) -> RootFiles {
        let (_, platform) = fixture();
        let spec = TenantSpec {
            id: TenantId::parse(id).unwrap(),
            tier,
        };
        let inputs = TenantInputs::build(cfg, &platform, &spec, RenderOptions::default()).unwrap();
        tenant_root(cfg, aws, &state_key(&spec.id), &[inputs]).unwrap()
    }

    #[test]
    fn snapshot_rendered_roots_per_tier() {
        let (cfg, _) = fixture();
        for (id, tier) in [
            ("initech", Tier::Starter),
            ("globex", Tier::Growth),
            ("acme-corp", Tier::Enterprise),
        ] {
            let root = render(id, tier, &cfg, &emulator());
            insta::assert_snapshot!(format!("{id}_tfvars"), root.files["terraform.tfvars.json"]);
        }
        let root = render("initech", Tier::Starter, &cfg, &emulator());
        insta::assert_snapshot!("emulator_main_tf", root.files["main.tf"]);
        insta::assert_snapshot!("variables_tf", root.files["variables.tf"]);
    }

    #[test]
    fn snapshot_s3_backend_and_real_aws() {
        let (mut cfg, _) = fixture();
        cfg.state.backend = crate::config::Backend::S3;
        cfg.state.bucket = Some("state-bucket".into());
        cfg.state.key_prefix = Some("teams/${evil}".into());
        let real = AwsSettings {
            region: Some("eu-west-1".into()),
            profile: Some("platform".into()),
            endpoint_url: None,
        };
        let root = render("initech", Tier::Starter, &cfg, &real);
        insta::assert_snapshot!("s3_backend_main_tf", root.files["main.tf"]);
        assert!(root.files["main.tf"].contains("teams/$${evil}/tenants/initech.tfstate"));
    }

    #[test]
    fn a_cell_root_holds_its_tenants_under_its_own_state_key() {
        let (mut cfg, platform) = fixture();
        cfg.state.backend = crate::config::Backend::S3;
        cfg.state.bucket = Some("state-bucket".into());
        cfg.state.key_prefix = Some("team".into());
        let inputs: Vec<TenantInputs> = [("initech", Tier::Starter), ("globex", Tier::Growth)]
            .iter()
            .map(|(id, tier)| {
                let spec = TenantSpec {
                    id: TenantId::parse(id).unwrap(),
                    tier: *tier,
                };
                TenantInputs::build(&cfg, &platform, &spec, RenderOptions::default()).unwrap()
            })
            .collect();
        let real = AwsSettings {
            region: Some("eu-west-1".into()),
            profile: None,
            endpoint_url: None,
        };
        let root = tenant_root(&cfg, &real, &crate::cells::state_key(3), &inputs).unwrap();
        assert!(root.files["main.tf"].contains("\"team/cells/cell-3.tfstate\""));
        let vars: serde_json::Value =
            serde_json::from_str(&root.files["terraform.tfvars.json"]).unwrap();
        let tenants = vars["tenants"].as_object().unwrap();
        assert_eq!(tenants.keys().collect::<Vec<_>>(), ["globex", "initech"]);
        assert_eq!(tenants["globex"]["isolation"], "bridge");
    }

    #[test]
    fn rendering_is_deterministic_and_user_strings_stay_in_json() {
        let (cfg, _) = fixture();
        let a = render("acme-corp", Tier::Enterprise, &cfg, &emulator());
        let b = render("acme-corp", Tier::Enterprise, &cfg, &emulator());
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        // The id appears in HCL nowhere: only in the tfvars JSON.
        assert!(!a.files["main.tf"].contains("acme-corp"));
        assert!(a.files["terraform.tfvars.json"].contains("\"acme-corp\""));
        let c = render("globex", Tier::Growth, &cfg, &emulator());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn hcl_string_escapes_interpolation_and_quotes() {
        assert_eq!(hcl_string("plain"), "\"plain\"");
        assert_eq!(hcl_string("a\"b"), "\"a\\\"b\"");
        assert_eq!(hcl_string("${x}"), "\"$${x}\"");
        assert_eq!(hcl_string("%{if}"), "\"%%{if}\"");
        assert_eq!(hcl_string("a\nb"), "\"a\\nb\"");
    }
}
