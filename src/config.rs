//! `tenantctl.toml`: where the platform is, how state is kept, and the tier profiles.
//!
//! The file is loaded and fully validated before any command does work, so a typo in the
//! config is one clear error rather than a half-finished Terraform run. Secrets never live
//! here: the database admin URL is read from an environment variable the file names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::db::tls::SslMode;
use crate::tenant::{Isolation, Tier, TierProfile, TierProfileOverride};

pub const CONFIG_FILE: &str = "tenantctl.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default)]
    pub platform: PlatformValues,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub terraform: TerraformConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where `tenantctl export` writes (see `src/archive`).
    #[serde(default)]
    pub archive: crate::archive::ArchiveConfig,
    #[serde(default)]
    pub moves: MovesConfig,
    /// Tenants of pooled tiers packed into shared Terraform roots (see `src/cells.rs`).
    #[serde(default)]
    pub cells: CellsConfig,
    /// What `tenantctl cost` assumes and prices (see `src/cost.rs`).
    #[serde(default)]
    pub cost: crate::cost::CostConfig,
    #[serde(default)]
    pub alarms: AlarmsConfig,
    /// The audit trail's copy in CloudWatch Logs (see `src/audit.rs`).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Tenants' own KMS keys (`[tiers.<tier>] tenant_key` says which tiers have one).
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub tiers: BTreeMap<Tier, TierProfileOverride>,
    /// Set by `init --local`: enables settings that only make sense against the emulator.
    #[serde(default)]
    pub local: bool,
    /// Every tier's profile with the overrides applied, resolved once when the config
    /// loads (renders, fingerprints and provisioning ask for them per tenant).
    #[serde(skip)]
    profiles: BTreeMap<Tier, TierProfile>,
}

/// Standard AWS settings, shared by the SDK clients and the rendered provider block.
/// `AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION` and `AWS_PROFILE` in the
/// environment override the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    pub fn effective(&self) -> AwsSettings {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        AwsSettings {
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or_else(|| self.region.clone()),
            profile: env("AWS_PROFILE").or_else(|| self.profile.clone()),
            endpoint_url: env("AWS_ENDPOINT_URL").or_else(|| self.endpoint_url.clone()),
        }
    }

    pub fn region_or_default(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".into())
    }
}

/// Shared resources tenants attach to. Empty fields are filled from the outputs of
/// `tenantctl platform apply` (recorded in `.tenantctl/platform.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlatformValues {
    pub name: Option<String>,
    pub domain: Option<String>,
    pub hosted_zone_id: Option<String>,
    pub cluster_arn: Option<String>,
    pub data_bucket: Option<String>,
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub service_security_group_ids: Vec<String>,
    pub dns_target_name: Option<String>,
    pub dns_target_zone_id: Option<String>,
    pub image: Option<String>,
    /// Whether `platform apply` creates an ALB (false against the emulator: 60 s each).
    pub create_load_balancer: Option<bool>,
    /// The ALB's certificate (ACM, for `*.<domain>`): required with a load balancer, which
    /// listens on HTTPS only and redirects HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// The SNS topic the platform creates for tenant alarms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_topic_arn: Option<String>,
    /// Platform stack only: the data bucket refuses requests not over TLS. Default: on,
    /// unless the AWS endpoint is plain `http://` (an emulator, which it would lock out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_insecure_transport: Option<bool>,
}

impl PlatformValues {
    /// Config values win over recorded platform outputs.
    pub fn merged_over(&self, recorded: &PlatformValues) -> PlatformValues {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        fn pick_vec(a: &[String], b: &[String]) -> Vec<String> {
            if a.is_empty() { b.to_vec() } else { a.to_vec() }
        }
        PlatformValues {
            name: pick(&self.name, &recorded.name),
            domain: pick(&self.domain, &recorded.domain),
            hosted_zone_id: pick(&self.hosted_zone_id, &recorded.hosted_zone_id),
            cluster_arn: pick(&self.cluster_arn, &recorded.cluster_arn),
            data_bucket: pick(&self.data_bucket, &recorded.data_bucket),
            vpc_id: pick(&self.vpc_id, &recorded.vpc_id),
            subnet_ids: pick_vec(&self.subnet_ids, &recorded.subnet_ids),
            service_security_group_ids: pick_vec(
                &self.service_security_group_ids,
                &recorded.service_security_group_ids,
            ),
            dns_target_name: pick(&self.dns_target_name, &recorded.dns_target_name),
            dns_target_zone_id: pick(&self.dns_target_zone_id, &recorded.dns_target_zone_id),
            image: pick(&self.image, &recorded.image),
            create_load_balancer: pick(&self.create_load_balancer, &recorded.create_load_balancer),
            certificate_arn: pick(&self.certificate_arn, &recorded.certificate_arn),
            alarm_topic_arn: pick(&self.alarm_topic_arn, &recorded.alarm_topic_arn),
            deny_insecure_transport: pick(
                &self.deny_insecure_transport,
                &recorded.deny_insecure_transport,
            ),
        }
    }
}

/// The shared PostgreSQL that pool and bridge tenants live in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Name of the environment variable holding the admin connection URL.
    #[serde(default = "default_admin_url_env")]
    pub admin_url_env: String,
    /// Host, port and database name as the tenants' applications reach the shared
    /// database; written into each tenant's `tenants/<id>/db` secret.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub name: Option<String>,
    /// Local emulator only: dedicated (silo) databases become databases `tenant_<id>` on
    /// this PostgreSQL, because the emulator's RDS endpoints are not real servers.
    pub local_silo: Option<LocalSilo>,
    #[serde(default = "default_migrations_dir")]
    pub migrations_dir: PathBuf,
    /// Upper bound on admin connections tenantctl opens at once.
    #[serde(default = "default_connection_budget")]
    pub connection_budget: usize,
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// `db migrate`'s transactions: one per target (the default) or one per migration;
    /// `--tx-mode` overrides it.
    #[serde(default)]
    pub tx_mode: crate::db::TxMode,
    /// libpq's sslmode for tenant and silo connections, and the admin URL's default:
    /// `prefer` when `local = true`, `verify-full` otherwise.
    pub sslmode: Option<SslMode>,
    /// PEM file of the CAs to trust (for RDS, the downloaded global bundle); without it,
    /// verify-* modes use the system's trust store.
    pub sslrootcert: Option<PathBuf>,
    /// Enterprise (silo) tenants: IPv4 networks (CIDR) the dedicated database's security
    /// group admits on 5432 beside the tenant's own service, so that tenantctl, running
    /// there, can provision and migrate it with the `db-admin` login. Rendered into the
    /// tenant module's `admin_cidr_blocks`; empty by default (nothing but the service).
    #[serde(default)]
    pub admin_cidr_blocks: Vec<String>,
    /// Like `admin_cidr_blocks`, by security group (the one tenantctl's host or task
    /// has): the tenant module's `admin_security_group_ids`.
    #[serde(default)]
    pub admin_security_group_ids: Vec<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            admin_url_env: default_admin_url_env(),
            host: None,
            port: None,
            name: None,
            local_silo: None,
            migrations_dir: default_migrations_dir(),
            connection_budget: default_connection_budget(),
            lock_timeout_ms: default_lock_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
            tx_mode: Default::default(),
            sslmode: None,
            sslrootcert: None,
            admin_cidr_blocks: Vec::new(),
            admin_security_group_ids: Vec::new(),
        }
    }
}

fn default_admin_url_env() -> String {
    "TENANTCTL_DATABASE_URL".into()
}
fn default_migrations_dir() -> PathBuf {
    "migrations".into()
}
fn default_connection_budget() -> usize {
    10
}
fn default_lock_timeout_ms() -> u64 {
    5_000
}
fn default_statement_timeout_ms() -> u64 {
    300_000
}

/// Tier changes that cross isolation models (see `src/moves/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MovesConfig {
    /// Days a moved tenant's source data is kept, hidden, before `apply` deletes it
    /// (`tenantctl move <id> --finish` deletes it sooner). 0: at the end of the move.
    #[serde(default = "default_retain_days")]
    pub retain_days: u32,
}

impl Default for MovesConfig {
    fn default() -> Self {
        MovesConfig {
            retain_days: default_retain_days(),
        }
    }
}

fn default_retain_days() -> u32 {
    7
}

/// State cells: the tenants of `tiers` share Terraform roots of at most `size` tenants,
/// so a fleet-wide plan starts Terraform once per cell instead of once per tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CellsConfig {
    /// Off until turned on: a tenant already applied in its own root stays there until
    /// `tenantctl cells adopt` moves its state into a cell.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_cell_tiers")]
    pub tiers: Vec<Tier>,
    #[serde(default = "default_cell_size")]
    pub size: u32,
}

impl Default for CellsConfig {
    fn default() -> Self {
        CellsConfig {
            enabled: false,
            tiers: default_cell_tiers(),
            size: default_cell_size(),
        }
    }
}

impl CellsConfig {
    /// Whether tenants of `tier` live in cells.
    pub fn holds(&self, tier: Tier) -> bool {
        self.enabled && self.tiers.contains(&tier)
    }
}

fn default_cell_tiers() -> Vec<Tier> {
    vec![Tier::Starter, Tier::Growth]
}

fn default_cell_size() -> u32 {
    50
}

/// A cell's plan grows with its size; past a few hundred tenants one plan costs more
/// than the Terraform start-ups it saves.
pub const MAX_CELL_SIZE: u32 = 500;

/// Tenants' own KMS keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Pending window of a tenant key scheduled for deletion (`remove --shred`): 7 to 30
    /// days, during which `aws kms cancel-key-deletion` still undoes the shredding.
    #[serde(default = "default_deletion_window_days")]
    pub deletion_window_days: u32,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            deletion_window_days: default_deletion_window_days(),
        }
    }
}

fn default_deletion_window_days() -> u32 {
    30
}

/// The KMS limits of a key's pending deletion window.
pub const KEY_DELETION_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;

/// The longest retention: a retained silo source keeps paying for its RDS instance.
pub const MAX_RETAIN_DAYS: u32 = 365;

/// CloudWatch metrics of `db migrate` runs (see `src/metrics.rs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Publish after each `db migrate` run. Unset: on when an AWS region or endpoint is
    /// configured (`[aws]`, or `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
    pub enabled: Option<bool>,
    /// The CloudWatch namespace; the platform module's dashboard reads the same.
    pub namespace: Option<String>,
}

impl MetricsConfig {
    pub const DEFAULT_NAMESPACE: &str = "Tenantctl/Migrations";

    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(Self::DEFAULT_NAMESPACE)
    }

    /// Whether to publish, given the effective AWS settings ([`AwsSettings::effective`]).
    /// A work dir with no AWS settings at all (a database-only setup) publishes nothing
    /// unless asked to, rather than warning after every run.
    pub fn enabled(&self, aws: &AwsSettings) -> bool {
        self.enabled
            .unwrap_or(aws.region.is_some() || aws.endpoint_url.is_some())
    }
}

/// Per-tenant CloudWatch alarms (thresholds are in the tier profiles).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where the application publishes its request metrics (`Requests`, `Errors`,
    /// `Latency`), with a `TenantId` and a `Tier` dimension.
    #[serde(default = "default_alarm_namespace")]
    pub namespace: String,
    /// The SNS topic alarms notify; default: the platform's (`platform apply` output
    /// `alarm_topic_arn`).
    pub topic_arn: Option<String>,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            enabled: true,
            namespace: default_alarm_namespace(),
            topic_arn: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_alarm_namespace() -> String {
    "Tenants/App".into()
}

/// CloudWatch's rule for a custom namespace (the platform module checks the same).
pub fn check_metrics_namespace(ns: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".#:/ _-".contains(c);
    if ns.is_empty() || ns.len() > 255 || !ns.chars().all(allowed) || ns.trim() != ns {
        return Err(format!(
            "`{ns}` is not a CloudWatch namespace: 1 to 255 letters, digits and `. - _ / # :` or spaces, neither starting nor ending with a space"
        ));
    }
    if ns.starts_with("AWS/") {
        return Err(format!(
            "`{ns}` starts with `AWS/`, which CloudWatch reserves for AWS services"
        ));
    }
    Ok(())
}

/// One entry of `[database] admin_cidr_blocks`: an IPv4 network written canonically
/// (`10.20.0.0/24`: decimal octets without leading zeros, no host bits set, a prefix
/// length 0-32), and not `0.0.0.0/0`. The tenant module's validation is the same rule.
pub fn check_admin_cidr(cidr: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "`{cidr}` is not an IPv4 network in CIDR notation whose address has no host bits set, such as 10.20.0.0/24 (not 10.20.0.5/24)"
        )
    };
    // Decimal without leading zeros ("0" itself is fine), at most `max`.
    fn number(s: &str, max: u32) -> Option<u32> {
        let canonical = !s.is_empty()
            && s.len() <= 3
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        canonical
            .then(|| s.parse().ok())
            .flatten()
            .filter(|n| *n <= max)
    }
    let (addr, len) = cidr.split_once('/').ok_or_else(invalid)?;
    let len = number(len, 32).ok_or_else(invalid)?;
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.len() != 4 {
        return Err(invalid());
    }
    let mut ip: u32 = 0;
    for o in octets {
        ip = (ip << 8) | number(o, 255).ok_or_else(invalid)?;
    }
    let host_bits = u32::MAX.checked_shr(len).unwrap_or(0);
    if ip & host_bits != 0 {
        return Err(invalid());
    }
    if len == 0 {
        return Err(format!(
            "`{cidr}` admits every address, including every other tenant's task in the VPC: name the network tenantctl connects from"
        ));
    }
    Ok(())
}

/// One entry of `[database] admin_security_group_ids`: `sg-` and 8 or 17 lower-case hex
/// digits (the tenant module's rule).
pub fn check_security_group_id(id: &str) -> Result<(), String> {
    let hex = id.strip_prefix("sg-").unwrap_or("");
    if matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a security group id: `sg-` and 8 or 17 lower-case hex digits"
        ))
    }
}

/// The first entry that appears twice.
fn duplicate(items: &[String]) -> Option<&String> {
    items
        .iter()
        .enumerate()
        .find(|(i, a)| items[..*i].contains(a))
        .map(|(_, a)| a)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalSilo {
    pub host: String,
    pub port: u16,
}

/// Where Terraform state (and tenantctl's own records) live.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: Backend,
    /// S3 backend: bucket, key prefix (one key per tenant under it), region.
    pub bucket: Option<String>,
    pub key_prefix: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Local,
    S3,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformConfig {
    /// The binary to run (`tofu` works too). `TENANTCTL_TERRAFORM` overrides it.
    pub binary: Option<String>,
    /// Days a deleted secret is recoverable; 0 deletes at once (the local default).
    pub secret_recovery_window_days: Option<u32>,
    /// Take a final snapshot when a dedicated database is destroyed.
    pub skip_final_snapshot: Option<bool>,
}

/// What `[terraform] binary` may name in CI: a bare name looked up on the `PATH` the job
/// sets up, never a path into the checkout.
pub const CI_TERRAFORM_BINARIES: &[&str] = &["terraform", "tofu"];

impl TerraformConfig {
    pub fn binary(&self) -> String {
        terraform_override()
            .or_else(|| self.binary.clone())
            .unwrap_or_else(|| "terraform".into())
    }

    /// In CI the config file is part of the change under test (a pull request can edit
    /// it), so it must not choose the program that runs with the job's credentials: only
    /// the allow-list, or `TENANTCTL_TERRAFORM`, which the workflow sets.
    pub fn check_trusted(&self) -> Result<()> {
        check_terraform_binary(
            self.binary.as_deref(),
            terraform_override().is_some(),
            in_ci(),
        )
        .map_err(anyhow::Error::msg)
    }
}

fn terraform_override() -> Option<String> {
    std::env::var("TENANTCTL_TERRAFORM")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Whether this run is a CI job: `CI` set to anything but empty, `0` or `false`, as GitHub
/// Actions, GitLab CI, Buildkite, CircleCI and most others set it.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// The rule of [`TerraformConfig::check_trusted`]: `configured` is `[terraform] binary`,
/// `overridden` whether `TENANTCTL_TERRAFORM` is set (then the config value is not used).
pub fn check_terraform_binary(
    configured: Option<&str>,
    overridden: bool,
    ci: bool,
) -> Result<(), String> {
    match configured {
        Some(b) if ci && !overridden && !CI_TERRAFORM_BINARIES.contains(&b) => Err(format!(
            "[terraform] binary = {b:?} is refused in CI (`CI` is set): there the config file is part of the change under test, so it may only name {} (looked up on PATH)\nhint: let the workflow choose the program: set `TENANTCTL_TERRAFORM` in the job's environment",
            CI_TERRAFORM_BINARIES
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
        _ => Ok(()),
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read config `{}`\nhint: run `tenantctl init` (or `tenantctl init --local`) first",
                path.display()
            )
        })?;
        let mut cfg: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config `{}`", path.display()))?;
        cfg.validate()
            .and_then(|()| cfg.terraform.check_trusted())
            .with_context(|| format!("invalid config `{}`", path.display()))?;
        cfg.profiles = Tier::ALL
            .iter()
            .map(|t| (*t, cfg.resolve_profile(*t)))
            .collect();
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        for tier in Tier::ALL {
            self.profile(tier)
                .validate(tier)
                .map_err(anyhow::Error::msg)?;
        }
        if self.state.backend == Backend::S3 && self.state.bucket.is_none() {
            bail!("[state] backend = \"s3\" needs `bucket`");
        }
        if self.database.connection_budget == 0 {
            bail!("[database] connection_budget must be at least 1");
        }
        if !self.local && self.database.local_silo.is_some() {
            bail!(
                "[database] local_silo is for the local emulator only (set `local = true`, as `tenantctl init --local` does)"
            );
        }
        for cidr in &self.database.admin_cidr_blocks {
            check_admin_cidr(cidr)
                .map_err(|e| anyhow::anyhow!("[database] admin_cidr_blocks: {e}"))?;
        }
        for id in &self.database.admin_security_group_ids {
            check_security_group_id(id)
                .map_err(|e| anyhow::anyhow!("[database] admin_security_group_ids: {e}"))?;
        }
        for (field, items) in [
            ("admin_cidr_blocks", &self.database.admin_cidr_blocks),
            (
                "admin_security_group_ids",
                &self.database.admin_security_group_ids,
            ),
        ] {
            if let Some(d) = duplicate(items) {
                bail!("[database] {field}: `{d}` appears twice");
            }
        }
        if self.moves.retain_days > MAX_RETAIN_DAYS {
            bail!(
                "[moves] retain_days = {} is too long: it must be between 0 and {MAX_RETAIN_DAYS} days (a retained source keeps its resources, a dedicated database included)",
                self.moves.retain_days
            );
        }
        if self.cells.size == 0 || self.cells.size > MAX_CELL_SIZE {
            bail!(
                "[cells] size = {} is out of range: a cell holds 1 to {MAX_CELL_SIZE} tenants",
                self.cells.size
            );
        }
        if let Some(t) = self
            .cells
            .tiers
            .iter()
            .find(|t| t.isolation() == Isolation::Silo)
        {
            bail!(
                "[cells] tiers names `{t}`: a tier with a dedicated database keeps one root per tenant, only pooled tiers (pool or bridge isolation) go in cells"
            );
        }
        if let Some(ns) = &self.metrics.namespace {
            check_metrics_namespace(ns).map_err(|e| anyhow::anyhow!("[metrics] namespace: {e}"))?;
        }
        if !KEY_DELETION_WINDOW_DAYS.contains(&self.keys.deletion_window_days) {
            bail!(
                "[keys] deletion_window_days = {} is invalid: it must be between {} and {} days (the KMS limits of a key's pending deletion)",
                self.keys.deletion_window_days,
                KEY_DELETION_WINDOW_DAYS.start(),
                KEY_DELETION_WINDOW_DAYS.end()
            );
        }
        self.archive.validate()?;
        check_metrics_namespace(&self.alarms.namespace)
            .map_err(|e| anyhow::anyhow!("[alarms] namespace: {e}"))?;
        if let Some(arn) = &self.alarms.topic_arn
            && !(arn.starts_with("arn:") && arn.split(':').count() == 6 && arn.contains(":sns:"))
        {
            bail!(
                "[alarms] topic_arn `{arn}` is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"
            );
        }
        self.cost.validate()?;
        self.audit.validate()?;
        Ok(())
    }

    /// The tier's profile: built-in defaults with `[tiers.<tier>]` applied.
    pub fn profile(&self, tier: Tier) -> TierProfile {
        match self.profiles.get(&tier) {
            Some(p) => p.clone(),
            None => self.resolve_profile(tier),
        }
    }

    fn resolve_profile(&self, tier: Tier) -> TierProfile {
        let base = tier.default_profile();
        match self.tiers.get(&tier) {
            Some(o) => base.with_override(o),
            None => base,
        }
    }

    /// The config `tenantctl init` writes.
    pub fn template(local: bool) -> String {
        if local {
            LOCAL_TEMPLATE.to_string()
        } else {
            DEFAULT_TEMPLATE.to_string()
        }
    }
}

const DEFAULT_TEMPLATE: &str = r#"# tenantctl configuration. See README.md ("The config file").

[aws]
region = "us-east-1"
# profile = "platform-admin"
# endpoint_url = "http://127.0.0.1:5000"   # AWS_ENDPOINT_URL overrides this

[platform]
# Leave empty to use the outputs of `tenantctl platform apply`; set them when the
# platform already exists.
name = "tenantctl"
domain = "example.com"
# hosted_zone_id = "Z0123456789"
# cluster_arn = "arn:aws:ecs:us-east-1:123456789012:cluster/tenants"
# data_bucket = "example-tenant-data"
# vpc_id = "vpc-..."
# subnet_ids = ["subnet-...", "subnet-..."]
# service_security_group_ids = ["sg-..."]
# dns_target_name = "my-alb-123.us-east-1.elb.amazonaws.com"
# dns_target_zone_id = "Z35SXDOTRQ7X7K"
# The platform's load balancer serves HTTPS only (HTTP redirects): it needs an ACM
# certificate for *.<domain> (or create_load_balancer = false).
# certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/..."
image = "public.ecr.aws/nginx/nginx:stable"

[database]
# The admin connection URL is read from this environment variable, never from this file.
admin_url_env = "TENANTCTL_DATABASE_URL"
# How tenants' applications reach the shared PostgreSQL (written into their secrets).
host = "shared-db.internal"
port = 5432
name = "app"
migrations_dir = "migrations"
connection_budget = 10
# TLS for tenant and dedicated-database connections, and the admin URL's default (its own
# ?sslmode=&sslrootcert= win). verify-full is the default; for Amazon RDS, point sslrootcert
# at the CA bundle downloaded from AWS (tenantctl downloads nothing).
# sslmode = "verify-full"
# sslrootcert = "/etc/tenantctl/global-bundle.pem"
# Enterprise tenants' dedicated databases admit only their own service; let tenantctl in
# from where it runs (a CIDR and/or a security group) so it can provision and migrate them.
# admin_cidr_blocks = ["10.42.200.0/24"]
# admin_security_group_ids = ["sg-0123456789abcdef0"]

[metrics]
# CloudWatch metrics of every `db migrate` run (on by default when an AWS region is set).
# enabled = true
# namespace = "Tenantctl/Migrations"

[alarms]
# Per-tenant CloudWatch alarms (error rate, p99 latency; thresholds in the tier profiles)
# on the application's metrics, notifying the platform's SNS topic.
# enabled = true
# namespace = "Tenants/App"
# topic_arn = "arn:aws:sns:us-east-1:123456789012:on-call"

[audit]
# A copy of every audit event (add, apply, move, remove, export, import, db migrate and
# rollback) in CloudWatch Logs, one stream per tenant (on by default when a region is set).
# cloudwatch = true
# log_group = "/tenantctl/audit"
# retention_days = 365

[moves]
# A tier change that crosses isolation models moves the tenant's data; the source is
# kept, hidden from the tenant, this many days (`tenantctl move <id> --finish` sooner).
retain_days = 7

[cells]
# Tenants of these tiers share Terraform roots of at most `size` tenants each
# (`.tenantctl/roots/cell-<n>/`): a fleet-wide plan runs Terraform once per cell.
enabled = false
tiers = ["starter", "growth"]
size = 50

[cost]
# `tenantctl cost` prices what each tier creates from the built-in table of [aws] region
# (prices/<region>.toml in the source); a file in the same format replaces it.
# price_table = "prices/eu-west-1.toml"
# The shared PostgreSQL of starter and growth tenants, which tenantctl does not create.
# shared_database_class = "db.m5.large"
# shared_database_storage_gb = 100
# nat_gateways = 1
# Known monthly figures replace the estimates of the shared stack and database.
# platform_monthly = 250.0
# shared_database_monthly = 400.0
# [cost.tasks]               # tasks per tenant, per tier (default 1)
# starter = 1
# [cost.rds_instance_hour]   # RDS classes missing from the table, dollars per hour
# "db.r7g.large" = 0.239
# Offboarding (`tenantctl remove`, see README "Offboarding"):
# [archive]
# kms_key_id = "alias/tenant-archive"   # the archive key: final snapshots and archived objects of removed tenants
# objects = "archive"                   # the tenant's S3 prefix on remove: "archive" (copy, then delete) or "delete"
# [keys]
# deletion_window_days = 30             # remove --shred: pending window of a tenant key's deletion (7-30)

[state]
backend = "local"
# backend = "s3"
# bucket = "example-tenantctl-state"
# key_prefix = "tenantctl"
# region = "us-east-1"

[terraform]
# binary = "tofu"          # TENANTCTL_TERRAFORM overrides this; in CI only terraform/tofu
secret_recovery_window_days = 7

# Tier profiles override the built-in defaults field by field.
# [tiers.starter]
# rate_limit_per_minute = 100
# [tiers.enterprise]
# db_instance_class = "db.r6g.large"
"#;

const LOCAL_TEMPLATE: &str = r#"# tenantctl configuration for the local AWS emulator (moto) and a local PostgreSQL.
local = true

[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:5000"   # AWS_ENDPOINT_URL overrides this

[platform]
name = "tenantctl-local"
domain = "tenants.test"
data_bucket = "tenantctl-local-data"
create_load_balancer = false
image = "public.ecr.aws/nginx/nginx:stable"

[database]
admin_url_env = "TENANTCTL_DATABASE_URL"
host = "127.0.0.1"
port = 5432
name = "app"
migrations_dir = "migrations"
connection_budget = 10
# Dedicated (enterprise) databases become databases on this PostgreSQL: the emulator's
# RDS endpoints are not real servers. For local use and tests only.
local_silo = { host = "127.0.0.1", port = 5432 }
# TLS: prefer (TLS when the server offers it, nothing verified) is the default with
# `local = true`.
# sslmode = "prefer"

[state]
backend = "local"

[terraform]
secret_recovery_window_days = 0
skip_final_snapshot = true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_deletion_window_is_within_the_kms_limits() {
        for (days, ok) in [(6, false), (7, true), (30, true), (31, false)] {
            let cfg: Config =
                toml::from_str(&format!("[keys]\ndeletion_window_days = {days}\n")).unwrap();
            let r = cfg.validate();
            assert_eq!(r.is_ok(), ok, "{days}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("[keys] deletion_window_days"), "{e}");
            }
        }
        let cfg: Config = toml::from_str("[archive]\nobjects = \"delete\"\n").unwrap();
        assert_eq!(cfg.archive.objects, crate::archive::ObjectsPolicy::Delete);
        assert!(toml::from_str::<Config>("[archive]\nobjects = \"keep\"\n").is_err());
        // Enterprise tenants have keys of their own by default, other tiers on request.
        assert!(cfg.profile(Tier::Enterprise).tenant_key);
        assert!(!cfg.profile(Tier::Starter).tenant_key);
        let cfg: Config = toml::from_str("[tiers.growth]\ntenant_key = true\n").unwrap();
        assert!(cfg.profile(Tier::Growth).tenant_key);
    }

    #[test]
    fn cells_settings_are_checked_with_the_value_and_the_rule() {
        for (size, ok) in [(0, false), (1, true), (500, true), (501, false)] {
            let cfg: Config = toml::from_str(&format!("[cells]\nsize = {size}\n")).unwrap();
            let r = cfg.validate();
            assert_eq!(r.is_ok(), ok, "{size}: {r:?}");
            if let Err(e) = r {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("[cells] size = {size}")) && e.contains("1 to 500"),
                    "{e}"
                );
            }
        }
        let cfg: Config =
            toml::from_str("[cells]\ntiers = [\"starter\", \"enterprise\"]\n").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.contains("`enterprise`") && e.contains("dedicated database"),
            "{e}"
        );
        assert!(toml::from_str::<Config>("[cells]\nsize = 5\nsizes = 5\n").is_err());
        // Off unless turned on; the pooled tiers by default.
        let cfg: Config = toml::from_str("").unwrap();
        assert!(!cfg.cells.holds(Tier::Starter));
        let cfg: Config = toml::from_str("[cells]\nenabled = true\n").unwrap();
        assert!(cfg.cells.holds(Tier::Growth) && !cfg.cells.holds(Tier::Enterprise));
        assert_eq!(cfg.cells.size, 50);
    }

    #[test]
    fn templates_parse_and_validate() {
        for local in [false, true] {
            let cfg: Config = toml::from_str(&Config::template(local)).unwrap();
            cfg.validate().unwrap();
            assert_eq!(cfg.local, local);
        }
    }

    #[test]
    fn tier_override_applies() {
        let cfg: Config = toml::from_str("[tiers.growth]\nrate_limit_per_minute = 2000\n").unwrap();
        assert_eq!(cfg.profile(Tier::Growth).rate_limit_per_minute, 2000);
        assert_eq!(cfg.profile(Tier::Starter).rate_limit_per_minute, 100);
    }

    #[test]
    fn unknown_fields_and_bad_sizes_are_refused() {
        assert!(toml::from_str::<Config>("[tiers.gold]\ncpu = 1\n").is_err());
        assert!(toml::from_str::<Config>("[aws]\nregoin = \"x\"\n").is_err());
        let cfg: Config = toml::from_str("[tiers.starter]\nmemory = 3000\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("Fargate"));
    }

    #[test]
    fn alarm_thresholds_come_from_the_tier_and_the_config() {
        let cfg: Config = toml::from_str("").unwrap();
        let p = |c: &Config, t| {
            let p = c.profile(t);
            (p.alarm_error_rate_percent, p.alarm_p99_latency_ms)
        };
        assert_eq!(p(&cfg, Tier::Starter), (5, 1000));
        assert_eq!(p(&cfg, Tier::Growth), (2, 500));
        assert_eq!(p(&cfg, Tier::Enterprise), (1, 200));
        assert_eq!(cfg.alarms.namespace, "Tenants/App");
        assert!(cfg.alarms.enabled);
        let cfg: Config = toml::from_str("[tiers.growth]\nalarm_p99_latency_ms = 300\n").unwrap();
        assert_eq!(p(&cfg, Tier::Growth), (2, 300));
        for (bad, says) in [
            (
                "[tiers.starter]\nalarm_error_rate_percent = 0\n",
                "alarm_error_rate_percent 0",
            ),
            (
                "[tiers.starter]\nalarm_p99_latency_ms = 0\n",
                "alarm_p99_latency_ms",
            ),
            ("[alarms]\nnamespace = \"AWS/ECS\"\n", "AWS/ECS"),
            (
                "[alarms]\ntopic_arn = \"alerts\"\n",
                "`alerts` is not an SNS topic ARN",
            ),
        ] {
            let cfg: Config = toml::from_str(bad).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn admin_access_settings_are_checked_when_the_config_loads() {
        for ok in [
            "10.42.200.0/24",
            "192.168.1.7/32",
            "0.0.0.0/1",
            "172.16.0.0/12",
        ] {
            assert_eq!(check_admin_cidr(ok), Ok(()), "{ok}");
        }
        for bad in [
            "10.42.200.7/24",
            "10.42.200.0/33",
            "10.42.200.0/024",
            "010.42.200.0/24",
            "10.42.200.0",
            "10.42.256.0/24",
            "fd00::/8",
            " 10.42.200.0/24",
        ] {
            let e = check_admin_cidr(bad).unwrap_err();
            assert!(
                e.contains(&format!("`{bad}` is not an IPv4 network")),
                "{e}"
            );
        }
        assert!(
            check_admin_cidr("0.0.0.0/0")
                .unwrap_err()
                .contains("every other tenant's task")
        );
        assert_eq!(check_security_group_id("sg-0123456789abcdef0"), Ok(()));
        assert_eq!(check_security_group_id("sg-01234567"), Ok(()));
        assert!(check_security_group_id("sg-0123456789ABCDEF0").is_err());
        assert!(check_security_group_id("sg-012345678").is_err());

        let cfg: Config =
            toml::from_str("[database]\nadmin_cidr_blocks = [\"10.0.0.0/8\", \"10.0.0.0/8\"]\n")
                .unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "[database] admin_cidr_blocks: `10.0.0.0/8` appears twice"
        );
        let cfg: Config =
            toml::from_str("[database]\nadmin_security_group_ids = [\"sg-1\"]\n").unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "[database] admin_security_group_ids: `sg-1` is not a security group id: `sg-` and 8 or 17 lower-case hex digits"
        );
        let cfg: Config = toml::from_str("[metrics]\nnamespace = \" Tenantctl\"\n").unwrap();
        assert!(cfg.validate().is_err());
        let cfg: Config =
            toml::from_str("[metrics]\nenabled = false\nnamespace = \"Ops/Migrations\"\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.metrics.namespace(), "Ops/Migrations");
        assert!(toml::from_str::<Config>("[metrics]\nnamspace = \"x\"\n").is_err());
    }

    #[test]
    fn ci_takes_the_terraform_binary_from_the_environment_or_the_allow_list() {
        // Outside CI the config may name any binary.
        assert_eq!(check_terraform_binary(Some("./tf"), false, false), Ok(()));
        // In CI: the allow-list, or anything once TENANTCTL_TERRAFORM decides.
        for ok in [None, Some("terraform"), Some("tofu")] {
            assert_eq!(check_terraform_binary(ok, false, true), Ok(()), "{ok:?}");
        }
        assert_eq!(check_terraform_binary(Some("./tf"), true, true), Ok(()));
        for bad in ["./tf", "/usr/bin/terraform", "terraform ", "sh"] {
            let e = check_terraform_binary(Some(bad), false, true).unwrap_err();
            assert!(
                e.starts_with(&format!("[terraform] binary = {bad:?} is refused in CI")),
                "{e}"
            );
            assert!(e.contains("`terraform` or `tofu`"), "{e}");
            assert!(e.contains("hint: let the workflow choose"), "{e}");
        }
    }

    #[test]
    fn database_tls_settings_parse_and_unknown_sslmode_is_refused() {
        let cfg: Config = toml::from_str(
            "[database]\nsslmode = \"verify-ca\"\nsslrootcert = \"/etc/ssl/rds.pem\"\n",
        )
        .unwrap();
        assert_eq!(cfg.database.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(
            cfg.database.sslrootcert.as_deref(),
            Some(Path::new("/etc/ssl/rds.pem"))
        );
        let err = toml::from_str::<Config>("[database]\nsslmode = \"verify_full\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown sslmode `verify_full`"), "{err}");
        assert!(err.contains("`verify-full`"), "{err}");
    }
}
