//! Minting Clerk-shaped RS256 session tokens with a local private key: for `clerkgate token`,
//! the demo, tests and benches. Never used on the request path.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

use crate::auth::verify::CAT_SESSION;

/// An RSA private key that signs session tokens.
pub struct SigningKey {
    encoding: EncodingKey,
    /// The key parsed once, for [`SigningKey::sign_with_header`].
    pair: KeyPair,
    private_pem: String,
    public_spki_der: Vec<u8>,
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

/// PEM armour around DER.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<Self, String> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("RSA key generation failed: {e}"))?;
        let pkcs8 = pair.as_der().map_err(|e| e.to_string())?;
        Self::from_pem(&pem_encode("PRIVATE KEY", pkcs8.as_ref()))
    }

    /// Loads a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let der = pem_decode(pem).ok_or("the key file is not PEM")?;
        let pair = KeyPair::from_pkcs8(&der)
            .or_else(|_| KeyPair::from_der(&der))
            .map_err(|e| format!("not an RSA private key: {e}"))?;
        let public = pair.public_key();
        let spki = public.as_der().map_err(|e| e.to_string())?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("jsonwebtoken refused the key: {e}"))?;
        let (spki, n, e) = (
            spki.as_ref().to_vec(),
            b64.encode(public.modulus().big_endian_without_leading_zero()),
            b64.encode(public.exponent().big_endian_without_leading_zero()),
        );
        Ok(SigningKey { encoding, pair, private_pem: pem.to_string(), public_spki_der: spki, n, e })
    }

    /// The private key as PEM.
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// The public key as a `BEGIN PUBLIC KEY` PEM (what `clerk.jwt_key` takes).
    pub fn public_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.public_spki_der)
    }

    /// A JWK for this key under `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": self.n, "e": self.e})
    }

    /// A JWKS holding this key under `kid`.
    pub fn jwks(&self, kid: &str) -> Value {
        json!({ "keys": [self.jwk(kid)] })
    }

    /// Signs `claims` with `header` fields merged over the Clerk defaults (`alg`, `typ`, `kid`, `cat`).
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        header.typ = Some("JWT".into());
        header.extras.insert("cat".to_string(), CAT_SESSION.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Signs with a completely custom header (for tests of header handling).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        if self.pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).is_err() {
            return input + ".";
        }
        format!("{input}.{}", b64.encode(sig))
    }
}

/// The claims of a Clerk-shaped session token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// `sub`.
    pub sub: String,
    /// `sid`.
    pub sid: String,
    /// Lifetime from `iat` to `exp`, seconds.
    pub ttl_s: i64,
    /// `azp`.
    pub azp: Option<String>,
    /// `iss`.
    pub iss: Option<String>,
    /// Active organisation id.
    pub org_id: Option<String>,
    /// Role in it (`org:admin`).
    pub org_role: Option<String>,
    /// Organisation slug.
    pub org_slug: Option<String>,
    /// Organisation permissions (`org:feature:perm`).
    pub org_permissions: Vec<String>,
    /// Encode the organisation as v2 claims (`v: 2`, `o`, `fea`, `fpm`).
    pub claims_v2: bool,
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            sub: "user_2demo".into(),
            sid: "sess_2demo".into(),
            ttl_s: 60,
            azp: None,
            iss: None,
            org_id: None,
            org_role: None,
            org_slug: None,
            org_permissions: Vec::new(),
            claims_v2: false,
        }
    }
}

impl TokenSpec {
    /// The claims as Clerk mints them at `now_s`: `nbf = iat − 10`, `exp = iat + ttl`.
    pub fn claims(&self, now_s: i64) -> Value {
        let mut c = Map::new();
        c.insert("sub".into(), self.sub.clone().into());
        c.insert("sid".into(), self.sid.clone().into());
        c.insert("iat".into(), now_s.into());
        c.insert("nbf".into(), (now_s - 10).into());
        c.insert("exp".into(), (now_s + self.ttl_s).into());
        c.insert("sts".into(), "active".into());
        c.insert("fva".into(), json!([0, -1]));
        if let Some(azp) = &self.azp {
            c.insert("azp".into(), azp.clone().into());
        }
        if let Some(iss) = &self.iss {
            c.insert("iss".into(), iss.clone().into());
        }
        if let Some(org) = &self.org_id {
            if self.claims_v2 {
                c.insert("v".into(), 2.into());
                let mut o = Map::new();
                o.insert("id".into(), org.clone().into());
                if let Some(slug) = &self.org_slug {
                    o.insert("slg".into(), slug.clone().into());
                }
                if let Some(role) = &self.org_role {
                    o.insert("rol".into(), role.trim_start_matches("org:").into());
                }
                let (fea, per, fpm) = encode_v2_permissions(&self.org_permissions);
                if !fea.is_empty() {
                    c.insert("fea".into(), fea.into());
                    o.insert("per".into(), per.into());
                    o.insert("fpm".into(), fpm.into());
                }
                c.insert("o".into(), Value::Object(o));
            } else {
                c.insert("org_id".into(), org.clone().into());
                if let Some(slug) = &self.org_slug {
                    c.insert("org_slug".into(), slug.clone().into());
                }
                if let Some(role) = &self.org_role {
                    c.insert("org_role".into(), role.clone().into());
                }
                c.insert("org_permissions".into(), json!(self.org_permissions));
            }
        } else if self.claims_v2 {
            c.insert("v".into(), 2.into());
        }
        Value::Object(c)
    }
}

/// Encodes `org:<feature>:<perm>` permissions as v2 `fea`, `o.per`, `o.fpm`.
fn encode_v2_permissions(perms: &[String]) -> (String, String, String) {
    let mut features: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut pairs = Vec::new();
    for p in perms {
        let p = p.strip_prefix("org:").unwrap_or(p);
        let Some((feature, perm)) = p.split_once(':') else {
            continue;
        };
        if !features.iter().any(|f| f == feature) {
            features.push(feature.to_string());
        }
        if !names.iter().any(|n| n == perm) {
            names.push(perm.to_string());
        }
        pairs.push((feature.to_string(), perm.to_string()));
    }
    let masks: Vec<String> = features
        .iter()
        .map(|f| {
            let mut mask: u128 = 0;
            for (pf, pp) in &pairs {
                if pf == f {
                    if let Some(bit) = names.iter().position(|n| n == pp) {
                        mask |= 1u128 << bit.min(127);
                    }
                }
            }
            mask.to_string()
        })
        .collect();
    let fea = features.iter().map(|f| format!("o:{f}")).collect::<Vec<_>>().join(",");
    (fea, names.join(","), masks.join(","))
}
