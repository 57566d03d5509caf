//! TLS termination for the data plane: one rustls server config, built at start when the
//! config names a certificate, whose certificate is looked up at each handshake in the config
//! in force. A reload that brings a renewed certificate therefore reaches the next handshake
//! without touching the listener, and open connections keep the certificate they were opened
//! with. A reload with a bad pair never gets here: the config is refused and the old pair stays.
//!
//! TLS 1.2 and 1.3 only, on the aws-lc-rs provider; ALPN offers `h2` and `http/1.1`. The
//! handshake itself runs in each connection's own task, see [`crate::listener`].

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{tls_provider, TLS_PROTOCOL_VERSIONS};
use crate::state::Shared;

/// The protocols offered in ALPN, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The server config for the data plane when the config in force names a certificate;
/// `None` for plain HTTP. Built once, at start: turning TLS on or off takes a restart.
pub fn server_config(shared: Arc<Shared>) -> Result<Option<Arc<rustls::ServerConfig>>, rustls::Error> {
    let Some(first) = shared.load().config.server.tls.as_ref().map(|tls| tls.certified.clone()) else {
        return Ok(None);
    };
    let resolver = CurrentCertificate { shared, last: ArcSwap::new(first) };
    let mut config = rustls::ServerConfig::builder_with_provider(tls_provider())
        .with_protocol_versions(TLS_PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Some(Arc::new(config)))
}

/// Presents the certificate of the config in force. When a reload has turned TLS off (which
/// takes a restart to apply), the listener still speaks TLS: it keeps presenting the last
/// certificate it presented.
#[derive(Debug)]
struct CurrentCertificate {
    shared: Arc<Shared>,
    last: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let runtime = self.shared.load();
        let Some(tls) = &runtime.config.server.tls else {
            return Some(self.last.load_full());
        };
        if !Arc::ptr_eq(&self.last.load(), &tls.certified) {
            self.last.store(tls.certified.clone());
        }
        Some(tls.certified.clone())
    }
}
