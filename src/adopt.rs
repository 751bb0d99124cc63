//! Adopting orphans: a tenant's resource that exists in AWS under its derived name but is
//! missing from the tenant's state. A runner killed between Terraform's create call and
//! its state write, or a resource created by hand, would otherwise make every apply fail
//! on "already exists" until someone ran `terraform import`.
//!
//! Before each plan of an apply, the tenant's resources are looked up by their derived
//! names through the AWS SDK. Only when something exists is the state listed; each
//! resource found in AWS and missing from state gets a Terraform `import` block in
//! `adopt.tf.json` (JSON, so no string is pasted into HCL), which the plan and apply then
//! carry out. The file is removed once the apply is done.
//!
//! A resource whose tags (`tenant`, or `TenantId` and `tenantctl:tenant` of older
//! versions of the module) name another tenant is never
//! adopted: the apply stops before anything is imported. Route53 records have no tags:
//! the record's name is the tenant's own (derived names never collide, see
//! `tenant::DERIVED_SUFFIXES`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::aws::AwsClients;
use crate::render::TenantInputs;
use crate::terraform::Terraform;

/// The file of import blocks in a tenant's root.
pub const FILE: &str = "adopt.tf.json";

/// One resource imported into state (or to be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adoption {
    /// Full address in the root, e.g. `module.tenant["acme"].aws_iam_role.task`.
    pub address: String,
    /// The import id Terraform expects for that resource type.
    pub id: String,
    /// For people: "IAM role `tenant-acme`".
    pub what: String,
}

/// A resource found in AWS under the tenant's derived name, with its tags.
struct Found {
    adoption: Adoption,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to adopt resources of tenant `{tenant}` that belong to another tenant: {list}\nhint: a resource with this tenant's derived name is tagged for another tenant; rename or delete it (or fix its tags) if it is not that tenant's, then rerun"
)]
pub struct ForeignResource {
    pub tenant: String,
    pub list: String,
}

/// Finds the tenant's orphans and writes their import blocks into `dir` (or removes a
/// stale file when there are none). Returns what will be adopted.
pub async fn prepare(
    aws: &AwsClients,
    tf: &Terraform,
    inputs: &TenantInputs,
    dir: &Path,
) -> Result<Vec<Adoption>> {
    clear(dir);
    let adoptions = orphans(aws, None, tf, inputs).await?;
    write_all(dir, &adoptions)?;
    Ok(adoptions)
}

/// The tenant's orphans: resources found under its derived names that `state` (the
/// root's state list, read from `tf` when None) does not hold. A resource tagged for
/// another tenant is an error naming it.
pub async fn orphans(
    aws: &AwsClients,
    state: Option<&std::collections::HashSet<String>>,
    tf: &Terraform,
    inputs: &TenantInputs,
) -> Result<Vec<Adoption>> {
    let id = inputs.tenant_id.as_str();
    let found = find(aws, inputs)
        .await
        .with_context(|| format!("cannot look for orphaned resources of tenant `{id}`"))?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let read;
    let state = match state {
        Some(s) => s,
        None => {
            read = tf.state_list().await?.into_iter().collect();
            &read
        }
    };
    let missing: Vec<Found> = found
        .into_iter()
        .filter(|f| !state.contains(&f.adoption.address))
        .collect();
    let foreign: Vec<String> = missing
        .iter()
        .filter_map(|f| {
            owner_conflict(&f.tags, id).map(|o| format!("{} (tagged for `{o}`)", f.adoption.what))
        })
        .collect();
    if !foreign.is_empty() {
        return Err(ForeignResource {
            tenant: id.to_string(),
            list: foreign.join(", "),
        }
        .into());
    }
    Ok(missing.into_iter().map(|f| f.adoption).collect())
}

/// Writes the import blocks of `adoptions` (of one or several tenants) into `dir`.
pub fn write_all(dir: &Path, adoptions: &[Adoption]) -> Result<()> {
    clear(dir);
    if adoptions.is_empty() {
        return Ok(());
    }
    write(dir, adoptions)
}

/// Removes the import blocks (after the apply, or before a fresh look).
pub fn clear(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILE));
}

fn write(dir: &Path, adoptions: &[Adoption]) -> Result<()> {
    let blocks: Vec<serde_json::Value> = adoptions
        .iter()
        .map(|a| serde_json::json!({ "to": a.address, "id": a.id }))
        .collect();
    let doc = serde_json::json!({
        "//": "Written by tenantctl: resources found in AWS under this tenant's derived names and missing from state. Removed after the apply.",
        "import": blocks,
    });
    let path = dir.join(FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// The tenant another tenant's tags name, if any.
fn owner_conflict(tags: &BTreeMap<String, String>, id: &str) -> Option<String> {
    ["tenant", "TenantId", "tenantctl:tenant"]
        .iter()
        .filter_map(|k| tags.get(*k))
        .find(|v| v.as_str() != id)
        .cloned()
}

async fn find(aws: &AwsClients, inputs: &TenantInputs) -> Result<Vec<Found>> {
    let t = &inputs.tenant_id;
    let id = t.as_str();
    let module = format!("module.tenant[{}]", serde_json::to_string(id)?);
    let addr = |a: &str| format!("{module}.{a}");
    let mut out = Vec::new();

    // IAM roles and their inline policies (the policy belongs with its role).
    for (res, role, policy_res, policy) in [
        (
            "aws_iam_role.task",
            t.resource_name(),
            "aws_iam_role_policy.task",
            format!("{}-data", t.resource_name()),
        ),
        (
            "aws_iam_role.execution",
            t.execution_role_name(),
            "aws_iam_role_policy.execution",
            t.execution_role_name(),
        ),
    ] {
        let Some(tags) = iam_role(aws, &role).await? else {
            continue;
        };
        if iam_role_policy(aws, &role, &policy).await? {
            out.push(Found {
                adoption: Adoption {
                    address: addr(policy_res),
                    id: format!("{role}:{policy}"),
                    what: format!("IAM role policy `{role}:{policy}`"),
                },
                tags: tags.clone(),
            });
        }
        out.push(Found {
            adoption: Adoption {
                address: addr(res),
                id: role.clone(),
                what: format!("IAM role `{role}`"),
            },
            tags,
        });
    }

    let mut secrets = vec![("aws_secretsmanager_secret.db", t.db_secret_name())];
    if inputs.dedicated_database {
        secrets.push((
            "aws_secretsmanager_secret.db_admin[0]",
            t.db_admin_secret_name(),
        ));
    }
    for (res, name) in secrets {
        if let Some((arn, tags)) = secret(aws, &name).await? {
            out.push(Found {
                adoption: Adoption {
                    address: addr(res),
                    id: arn,
                    what: format!("secret `{name}`"),
                },
                tags,
            });
        }
    }

    if let Some(f) = dns_record(aws, inputs, &addr("aws_route53_record.this")).await? {
        out.push(f);
    }

    if inputs.dedicated_database {
        let name = t.resource_name();
        if let Some(tags) = db_instance(aws, &name).await? {
            out.push(Found {
                adoption: Adoption {
                    address: addr("aws_db_instance.this[0]"),
                    id: name.clone(),
                    what: format!("RDS instance `{name}`"),
                },
                tags,
            });
        }
        if let Some(tags) = db_subnet_group(aws, &name).await? {
            out.push(Found {
                adoption: Adoption {
                    address: addr("aws_db_subnet_group.this[0]"),
                    id: name.clone(),
                    what: format!("DB subnet group `{name}`"),
                },
                tags,
            });
        }
    }
    Ok(out)
}

fn tag_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn iam_role(aws: &AwsClients, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    match aws.iam.get_role().role_name(name).send().await {
        Ok(_) => {}
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                return Ok(None);
            }
            anyhow::bail!("IAM role `{name}`: {}", crate::aws::describe_error(&e));
        }
    }
    let tags = aws
        .iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "tags of IAM role `{name}`: {}",
                crate::aws::describe_error(&e.into_service_error())
            )
        })?;
    Ok(Some(tag_map(
        tags.tags().iter().map(|t| (t.key(), t.value())),
    )))
}

async fn iam_role_policy(aws: &AwsClients, role: &str, policy: &str) -> Result<bool> {
    match aws
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                Ok(false)
            } else {
                anyhow::bail!(
                    "IAM role policy `{role}:{policy}`: {}",
                    crate::aws::describe_error(&e)
                )
            }
        }
    }
}

/// A secret that exists and is not scheduled for deletion: its ARN and tags.
async fn secret(
    aws: &AwsClients,
    name: &str,
) -> Result<Option<(String, BTreeMap<String, String>)>> {
    match aws.secrets.describe_secret().secret_id(name).send().await {
        Ok(s) => {
            if s.deleted_date().is_some() {
                return Ok(None);
            }
            let arn = s
                .arn()
                .with_context(|| format!("secret `{name}` has no ARN"))?
                .to_string();
            let tags = tag_map(
                s.tags()
                    .iter()
                    .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
            );
            Ok(Some((arn, tags)))
        }
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                Ok(None)
            } else {
                anyhow::bail!("secret `{name}`: {}", crate::aws::describe_error(&e))
            }
        }
    }
}

async fn dns_record(
    aws: &AwsClients,
    inputs: &TenantInputs,
    address: &str,
) -> Result<Option<Found>> {
    if inputs.hosted_zone_id.is_empty() {
        return Ok(None);
    }
    let name = format!(
        "{}.{}",
        inputs.tenant_id.as_str(),
        inputs.domain.trim_end_matches('.')
    );
    let kind = if inputs.dns_target.zone_id.is_some() {
        "A"
    } else {
        "CNAME"
    };
    let out = aws
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(&inputs.hosted_zone_id)
        .start_record_name(format!("{name}."))
        .max_items(10)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "DNS record `{name}`: {}",
                crate::aws::describe_error(&e.into_service_error())
            )
        })?;
    let exists = out.resource_record_sets().iter().any(|rr| {
        rr.name().trim_end_matches('.').eq_ignore_ascii_case(&name) && rr.r#type().as_str() == kind
    });
    Ok(exists.then(|| Found {
        adoption: Adoption {
            address: address.to_string(),
            id: format!(
                "{}_{}_{kind}",
                inputs.hosted_zone_id.trim_start_matches("/hostedzone/"),
                name
            ),
            what: format!("DNS record `{name}` ({kind})"),
        },
        tags: BTreeMap::new(),
    }))
}

async fn db_instance(aws: &AwsClients, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    match aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(name)
        .send()
        .await
    {
        Ok(o) => Ok(o.db_instances().first().map(|db| {
            tag_map(
                db.tag_list()
                    .iter()
                    .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
            )
        })),
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                Ok(None)
            } else {
                anyhow::bail!("RDS instance `{name}`: {}", crate::aws::describe_error(&e))
            }
        }
    }
}

async fn db_subnet_group(aws: &AwsClients, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    match aws
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
    {
        Ok(o) => {
            let Some(g) = o.db_subnet_groups().first() else {
                return Ok(None);
            };
            let tags = match g.db_subnet_group_arn() {
                Some(arn) => aws
                    .rds
                    .list_tags_for_resource()
                    .resource_name(arn)
                    .send()
                    .await
                    .map(|t| {
                        tag_map(
                            t.tag_list()
                                .iter()
                                .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
                        )
                    })
                    .unwrap_or_default(),
                None => BTreeMap::new(),
            };
            Ok(Some(tags))
        }
        Err(e) => {
            let e = e.into_service_error();
            if crate::aws::is_not_found(&e) {
                Ok(None)
            } else {
                anyhow::bail!(
                    "DB subnet group `{name}`: {}",
                    crate::aws::describe_error(&e)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_tenants_tags_are_a_conflict() {
        let tags = |pairs: &[(&str, &str)]| tag_map(pairs.iter().copied());
        assert_eq!(owner_conflict(&tags(&[]), "acme"), None);
        assert_eq!(
            owner_conflict(
                &tags(&[("TenantId", "acme"), ("ManagedBy", "tenantctl")]),
                "acme"
            ),
            None
        );
        assert_eq!(
            owner_conflict(&tags(&[("TenantId", "globex")]), "acme"),
            Some("globex".into())
        );
        assert_eq!(
            owner_conflict(&tags(&[("tenantctl:tenant", "globex")]), "acme"),
            Some("globex".into())
        );
    }

    #[test]
    fn import_blocks_are_json() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[Adoption {
                address: "module.tenant[\"acme\"].aws_iam_role.task".into(),
                id: "tenant-acme".into(),
                what: "IAM role `tenant-acme`".into(),
            }],
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(FILE)).unwrap()).unwrap();
        assert_eq!(
            v["import"][0]["to"],
            "module.tenant[\"acme\"].aws_iam_role.task"
        );
        assert_eq!(v["import"][0]["id"], "tenant-acme");
    }
}
