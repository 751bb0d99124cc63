//! An enterprise tenant's dedicated database the way it is on real AWS, without RDS: no
//! `[database] local_silo`, the instance's master login in Secrets Manager (the shared
//! moto) as `tenants/<id>/db-admin`, pointing at a PostgreSQL that accepts TLS only (the
//! test CA's `localhost` certificate), `sslmode = "verify-full"` with that CA. The library
//! reads the secret, provisions, migrates and verifies over verified TLS.
//!
//! And the way in on AWS: `[database] admin_cidr_blocks` / `admin_security_group_ids`
//! reach the tenant module (through the JSON tfvars, enterprise tenants only), which
//! refuses exactly what tenantctl's config check refuses.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use tenantctl::aws::AwsClients;
use tenantctl::config::Config;
use tenantctl::db::{
    Database, DbSecret, Location, MigrateOptions, SslMode, TargetReport, TargetState,
};
use tenantctl::report::{CheckStatus, Verdict, verdict};
use tenantctl::tenant::{TenantId, Tier};
use tenantctl::workspace::TenantSpec;

use crate::module_contract::{hcl_str, variable_rules};
use crate::support::postgres::{SUPERUSER, SUPERUSER_PASSWORD, TlsCluster, tls_cluster};
use crate::support::{Workdir, moto, tf_cli_config};

/// The RDS master login as the tenant module creates it (`tenantadmin`): not a superuser
/// (RDS has none), but CREATEROLE and CREATEDB, and the owner of the database (`app`).
const MASTER: &str = "tenantadmin";
const SILO_DB: &str = "app";
const MASTER_PASSWORD: &str = "m'aster pw\\ 42";
const TENANT_PASSWORD: &str = "t'enant pw\\ 42";

fn admin_url(c: &TlsCluster, db: &str, params: &str) -> String {
    format!(
        "postgresql://{}:{}@localhost:{}/{db}{params}",
        urlencoding::encode(SUPERUSER),
        urlencoding::encode(SUPERUSER_PASSWORD),
        c.cluster.port
    )
}

/// A config as on real AWS: `local = false`, no `local_silo`, verify-full against `ca`.
fn rds_config(c: &TlsCluster, shared_db: &str, ca: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.database.sslmode = Some(SslMode::VerifyFull);
    cfg.database.sslrootcert = Some(ca.to_path_buf());
    cfg.database.host = Some("localhost".into());
    cfg.database.port = Some(c.cluster.port);
    cfg.database.name = Some(shared_db.into());
    cfg
}

fn migrations() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tenantctl-silo-mig-")
        .tempdir()
        .unwrap();
    for f in ["0001_accounts.sql", "0002_projects.sql"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    dir
}

async fn ssl_in_use(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_without_local_silo_is_provisioned_through_its_db_admin_secret_over_verified_tls() {
    let c = tls_cluster();
    let id = TenantId::parse("rds-silo").unwrap();
    let spec = TenantSpec {
        id: id.clone(),
        tier: Tier::Enterprise,
    };
    let (role, silo_db) = (id.db_role(), SILO_DB.to_string());
    let shared_db = "rds_shared";
    let mig = migrations();

    // What Terraform and RDS would have made: the shared database, and the dedicated one
    // owned by its master login.
    let root_cfg = rds_config(c, "postgres", &c.ca);
    let root = Database::with_admin_url(
        &root_cfg,
        &admin_url(c, "postgres", ""),
        "the test superuser",
        mig.path().to_path_buf(),
    )
    .unwrap()
    .admin()
    .connect("tenantctl test")
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    // One statement each: CREATE DATABASE cannot run in a multi-statement query.
    for sql in [
        format!(
            "CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB PASSWORD '{}'",
            MASTER_PASSWORD.replace('\'', "''")
        ),
        format!("CREATE DATABASE {shared_db}"),
        format!("CREATE DATABASE \"{silo_db}\" OWNER {MASTER}"),
    ] {
        root.batch_execute(&sql).await.unwrap();
    }

    // The instance's master login, as Terraform writes it, in the emulator's Secrets Manager.
    let master = DbSecret {
        engine: "postgres".into(),
        host: "localhost".into(),
        port: c.cluster.port,
        dbname: silo_db.clone(),
        username: MASTER.into(),
        password: MASTER_PASSWORD.into(),
        schema: None,
    };
    let aws = AwsClients::from_sdk_config(&moto::sdk_config().await);
    aws.secrets
        .create_secret()
        .name(id.db_admin_secret_name())
        .secret_string(serde_json::to_string(&master).unwrap())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create-secret: {e:?}"));
    let tenant = DbSecret {
        username: role.clone(),
        password: TENANT_PASSWORD.into(),
        ..master.clone()
    };

    // The server takes TLS only, so whatever the library does below, it does over TLS.
    let plain = format!(
        "postgresql://{MASTER}:{}@127.0.0.1:{}/{silo_db}",
        urlencoding::encode(MASTER_PASSWORD),
        c.cluster.port
    );
    let refused = tokio_postgres::connect(&plain, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a plaintext connection was accepted");
    let why = refused.as_db_error().map(|e| e.message().to_string());
    assert!(
        why.as_deref().is_some_and(|m| m.contains("no encryption")),
        "{refused:?}"
    );

    let cfg = rds_config(c, shared_db, &c.ca);
    assert!(cfg.database.local_silo.is_none() && !cfg.local);
    let db = Database::with_admin_url(
        &cfg,
        &admin_url(c, shared_db, ""),
        "the test admin URL",
        mig.path().to_path_buf(),
    )
    .unwrap()
    .with_aws(aws.clone());

    db.provision(&spec, &tenant)
        .await
        .unwrap_or_else(|e| panic!("provision: {e:#}"));

    // The login the library uses comes from the secret, verify-full, and is encrypted.
    let ep = db.silo_admin(&id, None).await.unwrap();
    assert_eq!(ep.source, "secret `tenants/rds-silo/db-admin`");
    assert_eq!(ep.tls.mode(), SslMode::VerifyFull);
    assert_eq!(
        ep.label(),
        format!("{MASTER}@localhost:{}/{silo_db}", c.cluster.port)
    );
    let admin = ep.connect("tenantctl test").await.unwrap();
    assert!(ssl_in_use(&admin).await);
    let row = admin
        .query_one(
            "SELECT current_user::text, current_database()::text,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, bool>(2)
        ),
        (MASTER.to_string(), silo_db.clone(), false)
    );
    // Role, schema and migrations are in the dedicated database, not the shared one.
    let row = admin
        .query_one(
            "SELECT (SELECT rolcanlogin AND NOT rolsuper FROM pg_roles WHERE rolname = $1),
                    (SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1),
                    to_regclass(quote_ident($1) || '.accounts') IS NOT NULL",
            &[&role],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, Option<bool>>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, bool>(2)
        ),
        (Some(true), Some(MASTER.to_string()), true)
    );
    let versions: Vec<i32> = admin
        .query(
            &format!("SELECT version FROM \"{role}\".schema_migrations ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
    let shared = db.admin().connect("tenantctl test").await.unwrap();
    let in_shared: bool = shared
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !in_shared,
        "the silo schema leaked into the shared database"
    );

    // The tenant's own login works with what its secret holds, over TLS, in its schema.
    let app = tenant
        .endpoint("secret `tenants/rds-silo/db`", db.tenant_tls())
        .connect("tenantctl test")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(ssl_in_use(&app).await);
    let n: i64 = app
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // verify: every database check passes, the silo's own among them.
    let checks = db.verify(&spec, &tenant).await;
    let failing: Vec<_> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .collect();
    assert!(failing.is_empty(), "{failing:#?}");
    assert_eq!(verdict(&checks), Verdict::Pass);
    assert!(
        checks.iter().any(|c| c.check == "db.silo.database_private"),
        "{checks:#?}"
    );

    // migrate and status reach it the same way.
    let targets = db
        .targets(std::slice::from_ref(&spec), &BTreeMap::new())
        .await;
    assert!(
        matches!(targets[0].location, Location::Silo(_)),
        "{targets:?}"
    );
    std::fs::write(
        mig.path().join("0003_notes.sql"),
        "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text);\n",
    )
    .unwrap();
    let set = tenantctl::db::MigrationSet::load(mig.path()).unwrap();
    let report = db
        .migrate(
            targets.clone(),
            &set,
            &MigrateOptions::default(),
            &|_: &TargetReport| {},
        )
        .await
        .unwrap();
    assert_eq!(report.migrations_applied, 1, "{report:#?}");
    let status = db.status(targets, &set).await.unwrap();
    assert_eq!(status[0].state, TargetState::UpToDate, "{status:#?}");
    assert_eq!(status[0].version, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_db_admin_path_refuses_a_server_the_configured_ca_did_not_sign() {
    let c = tls_cluster();
    let id = TenantId::parse("rds-wrongca").unwrap();
    let spec = TenantSpec {
        id: id.clone(),
        tier: Tier::Enterprise,
    };
    let mig = migrations();
    let master = DbSecret {
        engine: "postgres".into(),
        host: "localhost".into(),
        port: c.cluster.port,
        dbname: id.db_name(),
        username: SUPERUSER.into(),
        password: SUPERUSER_PASSWORD.into(),
        schema: None,
    };
    let aws = AwsClients::from_sdk_config(&moto::sdk_config().await);
    aws.secrets
        .create_secret()
        .name(id.db_admin_secret_name())
        .secret_string(serde_json::to_string(&master).unwrap())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create-secret: {e:?}"));
    // The admin URL trusts the right CA for the shared database (its own parameter wins);
    // `[database] sslrootcert`, which the dedicated database's login uses, names another.
    let cfg = rds_config(c, "postgres", &c.other_ca);
    let url = admin_url(
        c,
        "postgres",
        &format!(
            "?sslrootcert={}",
            urlencoding::encode(&c.ca.display().to_string())
        ),
    );
    let db = Database::with_admin_url(&cfg, &url, "the test admin URL", mig.path().to_path_buf())
        .unwrap()
        .with_aws(aws);
    db.admin()
        .connect("tenantctl test")
        .await
        .unwrap_or_else(|e| panic!("the shared database must be reachable: {e:#}"));
    let tenant = DbSecret {
        username: id.db_role(),
        password: TENANT_PASSWORD.into(),
        ..master.clone()
    };
    let err = format!("{:#}", db.provision(&spec, &tenant).await.unwrap_err());
    assert!(
        err.contains(&format!(
            "(secret `tenants/rds-wrongca/db-admin`): the server certificate is not trusted by `sslrootcert` {}",
            c.other_ca.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains(SUPERUSER_PASSWORD) && !err.contains(TENANT_PASSWORD),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The way in on AWS: admin_cidr_blocks / admin_security_group_ids

/// Config check and module validation agree, case by case (one `terraform test` run).
#[test]
fn admin_access_rules_are_the_modules() {
    let cidrs: Vec<Vec<&str>> = [
        "10.20.0.0/24",
        "172.16.0.0/12",
        "192.168.1.1/32",
        "0.0.0.0/1",
        "128.0.0.0/1",
        "10.20.0.5/24",
        "10.0.0.0/0",
        "0.0.0.0/0",
        "10.20.0.0/33",
        "10.20.0.0/08",
        "010.20.0.0/24",
        "10.20.0.0",
        "10.20.0.256/32",
        "256.0.0.0/8",
        "1.2.3/24",
        "1.2.3.4.5/32",
        "a.b.c.d/8",
        "fd00::/8",
        " 10.20.0.0/24",
        "10.20.0.0/24\n",
        "10.20.0.0/-1",
        "",
    ]
    .iter()
    .map(|c| vec![*c])
    .chain([
        vec![],
        vec!["10.0.0.0/8", "192.168.0.0/16"],
        vec!["10.0.0.0/8", "10.0.0.0/8"],
        vec!["10.0.0.0/8", "10.0.0.1/8"],
    ])
    .collect();
    let groups: Vec<Vec<&str>> = [
        "sg-0123456789abcdef0",
        "sg-01234567",
        "sg-0123456",
        "sg-0123456789abcdef",
        "sg-0123456789abcdef01",
        "sg-0123456789ABCDEF0",
        "SG-01234567",
        "sgr-01234567",
        "sg-",
        "sg-01234567 ",
        "",
    ]
    .iter()
    .map(|g| vec![*g])
    .chain([
        vec!["sg-01234567", "sg-89abcdef"],
        vec!["sg-01234567", "sg-01234567"],
    ])
    .collect();
    let list = |items: &[&str]| {
        format!(
            "[{}]",
            items
                .iter()
                .map(|i| hcl_str(i))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut cases = BTreeMap::new();
    for (i, c) in cidrs.iter().enumerate() {
        cases.insert(
            format!("cidr{i:02}"),
            format!("admin_cidr_blocks = {}", list(c)),
        );
    }
    for (i, g) in groups.iter().enumerate() {
        cases.insert(
            format!("sg{i:02}"),
            format!("admin_security_group_ids = {}", list(g)),
        );
    }
    let results = variable_rules(&cases);
    let mut wrong = Vec::new();
    let mut compare = |case: String, items: &[&str], cfg: Config| {
        let (accepted, messages) = &results[&case];
        let rust = cfg.validate();
        if *accepted != rust.is_ok() {
            wrong.push(format!(
                "{items:?}: Terraform accepted={accepted} {messages:?}, tenantctl {rust:?}"
            ));
            return;
        }
        let Err(e) = rust else { return };
        let e = e.to_string();
        // Both name what they refuse (the module JSON-encodes the values).
        let named = |m: &str| {
            items
                .iter()
                .any(|i| m.contains(i.trim()) || m.contains(&hcl_str(i)))
        };
        if !messages.iter().any(|m| named(m)) || !named(&e) {
            wrong.push(format!(
                "{items:?}: a message does not name the value: {messages:?} / {e}"
            ));
        }
    };
    for (i, c) in cidrs.iter().enumerate() {
        let mut cfg = Config::default();
        cfg.database.admin_cidr_blocks = c.iter().map(|s| s.to_string()).collect();
        compare(format!("cidr{i:02}"), c, cfg);
    }
    for (i, g) in groups.iter().enumerate() {
        let mut cfg = Config::default();
        cfg.database.admin_security_group_ids = g.iter().map(|s| s.to_string()).collect();
        compare(format!("sg{i:02}"), g, cfg);
    }
    assert!(
        wrong.is_empty(),
        "the module's admin access rules differ from the config check:\n{}",
        wrong.join("\n")
    );
}

/// The settings reach the tenant module through the JSON tfvars, for enterprise tenants
/// only; Terraform accepts the rendered root and plans the database's security group.
#[test]
fn admin_access_is_rendered_for_enterprise_tenants_only_and_planned() {
    let ws = Workdir::offline();
    ws.edit_config(
        "# sslmode = \"prefer\"",
        "admin_cidr_blocks = [\"10.42.200.0/24\"]\nadmin_security_group_ids = [\"sg-0123456789abcdef0\"]",
    );
    ws.edit_config(
        "create_load_balancer = false",
        "create_load_balancer = false\nhosted_zone_id = \"Z0123456789EXAMPLE\"\ncluster_arn = \"arn:aws:ecs:us-east-1:111122223333:cluster/example\"\nvpc_id = \"vpc-0123456789abcdef0\"\nsubnet_ids = [\"subnet-0123456789abcdef0\", \"subnet-0fedcba9876543210\"]",
    );
    for (id, tier) in [("adm-ent", Tier::Enterprise), ("adm-gro", Tier::Growth)] {
        let spec = TenantSpec {
            id: TenantId::parse(id).unwrap(),
            tier,
        };
        std::fs::write(ws.path().join(format!("tenants/{id}.toml")), spec.to_toml()).unwrap();
    }
    ws.tenantctl(&["render", "--all"]).assert_code(0);
    let tfvars = |id: &str| -> serde_json::Value {
        let p = ws
            .path()
            .join(format!(".tenantctl/roots/{id}/terraform.tfvars.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let ent = &tfvars("adm-ent")["tenants"]["adm-ent"];
    assert_eq!(
        ent["admin_cidr_blocks"],
        serde_json::json!(["10.42.200.0/24"])
    );
    assert_eq!(
        ent["admin_security_group_ids"],
        serde_json::json!(["sg-0123456789abcdef0"])
    );
    let gro = &tfvars("adm-gro")["tenants"]["adm-gro"];
    assert!(
        gro.get("admin_cidr_blocks").is_none() && gro.get("admin_security_group_ids").is_none(),
        "{gro}"
    );

    // Terraform reads the tfvars into the root's types and the module's validation, and
    // plans the database's security group: everything up to the first API call, which
    // goes to the work dir's closed endpoint.
    let root = ws.path().join(".tenantctl/roots/adm-ent");
    let tf = |args: &[&str]| {
        Command::new("terraform")
            .args(args)
            .current_dir(&root)
            .env("TF_CLI_CONFIG_FILE", tf_cli_config())
            .env("CHECKPOINT_DISABLE", "1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("terraform is not on PATH")
    };
    let init = tf(&["init", "-input=false", "-no-color"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let plan = tf(&[
        "plan",
        "-input=false",
        "-lock=false",
        "-refresh=false",
        "-json",
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&plan.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let dump = String::from_utf8_lossy(&plan.stdout).into_owned();
    for l in lines.iter().filter(|l| l["type"] == "diagnostic") {
        let d = &l["diagnostic"];
        let text = format!("{} {}", d["summary"], d["detail"]);
        assert!(
            text.contains("127.0.0.1:9"),
            "not an API call to the closed endpoint: {d:#}"
        );
    }
    assert!(
        lines.iter().any(|l| l["type"] == "planned_change"
            && l["change"]["resource"]["addr"]
                == "module.tenant[\"adm-ent\"].aws_security_group.db[0]"),
        "the database's security group was not planned:\n{dump}"
    );
}

#[test]
fn a_bad_admin_cidr_is_refused_before_anything_is_written() {
    let ws = Workdir::offline();
    ws.edit_config(
        "# sslmode = \"prefer\"",
        "admin_cidr_blocks = [\"10.42.200.7/24\"]",
    );
    let run = ws.tenantctl(&["render", "--all"]);
    run.assert_code(1);
    assert!(
        run.stderr().contains(
            "[database] admin_cidr_blocks: `10.42.200.7/24` is not an IPv4 network in CIDR notation whose address has no host bits set"
        ),
        "{}",
        run.dump()
    );
    assert!(!ws.path().join(".tenantctl/roots").exists());
}
