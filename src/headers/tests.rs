//! Header hygiene, table-driven: which names are reserved, what `sanitize_request` removes and
//! keeps, when an upgrade counts, what `sanitize_response` passes back — and a property test
//! that no reserved, routing-override or hop-by-hop name survives `sanitize_request`, whatever
//! the client sends.

use super::*;
use crate::config::UpgradeProtocols;
use proptest::prelude::*;

/// Builds a header map from `(name, value)` pairs, appending (so duplicates stay duplicates).
fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("valid name"),
            HeaderValue::from_str(v).expect("valid value"),
        );
    }
    h
}

/// Header lines, as a table row writes them.
type Lines = &'static [(&'static str, &'static str)];

/// The names left in `h`, sorted, for readable assertions.
fn names_of(h: &HeaderMap) -> Vec<String> {
    let mut v: Vec<String> = h.keys().map(|k| k.as_str().to_string()).collect();
    v.sort();
    v
}

fn fold(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// An oracle written independently of `is_reserved`: fold the whole name, then compare.
fn folded_is_reserved(name: &str) -> bool {
    let folded = fold(name);
    ["xclerk", "xauth", "xforwarded"].iter().any(|p| folded.starts_with(p))
        || folded == "forwarded"
        || folded == "xrealip"
}

/// An oracle for `routing_override`: the folded names spelled out here.
fn folded_is_routing(name: &str) -> bool {
    ["xoriginalurl", "xrewriteurl", "xoriginaluri", "xhttpmethodoverride", "xhttpmethod", "xmethodoverride"]
        .contains(&fold(name).as_str())
}

/// The default policy: WebSocket upgrades, no routing-override header kept.
fn default_policy() -> HeaderPolicy {
    HeaderPolicy::default()
}

/// Every name that must never be forwarded in either direction (RFC 9110 §7.6.1 plus the
/// proxy headers, httpoxy's `Proxy` and h2c's `HTTP2-Settings`), spelled out here rather than
/// read from the module.
const HOP: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy",
    "http2-settings",
];

// ---------------------------------------------------------------------------------------------
// is_reserved

#[test]
fn is_reserved_positives() {
    // (name, why it is reserved)
    let cases: &[(&str, &str)] = &[
        // The gateway's own headers, in their canonical spelling.
        ("x-clerk-auth-status", "gateway header"),
        ("x-clerk-auth-reason", "gateway header"),
        ("x-clerk-user-id", "gateway header"),
        ("x-clerk-session-id", "gateway header"),
        ("x-clerk-org-id", "gateway header"),
        ("x-clerk-org-slug", "gateway header"),
        ("x-clerk-org-role", "gateway header"),
        ("x-clerk-org-permissions", "gateway header"),
        ("x-clerk-actor", "gateway header"),
        ("x-auth-bypass", "gateway header"),
        ("x-auth-degraded", "gateway header"),
        ("x-forwarded-for", "gateway header"),
        ("x-forwarded-proto", "gateway header"),
        ("x-forwarded-host", "gateway header"),
        // T07: the other forwarded headers the gateway does not set are still the client's lie.
        ("x-forwarded-uri", "T07"),
        ("x-forwarded-prefix", "T07"),
        ("x-forwarded-port", "T07"),
        ("x-forwarded-server", "T07"),
        ("forwarded", "RFC 7239"),
        ("x-real-ip", "T11"),
        ("X-Real-IP", "T11, case"),
        ("x_real_ip", "T11, underscore"),
        ("xrealip", "T11, no separators"),
        // T01: underscore aliases.
        ("X_Auth_User", "T01"),
        ("X_Auth_Bypass", "T01"),
        ("X_Forwarded_For", "T01"),
        ("x_clerk_user_id", "T01"),
        ("X_CLERK_USER_ID", "T01, upper"),
        // T02: every other separator a CGI/PHP/nginx stack collapses to `_`.
        ("X.Auth.User", "T02"),
        ("X~Auth~User", "T02"),
        ("X+Auth+User", "T02"),
        ("x.auth.bypass", "T02"),
        ("X!Clerk!User!Id", "T02"),
        ("x|clerk|org|role", "T02"),
        ("x'auth'degraded", "T02"),
        ("x^forwarded^for", "T02"),
        ("x`forwarded`host", "T02"),
        ("x#clerk$user%id&", "T02, mixed separators"),
        ("X-CLERK-USER-ID", "T02, upper"),
        ("x-ClErK-uSeR-iD", "T02, mixed case"),
        ("x--clerk__user..id", "T02, doubled separators"),
        ("-x-auth-bypass-", "separators at the ends"),
        ("xauthbypass", "no separators at all"),
        ("xclerkuserid", "no separators at all"),
        ("xforwardedfor", "no separators at all"),
        ("for-warded", "forwarded, split"),
        ("FORWARDED", "forwarded, upper"),
        // Prefix rules are prefix rules: these look unrelated but fold onto a reserved prefix.
        ("xclerkish", "folds to xclerk…: reserved by design"),
        ("x-authority", "folds to xauth…: reserved by design"),
        ("xauthority", "folds to xauth…: reserved by design"),
        ("x-auth", "the bare prefix"),
        ("x-clerk", "the bare prefix"),
        ("x-forwarded", "the bare prefix"),
        // Long names: the prefix still decides, however long the rest is.
        ("x-clerk-a-very-long-header-name-that-goes-on-and-on-and-on", "long name"),
        ("x-forwarded-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "long name"),
    ];
    for (name, why) in cases {
        assert!(is_reserved(name), "{name:?} must be reserved ({why})");
        assert!(folded_is_reserved(name), "oracle disagrees on {name:?}");
    }
}

#[test]
fn is_reserved_negatives() {
    let cases: &[(&str, &str)] = &[
        ("authorization", "the token: forwarded unchanged"),
        ("cookie", "the session cookie: forwarded unchanged"),
        ("host", "preserved"),
        ("x-request-id", "ordinary"),
        ("x-user-id", "not ours (T04/T05 are about our own names)"),
        ("x-org-role", "not ours"),
        ("content-type", "ordinary"),
        ("user-agent", "ordinary"),
        ("x-clerc-user-id", "near miss: clerc"),
        ("x-clrk-user-id", "near miss: clrk"),
        ("x-aut-bypass", "near miss: aut"),
        ("x-forward-for", "near miss: forward, not forwarded"),
        ("forwarded-for", "exact rule only: forwardedfor is not forwarded"),
        ("forwardedx", "exact rule only"),
        ("x-real-ip-2", "exact rule only: xrealip2"),
        ("x-real", "shorter than xrealip"),
        ("y-clerk-user-id", "prefix must start at the beginning"),
        ("my-x-clerk-user-id", "prefix must start at the beginning"),
        ("clerk-user-id", "no leading x"),
        ("auth", "no leading x"),
        ("x", "too short"),
        ("x-", "too short"),
        ("x-cler", "too short"),
        ("x-au", "too short"),
        ("x-forwarde", "too short"),
        ("", "empty"),
        ("---", "separators only"),
        ("x-1-clerk", "a digit is alphanumeric and breaks the prefix"),
        ("x-client-id", "shares x-cl with x-clerk"),
    ];
    for (name, why) in cases {
        assert!(!is_reserved(name), "{name:?} must not be reserved ({why})");
        assert!(!folded_is_reserved(name), "oracle disagrees on {name:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// sanitize_request

#[test]
fn sanitize_request_removes_reserved_in_every_spelling_and_keeps_the_rest() {
    let mut h = map(&[
        ("x-clerk-user-id", "user_evil"),
        ("X_Clerk_User_Id", "user_evil"),
        ("x.auth.bypass", "true"),
        ("X~Auth~User", "admin"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x_forwarded_proto", "https"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
        ("authorization", "Bearer abc.def.ghi"),
        ("cookie", "__session=abc; theme=dark"),
        ("host", "app.example.com"),
        ("x-request-id", "r-1"),
        ("accept", "*/*"),
    ]);
    let upgrade = sanitize_request(&mut h, Version::HTTP_11, &default_policy());
    assert_eq!(upgrade, None);
    assert_eq!(names_of(&h), ["accept", "authorization", "cookie", "host", "x-request-id"]);
    // Kept headers are byte-identical.
    assert_eq!(h["authorization"], "Bearer abc.def.ghi");
    assert_eq!(h["cookie"], "__session=abc; theme=dark");
    assert_eq!(h["host"], "app.example.com");
}

#[test]
fn sanitize_request_removes_connection_listed_and_hop_by_hop() {
    // (headers in, names expected out)
    let cases: &[(Lines, &[&str])] = &[
        // Connection-listed custom header.
        (&[("connection", "X-Custom-Hop"), ("x-custom-hop", "1"), ("accept", "*/*")], &["accept"]),
        // Several tokens, odd spacing, empty list elements, several Connection lines.
        (
            &[
                ("connection", " keep-alive ,, X-A,x-b "),
                ("connection", "X-C"),
                ("x-a", "1"),
                ("x-b", "1"),
                ("x-c", "1"),
                ("x-d", "1"),
            ],
            &["x-d"],
        ),
        // Every hop-by-hop header, none listed in Connection.
        (
            &[
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("trailer", "Expires"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("proxy-authenticate", "Basic"),
                ("proxy-connection", "keep-alive"),
                ("proxy", "http://evil.example"),
                ("authorization", "Bearer t"),
            ],
            &["authorization"],
        ),
        // T06: Connection may list the gateway's own names; they are reserved anyway, and the
        // gateway sets its own later (the proxy tests check that they still arrive).
        (
            &[
                ("connection", "close, X-User-Id, X-Auth-Bypass, X-Forwarded-For"),
                ("x-user-id", "victim"),
                ("x-auth-bypass", "true"),
                ("x-forwarded-for", "10.0.0.1"),
                ("accept", "*/*"),
            ],
            &["accept"],
        ),
        // A Connection token that is not a valid header name is ignored, not fatal.
        (&[("connection", "x-ok, bad name, (x)"), ("x-ok", "1"), ("x-keep", "1")], &["x-keep"]),
    ];
    for (input, expected) in cases {
        let mut h = map(input);
        let _ = sanitize_request(&mut h, Version::HTTP_11, &default_policy());
        assert_eq!(names_of(&h), *expected, "input: {input:?}");
    }
}

#[test]
fn sanitize_request_detects_upgrade_only_for_http11_with_connection_upgrade() {
    // (headers, version, expected upgrade protocol)
    let ws: Lines = &[("connection", "Upgrade"), ("upgrade", "websocket")];
    let cases: &[(Lines, Version, Option<&str>)] = &[
        (ws, Version::HTTP_11, Some("websocket")),
        (&[("connection", "keep-alive, upgrade"), ("upgrade", "websocket")], Version::HTTP_11, Some("websocket")),
        (&[("connection", "Upgrade"), ("upgrade", "WebSocket")], Version::HTTP_11, Some("WebSocket")),
        // Only allowed entries are passed on, as spelled; versions ride along.
        (&[("connection", "upgrade"), ("upgrade", "h2c, websocket/13")], Version::HTTP_11, Some("websocket/13")),
        (
            &[("connection", "upgrade"), ("upgrade", "irc/6.9"), ("upgrade", "websocket")],
            Version::HTTP_11,
            Some("websocket"),
        ),
        // h2c (issue #8, item 1), and anything else not allowed: a plain request.
        (&[("connection", "UPGRADE"), ("upgrade", "h2c")], Version::HTTP_11, None),
        (
            &[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c"), ("http2-settings", "AAMA")],
            Version::HTTP_11,
            None,
        ),
        (&[("connection", "upgrade"), ("upgrade", "HTTP/2.0, TLS/1.0")], Version::HTTP_11, None),
        (&[("connection", "upgrade"), ("upgrade", "irc/6.9")], Version::HTTP_11, None),
        (&[("connection", "upgrade"), ("upgrade", " , ")], Version::HTTP_11, None),
        (
            &[("connection", "keep-alive"), ("connection", "Upgrade"), ("upgrade", "websocket")],
            Version::HTTP_11,
            Some("websocket"),
        ),
        // Not listed in Connection: not an upgrade (and Upgrade is stripped as hop-by-hop).
        (&[("upgrade", "websocket")], Version::HTTP_11, None),
        (&[("connection", "keep-alive"), ("upgrade", "websocket")], Version::HTTP_11, None),
        // Listed, but no Upgrade header.
        (&[("connection", "upgrade")], Version::HTTP_11, None),
        // `upgraded` is not `upgrade`.
        (&[("connection", "upgraded"), ("upgrade", "websocket")], Version::HTTP_11, None),
        // Other versions never upgrade this way.
        (ws, Version::HTTP_10, None),
        (ws, Version::HTTP_2, None),
        (ws, Version::HTTP_09, None),
    ];
    for (input, version, expected) in cases {
        let mut h = map(input);
        let got = sanitize_request(&mut h, *version, &default_policy());
        assert_eq!(got.as_ref().map(|v| v.header().to_str().unwrap()), *expected, "input: {input:?} {version:?}");
        // Whatever the verdict, the pair never survives in the map: the proxy re-adds it.
        assert!(!h.contains_key(header::CONNECTION), "{input:?}");
        assert!(!h.contains_key(header::UPGRADE), "{input:?}");
        assert!(!h.contains_key("http2-settings"), "{input:?}");
    }
}

#[test]
fn sanitize_request_strips_reserved_before_reading_connection() {
    // A reserved header listed in Connection is gone either way; a reserved-looking
    // `Connection` token cannot resurrect or protect anything.
    let mut h = map(&[("connection", "x-clerk-user-id"), ("x-clerk-user-id", "user_evil"), ("x-app", "1")]);
    assert_eq!(sanitize_request(&mut h, Version::HTTP_11, &default_policy()), None);
    assert_eq!(names_of(&h), ["x-app"]);
}

#[test]
fn an_empty_allow_list_turns_every_upgrade_into_a_plain_request() {
    let policy = HeaderPolicy { upgrade_protocols: UpgradeProtocols::new(&[]).unwrap(), ..HeaderPolicy::default() };
    let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("x-app", "1")]);
    assert_eq!(sanitize_request(&mut h, Version::HTTP_11, &policy), None);
    assert_eq!(names_of(&h), ["x-app"]);
}

#[test]
fn routing_override_headers_are_stripped_in_every_spelling() {
    let positives = [
        "X-Original-URL",
        "x-rewrite-url",
        "X-Original-URI",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X_Original_URL",
        "x.http.method.override",
        "XMETHODOVERRIDE",
    ];
    for name in positives {
        assert!(routing_override(name).is_some(), "{name}");
        assert!(folded_is_routing(name), "oracle disagrees on {name}");
    }
    let negatives =
        ["X-Original-Host", "X-HTTP-Method-Overrides", "X-Method", "Original-URL", "X-Original-URL-Extra", "x"];
    for name in negatives {
        assert_eq!(routing_override(name), None, "{name}");
        assert!(!folded_is_routing(name), "oracle disagrees on {name}");
    }

    let lines: Lines = &[
        ("x-original-url", "/api/admin"),
        ("X_Rewrite_URL", "/api/admin"),
        ("x-http-method-override", "DELETE"),
        ("x.method.override", "DELETE"),
        ("x-request-id", "r-1"),
    ];
    let mut h = map(lines);
    let _ = sanitize_request(&mut h, Version::HTTP_11, &default_policy());
    assert_eq!(names_of(&h), ["x-request-id"]);

    // An allow-listed name is kept in every spelling; the others still go.
    let policy = HeaderPolicy { allow_routing_headers: vec!["x-http-method-override"], ..HeaderPolicy::default() };
    let mut h = map(lines);
    let _ = sanitize_request(&mut h, Version::HTTP_11, &policy);
    assert_eq!(names_of(&h), ["x-http-method-override", "x-request-id"]);
    let mut h = map(&[("X_HTTP_Method_Override", "PUT")]);
    let _ = sanitize_request(&mut h, Version::HTTP_11, &policy);
    assert_eq!(names_of(&h), ["x_http_method_override"]);
    assert_eq!(routing_override("x.method.override"), Some("x-method-override"));
}

#[test]
fn http2_cookie_fields_are_joined_and_http11_ones_are_not() {
    let lines: Lines = &[("cookie", "a=1"), ("cookie", "b=2; c=3"), ("accept", "*/*")];
    for version in [Version::HTTP_2, Version::HTTP_3] {
        let mut h = map(lines);
        let _ = sanitize_request(&mut h, version, &default_policy());
        let cookies: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"], "{version:?}");
    }
    let mut h = map(lines);
    let _ = sanitize_request(&mut h, Version::HTTP_11, &default_policy());
    assert_eq!(h.get_all(header::COOKIE).iter().count(), 2);
    // A single field is left as it is.
    let mut h = map(&[("cookie", "a=1")]);
    let _ = sanitize_request(&mut h, Version::HTTP_2, &default_policy());
    assert_eq!(h[header::COOKIE], "a=1");
}

#[test]
fn a_101_is_accepted_only_when_it_switches_to_a_requested_protocol() {
    let mut h = map(&[("connection", "upgrade"), ("upgrade", "h2c, WebSocket/13")]);
    let requested = sanitize_request(&mut h, Version::HTTP_11, &default_policy()).expect("websocket requested");
    assert_eq!(requested.header(), "WebSocket/13");
    // (101 response headers, accepted)
    let cases: &[(Lines, bool)] = &[
        (&[("upgrade", "websocket")], true),
        (&[("upgrade", "WEBSOCKET/13")], true),
        (&[("upgrade", "h2c")], false),
        (&[("upgrade", "websocket, h2c")], false),
        (&[("upgrade", "websocket"), ("upgrade", "h2c")], false),
        (&[("upgrade", "")], false),
        (&[], false),
    ];
    for (response, accepted) in cases {
        assert_eq!(requested.accepts(&map(response)), *accepted, "{response:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// sanitize_response

#[test]
fn sanitize_response_strips_hop_by_hop_except_on_101() {
    let upstream = [
        ("connection", "Upgrade, X-Internal"),
        ("upgrade", "websocket"),
        ("x-internal", "secret"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("trailer", "Expires"),
        ("proxy-authenticate", "Basic"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("content-type", "text/plain"),
    ];

    // Any ordinary response: every hop-by-hop and Connection-listed header is gone.
    let mut h = map(&upstream);
    sanitize_response(&mut h, false);
    assert_eq!(names_of(&h), ["content-type", "sec-websocket-accept"]);

    // 101: the client needs exactly Connection: upgrade and the upstream's Upgrade.
    let mut h = map(&upstream);
    sanitize_response(&mut h, true);
    assert_eq!(names_of(&h), ["connection", "content-type", "sec-websocket-accept", "upgrade"]);
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h.get_all("connection").iter().count(), 1);

    // 101 without an Upgrade from the upstream: nothing is invented.
    let mut h = map(&[("connection", "upgrade"), ("content-type", "text/plain")]);
    sanitize_response(&mut h, true);
    assert_eq!(names_of(&h), ["content-type"]);
}

#[test]
fn sanitize_response_keeps_end_to_end_headers_byte_identical() {
    let mut h = map(&[
        ("set-cookie", "__session=a; Path=/; HttpOnly"),
        ("set-cookie", "__client_uat=1; Path=/"),
        ("cache-control", "no-store"),
        ("x-clerk-auth-status", "signed-in"),
    ]);
    let before = h.clone();
    sanitize_response(&mut h, false);
    assert_eq!(h, before);
}

// ---------------------------------------------------------------------------------------------
// Property: nothing reserved, routing-override or hop-by-hop survives, everything else does.

/// Separators a CGI/PHP/nginx stack would collapse (all valid header-name characters).
const SEPARATORS: &[char] = &['-', '_', '.', '~', '+', '!', '#', '$', '%', '&', '\'', '*', '^', '`', '|'];

/// One of these names (given as words) in a random spelling: random case, random separators
/// between words.
fn spelled(words: Vec<Vec<&'static str>>) -> impl Strategy<Value = String> {
    (
        prop::sample::select(words),
        prop::collection::vec(prop::collection::vec(prop::sample::select(SEPARATORS), 0..3), 6),
        prop::collection::vec(any::<bool>(), 40),
    )
        .prop_map(|(words, seps, upper)| {
            let mut s = String::new();
            for (i, w) in words.iter().enumerate() {
                s.push_str(w);
                if i + 1 < words.len() {
                    s.extend(seps[i].iter());
                }
            }
            s.chars().zip(upper.iter().cycle()).map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c }).collect()
        })
}

/// A reserved name in a random spelling.
fn reserved_variant() -> impl Strategy<Value = String> {
    spelled(vec![
        vec!["x", "clerk", "user", "id"],
        vec!["x", "clerk", "org", "role"],
        vec!["x", "clerk", "auth", "status"],
        vec!["x", "auth", "bypass"],
        vec!["x", "auth", "user"],
        vec!["x", "auth", "degraded"],
        vec!["x", "forwarded", "for"],
        vec!["x", "forwarded", "host"],
        vec!["x", "forwarded", "uri"],
        vec!["x", "real", "ip"],
        vec!["forwarded"],
        vec!["for", "warded"],
    ])
}

/// A routing-override name in a random spelling.
fn routing_variant() -> impl Strategy<Value = String> {
    spelled(vec![
        vec!["x", "original", "url"],
        vec!["x", "rewrite", "url"],
        vec!["x", "original", "uri"],
        vec!["x", "http", "method", "override"],
        vec!["x", "http", "method"],
        vec!["x", "method", "override"],
    ])
}

/// Any header name: reserved and routing-override variants, hop-by-hop names in any case, and
/// random tokens.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => reserved_variant(),
        2 => routing_variant(),
        2 => prop::sample::select(HOP.to_vec()).prop_map(|s| s.to_ascii_uppercase()),
        2 => prop::sample::select(HOP.to_vec()).prop_map(str::to_string),
        4 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}",
        1 => prop::sample::select(vec!["authorization", "cookie", "cookie", "host", "x-request-id"])
            .prop_map(str::to_string),
    ]
}

/// Visible ASCII values (what a header value can always hold).
fn any_value() -> impl Strategy<Value = String> {
    "[ -~]{0,24}".prop_map(|s| s.trim().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sanitize_request_leaves_nothing_reserved_or_hop_by_hop(
        pairs in prop::collection::vec((any_name(), any_value()), 0..24),
        connection in prop::collection::vec(any_name(), 0..4),
        upgrades in prop::collection::vec(
            prop::sample::select(vec!["websocket", "WebSocket/13", "h2c", "h2c, websocket", "HTTP/2.0", "irc/6.9", ""]),
            0..3,
        ),
        version in prop::sample::select(vec![Version::HTTP_10, Version::HTTP_11, Version::HTTP_2]),
    ) {
        let mut h = HeaderMap::new();
        for (k, v) in &pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        if !connection.is_empty() {
            h.append(
                header::CONNECTION,
                HeaderValue::from_str(&connection.join(", ")).unwrap(),
            );
        }
        for u in &upgrades {
            h.append(header::UPGRADE, HeaderValue::from_static(u));
        }
        let before = h.clone();
        // Every name any Connection field lists — the generated pairs may carry one too.
        let listed: Vec<HeaderName> = before
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();

        let upgrade = sanitize_request(&mut h, version, &default_policy());

        for name in h.keys() {
            prop_assert!(!is_reserved(name.as_str()), "reserved {name} survived");
            prop_assert!(!folded_is_reserved(name.as_str()), "reserved {name} survived (oracle)");
            prop_assert!(!folded_is_routing(name.as_str()), "routing-override {name} survived");
            prop_assert!(!HOP.contains(&name.as_str()), "hop-by-hop {name} survived");
            prop_assert!(!listed.contains(name), "Connection-listed {name} survived");
        }
        // Nothing else is touched: every other header keeps all its values, in order (an
        // HTTP/2 request's several cookies become one, joined with "; ").
        for name in before.keys() {
            let dropped = folded_is_reserved(name.as_str())
                || folded_is_routing(name.as_str())
                || HOP.contains(&name.as_str())
                || listed.contains(name);
            if !dropped {
                let was: Vec<&[u8]> = before.get_all(name).iter().map(HeaderValue::as_bytes).collect();
                let is: Vec<&[u8]> = h.get_all(name).iter().map(HeaderValue::as_bytes).collect();
                if *name == header::COOKIE && version == Version::HTTP_2 && was.len() > 1 {
                    let joined = was.join(&b"; "[..]);
                    prop_assert_eq!(is, vec![&joined[..]]);
                } else {
                    prop_assert_eq!(was, is, "{} changed", name);
                }
            }
        }
        // An upgrade is reported only for HTTP/1.1 with Connection: upgrade, and it is exactly
        // the client's WebSocket entries, never h2c or HTTP.
        let says_upgrade = listed.contains(&header::UPGRADE);
        let websocket: Vec<&str> = before
            .get_all(header::UPGRADE)
            .iter()
            .flat_map(|u| u.to_str().unwrap().split(','))
            .map(str::trim)
            .filter(|e| e.split('/').next().is_some_and(|n| n.eq_ignore_ascii_case("websocket")))
            .collect();
        match upgrade {
            Some(v) => {
                prop_assert_eq!(version, Version::HTTP_11);
                prop_assert!(says_upgrade);
                prop_assert_eq!(v.header().to_str().unwrap(), websocket.join(", "));
            }
            None => prop_assert!(version != Version::HTTP_11 || !says_upgrade || websocket.is_empty()),
        }
    }
}
