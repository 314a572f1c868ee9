//! How a UniFi controller's certificate is trusted: a CA file (which may hold the
//! console's own self-signed certificate), a pinned SHA-256 fingerprint, or nothing at all
//! when the operator explicitly says `insecure_tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cert_sha256 {0:?} is not a SHA-256 fingerprint (64 hex digits, colons optional)")]
    Fingerprint(String),
    #[error("ca_file, cert_sha256 and insecure_tls exclude each other; set one")]
    Conflicting,
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// How the controller's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The usual public roots (a controller behind a publicly trusted certificate).
    PublicRoots,
    CaFile(PathBuf),
    Pinned([u8; 32]),
    Insecure,
}

impl Trust {
    pub fn from_config(
        ca_file: Option<&Path>,
        cert_sha256: Option<&str>,
        insecure: bool,
    ) -> Result<Trust, TlsError> {
        match (ca_file, cert_sha256, insecure) {
            (None, None, false) => Ok(Trust::PublicRoots),
            (Some(path), None, false) => Ok(Trust::CaFile(path.to_path_buf())),
            (None, Some(text), false) => Ok(Trust::Pinned(parse_fingerprint(text)?)),
            (None, None, true) => Ok(Trust::Insecure),
            _ => Err(TlsError::Conflicting),
        }
    }

    /// The rustls config for this trust, or `None` for reqwest's own (public roots).
    pub fn client_config(&self) -> Result<Option<rustls::ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = match self {
            Trust::PublicRoots => return Ok(None),
            Trust::CaFile(path) => Verifier::ca_file(path, provider.clone())?,
            Trust::Pinned(pin) => Verifier {
                policy: Policy::Pinned(*pin),
                provider: provider.clone(),
            },
            Trust::Insecure => Verifier {
                policy: Policy::Any,
                provider: provider.clone(),
            },
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Some(config))
    }
}

/// A SHA-256 fingerprint as people copy it: any case, with or without colons (or
/// spaces), optionally with openssl's `sha256 Fingerprint=` prefix.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let bad = || TlsError::Fingerprint(text.chars().take(120).collect());
    let trimmed = text.trim();
    let hex_part = trimmed
        .rsplit_once('=')
        .map(|(_, rest)| rest)
        .unwrap_or(trimmed);
    let digits: String = hex_part
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| error(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// How [`Verifier`] decides about the controller's certificate.
#[derive(Debug)]
enum Policy {
    /// The CA file's certificates as roots (names checked as usual) and, failing that, a
    /// presented certificate that is byte-for-byte one of them: a console's self-signed
    /// certificate often has CA:TRUE and only an IP as its name, which path validation
    /// refuses as an end-entity certificate, yet it is exactly what the operator trusts.
    CaFile {
        roots: Arc<WebPkiServerVerifier>,
        own: Vec<CertificateDer<'static>>,
    },
    /// Exactly the certificate with this SHA-256 fingerprint (what unpoller offers).
    Pinned([u8; 32]),
    /// `insecure_tls = true`: any certificate.
    Any,
}

/// Checks the certificate by its [`Policy`]; the handshake's signatures are always checked.
#[derive(Debug)]
struct Verifier {
    policy: Policy,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn ca_file(path: &Path, provider: Arc<CryptoProvider>) -> Result<Verifier, TlsError> {
        let certs = load_certificates(path)?;
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(certs.iter().cloned());
        if added == 0 {
            return Err(TlsError::CaFile {
                path: path.to_path_buf(),
                reason: "no certificate in it can be used as a trust anchor".into(),
            });
        }
        let roots = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Verifier {
            policy: Policy::CaFile { roots, own: certs },
            provider,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.policy {
            Policy::CaFile { roots, own } => {
                match roots.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    Ok(verified) => Ok(verified),
                    Err(_) if own.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                        Ok(ServerCertVerified::assertion())
                    }
                    Err(error) => Err(error),
                }
            }
            Policy::Pinned(pin) => {
                let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
                if digest == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::General(format!(
                        "certificate fingerprint {} is not the pinned cert_sha256",
                        fingerprint_text(&digest)
                    )))
                }
            }
            Policy::Any => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `AB:CD:...`, as openssl prints a fingerprint.
pub fn fingerprint_text(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_every_common_spelling() {
        let colons = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let expected = parse_fingerprint(colons).unwrap();
        assert_eq!(expected[0], 0xab);
        for spelling in [
            colons.to_lowercase(),
            colons.replace(':', ""),
            format!("sha256 Fingerprint={colons}"),
            format!("  {}  ", colons.to_lowercase().replace(':', "")),
        ] {
            assert_eq!(
                parse_fingerprint(&spelling).unwrap(),
                expected,
                "{spelling}"
            );
        }
        assert_eq!(fingerprint_text(&expected), colons);
        for bad in ["", "AB:CD", &"G".repeat(64), &format!("{colons}:00")] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_trust_at_a_time() {
        assert_eq!(
            Trust::from_config(None, None, false).unwrap(),
            Trust::PublicRoots
        );
        assert!(matches!(
            Trust::from_config(Some(Path::new("ca.pem")), None, true),
            Err(TlsError::Conflicting)
        ));
        let missing = Trust::CaFile(PathBuf::from("/nonexistent/ca.pem"))
            .client_config()
            .unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/ca.pem"));
    }
}
