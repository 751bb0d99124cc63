//! The tenant model: the one validated tenant id, the tiers and their profiles.
//!
//! A tenant id ends up in DNS labels, IAM role names, S3 prefixes, PostgreSQL identifiers
//! and Terraform values. It is validated once, here, when it enters the program; every
//! other module takes a [`TenantId`] and can rely on it being safe for all of those places.
//! The derived names live here too, so the length rule and the names cannot drift apart.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Names that would collide with platform hostnames, PostgreSQL schemas or roles.
pub const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "apps",
    "auth",
    "login",
    "mail",
    "smtp",
    "ftp",
    "ns",
    "ns1",
    "ns2",
    "dns",
    "cdn",
    "static",
    "assets",
    "status",
    "help",
    "support",
    "docs",
    "blog",
    "public",
    "pool",
    "postgres",
    "pg",
    "root",
    "system",
    "internal",
    "platform",
    "shared",
    "tenant",
    "tenants",
    "tenantctl",
    "ingress",
    "default",
    "localhost",
    "test",
];

/// The longest derived name is the execution role `tenant-<id>-exec`, which IAM caps at
/// 64 characters: 64 - len("tenant-") - len("-exec") = 52. Every other derived name
/// (DNS label 63, `tenant_<id>` PostgreSQL identifier 63 bytes, RDS identifier 63) is
/// shorter for the same id; `derived_names_fit_for_longest_id` checks it.
pub const MAX_LEN: usize = 52;

/// Why an id was refused. Each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("tenant id is empty")]
    Empty,
    #[error(
        "invalid tenant id `{id}`: character {ch:?} at position {pos} is not allowed (only lowercase ASCII letters a-z, digits 0-9 and `-`)"
    )]
    BadChar { id: String, ch: char, pos: usize },
    #[error("invalid tenant id `{id}`: must start with a lowercase letter a-z")]
    BadStart { id: String },
    #[error("invalid tenant id `{id}`: must not end with `-`")]
    TrailingHyphen { id: String },
    #[error("invalid tenant id `{id}`: must not contain `--`")]
    DoubleHyphen { id: String },
    #[error(
        "invalid tenant id `{id}`: {len} characters is too long (at most {MAX_LEN}, so that IAM role `tenant-<id>-exec` fits in 64)"
    )]
    TooLong { id: String, len: usize },
    #[error("invalid tenant id `{id}`: `{id}` is a reserved name")]
    Reserved { id: String },
    #[error(
        "invalid tenant id `{id}`: must not end with `{suffix}`: tenant `{base}`'s {what} is named `tenant-{base}{suffix}`, the same as tenant `{id}`'s resources would be"
    )]
    DerivedSuffix {
        id: String,
        suffix: &'static str,
        base: String,
        what: &'static str,
    },
}

/// Suffixes tenantctl appends to `tenant-<id>` for a tenant's other resources. An id
/// ending in one would make its `tenant-<id>` equal another tenant's suffixed name
/// (`foo-exec` vs `foo`'s execution role `tenant-foo-exec`), so such ids are refused.
pub const DERIVED_SUFFIXES: &[(&str, &str)] = &[("-exec", "execution role")];

/// A validated tenant id: `[a-z][a-z0-9-]*`, no leading/trailing/double hyphen,
/// at most [`MAX_LEN`] characters, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, TenantIdError> {
        // The id is shown back in errors; keep it printable (`{:?}`-escaped when odd).
        let shown = || raw.escape_debug().to_string();
        if raw.is_empty() {
            return Err(TenantIdError::Empty);
        }
        for (pos, ch) in raw.chars().enumerate() {
            if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-') {
                return Err(TenantIdError::BadChar {
                    id: shown(),
                    ch,
                    pos,
                });
            }
        }
        if !raw.as_bytes()[0].is_ascii_lowercase() {
            return Err(TenantIdError::BadStart { id: shown() });
        }
        if raw.ends_with('-') {
            return Err(TenantIdError::TrailingHyphen { id: shown() });
        }
        if raw.contains("--") {
            return Err(TenantIdError::DoubleHyphen { id: shown() });
        }
        if raw.len() > MAX_LEN {
            return Err(TenantIdError::TooLong {
                id: shown(),
                len: raw.len(),
            });
        }
        if RESERVED.contains(&raw) {
            return Err(TenantIdError::Reserved { id: shown() });
        }
        for (suffix, what) in DERIVED_SUFFIXES {
            if let Some(base) = raw.strip_suffix(suffix) {
                return Err(TenantIdError::DerivedSuffix {
                    id: shown(),
                    suffix,
                    base: base.to_string(),
                    what,
                });
            }
        }
        Ok(TenantId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// IAM task role and ECS task definition family, RDS identifier, ECS service.
    pub fn resource_name(&self) -> String {
        format!("tenant-{}", self.0)
    }

    /// ECS task definition family (the same as [`resource_name`](Self::resource_name)).
    pub fn task_family(&self) -> String {
        self.resource_name()
    }

    /// IAM execution role.
    pub fn execution_role_name(&self) -> String {
        format!("{}{}", self.resource_name(), DERIVED_SUFFIXES[0].0)
    }

    /// PostgreSQL schema (bridge), login role and silo database name. Contains `-`, so
    /// it must always be quoted as an identifier (see `db::ident`).
    pub fn pg_name(&self) -> String {
        format!("tenant_{}", self.0)
    }

    /// S3 key prefix, with the trailing slash that keeps `acme` out of `acme-corp/`.
    pub fn s3_prefix(&self) -> String {
        format!("tenants/{}/", self.0)
    }

    /// Secrets Manager name prefix.
    pub fn secret_prefix(&self) -> String {
        format!("tenants/{}/", self.0)
    }

    /// The tenant's database login (`tenants/<id>/db`): what the application reads.
    pub fn db_secret_name(&self) -> String {
        format!("{}db", self.secret_prefix())
    }

    /// The master login of a dedicated (silo) database (`tenants/<id>/db-admin`).
    pub fn db_admin_secret_name(&self) -> String {
        format!("{}db-admin", self.secret_prefix())
    }

    /// PostgreSQL login role of the tenant.
    pub fn db_role(&self) -> String {
        self.pg_name()
    }

    /// The tenant's own schema (bridge in the shared database, silo in its dedicated one).
    pub fn db_schema(&self) -> String {
        self.pg_name()
    }

    /// The dedicated database's name (silo).
    pub fn db_name(&self) -> String {
        self.pg_name()
    }

    pub fn dns_label(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::parse(s)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        TenantId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// How a tier isolates a tenant's data. One Terraform module takes it as a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Shared tables with `tenant_id` and row-level security.
    Pool,
    /// A schema and role per tenant in the shared database.
    Bridge,
    /// A dedicated RDS instance.
    Silo,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Pool => "pool",
            Isolation::Bridge => "bridge",
            Isolation::Silo => "silo",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Starter,
    Growth,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Starter, Tier::Growth, Tier::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Starter => "starter",
            Tier::Growth => "growth",
            Tier::Enterprise => "enterprise",
        }
    }

    /// The isolation model is fixed by the tier: changing isolation means changing tier.
    pub fn isolation(self) -> Isolation {
        match self {
            Tier::Starter => Isolation::Pool,
            Tier::Growth => Isolation::Bridge,
            Tier::Enterprise => Isolation::Silo,
        }
    }

    /// Built-in defaults from common practice (seed articles): 100/1,000/10,000 requests
    /// per minute, 1,000/10,000/100,000 cache keys, statement timeouts as resource
    /// governors against noisy neighbours, alarms at 5 % errors / 1,000 ms p99, 2 % /
    /// 500 ms, 1 % / 200 ms.
    pub fn default_profile(self) -> TierProfile {
        match self {
            Tier::Starter => TierProfile {
                cpu: 256,
                memory: 512,
                rate_limit_per_minute: 100,
                max_concurrent_requests: 10,
                max_db_connections: 5,
                statement_timeout_ms: 5_000,
                cache_key_quota: 1_000,
                db_instance_class: None,
                db_allocated_storage: None,
                alarm_error_rate_percent: 5,
                alarm_p99_latency_ms: 1_000,
                tenant_key: false,
            },
            Tier::Growth => TierProfile {
                cpu: 512,
                memory: 2048,
                rate_limit_per_minute: 1_000,
                max_concurrent_requests: 50,
                max_db_connections: 20,
                statement_timeout_ms: 15_000,
                cache_key_quota: 10_000,
                db_instance_class: None,
                db_allocated_storage: None,
                alarm_error_rate_percent: 2,
                alarm_p99_latency_ms: 500,
                tenant_key: false,
            },
            Tier::Enterprise => TierProfile {
                cpu: 1024,
                memory: 8192,
                rate_limit_per_minute: 10_000,
                max_concurrent_requests: 200,
                max_db_connections: 100,
                statement_timeout_ms: 60_000,
                cache_key_quota: 100_000,
                db_instance_class: Some("db.t3.medium".into()),
                db_allocated_storage: Some(50),
                alarm_error_rate_percent: 1,
                alarm_p99_latency_ms: 200,
                tenant_key: true,
            },
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "starter" => Ok(Tier::Starter),
            "growth" => Ok(Tier::Growth),
            "enterprise" => Ok(Tier::Enterprise),
            other => Err(format!(
                "invalid tier `{}`: must be one of starter, growth, enterprise",
                other.escape_debug()
            )),
        }
    }
}

/// What a tier gets. Defaults come from [`Tier::default_profile`]; `[tiers.<tier>]` in
/// `tenantctl.toml` overrides single fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierProfile {
    /// Fargate task CPU units.
    pub cpu: u32,
    /// Fargate task memory, MiB.
    pub memory: u32,
    pub rate_limit_per_minute: u32,
    pub max_concurrent_requests: u32,
    pub max_db_connections: u32,
    pub statement_timeout_ms: u32,
    pub cache_key_quota: u32,
    /// Dedicated RDS class (silo only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_instance_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_allocated_storage: Option<u32>,
    /// The tenant's error-rate alarm fires above this share of failed requests, percent.
    pub alarm_error_rate_percent: u32,
    /// The tenant's latency alarm fires when p99 request latency exceeds this, ms.
    pub alarm_p99_latency_ms: u32,
    /// A KMS key of the tenant's own for its secrets, log group and exports (a dedicated
    /// database always has one). Deleting it is crypto-shredding (`remove --shred`).
    #[serde(default)]
    pub tenant_key: bool,
}

/// Field-wise overrides of a profile, as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierProfileOverride {
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub rate_limit_per_minute: Option<u32>,
    pub max_concurrent_requests: Option<u32>,
    pub max_db_connections: Option<u32>,
    pub statement_timeout_ms: Option<u32>,
    pub cache_key_quota: Option<u32>,
    pub db_instance_class: Option<String>,
    pub db_allocated_storage: Option<u32>,
    pub alarm_error_rate_percent: Option<u32>,
    pub alarm_p99_latency_ms: Option<u32>,
    pub tenant_key: Option<bool>,
}

impl TierProfile {
    pub fn with_override(mut self, o: &TierProfileOverride) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = o.$f { self.$f = v; } )* };
        }
        take!(
            cpu,
            memory,
            rate_limit_per_minute,
            max_concurrent_requests,
            max_db_connections,
            statement_timeout_ms,
            cache_key_quota,
            alarm_error_rate_percent,
            alarm_p99_latency_ms
        );
        if let Some(c) = &o.db_instance_class {
            self.db_instance_class = Some(c.clone());
        }
        if let Some(s) = o.db_allocated_storage {
            self.db_allocated_storage = Some(s);
        }
        if let Some(k) = o.tenant_key {
            self.tenant_key = k;
        }
        self
    }

    /// The limits as the application sees them: environment variables of its task.
    pub fn limit_env(&self) -> BTreeMap<String, String> {
        [
            ("RATE_LIMIT_PER_MINUTE", self.rate_limit_per_minute),
            ("MAX_CONCURRENT_REQUESTS", self.max_concurrent_requests),
            ("MAX_DB_CONNECTIONS", self.max_db_connections),
            ("STATEMENT_TIMEOUT_MS", self.statement_timeout_ms),
            ("CACHE_KEY_QUOTA", self.cache_key_quota),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Valid Fargate cpu/memory pairs; checked when the config is loaded so a bad
    /// override fails before any Terraform run.
    pub fn validate(&self, tier: Tier) -> Result<(), String> {
        let ok = match self.cpu {
            256 => [512, 1024, 2048].contains(&self.memory),
            512 => (1024..=4096).contains(&self.memory) && self.memory.is_multiple_of(1024),
            1024 => (2048..=8192).contains(&self.memory) && self.memory.is_multiple_of(1024),
            2048 => (4096..=16384).contains(&self.memory) && self.memory.is_multiple_of(1024),
            4096 => (8192..=30720).contains(&self.memory) && self.memory.is_multiple_of(1024),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "tier `{tier}`: cpu {} / memory {} is not a valid Fargate task size (cpu 256, 512, 1024, 2048 or 4096 with a memory size Fargate allows for it)",
                self.cpu, self.memory
            ));
        }
        if !(1..=100).contains(&self.alarm_error_rate_percent) {
            return Err(format!(
                "tier `{tier}`: alarm_error_rate_percent {} must be between 1 and 100",
                self.alarm_error_rate_percent
            ));
        }
        if self.alarm_p99_latency_ms == 0 {
            return Err(format!(
                "tier `{tier}`: alarm_p99_latency_ms must be at least 1"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_ids() {
        for id in [
            "acme-corp",
            "globex",
            "initech",
            "a",
            "a1",
            "x-1-y",
            "acme2",
        ] {
            assert_eq!(TenantId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_bad_ids_naming_the_rule() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("ACME", "only lowercase"),
            ("acme_corp", "only lowercase"),
            ("-acme", "must start with a lowercase letter"),
            ("1acme", "must start with a lowercase letter"),
            ("acme-", "must not end with `-`"),
            ("a--b", "must not contain `--`"),
            ("acme${x}", "only lowercase"),
            ("acme\"", "only lowercase"),
            ("acme/..", "only lowercase"),
            ("acme corp", "only lowercase"),
            ("аcme", "only lowercase"), // Cyrillic а
            ("acme\u{200b}", "only lowercase"),
            ("www", "reserved"),
            ("public", "reserved"),
        ];
        for (id, rule) in cases {
            let err = TenantId::parse(id).unwrap_err().to_string();
            assert!(err.contains(rule), "{id:?}: {err}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        let err = TenantId::parse(&long).unwrap_err().to_string();
        assert!(err.contains("too long"), "{err}");
        assert!(TenantId::parse(&"a".repeat(MAX_LEN)).is_ok());
    }

    #[test]
    fn derived_names_of_different_tenants_never_collide() {
        let err = TenantId::parse("foo-exec").unwrap_err().to_string();
        assert!(
            err.contains("must not end with `-exec`") && err.contains("tenant `foo`"),
            "{err}"
        );
        assert!(TenantId::parse("executive").is_ok());
        assert!(TenantId::parse("foo-exe").is_ok());
        // Every derived name of every pair of a sample of ids differs.
        let ids: Vec<TenantId> = ["foo", "foo-bar", "bar", "a", "a-b", "ab", "foo-exe", "x1"]
            .iter()
            .map(|s| TenantId::parse(s).unwrap())
            .collect();
        let names = |id: &TenantId| {
            vec![
                id.resource_name(),
                id.execution_role_name(),
                id.pg_name(),
                id.s3_prefix(),
                id.db_secret_name(),
                id.db_admin_secret_name(),
                id.dns_label().to_string(),
            ]
        };
        let mut seen = std::collections::HashMap::new();
        for id in &ids {
            for n in names(id) {
                if let Some(other) = seen.insert(n.clone(), id.clone()) {
                    assert_eq!(&other, id, "`{n}` derived from both `{other}` and `{id}`");
                }
            }
        }
    }

    #[test]
    fn derived_names_fit_for_longest_id() {
        let id = TenantId::parse(&"a".repeat(MAX_LEN)).unwrap();
        assert!(id.resource_name().len() <= 64, "IAM role");
        assert!(id.execution_role_name().len() <= 64, "IAM exec role");
        assert!(id.dns_label().len() <= 63, "DNS label");
        assert!(id.pg_name().len() <= 63, "PostgreSQL identifier");
        assert!(id.resource_name().len() <= 63, "RDS identifier");
    }

    #[test]
    fn tiers_map_to_isolation() {
        assert_eq!(Tier::Starter.isolation(), Isolation::Pool);
        assert_eq!(Tier::Growth.isolation(), Isolation::Bridge);
        assert_eq!(Tier::Enterprise.isolation(), Isolation::Silo);
        assert!("gold".parse::<Tier>().unwrap_err().contains("`gold`"));
    }

    #[test]
    fn default_profiles_are_valid_and_ordered() {
        let p: Vec<_> = Tier::ALL.iter().map(|t| t.default_profile()).collect();
        for (t, prof) in Tier::ALL.iter().zip(&p) {
            prof.validate(*t).unwrap();
        }
        assert_eq!(
            p.iter()
                .map(|x| x.rate_limit_per_minute)
                .collect::<Vec<_>>(),
            [100, 1_000, 10_000]
        );
        assert_eq!(
            p.iter().map(|x| x.cache_key_quota).collect::<Vec<_>>(),
            [1_000, 10_000, 100_000]
        );
    }

    #[test]
    fn override_replaces_single_fields() {
        let o = TierProfileOverride {
            rate_limit_per_minute: Some(250),
            ..Default::default()
        };
        let p = Tier::Starter.default_profile().with_override(&o);
        assert_eq!(p.rate_limit_per_minute, 250);
        assert_eq!(p.cpu, 256);
        let bad = TierProfile { memory: 3000, ..p };
        assert!(bad.validate(Tier::Starter).unwrap_err().contains("Fargate"));
    }
}
