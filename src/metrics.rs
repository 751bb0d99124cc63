//! CloudWatch metrics of `db migrate` runs, for CI dashboards and alarms.
//!
//! After each run that got as far as a report, one `PutMetricData` call (or a few, 20
//! data points each) writes to `[metrics] namespace` (default `Tenantctl/Migrations`):
//!
//! | metric | unit | what |
//! |---|---|---|
//! | `MigrationsApplied` | Count | migrations this run applied (whatever each target's outcome) |
//! | `TargetsMigrated` | Count | targets brought to the latest migration by this run |
//! | `TargetsPending` | Count | targets left with migrations to apply: not provisioned, not run (`--fail-fast`) |
//! | `TargetsFailed` | Count | targets whose migration failed or that could not be reached |
//! | `RunDuration` | Seconds | the run, from the lock to the report |
//!
//! The counts are published twice: with the dimension `Tier` (`starter`, `growth`,
//! `enterprise`; only the tiers the run had targets of) and without a dimension (all
//! tiers). A target up to date counts in none of the three target metrics. The duration has
//! no `Tier`: a run is one for all tiers. Every data point carries the run's end time.
//!
//! Publishing is best effort: a failure (no credentials, no network, a denied
//! `cloudwatch:PutMetricData`) is a warning on stderr and never changes the run's exit code.
//! The client gives up after 2 attempts and 10 s, so a broken endpoint delays the exit by
//! that much at most. The platform module's dashboard (`<name>-migrations`) reads these.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::config::{AwsSettings, MetricsConfig};
use crate::db::{MigrateReport, TargetOutcome};
use crate::tenant::Tier;

/// CloudWatch accepts more per call today; 20 was its limit for years and is what every
/// emulator accepts.
const DATA_PER_CALL: usize = 20;

pub const MIGRATIONS_APPLIED: &str = "MigrationsApplied";
pub const TARGETS_MIGRATED: &str = "TargetsMigrated";
pub const TARGETS_PENDING: &str = "TargetsPending";
pub const TARGETS_FAILED: &str = "TargetsFailed";
pub const RUN_DURATION: &str = "RunDuration";
pub const TIER_DIMENSION: &str = "Tier";

/// The counts of one run, for one tier or all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub migrations_applied: usize,
    pub targets_migrated: usize,
    pub targets_pending: usize,
    pub targets_failed: usize,
}

impl Counts {
    fn add(&mut self, outcome: TargetOutcome, applied: usize) {
        self.migrations_applied += applied;
        match outcome {
            TargetOutcome::Migrated => self.targets_migrated += 1,
            TargetOutcome::Failed => self.targets_failed += 1,
            TargetOutcome::NotProvisioned | TargetOutcome::NotRun | TargetOutcome::Interrupted => {
                self.targets_pending += 1
            }
            TargetOutcome::UpToDate => {}
        }
    }

    fn named(&self) -> [(&'static str, usize); 4] {
        [
            (MIGRATIONS_APPLIED, self.migrations_applied),
            (TARGETS_MIGRATED, self.targets_migrated),
            (TARGETS_PENDING, self.targets_pending),
            (TARGETS_FAILED, self.targets_failed),
        ]
    }
}

/// What one run publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// Only the tiers the run had targets of.
    pub per_tier: BTreeMap<Tier, Counts>,
    pub total: Counts,
    pub duration: Duration,
}

impl RunMetrics {
    pub fn from_report(report: &MigrateReport) -> RunMetrics {
        let mut per_tier: BTreeMap<Tier, Counts> = BTreeMap::new();
        let mut total = Counts::default();
        for t in &report.targets {
            per_tier
                .entry(t.tier)
                .or_default()
                .add(t.outcome, t.applied.len());
            total.add(t.outcome, t.applied.len());
        }
        RunMetrics {
            per_tier,
            total,
            duration: Duration::from_millis(report.elapsed_ms),
        }
    }

    /// The data points, all stamped `at`.
    pub fn data(&self, at: SystemTime) -> Vec<MetricDatum> {
        let at = aws_smithy_types::DateTime::from(at);
        let count = |name: &str, value: usize, tier: Option<Tier>| {
            let mut d = MetricDatum::builder()
                .metric_name(name)
                .value(value as f64)
                .unit(StandardUnit::Count)
                .timestamp(at);
            if let Some(tier) = tier {
                d = d.dimensions(
                    Dimension::builder()
                        .name(TIER_DIMENSION)
                        .value(tier.as_str())
                        .build(),
                );
            }
            d.build()
        };
        let mut out = Vec::new();
        for (tier, counts) in &self.per_tier {
            for (name, value) in counts.named() {
                out.push(count(name, value, Some(*tier)));
            }
        }
        for (name, value) in self.total.named() {
            out.push(count(name, value, None));
        }
        out.push(
            MetricDatum::builder()
                .metric_name(RUN_DURATION)
                .value(self.duration.as_secs_f64())
                .unit(StandardUnit::Seconds)
                .timestamp(at)
                .build(),
        );
        out
    }
}

/// Writes the run's metrics to `namespace`.
pub async fn publish(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metrics: &RunMetrics,
) -> Result<()> {
    let data = metrics.data(SystemTime::now());
    for chunk in data.chunks(DATA_PER_CALL) {
        client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(aws_sdk_cloudwatch::Error::from)
            .with_context(|| format!("cannot put metric data in namespace `{namespace}`"))?;
    }
    Ok(())
}

/// `db migrate`'s call: publishes when `[metrics]` says so, and turns any failure into a
/// warning. `aws` is the config's `[aws]`; the environment is applied here.
pub async fn publish_migrate_run(aws: &AwsSettings, cfg: &MetricsConfig, report: &MigrateReport) {
    let aws = aws.effective();
    if !cfg.enabled(&aws) {
        return;
    }
    let clients = crate::aws::AwsClients::new(&aws).await;
    let metrics = RunMetrics::from_report(report);
    if let Err(e) = publish(&clients.cloudwatch, cfg.namespace(), &metrics).await {
        tracing::warn!(
            "the migration run's metrics were not published to CloudWatch: {e:#}\nhint: the run itself is unaffected; `[metrics] enabled = false` in tenantctl.toml stops publishing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::TargetReport;
    use crate::db::migrate::AppliedMigration;

    fn target(name: &str, tier: Tier, outcome: TargetOutcome, applied: usize) -> TargetReport {
        TargetReport {
            target: name.into(),
            tier,
            isolation: tier.isolation(),
            schema: format!("tenant_{name}"),
            database: "admin@db:5432/app".into(),
            from_version: Some(1),
            to_version: Some(1 + applied as i32),
            applied: (0..applied)
                .map(|i| AppliedMigration {
                    version: 2 + i as i32,
                    name: format!("{:04}_m", 2 + i),
                    duration_ms: 5,
                })
                .collect(),
            applied_concurrently: Vec::new(),
            outcome,
            failed_migration: None,
            error: None,
        }
    }

    fn report(targets: Vec<TargetReport>) -> MigrateReport {
        MigrateReport {
            latest: Some(3),
            migrations_applied: targets.iter().map(|t| t.applied.len()).sum(),
            targets_migrated: 0,
            tx_mode: crate::db::TxMode::Target,
            targets,
            elapsed_ms: 1_500,
        }
    }

    #[test]
    fn counts_per_tier_and_total() {
        let r = report(vec![
            target("pool", Tier::Starter, TargetOutcome::Migrated, 2),
            target("g1", Tier::Growth, TargetOutcome::Migrated, 2),
            // A failed target may have applied some migrations before the one that failed.
            target("g2", Tier::Growth, TargetOutcome::Failed, 1),
            target("g3", Tier::Growth, TargetOutcome::NotProvisioned, 0),
            target("g4", Tier::Growth, TargetOutcome::UpToDate, 0),
            target("e1", Tier::Enterprise, TargetOutcome::NotRun, 0),
        ]);
        let m = RunMetrics::from_report(&r);
        assert_eq!(
            m.per_tier[&Tier::Growth],
            Counts {
                migrations_applied: 3,
                targets_migrated: 1,
                targets_pending: 1,
                targets_failed: 1,
            }
        );
        assert_eq!(
            m.per_tier[&Tier::Starter],
            Counts {
                migrations_applied: 2,
                targets_migrated: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            m.per_tier[&Tier::Enterprise],
            Counts {
                targets_pending: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            m.total,
            Counts {
                migrations_applied: 5,
                targets_migrated: 2,
                targets_pending: 2,
                targets_failed: 1,
            }
        );
        assert_eq!(m.duration, Duration::from_millis(1_500));
    }

    #[test]
    fn data_points_carry_tier_dimension_and_totals_have_none() {
        let r = report(vec![
            target("g1", Tier::Growth, TargetOutcome::Migrated, 2),
            target("g2", Tier::Growth, TargetOutcome::Failed, 0),
        ]);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let data = RunMetrics::from_report(&r).data(at);
        // 4 counts for growth (the only tier with targets), 4 totals, 1 duration.
        assert_eq!(data.len(), 9);
        let find = |name: &str, tier: Option<&str>| {
            data.iter()
                .find(|d| {
                    d.metric_name() == Some(name)
                        && d.dimensions().first().and_then(|x| x.value()) == tier
                })
                .unwrap_or_else(|| panic!("no {name} {tier:?} in {data:?}"))
        };
        let failed = find(TARGETS_FAILED, Some("growth"));
        assert_eq!(failed.value(), Some(1.0));
        assert_eq!(failed.dimensions()[0].name(), Some(TIER_DIMENSION));
        assert_eq!(failed.unit(), Some(&StandardUnit::Count));
        assert_eq!(find(MIGRATIONS_APPLIED, None).value(), Some(2.0));
        assert!(find(MIGRATIONS_APPLIED, None).dimensions().is_empty());
        let duration = find(RUN_DURATION, None);
        assert_eq!(duration.value(), Some(1.5));
        assert_eq!(duration.unit(), Some(&StandardUnit::Seconds));
        assert!(
            data.iter()
                .all(|d| d.timestamp().map(|t| t.secs()) == Some(1_700_000_000))
        );
        assert!(
            !data
                .iter()
                .any(|d| { d.dimensions().iter().any(|x| x.value() == Some("starter")) })
        );
    }

    #[test]
    fn enabled_follows_the_aws_settings_unless_set() {
        let none = AwsSettings::default();
        let region = AwsSettings {
            region: Some("eu-west-1".into()),
            ..AwsSettings::default()
        };
        let emulator = AwsSettings {
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..AwsSettings::default()
        };
        let default = MetricsConfig::default();
        assert!(!default.enabled(&none));
        assert!(default.enabled(&region));
        assert!(default.enabled(&emulator));
        let off = MetricsConfig {
            enabled: Some(false),
            ..MetricsConfig::default()
        };
        assert!(!off.enabled(&region));
        let on = MetricsConfig {
            enabled: Some(true),
            ..MetricsConfig::default()
        };
        assert!(on.enabled(&none));
        assert_eq!(default.namespace(), "Tenantctl/Migrations");
    }
}
