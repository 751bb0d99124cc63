//! Exports and imports on a real PostgreSQL (and moto's S3): every tier exported and
//! restored into another (or the same id after removal), with neighbours; the files
//! holding exactly the tenant's rows and readable by PostgreSQL's own CSV parser; S3
//! objects under SSE-KMS with the tenant's key, a large table going up in parts; a
//! tampered file, a schema version mismatch and a non-empty target refused with nothing
//! written. The last test runs the commands end to end with Terraform on moto.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use tenantctl::archive::export::export;
use tenantctl::archive::import::import;
use tenantctl::archive::{Encryption, Location, Store, VerificationFailed, encryption_for};
use tenantctl::db::{Database, DbSecret};
use tenantctl::isolation;
use tenantctl::tenant::{TenantId, Tier};
use tenantctl::workspace::TenantSpec;
use tokio_postgres::Client;

use crate::support::postgres::{DbWorkDir, as_tenant, connect_secret, show};

/// Three tables: a foreign-key chain, identity columns, and values whose CSV form needs
/// care (jsonb, bytea, quotes, commas and newlines in text, NULLs, floats, arrays,
/// intervals, timestamps).
const FIXTURE: &str = "
CREATE TABLE ar_accounts (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    email text NOT NULL,
    joined timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE ar_docs (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text NOT NULL,
    account_id bigint NOT NULL,
    body jsonb NOT NULL,
    blob bytea,
    note text,
    score double precision,
    amount numeric(12, 2),
    labels text[],
    ttl interval,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES ar_accounts (tenant_id, id)
);
CREATE TABLE ar_tags (
    tenant_id text NOT NULL,
    doc_id bigint NOT NULL,
    tag text NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, tag),
    FOREIGN KEY (tenant_id, doc_id) REFERENCES ar_docs (tenant_id, id)
);
";

const TABLES: [&str; 3] = ["ar_accounts", "ar_docs", "ar_tags"];

async fn workdir(label: &str) -> DbWorkDir {
    let w = DbWorkDir::empty(label).await;
    w.write_migration("0001_archive_fixture.sql", FIXTURE);
    w
}

struct Tenant {
    spec: TenantSpec,
    secret: DbSecret,
}

async fn provision(w: &DbWorkDir, id: &str, tier: Tier) -> Tenant {
    let secret = w.provision(id, tier).await;
    Tenant {
        spec: w.declare(id, tier),
        secret,
    }
}

impl Tenant {
    fn id(&self) -> &str {
        self.spec.id.as_str()
    }
}

/// `accounts` accounts, two docs each, three tags per doc, written as the tenant.
async fn seed(t: &Tenant, accounts: i64) {
    let c = connect_secret(&t.secret).await;
    let id = t.id();
    for sql in [
        format!(
            "INSERT INTO ar_accounts (tenant_id, email, joined)
             SELECT '{id}', 'u' || g || '@x', timestamptz '2024-02-29 23:59:59.123456+05:30' + g * interval '1 hour'
             FROM generate_series(1, {accounts}) g"
        ),
        format!(
            "INSERT INTO ar_docs (tenant_id, account_id, body, blob, note, score, amount, labels, ttl)
             SELECT '{id}', a.id,
                    jsonb_build_object('n', a.id, 'k', d, 'q', 'it''s \"quoted\",
 with a newline', 'nested', jsonb_build_array(1, 'two', null)),
                    CASE WHEN d = 1 THEN decode(lpad(to_hex(a.id), 8, '0') || '00ff0a0d5c2c22', 'hex') END,
                    CASE WHEN d = 1 THEN 'a, \"b\"' || chr(10) || 'c\\d' WHEN a.id % 3 = 0 THEN '' END,
                    CASE WHEN d = 1 THEN 0.1 * a.id ELSE 1e-300 END,
                    a.id * 1.25,
                    ARRAY['x,y', 'q\"r', NULL, ''],
                    make_interval(days => d, secs => a.id)
             FROM ar_accounts a, generate_series(1, 2) d"
        ),
        format!(
            "INSERT INTO ar_tags (tenant_id, doc_id, tag) SELECT '{id}', d.id, 't' || g FROM ar_docs d, generate_series(1, 3) g"
        ),
    ] {
        as_tenant(&c, Some(id), &sql)
            .await
            .unwrap_or_else(|e| panic!("seed {id}: {e:?}"));
    }
}

/// An admin connection to the tenant's target, and the target's schema.
async fn target(db: &Database, spec: &TenantSpec) -> (Client, String) {
    let target = isolation::of(spec.tier)
        .target(db, spec, None)
        .await
        .unwrap();
    (
        db.connect_target(&target, "test").await.unwrap(),
        target.schema,
    )
}

/// Per table: the tenant's row count and an md5 of its rows without `tenant_id` (which
/// an import under another id rewrites), read as the admin.
async fn content(db: &Database, spec: &TenantSpec) -> Vec<(i64, String)> {
    let (c, schema) = target(db, spec).await;
    c.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let mut out = Vec::new();
    for t in TABLES {
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), '')
                     FROM (SELECT (to_jsonb(x) - 'tenant_id')::text r FROM \"{schema}\".{t} x WHERE x.tenant_id = $1) s"
                ),
                &[&spec.id.as_str()],
            )
            .await
            .unwrap();
        out.push((row.get(0), row.get(1)));
    }
    out
}

/// Loads a file of the export into a temporary table with PostgreSQL's own CSV parser
/// (`HEADER`): the file is readable by any tool. Returns (rows, rows of another tenant).
async fn load_with_postgres(
    c: &Client,
    schema: &str,
    table: &str,
    file: &Path,
    tenant: &str,
) -> (i64, i64) {
    let mut csv = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
        .read_to_end(&mut csv)
        .unwrap();
    let tmp = format!("check_{table}");
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS pg_temp.{tmp}; CREATE TEMP TABLE {tmp} (LIKE \"{schema}\".{table})"
    ))
    .await
    .unwrap();
    let sink = c
        .copy_in(&format!(
            "COPY pg_temp.{tmp} FROM STDIN WITH (FORMAT csv, HEADER true)"
        ))
        .await
        .unwrap();
    use futures::SinkExt;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(csv)).await.unwrap();
    sink.as_mut().finish().await.unwrap();
    let row = c
        .query_one(
            &format!("SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM pg_temp.{tmp}"),
            &[&tenant],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn no_encryption() -> Encryption {
    Encryption {
        sse: "none".into(),
        kms_key_id: None,
        key_source: None,
    }
}

/// An insert as the tenant takes a fresh id from the identity sequence: no collision
/// with the imported rows.
async fn insert_works(t: &Tenant) {
    let c = connect_secret(&t.secret).await;
    let id = t.id();
    assert_eq!(
        as_tenant(
            &c,
            Some(id),
            &format!("INSERT INTO ar_accounts (tenant_id, email) VALUES ('{id}', 'new@x')")
        )
        .await,
        Ok(1),
        "{id}: a new insert after the import"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_export_holds_only_its_tenant_and_restores_into_a_bridge_tenant() {
    let w = workdir("ar-pb").await;
    let db = w.database();
    let src = provision(&w, "ar-pb-src", Tier::Starter).await;
    let neighbour = provision(&w, "ar-pb-nb", Tier::Starter).await;
    let dst = provision(&w, "ar-pb-dst", Tier::Growth).await;
    seed(&neighbour, 30).await;
    seed(&src, 200).await;
    let before = content(&db, &src.spec).await;
    assert_eq!(before[2].0, 1200);
    let neighbour_before = content(&db, &neighbour.spec).await;

    let dir = w.path().join("export");
    let store = Store::Dir(dir.clone());
    let exported = export(&db, &src.spec, &store, no_encryption(), &|_| {})
        .await
        .unwrap();
    let m = &exported.manifest;
    assert_eq!(m.tenant, "ar-pb-src");
    assert_eq!(m.schema_version.as_ref().map(|v| v.version), Some(1));
    assert_eq!(
        m.tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows))
            .collect::<Vec<_>>(),
        [("ar_accounts", 200), ("ar_docs", 400), ("ar_tags", 1200)],
        "parents first, the tenant's rows only"
    );
    let docs = &m.tables[1];
    let types: Vec<(&str, &str)> = docs
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str()))
        .collect();
    assert!(types.contains(&("body", "jsonb")) && types.contains(&("blob", "bytea")));
    assert!(docs.columns[0].sequence, "identity column marked");
    // Every file is what the manifest says and PostgreSQL's CSV parser reads it back:
    // the rows of the tenant, none of the neighbour's.
    let (c, _) = target(&db, &src.spec).await;
    for t in &m.tables {
        let path = dir.join(&t.file);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, t.bytes);
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            t.sha256
        );
        let (rows, foreign) = load_with_postgres(&c, "pool", &t.name, &path, src.id()).await;
        assert_eq!((rows, foreign), (t.rows as i64, 0), "{}", t.name);
    }

    let imported = import(&db, &dst.spec, &store, &|_| {}).await.unwrap();
    assert_eq!(
        imported.tables.iter().map(|t| t.rows).collect::<Vec<_>>(),
        [200, 400, 1200]
    );
    assert_eq!(
        content(&db, &dst.spec).await,
        before,
        "same rows in the bridge"
    );
    assert_eq!(content(&db, &neighbour.spec).await, neighbour_before);
    assert_eq!(content(&db, &src.spec).await, before, "source untouched");
    insert_works(&dst).await;

    // A target that already holds rows is refused, and keeps exactly what it had.
    let after_insert = content(&db, &dst.spec).await;
    let err = format!(
        "{:#}",
        import(&db, &dst.spec, &store, &|_| {}).await.unwrap_err()
    );
    assert!(
        err.contains("tenant `ar-pb-dst` already has rows in `ar_accounts`, `ar_docs`, `ar_tags`")
            && err.contains("empty tenant only"),
        "{err}"
    );
    assert_eq!(content(&db, &dst.spec).await, after_insert);
}

/// The shared moto's S3 and an aws CLI against it.
async fn s3() -> aws_sdk_s3::Client {
    let conf = crate::support::moto::sdk_config().await;
    tenantctl::aws::AwsClients::from_sdk_config(&conf).s3
}

fn aws(args: &[&str]) -> Value {
    let m = crate::support::moto::moto();
    let out = std::process::Command::new("aws")
        .args([
            "--endpoint-url",
            &m.endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("awscli is not installed: `pip install awscli`");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_export_goes_to_s3_under_the_tenants_key_and_restores_into_the_pool() {
    let w = workdir("ar-sp").await;
    let db = w.database();
    let src = provision(&w, "ar-sp-src", Tier::Enterprise).await;
    let neighbour = provision(&w, "ar-sp-nb", Tier::Starter).await;
    let dst = provision(&w, "ar-sp-dst", Tier::Starter).await;
    seed(&neighbour, 20).await;
    seed(&src, 100).await;
    // Large, incompressible rows: the docs file is bigger than one 8 MiB part.
    as_tenant(
        &connect_secret(&src.secret).await,
        Some(src.id()),
        "INSERT INTO ar_docs (tenant_id, account_id, body, blob)
         SELECT 'ar-sp-src', 1, '{}', (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')
                                       FROM generate_series(1, 2000) i)
         FROM generate_series(1, 400) g",
    )
    .await
    .unwrap();
    let before = content(&db, &src.spec).await;
    let neighbour_before = content(&db, &neighbour.spec).await;

    // The tenant's own key, as the tenant module creates it (alias/tenant-<id>).
    let key = aws(&["kms", "create-key", "--description", "ar-sp-src"]);
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    aws(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/tenant-ar-sp-src",
        "--target-key-id",
        &key_id,
    ]);
    let bucket = format!("ar-sp-{}", std::process::id());
    aws(&["s3api", "create-bucket", "--bucket", &bucket]);
    let location =
        Location::parse(&format!("s3://{bucket}/archive/tenants/ar-sp-src/t1/")).unwrap();
    let (sse, enc) = encryption_for(&tenantctl::config::Config::default(), &src.spec);
    assert_eq!(sse.kms_key_id.as_deref(), Some("alias/tenant-ar-sp-src"));
    let client = s3().await;
    let store = Store::open(&location, Some(&client), Some(sse)).unwrap();
    let exported = export(&db, &src.spec, &store, enc, &|_| {}).await.unwrap();
    let m = &exported.manifest;
    assert_eq!(m.encryption.key_source.as_deref(), Some("tenant"));
    assert!(
        m.tables[1].bytes > 8 << 20,
        "the docs file went up in parts: {} bytes",
        m.tables[1].bytes
    );
    // Every object, the manifest included, is under SSE-KMS with the tenant's key.
    let mut files: Vec<String> = m.tables.iter().map(|t| t.file.clone()).collect();
    files.push("manifest.json".into());
    for f in &files {
        let head = aws(&[
            "s3api",
            "head-object",
            "--bucket",
            &bucket,
            "--key",
            &format!("archive/tenants/ar-sp-src/t1/{f}"),
        ]);
        assert_eq!(head["ServerSideEncryption"], "aws:kms", "{f}: {head}");
        let used = head["SSEKMSKeyId"].as_str().unwrap_or_default();
        assert!(
            used.contains(&key_id) || used.contains("alias/tenant-ar-sp-src"),
            "{f}: encrypted under {used}, not the tenant's key {key_id}"
        );
    }
    // An export never overwrites another.
    let err = export(&db, &src.spec, &store, no_encryption(), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds objects"), "{err}");

    let read_store = Store::open(&location, Some(&client), None).unwrap();
    import(&db, &dst.spec, &read_store, &|_| {}).await.unwrap();
    assert_eq!(
        content(&db, &dst.spec).await,
        before,
        "same rows in the pool"
    );
    assert_eq!(content(&db, &neighbour.spec).await, neighbour_before);
    insert_works(&dst).await;
    // The pool tenant sees its rows through row-level security, under its own id.
    let c = connect_secret(&dst.secret).await;
    assert_eq!(
        as_tenant(&c, Some(dst.id()), "SELECT count(*) FROM ar_docs").await,
        Ok(before[1].0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_export_restores_under_the_same_id_after_removal_into_a_silo() {
    let w = workdir("ar-bs").await;
    let db = w.database();
    let t = provision(&w, "ar-bs-t", Tier::Growth).await;
    seed(&t, 150).await;
    let before = content(&db, &t.spec).await;
    let store = Store::Dir(w.path().join("export"));
    export(&db, &t.spec, &store, no_encryption(), &|_| {})
        .await
        .unwrap();
    db.deprovision(&t.spec).await.unwrap();
    // The same id again, now an enterprise tenant.
    let again = provision(&w, "ar-bs-t", Tier::Enterprise).await;
    assert_eq!(content(&db, &again.spec).await[0].0, 0);
    import(&db, &again.spec, &store, &|_| {}).await.unwrap();
    assert_eq!(content(&db, &again.spec).await, before);
    insert_works(&again).await;
    let c = connect_secret(&again.secret).await;
    // The highest imported id is 150; the sequence moved past it.
    assert_eq!(
        as_tenant(
            &c,
            Some("ar-bs-t"),
            "SELECT max(id) FROM ar_accounts WHERE email = 'new@x'"
        )
        .await,
        Ok(151)
    );
}

/// The commands, on a directory: `export --to`, a tampered file refused by `import`
/// with exit 3 before anything is written, `exports` listing the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_file_is_refused_before_anything_is_written() {
    let w = workdir("ar-tamper").await;
    let db = w.database();
    let src = provision(&w, "ar-tm-src", Tier::Growth).await;
    let dst = provision(&w, "ar-tm-dst", Tier::Starter).await;
    seed(&src, 50).await;
    let dir = w.path().join("exp");
    let dir_s = dir.display().to_string();
    let args = ["export", "ar-tm-src", "--to", &dir_s, "--output", "json"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rows"], 50 + 100 + 300, "{json}");
    assert_eq!(json["tables"][1]["table"], "ar_docs");
    assert_eq!(json["encryption"]["sse"], "none");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ar-tm-src: ar_tags (300 rows"), "{stderr}");

    let listed = w.tenantctl(&["exports", "--output", "json"]);
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["tenant"], "ar-tm-src");
    assert_eq!(list[0]["rows"], 450);
    assert_eq!(list[0]["tenant_state"], "declared");
    assert_eq!(list[0]["manifest_sha256"], json["manifest_sha256"]);

    // One row changed inside a validly compressed file: only the sha256 tells.
    let path = dir.join("ar_tags.csv.gz");
    let mut csv = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut csv)
        .unwrap();
    let tampered = csv.replacen(",t1\n", ",t9\n", 1);
    assert_ne!(tampered, csv);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, tampered.as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();

    let args = ["import", "ar-tm-dst", "--from", &dir_s];
    let out = w.tenantctl(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", show(&args, &out));
    assert!(
        stderr.contains("does not match its manifest") && stderr.contains("ar_tags.csv.gz"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ar_docs.csv.gz"),
        "only the bad file is named: {stderr}"
    );
    assert!(
        content(&db, &dst.spec).await.iter().all(|(n, _)| *n == 0),
        "nothing was written"
    );

    // The library refuses it with the typed error before writing too.
    let err = import(&db, &dst.spec, &Store::Dir(dir.clone()), &|_| {})
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<VerificationFailed>().is_some(),
        "{err:#}"
    );

    // A bad location is one clear error naming it, before anything is read.
    let args = ["import", "ar-tm-dst", "--from", "s3://Bad_Bucket/x"];
    let out = w.tenantctl(&args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`Bad_Bucket` is not an S3 bucket name"),
        "{}",
        show(&args, &out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_version_mismatch_is_refused_before_anything_is_written() {
    let w = workdir("ar-ver").await;
    let db = w.database();
    let src = provision(&w, "ar-vr-src", Tier::Growth).await;
    seed(&src, 10).await;
    let store = Store::Dir(w.path().join("exp"));
    export(&db, &src.spec, &store, no_encryption(), &|_| {})
        .await
        .unwrap();
    // A newer release adds a migration; the new tenant is provisioned at version 2.
    w.write_migration(
        "0002_more.sql",
        "ALTER TABLE ar_accounts ADD COLUMN nickname text;",
    );
    let dst = provision(&w, "ar-vr-dst", Tier::Growth).await;
    let err = format!(
        "{:#}",
        import(&db, &dst.spec, &store, &|_| {}).await.unwrap_err()
    );
    assert!(
        err.contains("was taken at schema version 1 (0001_archive_fixture")
            && err.contains("`ar-vr-dst` is at 2 (0002_more"),
        "{err}"
    );
    assert!(content(&db, &dst.spec).await.iter().all(|(n, _)| *n == 0));
    let _ = TenantId::parse("ar-vr-dst").unwrap();
}

/// The commands end to end with Terraform on moto: a starter tenant exported to the
/// archive location (the platform's data bucket) under SSE-KMS, imported into a growth
/// tenant, listed by `exports`, and still listed after the tenant is removed.
#[test]
fn export_to_the_archive_and_import_into_another_tier_end_to_end() {
    use crate::support::{Workdir, e2e_database, postgres::cluster, unique};
    let ws = Workdir::new().with_database();
    let src = unique("ar-e2e-s");
    let dst = unique("ar-e2e-d");
    let neighbour = unique("ar-e2e-n");
    ws.tenantctl(&["add", &src, "--tier", "starter"])
        .assert_code(0);
    ws.tenantctl(&["add", &dst, "--tier", "growth"])
        .assert_code(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt.block_on(cluster().admin(e2e_database()));
    // The tenant's rows and a neighbour's in the same pool tables.
    for (tenant, n) in [(&src, 50), (&neighbour, 10)] {
        rt.block_on(admin.batch_execute(&format!(
            "INSERT INTO pool.accounts (tenant_id, email, name)
             SELECT '{tenant}', 'u' || g || '@x', 'name, \"' || g || '\"' FROM generate_series(1, {n}) g;
             INSERT INTO pool.projects (tenant_id, owner_id, name)
             SELECT tenant_id, id, 'p' || id FROM pool.accounts WHERE tenant_id = '{tenant}';"
        )))
        .unwrap();
    }
    let rows_of = |schema: &str, tenant: &str| -> (i64, String) {
        let r = rt
            .block_on(admin.query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(row(id, email, name, created_at)::text, ',' ORDER BY id)), '')
                     FROM \"{schema}\".accounts WHERE tenant_id = $1"
                ),
                &[&tenant],
            ))
            .unwrap();
        (r.get(0), r.get(1))
    };
    let before = rows_of("pool", &src);

    let export = ws.tenantctl(&["export", &src, "--output", "json"]);
    export.assert_code(0);
    let out: Value = serde_json::from_str(&export.stdout()).unwrap();
    let location = out["location"].as_str().unwrap().to_string();
    let prefix = format!("archive/tenants/{src}/");
    assert!(
        location.starts_with(&format!("s3://tenantctl-local-data/{prefix}")),
        "{}",
        export.dump()
    );
    assert_eq!(
        out["rows"],
        100,
        "the tenant's rows only: {}",
        export.dump()
    );
    assert_eq!(out["encryption"]["key_source"], "aws-managed");
    let key_prefix = location.trim_start_matches("s3://tenantctl-local-data/");
    for f in ["accounts.csv.gz", "projects.csv.gz", "manifest.json"] {
        let head = ws
            .aws(&[
                "s3api",
                "head-object",
                "--bucket",
                "tenantctl-local-data",
                "--key",
                &format!("{key_prefix}{f}"),
            ])
            .unwrap();
        assert_eq!(head["ServerSideEncryption"], "aws:kms", "{f}: {head}");
    }
    let manifest = ws
        .aws(&["s3", "cp", &format!("{location}manifest.json"), "-"])
        .unwrap();
    assert_eq!(manifest["tenant"], src.as_str());
    assert_eq!(manifest["schema_version"]["version"], 3, "{manifest}");

    let import = ws.tenantctl(&["import", &dst, "--from", &location, "--output", "json"]);
    import.assert_code(0);
    let out: Value = serde_json::from_str(&import.stdout()).unwrap();
    assert_eq!(out["rows"], 100, "{}", import.dump());
    let schema = format!("tenant_{dst}");
    assert_eq!(
        rows_of(&schema, &dst),
        before,
        "same accounts in the bridge"
    );
    // The identity sequence moved past the imported ids.
    rt.block_on(admin.batch_execute(&format!(
        "INSERT INTO \"{schema}\".accounts (tenant_id, email, name) VALUES ('{dst}', 'new@x', 'new')"
    )))
    .unwrap();
    // A second import into the now non-empty tenant is refused.
    let again = ws.tenantctl(&["import", &dst, "--from", &location]);
    again.assert_code(1);
    assert!(
        again.stderr().contains("already has rows"),
        "{}",
        again.dump()
    );
    ws.tenantctl(&["verify", &dst]).assert_code(0);

    let listed = ws.tenantctl(&["exports", &src, "--output", "json"]);
    listed.assert_code(0);
    let list: Value = serde_json::from_str(&listed.stdout()).unwrap();
    assert_eq!(list[0]["location"], location.as_str(), "{}", listed.dump());
    assert_eq!(list[0]["tenant_state"], "declared");
    ws.tenantctl(&["remove", &src, "--yes"]).assert_code(0);
    let listed = ws.tenantctl(&["exports"]);
    listed.assert_code(0);
    let line = listed
        .stdout()
        .lines()
        .find(|l| l.starts_with(src.as_str()))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.contains("removed") && line.contains(&location),
        "{}",
        listed.dump()
    );
    rt.block_on(admin.batch_execute(&format!(
        "DELETE FROM pool.projects WHERE tenant_id = '{neighbour}'; DELETE FROM pool.accounts WHERE tenant_id = '{neighbour}';"
    )))
    .unwrap();
}

/// Bad input to the commands is one clear error naming the value and the rule, before
/// any connection or AWS call (the work dir's AWS endpoint is a closed port).
#[test]
fn bad_input_is_refused_before_anything_happens() {
    let ws = crate::support::Workdir::offline();
    for (args, expect) in [
        (vec!["export", "Bad_Id"], "invalid tenant id `Bad_Id`"),
        (
            vec!["import", "Bad_Id", "--from", "x"],
            "invalid tenant id `Bad_Id`",
        ),
        (vec!["exports", "Bad_Id"], "invalid tenant id `Bad_Id`"),
        (
            vec!["export", "acme", "--to", "s3://Bad_Bucket/x"],
            "`Bad_Bucket` is not an S3 bucket name",
        ),
        (
            vec!["import", "acme", "--from", "s3://bucket"],
            "`s3://bucket` names a whole bucket",
        ),
        (
            vec!["import", "acme", "--from", "ftp://host/x"],
            "neither a local directory nor an s3:// location",
        ),
        (vec!["export", "acme"], "unknown tenant `acme`"),
    ] {
        let r = ws.tenantctl(&args);
        r.assert_code(1);
        assert!(r.stderr().contains(expect), "{}", r.dump());
    }
    ws.edit_config("[state]", "[archive]\nprefix = \"/archive\"\n\n[state]");
    let r = ws.tenantctl(&["exports"]);
    r.assert_code(1);
    assert!(
        r.stderr()
            .contains("[archive] prefix: `/archive` is not a key prefix"),
        "{}",
        r.dump()
    );
}
