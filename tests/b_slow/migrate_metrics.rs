//! `db migrate` publishes its run to CloudWatch (the shared moto), per tier and in total;
//! publishing never fails a run; and the platform's dashboard reads the same metrics.
//!
//! The work dirs are PostgreSQL ones (`DbWorkDir`, tenants provisioned through the
//! library: no Terraform) whose `[aws]` points at moto, each with its own namespace, so
//! runs of other tests on the same moto never mix in.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::Value;
use tenantctl::metrics::{
    MIGRATIONS_APPLIED, RUN_DURATION, TARGETS_FAILED, TARGETS_MIGRATED, TARGETS_PENDING,
};
use tenantctl::tenant::Tier;

use crate::support::postgres::{DbWorkDir, show};
use crate::support::{Workdir, moto, unique};

const ACCOUNTS: &str = include_str!("../../migrations/0001_accounts.sql");
const NOTES: &str = "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text);\n";
const COUNTS: [&str; 4] = [
    MIGRATIONS_APPLIED,
    TARGETS_MIGRATED,
    TARGETS_PENDING,
    TARGETS_FAILED,
];

/// Appends `[aws]` (and `[metrics]`) sections to the work dir's config.
fn aim_at(w: &DbWorkDir, endpoint: &str, metrics: &str) {
    let p = w.path().join("tenantctl.toml");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(&format!(
        "\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\n[metrics]\n{metrics}"
    ));
    std::fs::write(&p, text).unwrap();
}

/// `db migrate` with the admin URL and fake AWS credentials; AWS settings from the file.
fn migrate(w: &DbWorkDir, args: &[&str]) -> Output {
    w.tenantctl_env(
        args,
        &[
            ("TENANTCTL_DATABASE_URL", Some(&w.admin_url())),
            ("AWS_ACCESS_KEY_ID", Some("test")),
            ("AWS_SECRET_ACCESS_KEY", Some("test")),
            ("AWS_EC2_METADATA_DISABLED", Some("true")),
            ("AWS_ENDPOINT_URL", None),
            ("AWS_REGION", None),
            ("AWS_DEFAULT_REGION", None),
            ("AWS_PROFILE", None),
        ],
    )
}

async fn cloudwatch() -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&moto::sdk_config().await)
}

/// Sum and sample count of `metric` over the last and next half hour, for one tier or, with
/// `None`, for every data point of the metric (moto ignores the dimensions when none are
/// given; CloudWatch would return the dimensionless series only).
async fn stats(
    cw: &aws_sdk_cloudwatch::Client,
    ns: &str,
    metric: &str,
    tier: Option<Tier>,
) -> (f64, f64) {
    let now = SystemTime::now();
    let out = cw
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .set_dimensions(
            tier.map(|t| vec![Dimension::builder().name("Tier").value(t.as_str()).build()]),
        )
        .start_time((now - Duration::from_secs(1800)).into())
        .end_time((now + Duration::from_secs(1800)).into())
        .period(3600)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get-metric-statistics {ns} {metric}: {e:?}"));
    let points = out.datapoints();
    assert!(
        points.len() <= 1,
        "{metric} {tier:?}: one period expected, got {points:?}"
    );
    points
        .first()
        .map(|p| (p.sum().unwrap(), p.sample_count().unwrap()))
        .unwrap_or((0.0, 0.0))
}

/// Every (metric, dimension set) in the namespace.
async fn listed(cw: &aws_sdk_cloudwatch::Client, ns: &str) -> BTreeSet<(String, Vec<String>)> {
    let out = cw
        .list_metrics()
        .namespace(ns)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list-metrics {ns}: {e:?}"));
    out.metrics()
        .iter()
        .map(|m| {
            (
                m.metric_name().unwrap_or_default().to_string(),
                m.dimensions()
                    .iter()
                    .map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or("")))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_migrate_publishes_per_tier_counts_totals_and_duration() {
    let ns = format!("Tenantctl/Test-{}", unique("mx"));
    let w = DbWorkDir::empty("metrics").await;
    aim_at(
        &w,
        &moto::moto().endpoint,
        &format!("namespace = \"{ns}\"\n"),
    );
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("mx-s1", Tier::Starter).await;
    w.provision("mx-s2", Tier::Starter).await;
    for id in ["mx-g1", "mx-g2", "mx-g3"] {
        w.provision(id, Tier::Growth).await;
    }
    w.provision("mx-e1", Tier::Enterprise).await;
    // Declared but never provisioned: left pending.
    w.declare("mx-g4", Tier::Growth);
    // 0002 fails on mx-g2, where a conflicting table exists.
    w.admin()
        .await
        .batch_execute("CREATE TABLE \"tenant_mx-g2\".notes (tenant_id text NOT NULL)")
        .await
        .unwrap();
    w.write_migration("0002_notes.sql", NOTES);

    let args = ["db", "migrate", "--output", "json"];
    let out = migrate(&w, &args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not published"), "{}", show(&args, &out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: BTreeMap<&str, &str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap(),
                t["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("pool", "migrated"),
            ("mx-e1", "migrated"),
            ("mx-g1", "migrated"),
            ("mx-g2", "failed"),
            ("mx-g3", "migrated"),
            ("mx-g4", "not_provisioned"),
        ])
    );

    let cw = cloudwatch().await;
    // [applied, migrated, pending, failed] per tier.
    let expected: [(Tier, [f64; 4]); 3] = [
        (Tier::Starter, [1.0, 1.0, 0.0, 0.0]),
        (Tier::Growth, [2.0, 2.0, 1.0, 1.0]),
        (Tier::Enterprise, [1.0, 1.0, 0.0, 0.0]),
    ];
    let total = [4.0, 4.0, 1.0, 1.0];
    for (i, metric) in COUNTS.iter().enumerate() {
        let mut tiers_sum = 0.0;
        for (tier, values) in &expected {
            let (sum, samples) = stats(&cw, &ns, metric, Some(*tier)).await;
            assert_eq!((sum, samples), (values[i], 1.0), "{metric} for tier {tier}");
            tiers_sum += sum;
        }
        // Without a dimension moto sums every series: the tiers' plus the total's.
        let (all, samples) = stats(&cw, &ns, metric, None).await;
        assert_eq!(samples, 4.0, "{metric}: 3 tiers + the total");
        assert_eq!(all - tiers_sum, total[i], "{metric} over all tiers");
    }
    let (seconds, samples) = stats(&cw, &ns, RUN_DURATION, None).await;
    assert_eq!(samples, 1.0);
    let elapsed_ms = report["elapsed_ms"].as_u64().unwrap();
    assert!(
        (seconds - elapsed_ms as f64 / 1000.0).abs() < 1e-6,
        "RunDuration {seconds} s, the report says {elapsed_ms} ms"
    );

    // The series exist exactly as the dashboard reads them.
    let mut want: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    for metric in COUNTS {
        want.insert((metric.to_string(), vec![]));
        for tier in ["starter", "growth", "enterprise"] {
            want.insert((metric.to_string(), vec![format!("Tier={tier}")]));
        }
    }
    want.insert((RUN_DURATION.to_string(), vec![]));
    assert_eq!(listed(&cw, &ns).await, want);

    // A second, no-op run publishes again: zeros, not gaps.
    let started = SystemTime::now();
    w.admin()
        .await
        .batch_execute("DROP TABLE \"tenant_mx-g2\".notes")
        .await
        .unwrap();
    let out = migrate(&w, &["db", "migrate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        show(&["db", "migrate"], &out)
    );
    let (sum, samples) = stats(&cw, &ns, TARGETS_FAILED, Some(Tier::Growth)).await;
    assert_eq!((sum, samples), (1.0, 2.0), "second run: growth failed 0");
    let (sum, samples) = stats(&cw, &ns, MIGRATIONS_APPLIED, Some(Tier::Growth)).await;
    assert_eq!((sum, samples), (3.0, 2.0), "second run: mx-g2 applied 0002");
    let (_, samples) = stats(&cw, &ns, TARGETS_PENDING, Some(Tier::Starter)).await;
    assert_eq!(samples, 2.0);
    assert!(started.elapsed().unwrap() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_failure_is_a_warning_and_the_run_succeeds() {
    let w = DbWorkDir::empty("metrics_down").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    aim_at(&w, &format!("http://127.0.0.1:{closed}"), "");
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("md-g1", Tier::Growth).await;
    w.write_migration("0002_notes.sql", NOTES);
    let args = ["db", "migrate", "--output", "json"];
    let started = Instant::now();
    let out = migrate(&w, &args);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["migrations_applied"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARN")
            && stderr.contains("the migration run's metrics were not published to CloudWatch")
            && stderr.contains("Tenantctl/Migrations")
            && stderr.contains("`[metrics] enabled = false`"),
        "{}",
        show(&args, &out)
    );
    // A warning, not the error line of a failed command.
    assert!(
        !stderr.lines().any(|l| l.starts_with("error:")),
        "{}",
        show(&args, &out)
    );
    // Bounded: 2 attempts, 10 s at most, not the SDK's default retries.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_disabled_publishes_nothing() {
    let ns = format!("Tenantctl/Test-{}", unique("mo"));
    let w = DbWorkDir::empty("metrics_off").await;
    aim_at(
        &w,
        &moto::moto().endpoint,
        &format!("enabled = false\nnamespace = \"{ns}\"\n"),
    );
    w.write_migration("0001_accounts.sql", ACCOUNTS);
    w.provision("mo-g1", Tier::Growth).await;
    w.write_migration("0002_notes.sql", NOTES);
    let args = ["db", "migrate"];
    let out = migrate(&w, &args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("WARN"),
        "{}",
        show(&args, &out)
    );
    assert_eq!(listed(&cloudwatch().await, &ns).await, BTreeSet::new());
}

#[test]
fn a_bad_namespace_is_refused_before_anything_runs() {
    let ws = Workdir::offline();
    let p = ws.path().join("tenantctl.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}\n[metrics]\nnamespace = \"AWS/RDS\"\n")).unwrap();
    let run = ws.tenantctl(&["db", "status"]);
    run.assert_code(1);
    assert!(
        run.stderr().contains(
            "[metrics] namespace: `AWS/RDS` starts with `AWS/`, which CloudWatch reserves for AWS services"
        ),
        "{}",
        run.dump()
    );
}

/// The platform applied once for this test binary has the dashboard, and it plots what
/// `db migrate` publishes: each count per tier and over all tiers, and the duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_has_a_dashboard_of_the_published_metrics() {
    let ws = Workdir::new();
    let name = format!("{}-migrations", platform_name(&ws));
    let cw = cloudwatch().await;
    let out = cw
        .get_dashboard()
        .dashboard_name(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get-dashboard {name}: {e:?}"));
    let body: Value = serde_json::from_str(out.dashboard_body().unwrap()).unwrap();
    let widgets = body["widgets"].as_array().unwrap();
    // metric name -> the dimension sets plotted.
    let mut plotted: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for w in widgets {
        assert_eq!(w["type"], "metric", "{w}");
        assert_eq!(w["properties"]["region"], "us-east-1", "{w}");
        for series in w["properties"]["metrics"].as_array().unwrap() {
            let s = series.as_array().unwrap();
            assert_eq!(s[0], "Tenantctl/Migrations", "{w}");
            let dims: Vec<String> = s[2..]
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            plotted
                .entry(s[1].as_str().unwrap().to_string())
                .or_default()
                .insert(dims);
        }
    }
    let per_tier: BTreeSet<Vec<String>> = [
        vec![],
        vec!["Tier".to_string(), "starter".to_string()],
        vec!["Tier".to_string(), "growth".to_string()],
        vec!["Tier".to_string(), "enterprise".to_string()],
    ]
    .into_iter()
    .collect();
    let mut want: BTreeMap<String, BTreeSet<Vec<String>>> = COUNTS
        .iter()
        .map(|m| (m.to_string(), per_tier.clone()))
        .collect();
    want.insert(RUN_DURATION.to_string(), BTreeSet::from([vec![]]));
    assert_eq!(plotted, want, "{body:#}");
    // One widget per metric.
    assert_eq!(widgets.len(), want.len(), "{body:#}");
}

fn platform_name(ws: &Workdir) -> String {
    let text = std::fs::read_to_string(ws.path().join("tenantctl.toml")).unwrap();
    let cfg: tenantctl::config::Config = toml::from_str(&text).unwrap();
    cfg.platform.name.unwrap()
}
