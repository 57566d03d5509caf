//! Finding the session token in a request, by Clerk's rules (clerk-semantics §1.2–1.6).
//!
//! `Authorization: Bearer <t>` or a scheme-less value is the header token; any other scheme
//! (including lower-case `bearer`) falls through to the cookie. A header token is used alone:
//! cookies are not looked at. Two `Authorization` headers are refused as conflicting. The query
//! string is never read, so a token there never authenticates anything.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::verify::{decode, Carrier};
use crate::config::PublishableKey;

/// What the request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// No token anywhere.
    None,
    /// A token and where it came from.
    Token(&'a str, Carrier),
    /// A token that is a cookie value needing percent-decoding.
    OwnedCookie(String),
    /// Credentials that contradict each other (answered 400).
    Conflict(&'static str),
}

/// Looks for the session token: header first, then the (possibly suffixed) `__session` cookie.
pub fn find<'a>(headers: &'a HeaderMap, pk: Option<&PublishableKey>, now_s: i64) -> Found<'a> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    if let Some(first) = auth.next() {
        if auth.next().is_some() {
            return Found::Conflict("several Authorization headers");
        }
        // A value that is not visible ASCII cannot be a JWT; hand a marker that fails to decode
        // so the answer is Clerk's `token-invalid`, not a silent fall-through to the cookie.
        let value = first.to_str().unwrap_or("\u{1}");
        if let Some(token) = header_token(value) {
            return Found::Token(token, Carrier::Header);
        }
    }
    match session_cookie(headers, pk, now_s) {
        Some(Cookie::Borrowed(t)) => Found::Token(t, Carrier::Cookie),
        Some(Cookie::Owned(t)) => Found::OwnedCookie(t),
        None => Found::None,
    }
}

/// The token in an `Authorization` value, per Clerk's `parseAuthorizationHeader`.
pub fn header_token(value: &str) -> Option<&str> {
    // JS: `const [scheme, token] = value.split(' ', 2); if (!token) return scheme;` — anything
    // after a second space is dropped, and an empty second piece makes the scheme the token.
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Some(value).filter(|v| !v.is_empty());
    };
    let token = rest.split(' ').next().unwrap_or_default();
    if token.is_empty() {
        return Some(scheme).filter(|s| !s.is_empty());
    }
    (scheme == "Bearer").then_some(token)
}

/// True when every `%` starts a `%XX` escape.
fn well_formed_escapes(v: &str) -> bool {
    let b = v.as_bytes();
    b.iter().enumerate().filter(|(_, c)| **c == b'%').all(|(i, _)| {
        b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    })
}

/// A cookie value, borrowed when it needed no decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cookie<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Cookie<'_> {
    fn as_str(&self) -> &str {
        match self {
            Cookie::Borrowed(s) => s,
            Cookie::Owned(s) => s,
        }
    }
}

/// The first value of cookie `name` across every `Cookie` header (RFC 6265 as the `cookie`
/// npm package reads it: split on `;` first, then percent-decode; first occurrence wins;
/// malformed escapes are kept verbatim).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cookie<'a>> {
    for value in headers.get_all(COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
            // Clerk reads `getCookie(name) || undefined`: an empty value is no cookie.
            if v.is_empty() {
                return None;
            }
            if !v.contains('%') || !well_formed_escapes(v) {
                // `decodeURIComponent` throws on a malformed escape, and the `cookie` package
                // then keeps the whole value verbatim.
                return Some(Cookie::Borrowed(v));
            }
            return Some(match percent_encoding::percent_decode_str(v).decode_utf8() {
                Ok(decoded) => Cookie::Owned(decoded.into_owned()),
                Err(_) => Cookie::Borrowed(v),
            });
        }
    }
    None
}

/// The value of cookie `name`, decoded as the session cookie is, owned.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie(headers, name).map(|c| c.as_str().to_owned())
}

fn session_cookie<'a>(headers: &'a HeaderMap, pk: Option<&PublishableKey>, now_s: i64) -> Option<Cookie<'a>> {
    let Some(pk) = pk else {
        return cookie(headers, "__session");
    };
    let suffixed = format!("__session_{}", pk.cookie_suffix);
    let s = cookie(headers, "__session");
    let ss = cookie(headers, &suffixed);
    if uses_suffixed(headers, pk, s.as_ref().map(Cookie::as_str), ss.as_ref().map(Cookie::as_str), now_s) {
        ss
    } else {
        s
    }
}

fn unverified_claim(token: &str, name: &str) -> Option<serde_json::Value> {
    decode(token, Carrier::Cookie).ok().and_then(|d| d.payload.get(name).cloned())
}

fn unverified_number(token: Option<&str>, name: &str) -> i64 {
    token.and_then(|t| unverified_claim(t, name)).and_then(|v| v.as_i64()).unwrap_or(0)
}

/// Clerk's `usesSuffixedCookies` (clerk-semantics §1.5), evaluated on unverified claims.
fn uses_suffixed(headers: &HeaderMap, pk: &PublishableKey, s: Option<&str>, ss: Option<&str>, now_s: i64) -> bool {
    let uat = cookie(headers, "__client_uat");
    let suat = cookie(headers, &format!("__client_uat_{}", pk.cookie_suffix));
    let u = uat.as_ref().map(Cookie::as_str);
    let su = suat.as_ref().map(Cookie::as_str);
    if let Some(s) = s {
        match unverified_claim(s, "iss") {
            None => return false,
            Some(serde_json::Value::String(iss)) if iss.is_empty() => return false,
            Some(serde_json::Value::Bool(false)) | Some(serde_json::Value::Null) => return false,
            Some(serde_json::Value::String(iss)) => {
                let lower = iss.to_ascii_lowercase();
                let host = if lower.starts_with("https://") {
                    &iss[8..]
                } else if lower.starts_with("http://") {
                    &iss[7..]
                } else {
                    &iss[..]
                };
                if host != pk.frontend_api {
                    return true;
                }
            }
            Some(_) => return true,
        }
    }
    if su.is_none() && ss.is_none() {
        return false;
    }
    // JS compares the raw cookie with '0': an absent value (`undefined`) counts as non-zero.
    let nonzero = |v: Option<&str>| v != Some("0");
    if nonzero(su) && nonzero(u) && unverified_number(s, "iat") > unverified_number(ss, "iat") {
        return false;
    }
    if su == Some("0") && nonzero(u) {
        return false;
    }
    if !pk.production && nonzero(su) && u == Some("0") {
        if let Some(exp) = ss.and_then(|t| unverified_claim(t, "exp")).and_then(|v| v.as_i64()) {
            if exp <= now_s {
                return false;
            }
        }
    }
    if su.is_none() && ss.is_some() {
        return false;
    }
    true
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
