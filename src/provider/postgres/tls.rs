//! [`ConnectOptions`]: the connection URL, with TLS as its `sslmode` and
//! `sslrootcert` ask (rustls with the ring provider).

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::provider::ProviderError;

/// The TLS connector every connection of a provider uses.
pub(crate) type Tls = MakeRustlsConnect;

/// The URL's `sslmode`, with libpq's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (the default), the certificate not
    /// checked unless `sslrootcert` is given.
    Prefer,
    /// TLS or no connection; the certificate is checked against
    /// `sslrootcert` when given (as libpq does), else not checked.
    Require,
    /// TLS; the server's certificate chains to `sslrootcert`.
    VerifyCa,
    /// TLS; the certificate chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, ProviderError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(ProviderError::new("sslmode must be disable, prefer, require, verify-ca or verify-full")),
        })
    }

    fn postgres(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

/// How a provider reaches PostgreSQL: the connection settings of a URL
/// (`postgres://user:password@host:port/db?sslmode=verify-full&sslrootcert=/etc/ca.pem`)
/// or of a `key=value` string, and the TLS they ask for.
///
/// `sslmode` is `disable`, `prefer` (the default: TLS when the server offers
/// it), `require`, `verify-ca` or `verify-full`, as in libpq; `verify-ca`
/// and `verify-full` need `sslrootcert=<PEM file>`, read when the options
/// are built. Client certificates (`sslcert`, `sslkey`) are not supported.
/// `Debug` shows neither the password nor the URL.
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Tls,
    mode: SslMode,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("ssl_mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Parses `url`, reading the `sslrootcert` file if there is one. The
    /// error never contains the URL (it may hold a password).
    pub fn from_url(url: &str) -> Result<ConnectOptions, ProviderError> {
        let (rest, mode, root) = take_tls_settings(url)?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e| ProviderError::with_source("invalid PostgreSQL URL", e))?;
        let mode = mode.unwrap_or(SslMode::Prefer);
        config.ssl_mode(mode.postgres());
        let verifier = verifier(mode, root.as_deref())?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProviderError::with_source("cannot set up TLS", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(ConnectOptions { config, tls: MakeRustlsConnect::new(client), mode })
    }

    /// The `sslmode` asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Removes `sslmode` and `sslrootcert` from a URL's query or a `key=value`
/// string (tokio-postgres knows neither `verify-*` nor `sslrootcert`).
fn take_tls_settings(url: &str) -> Result<(String, Option<SslMode>, Option<String>), ProviderError> {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: &str| -> Result<bool, ProviderError> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(value)?),
            "sslrootcert" => root = Some(value.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            if !take(key, &value)? {
                kept.push(pair);
            }
        }
        if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if !take(key.trim(), value.trim())? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// The certificate check `mode` asks for.
fn verifier(mode: SslMode, root: Option<&str>) -> Result<Arc<dyn ServerCertVerifier>, ProviderError> {
    let roots = root.map(read_roots).transpose()?;
    let provider = provider();
    let webpki = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ProviderError::with_source("cannot use sslrootcert", e))
    };
    let algorithms = provider.signature_verification_algorithms;
    Ok(match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => webpki(roots)?,
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(ProviderError::new("sslmode=verify-ca and verify-full need sslrootcert=<PEM file>"));
        }
        (_, roots) => Arc::new(Lenient { chain: roots.map(webpki).transpose()?, algorithms }),
    })
}

fn read_roots(path: &str) -> Result<RootCertStore, ProviderError> {
    let mut roots = RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(path).map_err(|e| ProviderError::with_source("cannot read sslrootcert", e))?
    {
        let cert = cert.map_err(|e| ProviderError::with_source("sslrootcert holds an invalid PEM block", e))?;
        roots.add(cert).map_err(|e| ProviderError::with_source("sslrootcert holds an invalid certificate", e))?;
    }
    if roots.is_empty() {
        return Err(ProviderError::new("sslrootcert holds no certificate"));
    }
    Ok(roots)
}

/// The certificate check of every mode but `verify-full` (which is
/// rustls's own): with `chain`, the certificate must lead to a root of
/// `sslrootcert` but the host name is not compared (`verify-ca`, and libpq's
/// `prefer`/`require` with `sslrootcert`); without, it is not checked
/// (`prefer`, `require`). The handshake's signatures are always checked.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        // webpki checks the chain first and the name last: a name error means the chain is good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_the_url() {
        let (rest, mode, root) = take_tls_settings(
            "postgres://u:p@127.0.0.1:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@127.0.0.1:5432/db?application_name=x");
        assert_eq!((mode, root.as_deref()), (Some(SslMode::VerifyFull), Some("/ca.pem")));
        let (rest, mode, root) = take_tls_settings("host=127.0.0.1 sslmode=require user=u").unwrap();
        assert_eq!((rest.as_str(), mode, root), ("host=127.0.0.1 user=u", Some(SslMode::Require), None));
        assert!(take_tls_settings("postgres://h/db?sslmode=allow").is_err());
    }

    #[test]
    fn verification_needs_a_root_certificate() {
        let err = ConnectOptions::from_url("postgres://h/db?sslmode=verify-full").unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
        assert!(ConnectOptions::from_url("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem").is_err());
        let options = ConnectOptions::from_url("postgres://u:hunter2@h/db?sslmode=require").unwrap();
        assert_eq!(options.ssl_mode(), SslMode::Require);
        assert!(!format!("{options:?}").contains("hunter2"));
        let err = ConnectOptions::from_url("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
