//! The Svix (Standard Webhooks) signature, both ways: the gateway verifies Clerk's with it and
//! signs replayed deliveries for the upstream with it. `v1,` + base64 of HMAC-SHA256 over
//! `<svix-id>.<timestamp>.<raw body>`, keyed with the base64 secret after an optional `whsec_`.

use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The HMAC key of a signing secret (`whsec_` optional, then standard base64); `None` when it
/// does not decode or decodes to nothing.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(encoded).ok().filter(|k| !k.is_empty())
}

/// The base64 signature (without the `v1,` prefix) of one delivery under `key`.
pub fn signature(key: &[u8], id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&hmac_key);
    ctx.update(format!("{id}.{timestamp_s}.").as_bytes());
    ctx.update(body);
    B64.encode(ctx.sign().as_ref())
}

/// A `svix-signature` entry (`v1,<base64>`) for one delivery signed with `secret`; `None` when
/// the secret is not a signing secret.
pub fn sign(secret: &str, id: &str, timestamp_s: i64, body: &[u8]) -> Option<String> {
    decode_secret(secret).map(|key| format!("v1,{}", signature(&key, id, timestamp_s, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_vector_is_signed() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig.as_deref(), Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        assert_eq!(sign("whsec_", "x", 1, b""), None);
        assert_eq!(sign("whsec_not base64!", "x", 1, b""), None);
    }
}
