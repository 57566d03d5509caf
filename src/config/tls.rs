//! TLS material a config names, parsed and checked once per load: the data plane's certificate
//! chain and key (`server.tls_cert`, `server.tls_key`) and what an `https://` upstream's
//! certificate is checked against (`upstream.ca_file`, else the system's roots). A running
//! gateway therefore only ever holds a pair whose key matches its certificate, and a reload
//! with a bad pair is refused like any other bad config. Everything is on the aws-lc-rs
//! provider; TLS 1.2 and 1.3 only.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, Error as TlsError, InconsistentKeys, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The protocol versions on both sides of the gateway.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider, aws-lc-rs, shared by every TLS config the gateway builds.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    PROVIDER.clone()
}

/// A problem with TLS material, under the key that names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsProblem {
    /// `server.tls_cert`, `server.tls_key` or `upstream.ca_file`.
    pub(super) key: &'static str,
    /// A sentence that names the file.
    pub(super) message: String,
}

impl TlsProblem {
    fn new(key: &'static str, message: String) -> Self {
        TlsProblem { key, message }
    }
}

/// The certificates in a PEM text, in order; an empty list when there are none.
fn certificates(pem_text: &str) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_slice_iter(pem_text.as_bytes()).collect()
}

/// The certificate chain in `cert_pem` (the file `cert_path`, the server's own certificate
/// first) with the private key in `key_pem` (the file `key_path`), once the key is known to
/// belong to that certificate.
pub(super) fn certified_key(
    cert_pem: &str,
    cert_path: &str,
    key_pem: &str,
    key_path: &str,
) -> Result<CertifiedKey, TlsProblem> {
    let cert_problem = |m: String| TlsProblem::new("server.tls_cert", m);
    let key_problem = |m: String| TlsProblem::new("server.tls_key", m);
    let chain = match certificates(cert_pem) {
        Ok(chain) if chain.is_empty() => {
            return Err(cert_problem(format!(
                "no certificate in {cert_path}: expected PEM (-----BEGIN CERTIFICATE-----), the server's certificate \
                 first, then its chain"
            )))
        }
        Ok(chain) => chain,
        Err(e) => return Err(cert_problem(format!("{cert_path}: not a PEM certificate chain ({e})"))),
    };
    let key = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(key_problem(format!(
                "{key_path}: not a PEM private key (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or \
                 EC PRIVATE KEY)"
            )))
        }
        Err(e) => return Err(key_problem(format!("{key_path}: not a PEM private key ({e})"))),
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_problem(format!("{key_path}: not a usable private key ({e})")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: nothing to compare, as rustls itself does.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(key_problem(format!("{key_path}: the key does not match the certificate in {cert_path}")))
        }
        Err(e) => Err(cert_problem(format!("{cert_path}: the first certificate cannot be read ({e})"))),
    }
}

/// The client side of an `https://` upstream: TLS 1.2+, ALPN `http/1.1` (upgrades such as
/// WebSocket need HTTP/1.1), and the certificate checked against the CAs in `ca` (the text of
/// `upstream.ca_file` and its path), or against the system's roots without one. The system's
/// roots are read once, when first needed, not on every reload.
pub(super) fn upstream_client(ca: Option<(&str, &str)>) -> Result<Arc<ClientConfig>, TlsProblem> {
    if ca.is_some() {
        return build_upstream_client(ca).map(Arc::new);
    }
    static SYSTEM: Mutex<Option<Arc<ClientConfig>>> = Mutex::new(None);
    let mut system = SYSTEM.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(config) = &*system {
        return Ok(config.clone());
    }
    let config = Arc::new(build_upstream_client(None)?);
    *system = Some(config.clone());
    Ok(config)
}

fn build_upstream_client(ca: Option<(&str, &str)>) -> Result<ClientConfig, TlsProblem> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsProblem::new("upstream.url", format!("no TLS client can be built here ({e})")))?;
    let builder = match ca {
        Some((ca_pem, ca_path)) => {
            let ca_problem = |m: String| TlsProblem::new("upstream.ca_file", m);
            let certs =
                certificates(ca_pem).map_err(|e| ca_problem(format!("{ca_path}: not a PEM certificate list ({e})")))?;
            if certs.is_empty() {
                return Err(ca_problem(format!(
                    "no certificate in {ca_path}: expected the PEM certificate (-----BEGIN CERTIFICATE-----) of the \
                     CA that signed the upstream's certificate"
                )));
            }
            let mut roots = RootCertStore::empty();
            for (i, cert) in certs.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    ca_problem(format!("{ca_path}: certificate {} cannot be used as a CA ({e})", i + 1))
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder.with_platform_verifier().map_err(|e| {
                TlsProblem::new(
                    "upstream.url",
                    format!(
                        "an https:// upstream is checked against the system's CA certificates, and none could be \
                         loaded ({e}); install them, or name the upstream's CA in upstream.ca_file"
                    ),
                )
            })?
        }
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The name an upstream's certificate must carry, from the host of `upstream.url` (a DNS
/// name or an IP address; brackets around an IPv6 address are dropped).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    ServerName::try_from(host.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a certificate it signed for `localhost`, and another key.
    struct Material {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
        other_key_pem: String,
    }

    fn material() -> Material {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        Material {
            ca_pem: ca.pem(),
            cert_pem: format!("{}{}", cert.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
            other_key_pem: rcgen::KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    #[test]
    fn a_matching_pair_with_its_chain_is_accepted() {
        let m = material();
        let certified = certified_key(&m.cert_pem, "cert.pem", &m.key_pem, "key.pem").unwrap();
        assert_eq!(certified.cert.len(), 2, "the chain is kept, leaf first");
        // A file holding both the key and the certificate serves as the key file too.
        let combined = format!("{}{}", m.cert_pem, m.key_pem);
        assert!(certified_key(&m.cert_pem, "cert.pem", &combined, "both.pem").is_ok());
    }

    #[test]
    fn a_bad_pair_is_a_problem_naming_the_key_and_the_file() {
        let m = material();
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        let unterminated = "-----BEGIN CERTIFICATE-----\nbm90\n";
        let bad_key = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
        let cases: &[(&str, &str, &str, &str)] = &[
            ("", &m.key_pem, "server.tls_cert", "no certificate in c.pem"),
            ("hello", &m.key_pem, "server.tls_cert", "no certificate in c.pem"),
            (&m.key_pem, &m.key_pem, "server.tls_cert", "no certificate in c.pem"),
            (unterminated, &m.key_pem, "server.tls_cert", "c.pem: not a PEM certificate chain"),
            (garbage, &m.key_pem, "server.tls_cert", "c.pem: the first certificate cannot be read"),
            (&m.cert_pem, "", "server.tls_key", "k.pem: not a PEM private key"),
            (&m.cert_pem, &m.cert_pem, "server.tls_key", "k.pem: not a PEM private key"),
            (&m.cert_pem, bad_key, "server.tls_key", "k.pem: not a usable private key"),
            (&m.cert_pem, &m.other_key_pem, "server.tls_key", "k.pem: the key does not match the certificate in c.pem"),
        ];
        for (cert, key, problem_key, message) in cases {
            let p = certified_key(cert, "c.pem", key, "k.pem").expect_err(message);
            assert_eq!(p.key, *problem_key, "{message}: {p:?}");
            assert!(p.message.contains(message), "{message}: {p:?}");
        }
    }

    #[test]
    fn an_upstream_ca_file_must_hold_a_certificate() {
        let m = material();
        let config = upstream_client(Some((&m.ca_pem, "ca.pem"))).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        for text in ["", "not pem", &m.key_pem] {
            let p = upstream_client(Some((text, "ca.pem"))).expect_err(text);
            assert_eq!(p.key, "upstream.ca_file");
            assert!(p.message.starts_with("no certificate in ca.pem"), "{p:?}");
        }
    }

    /// Loading through the config: files recorded, the hash follows a renewal, `check-config`'s
    /// printout names the files and loads back, a bad pair is a problem naming its file.
    #[test]
    fn a_config_with_tls_files() {
        use crate::config::{problems_by_key, Config, Env};
        let m = material();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert, key, ca) =
            (write("cert.pem", &m.cert_pem), write("key.pem", &m.key_pem), write("ca.pem", &m.ca_pem));
        let text = format!(
            "[server]\ntls_cert = {cert:?}\ntls_key = {key:?}\n[upstream]\nurl = \"https://localhost:8443\"\n\
             ca_file = {ca:?}\n[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\n"
        );
        let load = |text: &str| Config::from_toml(text, &Env::default());
        let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
        let tls = config.server.tls.as_ref().expect("server TLS");
        assert_eq!(tls.cert_file.display().to_string(), cert);
        let upstream = config.upstream.tls.as_ref().expect("upstream TLS");
        assert_ne!(upstream.roots_id, 0);
        let files: Vec<String> = config.origin.files.iter().map(|f| f.display().to_string()).collect();
        assert_eq!(files, [cert.clone(), key.clone(), ca.clone()]);
        let shown = config.effective_toml();
        for (k, v) in [("tls_cert", &cert), ("tls_key", &key), ("ca_file", &ca)] {
            assert!(shown.contains(&format!("{k} = {v:?}")), "{k} in:\n{shown}");
        }
        assert_eq!(load(&shown).unwrap().effective_toml(), shown);

        // A renewed certificate (same key) is a changed config.
        let renewed = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let key_pair = rcgen::KeyPair::from_pem(&m.key_pem).unwrap();
        write("cert.pem", &renewed.self_signed(&key_pair).unwrap().pem());
        let again = load(&text).unwrap();
        assert_ne!(again.origin.hash, config.origin.hash);

        // Another key: refused under server.tls_key, naming both files.
        write("key.pem", &m.other_key_pem);
        let errors = load(&text).expect_err("mismatched pair");
        let by_key = problems_by_key(&errors);
        assert_eq!(by_key.len(), 1, "{errors}");
        assert_eq!(by_key["server.tls_key"], format!("{key}: the key does not match the certificate in {cert}"));
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        assert!(matches!(server_name("localhost"), Some(ServerName::DnsName(_))));
        assert!(matches!(server_name("127.0.0.1"), Some(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]"), Some(ServerName::IpAddress(_))));
        assert!(server_name("not a name").is_none());
    }
}
