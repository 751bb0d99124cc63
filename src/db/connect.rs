//! Where a connection goes, and connecting with errors that name it.
//!
//! An [`Endpoint`] is a connection config plus where it came from (the admin URL's
//! environment variable, `[database] local_silo`, a tenant's secret), so every error can
//! say which database failed and where its settings live, without ever showing a
//! password: labels are built from host, port, database and user only.
//!
//! Each endpoint carries its [`TlsSettings`] (libpq's `sslmode`/`sslrootcert`, see
//! [`super::tls`]); [`Endpoint::connect_raw`] connects through rustls accordingly, and
//! [`Endpoint::connect_error`] names the TLS setting when the handshake or the server's
//! certificate is what failed.
//!
//! Admin sessions (the admin URL, a silo's master login: see [`Endpoint::admin_session`])
//! start with `search_path` pinned to [`ADMIN_SEARCH_PATH`], sent as a startup option so
//! it holds from the first statement and wins over per-role and per-database settings.
//! On clusters where PUBLIC may still CREATE in `public` (the default before PostgreSQL
//! 15, kept through upgrades), a tenant can plant `public.pg_has_role(oid, regrole, text)`
//! or another look-alike whose signature matches a call better than the catalog's; an
//! admin session searching `public` would run it with the admin's rights
//! (CVE-2018-1058). With only `pg_catalog` and `pg_temp` (which is never searched for
//! functions or operators) on the path, an unqualified name cannot reach a tenant's
//! object. Tenant logins keep the path their role pins (their own schema).

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::tls::{self, SslMode, TlsSettings, UrlTls};

/// The `search_path` of every admin session: the catalogs, then the session's own
/// temporary schema (listed last so it is never searched first for relations).
pub const ADMIN_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// A connection target and a human description of its origin.
#[derive(Clone)]
pub struct Endpoint {
    pub config: Config,
    /// e.g. "the admin URL in `TENANTCTL_DATABASE_URL`".
    pub source: String,
    /// libpq's sslmode/sslrootcert for this endpoint; the driver's own `ssl_mode` in
    /// `config` is ignored (it is derived from this at connect time).
    pub tls: TlsSettings,
    /// An admin login: sessions start with `search_path` = [`ADMIN_SEARCH_PATH`].
    pub admin: bool,
}

impl std::fmt::Debug for Endpoint {
    // tokio_postgres::Config's Debug redacts the password too, but the label is what
    // people need to read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({} from {})", self.label(), self.source)
    }
}

impl Endpoint {
    /// TLS as the driver config asks (`disable`, `prefer` or `require`, no root
    /// certificate); [`with_tls`](Self::with_tls) sets libpq's full settings.
    pub fn new(config: Config, source: impl Into<String>) -> Endpoint {
        let source = source.into();
        Endpoint {
            tls: TlsSettings::from_driver(&config, &source),
            config,
            source,
            admin: false,
        }
    }

    pub fn with_tls(mut self, tls: TlsSettings) -> Endpoint {
        self.tls = tls;
        self
    }

    /// Marks the endpoint as an admin login (the admin URL, a silo's master login): its
    /// sessions pin `search_path` at connect time. Never for a tenant's login, whose
    /// role pins its own schema.
    pub fn admin_session(mut self) -> Endpoint {
        self.admin = true;
        self
    }

    /// `user@host:port/dbname`, never the password.
    pub fn label(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            c.get_user().unwrap_or("?"),
            host,
            port,
            c.get_dbname().unwrap_or("?")
        )
    }

    pub fn dbname(&self) -> &str {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
    }

    /// The same login on another database of the same server.
    pub fn with_dbname(&self, dbname: &str) -> Endpoint {
        let mut config = self.config.clone();
        config.dbname(dbname);
        Endpoint {
            config,
            source: self.source.clone(),
            tls: self.tls.clone(),
            admin: self.admin,
        }
    }

    /// The same login on another server (local silo mapping), with the same TLS settings.
    pub fn with_server(&self, host: &str, port: u16, dbname: &str) -> Endpoint {
        let mut config = Config::new();
        config.host(host).port(port).dbname(dbname);
        if let Some(user) = self.config.get_user() {
            config.user(user);
        }
        if let Some(pw) = self.config.get_password() {
            config.password(pw);
        }
        if let Some(t) = self.config.get_connect_timeout() {
            config.connect_timeout(*t);
        }
        Endpoint {
            config,
            source: self.source.clone(),
            tls: self.tls.clone(),
            admin: self.admin,
        }
    }

    /// Opens a connection and drives it on its own task. `purpose` becomes the session's
    /// `application_name`, so `pg_stat_activity` shows who holds a lock.
    pub async fn connect(&self, purpose: &str) -> Result<Client> {
        self.connect_raw(purpose)
            .await
            .map_err(|e| self.connect_error(&e))
    }

    /// Like [`connect`](Self::connect), keeping the driver's error so callers can branch
    /// on its SQLSTATE (e.g. a database that does not exist yet).
    pub async fn connect_raw(&self, purpose: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = self.config.clone();
        config.application_name(purpose);
        if self.admin {
            config.options(admin_options(config.get_options()));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // libpq never uses TLS on a Unix-domain socket; the server would refuse it.
        let all_unix = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
            && !config.get_hosts().is_empty();
        let mode = self.tls.effective_mode();
        if mode == SslMode::Disable || all_unix {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            return spawn_connection(&config, NoTls).await;
        }
        config.ssl_mode(self.tls.driver_mode());
        match spawn_connection(&config, self.tls.connector()).await {
            // libpq's prefer: a failed handshake is retried in plaintext (nothing is
            // verified in this mode anyway).
            Err(e) if mode == SslMode::Prefer && tls::is_handshake_failure(&e) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                spawn_connection(&config, NoTls).await
            }
            other => other,
        }
    }

    /// "cannot connect to PostgreSQL at user@host:port/db (origin): cause", where a TLS
    /// cause names the sslmode/sslrootcert setting and where it came from.
    pub fn connect_error(&self, e: &tokio_postgres::Error) -> anyhow::Error {
        let cause = self.tls.explain(e).unwrap_or_else(|| describe(e));
        let hint = self
            .tls
            .hint(e)
            .map(|h| format!("\n{h}"))
            .unwrap_or_default();
        anyhow!(
            "cannot connect to PostgreSQL at {} ({}): {cause}{hint}",
            self.label(),
            self.source,
        )
    }
}

/// The startup `options` of an admin session: whatever the URL asked for, then the pinned
/// `search_path` (the server applies `-c` settings in order, so the last one wins).
fn admin_options(existing: Option<&str>) -> String {
    // Inside `options`, a space separates arguments; the path has none.
    let pin = format!("-c search_path={}", ADMIN_SEARCH_PATH.replace(' ', ""));
    match existing.map(str::trim) {
        Some(o) if !o.is_empty() => format!("{o} {pin}"),
        _ => pin,
    }
}

/// Connects and drives the connection on its own task.
async fn spawn_connection<T>(config: &Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        // Errors surface on the next query through the client; nothing to do here.
        let _ = connection.await;
    });
    Ok(client)
}

/// Parses a connection URL or key=value string: the driver's config, and libpq's
/// `sslmode`/`sslrootcert`, which tokio-postgres cannot read (it refuses `verify-full`).
/// An unknown sslmode is refused by name; otherwise the error never quotes the input, which
/// holds a password.
pub fn parse_url(url: &str, source: &str) -> Result<(Config, UrlTls)> {
    let malformed = || {
        anyhow!(
            "{source} is not a valid PostgreSQL connection string\nhint: expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME (percent-encode special characters in the password)"
        )
    };
    let (rest, tls) = tls::split_url(url).map_err(|e| match e {
        Some(unknown) => anyhow!("{source} has an {unknown}"),
        None => malformed(),
    })?;
    let config = rest.parse::<Config>().map_err(|_| malformed())?;
    Ok((config, tls))
}

/// One line for a tokio-postgres error: the server's message with its SQLSTATE, detail and
/// hint, or the I/O cause of a connection failure. Never includes SQL text.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    // The Display of a non-server error is "error connecting to server: <cause>" etc.;
    // add the source chain (e.g. "Connection refused (os error 111)").
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

/// Adds what was being done to a query error, describing it with [`describe`].
pub trait PgContext<T> {
    fn pg_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> PgContext<T> for std::result::Result<T, tokio_postgres::Error> {
    fn pg_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| anyhow!("{}: {}", what(), describe(&e)))
    }
}

/// Runs a statement whose text must never appear anywhere (it holds a password
/// verifier): on error only the server's message is kept.
pub async fn execute_secret(client: &Client, sql: &str, what: &str) -> Result<()> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => anyhow!("{what}: {} {}", db.code().code(), db.message()),
            None => anyhow!("{what}: the connection was lost"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_never_shows_the_password() {
        let (cfg, _) =
            parse_url("postgresql://admin:s3cr%40t@db.internal:6543/app", "`X`").unwrap();
        let ep = Endpoint::new(cfg, "`X`");
        assert_eq!(ep.label(), "admin@db.internal:6543/app");
        assert!(!format!("{ep:?}").contains("s3cr"));
        let other = ep.with_server("127.0.0.1", 5433, "tenant_a");
        assert_eq!(other.label(), "admin@127.0.0.1:5433/tenant_a");
        assert_eq!(other.config.get_password(), Some(&b"s3cr@t"[..]));
    }

    #[test]
    fn parse_errors_do_not_echo_the_url() {
        let err = parse_url("postgresql://admin:hunter2@host:notaport/db", "`X`")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("`X`"), "{err}");
    }

    #[test]
    fn tls_parameters_are_ours_not_the_drivers() {
        // tokio-postgres alone refuses verify-full; parse_url takes it out first.
        assert!(
            "postgresql://u:pw@h/db?sslmode=verify-full"
                .parse::<Config>()
                .is_err()
        );
        let (cfg, tls) = parse_url(
            "postgresql://admin:hunter2@db.internal/app?sslmode=verify-full&sslrootcert=/etc/rds/global-bundle.pem&application_name=x",
            "`X`",
        )
        .unwrap();
        assert_eq!(tls.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(
            tls.sslrootcert.as_deref(),
            Some(std::path::Path::new("/etc/rds/global-bundle.pem"))
        );
        assert_eq!(cfg.get_password(), Some(&b"hunter2"[..]));
        assert_eq!(cfg.get_application_name(), Some("x"));

        let err = parse_url("postgresql://admin:hunter2@h/db?sslmode=strict", "`X`")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`X` has an unknown sslmode `strict`: expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`"
        );
        let err = parse_url("host=h password='hunter2 sslmode=require", "`X`")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.contains("not a valid PostgreSQL connection string"),
            "{err}"
        );
    }

    #[test]
    fn admin_sessions_pin_search_path_after_the_urls_own_options() {
        assert_eq!(admin_options(None), "-c search_path=pg_catalog,pg_temp");
        assert_eq!(
            admin_options(Some("  ")),
            "-c search_path=pg_catalog,pg_temp"
        );
        assert_eq!(
            admin_options(Some("-c statement_timeout=5s -c search_path=public")),
            "-c statement_timeout=5s -c search_path=public -c search_path=pg_catalog,pg_temp"
        );
        let (cfg, _) = parse_url("postgresql://a:b@h/db", "`X`").unwrap();
        let ep = Endpoint::new(cfg, "`X`").admin_session();
        // Kept across databases and servers (a local silo is the admin login elsewhere).
        for other in [ep.with_dbname("postgres"), ep.with_server("h2", 5433, "t")] {
            assert!(other.admin);
        }
        let (cfg, _) = parse_url("postgresql://a:b@h/db", "`X`").unwrap();
        assert!(!Endpoint::new(cfg, "`X`").admin);
    }

    #[test]
    fn endpoint_keeps_its_tls_settings_across_databases_and_servers() {
        let (cfg, _) = parse_url("postgresql://a:b@h/db", "`X`").unwrap();
        let tls = TlsSettings::new(
            SslMode::VerifyFull,
            "from `[database] sslmode`",
            Some("/ca.pem".into()),
            "from `[database] sslrootcert`",
        );
        let ep = Endpoint::new(cfg, "`X`").with_tls(tls);
        for other in [ep.with_dbname("postgres"), ep.with_server("h2", 5433, "t")] {
            assert_eq!(other.tls.mode(), SslMode::VerifyFull);
            assert_eq!(other.tls.rootcert(), Some(std::path::Path::new("/ca.pem")));
        }
        // Without settings, an endpoint does what the driver config says (its default is
        // prefer).
        let (cfg, _) = parse_url("host=h user=u", "`Y`").unwrap();
        assert_eq!(Endpoint::new(cfg, "`Y`").tls.mode(), SslMode::Prefer);
    }
}
