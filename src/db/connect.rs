//! Where a connection goes, and connecting with errors that name it.
//!
//! An [`Endpoint`] is a connection config plus where it came from (the admin URL's
//! environment variable, `[database] local_silo`, a tenant's secret), so every error can
//! say which database failed and where its settings live, without ever showing a
//! password: labels are built from host, port, database and user only.

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// A connection target and a human description of its origin.
#[derive(Clone)]
pub struct Endpoint {
    pub config: Config,
    /// e.g. "the admin URL in `TENANTCTL_DATABASE_URL`".
    pub source: String,
}

impl std::fmt::Debug for Endpoint {
    // tokio_postgres::Config's Debug redacts the password too, but the label is what
    // people need to read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({} from {})", self.label(), self.source)
    }
}

impl Endpoint {
    pub fn new(config: Config, source: impl Into<String>) -> Endpoint {
        Endpoint {
            config,
            source: source.into(),
        }
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
        }
    }

    /// The same login on another server (local silo mapping).
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
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // No TLS connector is wired in: sslmode=require fails in the driver with a clear
        // "TLS required" error rather than silently connecting in the clear.
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            // Errors surface on the next query through the client; nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// "cannot connect to PostgreSQL at user@host:port/db (origin): cause".
    pub fn connect_error(&self, e: &tokio_postgres::Error) -> anyhow::Error {
        let hint = if self.config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            "\nhint: tenantctl connects without TLS for now: use sslmode=prefer or disable, or a TLS-terminating proxy"
        } else {
            ""
        };
        anyhow!(
            "cannot connect to PostgreSQL at {} ({}): {}{hint}",
            self.label(),
            self.source,
            describe(e)
        )
    }
}

/// Parses a connection URL or key=value string. The error never quotes the input, which
/// holds a password.
pub fn parse_url(url: &str, source: &str) -> Result<Config> {
    url.parse::<Config>().map_err(|_| {
        anyhow!(
            "{source} is not a valid PostgreSQL connection string\nhint: expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME (percent-encode special characters in the password)"
        )
    })
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
        let cfg = parse_url("postgresql://admin:s3cr%40t@db.internal:6543/app", "`X`").unwrap();
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
}
