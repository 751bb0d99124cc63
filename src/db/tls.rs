//! TLS to PostgreSQL with libpq's `sslmode` and `sslrootcert`.
//!
//! tokio-postgres only knows `disable`, `prefer` and `require`, and verifies nothing
//! itself: verification belongs to the TLS connector. So tenantctl takes `sslmode` and
//! `sslrootcert` out of the admin URL ([`split_url`]) or `[database]` in the config, keeps
//! them with the endpoint as [`TlsSettings`] (together with where each came from), asks the
//! driver for `require` whenever TLS is needed, and checks the server's certificate in a
//! rustls verifier that does what libpq's mode asks for:
//!
//! | sslmode | TLS | chain checked against | host name checked |
//! |---|---|---|---|
//! | `disable` | never | | |
//! | `prefer` | if the server offers it, else plaintext | nothing | no |
//! | `require` | always | nothing (`sslrootcert` given: as `verify-ca`, as libpq does) | no |
//! | `verify-ca` | always | `sslrootcert`, else the system roots | no |
//! | `verify-full` | always | `sslrootcert`, else the system roots | yes |
//!
//! Defaults: `prefer` when the config says `local = true` (a local PostgreSQL rarely has a
//! certificate), `verify-full` otherwise. `[database] sslmode`/`sslrootcert` set tenant and
//! silo connections and are the default for the admin URL, whose own parameters win.
//!
//! Root certificates come from a PEM file the operator put in place (for Amazon RDS, the
//! downloaded `global-bundle.pem`); nothing is downloaded at run time. Without one, verify-*
//! modes use the operating system's trust store through `rustls-native-certs`, the store
//! the AWS SDK in this binary already trusts, which honours `SSL_CERT_FILE`/`SSL_CERT_DIR`
//! and follows the distribution's CA updates without a rebuild (a compiled-in list such as
//! `webpki-roots` would need one, and would ignore a CA an operator added to the system).
//!
//! Every TLS failure becomes one line naming the setting and where it came from, so the
//! reader knows which file or URL parameter to change; a password never appears.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::Socket;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Config;

/// libpq's `sslmode` values tenantctl supports (`allow` is not one: it only ever adds
/// TLS after a plaintext attempt failed, which no server here needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: it negotiates TLS, the verifier judges the certificate.
    fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` value that is not one of [`SslMode::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown sslmode `{0}`: expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`"
)]
pub struct UnknownSslMode(pub String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(s: &str) -> Result<SslMode, UnknownSslMode> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownSslMode(s.to_string()))
    }
}

impl Serialize for SslMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SslMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SslMode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `sslmode` and `sslrootcert` as a connection URL gave them (either may be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlTls {
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a libpq URL (`postgresql://...?sslmode=...`) or
/// keyword/value string (`host=... sslmode=...`), returning the rest for
/// `tokio_postgres::Config` and what was taken. `Err(None)` means the string is malformed
/// (the caller says so without quoting it: it holds a password); `Err(Some(e))` an unknown
/// sslmode, which is safe to name.
pub fn split_url(url: &str) -> Result<(String, UrlTls), Option<UnknownSslMode>> {
    let mut tls = UrlTls::default();
    let mut take = |key: &str, value: &str| -> Result<bool, Option<UnknownSslMode>> {
        match key {
            "sslmode" => {
                tls.sslmode = Some(value.parse().map_err(Some)?);
                Ok(true)
            }
            "sslrootcert" => {
                // libpq treats an empty value as not set.
                tls.sslrootcert = (!value.is_empty()).then(|| PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = match ["postgresql://", "postgres://"]
        .into_iter()
        .find(|p| url.starts_with(p))
    {
        Some(prefix) => {
            // Where tokio-postgres looks for the query: after the first `@` (credentials
            // end there), at the first `?`.
            let body = &url[prefix.len()..];
            let query_from = body.find('@').map_or(0, |at| at + 1);
            match body[query_from..].find('?') {
                None => url.to_string(),
                Some(q) => {
                    let head = &body[..query_from + q];
                    let mut kept = Vec::new();
                    for pair in body[query_from + q + 1..].split('&') {
                        let taken = match pair.split_once('=') {
                            Some((k, v)) => {
                                let k = urlencoding::decode(k).map_err(|_| None)?;
                                let v = urlencoding::decode(v).map_err(|_| None)?;
                                take(&k, &v)?
                            }
                            None => false,
                        };
                        if !taken {
                            kept.push(pair);
                        }
                    }
                    if kept.is_empty() {
                        format!("{prefix}{head}")
                    } else {
                        format!("{prefix}{head}?{}", kept.join("&"))
                    }
                }
            }
        }
        None => {
            let mut kept = Vec::new();
            for (k, v) in keyword_values(url).ok_or(None)? {
                if !take(k, &v)? {
                    let quoted = v.replace('\\', "\\\\").replace('\'', "\\'");
                    kept.push(format!("{k}='{quoted}'"));
                }
            }
            kept.join(" ")
        }
    };
    Ok((rest, tls))
}

/// libpq's keyword/value syntax as tokio-postgres reads it: `key = value` pairs separated
/// by white space, values bare or in single quotes, `\` escaping the next character.
fn keyword_values(s: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_whitespace() || c == '=')?;
        let key = &rest[..end];
        rest = rest[end..].trim_start().strip_prefix('=')?.trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut consumed = rest.len();
        let mut closed = !quoted;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?.1),
                '\'' if quoted => {
                    consumed = i + 1;
                    closed = true;
                    break;
                }
                c if !quoted && c.is_whitespace() => {
                    consumed = i;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed || (!quoted && value.is_empty()) || key.is_empty() {
            return None;
        }
        out.push((key, value));
        rest = rest[consumed..].trim_start();
    }
    Some(out)
}

/// The TLS settings of one endpoint, with where they came from (for error messages). Clones
/// share the rustls configuration, built once on first use (so the fields are read-only
/// once built: a changed copy is made with [`new`](Self::new)).
#[derive(Clone)]
pub struct TlsSettings {
    mode: SslMode,
    /// PEM file of the certificate authorities to trust.
    rootcert: Option<PathBuf>,
    /// How the mode was chosen, read after "sslmode verify-full": e.g. "from the admin URL
    /// in `TENANTCTL_DATABASE_URL`", "from `[database] sslmode`", "(the default unless
    /// `local = true`)".
    mode_origin: String,
    /// Where `rootcert` was set, in the same form.
    rootcert_origin: String,
    connector: Arc<OnceLock<Result<MakeRustlsConnect, TlsSetupError>>>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSettings({})", self.setting())
    }
}

impl TlsSettings {
    pub fn new(
        mode: SslMode,
        mode_origin: impl Into<String>,
        rootcert: Option<PathBuf>,
        rootcert_origin: impl Into<String>,
    ) -> TlsSettings {
        TlsSettings {
            mode,
            rootcert,
            mode_origin: mode_origin.into(),
            rootcert_origin: rootcert_origin.into(),
            connector: Arc::default(),
        }
    }

    /// The sslmode as configured (see [`effective_mode`](Self::effective_mode)).
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    pub fn rootcert(&self) -> Option<&Path> {
        self.rootcert.as_deref()
    }

    /// What a bare tokio-postgres config asks for (its `disable`, `prefer` or `require`),
    /// with no root certificate: the behaviour of an endpoint built without settings.
    pub fn from_driver(config: &tokio_postgres::Config, source: &str) -> TlsSettings {
        use tokio_postgres::config::SslMode as D;
        let mode = match config.get_ssl_mode() {
            D::Disable => SslMode::Disable,
            D::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        };
        TlsSettings::new(mode, format!("from {source}"), None, "")
    }

    /// Tenant and silo connections: `[database] sslmode`/`sslrootcert`, else the default
    /// (`prefer` with `local = true`, `verify-full` otherwise).
    pub fn for_tenants(cfg: &Config) -> TlsSettings {
        let (mode, origin) = match cfg.database.sslmode {
            Some(m) => (m, "from `[database] sslmode`"),
            None if cfg.local => (SslMode::Prefer, "(the default with `local = true`)"),
            None => (SslMode::VerifyFull, "(the default unless `local = true`)"),
        };
        TlsSettings::new(
            mode,
            origin,
            cfg.database.sslrootcert.clone(),
            "from `[database] sslrootcert`",
        )
    }

    /// The admin connection: the URL's own parameters win, `[database]` and the default
    /// fill in the rest.
    pub fn for_admin(cfg: &Config, url: &UrlTls, source: &str) -> TlsSettings {
        let mut tls = TlsSettings::for_tenants(cfg);
        if let Some(mode) = url.sslmode {
            tls.mode = mode;
            tls.mode_origin = format!("from {source}");
        }
        if let Some(root) = &url.sslrootcert {
            tls.rootcert = Some(root.clone());
            tls.rootcert_origin = format!("from {source}");
        }
        tls
    }

    /// The mode in force: libpq checks the chain in `require` mode when a root certificate
    /// file is given, exactly as in `verify-ca`.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.rootcert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (m, _) => m,
        }
    }

    pub(crate) fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        self.effective_mode().driver_mode()
    }

    /// "sslmode verify-full from the admin URL in `X`", for messages.
    pub fn setting(&self) -> String {
        let mut s = format!("sslmode {} {}", self.mode, self.mode_origin);
        if self.mode == SslMode::Require && self.rootcert.is_some() {
            s.push_str(", which checks the chain like verify-ca when `sslrootcert` is set");
        }
        s
    }

    fn context(&self) -> String {
        match &self.rootcert {
            Some(_) if self.rootcert_origin != self.mode_origin => {
                format!("{}; sslrootcert {}", self.setting(), self.rootcert_origin)
            }
            _ => self.setting(),
        }
    }

    /// The connector for tokio-postgres, built on first use and shared by clones.
    pub(crate) fn connector(&self) -> Connector {
        Connector(self.connector.get_or_init(|| self.build()).clone())
    }

    fn build(&self) -> Result<MakeRustlsConnect, TlsSetupError> {
        let mode = self.effective_mode();
        let roots = match (mode, &self.rootcert) {
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => None,
            (_, Some(path)) => Some(self.load_rootcert(path)?),
            (_, None) => Some(self.system_roots()?),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = ModeVerifier {
            roots: roots.map(Arc::new),
            check_name: mode == SslMode::VerifyFull,
            algs: provider.signature_verification_algorithms,
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    fn load_rootcert(&self, path: &Path) -> Result<RootCertStore, TlsSetupError> {
        let what = rootcert_named(path);
        let pem = std::fs::read(path)
            .map_err(|e| TlsSetupError(format!("cannot read {what} ({}): {e}", self.context())))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                TlsSetupError(format!(
                    "{what} is not a PEM file ({}): {e}",
                    self.context()
                ))
            })?;
            roots.add(cert).map_err(|e| {
                TlsSetupError(format!(
                    "{what} holds a certificate rustls cannot use ({}): {e}",
                    self.context()
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(TlsSetupError(format!(
                "{what} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`) ({})",
                self.context()
            )));
        }
        Ok(roots)
    }

    fn system_roots(&self) -> Result<RootCertStore, TlsSetupError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            return Err(TlsSetupError(format!(
                "no system root certificates found for {} (no `sslrootcert` given)\nhint: set `sslrootcert` to the CA bundle that signed the server's certificate (for Amazon RDS, the downloaded `global-bundle.pem`)",
                self.setting()
            )));
        }
        Ok(roots)
    }

    /// One line for a connection failure caused by TLS, naming the setting; `None` when
    /// TLS is not the cause.
    pub fn explain(&self, e: &tokio_postgres::Error) -> Option<String> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(c) = cause {
            if let Some(setup) = c.downcast_ref::<TlsSetupError>() {
                return Some(setup.0.clone());
            }
            if let Some(r) = rustls_error(c) {
                return Some(self.explain_rustls(r));
            }
            if e.to_string() == "error performing TLS handshake"
                && c.to_string() == "server does not support TLS"
            {
                return Some(format!(
                    "the server does not accept TLS connections ({})",
                    self.setting()
                ));
            }
            cause = c.source();
        }
        None
    }

    /// A hint for a server that refused a connection because it was not encrypted.
    pub fn hint(&self, e: &tokio_postgres::Error) -> Option<String> {
        let db = e.as_db_error()?;
        let plaintext = db.code()
            == &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && db.message().contains("no encryption");
        plaintext.then(|| {
            format!(
                "hint: the server accepts only TLS connections and this one was not encrypted ({}): use sslmode=verify-full (or require)",
                self.setting()
            )
        })
    }

    fn explain_rustls(&self, e: &rustls::Error) -> String {
        let rustls::Error::InvalidCertificate(cert) = e else {
            return format!("TLS handshake failed: {e} ({})", self.context());
        };
        match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                match &self.rootcert {
                    Some(path) => format!(
                        "the server certificate is not trusted by {} ({})",
                        rootcert_named(path),
                        self.context()
                    ),
                    None => format!(
                        "the server certificate is not trusted by the system root certificates ({}; no `sslrootcert` given)\nhint: set `sslrootcert` to the CA bundle that signed it (for Amazon RDS, the downloaded `global-bundle.pem`)",
                        self.setting()
                    ),
                }
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => {
                let names: Vec<String> = presented.iter().map(|p| presented_name(p)).collect();
                let is_for = if names.is_empty() {
                    "names no host".to_string()
                } else {
                    format!("is for {}", names.join(", "))
                };
                format!(
                    "the server certificate {is_for}, not `{}` ({} checks the host name)",
                    server_name(expected),
                    self.setting()
                )
            }
            CertificateError::NotValidForName => format!(
                "the server certificate is not valid for the host name connected to ({} checks the host name)",
                self.setting()
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the server certificate has expired ({})", self.context())
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the server certificate is not valid yet ({})",
                    self.context()
                )
            }
            other => format!(
                "the server certificate was rejected: {other} ({})",
                self.context()
            ),
        }
    }
}

fn rootcert_named(path: &Path) -> String {
    format!("`sslrootcert` {}", path.display())
}

/// The rustls error inside a connection error's cause, if any (tokio-rustls wraps it in an
/// `io::Error`, whose `source()` skips it, hence `get_ref`).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

/// Whether a failed connection failed in the TLS handshake (for `prefer`'s fallback).
pub(crate) fn is_handshake_failure(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if rustls_error(c).is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// webpki lists presented names as `DnsName("localhost")` / `IpAddress(127.0.0.1)`.
fn presented_name(p: &str) -> String {
    let inner = p
        .strip_prefix("DnsName(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .or_else(|| {
            p.strip_prefix("IpAddress(")
                .and_then(|s| s.strip_suffix(')'))
        })
        .unwrap_or(p);
    format!("`{inner}`")
}

fn server_name(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// Setting up TLS failed before any byte was sent (unreadable `sslrootcert`, no system
/// roots). Travels through tokio-postgres as the connector's error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(String);

/// tokio-postgres's `MakeTlsConnect`: the rustls connector, or why there is none.
#[derive(Clone)]
pub(crate) struct Connector(Result<MakeRustlsConnect, TlsSetupError>);

impl MakeTlsConnect<Socket> for Connector {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
    type Error = TlsSetupError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, TlsSetupError> {
        match &mut self.0 {
            Ok(inner) => match MakeTlsConnect::<Socket>::make_tls_connect(inner, domain) {
                Ok(c) => Ok(c),
                Err(never) => match never {},
            },
            Err(e) => Err(e.clone()),
        }
    }
}

/// Checks the server certificate as the mode asks: nothing (`prefer`, `require`), the chain
/// (`verify-ca`), the chain and the host name (`verify-full`). The handshake's signatures
/// are always checked against the presented key, as OpenSSL does for libpq.
#[derive(Debug)]
struct ModeVerifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ModeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algs.all,
            )?;
            if self.check_name {
                verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, UrlTls) {
        split_url(url).unwrap_or_else(|e| panic!("{url}: {e:?}"))
    }

    #[test]
    fn url_parameters_are_taken_out() {
        let (rest, tls) = split(
            "postgresql://admin:p%40ss@db.example.com:5432/app?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Frds%20bundle.pem",
        );
        assert_eq!(
            rest,
            "postgresql://admin:p%40ss@db.example.com:5432/app?connect_timeout=5"
        );
        assert_eq!(tls.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(
            tls.sslrootcert.as_deref(),
            Some(Path::new("/etc/ssl/rds bundle.pem"))
        );
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(
            cfg.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );

        let (rest, tls) = split("postgres://u@h/db?sslmode=verify-ca");
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(tls.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(tls.sslrootcert, None);

        let (rest, tls) = split("postgresql://u:pw@h/db");
        assert_eq!(rest, "postgresql://u:pw@h/db");
        assert_eq!(tls, UrlTls::default());

        // A `?` in a (percent-encoded or not) password is not the query.
        let (rest, tls) = split("postgresql://u:a?sslmode=disable@h/db?sslmode=require");
        assert_eq!(rest, "postgresql://u:a?sslmode=disable@h/db");
        assert_eq!(tls.sslmode, Some(SslMode::Require));
    }

    #[test]
    fn keyword_value_parameters_are_taken_out() {
        let (rest, tls) = split(
            "host=localhost port=5433 user=admin password='it\\'s a \\\\ secret' sslmode = verify-full sslrootcert='/ca dir/ca.pem' dbname=app",
        );
        assert_eq!(tls.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(
            tls.sslrootcert.as_deref(),
            Some(Path::new("/ca dir/ca.pem"))
        );
        assert!(!rest.contains("ssl"), "{rest}");
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&b"it's a \\ secret"[..]));
        assert_eq!(cfg.get_dbname(), Some("app"));
        assert_eq!(cfg.get_ports(), &[5433]);

        let (rest, _) = split("host=h password=a\\ b");
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&b"a b"[..]));

        assert!(matches!(split_url("host=h password='open"), Err(None)));
    }

    #[test]
    fn unknown_sslmode_is_refused_by_name() {
        for url in [
            "postgresql://admin:hunter2@h/db?sslmode=verify_full",
            "host=h password=hunter2 sslmode=verify_full",
        ] {
            let err = split_url(url).unwrap_err().expect("an unknown sslmode");
            let msg = err.to_string();
            assert!(msg.contains("`verify_full`"), "{msg}");
            assert!(
                msg.contains("`verify-full`") && msg.contains("`disable`"),
                "{msg}"
            );
            assert!(!msg.contains("hunter2"), "{msg}");
        }
        assert_eq!("allow".parse::<SslMode>().unwrap_err().0, "allow");
    }

    #[test]
    fn defaults_and_precedence() {
        let mut cfg = Config::default();
        let t = TlsSettings::for_tenants(&cfg);
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert!(t.setting().contains("the default unless `local = true`"));

        cfg.local = true;
        assert_eq!(TlsSettings::for_tenants(&cfg).mode, SslMode::Prefer);

        cfg.database.sslmode = Some(SslMode::VerifyCa);
        cfg.database.sslrootcert = Some("/cfg/ca.pem".into());
        let admin = TlsSettings::for_admin(&cfg, &UrlTls::default(), "the admin URL in `X`");
        assert_eq!(admin.mode, SslMode::VerifyCa);
        assert_eq!(
            admin.setting(),
            "sslmode verify-ca from `[database] sslmode`"
        );

        let url = UrlTls {
            sslmode: Some(SslMode::Require),
            sslrootcert: None,
        };
        let admin = TlsSettings::for_admin(&cfg, &url, "the admin URL in `X`");
        assert_eq!(admin.mode, SslMode::Require);
        assert_eq!(admin.rootcert.as_deref(), Some(Path::new("/cfg/ca.pem")));
        // libpq: require with a root certificate checks the chain.
        assert_eq!(admin.effective_mode(), SslMode::VerifyCa);
        assert!(
            admin
                .context()
                .contains("sslrootcert from `[database] sslrootcert`")
        );
    }

    #[test]
    fn presented_names_are_readable() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), "`localhost`");
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), "`10.0.0.1`");
        assert_eq!(
            server_name(&ServerName::try_from("127.0.0.1").unwrap()),
            "127.0.0.1"
        );
    }
}
