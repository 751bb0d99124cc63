//! Alarms by tier: a tenant's error-rate and p99-latency alarms carry its tier's
//! thresholds and notify the platform's topic; an enterprise tenant also gets alarms on
//! its database (asserted in `lifecycle::enterprise_tenant_lifecycle`); a deleted or
//! loosened alarm is drift that `apply` repairs; a tier change moves the thresholds.

use serde_json::Value;

use crate::support::{Workdir, platform_value, unique};

/// The tenant's alarms by name suffix (`error-rate`, `latency-p99`, ...).
pub fn alarms_of(ws: &Workdir, id: &str) -> std::collections::BTreeMap<String, Value> {
    let prefix = format!("tenant-{id}-");
    let out = ws
        .aws(&[
            "cloudwatch",
            "describe-alarms",
            "--alarm-name-prefix",
            &prefix,
        ])
        .unwrap();
    out["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let name = a["AlarmName"].as_str().unwrap();
            (name.trim_start_matches(&prefix).to_string(), a.clone())
        })
        .collect()
}

fn failing_checks(run: &crate::support::Run) -> Vec<String> {
    let v: Value = serde_json::from_str(&run.stdout()).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tier_thresholds_drift_and_a_tier_change() {
    let ws = Workdir::new().with_database();
    ws.edit_config("[state]", "[moves]\nretain_days = 0\n\n[state]");
    let id = unique("alarm");
    ws.tenantctl(&["add", &id, "--tier", "starter"])
        .assert_code(0);
    let topic = platform_value(&ws, "alarm_topic_arn");
    let alarms = alarms_of(&ws, &id);
    let names: Vec<&str> = alarms.keys().map(String::as_str).collect();
    assert_eq!(names, ["error-rate", "latency-p99"], "{alarms:?}");
    let rate = &alarms["error-rate"];
    assert_eq!(rate["Threshold"], 5.0, "{rate}");
    assert_eq!(rate["AlarmActions"], serde_json::json!([topic]), "{rate}");
    let latency = &alarms["latency-p99"];
    assert_eq!(latency["Threshold"], 1000.0, "{latency}");
    assert_eq!(latency["ExtendedStatistic"], "p99", "{latency}");
    let dims = latency["Dimensions"].to_string();
    assert!(
        dims.contains(&format!("\"{id}\"")) && dims.contains("\"starter\""),
        "{dims}"
    );
    // Terraform reads the alarms back as it wrote them: nothing to change.
    ws.tenantctl(&["plan", &id]).assert_code(0);

    // Behind Terraform's back: one alarm deleted, the other loosened.
    let latency_name = format!("tenant-{id}-latency-p99");
    ws.aws(&[
        "cloudwatch",
        "delete-alarms",
        "--alarm-names",
        &format!("tenant-{id}-error-rate"),
    ])
    .unwrap();
    let dims_arg: Vec<String> = latency["Dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "Name={},Value={}",
                d["Name"].as_str().unwrap(),
                d["Value"].as_str().unwrap()
            )
        })
        .collect();
    let mut put = vec![
        "cloudwatch",
        "put-metric-alarm",
        "--alarm-name",
        &latency_name,
        "--namespace",
        "Tenants/App",
        "--metric-name",
        "Latency",
        "--extended-statistic",
        "p99",
        "--period",
        "60",
        "--evaluation-periods",
        "5",
        "--threshold",
        "60000",
        "--comparison-operator",
        "GreaterThanThreshold",
        "--dimensions",
    ];
    put.extend(dims_arg.iter().map(String::as_str));
    ws.aws(&put).unwrap();
    let drift = ws.tenantctl(&["verify", &id, "--output", "json"]);
    drift.assert_code(3);
    assert_eq!(
        failing_checks(&drift),
        ["alarms.error-rate", "alarms.latency-p99"],
        "{}",
        drift.dump()
    );
    ws.tenantctl(&["apply", &id]).assert_code(0);
    ws.tenantctl(&["verify", &id]).assert_code(0);

    // A tier change carries the new tier's thresholds.
    ws.tenantctl(&["move", &id, "--tier", "growth"])
        .assert_code(0);
    let alarms = alarms_of(&ws, &id);
    assert_eq!(alarms["error-rate"]["Threshold"], 2.0);
    assert_eq!(alarms["latency-p99"]["Threshold"], 500.0);
    assert!(
        alarms["latency-p99"]["Dimensions"]
            .to_string()
            .contains("\"growth\""),
        "{:?}",
        alarms["latency-p99"]
    );
    ws.tenantctl(&["verify", &id]).assert_code(0);
}
