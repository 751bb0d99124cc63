//! The tenant's CloudWatch alarms as the tier demands them, and the verify check that
//! reads them back. The tenant module (`terraform/modules/tenant/alarms.tf`) creates the
//! same list from the same inputs; a deleted alarm, a loosened threshold or a lost
//! notification target is drift.

use aws_sdk_cloudwatch::types::MetricAlarm;

use crate::render::TenantInputs;
use crate::report::Checks;
use crate::tenant::Isolation;

/// One alarm the tenant must have.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAlarm {
    /// The check's name, `alarms.<suffix>`; the alarm is `tenant-<id>-<suffix>`.
    pub suffix: &'static str,
    pub metric: &'static str,
    pub operator: &'static str,
    pub threshold: f64,
    /// The application alarms are on the tenant's own metrics (`TenantId` dimension);
    /// the database ones on its RDS instance.
    pub dimension: (&'static str, String),
}

/// The alarms for `inputs`; empty with `[alarms] enabled = false`.
pub fn expected(inputs: &TenantInputs) -> Vec<ExpectedAlarm> {
    let Some(a) = &inputs.alarms else {
        return Vec::new();
    };
    let id = inputs.tenant_id.to_string();
    let tenant = ("TenantId", id.clone());
    let mut out = vec![
        ExpectedAlarm {
            suffix: "error-rate",
            metric: "Errors / Requests",
            operator: "GreaterThanThreshold",
            threshold: f64::from(a.error_rate_percent),
            dimension: tenant.clone(),
        },
        ExpectedAlarm {
            suffix: "latency-p99",
            metric: "Latency p99",
            operator: "GreaterThanThreshold",
            threshold: f64::from(a.p99_latency_ms),
            dimension: tenant,
        },
    ];
    if inputs.isolation == Isolation::Silo || inputs.dedicated_database {
        let db = ("DBInstanceIdentifier", format!("tenant-{id}"));
        let gib = 1024.0 * 1024.0 * 1024.0;
        out.extend([
            ExpectedAlarm {
                suffix: "db-cpu",
                metric: "CPUUtilization",
                operator: "GreaterThanThreshold",
                threshold: 80.0,
                dimension: db.clone(),
            },
            ExpectedAlarm {
                suffix: "db-free-storage",
                metric: "FreeStorageSpace",
                operator: "LessThanThreshold",
                threshold: f64::from(inputs.db_allocated_storage) * gib / 5.0,
                dimension: db.clone(),
            },
            ExpectedAlarm {
                suffix: "db-connections",
                metric: "DatabaseConnections",
                operator: "GreaterThanThreshold",
                threshold: f64::from(a.db_connections),
                dimension: db,
            },
        ]);
    }
    out
}

/// `alarms.<suffix>` for every expected alarm: it exists, with the tier's threshold and
/// direction, on the tenant's own metric, notifying the topic.
pub async fn verify(cw: &aws_sdk_cloudwatch::Client, inputs: &TenantInputs, c: &mut Checks) {
    let want = expected(inputs);
    if want.is_empty() {
        return;
    }
    let prefix = format!("tenant-{}-", inputs.tenant_id);
    let found = match describe(cw, &prefix).await {
        Ok(f) => f,
        Err(e) => {
            for w in &want {
                c.error(
                    &format!("alarms.{}", w.suffix),
                    describe_expected(w, inputs),
                    &e,
                );
            }
            return;
        }
    };
    for w in &want {
        let check = format!("alarms.{}", w.suffix);
        let expected = describe_expected(w, inputs);
        match found
            .iter()
            .find(|a| a.alarm_name() == Some(&format!("{prefix}{}", w.suffix)))
        {
            None => c.missing(&check, expected),
            Some(a) => {
                let actual = describe_actual(a);
                c.add(&check, expected.clone(), actual.clone(), expected == actual);
            }
        }
    }
}

async fn describe(
    cw: &aws_sdk_cloudwatch::Client,
    prefix: &str,
) -> Result<Vec<MetricAlarm>, String> {
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let page = cw
            .describe_alarms()
            .alarm_name_prefix(prefix)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                aws_smithy_types::error::metadata::ProvideErrorMetadata::message(&e)
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })?;
        out.extend(page.metric_alarms().iter().cloned());
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            return Ok(out);
        }
    }
}

fn operator_sign(op: &str) -> &str {
    match op {
        "GreaterThanThreshold" => ">",
        "GreaterThanOrEqualToThreshold" => ">=",
        "LessThanThreshold" => "<",
        "LessThanOrEqualToThreshold" => "<=",
        other => other,
    }
}

fn describe_expected(w: &ExpectedAlarm, inputs: &TenantInputs) -> String {
    let topic = inputs
        .alarms
        .as_ref()
        .and_then(|a| a.topic_arn.clone())
        .unwrap_or_else(|| "no action".into());
    format!(
        "{} {} {} on {}={} -> {topic}",
        w.metric,
        operator_sign(w.operator),
        w.threshold,
        w.dimension.0,
        w.dimension.1
    )
}

/// The same shape as [`describe_expected`], from what CloudWatch holds.
fn describe_actual(a: &MetricAlarm) -> String {
    let (metric, dims) = if a.metrics().is_empty() {
        let stat = a
            .extended_statistic()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        (
            format!("{}{stat}", a.metric_name().unwrap_or("?")),
            a.dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or("").to_string(),
                        d.value().unwrap_or("").to_string(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    } else {
        // A metric-math alarm: its two inputs and their dimensions.
        let stats: Vec<_> = a.metrics().iter().filter_map(|q| q.metric_stat()).collect();
        // Terraform keeps the queries as a set: their order says nothing.
        let mut names: Vec<&str> = stats
            .iter()
            .filter_map(|s| s.metric().and_then(|m| m.metric_name()))
            .collect();
        names.sort_unstable();
        let dims = stats
            .first()
            .and_then(|s| s.metric())
            .map(|m| {
                m.dimensions()
                    .iter()
                    .map(|d| {
                        (
                            d.name().unwrap_or("").to_string(),
                            d.value().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (names.join(" / "), dims)
    };
    let dim = dims
        .iter()
        .find(|(k, _)| k == "TenantId" || k == "DBInstanceIdentifier")
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap_or_else(|| "no tenant dimension".into());
    let op = a
        .comparison_operator()
        .map(|o| o.as_str().to_string())
        .unwrap_or_default();
    let actions = if a.alarm_actions().is_empty() {
        "no action".to_string()
    } else {
        a.alarm_actions().join(", ")
    };
    format!(
        "{metric} {} {} on {dim} -> {actions}",
        operator_sign(&op),
        a.threshold().unwrap_or(f64::NAN)
    )
}
