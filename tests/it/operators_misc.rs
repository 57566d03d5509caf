//! Issue #10, items 9 and 10: an upstream failure says which and where, a 403 says the user is
//! signed in, logs for files carry no colour codes, `/metrics` explains itself, and an HTTP/1.0
//! upstream does not end the client's keep-alive.

use std::net::SocketAddr;
use std::time::Duration;

use clerkgate::mint::TokenSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, gateway, BinaryGateway};

/// An address on loopback where nothing listens (bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

#[tokio::test]
async fn a_refused_upstream_connection_says_so_and_names_the_upstream() {
    let nowhere = closed_port().await;
    let gw = gateway().jwt_key().upstream(nowhere).start().await;
    let reply = gw.get("/public/x", None, &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.reason(), Some("upstream-unreachable"));
    let message = reply.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(&format!("http://{nowhere}")), "{message}");
    assert!(message.contains("upstream.url"), "{message}");
    assert!(message.contains("refused the connection"), "{message}");
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_upstream_is_logged_with_its_cause() {
    let nowhere = closed_port().await;
    let gw = BinaryGateway::start(&support::binary_config(nowhere).text(), &[]);
    let reply = gw.get("/public/x", None).await;
    assert_eq!(reply.status, 502);
    let wanted = nowhere.to_string();
    support::eventually("a log line naming the refused upstream", Duration::from_secs(20), || {
        let found = gw.logs().iter().any(|l| l.contains("refused the connection") && l.contains(&wanted));
        std::future::ready(found.then_some(()))
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_403_for_a_missing_role_says_the_user_is_signed_in() {
    let gw =
        gateway().jwt_key().section("[[routes.rule]]", "path = \"/api/admin(.*)\"\nrole = \"org:admin\"").start().await;
    let member = support::token_for(&TokenSpec {
        sub: "user_member".into(),
        org_id: Some("org_1".into()),
        org_role: Some("org:member".into()),
        ..TokenSpec::default()
    });
    let reply = gw.get("/api/admin/panel", Some(&member), &[]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.reason(), Some("missing-role"));
    assert_eq!(reply.header("x-clerk-auth-status"), Some("signed-in"));
    gw.stop().await;
}

#[tokio::test]
async fn the_pretty_log_format_writes_no_colour_codes_when_not_on_a_terminal() {
    let upstream = support::upstream().await;
    let text = support::binary_config(upstream).text().replace("format = \"json\"", "format = \"pretty\"");
    let gw = BinaryGateway::start(&text, &[]);
    let _ = gw.get("/public/x", None).await;
    let logs = gw.logs();
    assert!(logs.iter().any(|l| l.contains("clerkgate listening")), "{logs:?}");
    assert!(logs.iter().all(|l| !l.contains('\u{1b}')), "colour codes in a piped log:\n{}", logs.join("\n"));
    gw.stop().await;
}

#[tokio::test]
async fn metrics_carry_help_text_and_the_jwks_gauge_exists_with_only_a_networkless_key() {
    let upstream = support::upstream().await;
    let gw = BinaryGateway::start(&support::binary_config(upstream).text(), &[]);
    let _ = gw.get("/public/x", None).await;
    let metrics = support::client().get(gw.admin_url("/metrics")).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    for name in ["clerkgate_requests_total", "clerkgate_jwks_keys", "clerkgate_connections_open"] {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}:\n{text}");
    }
    assert!(text.lines().any(|l| l == "clerkgate_jwks_keys 0"), "no clerkgate_jwks_keys sample in PEM mode:\n{text}");
    gw.stop().await;
}

/// An upstream that speaks HTTP/1.0: one response per connection, then close.
async fn http10_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http10_upstream_leaves_the_client_on_http11_keep_alive() {
    let gw = gateway().jwt_key().upstream(http10_upstream().await).start().await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let request = format!("GET /public/x HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr());
    for round in 0..2 {
        s.write_all(request.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let complete = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let n = s.read(&mut buf).await.expect("read");
                assert!(n > 0, "round {round}: the gateway closed the client connection");
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"ok") {
                    return;
                }
            }
        })
        .await;
        assert!(complete.is_ok(), "round {round}: no complete answer: {}", String::from_utf8_lossy(&got));
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "round {round}: {text}");
        assert!(!text.contains("connection: close"), "round {round}: {text}");
    }
    gw.stop().await;
}
