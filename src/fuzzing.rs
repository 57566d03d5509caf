//! The fuzz targets' bodies, shared by `fuzz/` (cargo-fuzz, nightly) and the regression replay
//! in the normal test suite (stable), so both run exactly the same code on a kept input.
//!
//! Each function takes the raw fuzzer input, runs it through the functions the request path
//! (or the loader) runs, and asserts the invariants that must hold for every input; a panic,
//! failed assertion included, is a finding. Inputs are split into fields by newlines (or a
//! `0xFF` byte for JSON pairs) so that seeds stay readable: see each function.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Version};
use serde_json::Value;

use crate::auth::has::{has, has_role_and_permission, HasParams};
use crate::auth::payload::{has_serde_raw_value_key, Header, Payload};
use crate::auth::token::{find, header_token, Found};
use crate::auth::verify::{check_time, decode, verify_signed, Policy, Refusal, TimeVerdict};
use crate::auth::webhook;
use crate::auth::Carrier;
use crate::config::{parse_publishable_key, Config, Env, HeaderPolicy, PublishableKey};
use crate::devtools::mint::SigningKey;
use crate::headers::{is_hop_by_hop, is_reserved, sanitize_request, sanitize_response};
use crate::keys::{parse_jwks, to_jwks_value, KeySet, VerifyingKey};
use crate::proxy_protocol::{self as pp, Parsed};
use crate::reason::Reason;
use crate::routes::{already_normal, normalise, Access, Route, RoutePattern, RouteRule, RouteTable};
use crate::verifying_key::MIN_RSA_BITS;

/// A target's body: one input, panics on a finding.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/<name>.rs` and `tests/fuzz_regressions/<name>/`.
pub const TARGETS: [(&str, Target); 9] = [
    ("token", token),
    ("cookie", cookie),
    ("path_routes", path_routes),
    ("headers", headers),
    ("config", config),
    ("jwks", jwks),
    ("svix", svix),
    ("proxy_protocol", proxy_protocol),
    ("webhook_journal", webhook_journal),
];

/// "Now" for every time-dependent check: 2023-11-14, in seconds.
const NOW_S: i64 = 1_700_000_000;
const KID: &str = "fuzz";

struct Keys {
    signer: SigningKey,
    set: KeySet,
    static_key: Arc<VerifyingKey>,
}

/// One RSA key per process (generating one per input would dominate the run).
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = SigningKey::generate().expect("RSA key generation");
        let parsed = parse_jwks(signer.jwks(KID).to_string().as_bytes()).expect("own JWKS parses");
        let static_key = parsed.keys[KID].clone();
        let set = KeySet { keys: parsed.keys, fetched_at_ms: Some(NOW_S * 1000), ..KeySet::default() };
        Keys { signer, set, static_key }
    })
}

fn publishable_keys() -> &'static [PublishableKey; 2] {
    static PKS: OnceLock<[PublishableKey; 2]> = OnceLock::new();
    PKS.get_or_init(|| {
        let b64 = base64::engine::general_purpose::STANDARD.encode("clerk.example.com$");
        let pk = |env: &str| parse_publishable_key(&format!("pk_{env}_{b64}")).expect("fixed publishable key");
        [pk("test"), pk("live")]
    })
}

/// The token decoder and verifier. An odd first byte (`S`) selects the structure-aware mode,
/// an even one (`R`) the raw mode; the rest is the mode's input.
///
/// Raw: the bytes are a token. It is decoded and verified against a key set and a static key;
/// since no input can carry a valid signature by this process's key, it must never verify.
///
/// Signed: `[header JSON 0xFF] payload JSON`, signed with the fixture key (Clerk's default header
/// when none is given), then verified, time-checked and asked `has()` questions, as a request
/// would be. An object under the payload's `has` key is used as the `has()` parameters.
pub fn token(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => signed_token(rest),
        Some((_, rest)) => raw_token(rest),
        None => {}
    }
}

fn policies(azp: &[String]) -> [Policy<'_>; 2] {
    [
        Policy { authorized_parties: &[], issuer: None, skew_ms: 5_000 },
        Policy { authorized_parties: azp, issuer: Some("https://clerk.example.com"), skew_ms: 0 },
    ]
}

fn raw_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = header_token(text);
    let k = keys();
    let azp = ["https://app.example.com".to_string()];
    for carrier in [Carrier::Header, Carrier::Cookie] {
        if let Ok(decoded) = decode(text, carrier) {
            assert!(text.starts_with(decoded.signing_input), "the signing input is the token's start");
            let _ = decoded.token_type_mismatch();
        }
        for policy in policies(&azp) {
            let remote = verify_signed(text, carrier, Some(&k.set), None, &policy);
            assert!(remote.is_err(), "a token not signed by this process verified against the key set");
            let local = verify_signed(text, carrier, None, Some(&k.static_key), &policy);
            assert!(local.is_err(), "a token not signed by this process verified against the static key");
        }
    }
}

fn signed_token(data: &[u8]) {
    let (header, payload) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    typed_reads_what_a_map_reads(header, payload);
    let Ok(claims) = serde_json::from_slice::<Value>(payload) else { return };
    let k = keys();
    let token = match header {
        None => k.signer.sign(Some(KID), &claims),
        Some(h) => {
            let Ok(h) = serde_json::from_slice::<Value>(h) else { return };
            k.signer.sign_with_header(&h, &claims)
        }
    };
    let azp = ["https://app.example.com".to_string()];
    for (i, policy) in policies(&azp).iter().enumerate() {
        let result = verify_signed(&token, Carrier::Header, Some(&k.set), None, policy);
        let sub = claims.get("sub").and_then(Value::as_str);
        if header.is_none() && i == 0 {
            // Signed by the key set's key under its kid: whatever the claims, the key, the
            // algorithm and the signature are never what is wrong.
            let key_refused = match &result {
                Err(Refusal::Failed(f)) => matches!(
                    f.reason,
                    Reason::TokenInvalidSignature | Reason::TokenInvalidAlgorithm | Reason::JwkKidMismatch
                ),
                Err(Refusal::UnknownKid(_) | Refusal::NoKeys) => true,
                Ok(_) => false,
            };
            assert!(!key_refused, "the key set's own signature was refused: {result:?}");
            // And a plain session token (a forwardable sub, the time claims, nothing else) verifies.
            let plain = claims
                .as_object()
                .is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "sub" | "exp" | "iat" | "nbf")));
            let forwardable =
                sub.is_some_and(|s| !s.is_empty() && !s.starts_with("mch_") && s.bytes().all(|b| b.is_ascii_graphic()));
            if plain && forwardable {
                assert!(result.is_ok(), "a well-formed token signed by the key set's key was refused: {result:?}");
            }
        }
        let Ok(verified) = result else { continue };
        assert!(sub.is_some(), "a token without a string sub verified");
        let skew = policy.skew_ms;
        let now = NOW_S * 1000;
        match check_time(&verified, now, skew, Carrier::Header) {
            TimeVerdict::Valid => {
                assert!(verified.exp.ms().is_some_and(|exp| exp > now - skew), "valid but expired");
                assert!(verified.nbf.ms().is_none_or(|nbf| nbf <= now + skew), "valid before nbf");
                assert!(verified.iat.ms().is_none_or(|iat| iat <= now + skew), "valid before iat");
            }
            TimeVerdict::Expired { by_ms, .. } => assert!(by_ms >= -skew, "expired in the future"),
            TimeVerdict::Failed(_) => {}
        }
        if let Some(perms) = &verified.identity.org_permissions {
            let perms = perms.to_str().expect("an identity header is visible ASCII");
            assert!(perms.split(',').all(|p| p.starts_with("org:")), "permissions header: {perms:?}");
        }
        let _ = has_role_and_permission(&verified.claims, Some("org:admin"), None);
        let _ = has_role_and_permission(&verified.claims, Some("admin"), Some("org:billing:manage"));
        if let Some(Value::Object(q)) = claims.get("has") {
            let params = HasParams {
                role: q.get("role").cloned(),
                permission: q.get("permission").cloned(),
                feature: q.get("feature").cloned(),
                plan: q.get("plan").cloned(),
                reverification: q.get("reverification").cloned(),
            };
            let _ = has(&verified.claims, &params);
        }
    }
}

/// The verifier reads a token's header and payload typed ([`Payload`], [`Header`]): each must
/// accept, refuse and read exactly what a `Map` of the same JSON does, except where a `Map`
/// itself differs from `JSON.parse` (serde_json's private raw-value member, see
/// [`crate::auth::payload`]).
fn typed_reads_what_a_map_reads(header: Option<&[u8]>, payload: &[u8]) {
    same_as_a_map::<Payload<'_>>(payload);
    if let Some(header) = header {
        same_as_a_map::<Header<'_>>(header);
    }
}

fn same_as_a_map<'de, T: serde::Deserialize<'de> + PartialEq + std::fmt::Debug>(json: &'de [u8]) {
    if has_serde_raw_value_key(json) {
        return;
    }
    let typed = serde_json::from_slice::<T>(json);
    let map = serde_json::from_slice::<serde_json::Map<String, Value>>(json);
    match (typed, map) {
        (Ok(typed), Ok(map)) => {
            let expected = T::deserialize(Value::Object(map)).expect("a Map reads as the typed struct");
            assert_eq!(typed, expected, "the typed reader and a Map read different values");
        }
        (Err(_), Err(_)) => {}
        (typed, map) => panic!("the typed reader and a Map disagree: {:?} / {:?}", typed.is_ok(), map.is_ok()),
    }
}

/// Token finding: each line is a `Cookie` header value, or an `Authorization` value when it
/// starts with `Authorization: `. Searched with no publishable key, a test one and a live one.
pub fn cookie(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let (name, value) = match line.strip_prefix(b"Authorization: ") {
            Some(v) => (header::AUTHORIZATION, v),
            None => (header::COOKIE, line),
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    let has_session_cookie =
        headers.get_all(header::COOKIE).iter().any(|v| v.as_bytes().windows(9).any(|w| w == b"__session"));
    let cookie_values: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    let [test, live] = publishable_keys();
    for pk in [None, Some(test), Some(live)] {
        match find(&headers, pk, NOW_S) {
            Found::None => {}
            Found::Conflict(_) => assert!(headers.get_all(header::AUTHORIZATION).iter().count() > 1),
            Found::Token(t, Carrier::Header) => {
                assert!(!t.is_empty());
                assert!(headers.contains_key(header::AUTHORIZATION), "a header token without the header");
            }
            Found::Token(t, Carrier::Cookie) => {
                assert!(has_session_cookie && !t.is_empty(), "a cookie token without a session cookie");
                let t = t.as_bytes();
                assert!(cookie_values.iter().any(|v| v.windows(t.len()).any(|w| w == t)), "not from a cookie");
            }
            Found::OwnedCookie(t) => assert!(has_session_cookie && !t.is_empty(), "an owned cookie from nowhere"),
        }
    }
}

fn route_table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let p = |s: &str| RoutePattern::parse(s).expect("fixed pattern");
        let rule = |s: &str, methods: Option<Vec<Method>>, role: &str| RouteRule {
            pattern: p(s),
            methods,
            role: Some(role.into()),
            permission: None,
            bypass_never: role == "org:admin",
            webhook: false,
        };
        RouteTable::new(
            Access::Protected,
            ["/", "/sign-in(.*)", "/api/public/:id", "/static/(.*)/x", "/a\\(b"].map(p).to_vec(),
            vec![
                rule("/admin(.*)", None, "org:admin"),
                rule("/api/:org/settings", Some(vec![Method::POST]), "org:member"),
            ],
        )
    })
}

/// Path normalisation and route matching: `[pattern \n] path`. The path must normalise
/// idempotently into a valid URI path, anything whose matching form starts with `/admin` must
/// meet the admin rule, and a pattern, when given and valid, is matched against both forms.
pub fn path_routes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, path) = match text.split_once('\n') {
        Some((p, rest)) => (RoutePattern::parse(p).ok(), rest),
        None => (None, text),
    };
    if let Some(p) = &pattern {
        let _ = p.matches(path);
    }
    let Ok(n) = normalise(path) else { return };
    assert_eq!(normalise(&n.forward).as_ref(), Ok(&n), "normalising the forward form again changed it");
    assert!(n.forward.starts_with('/') && n.matching.starts_with('/'), "{n:?}");
    assert!(n.forward.parse::<http::uri::PathAndQuery>().is_ok_and(|pq| pq.query().is_none()), "{n:?}");
    let cut = path.find(['?', '#']).map_or(path, |end| &path[..end]);
    if already_normal(cut) {
        assert_eq!((n.forward.as_str(), n.matching.as_str()), (cut, cut), "a normal path was rewritten");
    }
    let table = route_table();
    let admin = n.matching.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("/admin"));
    for method in [Method::GET, Method::POST, Method::HEAD] {
        let route = table.route(&method, &n.matching);
        if admin {
            assert!(
                matches!(route, Route::Protected { rule: Some(r) } if r.role.as_deref() == Some("org:admin")),
                "{n:?} escaped the admin rule"
            );
            assert!(table.bypass_never(&method, &n.matching));
        }
    }
    if let Some(p) = &pattern {
        let _ = p.matches(&n.matching);
    }
}

/// Header hygiene: first byte picks the version (bits 0–1) and `101` for the response (bit 2),
/// then `name:value` lines. No reserved, hop-by-hop or `Connection`-listed header may survive the
/// request side; nothing is added; the response keeps only a `101`'s upgrade pair.
pub fn headers(data: &[u8]) {
    let Some((flags, rest)) = data.split_first() else { return };
    let version = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2, Version::HTTP_11][usize::from(flags & 3)];
    let switching = flags & 4 != 0;
    let mut original = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        original.append(name, value);
    }
    let listed: Vec<HeaderName> = original
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect();

    let mut request = original.clone();
    let upgrade = sanitize_request(&mut request, version, &HeaderPolicy::default());
    for (name, value) in &request {
        assert!(!is_reserved(name.as_str()), "reserved header {name} survived");
        assert!(!is_hop_by_hop(name), "hop-by-hop header {name} survived");
        assert!(!listed.contains(name), "Connection-listed header {name} survived");
        if name == header::COOKIE && version == Version::HTTP_2 && original.get_all(name).iter().count() > 1 {
            // An HTTP/2 request's several cookie fields become one, joined with "; " (RFC 9113
            // §8.2.3), as an HTTP/1.1 upstream expects.
            let was: Vec<&[u8]> = original.get_all(name).iter().map(HeaderValue::as_bytes).collect();
            assert_eq!(value.as_bytes(), was.join(&b"; "[..]).as_slice(), "cookie fields were not joined in order");
            continue;
        }
        assert!(original.get_all(name).iter().any(|v| v == value), "{name} was added or changed");
    }
    if let Some(u) = upgrade {
        assert_eq!(version, Version::HTTP_11, "an upgrade outside HTTP/1.1");
        // Only protocols the client listed and the policy allows are kept (websocket by default).
        // Several Upgrade lines are one comma-separated list (RFC 9110 §5.3).
        let asked: Vec<u8> =
            original.get_all(header::UPGRADE).iter().flat_map(|v| v.as_bytes().to_ascii_lowercase()).collect();
        let kept = u.header().as_bytes().to_ascii_lowercase();
        assert!(kept.starts_with(b"websocket"), "a protocol the policy does not allow was kept: {kept:?}");
        assert!(asked.windows(9).any(|w| w == b"websocket"), "the upgrade is not the client's");
    }

    let mut response = original.clone();
    sanitize_response(&mut response, switching);
    for name in response.keys() {
        let kept_pair = switching && (name == header::CONNECTION || name == header::UPGRADE);
        assert!(kept_pair || !is_hop_by_hop(name), "hop-by-hop header {name} passed back");
        assert!(kept_pair || !listed.contains(name), "Connection-listed header {name} passed back");
    }
}

/// The config loader: the input is a config file. With no environment and with Clerk's keys set
/// in it; an accepted config's `check-config` output must be TOML. Inputs naming a `*_file` key
/// are skipped, to keep the fuzzer off the machine's files.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.contains("_file") {
        return;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode("clerk.example.com$");
    let envs = [
        Env::default(),
        Env::from_pairs([
            ("CLERK_PUBLISHABLE_KEY", format!("pk_test_{b64}")),
            ("CLERK_SECRET_KEY", "sk_test_fuzz".to_string()),
            ("CLERK_EMERGENCY_BYPASS", "true".to_string()),
        ]),
    ];
    for env in &envs {
        let Ok(config) = Config::from_toml(text, env) else { continue };
        let effective = config.effective_toml();
        assert!(effective.parse::<toml::Table>().is_ok(), "check-config printed invalid TOML:\n{effective}");
    }
}

/// The JWKS parser: the input is a JWKS body. What loads must be usable RS256 keys under their
/// own non-empty `kid`, and must survive the `keys.json` round trip unchanged.
pub fn jwks(data: &[u8]) {
    let Ok(parsed) = parse_jwks(data) else { return };
    assert!(!parsed.keys.is_empty(), "an accepted JWKS without keys");
    for (kid, key) in &parsed.keys {
        assert!(!kid.is_empty() && key.kid.as_deref() == Some(kid.as_str()), "kid {kid:?} vs {:?}", key.kid);
        assert!(key.bits >= MIN_RSA_BITS, "a {}-bit key loaded", key.bits);
    }
    let again = parse_jwks(to_jwks_value(&parsed.keys).to_string().as_bytes()).expect("keys.json round trip");
    let kids = |p: &crate::keys::ParsedJwks| {
        p.keys.iter().map(|(k, v)| (k.clone(), v.n.clone(), v.e.clone())).collect::<BTreeSet<_>>()
    };
    assert_eq!(kids(&again), kids(&parsed), "keys.json round trip changed the keys");
}

/// The Svix verifier: `secret \n svix-id \n svix-timestamp \n svix-signature \n body`, checked
/// at a fixed now. Then the same secret and body with a signature made here, listed after the
/// fuzzed entries, must verify, and must stop verifying once the body changes.
pub fn svix(data: &[u8]) {
    let mut fields = data.splitn(5, |b| *b == b'\n');
    let mut next = || fields.next().unwrap_or_default();
    let (secret, id, ts, sig, body) = (next(), next(), next(), next(), next());
    let Ok(secret) = std::str::from_utf8(secret) else { return };
    let mut headers = HeaderMap::new();
    for (name, value) in [("svix-id", id), ("svix-timestamp", ts), ("svix-signature", sig)] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
    if webhook::verify(Some(secret), &headers, body, NOW_S).is_ok() {
        assert!(sig.windows(3).any(|w| w == b"v1,"), "verified without a v1 signature");
    }

    let Some(good) = crate::webhooks::svix::sign(secret, "msg_fuzz", NOW_S, body) else { return };
    let list = [String::from_utf8_lossy(sig).trim(), &good].join(" ");
    // The verifier reads a header that is not visible ASCII as missing (fail closed), so the
    // fuzzed entries only share the header when they are.
    let Ok(list) = HeaderValue::from_str(&list) else { return };
    if list.to_str().is_err() {
        return;
    }
    let mut headers = HeaderMap::new();
    headers.insert("svix-id", HeaderValue::from_static("msg_fuzz"));
    headers.insert("svix-timestamp", HeaderValue::from(NOW_S));
    headers.insert("svix-signature", list);
    assert!(webhook::verify(Some(secret), &headers, body, NOW_S).is_ok(), "a correct signature was refused");
    let tampered = [body, b"!"].concat();
    assert!(webhook::verify(Some(secret), &headers, &tampered, NOW_S).is_err(), "a changed body verified");
}

/// The webhook journal's reader, as a restart reads `webhooks.jsonl`, and an event's envelope:
/// any bytes read without a panic; every event found is listed once; a whole file read again
/// with a torn line after it finds the same events.
pub fn webhook_journal(data: &[u8]) {
    let _ = crate::webhooks::Envelope::read(data);
    let (ids, loaded) = crate::webhooks::journal::read_lines(data);
    assert_eq!(ids.len(), loaded.events, "an event was counted but not listed, or twice");
    let whole = match data.iter().rposition(|b| *b == b'\n') {
        Some(end) => &data[..=end],
        None => &[][..],
    };
    let torn = [whole, b"{\"record\":\"received\""].concat();
    let (again, _) = crate::webhooks::journal::read_lines(&torn);
    assert_eq!(again, ids, "a torn last line changed what was read before it");
}

/// The PROXY protocol parser: the input is the start of a connection. Checked: a decision is
/// final — more bytes never change plain traffic, a refusal or a whole header (the listener
/// peeks until it has one); every strict prefix of a whole header is incomplete; a header fits
/// the listener's buffer; a source it names survives being written as v1 and v2 again.
pub fn proxy_protocol(data: &[u8]) {
    let parsed = pp::parse(data);
    assert_eq!(
        parsed == Parsed::NotProxy,
        pp::starts_with_signature(data) == Some(false),
        "plain traffic and signature detection disagree"
    );
    let more = [data, b"\r\nGET / HTTP/1.1\r\n\r\n"].concat();
    match parsed {
        Parsed::Incomplete => assert!(data.len() < pp::MAX_LEN, "the listener's buffer is full and undecided"),
        Parsed::NotProxy | Parsed::Invalid(_) => {
            assert_eq!(std::mem::discriminant(&pp::parse(&more)), std::mem::discriminant(&parsed), "not final")
        }
        Parsed::Complete { len, source } => {
            assert!(len <= data.len() && len <= pp::MAX_LEN, "a header of {len} bytes");
            if data.starts_with(b"PROXY ") {
                assert!(len <= pp::MAX_V1_LEN, "a v1 header of {len} bytes");
            }
            assert_eq!(pp::parse(&more), parsed, "more bytes changed a whole header");
            assert_eq!(pp::parse(&data[..len]), parsed, "the header alone parses differently");
            for n in 0..len {
                assert_eq!(pp::parse(&data[..n]), Parsed::Incomplete, "a {n}-byte prefix of a whole header");
            }
            if let Some(source) = source {
                let destination = std::net::SocketAddr::new(
                    if source.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
                    443,
                );
                for header in [pp::encode_v1(source, destination), pp::encode_v2(Some((source, destination)), &[])] {
                    assert_eq!(pp::parse(&header), Parsed::Complete { len: header.len(), source: Some(source) });
                }
            }
        }
    }
}
