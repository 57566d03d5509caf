//! The URLs and values of Clerk's handshake and sign-in redirects, built exactly as Clerk's SDK
//! builds them (clerk-semantics §1.8, §4.5, §4.6, §4.10): the handshake `Location` with its
//! query parameters in Clerk's order, the loop counter cookie, the Frontend API and Account
//! Portal hosts, the known-Clerk `Referer` test, and the sign-in redirect. Pure string work.

use super::public_url::{form_encode, resolve, set_param, UrlOrigin};
use crate::config::{Config, PublishableKey};
use crate::reason::{Failure, Reason};

/// `__clerk_db_jwt`: the development browser, as a cookie and a query parameter.
pub const DEV_BROWSER: &str = "__clerk_db_jwt";
/// `__dev_session`: the legacy development browser parameter.
pub const LEGACY_DEV_BROWSER: &str = "__dev_session";
/// `__clerk_handshake`: the signed handshake token.
pub const HANDSHAKE: &str = "__clerk_handshake";
/// `__clerk_handshake_nonce`: the nonce-format handshake.
pub const HANDSHAKE_NONCE: &str = "__clerk_handshake_nonce";
/// `__clerk_help`.
pub const HANDSHAKE_HELP: &str = "__clerk_help";
/// The query parameters a resolved handshake removes (Clerk's development redirect), and that
/// never reach the upstream.
pub const HANDSHAKE_PARAMS: [&str; 4] = [HANDSHAKE, HANDSHAKE_HELP, DEV_BROWSER, HANDSHAKE_NONCE];
/// The Backend API version Clerk's handshake names (`__clerk_api_version`).
pub const API_VERSION: &str = crate::keys::CLERK_API_VERSION;

/// The Frontend API the handshake goes to, as Clerk's `parsePublishableKey` picks it: the proxy
/// URL (a path resolved against the request's origin), else `clerk.frontend_api`, else the
/// publishable key's host.
pub fn frontend_api(config: &Config, pk: &PublishableKey, origin: &str) -> String {
    let clerk = &config.clerk;
    match (&clerk.proxy_url, &clerk.frontend_api) {
        (Some(proxy), _) => resolve(proxy, origin),
        (None, Some(fapi)) => fapi.clone(),
        (None, None) => pk.frontend_api.clone(),
    }
}

/// What goes into a handshake URL.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeUrl<'a> {
    /// A host, or a URL (proxy mode).
    pub frontend_api: &'a str,
    /// The request's public URL without the dev-browser parameters.
    pub redirect_url: &'a str,
    /// Which cookie family is this instance's.
    pub suffixed: bool,
    /// The wire reason.
    pub reason: &'a str,
    /// The current session token, expired or not (the cookie's, else the header's).
    pub session: Option<&'a str>,
    /// A development instance's dev browser.
    pub dev_browser: Option<&'a str>,
}

/// `buildRedirectToHandshake`: `{frontend_api}/v1/client/handshake` (a scheme-less host gets
/// `https://`; trailing slashes never make `//v1`) with `redirect_url`, `__clerk_api_version`,
/// `suffixed_cookies`, `__clerk_hs_reason`, `format=nonce`, then `__session` and (development)
/// `__clerk_db_jwt` when there are any.
pub fn location(u: &HandshakeUrl<'_>) -> String {
    let base = if u.frontend_api.starts_with("http") {
        u.frontend_api.to_string()
    } else {
        format!("https://{}", u.frontend_api)
    };
    let base = base.trim_end_matches('/');
    // `new URL('v1/client/handshake', base + '/')` keeps a proxy's path, drops its query.
    let base = base.split(['?', '#']).next().unwrap_or(base).trim_end_matches('/');
    let mut url = format!("{base}/v1/client/handshake");
    let mut params = vec![
        ("redirect_url", u.redirect_url),
        ("__clerk_api_version", API_VERSION),
        ("suffixed_cookies", if u.suffixed { "true" } else { "false" }),
        ("__clerk_hs_reason", u.reason),
        ("format", "nonce"),
    ];
    if let Some(s) = u.session.filter(|s| !s.is_empty()) {
        params.push(("__session", s));
    }
    if let Some(d) = u.dev_browser.filter(|d| !d.is_empty()) {
        params.push((DEV_BROWSER, d));
    }
    for (i, (k, v)) in params.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(k);
        url.push('=');
        url.push_str(&form_encode(v));
    }
    url
}

/// The loop counter's cookie: `__clerk_redirect_count=<n>; SameSite=Lax; HttpOnly; Max-Age=2`.
pub fn counter_cookie(n: f64) -> String {
    format!("__clerk_redirect_count={}; SameSite=Lax; HttpOnly; Max-Age=2", js_string(n))
}

/// JavaScript's `Number(text)`: trimmed decimal (with exponent), `0x`/`0o`/`0b` integers,
/// `Infinity`; empty is 0; anything else `NaN`.
pub fn js_number(text: &str) -> f64 {
    let t = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits
                .chars()
                .fold(0.0, |acc, c| acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0)));
        }
    }
    match t.trim_start_matches(['+', '-']) {
        "Infinity" => return if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY },
        rest if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit() || b"eE.+-".contains(&b)) => {
            return f64::NAN
        }
        _ => {}
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// JavaScript's `Number.parseInt(text) || 0`, as Clerk reads `__client_uat`: leading blanks, a
/// sign, then the longest run of digits (hexadecimal after `0x`); none is 0.
pub fn parse_int(text: &str) -> f64 {
    let t = text.trim_start();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = match t.get(..2) {
        Some("0x") | Some("0X") => (16, &t[2..]),
        _ => (10, t),
    };
    let run: Vec<u32> = digits.chars().map_while(|c| c.to_digit(radix)).collect();
    if run.is_empty() {
        return 0.0;
    }
    let value = run.iter().fold(0.0, |acc, d| acc * f64::from(radix) + f64::from(*d));
    if negative {
        -value
    } else {
        value
    }
}

/// A number as JavaScript writes it, for the values a counter takes.
fn js_string(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// The Account Portal Clerk derives from a Frontend API (`buildAccountsBaseUrl`):
/// `clerk.accountsstage.` → `accountsstage.`, else the first `clerk.accounts.` or `clerk.` →
/// `accounts.`, with `https://`.
pub fn accounts_base_url(frontend_api: &str) -> String {
    let replaced = if let Some(i) = frontend_api.find("clerk.accountsstage.") {
        format!("{}accountsstage.{}", &frontend_api[..i], &frontend_api[i + "clerk.accountsstage.".len()..])
    } else {
        match (frontend_api.find("clerk.accounts."), frontend_api.find("clerk.")) {
            (Some(a), Some(c)) if a <= c => {
                format!("{}accounts.{}", &frontend_api[..a], &frontend_api[a + "clerk.accounts.".len()..])
            }
            (_, Some(c)) => format!("{}accounts.{}", &frontend_api[..c], &frontend_api[c + "clerk.".len()..]),
            (_, None) => frontend_api.to_string(),
        }
    };
    format!("https://{replaced}")
}

const LEGACY_DEV_SUFFIXES: [&str; 3] = [".lcl.dev", ".lclstage.dev", ".lclclerk.com"];
const CURRENT_DEV_SUFFIXES: [&str; 3] = [".accounts.dev", ".accountsstage.dev", ".accounts.lclclerk.com"];

/// `isKnownClerkReferrer`: the Frontend API's host, a development Account Portal (development
/// instances only: anyone can have one), or this instance's own Account Portal.
pub fn known_clerk_referrer(referer: &UrlOrigin, frontend_api: &str, production: bool) -> bool {
    let fapi_host = if frontend_api.starts_with("http") {
        super::public_url::url_origin(frontend_api).map(|o| o.hostname).unwrap_or_default()
    } else {
        frontend_api.to_string()
    };
    if referer.hostname == fapi_host {
        return true;
    }
    let host = referer.hostname.as_str();
    if !production {
        let legacy = host.starts_with("accounts.") && LEGACY_DEV_SUFFIXES.iter().any(|s| host.ends_with(s));
        let current = CURRENT_DEV_SUFFIXES.iter().any(|s| host.ends_with(s) && !host.ends_with(&format!(".clerk{s}")));
        if legacy || current {
            return true;
        }
    }
    super::public_url::url_origin(&accounts_base_url(frontend_api)).is_some_and(|a| a.origin == referer.origin)
}

/// Where a signed-out page load goes (`createRedirect`): `clerk.sign_in_url` (a path is on the
/// request's origin), else the Account Portal's `/sign-in` of the publishable key's Frontend
/// API; `<that>/tasks` for a pending session. `None` without either.
pub fn sign_in_target(config: &Config, origin: &str, pending: bool) -> Option<String> {
    let clerk = &config.clerk;
    let target = match (&clerk.sign_in_url, &clerk.publishable_key) {
        (Some(url), _) => url.clone(),
        (None, Some(pk)) => format!("{}/sign-in", accounts_base_url(&pk.frontend_api)),
        (None, None) => return None,
    };
    let target = if pending { format!("{target}/tasks") } else { target };
    Some(resolve(&target, origin))
}

/// The sign-in redirect (`buildUrl`): `redirect_url` set to the request's URL; a development
/// instance's dev browser rides along when the sign-in page is on another host.
pub fn sign_in_location(target: &str, return_url: &str, origin: &str, dev_browser: Option<&str>) -> String {
    let url = set_param(target, "redirect_url", return_url);
    let host_port = |u: &str| {
        super::public_url::url_origin(u).map(|o| o.origin.split_once("://").map_or(String::new(), |(_, h)| h.into()))
    };
    match dev_browser {
        Some(d) if !d.is_empty() && host_port(&url) != host_port(origin) => set_param(&url, DEV_BROWSER, d),
        _ => url,
    }
}

/// The failure Clerk's SDK throws for a development instance's handshake token that does not
/// verify (a 500; its message says what to do).
pub fn development_failure(f: &Failure) -> Failure {
    let message = if f.reason == Reason::TokenInvalidSignature {
        "Clerk: Handshake token verification failed due to an invalid signature. If you have switched Clerk keys locally, clear your cookies and try again.".to_string()
    } else {
        format!("Clerk: Handshake token verification failed: {}.", f.message)
    };
    Failure::new(Reason::HandshakeFailed, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::public_url::url_origin;

    #[test]
    fn the_handshake_url_has_clerks_parameters_in_clerks_order() {
        let u = HandshakeUrl {
            frontend_api: "api.clerk.com",
            redirect_url: "https://example.com/",
            suffixed: true,
            reason: "session-token-expired-refresh-non-eligible-no-refresh-cookie",
            session: None,
            dev_browser: None,
        };
        assert_eq!(
            location(&u),
            "https://api.clerk.com/v1/client/handshake?redirect_url=https%3A%2F%2Fexample.com%2F&__clerk_api_version=2026-05-12&suffixed_cookies=true&__clerk_hs_reason=session-token-expired-refresh-non-eligible-no-refresh-cookie&format=nonce"
        );
        let dev = HandshakeUrl { session: Some("a.b.c"), dev_browser: Some("dvb_1"), suffixed: false, ..u };
        assert!(location(&dev).ends_with("&suffixed_cookies=false&__clerk_hs_reason=session-token-expired-refresh-non-eligible-no-refresh-cookie&format=nonce&__session=a.b.c&__clerk_db_jwt=dvb_1"));
        // Proxy URLs keep their path; any number of trailing slashes never makes `//v1`.
        for fapi in ["https://example.com/clerk", "https://example.com/clerk/", "https://example.com/clerk///"] {
            let got = location(&HandshakeUrl { frontend_api: fapi, ..u });
            assert!(got.starts_with("https://example.com/clerk/v1/client/handshake?"), "{fapi}: {got}");
        }
        let got = location(&HandshakeUrl { frontend_api: "clerk.example.com", ..u });
        assert!(got.starts_with("https://clerk.example.com/v1/client/handshake?"), "{got}");
    }

    #[test]
    fn javascript_numbers() {
        for (text, n) in [("", 0.0), (" 2 ", 2.0), ("3", 3.0), ("0x3", 3.0), ("3.0", 3.0), ("2.5", 2.5), ("1e1", 10.0)]
        {
            assert_eq!(js_number(text), n, "{text:?}");
        }
        for text in ["2x", "inf", "NaN", "0x", "--1", "abc"] {
            assert!(js_number(text).is_nan(), "{text:?}");
        }
        for (text, n) in [("12345", 12345.0), ("  17abc", 17.0), ("-5", -5.0), ("0x1f", 31.0), ("", 0.0), ("abc", 0.0)]
        {
            assert_eq!(parse_int(text), n, "{text:?}");
        }
        assert_eq!(counter_cookie(1.0), "__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2");
        assert_eq!(counter_cookie(3.5), "__clerk_redirect_count=3.5; SameSite=Lax; HttpOnly; Max-Age=2");
    }

    #[test]
    fn account_portals_and_known_referrers() {
        assert_eq!(accounts_base_url("clerk.example.com"), "https://accounts.example.com");
        assert_eq!(accounts_base_url("foo-bar-13.clerk.accounts.dev"), "https://foo-bar-13.accounts.dev");
        assert_eq!(accounts_base_url("clerk.inspired.puma-74.lcl.dev"), "https://accounts.inspired.puma-74.lcl.dev");
        assert_eq!(accounts_base_url("clerk.accountsstage.dev"), "https://accountsstage.dev");
        let fapi = "clerk.example.com";
        // (referer, production, known)
        let cases: &[(&str, bool, bool)] = &[
            ("https://clerk.example.com/v1/x", true, true),
            ("https://accounts.example.com/sign-in", true, true),
            ("http://accounts.example.com/sign-in", true, false),
            ("https://accounts.evil.com/", true, false),
            ("https://foo-bar-13.accounts.dev/sign-in", false, true),
            ("https://foo-bar-13.accounts.dev/sign-in", true, false),
            ("https://accounts.inspired.puma-74.lcl.dev/", false, true),
            ("https://x.clerk.accounts.dev/", false, false),
            ("https://satellite.com/signin", true, false),
        ];
        for (referer, production, known) in cases {
            let r = url_origin(referer).unwrap();
            assert_eq!(known_clerk_referrer(&r, fapi, *production), *known, "{referer} production={production}");
        }
    }

    #[test]
    fn sign_in_redirects() {
        let here = "https://app.example.com";
        let back = "https://app.example.com/dashboard?tab=1";
        assert_eq!(
            sign_in_location("https://accounts.example.com/sign-in", back, here, None),
            "https://accounts.example.com/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fdashboard%3Ftab%3D1"
        );
        assert_eq!(
            sign_in_location("https://x.accounts.dev/sign-in", back, here, Some("dvb_1")),
            "https://x.accounts.dev/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fdashboard%3Ftab%3D1&__clerk_db_jwt=dvb_1"
        );
        // Same host: the dev browser stays home.
        assert_eq!(
            sign_in_location("https://app.example.com/sign-in", back, here, Some("dvb_1")),
            "https://app.example.com/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fdashboard%3Ftab%3D1"
        );
    }

    proptest::proptest! {
        #[test]
        fn number_reading_and_url_building_never_panic(s in "\\PC{0,40}") {
            let _ = (js_number(&s), parse_int(&s), accounts_base_url(&s), counter_cookie(js_number(&s)));
            let _ = sign_in_location(&s, &s, &s, Some(&s));
            let _ = location(&HandshakeUrl {
                frontend_api: &s,
                redirect_url: &s,
                suffixed: true,
                reason: &s,
                session: Some(&s),
                dev_browser: Some(&s),
            });
            if let Some(r) = url_origin(&s) {
                let _ = known_clerk_referrer(&r, &s, false);
            }
        }
    }
}
