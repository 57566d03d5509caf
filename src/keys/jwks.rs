//! Reading a JWKS document into verification keys.
//!
//! One unusable key never spoils the set: keys of other types (EC, OKP, oct), keys published
//! for encryption, keys whose `alg` is not RS256 and RSA keys under 2048 bits are skipped
//! one by one, and every RS256 key that remains loads. A document with no usable key at all
//! is an error, so it can never replace a good set.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use serde::Deserialize;

use super::VerifyingKey;

/// The keys taken from one JWKS document, and what was skipped.
#[derive(Debug, Default)]
pub struct ParsedJwks {
    /// Usable keys by `kid`.
    pub keys: HashMap<String, Arc<VerifyingKey>>,
    /// One line per skipped key, for logs.
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct Document {
    keys: Option<Vec<serde_json::Value>>,
}

/// Parses a JWKS body. Errors say why the document as a whole is unusable.
pub fn parse_jwks(body: &[u8]) -> Result<ParsedJwks, String> {
    let doc: Document = serde_json::from_slice(body).map_err(|e| format!("not a JWKS JSON document: {e}"))?;
    let entries = doc.keys.unwrap_or_default();
    if entries.is_empty() {
        return Err("the JWKS contains no keys".into());
    }
    let mut out = ParsedJwks::default();
    for (i, entry) in entries.into_iter().enumerate() {
        match key_from_entry(entry) {
            Ok(key) => {
                let kid = key.kid.clone().unwrap_or_default();
                out.keys.insert(kid, Arc::new(key));
            }
            Err(why) => out.skipped.push(format!("key {i}: {why}")),
        }
    }
    if out.keys.is_empty() {
        return Err(format!("the JWKS has no usable RS256 key ({})", out.skipped.join("; ")));
    }
    Ok(out)
}

fn key_from_entry(entry: serde_json::Value) -> Result<VerifyingKey, String> {
    let jwk: Jwk = serde_json::from_value(entry).map_err(|e| format!("not a JWK this gateway can read ({e})"))?;
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty()).ok_or("no kid")?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))) {
        return Err(format!("kid {kid}: not a signing key"));
    }
    if let Some(alg) = jwk.common.key_algorithm {
        if alg != KeyAlgorithm::RS256 {
            return Err(format!("kid {kid}: alg {alg:?} is not RS256"));
        }
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            VerifyingKey::from_jwk_components(&rsa.n, &rsa.e, Some(kid.clone())).map_err(|e| format!("kid {kid}: {e}"))
        }
        _ => Err(format!("kid {kid}: not an RSA key")),
    }
}

/// Serialises keys as a JWKS document (for `keys.json`).
pub fn to_jwks_value(keys: &HashMap<String, Arc<VerifyingKey>>) -> serde_json::Value {
    let mut list: Vec<_> = keys
        .iter()
        .map(|(kid, k)| serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": k.n, "e": k.e}))
        .collect();
    list.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
    serde_json::json!({ "keys": list })
}
