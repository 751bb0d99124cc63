//! A throwaway PostgreSQL cluster for the test binary, and work dirs pointed at it.
//!
//! The cluster is started once (initdb + pg_ctl on a free loopback port, in a temp dir)
//! the first time a test asks for it, and stopped by an `atexit` hook when the test
//! binary exits, so nothing depends on a server left running. Each test gets its own
//! database (its "shared database"); roles are cluster-wide, so tests use distinct tenant
//! ids. Password authentication (SCRAM) is on, so tenant logins really are checked.
//!
//! initdb refuses to run as root: then the temp dir is handed to the `postgres` user and
//! initdb/pg_ctl run through `runuser -u postgres --`.
//!
//! A second cluster, [`tls_cluster`], accepts TLS connections only, with a server
//! certificate for `localhost` signed by a CA made at test time (rcgen).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tenantctl::config::Config;
use tenantctl::db::{Database, DbSecret};
use tenantctl::tenant::{TenantId, Tier};
use tenantctl::workspace::TenantSpec;

pub const SUPERUSER: &str = "postgres";
/// The superuser's password: has a quote and a percent sign, so URL encoding is exercised.
pub const SUPERUSER_PASSWORD: &str = "adm'n%pw";

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster of this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let c = Cluster::start(&["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(stop_at_exit);
        }
        c
    })
}

extern "C" fn stop_at_exit() {
    if let Some(c) = CLUSTER.get() {
        c.stop();
    }
}

/// Where initdb and pg_ctl live: PATH first, then Debian's versioned directory.
fn pg_bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = std::fs::canonicalize(&p)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            return dir;
        }
    }
    for v in ["17", "16", "15", "14"] {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    panic!(
        "initdb not found: the database tests start their own PostgreSQL. Install PostgreSQL 15 (e.g. `apt-get install postgresql-15`) so that `initdb` and `pg_ctl` are on PATH"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn postgres_ids() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer into static storage or NULL; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, but there is no `postgres` user to run initdb as"
    );
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

impl Cluster {
    /// initdb + pg_ctl start. `server_opts` are extra `postgres` options (`-c k=v`).
    pub fn start(server_opts: &[&str]) -> Cluster {
        Cluster::start_with(server_opts, |_, _| {})
    }

    /// Like [`start`](Self::start), calling `prepare(dir, data_dir)` between initdb and
    /// the first start (to add files, edit `postgresql.conf` or `pg_hba.conf`).
    pub fn start_with(server_opts: &[&str], prepare: impl FnOnce(&Path, &Path)) -> Cluster {
        let bin = pg_bin_dir();
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        let mut c = Cluster {
            port: 0,
            dir: dir.clone(),
            bin,
            as_postgres,
        };
        let out = c.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                &format!("--pwfile={}", pwfile.display()),
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb failed:\n{}", dump(&out));
        prepare(&dir, &data);
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut opts = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=400",
                dir.display()
            );
            for o in server_opts {
                opts.push(' ');
                opts.push_str(o);
            }
            let out = c.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    dir.join("server.log").to_str().unwrap(),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &opts,
                    "start",
                ],
            );
            if out.status.success() {
                c.port = port;
                return c;
            }
            last = format!(
                "{}\n{}",
                dump(&out),
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        }
        panic!("pg_ctl start failed:\n{last}");
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }

    pub fn stop(&self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// A URL for `user` on `db`, password percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            urlencoding::encode(user),
            urlencoding::encode(password),
            self.port,
            urlencoding::encode(db)
        )
    }

    pub fn admin_url(&self, db: &str) -> String {
        self.url(SUPERUSER, SUPERUSER_PASSWORD, db)
    }

    pub async fn admin(&self, db: &str) -> tokio_postgres::Client {
        connect(&self.admin_url(db)).await
    }

    /// A new, empty database named after `label`, unique in this cluster.
    pub async fn create_database(&self, label: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}_{label}", N.fetch_add(1, Ordering::SeqCst));
        let c = self.admin("postgres").await;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        name
    }
}

/// A cluster that accepts TLS only: `hostssl ... scram-sha-256` for loopback, `hostnossl
/// ... reject` for everything else, a server certificate for DNS name `localhost` only.
pub struct TlsCluster {
    pub cluster: Cluster,
    /// PEM of the CA that signed the server certificate.
    pub ca: PathBuf,
    /// PEM of a CA that signed nothing here: "the wrong CA".
    pub other_ca: PathBuf,
}

static TLS_CLUSTER: OnceLock<TlsCluster> = OnceLock::new();

/// The TLS-only cluster of this test binary, started on first use, stopped at exit.
pub fn tls_cluster() -> &'static TlsCluster {
    TLS_CLUSTER.get_or_init(|| {
        let (ca_pem, issuer) = test_ca("tenantctl test CA");
        let (other_ca_pem, _) = test_ca("tenantctl unrelated CA");
        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let server_cert = params.signed_by(&server_key, &issuer).unwrap();

        let mut files = (PathBuf::new(), PathBuf::new());
        let cluster = Cluster::start_with(
            &["-c", "fsync=off", "-c", "synchronous_commit=off"],
            |dir, data| {
                let cert = dir.join("server.crt");
                let key = dir.join("server.key");
                std::fs::write(&cert, server_cert.pem()).unwrap();
                std::fs::write(&key, server_key.serialize_pem()).unwrap();
                // PostgreSQL refuses a key file others can read, or one it does not own.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
                give_to_postgres(&cert);
                give_to_postgres(&key);
                let ca = dir.join("ca.pem");
                let other = dir.join("other-ca.pem");
                std::fs::write(&ca, &ca_pem).unwrap();
                std::fs::write(&other, &other_ca_pem).unwrap();
                files = (ca, other);

                let conf = data.join("postgresql.conf");
                let mut text = std::fs::read_to_string(&conf).unwrap();
                text.push_str(&format!(
                    "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                    cert.display(),
                    key.display()
                ));
                std::fs::write(&conf, text).unwrap();
                std::fs::write(
                    data.join("pg_hba.conf"),
                    "local     all all              scram-sha-256\n\
                     hostssl   all all 127.0.0.1/32 scram-sha-256\n\
                     hostssl   all all ::1/128      scram-sha-256\n\
                     hostnossl all all 0.0.0.0/0    reject\n\
                     hostnossl all all ::/0         reject\n",
                )
                .unwrap();
            },
        );
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(stop_tls_at_exit);
        }
        TlsCluster {
            cluster,
            ca: files.0,
            other_ca: files.1,
        }
    })
}

extern "C" fn stop_tls_at_exit() {
    if let Some(c) = TLS_CLUSTER.get() {
        c.cluster.stop();
    }
}

/// A self-signed CA: its certificate as PEM, and the issuer that signs with it.
fn test_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// When running as root, the server runs as `postgres` and must own its files.
fn give_to_postgres(path: &Path) {
    if unsafe { libc::geteuid() } == 0 {
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

pub async fn try_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn dump(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A work dir (`tenantctl.toml`, `tenants/`, `migrations/`) whose shared database is a
/// fresh database of the test cluster, with local silos on the same cluster.
pub struct DbWorkDir {
    pub dir: tempfile::TempDir,
    pub dbname: String,
    pub port: u16,
    admin_url: String,
}

impl DbWorkDir {
    /// With the repository's first two example migrations (0001, 0002): tests that add
    /// their own `0003_*.sql` build on these.
    pub async fn new(label: &str) -> DbWorkDir {
        let w = DbWorkDir::empty(label).await;
        for f in ["0001_accounts.sql", "0002_projects.sql"] {
            w.copy_repo_migration(f);
        }
        w
    }

    /// With every migration of the repository's `migrations/`: the schema a new install
    /// gets today (pool keys scoped to the tenant, see 0003).
    pub async fn current(label: &str) -> DbWorkDir {
        let w = DbWorkDir::empty(label).await;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".sql") {
                w.copy_repo_migration(&name);
            }
        }
        w
    }

    /// Copies `migrations/<file>` of the repository into this work dir.
    pub fn copy_repo_migration(&self, file: &str) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(file);
        std::fs::copy(&src, self.migrations().join(file)).unwrap();
    }

    /// With an empty `migrations/`.
    pub async fn empty(label: &str) -> DbWorkDir {
        DbWorkDir::empty_on(cluster(), label).await
    }

    /// On a given cluster (the benchmark starts its own, with default durability).
    pub async fn empty_on(c: &Cluster, label: &str) -> DbWorkDir {
        let dbname = c.create_database(label).await;
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-db-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
        std::fs::write(
            dir.path().join("tenantctl.toml"),
            format!(
                r#"local = true

[database]
admin_url_env = "TENANTCTL_DATABASE_URL"
host = "127.0.0.1"
port = {port}
name = "{dbname}"
migrations_dir = "migrations"
connection_budget = 10
lock_timeout_ms = 5000
statement_timeout_ms = 60000
local_silo = {{ host = "127.0.0.1", port = {port} }}
"#,
                port = c.port
            ),
        )
        .unwrap();
        DbWorkDir {
            dir,
            admin_url: c.admin_url(&dbname),
            dbname,
            port: c.port,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn migrations(&self) -> PathBuf {
        self.path().join("migrations")
    }

    pub fn admin_url(&self) -> String {
        self.admin_url.clone()
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.admin_url()).await
    }

    pub fn write_migration(&self, file: &str, sql: &str) {
        std::fs::write(self.migrations().join(file), sql).unwrap();
    }

    pub fn declare(&self, id: &str, tier: Tier) -> TenantSpec {
        let spec = TenantSpec {
            id: TenantId::parse(id).unwrap(),
            tier,
        };
        std::fs::write(
            self.path().join("tenants").join(format!("{id}.toml")),
            spec.to_toml(),
        )
        .unwrap();
        spec
    }

    pub fn config(&self) -> Config {
        Config::load(&self.path().join("tenantctl.toml")).unwrap()
    }

    /// The library's database handle, with the admin URL given directly (no process-wide
    /// environment changes in a multi-threaded test binary).
    pub fn database(&self) -> Database {
        Database::with_admin_url(
            &self.config(),
            &self.admin_url(),
            "the test admin URL",
            self.migrations(),
        )
        .unwrap()
    }

    /// What Terraform would have written to `tenants/<id>/db`. The password has a quote,
    /// a backslash and a space, to exercise escaping end to end.
    pub fn secret(&self, spec: &TenantSpec) -> DbSecret {
        use rand::Rng;
        let random: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let role = spec.id.pg_name();
        let silo = spec.tier == Tier::Enterprise;
        DbSecret {
            engine: "postgres".into(),
            host: "127.0.0.1".into(),
            port: self.port,
            dbname: if silo {
                role.clone()
            } else {
                self.dbname.clone()
            },
            username: role.clone(),
            password: format!("p'w\\ {random}"),
            schema: (spec.tier == Tier::Growth).then_some(role),
        }
    }

    /// Declares and provisions a tenant through the library; returns its secret.
    pub async fn provision(&self, id: &str, tier: Tier) -> DbSecret {
        let spec = self.declare(id, tier);
        let secret = self.secret(&spec);
        self.database()
            .provision(&spec, &secret)
            .await
            .unwrap_or_else(|e| panic!("provision {id}: {e:#}"));
        secret
    }

    /// Runs the real binary in this work dir with the admin URL in the environment.
    pub fn tenantctl(&self, args: &[&str]) -> Output {
        self.tenantctl_env(args, &[("TENANTCTL_DATABASE_URL", Some(&self.admin_url()))])
    }

    pub fn tenantctl_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("TENANTCTL_DATABASE_URL")
            .env_remove("TENANTCTL_CONFIG")
            .env("NO_COLOR", "1")
            .env("CI", "1");
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.output().expect("run tenantctl")
    }
}

/// The command's output for assertion messages.
pub fn show(args: &[&str], out: &Output) -> String {
    format!("tenantctl {}\n{}", args.join(" "), dump(out))
}

/// Connects with exactly what a secret holds.
pub async fn connect_secret(s: &DbSecret) -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&s.host)
        .port(s.port)
        .dbname(&s.dbname)
        .user(&s.username)
        .password(&s.password);
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {}: {e}", s.username));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// What the application does per request: a transaction with the context set locally
/// (`None`: not set at all), then `sql`. Returns the count in the first column of the
/// first row (or rows affected for statements), or the SQLSTATE of the error.
pub async fn as_tenant(
    c: &tokio_postgres::Client,
    context: Option<&str>,
    sql: &str,
) -> Result<i64, tokio_postgres::error::SqlState> {
    c.batch_execute("BEGIN").await.unwrap();
    let res = async {
        if let Some(ctx) = context {
            c.execute("SELECT set_config('app.current_tenant', $1, true)", &[&ctx])
                .await?;
        }
        if sql.trim_start().to_uppercase().starts_with("SELECT") {
            let row = c.query_one(sql, &[]).await?;
            Ok(row.get::<_, i64>(0))
        } else {
            Ok(c.execute(sql, &[]).await? as i64)
        }
    }
    .await;
    let res: Result<i64, tokio_postgres::Error> = res;
    match res {
        Ok(n) => {
            c.batch_execute("COMMIT").await.unwrap();
            Ok(n)
        }
        Err(e) => {
            c.batch_execute("ROLLBACK").await.unwrap();
            Err(e
                .code()
                .cloned()
                .unwrap_or_else(|| panic!("not a server error: {e}")))
        }
    }
}

/// Like [`connect_secret`], keeping the error (a login that must be refused).
pub async fn try_connect_secret(
    s: &DbSecret,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&s.host)
        .port(s.port)
        .dbname(&s.dbname)
        .user(&s.username)
        .password(&s.password);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
