//! Publishable keys (`pk_test_…`, `pk_live_…`): the Frontend API host they encode and the
//! cookie suffix Clerk derives from them, parsed the way Clerk's SDK does.

use base64::Engine;

/// A parsed publishable key.
#[derive(Debug, Clone)]
pub struct PublishableKey {
    /// The key as given.
    pub raw: String,
    /// The Frontend API host it encodes, e.g. `clerk.example.com`.
    pub frontend_api: String,
    /// `pk_live_` keys belong to production instances.
    pub production: bool,
    /// The suffix Clerk appends to cookie names for this instance (`__session_<suffix>`).
    pub cookie_suffix: String,
}

/// Parses a publishable key the way Clerk's `parsePublishableKey` does.
pub fn parse_publishable_key(raw: &str) -> Result<PublishableKey, String> {
    let parts: Vec<&str> = raw.split('_').collect();
    if parts.len() != 3 || parts[0] != "pk" || !(parts[1] == "test" || parts[1] == "live") {
        return Err("must look like pk_test_… or pk_live_…".into());
    }
    let encoded = parts[2].trim_end_matches('=');
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .map_err(|_| "the part after pk_test_/pk_live_ is not base64".to_string())?;
    let text = String::from_utf8(decoded).map_err(|_| "does not decode to text".to_string())?;
    let Some(host) = text.strip_suffix('$') else {
        return Err("does not decode to a Frontend API host ending in '$'".into());
    };
    if host.contains('$') || !host.contains('.') {
        return Err("does not decode to a Frontend API host".into());
    }
    Ok(PublishableKey {
        raw: raw.to_string(),
        frontend_api: host.to_string(),
        production: parts[1] == "live",
        cookie_suffix: cookie_suffix(raw),
    })
}

/// Clerk's cookie suffix: the first 8 characters of the URL-safe base64 of SHA-1(publishable key).
pub fn cookie_suffix(publishable_key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, publishable_key.as_bytes());
    let b64 = base64::engine::general_purpose::URL_SAFE.encode(digest.as_ref());
    b64[..8].to_string()
}
