//! Verification: read what is really deployed through the AWS SDK and compare it with
//! what the tier demands.
//!
//! Expectations come from the tenant's desired state (the same [`TenantInputs`] the
//! renderer writes), and resources are looked up by their derived names, not through
//! Terraform state: a resource deleted or widened behind Terraform's back is found even
//! when the state still claims it is fine. Each check yields expected vs actual; secret
//! values are never read here (the database checks connect with them but never show them).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::AwsClients;
use crate::isolation;
use crate::render::TenantInputs;
use crate::report::{Check, Checks};

/// All AWS-side checks for one tenant.
pub async fn verify_aws(aws: &AwsClients, inputs: &TenantInputs) -> Vec<Check> {
    let mut c = Checks::new(inputs.tenant_id.as_str());
    let id = &inputs.tenant_id;
    let model = isolation::model(inputs.isolation);
    task_definition(aws, inputs, &mut c).await;
    task_role(aws, inputs, &mut c).await;
    execution_role(aws, inputs, &mut c).await;
    for name in &model.secret_names(id) {
        secret(aws, inputs, name, &mut c).await;
    }
    dns_record(aws, inputs, &mut c).await;
    crate::alarms::verify(&aws.cloudwatch, inputs, &mut c).await;
    model.verify_aws(aws, inputs, &mut c).await;
    c.into_vec()
}

/// The environment the application must see: identity plus the tier's limits.
pub fn expected_env(inputs: &TenantInputs) -> BTreeMap<String, String> {
    let mut env = inputs.limits.clone();
    env.insert("TENANT_ID".into(), inputs.tenant_id.to_string());
    env.insert("TENANT_TIER".into(), inputs.tier.clone());
    env.insert("TENANT_ISOLATION".into(), inputs.isolation.to_string());
    env
}

/// The tags the tenant module puts on every resource it creates (`local.tags` in
/// terraform/modules/tenant/main.tf): cost allocation and ownership rest on them, so a
/// missing or wrong one is drift.
pub fn expected_tags(inputs: &TenantInputs) -> BTreeMap<String, String> {
    [
        ("tenant", inputs.tenant_id.to_string()),
        ("tier", inputs.tier.clone()),
        ("managed-by", "tenantctl".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `<check>.tags`: the expected tags against the resource's (only those keys shown).
fn tags_check<'a>(
    c: &mut Checks,
    check: &str,
    inputs: &TenantInputs,
    actual: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let actual: BTreeMap<&str, &str> = actual.into_iter().collect();
    let expected = expected_tags(inputs);
    let shown: Vec<String> = expected
        .keys()
        .map(|k| match actual.get(k.as_str()) {
            Some(v) => format!("{k}={v}"),
            None => format!("{k} missing"),
        })
        .collect();
    let pass = expected
        .iter()
        .all(|(k, v)| actual.get(k.as_str()) == Some(&v.as_str()));
    c.add(
        &format!("{check}.tags"),
        fmt_map(&expected),
        shown.join(","),
        pass,
    );
}

fn fmt_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn task_definition(aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
    let family = inputs.tenant_id.resource_name();
    let res = aws
        .ecs
        .describe_task_definition()
        .task_definition(&family)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await;
    let (td, td_tags) = match res {
        Ok(out) => match out.task_definition {
            Some(td) => (td, out.tags.unwrap_or_default()),
            None => return c.missing("ecs.task_definition", format!("family {family}")),
        },
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                return c.missing("ecs.task_definition", format!("family {family}"));
            }
            return c.error(
                "ecs.task_definition",
                format!("family {family}"),
                crate::aws::describe_error(&e),
            );
        }
    };
    c.add(
        "ecs.task_definition",
        format!("family {family}"),
        format!("family {}", td.family().unwrap_or("?")),
        td.family() == Some(family.as_str()),
    );
    tags_check(
        c,
        "ecs.task_definition",
        inputs,
        td_tags.iter().filter_map(|t| Some((t.key()?, t.value()?))),
    );
    let cpu = inputs.cpu.to_string();
    c.add(
        "ecs.task_definition.cpu",
        &cpu,
        td.cpu().unwrap_or("none"),
        td.cpu() == Some(cpu.as_str()),
    );
    let mem = inputs.memory.to_string();
    c.add(
        "ecs.task_definition.memory",
        &mem,
        td.memory().unwrap_or("none"),
        td.memory() == Some(mem.as_str()),
    );
    let fargate = td
        .requires_compatibilities()
        .iter()
        .any(|x| x.as_str() == "FARGATE");
    c.add(
        "ecs.task_definition.fargate",
        "FARGATE",
        td.requires_compatibilities()
            .iter()
            .map(|x| x.as_str().to_string())
            .collect::<Vec<_>>()
            .join(","),
        fargate,
    );
    let role_suffix = format!(":role/{family}");
    let role = td.task_role_arn().unwrap_or("none");
    c.add(
        "ecs.task_definition.task_role",
        format!("arn:…{role_suffix}"),
        role,
        role.ends_with(&role_suffix),
    );
    let exec_suffix = format!(":role/{}", inputs.tenant_id.execution_role_name());
    let exec = td.execution_role_arn().unwrap_or("none");
    c.add(
        "ecs.task_definition.execution_role",
        format!("arn:…{exec_suffix}"),
        exec,
        exec.ends_with(&exec_suffix),
    );

    let containers = td.container_definitions();
    let mut env = BTreeMap::new();
    let mut secrets = Vec::new();
    for cd in containers {
        for kv in cd.environment() {
            env.insert(
                kv.name().unwrap_or_default().to_string(),
                kv.value().unwrap_or_default().to_string(),
            );
        }
        for s in cd.secrets() {
            secrets.push((s.name().to_string(), s.value_from().to_string()));
        }
    }
    let want = expected_env(inputs);
    c.add(
        "ecs.task_definition.env",
        fmt_map(&want),
        fmt_map(&env),
        env == want,
    );

    let prefix = format!(":secret:{}", inputs.tenant_id.secret_prefix());
    let scoped = !secrets.is_empty()
        && secrets
            .iter()
            .all(|(_, from)| from.starts_with("arn:") && from.contains(&prefix));
    let has_db = secrets.iter().any(|(n, _)| n == "DATABASE_SECRET");
    c.add(
        "ecs.task_definition.secrets",
        format!(
            "DATABASE_SECRET and every valueFrom an ARN under secret:{}",
            inputs.tenant_id.secret_prefix()
        ),
        secrets
            .iter()
            .map(|(n, f)| format!("{n}={f}"))
            .collect::<Vec<_>>()
            .join(","),
        scoped && has_db,
    );
}

/// IAM answers policy documents URL-encoded.
fn decode_policy(raw: &str) -> Result<Value, String> {
    let text = urlencoding::decode(raw).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn as_list(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Null) | None => vec![],
        Some(other) => vec![other.clone()],
    }
}

fn as_strings(v: Option<&Value>) -> Vec<String> {
    as_list(v)
        .into_iter()
        .map(|x| match x {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect()
}

/// Trust policy: only `ecs-tasks.amazonaws.com` may assume the role.
fn trust_is_ecs_tasks_only(doc: &Value) -> (bool, String) {
    let mut principals = Vec::new();
    let mut ok = true;
    for st in as_list(doc.get("Statement")) {
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        match st.get("Principal") {
            Some(Value::Object(p)) => {
                for (kind, v) in p {
                    for who in as_strings(Some(v)) {
                        if !(kind == "Service" && who == "ecs-tasks.amazonaws.com") {
                            ok = false;
                        }
                        principals.push(format!("{kind}:{who}"));
                    }
                }
            }
            other => {
                ok = false;
                principals.push(format!("{other:?}"));
            }
        }
    }
    (ok && !principals.is_empty(), principals.join(","))
}

async fn role_policies(aws: &AwsClients, role: &str) -> Result<Vec<(String, Value)>, String> {
    let names = aws
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| crate::aws::describe_error(&e.into_service_error()))?;
    let mut docs = Vec::new();
    for name in names.policy_names() {
        let p = aws
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| crate::aws::describe_error(&e.into_service_error()))?;
        docs.push((name.clone(), decode_policy(p.policy_document())?));
    }
    let attached = aws
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| crate::aws::describe_error(&e.into_service_error()))?;
    for a in attached.attached_policies() {
        // A managed policy can grant anything: its presence alone widens the role.
        docs.push((
            format!("attached:{}", a.policy_arn().unwrap_or("?")),
            serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        ));
    }
    Ok(docs)
}

/// Fetches a role; a missing role is recorded as drift and yields None.
async fn get_role(
    aws: &AwsClients,
    name: &str,
    check: &str,
    c: &mut Checks,
) -> Option<aws_sdk_iam::types::Role> {
    match aws.iam.get_role().role_name(name).send().await {
        Ok(out) => match out.role {
            Some(r) => Some(r),
            None => {
                c.missing(check, format!("role {name}"));
                None
            }
        },
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                c.missing(check, format!("role {name}"));
            } else {
                c.error(
                    check,
                    format!("role {name}"),
                    crate::aws::describe_error(&e),
                );
            }
            None
        }
    }
}

async fn task_role(aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
    let name = inputs.tenant_id.resource_name();
    let Some(role) = get_role(aws, &name, "iam.task_role", c).await else {
        return;
    };
    c.add(
        "iam.task_role",
        format!("role {name}"),
        format!("role {}", role.role_name()),
        true,
    );
    trust_check(&role, "iam.task_role.trust", c);
    tags_check(
        c,
        "iam.task_role",
        inputs,
        role.tags().iter().map(|t| (t.key(), t.value())),
    );

    let docs = match role_policies(aws, &name).await {
        Ok(d) => d,
        Err(e) => return c.error("iam.task_role.policies", "readable", e),
    };
    let bucket_arn = format!("arn:aws:s3:::{}", inputs.data_bucket);
    let object_prefix = format!("{bucket_arn}/{}", inputs.tenant_id.s3_prefix());
    let key_prefix = inputs.tenant_id.s3_prefix();
    let mut resources = Vec::new();
    let mut resources_ok = true;
    let mut wildcard = Vec::new();
    let mut list_ok = true;
    let mut list_seen = Vec::new();
    for (pname, doc) in &docs {
        for st in as_list(doc.get("Statement")) {
            if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            let actions = as_strings(st.get("Action"));
            if st.get("NotResource").is_some() || st.get("NotAction").is_some() {
                resources_ok = false;
                wildcard.push(format!("{pname}: NotResource/NotAction"));
            }
            for r in as_strings(st.get("Resource")) {
                resources.push(r.clone());
                if r == "*" || r == "arn:aws:s3:::*" || r.starts_with("arn:aws:s3:::*") {
                    wildcard.push(r.clone());
                    resources_ok = false;
                    continue;
                }
                let lists_bucket = actions
                    .iter()
                    .any(|a| a == "s3:ListBucket" || a == "s3:*" || a == "*");
                if r == bucket_arn {
                    // The bucket itself: only ListBucket, only with a prefix condition
                    // that stays inside the tenant's prefix.
                    let prefixes = st
                        .get("Condition")
                        .and_then(|cnd| {
                            cnd.as_object().map(|o| {
                                o.values()
                                    .filter_map(|ops| ops.get("s3:prefix"))
                                    .flat_map(|v| as_strings(Some(v)))
                                    .collect::<Vec<_>>()
                            })
                        })
                        .unwrap_or_default();
                    list_seen.extend(prefixes.iter().cloned());
                    if !lists_bucket
                        || prefixes.is_empty()
                        || !prefixes.iter().all(|p| p.starts_with(&key_prefix))
                        || actions.iter().any(|a| a != "s3:ListBucket")
                    {
                        list_ok = false;
                    }
                } else if !r.starts_with(&object_prefix) {
                    resources_ok = false;
                }
            }
        }
    }
    c.add(
        "iam.task_role.s3_resources",
        format!("only {object_prefix}* (and the bucket for ListBucket)"),
        resources.join(","),
        resources_ok && !resources.is_empty(),
    );
    c.add(
        "iam.task_role.list_bucket_prefix",
        format!("s3:ListBucket only with s3:prefix under {key_prefix}"),
        if list_seen.is_empty() {
            "no s3:prefix condition".to_string()
        } else {
            list_seen.join(",")
        },
        list_ok && !list_seen.is_empty(),
    );
    c.add(
        "iam.task_role.no_wildcard",
        "no `*` resource, NotResource or attached managed policy",
        if wildcard.is_empty() {
            "none".to_string()
        } else {
            wildcard.join(",")
        },
        wildcard.is_empty() && !docs.iter().any(|(n, _)| n.starts_with("attached:")),
    );
}

fn trust_check(role: &aws_sdk_iam::types::Role, check: &str, c: &mut Checks) {
    match role.assume_role_policy_document().map(decode_policy) {
        Some(Ok(doc)) => {
            let (ok, who) = trust_is_ecs_tasks_only(&doc);
            c.add(check, "Service:ecs-tasks.amazonaws.com only", who, ok);
        }
        Some(Err(e)) => c.error(check, "Service:ecs-tasks.amazonaws.com only", e),
        None => c.add(
            check,
            "Service:ecs-tasks.amazonaws.com only",
            "no trust policy",
            false,
        ),
    }
}

async fn execution_role(aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
    let id = &inputs.tenant_id;
    let name = id.execution_role_name();
    let Some(role) = get_role(aws, &name, "iam.execution_role", c).await else {
        return;
    };
    c.add(
        "iam.execution_role",
        format!("role {name}"),
        format!("role {}", role.role_name()),
        true,
    );
    trust_check(&role, "iam.execution_role.trust", c);
    tags_check(
        c,
        "iam.execution_role",
        inputs,
        role.tags().iter().map(|t| (t.key(), t.value())),
    );
    let docs = match role_policies(aws, &name).await {
        Ok(d) => d,
        Err(e) => return c.error("iam.execution_role.secrets_scope", "readable", e),
    };
    let prefix = format!(":secret:{}", id.secret_prefix());
    let mut seen = Vec::new();
    let mut ok = true;
    for (_, doc) in &docs {
        for st in as_list(doc.get("Statement")) {
            if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            let actions = as_strings(st.get("Action"));
            let reads_secrets = actions
                .iter()
                .any(|a| a.starts_with("secretsmanager:") || a == "*");
            if !reads_secrets {
                continue;
            }
            for r in as_strings(st.get("Resource")) {
                if !(r.starts_with("arn:") && r.contains(&prefix)) {
                    ok = false;
                }
                seen.push(r);
            }
        }
    }
    c.add(
        "iam.execution_role.secrets_scope",
        format!("secrets only under secret:{}", id.secret_prefix()),
        if seen.is_empty() {
            "no secret access".to_string()
        } else {
            seen.join(",")
        },
        ok && !seen.is_empty(),
    );
}

async fn secret(aws: &AwsClients, inputs: &TenantInputs, name: &str, c: &mut Checks) {
    let check = format!("secrets.{}", name.rsplit('/').next().unwrap_or(name));
    match aws.secrets.describe_secret().secret_id(name).send().await {
        Ok(d) => {
            let current = d
                .version_ids_to_stages()
                .map(|m| m.values().any(|st| st.iter().any(|s| s == "AWSCURRENT")))
                .unwrap_or(false);
            let deleted = d.deleted_date().is_some();
            let actual = if deleted {
                "scheduled for deletion".to_string()
            } else if current {
                "exists, has a current version".to_string()
            } else {
                "exists, no current version".to_string()
            };
            c.add(
                &check,
                format!("{name} exists, has a current version"),
                actual,
                current && !deleted,
            );
            tags_check(
                c,
                &check,
                inputs,
                d.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))),
            );
        }
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                c.missing(&check, format!("{name} exists, has a current version"));
            } else {
                c.error(
                    &check,
                    format!("{name} exists"),
                    crate::aws::describe_error(&e),
                );
            }
        }
    }
}

async fn dns_record(aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
    let fqdn = format!(
        "{}.{}.",
        inputs.tenant_id.dns_label(),
        inputs.domain.trim_end_matches('.')
    );
    let want_target = inputs.dns_target.name.trim_end_matches('.').to_string();
    let expected = match &inputs.dns_target.zone_id {
        Some(_) => format!("{fqdn} A alias {want_target}"),
        None => format!("{fqdn} CNAME {want_target}"),
    };
    let res = aws
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(&inputs.hosted_zone_id)
        .start_record_name(&fqdn)
        .max_items(10)
        .send()
        .await;
    let out = match res {
        Ok(o) => o,
        Err(e) => {
            return c.error(
                "route53.record",
                expected,
                crate::aws::describe_error(&e.into_service_error()),
            );
        }
    };
    let mut found = Vec::new();
    for rr in out.resource_record_sets() {
        if rr.name().trim_end_matches('.') != fqdn.trim_end_matches('.') {
            continue;
        }
        let kind = rr.r#type().as_str().to_string();
        if let Some(alias) = rr.alias_target() {
            found.push(format!(
                "{} {kind} alias {}",
                rr.name(),
                alias.dns_name().trim_end_matches('.')
            ));
        } else {
            for v in rr.resource_records() {
                found.push(format!(
                    "{} {kind} {}",
                    rr.name(),
                    v.value().trim_end_matches('.')
                ));
            }
        }
    }
    if found.is_empty() {
        return c.missing("route53.record", expected);
    }
    // DNS names are case-insensitive; both sides carry the record name's trailing dot.
    let pass = found.iter().any(|f| {
        f.trim_end_matches('.')
            .eq_ignore_ascii_case(expected.trim_end_matches('.'))
    });
    c.add("route53.record", expected, found.join(","), pass);
}

pub(crate) async fn rds_instance(aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
    let ident = inputs.tenant_id.resource_name();
    let res = aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(&ident)
        .send()
        .await;
    let db = match res {
        Ok(out) => match out.db_instances().first() {
            Some(d) => d.clone(),
            None => return c.missing("rds.instance", format!("instance {ident}")),
        },
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                return c.missing("rds.instance", format!("instance {ident}"));
            }
            return c.error(
                "rds.instance",
                format!("instance {ident}"),
                crate::aws::describe_error(&e),
            );
        }
    };
    c.add(
        "rds.instance",
        format!("instance {ident}, engine postgres"),
        format!(
            "instance {}, engine {}",
            db.db_instance_identifier().unwrap_or("?"),
            db.engine().unwrap_or("?")
        ),
        db.engine() == Some("postgres"),
    );
    let enc = db.storage_encrypted().unwrap_or(false);
    c.add("rds.instance.encrypted", "true", enc.to_string(), enc);
    let kms = db.kms_key_id().unwrap_or("");
    c.add(
        "rds.instance.kms_key",
        "a customer KMS key",
        if kms.is_empty() { "none" } else { kms },
        !kms.is_empty(),
    );
    tags_check(
        c,
        "rds.instance",
        inputs,
        db.tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?))),
    );
    let dp = db.deletion_protection().unwrap_or(false);
    c.add(
        "rds.instance.deletion_protection",
        inputs.deletion_protection.to_string(),
        dp.to_string(),
        dp == inputs.deletion_protection,
    );
}

pub(crate) async fn ecs_service(aws: &AwsClients, inputs: &TenantInputs, c: &mut Checks) {
    let name = inputs.tenant_id.resource_name();
    let res = aws
        .ecs
        .describe_services()
        .cluster(&inputs.cluster_arn)
        .services(&name)
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await;
    match res {
        Ok(out) => {
            let svc = out.services().iter().find(|s| {
                s.service_name() == Some(name.as_str()) && s.status() != Some("INACTIVE")
            });
            match svc {
                Some(s) => {
                    let td = s.task_definition().unwrap_or("");
                    let ok = td.contains(&format!(":task-definition/{name}:"));
                    c.add(
                        "ecs.service",
                        format!("service {name} running family {name}"),
                        format!("service {name} running {td}"),
                        ok,
                    );
                    tags_check(
                        c,
                        "ecs.service",
                        inputs,
                        s.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))),
                    );
                }
                None => c.missing("ecs.service", format!("service {name}")),
            }
        }
        Err(e) => c.error(
            "ecs.service",
            format!("service {name}"),
            crate::aws::describe_error(&e.into_service_error()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policy_must_be_ecs_tasks_only() {
        let good = serde_json::json!({"Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]});
        assert!(trust_is_ecs_tasks_only(&good).0);
        let wide = serde_json::json!({"Statement":[{"Effect":"Allow","Principal":{"Service":["ecs-tasks.amazonaws.com","ec2.amazonaws.com"]},"Action":"sts:AssumeRole"}]});
        assert!(!trust_is_ecs_tasks_only(&wide).0);
        let anyone = serde_json::json!({"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}]});
        assert!(!trust_is_ecs_tasks_only(&anyone).0);
    }

    #[test]
    fn policies_are_url_decoded() {
        let raw = "%7B%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_policy(raw).unwrap(),
            serde_json::json!({"Statement": []})
        );
    }
}
