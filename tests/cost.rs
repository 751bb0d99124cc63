//! `tenantctl cost`: the estimate against figures computed by hand from
//! `prices/us-east-1.toml`, in every output format, with `--what-if`, and bad input.
//! Offline: the command makes no AWS call (the work dir's endpoint is a closed port).
//!
//! The work dirs use `init --local`, whose platform has no load balancer, so the shared
//! platform is one NAT gateway (0.045 x 730 = 32.85) and the hosted zone (0.50): 33.35;
//! the shared database is the default db.m5.large (0.178 x 730 = 129.94) with 100 GiB of
//! gp3 (11.50): 141.44. Each tier's own resources, one task each (src/cost.rs tests):
//! starter 9.410025, growth 21.6649, enterprise 115.6192.

use serde_json::Value;

use crate::support::{Workdir, snapshot_text};

fn declare(ws: &Workdir, tenants: &[(&str, &str)]) {
    std::fs::create_dir_all(ws.path().join("tenants")).unwrap();
    for (id, tier) in tenants {
        std::fs::write(
            ws.path().join(format!("tenants/{id}.toml")),
            format!("id = \"{id}\"\ntier = \"{tier}\"\n"),
        )
        .unwrap();
    }
}

fn one_of_each() -> Workdir {
    let ws = Workdir::offline();
    declare(
        &ws,
        &[
            ("initech", "starter"),
            ("globex", "growth"),
            ("acme-corp", "enterprise"),
        ],
    );
    ws
}

fn json_of(ws: &Workdir, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let r = ws.tenantctl(&all);
    r.assert_code(0);
    serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", r.dump()))
}

fn tenant<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no tenant {id} in {v:#}"))
}

/// One tenant of each tier: 33.35 / 3 = 11.116667 of platform each, 141.44 / 2 = 70.72
/// of shared database for the starter and growth tenants.
#[test]
fn one_tenant_of_each_tier_in_every_format() {
    let ws = one_of_each();
    let v = json_of(&ws, &["cost"]);
    // starter 9.610025 (with its 2 alarms) + 11.116667 + 70.72 = 91.446692
    assert_eq!(tenant(&v, "initech")["monthly"]["total"], 91.45);
    assert_eq!(tenant(&v, "initech")["monthly"]["alarms"], 0.2);
    assert_eq!(tenant(&v, "initech")["monthly"]["compute"], 9.01);
    // growth 21.8649 + 11.116667 + 70.72 = 103.701567
    assert_eq!(tenant(&v, "globex")["monthly"]["total"], 103.7);
    // enterprise 116.1192 + 11.116667 = 127.235867; its database 52.56 + 5.75
    let e = tenant(&v, "acme-corp");
    assert_eq!(e["monthly"]["total"], 127.24);
    assert_eq!(e["resources"]["alarms"], 5);
    assert_eq!(e["monthly"]["database"], 58.31);
    assert_eq!(e["resources"]["db_instance_class"], "db.t3.medium");
    assert_eq!(e["resources"]["secrets"], 2);
    assert_eq!(e["resources"]["kms_keys"], 1);
    // 9.610025 + 21.8649 + 116.1192 + 33.35 + 141.44 = 322.384125
    assert_eq!(v["fleet"]["monthly"], 322.38);
    assert_eq!(v["fleet"]["shared"]["platform"], 33.35);
    assert_eq!(v["fleet"]["shared"]["database"], 141.44);
    assert_eq!(v["prices"]["version"], "2025-06");

    for format in ["human", "json", "markdown"] {
        let r = ws.tenantctl(&["cost", "--output", format]);
        r.assert_code(0);
        insta::assert_snapshot!(format!("cost_{format}"), snapshot_text(&r, &[]));
    }
    // Named tenants: their rows only, the fleet still whole.
    let v = json_of(&ws, &["cost", "acme-corp"]);
    assert_eq!(v["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(v["fleet"]["monthly"], 322.38);
}

/// The seeds' hybrid: 190 tenants on shared infrastructure (150 starter, 40 growth) and
/// the 10 largest on dedicated databases.
/// - platform 33.35 / 200 = 0.16675 each; shared database 141.44 / 190 = 0.744421 each
///   pooled tenant
/// - starter 9.610025 + 0.16675 + 0.744421 = 10.521196; x 150 = 1578.179408
/// - growth 21.8649 + 0.16675 + 0.744421 = 22.776071; x 40 = 911.042842
/// - enterprise 116.1192 + 0.16675 = 116.28595; x 10 = 1162.8595
/// - fleet 3652.08175
#[test]
fn the_seeds_hybrid_fleet_matches_the_hand_computed_figures() {
    let ws = Workdir::offline();
    let mut tenants: Vec<(String, &str)> = Vec::new();
    tenants.extend((1..=150).map(|i| (format!("s{i:03}"), "starter")));
    tenants.extend((1..=40).map(|i| (format!("g{i:03}"), "growth")));
    tenants.extend((1..=10).map(|i| (format!("e{i:03}"), "enterprise")));
    let refs: Vec<(&str, &str)> = tenants.iter().map(|(i, t)| (i.as_str(), *t)).collect();
    declare(&ws, &refs);

    let v = json_of(&ws, &["cost"]);
    assert_eq!(v["fleet"]["tenants"], 200);
    assert_eq!(v["fleet"]["monthly"], 3652.08);
    assert_eq!(v["fleet"]["by_tier"]["starter"]["monthly"], 1578.18);
    assert_eq!(v["fleet"]["by_tier"]["growth"]["monthly"], 911.04);
    assert_eq!(v["fleet"]["by_tier"]["enterprise"]["monthly"], 1162.86);
    assert_eq!(tenant(&v, "s001")["monthly"]["total"], 10.52);
    assert_eq!(tenant(&v, "g040")["monthly"]["total"], 22.78);
    assert_eq!(tenant(&v, "e010")["monthly"]["total"], 116.29);

    // The same in the other formats: the summary carries the fleet and tier totals.
    let fleet_line = "fleet: 200 tenants, $3,652.08 per month (starter 150: $1,578.18, growth 40: $911.04, enterprise 10: $1,162.86)";
    for format in ["human", "markdown"] {
        let r = ws.tenantctl(&["cost", "--output", format, "s001", "g040", "e010"]);
        r.assert_code(0);
        let out = r.stdout();
        assert!(out.contains(fleet_line), "{}", r.dump());
        for total in ["$10.52", "$22.78", "$116.29"] {
            assert!(out.contains(total), "{total}\n{}", r.dump());
        }
    }
}

/// Moving the starter tenant to enterprise: it costs 116.1192 + 11.116667 = 127.235867
/// (+35.789175); the growth tenant is left alone in the shared database and carries all
/// of it, 21.8649 + 11.116667 + 141.44 = 174.421567 (+70.72); the fleet
/// 21.8649 + 2 x 116.1192 + 33.35 + 141.44 = 428.8933 (+106.509175).
#[test]
fn what_if_compares_tiers_in_every_format() {
    let ws = one_of_each();
    let v = json_of(&ws, &["cost", "--what-if", "initech=enterprise"]);
    let t = tenant(&v, "initech");
    assert_eq!(t["now"]["monthly"]["total"], 91.45);
    assert_eq!(t["what_if"]["tier"], "enterprise");
    assert_eq!(t["what_if"]["monthly"]["total"], 127.24);
    assert_eq!(t["change"], 35.79);
    assert_eq!(v["fleet"]["now"]["monthly"], 322.38);
    assert_eq!(v["fleet"]["what_if"]["monthly"], 428.89);
    assert_eq!(v["fleet"]["change"], 106.51);
    assert_eq!(v["what_if"][0]["from"], "starter");

    let v = json_of(&ws, &["cost", "globex", "--what-if", "initech=enterprise"]);
    assert_eq!(tenant(&v, "globex")["change"], 70.72);

    for format in ["human", "json", "markdown"] {
        let r = ws.tenantctl(&[
            "cost",
            "--output",
            format,
            "--what-if",
            "initech=enterprise",
        ]);
        r.assert_code(0);
        insta::assert_snapshot!(format!("cost_what_if_{format}"), snapshot_text(&r, &[]));
    }
}

#[test]
fn bad_input_is_one_clear_error_naming_the_value() {
    let ws = one_of_each();
    for (name, args) in [
        ("unknown_tenant", vec!["cost", "nobody"]),
        (
            "what_if_unknown_tenant",
            vec!["cost", "--what-if", "nobody=enterprise"],
        ),
        (
            "what_if_bad_tier",
            vec!["cost", "--what-if", "initech=gold"],
        ),
        ("what_if_no_tier", vec!["cost", "--what-if", "initech"]),
        (
            "what_if_twice",
            vec![
                "cost",
                "--what-if",
                "initech=growth",
                "--what-if",
                "initech=enterprise",
            ],
        ),
    ] {
        let r = ws.tenantctl(&args);
        r.assert_code(1);
        assert!(r.stdout().is_empty(), "{}", r.dump());
        insta::assert_snapshot!(format!("cost_bad_{name}"), snapshot_text(&r, &[]));
    }
    // A region without a built-in table, and a price table file that replaces it.
    let mut ws = one_of_each();
    ws.set_env("AWS_REGION", "eu-west-1");
    let r = ws.tenantctl(&["cost"]);
    r.assert_code(1);
    assert!(
        r.stderr().starts_with(
            "error: no built-in price table for region `eu-west-1` (built in: `us-east-1`)"
        ),
        "{}",
        r.dump()
    );
    let table = std::fs::read_to_string(crate::support::repo_root().join("prices/us-east-1.toml"))
        .unwrap()
        .replace("region = \"us-east-1\"", "region = \"eu-west-1\"")
        .replace("version = \"2025-06\"", "version = \"test\"")
        .replace("vcpu_hour = 0.04048", "vcpu_hour = 0.05");
    std::fs::write(ws.path().join("eu-west-1.toml"), table).unwrap();
    ws.edit_config(
        "[state]",
        "[cost]\nprice_table = \"eu-west-1.toml\"\n\n[state]",
    );
    let v = json_of(&ws, &["cost", "acme-corp"]);
    assert_eq!(v["prices"]["region"], "eu-west-1");
    assert_eq!(v["prices"]["source"]["path"], "eu-west-1.toml");
    // 1 vCPU x 0.05 x 730 = 36.50 + 8 GB 25.9588
    assert_eq!(tenant(&v, "acme-corp")["monthly"]["compute"], 62.46);
}

/// `--actual`: Cost Explorer's spend by the `tenant` tag beside the estimate, read from
/// the emulator (moto answers GetCostAndUsage with the results queued through its API:
/// the request, the paging and the grouping are tenantctl's own).
#[test]
fn actual_spend_from_cost_explorer_beside_the_estimate() {
    let ws = Workdir::new_without_platform();
    declare(&ws, &[("ce-acme", "enterprise"), ("ce-initech", "starter")]);
    // Bad input first: refused before any call.
    for (args, rule) in [
        (
            vec!["cost", "--month", "2026-13"],
            "invalid month `2026-13`: expected YYYY-MM",
        ),
        (
            vec!["cost", "--month", "2999-01"],
            "invalid month `2999-01`: it has not started",
        ),
        (
            vec!["cost", "--actual", "--what-if", "ce-acme=starter"],
            "invalid --actual with --what-if",
        ),
    ] {
        let r = ws.tenantctl(&args);
        r.assert_code(1);
        assert!(
            r.stderr().starts_with(&format!("error: {rule}")),
            "{}",
            r.dump()
        );
    }

    let group = |tag: &str, amount: &str| {
        serde_json::json!({
            "Keys": [format!("tenant${tag}")],
            "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}
        })
    };
    let queued = serde_json::json!({"results": [{
        "ResultsByTime": [{
            "TimePeriod": {"Start": "2026-10-01", "End": "2026-11-01"},
            "Total": {},
            "Groups": [
                group("ce-acme", "123.456"),
                group("ce-initech", "9.994"),
                group("ce-gone", "5"),
                group("", "250.10"),
            ],
            "Estimated": false
        }]
    }]});
    let url = format!(
        "{}/moto-api/static/ce/cost-and-usage-results",
        crate::support::moto::moto().endpoint
    );
    let posted = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={'Content-Type': 'application/json'}))",
            &url,
            &queued.to_string(),
        ])
        .status()
        .unwrap();
    assert!(posted.success());

    let v = json_of(&ws, &["cost", "--month", "2026-10"]);
    assert_eq!(tenant(&v, "ce-acme")["actual"], 123.46);
    assert_eq!(tenant(&v, "ce-initech")["actual"], 9.99);
    let a = &v["actual"];
    assert_eq!(a["month"], "2026-10");
    assert_eq!(a["untagged"], 250.1);
    assert_eq!(a["other_tag_values"]["ce-gone"], 5.0);
    assert_eq!(a["total"], 388.55);
    assert_eq!(a["estimated"], false);
    // The estimate is still there, unchanged by --actual.
    let estimate = json_of(&ws, &["cost"]);
    assert_eq!(
        tenant(&v, "ce-acme")["monthly"],
        tenant(&estimate, "ce-acme")["monthly"]
    );
    assert!(tenant(&estimate, "ce-acme").get("actual").is_none());

    let human = ws.tenantctl(&["cost", "--month", "2026-10"]);
    human.assert_code(0);
    let out = human.stdout();
    assert!(out.contains("ACTUAL 2026-10"), "{}", human.dump());
    assert!(out.contains("$123.46"), "{}", human.dump());
    assert!(
        out.contains(
            "actual 2026-10 (Cost Explorer, USD by tag `tenant`): $133.45 on declared tenants, $250.10 untagged"
        ) && out.contains("$5.00 on tags of no declared tenant (ce-gone $5.00)"),
        "{}",
        human.dump()
    );
}
