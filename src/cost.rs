//! `tenantctl cost`: what each tenant costs per month, estimated from what its tier
//! creates, priced from a versioned table; no network, no usage data.
//!
//! Three layers, each testable alone:
//!
//! - [`PriceTable`]: list prices of one region (`prices/<region>.toml`, embedded with
//!   `include_str!`), or a file named by `[cost] price_table`; `[cost.rds_instance_hour]`
//!   adds or overrides single RDS classes.
//! - [`Resources::of`]: what the tenant module (`terraform/modules/tenant`) creates for a
//!   tier that costs money by the hour or month: the Fargate task of its task definition,
//!   the dedicated RDS instance and its storage (silo), its secrets, its KMS key (silo),
//!   its alarms. Keep it in step with the module.
//! - [`estimate`]: a fleet's cost: each tenant's own resources plus an equal share of the
//!   shared platform (NAT gateway, load balancer, hosted zone: every tenant; the shared
//!   PostgreSQL: the pool and bridge tenants that live in it).
//!
//! What is not estimated, because it is usage (requests, bytes, queries): data transfer,
//! NAT and load-balancer traffic (LCUs), CloudWatch Logs ingestion, S3 storage and
//! requests, API calls to Secrets Manager and KMS, RDS backups beyond the free amount.
//! README ("What a tenant costs") says the same for users.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::tenant::{Isolation, TenantId, Tier, TierProfile};

/// The price tables shipped in the binary, by region.
pub const BUILT_IN: &[(&str, &str)] = &[("us-east-1", include_str!("../prices/us-east-1.toml"))];

/// The RDS class and storage of the tenant module's variables, used when a silo tier's
/// profile names none (`db_instance_class`, `db_allocated_storage` in variables.tf).
const MODULE_DB_CLASS: &str = "db.t3.micro";
const MODULE_DB_STORAGE_GB: u32 = 20;

/// The shared PostgreSQL when `[cost]` does not describe it: a guess, printed as such.
const DEFAULT_SHARED_DB_CLASS: &str = "db.m5.large";
const DEFAULT_SHARED_DB_STORAGE_GB: u32 = 100;

/// `[cost]` in `tenantctl.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// A price table file (the format of `prices/us-east-1.toml`, relative to the work
    /// dir) used instead of the built-in table of the configured region.
    pub price_table: Option<PathBuf>,
    /// RDS for PostgreSQL classes and their price per instance-hour, added to (or
    /// replacing entries of) the table's.
    #[serde(default)]
    pub rds_instance_hour: BTreeMap<String, f64>,
    /// Tasks each tenant's task definition runs around the clock, per tier (default 1:
    /// the silo service's desired count).
    #[serde(default)]
    pub tasks: BTreeMap<Tier, u32>,
    /// NAT gateways of the platform (default 1, as the platform module creates).
    pub nat_gateways: Option<u32>,
    /// The shared PostgreSQL of pool and bridge tenants, which tenantctl does not create:
    /// its RDS class and storage (default db.m5.large, 100 GiB).
    pub shared_database_class: Option<String>,
    pub shared_database_storage_gb: Option<u32>,
    /// The shared stack's known monthly cost (NAT, load balancer, zone, whatever else it
    /// holds), replacing the estimate from the price table.
    pub platform_monthly: Option<f64>,
    /// The shared database's known monthly cost, replacing its estimate.
    pub shared_database_monthly: Option<f64>,
}

impl CostConfig {
    pub fn validate(&self) -> Result<()> {
        for (class, price) in &self.rds_instance_hour {
            check_price(&format!("[cost.rds_instance_hour] \"{class}\""), *price)?;
        }
        for (field, v) in [
            ("platform_monthly", self.platform_monthly),
            ("shared_database_monthly", self.shared_database_monthly),
        ] {
            if let Some(v) = v {
                check_price(&format!("[cost] {field}"), v)?;
            }
        }
        for (tier, n) in &self.tasks {
            if *n > 1000 {
                bail!("[cost.tasks] {tier} = {n} is too many: at most 1000 tasks per tenant");
            }
        }
        Ok(())
    }

    fn tasks(&self, tier: Tier) -> u32 {
        self.tasks.get(&tier).copied().unwrap_or(1)
    }
}

fn check_price(what: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        bail!("{what} = {v} is not a price: it must be a number of dollars, 0 or more");
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub region: String,
    pub version: String,
    pub currency: String,
    pub hours_per_month: f64,
    pub fargate: FargatePrices,
    pub rds: RdsPrices,
    pub secrets_manager: SecretsPrices,
    pub kms: KmsPrices,
    pub cloudwatch: CloudWatchPrices,
    pub elb: ElbPrices,
    pub vpc: VpcPrices,
    pub route53: Route53Prices,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FargatePrices {
    pub vcpu_hour: f64,
    pub gb_hour: f64,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RdsPrices {
    pub gp3_gb_month: f64,
    pub instance_hour: BTreeMap<String, f64>,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretsPrices {
    pub secret_month: f64,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KmsPrices {
    pub key_month: f64,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchPrices {
    pub alarm_month: f64,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElbPrices {
    pub alb_hour: f64,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VpcPrices {
    pub nat_gateway_hour: f64,
}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route53Prices {
    pub hosted_zone_month: f64,
}

/// Where the prices came from: shown beside every estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum PriceSource {
    BuiltIn,
    File(PathBuf),
}

impl PriceTable {
    fn parse(text: &str, what: &str) -> Result<PriceTable> {
        let t: PriceTable =
            toml::from_str(text).with_context(|| format!("invalid price table {what}"))?;
        t.validate()
            .with_context(|| format!("invalid price table {what}"))?;
        Ok(t)
    }

    fn validate(&self) -> Result<()> {
        if !(self.hours_per_month.is_finite() && self.hours_per_month > 0.0) {
            bail!("hours_per_month = {} must be above 0", self.hours_per_month);
        }
        for (what, v) in [
            ("fargate.vcpu_hour", self.fargate.vcpu_hour),
            ("fargate.gb_hour", self.fargate.gb_hour),
            ("rds.gp3_gb_month", self.rds.gp3_gb_month),
            (
                "secrets_manager.secret_month",
                self.secrets_manager.secret_month,
            ),
            ("kms.key_month", self.kms.key_month),
            ("cloudwatch.alarm_month", self.cloudwatch.alarm_month),
            ("elb.alb_hour", self.elb.alb_hour),
            ("vpc.nat_gateway_hour", self.vpc.nat_gateway_hour),
            ("route53.hosted_zone_month", self.route53.hosted_zone_month),
        ] {
            check_price(what, v)?;
        }
        for (class, v) in &self.rds.instance_hour {
            check_price(&format!("rds.instance_hour \"{class}\""), *v)?;
        }
        Ok(())
    }

    /// The built-in table of `region`.
    pub fn built_in(region: &str) -> Result<PriceTable> {
        let Some((_, text)) = BUILT_IN.iter().find(|(r, _)| *r == region) else {
            bail!(
                "no built-in price table for region `{region}` (built in: {})\nhint: write one in the format of `prices/us-east-1.toml` and name it in `[cost] price_table`",
                BUILT_IN
                    .iter()
                    .map(|(r, _)| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        PriceTable::parse(text, &format!("`prices/{region}.toml` (built in)"))
    }

    /// The table `tenantctl cost` uses: `[cost] price_table` if set, else the built-in
    /// one of `region`; then `[cost.rds_instance_hour]` on top.
    pub fn load(cfg: &CostConfig, root: &Path, region: &str) -> Result<(PriceTable, PriceSource)> {
        let (mut table, source) = match &cfg.price_table {
            Some(p) => {
                let path = root.join(p);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot read the price table `{}` ([cost] price_table)",
                        path.display()
                    )
                })?;
                (
                    PriceTable::parse(&text, &format!("`{}`", path.display()))?,
                    PriceSource::File(p.clone()),
                )
            }
            None => (PriceTable::built_in(region)?, PriceSource::BuiltIn),
        };
        for (class, price) in &cfg.rds_instance_hour {
            table.rds.instance_hour.insert(class.clone(), *price);
        }
        Ok((table, source))
    }

    fn rds_hour(&self, class: &str, what: &str) -> Result<f64> {
        self.rds.instance_hour.get(class).copied().with_context(|| {
            format!(
                "no price for RDS class `{class}` ({what}) in the price table of `{}` version {}\nhint: add it under `[cost.rds_instance_hour]`, e.g. \"{class}\" = 0.1 (dollars per instance-hour)",
                self.region, self.version
            )
        })
    }

    fn month(&self, hourly: f64) -> f64 {
        hourly * self.hours_per_month
    }
}

/// What the tenant module creates for one tenant that is billed by the hour or month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    /// Fargate tasks of the tenant's task definition running around the clock.
    pub tasks: u32,
    /// CPU units and MiB of memory per task.
    pub cpu: u32,
    pub memory: u32,
    /// The dedicated RDS instance (silo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_instance_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_storage_gb: Option<u32>,
    pub secrets: u32,
    pub kms_keys: u32,
    pub alarms: u32,
}

impl Resources {
    /// From the tier's profile and the tenant module: every tenant has the `db` secret,
    /// a silo tenant also `db-admin` and its RDS instance, a tier with `tenant_key` (and
    /// every silo) its KMS key. With alarms on,
    /// every tenant has two (error rate, p99 latency) and a silo three more on its
    /// database (`terraform/modules/tenant/alarms.tf`).
    pub fn of(tier: Tier, profile: &TierProfile, cfg: &CostConfig, alarms: bool) -> Resources {
        let silo = tier.isolation() == Isolation::Silo;
        Resources {
            tasks: cfg.tasks(tier),
            cpu: profile.cpu,
            memory: profile.memory,
            db_instance_class: silo.then(|| {
                profile
                    .db_instance_class
                    .clone()
                    .unwrap_or_else(|| MODULE_DB_CLASS.into())
            }),
            db_storage_gb: silo
                .then(|| profile.db_allocated_storage.unwrap_or(MODULE_DB_STORAGE_GB)),
            secrets: if silo { 2 } else { 1 },
            // `[tiers.<tier>] tenant_key`; a dedicated database always has one.
            kms_keys: u32::from(silo || profile.tenant_key),
            alarms: match (alarms, silo) {
                (false, _) => 0,
                (true, false) => 2,
                (true, true) => 5,
            },
        }
    }
}

/// One tenant's monthly cost, by line (dollars, unrounded).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantCost {
    pub id: TenantId,
    pub tier: Tier,
    pub resources: Resources,
    pub compute: f64,
    pub database: f64,
    pub secrets: f64,
    pub kms: f64,
    pub alarms: f64,
    /// Its share of the shared platform (and of the shared database, pool and bridge).
    pub platform: f64,
}

impl TenantCost {
    /// What the tenant's own resources cost, without the platform share.
    pub fn own(&self) -> f64 {
        self.compute + self.database + self.secrets + self.kms + self.alarms
    }

    pub fn total(&self) -> f64 {
        self.own() + self.platform
    }
}

/// The shared platform's monthly cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    /// NAT gateways, load balancer, hosted zone (or `[cost] platform_monthly`): split
    /// over every tenant.
    pub platform: f64,
    /// The shared PostgreSQL (or `[cost] shared_database_monthly`): split over the pool
    /// and bridge tenants.
    pub database: f64,
    pub database_class: Option<String>,
    pub database_storage_gb: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FleetCost {
    pub tenants: Vec<TenantCost>,
    pub shared: Shared,
    /// Shared cost no tenant carries (no tenant at all, or none in the shared database).
    pub unallocated: f64,
}

impl FleetCost {
    pub fn total(&self) -> f64 {
        self.tenants.iter().map(TenantCost::total).sum::<f64>() + self.unallocated
    }

    /// (tenants, total) per tier, every tier listed.
    pub fn by_tier(&self) -> BTreeMap<Tier, (usize, f64)> {
        let mut m: BTreeMap<Tier, (usize, f64)> =
            Tier::ALL.iter().map(|t| (*t, (0, 0.0))).collect();
        for t in &self.tenants {
            let e = m.entry(t.tier).or_default();
            e.0 += 1;
            e.1 += t.total();
        }
        m
    }

    pub fn get(&self, id: &TenantId) -> Option<&TenantCost> {
        self.tenants.iter().find(|t| &t.id == id)
    }
}

/// Everything an estimate depends on besides the fleet.
pub struct Model<'a> {
    pub prices: &'a PriceTable,
    pub cost: &'a CostConfig,
    pub profiles: BTreeMap<Tier, TierProfile>,
    /// Whether the platform has its load balancer (`[platform] create_load_balancer`).
    pub load_balancer: bool,
    /// Whether tenants get CloudWatch alarms (`[alarms] enabled`).
    pub alarms: bool,
}

impl Model<'_> {
    pub fn shared(&self) -> Result<Shared> {
        let p = self.prices;
        let platform = match self.cost.platform_monthly {
            Some(m) => m,
            None => {
                let nat = f64::from(self.cost.nat_gateways.unwrap_or(1));
                let alb = if self.load_balancer { 1.0 } else { 0.0 };
                p.month(nat * p.vpc.nat_gateway_hour + alb * p.elb.alb_hour)
                    + p.route53.hosted_zone_month
            }
        };
        Ok(match self.cost.shared_database_monthly {
            Some(m) => Shared {
                platform,
                database: m,
                database_class: None,
                database_storage_gb: None,
            },
            None => {
                let class = self
                    .cost
                    .shared_database_class
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SHARED_DB_CLASS.into());
                let gb = self
                    .cost
                    .shared_database_storage_gb
                    .unwrap_or(DEFAULT_SHARED_DB_STORAGE_GB);
                let database = p.month(p.rds_hour(&class, "the shared database")?)
                    + f64::from(gb) * p.rds.gp3_gb_month;
                Shared {
                    platform,
                    database,
                    database_class: Some(class),
                    database_storage_gb: Some(gb),
                }
            }
        })
    }

    /// A tenant's own resources, priced (the platform share is left at 0).
    fn own(&self, id: &TenantId, tier: Tier) -> Result<TenantCost> {
        let p = self.prices;
        let r = Resources::of(tier, &self.profiles[&tier], self.cost, self.alarms);
        let vcpu = f64::from(r.cpu) / 1024.0;
        let gb = f64::from(r.memory) / 1024.0;
        let compute =
            f64::from(r.tasks) * p.month(vcpu * p.fargate.vcpu_hour + gb * p.fargate.gb_hour);
        let database = match &r.db_instance_class {
            Some(class) => {
                let what = format!("tier `{tier}`'s db_instance_class");
                p.month(p.rds_hour(class, &what)?)
                    + f64::from(r.db_storage_gb.unwrap_or(0)) * p.rds.gp3_gb_month
            }
            None => 0.0,
        };
        Ok(TenantCost {
            id: id.clone(),
            tier,
            compute,
            database,
            secrets: f64::from(r.secrets) * p.secrets_manager.secret_month,
            kms: f64::from(r.kms_keys) * p.kms.key_month,
            alarms: f64::from(r.alarms) * p.cloudwatch.alarm_month,
            platform: 0.0,
            resources: r,
        })
    }
}

/// The monthly cost of a fleet of tenants and their tiers.
pub fn estimate(fleet: &[(TenantId, Tier)], model: &Model) -> Result<FleetCost> {
    let shared = model.shared()?;
    let all = fleet.len();
    let in_shared_db = fleet
        .iter()
        .filter(|(_, t)| t.isolation() != Isolation::Silo)
        .count();
    let mut tenants = Vec::with_capacity(all);
    for (id, tier) in fleet {
        let mut c = model.own(id, *tier)?;
        c.platform = shared.platform / all as f64;
        if tier.isolation() != Isolation::Silo {
            c.platform += shared.database / in_shared_db as f64;
        }
        tenants.push(c);
    }
    let mut unallocated = 0.0;
    if all == 0 {
        unallocated += shared.platform;
    }
    if in_shared_db == 0 {
        unallocated += shared.database;
    }
    Ok(FleetCost {
        tenants,
        shared,
        unallocated,
    })
}

/// Dollars rounded to cents, as JSON shows them.
pub fn cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Dollars as tables show them: `$1,234.56`.
pub fn dollars(v: f64) -> String {
    let neg = v < 0.0 && cents(v) != 0.0;
    let c = (v.abs() * 100.0).round() as u64;
    let whole = (c / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{}${grouped}.{:02}", if neg { "-" } else { "" }, c % 100)
}

/// A change in dollars with its sign: `+$12.00`, `-$3.50`, `$0.00`.
pub fn signed_dollars(v: f64) -> String {
    if cents(v) == 0.0 {
        "$0.00".into()
    } else if v > 0.0 {
        format!("+{}", dollars(v))
    } else {
        dollars(v)
    }
}

/// `--what-if <id>=<tier>`.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIf {
    pub id: TenantId,
    pub tier: Tier,
}

impl std::str::FromStr for WhatIf {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, tier) = s.split_once('=').ok_or_else(|| {
            format!(
                "`{}` is not <id>=<tier> (e.g. acme-corp=enterprise)",
                s.escape_debug()
            )
        })?;
        Ok(WhatIf {
            id: TenantId::parse(id).map_err(|e| e.to_string())?,
            tier: tier.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn model<'a>(prices: &'a PriceTable, cost: &'a CostConfig, lb: bool) -> Model<'a> {
        Model {
            prices,
            cost,
            profiles: Tier::ALL
                .iter()
                .map(|t| (*t, t.default_profile()))
                .collect(),
            load_balancer: lb,
            alarms: true,
        }
    }

    #[test]
    fn the_built_in_table_parses_and_unknown_regions_are_refused() {
        let t = PriceTable::built_in("us-east-1").unwrap();
        assert_eq!(t.hours_per_month, 730.0);
        assert_eq!(t.rds.instance_hour["db.t3.medium"], 0.072);
        let e = format!("{:#}", PriceTable::built_in("eu-west-9").unwrap_err());
        assert!(
            e.starts_with("no built-in price table for region `eu-west-9` (built in: `us-east-1`)"),
            "{e}"
        );
        assert!(e.contains("[cost] price_table"), "{e}");
    }

    /// Hand-computed from prices/us-east-1.toml (730 h/month, one task each):
    /// - starter 0.25 vCPU x 0.04048 x 730 = 7.3876, 0.5 GB x 0.004445 x 730 = 1.622425,
    ///   1 secret 0.40, 2 alarms 0.20: 9.610025
    /// - growth 0.5 vCPU: 14.7752, 2 GB: 6.4897, secret 0.40, 2 alarms 0.20: 21.8649
    /// - enterprise 1 vCPU: 29.5504, 8 GB: 25.9588, db.t3.medium 0.072 x 730 = 52.56,
    ///   50 GB gp3 x 0.115 = 5.75, 2 secrets 0.80, 1 KMS key 1.00, 5 alarms 0.50: 116.1192
    /// - platform: NAT 0.045 x 730 = 32.85, ALB 0.0225 x 730 = 16.425, zone 0.50: 49.775,
    ///   split over 3 tenants = 16.591667 each;
    ///   shared db.m5.large 0.178 x 730 = 129.94 + 100 GB x 0.115 = 11.50: 141.44, split
    ///   over starter and growth = 70.72 each.
    #[test]
    fn one_tenant_of_each_tier_matches_the_hand_computed_figures() {
        let prices = PriceTable::built_in("us-east-1").unwrap();
        let cost = CostConfig::default();
        let fleet = [
            (id("a"), Tier::Starter),
            (id("b"), Tier::Growth),
            (id("c"), Tier::Enterprise),
        ];
        let f = estimate(&fleet, &model(&prices, &cost, true)).unwrap();
        let own: Vec<String> = f
            .tenants
            .iter()
            .map(|t| format!("{:.4}", t.own()))
            .collect();
        assert_eq!(own, ["9.6100", "21.8649", "116.1192"]);
        assert_eq!(format!("{:.2}", f.shared.platform), "49.78");
        assert_eq!(format!("{:.2}", f.shared.database), "141.44");
        let total: Vec<String> = f.tenants.iter().map(|t| dollars(t.total())).collect();
        // 9.610025 + 16.591667 + 70.72 = 96.92; 21.8649 + 16.591667 + 70.72 = 109.18;
        // 116.1192 + 16.591667 = 132.71.
        assert_eq!(total, ["$96.92", "$109.18", "$132.71"]);
        assert_eq!(dollars(f.total()), "$338.81");
        assert_eq!(f.unallocated, 0.0);
    }

    #[test]
    fn a_fleet_without_pooled_tenants_leaves_the_shared_database_unallocated() {
        let prices = PriceTable::built_in("us-east-1").unwrap();
        let cost = CostConfig {
            platform_monthly: Some(100.0),
            shared_database_monthly: Some(50.0),
            ..Default::default()
        };
        let f = estimate(
            &[(id("c"), Tier::Enterprise)],
            &model(&prices, &cost, false),
        )
        .unwrap();
        assert_eq!(f.tenants[0].platform, 100.0);
        assert_eq!(f.unallocated, 50.0);
        // 116.1192 own + 100 platform + 50 unallocated.
        assert_eq!(dollars(f.total()), "$266.12");
        let empty = estimate(&[], &model(&prices, &cost, false)).unwrap();
        assert_eq!(empty.total(), 150.0);
    }

    #[test]
    fn an_unknown_rds_class_names_the_class_and_the_fix() {
        let prices = PriceTable::built_in("us-east-1").unwrap();
        let cost = CostConfig {
            shared_database_class: Some("db.x9.huge".into()),
            ..Default::default()
        };
        let e = format!(
            "{:#}",
            estimate(&[], &model(&prices, &cost, true)).unwrap_err()
        );
        assert!(
            e.starts_with("no price for RDS class `db.x9.huge` (the shared database)"),
            "{e}"
        );
        assert!(e.contains("[cost.rds_instance_hour]"), "{e}");
        let cost = CostConfig {
            shared_database_class: Some("db.x9.huge".into()),
            rds_instance_hour: [("db.x9.huge".to_string(), 1.0)].into(),
            ..Default::default()
        };
        let (t, _) = PriceTable::load(&cost, Path::new("."), "us-east-1").unwrap();
        assert_eq!(t.rds.instance_hour["db.x9.huge"], 1.0);
    }

    #[test]
    fn money_is_shown_in_cents_with_thousands_separators() {
        assert_eq!(dollars(0.0), "$0.00");
        assert_eq!(dollars(1234567.891), "$1,234,567.89");
        assert_eq!(dollars(-12.5), "-$12.50");
        assert_eq!(signed_dollars(12.0), "+$12.00");
        assert_eq!(signed_dollars(-0.001), "$0.00");
        assert_eq!(signed_dollars(-3.5), "-$3.50");
    }

    #[test]
    fn what_if_parses_id_and_tier_and_names_a_bad_value() {
        let w: WhatIf = "acme-corp=enterprise".parse().unwrap();
        assert_eq!((w.id.as_str(), w.tier), ("acme-corp", Tier::Enterprise));
        assert_eq!(
            "acme=gold".parse::<WhatIf>().unwrap_err(),
            "invalid tier `gold`: must be one of starter, growth, enterprise"
        );
        assert!(
            "acme"
                .parse::<WhatIf>()
                .unwrap_err()
                .starts_with("`acme` is not <id>=<tier>")
        );
        assert!(
            "Acme=starter"
                .parse::<WhatIf>()
                .unwrap_err()
                .starts_with("invalid tenant id `Acme`")
        );
    }

    #[test]
    fn bad_cost_settings_are_refused() {
        let c = CostConfig {
            platform_monthly: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "[cost] platform_monthly = -1 is not a price: it must be a number of dollars, 0 or more"
        );
    }
}
