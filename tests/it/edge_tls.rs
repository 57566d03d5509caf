//! Issue #11 item 6, TLS at the edge, through real sockets with a CA made in the test: a rustls
//! client completes HTTP/1.1 and HTTP/2 requests with auth enforced; a certificate renewed on
//! disk reaches new connections on `POST /reload` or SIGHUP while open ones keep working; a
//! bad new pair is refused and the old certificate stays; a bad pair at start is a config
//! error; a client that never says hello is cut off; a plain-HTTP client reaches nothing; and
//! an `https://` upstream is reached with `upstream.ca_file`, and refused (502, naming TLS)
//! against the system's roots.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::support::{self, gateway, raw, toml_str, with_keys, BinaryGateway, Reply, TestGateway};

/// Long enough for anything that should happen; no test waits this long when it passes.
const BOUND: Duration = Duration::from_secs(10);

/// A CA made for the test.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate for `localhost` and `127.0.0.1`, with its key.
struct Leaf {
    /// The leaf then the CA: a chain, as a certificate file holds it.
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "clerkgate test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { issuer: rcgen::Issuer::new(params, key), pem: cert.pem(), der: cert.der().clone() }
    }

    fn leaf(&self) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Leaf { chain_pem: format!("{}{}", cert.pem(), self.pem), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// A rustls client that trusts only this CA and offers `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("add the test CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The certificate and key files a gateway is configured with, in a directory of their own.
struct PairFiles {
    dir: tempfile::TempDir,
}

impl PairFiles {
    fn new(leaf: &Leaf) -> PairFiles {
        let files = PairFiles { dir: tempfile::tempdir().expect("tempdir") };
        files.put(&leaf.chain_pem, &leaf.key_pem);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Replaces both files, each atomically (write a sibling, rename), as a renewal tool does.
    fn put(&self, chain_pem: &str, key_pem: &str) {
        for (path, text) in [(self.cert(), chain_pem), (self.key(), key_pem)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).expect("write");
            std::fs::rename(&tmp, &path).expect("rename");
        }
    }

    /// The `[server]` lines that name them.
    fn keys(&self) -> String {
        format!(
            "tls_cert = {}\ntls_key = {}",
            toml_str(&self.cert().display().to_string()),
            toml_str(&self.key().display().to_string())
        )
    }
}

/// Starts an in-process gateway terminating TLS with `files`, after `edit`.
async fn tls_gateway(files: &PairFiles, edit: impl FnOnce(String) -> String) -> TestGateway {
    gateway().jwt_key().start_edited(|t| edit(with_keys(&t, "server", &files.keys()))).await
}

/// Connects to `addr` over TLS as `localhost`, trusting `ca`, offering `alpn`.
async fn tls_connect(addr: SocketAddr, ca: &TestCa, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let connect = tokio_rustls::TlsConnector::from(ca.client(alpn)).connect(name, tcp);
    tokio::time::timeout(BOUND, connect).await.expect("handshake in time").expect("TLS handshake")
}

/// The certificate the server presented.
fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().and_then(|c| c.first()).expect("a peer certificate").clone().into_owned()
}

/// One client connection over TLS, HTTP/1.1 or HTTP/2 by ALPN.
enum Conn {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    /// Opens a connection offering only `alpn` (`h2` or `http/1.1`); checks the server chose it,
    /// and returns the certificate it presented.
    async fn open(addr: SocketAddr, ca: &TestCa, alpn: &[u8]) -> (Conn, CertificateDer<'static>) {
        let stream = tls_connect(addr, ca, &[alpn]).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
        let leaf = peer_leaf(&stream);
        let io = TokioIo::new(stream);
        let conn = if alpn == b"h2" {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io).await.expect("h2 handshake");
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = http1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(conn);
            Conn::H1(send)
        };
        (conn, leaf)
    }

    async fn get(&mut self, path: &str, bearer: Option<&str>) -> Reply {
        let mut req = Request::get(format!("https://localhost{path}"));
        if let Self::H1(_) = self {
            req = req.uri(path).header("host", "localhost");
        }
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Empty::new()).expect("request");
        let sent = match self {
            Conn::H1(send) => send.send_request(req).await,
            Conn::H2(send) => send.send_request(req).await,
        };
        let (head, body) = sent.expect("response").into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply::from(reqwest::Response::from(http::Response::from_parts(head, body))).await
    }
}

/// `POST /reload` on the in-process gateway's admin API.
async fn reload(gw: &TestGateway) -> Reply {
    let req = support::client().post(gw.admin_url("/reload")).bearer_auth(support::ADMIN_TOKEN);
    Reply::from(req.send().await.expect("POST /reload")).await
}

/// The actions in the gateway's audit log, in order.
fn audited(state_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["action"].as_str().map(str::to_string))
        .collect()
}

/// The gateway answers HTTP/1.1 and HTTP/2 over TLS, chosen by ALPN, with auth enforced and the
/// upstream told the client came over https.
#[tokio::test]
async fn a_tls_client_speaks_http1_and_h2_with_auth_enforced() {
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let files = PairFiles::new(&leaf);
    let gw = tls_gateway(&files, |t| t).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let (mut conn, presented) = Conn::open(gw.addr(), &ca, alpn).await;
        assert_eq!(presented, leaf.der);
        let refused = conn.get("/private", None).await;
        assert_eq!(refused.status, 401, "{alpn:?}: {refused:?}");
        let ok = conn.get("/private", Some(&support::token())).await;
        assert_eq!(ok.status, 200, "{alpn:?}: {ok:?}");
        let echoed = ok.echoed();
        assert_eq!(echoed.one("x-forwarded-proto"), Some("https"), "{alpn:?}");
        assert_eq!(echoed.one("x-clerk-user-id"), Some("user_test"), "{alpn:?}");
    }
    // A client that offers no ALPN at all gets HTTP/1.1.
    let stream = tls_connect(gw.addr(), &ca, &[]).await;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await.expect("h1 handshake");
    tokio::spawn(conn);
    let req = Request::get("/").header("host", "localhost").body(Empty::<Bytes>::new()).expect("request");
    assert_eq!(send.send_request(req).await.expect("response").status(), 200);
    gw.stop().await;
}

/// Item 6: a certificate renewed on disk reaches the next handshake on `POST /reload`, while an
/// HTTP/1.1 keep-alive connection and an HTTP/2 connection opened before keep working; a
/// reload that turns TLS off applies the rest and says the listener waits for a restart.
#[tokio::test]
async fn a_renewed_certificate_reaches_new_connections_and_open_ones_keep_working() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf(), ca.leaf());
    let files = PairFiles::new(&old);
    let gw = tls_gateway(&files, |t| t).await;
    let token = support::token();
    let (mut h1, presented) = Conn::open(gw.addr(), &ca, b"http/1.1").await;
    assert_eq!(presented, old.der);
    let (mut h2, _) = Conn::open(gw.addr(), &ca, b"h2").await;
    assert_eq!(h1.get("/private", Some(&token)).await.status, 200);
    assert_eq!(h2.get("/private", Some(&token)).await.status, 200);

    files.put(&new.chain_pem, &new.key_pem);
    let reloaded = reload(&gw).await;
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(reloaded.json()["changed"], true, "the renewal changes the config hash: {reloaded:?}");
    assert!(reloaded.json().get("restart_needed").is_none(), "{reloaded:?}");

    for alpn in [&b"http/1.1"[..], b"h2"] {
        let (mut conn, presented) = Conn::open(gw.addr(), &ca, alpn).await;
        assert_eq!(presented, new.der, "{alpn:?}: a new connection gets the new certificate");
        assert_eq!(conn.get("/private", Some(&token)).await.status, 200);
    }
    assert_eq!(h1.get("/private", Some(&token)).await.status, 200, "the HTTP/1.1 connection opened before");
    assert_eq!(h2.get("/private", Some(&token)).await.status, 200, "the HTTP/2 connection opened before");

    // Turning TLS off takes a restart: the reload applies, says so, and the listener keeps
    // speaking TLS with the certificate it last presented.
    let text = std::fs::read_to_string(&gw.config_path).expect("read config");
    std::fs::write(&gw.config_path, text.replace(&files.keys(), "")).expect("write config");
    let reloaded = reload(&gw).await;
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    let needed = reloaded.json()["restart_needed"].to_string();
    assert!(needed.contains("server.tls_cert") && needed.contains("restart"), "{reloaded:?}");
    let (mut conn, presented) = Conn::open(gw.addr(), &ca, b"h2").await;
    assert_eq!(presented, new.der);
    assert_eq!(conn.get("/private", Some(&token)).await.status, 200);
    assert_eq!(h1.get("/private", Some(&token)).await.status, 200);
    gw.stop().await;
}

/// Item 6: a new pair whose key does not match, or a certificate file that is not PEM, is
/// refused (422 naming the key and the file, audited); new connections keep the old certificate.
#[tokio::test]
async fn a_bad_new_pair_is_refused_and_the_old_certificate_stays() {
    let ca = TestCa::new();
    let (good, other) = (ca.leaf(), ca.leaf());
    let files = PairFiles::new(&good);
    let gw = tls_gateway(&files, |t| t).await;
    let key_file = files.key().display().to_string();
    let cert_file = files.cert().display().to_string();
    let cases = [
        (&other.chain_pem, &good.key_pem, "server.tls_key", "the key does not match the certificate in", &cert_file),
        (&good.chain_pem, &other.chain_pem, "server.tls_key", "not a PEM private key", &key_file),
        (&"garbage".to_string(), &good.key_pem, "server.tls_cert", "no certificate in", &cert_file),
    ];
    for (cert, key, problem_key, says, file) in cases {
        files.put(cert, key);
        let refused = reload(&gw).await;
        assert_eq!(refused.status, 422, "{refused:?}");
        let problems = refused.json()["problems"].clone();
        assert_eq!(problems[0]["key"], problem_key, "{refused:?}");
        let message = problems[0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
        assert!(message.contains(file.as_str()), "{message} should name {file}");

        let (mut conn, presented) = Conn::open(gw.addr(), &ca, b"http/1.1").await;
        assert_eq!(presented, good.der, "after a refused reload ({says}) the old certificate stays");
        assert_eq!(conn.get("/private", Some(&support::token())).await.status, 200);
    }
    let failed = audited(&gw.state_dir()).iter().filter(|a| *a == "config.reload_failed").count();
    assert_eq!(failed, 3, "every refused reload is audited");
    gw.stop().await;
}

/// Item 6: a bad pair at start is a config error naming the file: `check-config` exits 2 and
/// `run` refuses to start; so is a certificate without its key.
#[test]
fn a_bad_pair_at_start_is_a_config_error_naming_the_file() {
    let ca = TestCa::new();
    let (good, other) = (ca.leaf(), ca.leaf());
    let files = PairFiles::new(&good);
    files.put(&good.chain_pem, &other.key_pem);
    let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let text = with_keys(&support::binary_config(upstream).text(), "server", &files.keys());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("clerkgate.toml");
    std::fs::write(&config, &text).expect("write config");
    let key_file = files.key().display().to_string();

    let out = support::cli_in(dir.path(), &["check-config", "--config", &config.display().to_string()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("server.tls_key: {key_file}: the key does not match")), "{stderr}");

    let out = support::run_until_exit(dir.path(), &text, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&key_file), "{stderr}");

    let alone = with_keys(&support::binary_config(upstream).text(), "server", "tls_cert = \"tls.crt\"");
    std::fs::write(&config, alone).expect("write config");
    let out = support::cli_in(dir.path(), &["check-config", "--config", &config.display().to_string()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server.tls_key: is required with server.tls_cert"), "{stderr}");
}

/// Item 6 with the real binary and a real SIGHUP: the renewed certificate reaches new
/// connections, and a connection opened before keeps working.
#[tokio::test]
async fn sighup_brings_a_renewed_certificate() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf(), ca.leaf());
    let files = PairFiles::new(&old);
    let upstream = support::upstream().await;
    let text = with_keys(&support::binary_config(upstream).text(), "server", &files.keys());
    let gw = BinaryGateway::start(&text, &[]);
    let (mut h1, presented) = Conn::open(gw.data_addr, &ca, b"http/1.1").await;
    assert_eq!(presented, old.der);

    files.put(&new.chain_pem, &new.key_pem);
    gw.signal("-HUP");
    support::eventually("a new connection presenting the renewed certificate", BOUND, || async {
        let stream = tls_connect(gw.data_addr, &ca, &[b"http/1.1"]).await;
        (peer_leaf(&stream) == new.der).then_some(())
    })
    .await;
    assert_eq!(h1.get("/private", Some(&support::token())).await.status, 200);
    gw.stop().await;
}

/// A client that connects and never sends a ClientHello is cut off after
/// `server.header_read_timeout`, like a plain client that never sends a request.
#[tokio::test]
async fn a_silent_tls_client_is_cut_off() {
    let ca = TestCa::new();
    let files = PairFiles::new(&ca.leaf());
    let gw = tls_gateway(&files, |t| with_keys(&t, "server", "header_read_timeout = \"1s\"")).await;
    let mut silent = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut buf = [0u8; 64];
    let read =
        tokio::time::timeout(BOUND, silent.read(&mut buf)).await.expect("the gateway never closed the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "expected the connection closed, got {read:?}");
    gw.stop().await;
}

/// A plain-HTTP request to the TLS listener gets no HTTP answer and never reaches the upstream:
/// the first request the upstream sees is the one sent over TLS after it.
#[tokio::test]
async fn plain_http_to_the_tls_listener_reaches_nothing() {
    let ca = TestCa::new();
    let files = PairFiles::new(&ca.leaf());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let seen = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.expect("read") == 1 {
            head.push(byte[0]);
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.expect("answer");
        String::from_utf8_lossy(&head).into_owned()
    });
    let gw = gateway().jwt_key().upstream(upstream).start_edited(|t| with_keys(&t, "server", &files.keys())).await;

    let plain = raw::get(gw.addr(), "/public/plain", &[]).await;
    assert_eq!(plain.status, 0, "no HTTP answer over a TLS listener: {plain:?}");

    let (mut conn, _) = Conn::open(gw.addr(), &ca, b"http/1.1").await;
    assert_eq!(conn.get("/public/after-tls", None).await.status, 200);
    let head = tokio::time::timeout(BOUND, seen).await.expect("upstream saw a request").expect("upstream task");
    assert!(head.starts_with("GET /public/after-tls "), "the upstream's first request: {head}");
    gw.stop().await;
}

/// A TLS front for `to` (the echo upstream behind a rustls acceptor), presenting `leaf`.
async fn tls_front(leaf: &Leaf, to: SocketAddr) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes()).collect::<Result<_, _>>().expect("chain");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut echo) = TcpStream::connect(to).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut echo).await;
            });
        }
    });
    addr
}

/// The gateway's config pointed at `front` over https, with `lines` added to `[upstream]`.
fn https_upstream(text: String, lines: &str) -> String {
    with_keys(&text.replace("url = \"http://", "url = \"https://"), "upstream", lines)
}

/// Item 6: an `https://` upstream with its CA in `upstream.ca_file` is reached (requests and a
/// WebSocket upgrade); against the system's roots its certificate is refused with a 502 that
/// names the upstream and TLS.
#[tokio::test]
async fn an_https_upstream_is_checked_against_its_ca() {
    let ca = TestCa::new();
    let front = tls_front(&ca.leaf(), support::upstream().await).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let ca_line = format!("ca_file = {}", toml_str(&ca_file.display().to_string()));

    let gw = gateway().jwt_key().upstream(front).start_edited(|t| https_upstream(t, &ca_line)).await;
    let ok = gw.get("/private", Some(&support::token()), &[]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.echoed().one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(ok.echoed().one("x-forwarded-proto"), Some("http"), "the client's side was plain HTTP");

    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    let upgrade = format!(
        "GET /api/socket HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {}\r\n\r\n",
        gw.addr(),
        support::token()
    );
    socket.write_all(upgrade.as_bytes()).await.expect("write");
    let head = tokio::time::timeout(BOUND, raw::read_head(&mut socket)).await.expect("no 101 in time");
    assert_eq!(head.status, 101, "{head:?}");
    socket.write_all(b"through TLS upstream").await.expect("write on the upgraded socket");
    let mut back = [0u8; 20];
    tokio::time::timeout(BOUND, socket.read_exact(&mut back)).await.expect("echo in time").expect("read");
    assert_eq!(&back, b"through TLS upstream");
    gw.stop().await;

    let gw = gateway().jwt_key().upstream(front).start_edited(|t| https_upstream(t, "")).await;
    let refused = gw.get("/public/x", None, &[]).await;
    assert_eq!(refused.status, 502, "{refused:?}");
    let message = refused.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(&format!("https://{front}")), "names the upstream: {message}");
    assert!(message.contains("TLS handshake"), "names TLS: {message}");
    gw.stop().await;
}

/// Item 5 with item 6: a certificate renewed on disk (cert-manager writing into a Secret
/// mount) reaches new connections with no signal and no admin call — the file watcher reloads,
/// because the certificate's directory is watched like every other file the config names.
#[tokio::test]
async fn a_certificate_renewed_on_disk_is_picked_up_without_a_signal() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf(), ca.leaf());
    let files = PairFiles::new(&old);
    let gw = gateway()
        .jwt_key()
        .watch(clerkgate::file_watch::WatchMode::Events)
        .start_edited(|t| with_keys(&t, "server", &files.keys()))
        .await;
    let (_, presented) = Conn::open(gw.addr(), &ca, b"http/1.1").await;
    assert_eq!(presented, old.der);

    files.put(&new.chain_pem, &new.key_pem);
    support::eventually("a new connection presents the renewed certificate", Duration::from_secs(10), || async {
        let (_, presented) = Conn::open(gw.addr(), &ca, b"http/1.1").await;
        (presented == new.der).then_some(())
    })
    .await;
    assert!(!gw.audited("config.reload").await.is_empty(), "the renewal was reloaded and audited");
    gw.stop().await;
}
