//! TLS for signaling (wss): the server's certificate and key from PEM files, and the client's trust
//! (public CAs, plus one given certificate for self-signed deployments). rustls with ring throughout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// Why a certificate, key or TLS setup could not be used. Every message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot read a PEM certificate from {path}: {reason} (pass a PEM file with `-----BEGIN CERTIFICATE-----`)")]
    Certificate {
        /// The file given.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error("cannot read a PEM private key from {path}: {reason} (pass a PKCS#8, PKCS#1 or SEC1 PEM key)")]
    Key {
        /// The file given.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The trusted certificates could not be made into a verifier (none of them usable).
    #[error("cannot verify servers with the trusted certificates: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    /// rustls refused the combination (a key that does not match the certificate, an unsupported algorithm).
    #[error("the TLS setup was refused: {0} (does the key belong to the certificate?)")]
    Config(#[from] rustls::Error),
}

/// The crypto provider: ring, which the tree already builds for WebRTC. Named explicitly so that
/// another crate turning on a second provider can never make the builders ambiguous.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: the server's own first, then intermediates).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Certificate { path: path.to_owned(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// The server side of wss: the certificate chain and private key from PEM files, HTTP/1.1 only
/// (the WebSocket upgrade is an HTTP/1.1 request).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.to_owned(), reason: e.to_string() })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of wss: the public CAs (webpki-roots) and, when given, every certificate in the
/// PEM file `trusted` (a self-signed server certificate, or a private CA).
pub fn client_config(trusted: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let pinned = match trusted {
        Some(path) => load_certs(path)?,
        None => Vec::new(),
    };
    // As anchors, the trusted certificates cover a private CA that signs the server's certificate.
    roots.add_parsable_certificates(pinned.iter().cloned());
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let config =
        rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if pinned.is_empty() {
        config.with_webpki_verifier(webpki)
    } else {
        config.dangerous().with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { webpki, pinned }))
    };
    Ok(Arc::new(config.with_no_client_auth()))
}

/// Verifies as browsers do, and also accepts a server whose certificate is byte for byte one the
/// user chose to trust. Needed because the usual self-signed certificate (`openssl req -x509`) is
/// marked as a CA, and webpki refuses a CA certificate as the server's own (`CaUsedAsEndEntity`).
/// An exact match is a pin, as SSH's known hosts: the name and dates in it are the user's business.
/// The handshake signature is still checked against the certificate, so the server must hold its key.
#[derive(Debug)]
struct PinnedOrWebPki {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => Ok(verified),
            Err(_) if self.pinned.iter().any(|pin| pin.as_ref() == end_entity.as_ref()) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
