//! TLS in front of any loopback server: a fresh CA, a leaf certificate for 127.0.0.1 signed
//! by it, and a proxy that terminates TLS and passes the bytes to the plain backend. Tests
//! of certificate checks use it in front of a mockup server, as a BMC with a real chain.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// A server TLS config (HTTP/1.1) presenting `cert_der` with its PKCS#8 key; panics,
/// naming `who`, when rustls refuses them.
pub fn http_server_config(
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    who: &str,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder.with_no_client_auth().with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert_der)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )
        })
        .unwrap_or_else(|error| panic!("{who}: cannot build the TLS config: {error}"));
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(tls)
}

/// A fresh CA and a leaf certificate for 127.0.0.1 it signed, valid from yesterday for 30
/// days: what a loopback server needs to speak TLS to clients that trust only that CA.
pub struct LoopbackPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    /// The leaf's private key, PKCS#8.
    pub leaf_key_pem: String,
    pub leaf_key_der: Vec<u8>,
}

impl LoopbackPki {
    /// Makes them, with `ca_name` as the CA's common name. Panics when rcgen cannot.
    pub fn new(ca_name: &str) -> LoopbackPki {
        let fail = |error: rcgen::Error| -> ! { panic!("cannot make certificates: {error}") };
        let now = time::OffsetDateTime::now_utc();
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| fail(e));
        let mut ca_params = rcgen::CertificateParams::default();
        let mut ca_dn = rcgen::DistinguishedName::new();
        ca_dn.push(rcgen::DnType::CommonName, ca_name);
        ca_params.distinguished_name = ca_dn;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.not_before = now - time::Duration::days(1);
        ca_params.not_after = now + time::Duration::days(30);
        let ca = ca_params.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
        let leaf_key = rcgen::KeyPair::generate().unwrap_or_else(|e| fail(e));
        let mut leaf_params = rcgen::CertificateParams::default();
        leaf_params.subject_alt_names =
            vec![rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        let mut leaf_dn = rcgen::DistinguishedName::new();
        leaf_dn.push(rcgen::DnType::CommonName, "127.0.0.1");
        leaf_params.distinguished_name = leaf_dn;
        leaf_params.not_before = now - time::Duration::days(1);
        leaf_params.not_after = now + time::Duration::days(30);
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .unwrap_or_else(|e| fail(e));
        LoopbackPki {
            ca_pem: ca.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            leaf_key_pem: leaf_key.serialize_pem(),
            leaf_key_der: leaf_key.serialize_der(),
        }
    }
}

/// A TLS-terminating proxy on `127.0.0.1:<free port>`; stopped on drop.
pub struct TlsFront {
    addr: SocketAddr,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// Serves TLS for `backend` (plain TCP on loopback). Panics when it cannot.
    pub async fn start(backend: SocketAddr) -> TlsFront {
        let pki = LoopbackPki::new("metal test BMC CA");
        let tls = http_server_config(pki.leaf_der.clone(), pki.leaf_key_der.clone(), "TLS front");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|error| panic!("TLS front: cannot bind a loopback port: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("TLS front: no local address: {error}"));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let Ok(mut client) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        TlsFront {
            addr,
            ca_pem: pki.ca_pem,
            task,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signed the front's certificate, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}
