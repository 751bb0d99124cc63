//! Orphans: a tenant's resource that exists in AWS under its derived name but not in its
//! state (a runner killed before Terraform wrote state, a manual create) is imported by
//! the next apply instead of failing it on "already exists"; one tagged for another
//! tenant is refused, and nothing is imported.

use crate::support::{Workdir, state_list, unique};

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

#[test]
fn orphaned_role_and_secret_are_adopted() {
    let ws = Workdir::new().with_database();
    let id = unique("orphan");
    let role = format!("tenant-{id}");
    let secret = format!("tenants/{id}/db");
    ws.aws(&[
        "iam",
        "create-role",
        "--role-name",
        &role,
        "--assume-role-policy-document",
        TRUST,
    ])
    .unwrap();
    ws.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        &secret,
        "--secret-string",
        "{}",
    ])
    .unwrap();

    let run = ws.tenantctl(&["add", &id, "--tier", "starter"]);
    run.assert_code(0);
    let err = run.stderr();
    assert!(
        err.contains(&format!("adopting IAM role `{role}`")),
        "{}",
        run.dump()
    );
    assert!(
        err.contains(&format!("adopting secret `{secret}`")),
        "{}",
        run.dump()
    );
    let state = state_list(&ws, &id);
    let m = format!("module.tenant[\"{id}\"]");
    assert!(
        state.contains(&format!("{m}.aws_iam_role.task")),
        "{state:?}"
    );
    assert!(
        state.contains(&format!("{m}.aws_secretsmanager_secret.db")),
        "{state:?}"
    );
    let root = ws.path().join(".tenantctl/roots").join(&id);
    assert!(
        !root.join("adopt.tf.json").exists(),
        "import blocks left behind"
    );
    // One role, one secret: adopted, not duplicated; and the tenant is what it should be.
    let roles = ws.aws(&["iam", "list-roles"]).unwrap();
    let n = roles["Roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["RoleName"] == role.as_str())
        .count();
    assert_eq!(n, 1);
    let tags = ws
        .aws(&["iam", "list-role-tags", "--role-name", &role])
        .unwrap();
    assert!(
        tags["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["Key"] == "tenant" && t["Value"] == id.as_str()),
        "adopted role not tagged as the module tags it: {tags}"
    );
    ws.tenantctl(&["verify", &id]).assert_code(0);
    ws.tenantctl(&["plan", &id]).assert_code(0);
}

#[test]
fn resource_tagged_for_another_tenant_is_refused() {
    let ws = Workdir::new().with_database();
    let id = unique("squat");
    let role = format!("tenant-{id}");
    ws.aws(&[
        "iam",
        "create-role",
        "--role-name",
        &role,
        "--assume-role-policy-document",
        TRUST,
        "--tags",
        "Key=TenantId,Value=globex",
        "Key=ManagedBy,Value=tenantctl",
    ])
    .unwrap();
    let run = ws.tenantctl(&["add", &id, "--tier", "starter"]);
    run.assert_code(1);
    let err = run.stderr();
    assert!(err.contains("belong to another tenant"), "{}", run.dump());
    assert!(
        err.contains(&format!("IAM role `{role}` (tagged for `globex`)")),
        "{}",
        run.dump()
    );
    // Nothing imported, nothing created, the role untouched.
    assert!(state_list(&ws, &id).is_empty());
    let root = ws.path().join(".tenantctl/roots").join(&id);
    assert!(!root.join("adopt.tf.json").exists());
    let tags = ws
        .aws(&["iam", "list-role-tags", "--role-name", &role])
        .unwrap();
    assert!(
        tags["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["Key"] == "TenantId" && t["Value"] == "globex"),
        "{tags}"
    );
}
