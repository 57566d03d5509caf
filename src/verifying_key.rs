//! One RS256 verification key, parsed once. A leaf: the config parses its networkless key
//! into one, and the key sets that `keys` fetches are made of them.

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;

/// An RSA public key ready to check RS256 signatures; parsing happens here, never per request.
pub struct VerifyingKey {
    /// The key id it is published under (`None` for a networkless PEM key).
    pub kid: Option<String>,
    /// Modulus size in bits.
    pub bits: usize,
    /// The JWK form (`n`, `e` base64url), kept so a key set can be persisted and shown.
    pub n: String,
    /// The public exponent, base64url.
    pub e: String,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("bits", &self.bits).finish()
    }
}

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

impl VerifyingKey {
    /// Builds a key from big-endian modulus and exponent bytes.
    pub fn from_raw_components(n: &[u8], e: &[u8], kid: Option<String>) -> Result<Self, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = match n.first() {
            Some(first) => n.len() * 8 - first.leading_zeros() as usize,
            None => 0,
        };
        if bits < MIN_RSA_BITS {
            return Err(format!("RSA key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum"));
        }
        if bits > 8192 {
            return Err(format!("RSA key of {bits} bits is above the 8192-bit maximum"));
        }
        let key = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(|e| format!("RSA key rejected: {e}"))?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Ok(VerifyingKey { kid, bits, n: b64.encode(n), e: b64.encode(e), key })
    }

    /// Builds a key from the base64url `n` and `e` of a JWK.
    pub fn from_jwk_components(n: &str, e: &str, kid: Option<String>) -> Result<Self, String> {
        let n = decode_b64url(n).ok_or("modulus n is not base64url")?;
        let e = decode_b64url(e).ok_or("exponent e is not base64url")?;
        Self::from_raw_components(&n, &e, kid)
    }

    /// Parses a PEM public key (`BEGIN PUBLIC KEY`, or bare base64 as Clerk's dashboard shows it).
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<Self, String> {
        // Environment variables often carry a PEM on one line with literal `\n` escapes.
        let pem = pem.replace("\\n", "\n");
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(body.trim_end_matches('=')))
            .map_err(|_| "the PEM body is not base64".to_string())?;
        let public = aws_lc_rs::rsa::PublicKey::from_der(&der)
            .map_err(|_| "not an RSA public key (SubjectPublicKeyInfo or PKCS#1)".to_string())?;
        Self::from_raw_components(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
            kid,
        )
    }

    /// True when `signature` is a valid RS256 signature of `message` under this key.
    #[inline]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// Decodes base64url with or without padding.
fn decode_b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}
