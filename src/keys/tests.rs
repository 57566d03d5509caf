//! The JWKS and PEM parsers never panic on hostile input, keep every usable RS256 key of a
//! mixed set, and refuse documents with none.

use super::*;
use proptest::prelude::*;

fn rsa_jwk(kid: &str) -> serde_json::Value {
    let key = crate::mint::SigningKey::generate().expect("key");
    key.jwk(kid)
}

#[test]
fn a_mixed_set_keeps_its_rs256_keys_and_skips_the_rest() {
    let doc = serde_json::json!({"keys": [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "oct", "kid": "oct", "k": "c2VjcmV0"},
        {"kty": "OKP", "kid": "okp", "crv": "Ed25519", "x": "AA"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
        rsa_jwk("good"),
        {"no": "kid at all"},
    ]});
    let parsed = parse_jwks(doc.to_string().as_bytes()).expect("one usable key");
    assert_eq!(parsed.keys.keys().cloned().collect::<Vec<_>>(), vec!["good".to_string()]);
    assert_eq!(parsed.skipped.len(), 6, "{:?}", parsed.skipped);
}

#[test]
fn documents_without_a_usable_key_are_errors() {
    for body in [
        "",
        "<html>",
        "{}",
        "{\"keys\":[]}",
        "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"x\"}]}",
        "{\"keys\": 5}",
        "{\"keys\":[",
    ] {
        assert!(parse_jwks(body.as_bytes()).is_err(), "{body:?} must not load");
    }
}

#[test]
fn a_jwk_round_trips_through_keys_json_form() {
    let jwk = rsa_jwk("k1");
    let parsed = parse_jwks(serde_json::json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
    let again = parse_jwks(to_jwks_value(&parsed.keys).to_string().as_bytes()).unwrap();
    assert_eq!(again.keys["k1"].n, parsed.keys["k1"].n);
}

proptest! {
    #[test]
    fn parse_jwks_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_jwks(&body);
    }

    #[test]
    fn parse_jwks_never_panics_on_jwk_shaped_json(
        kty in "(RSA|EC|oct|OKP|[a-z]{0,3})",
        n in "[A-Za-z0-9_=-]{0,40}",
        e in "[A-Za-z0-9_=-]{0,8}",
        alg in proptest::option::of("(RS256|RS512|ES256|none|[A-Z0-9]{0,5})"),
        use_ in proptest::option::of("(sig|enc|[a-z]{0,3})"),
    ) {
        let mut key = serde_json::json!({"kty": kty, "kid": "k", "n": n, "e": e});
        if let Some(a) = alg { key["alg"] = a.into(); }
        if let Some(u) = use_ { key["use"] = u.into(); }
        let _ = parse_jwks(serde_json::json!({"keys": [key]}).to_string().as_bytes());
    }

    #[test]
    fn pem_parsing_never_panics(text in "(-----BEGIN PUBLIC KEY-----\\n)?[A-Za-z0-9+/=\\\\n \\n]{0,300}(-----END PUBLIC KEY-----)?") {
        let _ = VerifyingKey::from_pem(&text, None);
    }

    #[test]
    fn publishable_key_parsing_never_panics(text in "(pk_(test|live)_)?[A-Za-z0-9+/=_$.-]{0,60}") {
        let _ = crate::config::parse_publishable_key(&text);
    }

    #[test]
    fn admin_moment_parsing_never_panics(text in "\\PC{0,40}") {
        let _ = crate::admin::parse_moment(&text, 0);
    }
}
