//! A string that must never be printed: `Debug`, `Display` and the effective-config dump
//! all show `[redacted]`.

use std::fmt;

/// A secret value (secret key, admin token, webhook secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that has to send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short fingerprint (the first 8 hex digits of its SHA-256), for logs and the audit:
    /// enough to tell two keys apart, useless for recovering either.
    pub fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
