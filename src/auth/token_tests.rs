//! Unit tests of token discovery: clerk-semantics §1.1 (cookies), §1.2 (Authorization header),
//! §1.4 (cookie suffix vectors), §1.5 (suffixed vs un-suffixed, §7 cases 49–55) and §1.6
//! (header wins).
//!
//! Cookie tokens here are unsigned: discovery only ever reads unverified claims.

use base64::Engine;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::config::{cookie_suffix, parse_publishable_key};

const PK_LIVE: &str = "pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const PK_TEST: &str = "pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const SUFFIX_LIVE: &str = "MqCvchyS";
const SUFFIX_TEST: &str = "vWCgMp3A";
const FAPI: &str = "clerk.inspired.puma-74.lcl.dev";
const IAT: i64 = 1_666_648_250;
const NOW_S: i64 = IAT;

fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    h
}

fn cookies(value: &str) -> HeaderMap {
    headers(&[(COOKIE, value)])
}

fn jwt(payload: Value) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.c2ln", b.encode(r#"{"alg":"RS256","typ":"JWT"}"#), b.encode(payload.to_string()))
}

/// A session cookie of this instance issued at `iat`.
fn session(iat: i64) -> String {
    jwt(json!({"iss": format!("https://{FAPI}"), "iat": iat, "exp": iat + 60, "sub": "user_1"}))
}

/// What `find` picked, as an owned string (or a marker for none / conflict).
fn picked(h: &HeaderMap, pk: Option<&PublishableKey>) -> Option<(String, Carrier)> {
    match find(h, pk, NOW_S) {
        Found::None => None,
        Found::Token(t, c) => Some((t.to_string(), c)),
        Found::OwnedCookie(t) => Some((t, Carrier::Cookie)),
        Found::Conflict(why) => panic!("unexpected conflict: {why}"),
    }
}

fn cookie_token(h: &HeaderMap, pk: Option<&PublishableKey>) -> Option<String> {
    picked(h, pk).map(|(t, c)| {
        assert_eq!(c, Carrier::Cookie);
        t
    })
}

// === §1.2: the Authorization header ===

#[test]
fn authorization_header_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("", None),
        ("Bearer t", Some("t")),
        ("Bearer", Some("Bearer")),
        ("bearer t", None),
        ("BEARER t", None),
        ("Basic x", None),
        ("Basic dXNlcjpwYXNzd29yZA==", None),
        ("eyJ.eyJ.sig", Some("eyJ.eyJ.sig")),
        ("test_header_token", Some("test_header_token")),
        // JS `split(' ', 2)`: anything after the second space is dropped.
        ("Bearer a b", Some("a")),
        ("Bearer a b c", Some("a")),
        // A leading space makes the scheme empty: not Bearer.
        (" t", None),
        ("Bearer\tt", Some("Bearer\tt")),
    ];
    for (value, expected) in cases {
        assert_eq!(header_token(value), *expected, "{value:?}");
    }
}

/// Clerk's `parseAuthorizationHeader` is `[scheme, token] = v.split(' ', 2); if (!token) return
/// scheme; …`: an *empty* second piece counts as no second piece, so the scheme itself becomes
/// the token (and then fails as `token-invalid`). The gateway instead drops such a header and
/// falls through to the cookie, which can accept a request Clerk refuses.
#[test]
fn authorization_header_with_an_empty_second_piece_yields_the_scheme_as_token() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Bearer ", Some("Bearer")),
        ("Bearer  t", Some("Bearer")),
        ("Basic ", Some("Basic")),
        ("t ", Some("t")),
        // `" "` → scheme `""`, which is falsy in JS: no header token.
        (" ", None),
    ];
    for (value, expected) in cases {
        assert_eq!(header_token(value), *expected, "{value:?}");
    }
}

#[test]
fn absent_and_empty_authorization_fall_through_to_the_cookie() {
    let c = "__session=from_cookie";
    assert_eq!(picked(&cookies(c), None), Some(("from_cookie".into(), Carrier::Cookie)));
    let h = headers(&[(AUTHORIZATION, ""), (COOKIE, c)]);
    assert_eq!(picked(&h, None), Some(("from_cookie".into(), Carrier::Cookie)));
    let h = headers(&[(AUTHORIZATION, "Basic x"), (COOKIE, c)]);
    assert_eq!(picked(&h, None), Some(("from_cookie".into(), Carrier::Cookie)));
    assert_eq!(picked(&HeaderMap::new(), None), None);
}

#[test]
fn header_token_wins_over_the_cookie_and_cookies_are_not_read() {
    let h = headers(&[(AUTHORIZATION, "Bearer hdr"), (COOKIE, "__session=ck")]);
    assert_eq!(picked(&h, None), Some(("hdr".into(), Carrier::Header)));
    // Even an undecodable header token wins: it is refused, never replaced by the cookie.
    let h = headers(&[(AUTHORIZATION, "Bearer"), (COOKIE, "__session=ck")]);
    assert_eq!(picked(&h, None), Some(("Bearer".into(), Carrier::Header)));
    // Scheme-less value is the header token.
    let h = headers(&[(AUTHORIZATION, "raw.tok.en"), (COOKIE, "__session=ck")]);
    assert_eq!(picked(&h, None), Some(("raw.tok.en".into(), Carrier::Header)));
    // With a publishable key too.
    let pk = parse_publishable_key(PK_LIVE).unwrap();
    let h = headers(&[
        (AUTHORIZATION, "Bearer hdr"),
        (COOKIE, &format!("__session_{SUFFIX_LIVE}=ck; __client_uat_{SUFFIX_LIVE}=1")),
    ]);
    assert_eq!(picked(&h, Some(&pk)), Some(("hdr".into(), Carrier::Header)));
}

#[test]
fn two_authorization_headers_conflict() {
    for (a, b) in [("Bearer a", "Bearer b"), ("Bearer a", "Bearer a"), ("Basic x", "Bearer b"), ("", "Bearer b")] {
        let h = headers(&[(AUTHORIZATION, a), (AUTHORIZATION, b), (COOKIE, "__session=c")]);
        assert!(matches!(find(&h, None, NOW_S), Found::Conflict(_)), "{a:?} + {b:?}");
    }
}

#[test]
fn a_non_ascii_authorization_value_is_a_header_token_that_cannot_decode() {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap());
    h.insert(COOKIE, HeaderValue::from_static("__session=ck"));
    match find(&h, None, NOW_S) {
        Found::Token(t, Carrier::Header) => {
            assert!(super::super::verify::decode(t, Carrier::Header).is_err())
        }
        other => panic!("{other:?}"),
    }
}

// === §1.1: cookie parsing ===

#[test]
fn cookie_parsing_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("__session=abc", Some("abc")),
        ("a=1; __session=abc; b=2", Some("abc")),
        ("a=1;__session=abc", Some("abc")),
        ("  __session = abc  ", Some("abc")),
        // First occurrence wins.
        ("__session=first; __session=second", Some("first")),
        // A percent-encoded `;` never splits the value.
        ("__session=a%3Bb; x=y", Some("a;b")),
        ("__session=a%2Eb", Some("a.b")),
        // Malformed escapes are kept verbatim, never an error.
        ("__session=%zz", Some("%zz")),
        ("__session=abc%", Some("abc%")),
        ("__session=%E0%A4%A", Some("%E0%A4%A")),
        // Quoted values lose their quotes.
        ("__session=\"abc\"", Some("abc")),
        ("__session=\"a%3Bb\"", Some("a;b")),
        // Names are exact.
        ("__Session=abc", None),
        ("__session_x=abc", None),
        ("x__session=abc", None),
        ("__session", None),
        ("", None),
        // A value may itself contain `=`.
        ("__session=a=b", Some("a=b")),
    ];
    for (value, expected) in cases {
        assert_eq!(cookie_token(&cookies(value), None).as_deref(), *expected, "{value:?}");
    }
}

/// The `cookie` npm package decodes a value with `decodeURIComponent` and, when that throws,
/// keeps the *whole* value verbatim. The gateway decodes the valid escapes and keeps only the
/// malformed ones, producing a value Clerk never sees.
#[test]
fn a_value_with_any_malformed_escape_is_kept_whole() {
    assert_eq!(cookie_token(&cookies("__session=a%20b%zz"), None).as_deref(), Some("a%20b%zz"));
}

/// `getCookie(name) || undefined`: an empty cookie value is no cookie at all in Clerk's SDK.
#[test]
fn an_empty_session_cookie_is_no_token() {
    assert_eq!(cookie_token(&cookies("__session="), None), None);
    assert_eq!(cookie_token(&cookies("__session=\"\""), None), None);
}

#[test]
fn several_cookie_headers_are_all_read_first_wins() {
    let h = headers(&[(COOKIE, "a=1"), (COOKIE, "__session=second_header")]);
    assert_eq!(cookie_token(&h, None).as_deref(), Some("second_header"));
    let h = headers(&[(COOKIE, "__session=one"), (COOKIE, "__session=two")]);
    assert_eq!(cookie_token(&h, None).as_deref(), Some("one"));
}

#[test]
fn without_a_publishable_key_only_the_plain_cookie_is_read() {
    let h = cookies(&format!("__session_{SUFFIX_LIVE}=suffixed; __client_uat_{SUFFIX_LIVE}=1"));
    assert_eq!(cookie_token(&h, None), None);
}

// === §1.4: cookie suffix vectors ===

#[test]
fn cookie_suffix_vectors() {
    let vectors = [
        ("pk_live_ZmFrZS1jbGVyay10ZXN0LmNsZXJrLmFjY291bnRzLmRldiQ=", "qReyu04C"),
        ("pk_test_Y2xlcmsuY2xlcmsuZGV2JA", "QvfNY2dr"),
        ("pk_live_Y2xlcmsuY2xlcmsuZGV2JA", "1Z8AzTQD"),
        ("pk_test_ZW5vdWdoLWFscGFjYS04Mi5jbGVyay5hY2NvdW50cy5sY2xjbGVyay5jb20k", "jtYvyt_H"),
        ("pk_test_eHh4eHh4LXhhYWFhYS1hYS5jbGVyay5hY2NvdW50cy5sY2xjbGVyay5jb20k", "tZJdb-5s"),
        (PK_LIVE, SUFFIX_LIVE),
        (PK_TEST, SUFFIX_TEST),
    ];
    for (pk, suffix) in vectors {
        assert_eq!(cookie_suffix(pk), suffix, "{pk}");
        let parsed = parse_publishable_key(pk).unwrap();
        assert_eq!(parsed.cookie_suffix, suffix, "{pk}");
    }
}

// === §1.5: suffixed vs un-suffixed (§7 49–55) ===

struct Jar {
    s: Option<String>,
    ss: Option<String>,
    u: Option<&'static str>,
    su: Option<&'static str>,
    extra: &'static str,
}

impl Jar {
    fn header(&self, suffix: &str) -> HeaderMap {
        let mut parts = Vec::new();
        if !self.extra.is_empty() {
            parts.push(self.extra.to_string());
        }
        if let Some(s) = &self.s {
            parts.push(format!("__session={s}"));
        }
        if let Some(ss) = &self.ss {
            parts.push(format!("__session_{suffix}={ss}"));
        }
        if let Some(u) = self.u {
            parts.push(format!("__client_uat={u}"));
        }
        if let Some(su) = self.su {
            parts.push(format!("__client_uat_{suffix}={su}"));
        }
        cookies(&parts.join("; "))
    }
}

#[derive(Debug, PartialEq)]
enum Pick {
    Plain,
    Suffixed,
    Nothing,
}

#[test]
fn suffixed_cookie_decision_table() {
    let s = session(IAT);
    let ss = session(IAT - 100);
    let later = session(IAT + 60);
    let foreign = jwt(json!({"iss": "http:whatever", "iat": IAT}));
    let other_instance = jwt(json!({"iss": "https://clerk.other.example", "iat": IAT}));
    let numeric_iss = jwt(json!({"iss": 42, "iat": IAT}));
    let no_iss = jwt(json!({"iat": IAT}));
    let empty_iss = jwt(json!({"iss": "", "iat": IAT}));
    let upper_scheme = jwt(json!({"iss": format!("HTTPS://{FAPI}"), "iat": IAT + 60}));
    let bare_host = jwt(json!({"iss": FAPI, "iat": IAT + 60}));
    let expired_ss = jwt(json!({"iss": format!("https://{FAPI}"), "iat": IAT - 600, "exp": NOW_S - 1}));
    let exp_now_ss = jwt(json!({"iss": format!("https://{FAPI}"), "iat": IAT - 600, "exp": NOW_S}));
    let fresh_ss = jwt(json!({"iss": format!("https://{FAPI}"), "iat": IAT - 10, "exp": NOW_S + 50}));
    let j = jar;
    // (case, pk, jar, expected)
    let cases: Vec<(&str, &str, Jar, Pick)> = vec![
        ("49: only un-suffixed", PK_TEST, j(Some(&s), None, Some("1"), None), Pick::Plain),
        ("49: only un-suffixed (prod)", PK_LIVE, j(Some(&s), None, Some("1"), None), Pick::Plain),
        (
            "50: un-suffixed newer, both uats non-zero",
            PK_TEST,
            j(Some(&later), Some(&s), Some("1"), Some("1")),
            Pick::Plain,
        ),
        ("50: same but suffixed newer", PK_TEST, j(Some(&s), Some(&later), Some("1"), Some("1")), Pick::Suffixed),
        ("51: suffixed uat 0, un-suffixed non-zero", PK_TEST, j(Some(&s), Some(&s), Some("1"), Some("0")), Pick::Plain),
        ("52: prod, both uats 0", PK_LIVE, j(Some(&s), Some(&s), Some("0"), Some("0")), Pick::Suffixed),
        ("53: prod, both valid, same iat", PK_LIVE, j(Some(&s), Some(&s), Some("1"), Some("1")), Pick::Suffixed),
        ("53: dev, both valid, same iat", PK_TEST, j(Some(&s), Some(&s), Some("1"), Some("1")), Pick::Suffixed),
        ("54: foreign iss", PK_TEST, j(Some(&foreign), Some(&ss), None, None), Pick::Suffixed),
        (
            "54: other instance's iss",
            PK_LIVE,
            j(Some(&other_instance), Some(&ss), Some("1"), Some("1")),
            Pick::Suffixed,
        ),
        (
            "54: foreign iss, no suffixed cookie: no fallback",
            PK_LIVE,
            j(Some(&foreign), None, Some("1"), None),
            Pick::Nothing,
        ),
        ("55: non-string iss", PK_TEST, j(Some(&numeric_iss), Some(&ss), Some("1"), Some("1")), Pick::Suffixed),
        ("rule 1: no iss", PK_LIVE, j(Some(&no_iss), Some(&ss), Some("1"), Some("1")), Pick::Plain),
        ("rule 1: empty iss", PK_LIVE, j(Some(&empty_iss), Some(&ss), Some("1"), Some("1")), Pick::Plain),
        ("rule 1: undecodable", PK_LIVE, j(Some("garbage"), Some(&ss), Some("1"), Some("1")), Pick::Plain),
        (
            "rule 2: scheme is case-insensitive",
            PK_LIVE,
            j(Some(&upper_scheme), Some(&s), Some("1"), Some("1")),
            Pick::Plain,
        ),
        ("rule 2: scheme-less iss", PK_LIVE, j(Some(&bare_host), Some(&s), Some("1"), Some("1")), Pick::Plain),
        ("rule 3: neither SU nor SS", PK_LIVE, j(Some(&s), None, Some("1"), None), Pick::Plain),
        ("rule 3: no cookies", PK_LIVE, j(None, None, None, None), Pick::Nothing),
        (
            "rule 6: dev, SU set, U 0, SS expired",
            PK_TEST,
            j(Some(&s), Some(&expired_ss), Some("0"), Some("1")),
            Pick::Plain,
        ),
        (
            "rule 6: dev, exp == now counts as expired",
            PK_TEST,
            j(Some(&s), Some(&exp_now_ss), Some("0"), Some("1")),
            Pick::Plain,
        ),
        ("rule 6: dev, SS not expired", PK_TEST, j(Some(&s), Some(&fresh_ss), Some("0"), Some("1")), Pick::Suffixed),
        ("rule 6: prod never", PK_LIVE, j(Some(&s), Some(&expired_ss), Some("0"), Some("1")), Pick::Suffixed),
        ("rule 7: SU absent, SS present", PK_LIVE, j(Some(&s), Some(&s), Some("1"), None), Pick::Plain),
        ("rule 7: SU absent, SS present, no S", PK_LIVE, j(None, Some(&s), None, None), Pick::Nothing),
        ("rule 8: only suffixed cookies", PK_LIVE, j(None, Some(&s), None, Some("1")), Pick::Suffixed),
        ("rule 8: SU set, no sessions", PK_LIVE, j(None, None, Some("1"), Some("1")), Pick::Nothing),
    ];
    let wrong = wrong_picks(cases);
    assert!(wrong.is_empty(), "wrong picks:\n{}", wrong.join("\n"));
}

fn jar(s: Option<&str>, ss: Option<&str>, u: Option<&'static str>, su: Option<&'static str>) -> Jar {
    Jar { s: s.map(str::to_string), ss: ss.map(str::to_string), u, su, extra: "" }
}

/// In the SDK an absent `__client_uat` reads as `undefined`, and `undefined !== '0'`: rules 4 and
/// 5 treat it as non-zero. The gateway's `nonzero(None)` is false, so both rules are skipped and
/// it falls through to "suffixed".
#[test]
fn an_absent_unsuffixed_client_uat_counts_as_non_zero() {
    let s = session(IAT);
    let later = session(IAT + 60);
    let cases = vec![
        ("rule 4: S newer, SU 1, U absent", PK_LIVE, jar(Some(&later), Some(&s), None, Some("1")), Pick::Plain),
        ("rule 5 (51): SU 0, U absent", PK_LIVE, jar(Some(&s), Some(&s), None, Some("0")), Pick::Plain),
        ("rule 5 (51): SU 0, U absent, dev", PK_TEST, jar(Some(&s), Some(&later), None, Some("0")), Pick::Plain),
    ];
    let wrong = wrong_picks(cases);
    assert!(wrong.is_empty(), "wrong picks:\n{}", wrong.join("\n"));
}

fn wrong_picks(cases: Vec<(&str, &str, Jar, Pick)>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, pk_text, jar, expected) in cases {
        let pk = parse_publishable_key(pk_text).unwrap();
        let h = jar.header(&pk.cookie_suffix);
        let got = cookie_token(&h, Some(&pk));
        let pick = match got {
            None => Pick::Nothing,
            Some(t) if Some(&t) == jar.ss.as_ref() && jar.s.as_ref() != Some(&t) => Pick::Suffixed,
            Some(t) if Some(&t) == jar.s.as_ref() && jar.ss.as_ref() != Some(&t) => Pick::Plain,
            Some(t) => {
                // S and SS are the same string: tell them apart by a marker instead. `AA`
                // appended to the signature segment keeps it canonical base64url (one more zero
                // byte), so the marked token still decodes and its claims still count.
                let marked = Jar {
                    ss: jar.ss.as_ref().map(|v| format!("{v}AA")),
                    s: jar.s.clone(),
                    u: jar.u,
                    su: jar.su,
                    extra: "",
                };
                let again = cookie_token(&marked.header(&pk.cookie_suffix), Some(&pk));
                if again.as_deref() == Some(&format!("{t}AA")) {
                    Pick::Suffixed
                } else {
                    Pick::Plain
                }
            }
        };
        if pick != expected {
            wrong.push(format!("{name}: got {pick:?}, expected {expected:?}"));
        }
    }
    wrong
}

#[test]
fn case_54_several_apps_suffixed_cookies_pick_this_apps() {
    let pk = parse_publishable_key(PK_LIVE).unwrap();
    let ours = session(IAT);
    let foreign = jwt(json!({"iss": "http:whatever", "iat": IAT}));
    let h = cookies(&format!(
        "__session={foreign}; __session_{SUFFIX_TEST}=theirs; __client_uat_{SUFFIX_TEST}=1; \
         __session_{SUFFIX_LIVE}={ours}; __client_uat_{SUFFIX_LIVE}=1; __session_QvfNY2dr=third"
    ));
    assert_eq!(cookie_token(&h, Some(&pk)), Some(ours));
    // And from the other app's point of view.
    let pk_test = parse_publishable_key(PK_TEST).unwrap();
    assert_eq!(cookie_token(&h, Some(&pk_test)).as_deref(), Some("theirs"));
}

/// Clerk reads `__session` as `getCookie(..) || ''` and tests it for truthiness, so an empty
/// `__session=` is "no un-suffixed session": the suffixed pair is used. The gateway treats the
/// empty value as present, decides "un-suffixed" (no `iss`), and hands `""` on as the token, so a
/// signed-in user whose browser still holds an empty `__session` is refused.
#[test]
fn an_empty_unsuffixed_session_does_not_hide_the_suffixed_one() {
    let pk = parse_publishable_key(PK_LIVE).unwrap();
    let ss = session(IAT);
    let h = cookies(&format!("__session=; __client_uat=1; __session_{SUFFIX_LIVE}={ss}; __client_uat_{SUFFIX_LIVE}=1"));
    assert_eq!(cookie_token(&h, Some(&pk)), Some(ss));
}

#[test]
fn percent_encoded_suffixed_cookie_is_decoded() {
    let pk = parse_publishable_key(PK_LIVE).unwrap();
    let h = cookies(&format!("__session_{SUFFIX_LIVE}=a%2Eb%2Ec; __client_uat_{SUFFIX_LIVE}=1"));
    assert_eq!(cookie_token(&h, Some(&pk)).as_deref(), Some("a.b.c"));
}

// === Never panics ===

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn find_never_panics_on_arbitrary_header_bytes(
        auth in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        cookie_values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..3),
        with_pk in any::<bool>(),
        now in any::<i64>(),
    ) {
        let mut h = HeaderMap::new();
        if let Some(a) = &auth {
            if let Ok(v) = HeaderValue::from_bytes(a) {
                h.append(AUTHORIZATION, v);
            }
            let _ = header_token(&String::from_utf8_lossy(a));
        }
        for c in &cookie_values {
            if let Ok(v) = HeaderValue::from_bytes(c) {
                h.append(COOKIE, v);
            }
        }
        let pk = parse_publishable_key(PK_TEST).unwrap();
        let _ = find(&h, with_pk.then_some(&pk), now);
    }

    #[test]
    fn find_never_panics_on_cookie_shaped_input(
        s in "[ -~]{0,60}",
        ss in "[ -~]{0,60}",
        u in "[0-9a-z-]{0,5}",
        su in "[0-9a-z-]{0,5}",
        iss in prop::sample::select(vec![
            Value::Null, json!(1), json!(""), json!("http:whatever"), json!("https://clerk.inspired.puma-74.lcl.dev"),
            json!("HTTPS://"), json!("ħttps://é"), json!([1]),
        ]),
        iat in prop::sample::select(vec![Value::Null, json!(1), json!(-1), json!(1.5), json!("x"), json!(i64::MAX), json!(u64::MAX)]),
        exp in prop::sample::select(vec![Value::Null, json!(0), json!(i64::MIN), json!(1e300), json!("x")]),
        now in any::<i64>(),
    ) {
        let token = jwt(json!({"iss": iss, "iat": iat, "exp": exp}));
        for pk_text in [PK_LIVE, PK_TEST] {
            let pk = parse_publishable_key(pk_text).unwrap();
            let sfx = &pk.cookie_suffix;
            let line = format!(
                "__session={s}; __session_{sfx}={ss}; __client_uat={u}; __client_uat_{sfx}={su}; __session={token}"
            );
            if let Ok(v) = HeaderValue::from_str(&line) {
                let mut h = HeaderMap::new();
                h.insert(COOKIE, v);
                let _ = find(&h, Some(&pk), now);
            }
            let line = format!("__session={token}; __session_{sfx}={token}; __client_uat={u}; __client_uat_{sfx}={su}");
            let mut h = HeaderMap::new();
            h.insert(COOKIE, HeaderValue::from_str(&line).unwrap());
            let _ = find(&h, Some(&pk), now);
        }
    }
}
