//! The platform's load balancer serves HTTPS only: `tenantctl platform apply` against the
//! emulator with an ACM certificate (HTTP redirects to HTTPS), the data bucket TLS-only,
//! access-logged and expiring noncurrent versions; without a certificate it is refused
//! before anything is written.

use serde_json::Value;

use crate::support::{Workdir, unique};

/// A work dir of its own platform on the shared moto, with a load balancer: its names
/// must not collide with the shared platform's.
fn https_platform_dir(name: &str, certificate: Option<&str>) -> Workdir {
    let ws = Workdir::new_without_platform();
    let mut platform = format!(
        "[platform]\nname = \"{name}\"\ndomain = \"{name}.test\"\ndata_bucket = \"{name}-data\"\ncreate_load_balancer = true\ndeny_insecure_transport = true\n"
    );
    if let Some(arn) = certificate {
        platform.push_str(&format!("certificate_arn = \"{arn}\"\n"));
    }
    let path = ws.path().join("tenantctl.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[platform]\n").unwrap();
    let end = start + text[start..].find("image = ").unwrap();
    std::fs::write(
        &path,
        format!("{}{}{}", &text[..start], platform, &text[end..]),
    )
    .unwrap();
    ws
}

fn aws(ws: &Workdir, args: &[&str]) -> Value {
    ws.aws(args)
        .unwrap_or_else(|e| panic!("aws {}: {e}", args.join(" ")))
}

#[test]
fn a_load_balancer_without_a_certificate_is_refused_before_anything_is_written() {
    let ws = https_platform_dir("tc-nocert", None);
    let r = ws.tenantctl(&["platform", "apply"]);
    r.assert_code(1);
    assert!(
        r.stderr().contains(
            "platform value `certificate_arn` is not set, but `create_load_balancer` is true: the load balancer serves HTTPS only"
        ),
        "{}",
        r.dump()
    );
    assert!(
        r.stderr()
            .contains("hint: set `[platform] certificate_arn`"),
        "{}",
        r.dump()
    );
    assert!(!ws.path().join(".tenantctl").exists(), "{}", r.dump());

    let ws = https_platform_dir("tc-badcert", Some("arn:aws:s3:::not-a-certificate"));
    let r = ws.tenantctl(&["platform", "plan"]);
    r.assert_code(1);
    assert!(
        r.stderr().contains(
            "[platform] certificate_arn = \"arn:aws:s3:::not-a-certificate\" is not a certificate ARN"
        ),
        "{}",
        r.dump()
    );
    assert!(!ws.path().join(".tenantctl").exists());
}

#[test]
fn the_https_platform_applies_against_the_emulator() {
    let name = unique("tc-https");
    let ws = https_platform_dir(&name, None);
    // The ALB's certificate, from moto's ACM (the listener refuses an unknown ARN).
    let cert = aws(
        &ws,
        &[
            "acm",
            "request-certificate",
            "--domain-name",
            &format!("*.{name}.test"),
        ],
    )["CertificateArn"]
        .as_str()
        .unwrap()
        .to_string();
    ws.edit_config(
        "create_load_balancer = true\n",
        &format!("create_load_balancer = true\ncertificate_arn = \"{cert}\"\n"),
    );
    let started = std::time::Instant::now();
    ws.tenantctl(&["platform", "apply"]).assert_code(0);
    eprintln!("platform_https: apply took {:.1?}", started.elapsed());

    // HTTPS with the certificate and a TLS 1.2+ policy; HTTP only redirects.
    let lb = aws(&ws, &["elbv2", "describe-load-balancers", "--names", &name]);
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_string();
    let listeners = aws(
        &ws,
        &[
            "elbv2",
            "describe-listeners",
            "--load-balancer-arn",
            &lb_arn,
        ],
    );
    let by_port = |port: i64| -> Value {
        listeners["Listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["Port"] == port)
            .cloned()
            .unwrap_or_else(|| panic!("no listener on {port}: {listeners}"))
    };
    let https = by_port(443);
    assert_eq!(https["Protocol"], "HTTPS", "{https}");
    assert_eq!(
        https["Certificates"][0]["CertificateArn"],
        cert.as_str(),
        "{https}"
    );
    assert_eq!(
        https["SslPolicy"], "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "{https}"
    );
    let http = by_port(80);
    let action = &http["DefaultActions"][0];
    assert_eq!(action["Type"], "redirect", "{http}");
    assert_eq!(action["RedirectConfig"]["Protocol"], "HTTPS", "{http}");
    assert_eq!(action["RedirectConfig"]["Port"], "443", "{http}");
    assert_eq!(action["RedirectConfig"]["StatusCode"], "HTTP_301", "{http}");
    let attrs = aws(
        &ws,
        &[
            "elbv2",
            "describe-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
        ],
    );
    let attr = |k: &str| {
        attrs["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["Key"] == k)
            .map(|a| a["Value"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(attr("access_logs.s3.enabled"), "true", "{attrs}");
    assert_eq!(
        attr("access_logs.s3.bucket"),
        format!("{name}-data-logs"),
        "{attrs}"
    );
    // The emulator's platform may be destroyed: no deletion protection there.
    assert_eq!(attr("deletion_protection.enabled"), "false", "{attrs}");

    // The data bucket: TLS only, access-logged, noncurrent versions expire.
    let bucket = format!("{name}-data");
    let policy: Value = serde_json::from_str(
        aws(&ws, &["s3api", "get-bucket-policy", "--bucket", &bucket])["Policy"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let deny = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "DenyInsecureTransport")
        .unwrap_or_else(|| panic!("no TLS-only statement: {policy}"));
    assert_eq!(deny["Effect"], "Deny", "{policy}");
    assert_eq!(
        deny["Condition"]["Bool"]["aws:SecureTransport"], "false",
        "{policy}"
    );
    let logging = aws(&ws, &["s3api", "get-bucket-logging", "--bucket", &bucket]);
    assert_eq!(
        logging["LoggingEnabled"]["TargetBucket"],
        format!("{bucket}-logs").as_str(),
        "{logging}"
    );
    let lifecycle = aws(
        &ws,
        &[
            "s3api",
            "get-bucket-lifecycle-configuration",
            "--bucket",
            &bucket,
        ],
    );
    assert_eq!(
        lifecycle["Rules"][0]["NoncurrentVersionExpiration"]["NoncurrentDays"], 30,
        "{lifecycle}"
    );

    // Flow logs of the VPC go to the log bucket.
    let vpc = crate::support::platform_value(&ws, "vpc_id");
    let flow = aws(
        &ws,
        &[
            "ec2",
            "describe-flow-logs",
            "--filter",
            &format!("Name=resource-id,Values={vpc}"),
        ],
    );
    assert_eq!(
        flow["FlowLogs"][0]["LogDestination"],
        format!("arn:aws:s3:::{bucket}-logs").as_str(),
        "{flow}"
    );

    // Tenants' alias records point at the load balancer.
    let target = crate::support::platform_value(&ws, "dns_target_name");
    assert_eq!(
        Some(target.as_str()),
        lb["LoadBalancers"][0]["DNSName"].as_str(),
        "{lb}"
    );

    // Converged: a second plan has nothing to do.
    ws.tenantctl(&["platform", "plan"]).assert_code(0);
    ws.tenantctl(&["platform", "destroy", "--yes"])
        .assert_code(0);
}
