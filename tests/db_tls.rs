//! TLS to PostgreSQL per libpq's `sslmode`/`sslrootcert`, against a real PostgreSQL 15 that
//! accepts TLS only (`hostnossl ... reject`) and whose certificate names `localhost` only:
//! what verifies, what is refused and how the refusal reads, for the admin URL and for
//! the tenant and silo logins built from secrets.

use std::path::{Path, PathBuf};

use tenantctl::config::Config;
use tenantctl::db::{Database, DbSecret, SslMode};
use tenantctl::tenant::TenantId;
use tokio_postgres::Client;

use crate::support::postgres::{SUPERUSER, SUPERUSER_PASSWORD, TlsCluster, cluster, tls_cluster};

const SOURCE: &str = "the admin URL in `TENANTCTL_DATABASE_URL`";

fn url(port: u16, host: &str, params: &str) -> String {
    format!(
        "postgresql://{}:{}@{host}:{port}/postgres{params}",
        urlencoding::encode(SUPERUSER),
        urlencoding::encode(SUPERUSER_PASSWORD),
    )
}

fn tls_url(c: &TlsCluster, host: &str, params: &str) -> String {
    url(c.cluster.port, host, params)
}

fn database(cfg: &Config, url: &str) -> Database {
    Database::with_admin_url(cfg, url, SOURCE, PathBuf::from("migrations"))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A config as `tenantctl init` (not `--local`) writes it: verify-full by default.
fn remote_config(sslrootcert: Option<&Path>) -> Config {
    let mut cfg = Config::default();
    cfg.database.sslrootcert = sslrootcert.map(Path::to_path_buf);
    cfg
}

async fn admin_connect(cfg: &Config, url: &str) -> Result<Client, String> {
    database(cfg, url)
        .admin()
        .connect("tenantctl test")
        .await
        .map_err(|e| format!("{e:#}"))
}

async fn ssl_in_use(c: &Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The error, checked to hold no form of the admin password.
#[track_caller]
fn no_password(err: String) -> String {
    assert!(!err.contains(SUPERUSER_PASSWORD), "{err}");
    assert!(
        !err.contains(&*urlencoding::encode(SUPERUSER_PASSWORD)),
        "{err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_to_the_certificates_host_name_is_encrypted() {
    let c = tls_cluster();
    let params = format!("?sslmode=verify-full&sslrootcert={}", c.ca.display());
    let client = admin_connect(&remote_config(None), &tls_url(c, "localhost", &params))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ssl_in_use(&client).await);

    // The same from `[database] sslrootcert` with the default sslmode (verify-full).
    let client = admin_connect(&remote_config(Some(&c.ca)), &tls_url(c, "localhost", ""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ssl_in_use(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_naming_sslrootcert() {
    let c = tls_cluster();
    let params = format!("?sslmode=verify-full&sslrootcert={}", c.other_ca.display());
    let err = no_password(
        admin_connect(&remote_config(None), &tls_url(c, "localhost", &params))
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert_eq!(
        err,
        format!(
            "cannot connect to PostgreSQL at postgres@localhost:{}/postgres ({SOURCE}): the server certificate is not trusted by `sslrootcert` {} (sslmode verify-full from {SOURCE})",
            c.cluster.port,
            c.other_ca.display()
        )
    );

    // From the config file, the message says so.
    let err = no_password(
        admin_connect(
            &remote_config(Some(&c.other_ca)),
            &tls_url(c, "localhost", ""),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    );
    assert!(
        err.ends_with(&format!(
            "the server certificate is not trusted by `sslrootcert` {} (sslmode verify-full (the default unless `local = true`); sslrootcert from `[database] sslrootcert`)",
            c.other_ca.display()
        )),
        "{err}"
    );

    // Without `sslrootcert`, the system's roots decide: they do not know the test CA.
    let err = no_password(
        admin_connect(
            &remote_config(None),
            &tls_url(c, "localhost", "?sslmode=verify-full"),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "the server certificate is not trusted by the system root certificates (sslmode verify-full from {SOURCE}; no `sslrootcert` given)\nhint: set `sslrootcert`"
        )) || err.contains("no system root certificates found"),
        "{err}"
    );

    // A missing file is named too, before anything is sent.
    let params = "?sslmode=verify-ca&sslrootcert=/nonexistent/global-bundle.pem";
    let err = no_password(
        admin_connect(&remote_config(None), &tls_url(c, "localhost", params))
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "cannot read `sslrootcert` /nonexistent/global-bundle.pem (sslmode verify-ca from {SOURCE}): No such file"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let c = tls_cluster();
    let params = format!("?sslmode=verify-full&sslrootcert={}", c.ca.display());
    let err = no_password(
        admin_connect(&remote_config(None), &tls_url(c, "127.0.0.1", &params))
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert_eq!(
        err,
        format!(
            "cannot connect to PostgreSQL at postgres@127.0.0.1:{}/postgres ({SOURCE}): the server certificate is for `localhost`, not `127.0.0.1` (sslmode verify-full from {SOURCE} checks the host name)",
            c.cluster.port
        )
    );

    let params = format!("?sslmode=verify-ca&sslrootcert={}", c.ca.display());
    let client = admin_connect(&remote_config(None), &tls_url(c, "127.0.0.1", &params))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ssl_in_use(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_disable_sends_plaintext_which_this_server_refuses() {
    let c = tls_cluster();
    let err = no_password(
        admin_connect(
            &remote_config(None),
            &tls_url(c, "127.0.0.1", "?sslmode=disable"),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    );
    assert!(
        err.contains("pg_hba.conf rejects connection") && err.contains("no encryption"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\nhint: the server accepts only TLS connections and this one was not encrypted (sslmode disable from {SOURCE})"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_without_a_root_certificate_and_checks_one_when_given() {
    let c = tls_cluster();
    let client = admin_connect(
        &remote_config(None),
        &tls_url(c, "127.0.0.1", "?sslmode=require"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(ssl_in_use(&client).await);

    // libpq: with a root certificate file, require checks the chain like verify-ca.
    let params = format!("?sslmode=require&sslrootcert={}", c.other_ca.display());
    let err = no_password(
        admin_connect(&remote_config(None), &tls_url(c, "127.0.0.1", &params))
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "not trusted by `sslrootcert` {} (sslmode require from {SOURCE}, which checks the chain like verify-ca when `sslrootcert` is set)",
            c.other_ca.display()
        )),
        "{err}"
    );
    let params = format!("?sslmode=require&sslrootcert={}", c.ca.display());
    let client = admin_connect(&remote_config(None), &tls_url(c, "127.0.0.1", &params))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ssl_in_use(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_uses_tls_when_offered_and_plaintext_otherwise() {
    let c = tls_cluster();
    let client = admin_connect(
        &remote_config(None),
        &tls_url(c, "127.0.0.1", "?sslmode=prefer"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(ssl_in_use(&client).await);

    // The ordinary test cluster has no certificate: prefer connects in plaintext ...
    let plain = cluster();
    let client = admin_connect(
        &remote_config(None),
        &url(plain.port, "127.0.0.1", "?sslmode=prefer"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!ssl_in_use(&client).await);

    // ... and so does the default of a local config, while require refuses.
    let mut local = Config::default();
    local.local = true;
    let client = admin_connect(&local, &url(plain.port, "127.0.0.1", ""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!ssl_in_use(&client).await);
    let err = no_password(
        admin_connect(
            &remote_config(None),
            &url(plain.port, "127.0.0.1", "?sslmode=require"),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    );
    assert!(
        err.ends_with(&format!(
            "the server does not accept TLS connections (sslmode require from {SOURCE})"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_silo_logins_use_the_database_section() {
    let c = tls_cluster();
    // The admin URL asks for nothing: `[database]` decides for everyone.
    let mut cfg = remote_config(Some(&c.ca));
    cfg.database.sslmode = Some(SslMode::VerifyFull);
    let db = database(&cfg, &tls_url(c, "localhost", ""));
    let admin = db.admin().connect("tenantctl test").await.unwrap();
    let password = "tls 'tenant' pw";
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS tenant_tls_a; CREATE ROLE tenant_tls_a LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        ))
        .await
        .unwrap();
    let secret = DbSecret {
        engine: "postgres".into(),
        host: "localhost".into(),
        port: c.cluster.port,
        dbname: "postgres".into(),
        username: "tenant_tls_a".into(),
        password: password.into(),
        schema: None,
    };

    let tenant = secret
        .endpoint("secret `tenants/tls-a/db`", db.tenant_tls())
        .connect("tenantctl test")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(ssl_in_use(&tenant).await);
    let who: String = tenant
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "tenant_tls_a");

    // A silo tenant's admin login from its `db-admin` secret.
    let silo_admin = DbSecret {
        username: SUPERUSER.into(),
        password: SUPERUSER_PASSWORD.into(),
        ..secret.clone()
    };
    let id = TenantId::parse("tls-a").unwrap();
    let ep = db.silo_admin(&id, Some(&silo_admin)).await.unwrap();
    assert_eq!(ep.tls.mode(), SslMode::VerifyFull);
    let silo = ep.connect("tenantctl test").await.unwrap();
    assert!(ssl_in_use(&silo).await);

    // The same secret with `[database] sslrootcert` naming the wrong CA: refused, and the
    // message says which setting to fix.
    let mut wrong = cfg.clone();
    wrong.database.sslrootcert = Some(c.other_ca.clone());
    let db = database(&wrong, &tls_url(c, "localhost", ""));
    let err = secret
        .endpoint("secret `tenants/tls-a/db`", db.tenant_tls())
        .connect("tenantctl test")
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(!err.contains(password), "{err}");
    assert_eq!(
        err,
        format!(
            "cannot connect to PostgreSQL at tenant_tls_a@localhost:{}/postgres (secret `tenants/tls-a/db`): the server certificate is not trusted by `sslrootcert` {} (sslmode verify-full from `[database] sslmode`; sslrootcert from `[database] sslrootcert`)",
            c.cluster.port,
            c.other_ca.display()
        )
    );
    let err = db
        .silo_admin(&id, Some(&silo_admin))
        .await
        .unwrap()
        .connect("tenantctl test")
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("(secret `tenants/tls-a/db-admin`): the server certificate is not trusted"),
        "{err}"
    );
    no_password(err);
}

/// The binary in a work dir whose `tenantctl.toml` holds `database`, with `url` as the
/// admin URL.
fn run_tenantctl(database: &str, url: &str, args: &[&str]) -> std::process::Output {
    run_tenantctl_in(database, url, args, |_| {})
}

/// Like [`run_tenantctl`], calling `prepare(work_dir)` first, and running from another
/// directory with `--config` (so relative paths must be resolved against the work dir).
fn run_tenantctl_in(
    database: &str,
    url: &str,
    args: &[&str],
    prepare: impl FnOnce(&Path),
) -> std::process::Output {
    let dir = tempfile::Builder::new()
        .prefix("tenantctl-tls-")
        .tempdir()
        .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    prepare(dir.path());
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
    std::fs::write(
        dir.path().join("tenantctl.toml"),
        format!("[database]\n{database}"),
    )
    .unwrap();
    let config = dir.path().join("tenantctl.toml");
    std::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(elsewhere.path())
        .env("TENANTCTL_DATABASE_URL", url)
        .env_remove("TENANTCTL_CONFIG")
        .env("NO_COLOR", "1")
        .env("CI", "1")
        .output()
        .unwrap()
}

#[test]
fn the_cli_names_the_setting_and_refuses_unknown_modes() {
    let c = tls_cluster();
    let good = format!("sslrootcert = \"{}\"\n", c.ca.display());
    let out = run_tenantctl(&good, &tls_url(c, "localhost", ""), &["db", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // A relative `sslrootcert` in the config is relative to the work dir.
    let ca = c.ca.clone();
    let out = run_tenantctl_in(
        "sslrootcert = \"certs/ca.pem\"\n",
        &tls_url(c, "localhost", ""),
        &["db", "status"],
        |dir| {
            std::fs::create_dir_all(dir.join("certs")).unwrap();
            std::fs::copy(&ca, dir.join("certs/ca.pem")).unwrap();
        },
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let wrong = format!("sslrootcert = \"{}\"\n", c.other_ca.display());
    let out = run_tenantctl(&wrong, &tls_url(c, "localhost", ""), &["db", "status"]);
    let stderr = no_password(String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the server certificate is not trusted by `sslrootcert` {} (sslmode verify-full (the default unless `local = true`); sslrootcert from `[database] sslrootcert`)",
            c.other_ca.display()
        )),
        "{stderr}"
    );

    let out = run_tenantctl(
        "sslmode = \"verify_full\"\n",
        &tls_url(c, "localhost", ""),
        &["db", "status"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown sslmode `verify_full`: expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`"),
        "{stderr}"
    );

    let out = run_tenantctl(
        &good,
        &tls_url(c, "localhost", "?sslmode=on"),
        &["db", "status"],
    );
    let stderr = no_password(String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{SOURCE} has an unknown sslmode `on`: expected one of"
        )),
        "{stderr}"
    );
}

/// A listener on loopback that answers the first connection's TLS request with `S` and
/// then garbage (a broken TLS server), and relays every later connection to `to`.
async fn broken_tls_then_relay(to: u16) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut first = true;
        // Bounded: the test makes at most a few connections.
        for _ in 0..4 {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if std::mem::take(&mut first) {
                let mut request = [0u8; 8];
                if client.read_exact(&mut request).await.is_ok() {
                    let _ = client.write_all(b"SHTTP/1.1 400 Bad Request\r\n\r\n").await;
                }
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plaintext_when_the_handshake_fails_and_require_does_not() {
    let plain = cluster();
    let port = broken_tls_then_relay(plain.port).await;
    let client = admin_connect(
        &remote_config(None),
        &url(port, "127.0.0.1", "?sslmode=prefer"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!ssl_in_use(&client).await);

    let port = broken_tls_then_relay(plain.port).await;
    let err = no_password(
        admin_connect(
            &remote_config(None),
            &url(port, "127.0.0.1", "?sslmode=require"),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    );
    assert!(
        err.contains(": TLS handshake failed: ")
            && err.ends_with(&format!("(sslmode require from {SOURCE})")),
        "{err}"
    );
}
