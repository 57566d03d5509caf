//! `clerkgate health [--ready] [--addr ADDR]`: the exec probe for images without a shell or curl
//! (the distroless image). One GET of `/healthz` (or `/readyz`) on a local listener — the
//! health listener (`server.health_listen`) by default — bounded by [`PROBE_TIMEOUT`]; the
//! answer is 200 or it is a failure, said in one line.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;

use super::api::Readiness;
use super::client::{admin_url, chain, url_of_listen};
use crate::config::Env;

/// The address probed when neither `--addr` nor [`HEALTH_ADDR_VAR`] names one: the health port
/// of the example configs and the manifests.
pub const DEFAULT_HEALTH_ADDR: &str = "127.0.0.1:9902";

/// The variable that names the probed address when `--addr` does not.
pub const HEALTH_ADDR_VAR: &str = "CLERKGATE_HEALTH_ADDR";

/// The longest a probe takes, connect to last byte: well under a kubelet's default one-second
/// probe timeout would be too tight for a loaded node, and a probe must never hang.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What to probe: the base URL and where its address came from.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    base: Url,
    /// The address as the operator would write it in `server.health_listen`.
    addr: String,
}

impl ProbeTarget {
    /// `--addr`, else [`HEALTH_ADDR_VAR`], else [`DEFAULT_HEALTH_ADDR`]: `host:port` as in
    /// `server.health_listen` (an unspecified address such as `0.0.0.0:9902` is probed on
    /// loopback), or an `http://` URL.
    pub fn resolve(flag: Option<&str>, env: &Env) -> Result<ProbeTarget, String> {
        let (text, from) = match (flag, env.get(HEALTH_ADDR_VAR)) {
            (Some(a), _) => (a.to_string(), "--addr"),
            (None, Some(a)) => (a.to_string(), HEALTH_ADDR_VAR),
            (None, None) => (DEFAULT_HEALTH_ADDR.to_string(), "the default"),
        };
        let text = text.trim();
        let base = match text.parse::<SocketAddr>() {
            Ok(addr) => url_of_listen(addr),
            Err(_) => admin_url(text),
        }
        .map_err(|_| {
            format!(
                "{from}: {text:?} is not a health address: give host:port as in server.health_listen \
                 (127.0.0.1:9902, [::1]:9902) or a URL (http://127.0.0.1:9902)"
            )
        })?;
        let addr = match (base.host_str(), base.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            _ => text.to_string(),
        };
        Ok(ProbeTarget { base, addr })
    }

    /// The URL of `/healthz` or `/readyz`.
    pub fn url(&self, ready: bool) -> Url {
        let mut url = self.base.clone();
        url.set_path(if ready { "/readyz" } else { "/healthz" });
        url
    }
}

/// One probe: `Ok` with a line for a 200, `Err` with one line saying what was wrong otherwise.
pub async fn probe(target: &ProbeTarget, ready: bool) -> Result<String, String> {
    let url = target.url(ready);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", chain(&e)))?;
    let resp = match client.get(url.clone()).send().await {
        Ok(resp) => resp,
        Err(e) if e.is_timeout() => {
            return Err(format!(
                "{url}: no answer within {}s; the gateway is stuck or overloaded",
                PROBE_TIMEOUT.as_secs()
            ))
        }
        Err(e) if refused(&e) => {
            return Err(format!(
                "{url}: connection refused: is the gateway running? is server.health_listen set to {}?",
                target.addr
            ))
        }
        Err(e) => return Err(format!("{url}: {}", std::error::Error::source(&e).map_or_else(|| chain(&e), chain))),
    };
    let status = resp.status();
    if status == http::StatusCode::OK {
        return Ok(format!("{url}: 200 OK"));
    }
    let body = tokio::time::timeout(PROBE_TIMEOUT, resp.text()).await.ok().and_then(Result::ok).unwrap_or_default();
    let why = match (ready, serde_json::from_str::<Readiness>(&body)) {
        (true, Ok(r)) => r.why.unwrap_or_else(|| "no reason given".into()),
        _ if status == http::StatusCode::NOT_FOUND => {
            format!("is {} the health listener (server.health_listen) or the admin API?", target.addr)
        }
        _ => body.chars().take(200).collect(),
    };
    let what = if ready && status == http::StatusCode::SERVICE_UNAVAILABLE { "not ready" } else { "failed" };
    Err(format!("{url}: {what} ({} {}): {why}", status.as_u16(), status.canonical_reason().unwrap_or("")))
}

/// The connection was refused: nothing listens there.
fn refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(flag: Option<&str>, env: &[(&str, &str)]) -> Result<String, String> {
        let env = Env::from_pairs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ProbeTarget::resolve(flag, &env).map(|t| t.url(true).to_string())
    }

    /// `--addr`, the environment, and the URL probed or the start of the error.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], Result<&'a str, &'a str>);

    #[test]
    fn the_address_comes_from_the_flag_then_the_variable_then_the_default() {
        let cases: &[Case] = &[
            (None, &[], Ok("http://127.0.0.1:9902/readyz")),
            (None, &[(HEALTH_ADDR_VAR, "127.0.0.1:7000")], Ok("http://127.0.0.1:7000/readyz")),
            (Some("127.0.0.1:7001"), &[(HEALTH_ADDR_VAR, "127.0.0.1:7000")], Ok("http://127.0.0.1:7001/readyz")),
            // The address as written in server.health_listen: unspecified means this host.
            (Some("0.0.0.0:9902"), &[], Ok("http://127.0.0.1:9902/readyz")),
            (Some("[::]:9902"), &[], Ok("http://[::1]:9902/readyz")),
            (Some("localhost:9902"), &[], Ok("http://localhost:9902/readyz")),
            (Some("http://127.0.0.1:9902"), &[], Ok("http://127.0.0.1:9902/readyz")),
            (Some("9902"), &[], Err("--addr: ")),
            (None, &[(HEALTH_ADDR_VAR, "nope")], Err("CLERKGATE_HEALTH_ADDR: ")),
        ];
        for (flag, env, expected) in cases {
            match (target(*flag, env), expected) {
                (Ok(url), Ok(want)) => assert_eq!(&url, want, "{flag:?} {env:?}"),
                (Err(e), Err(prefix)) => {
                    assert!(e.starts_with(prefix) && e.contains("a health address"), "{flag:?}: {e}")
                }
                (got, want) => panic!("{flag:?} {env:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
