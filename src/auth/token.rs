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
    match header(headers) {
        Some(found) => found,
        None => SessionCookies::read(headers, pk, now_s).session_token(),
    }
}

/// The header token, or a conflict; `None` when the cookies decide (no `Authorization`, or a
/// scheme other than `Bearer`).
pub fn header(headers: &HeaderMap) -> Option<Found<'_>> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let first = auth.next()?;
    if auth.next().is_some() {
        return Some(Found::Conflict("several Authorization headers"));
    }
    // A value that is not visible ASCII cannot be a JWT; hand a marker that fails to decode
    // so the answer is Clerk's `token-invalid`, not a silent fall-through to the cookie.
    let value = first.to_str().unwrap_or("\u{1}");
    header_token(value).map(|token| Found::Token(token, Carrier::Header))
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
pub enum Cookie<'a> {
    /// Used as sent.
    Borrowed(&'a str),
    /// Percent-decoded.
    Owned(String),
}

impl<'a> Cookie<'a> {
    /// The value.
    pub fn as_str(&self) -> &str {
        match self {
            Cookie::Borrowed(s) => s,
            Cookie::Owned(s) => s,
        }
    }

    /// A raw value as the `cookie` npm package reads it: quotes removed, then percent-decoded
    /// (a malformed escape keeps the whole value verbatim, as `decodeURIComponent` throwing does).
    /// Clerk reads `getCookie(name) || undefined`: an empty value is no cookie.
    fn from_raw(v: &'a str) -> Option<Cookie<'a>> {
        let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
        if v.is_empty() {
            return None;
        }
        if !v.contains('%') || !well_formed_escapes(v) {
            return Some(Cookie::Borrowed(v));
        }
        Some(match percent_encoding::percent_decode_str(v).decode_utf8() {
            Ok(decoded) => Cookie::Owned(decoded.into_owned()),
            Err(_) => Cookie::Borrowed(v),
        })
    }
}

/// The cookies Clerk's SDK reads (clerk-semantics §1.3), found in one pass over every `Cookie`
/// header: the first occurrence of a name wins (RFC 6265 as the `cookie` npm package reads it:
/// split on `;` first, then decode). Values are decoded only when asked for.
#[derive(Debug, Clone, Copy, Default)]
struct Slots<'a> {
    session: Option<&'a str>,
    session_suffixed: Option<&'a str>,
    client_uat: Option<&'a str>,
    client_uat_suffixed: Option<&'a str>,
    dev_browser: Option<&'a str>,
    dev_browser_suffixed: Option<&'a str>,
    refresh_suffixed: Option<&'a str>,
    handshake: Option<&'a str>,
    handshake_nonce: Option<&'a str>,
    redirect_count: Option<&'a str>,
}

impl<'a> Slots<'a> {
    /// One pass over the `Cookie` headers; with no `suffix` (no publishable key), only up to the
    /// first `__session`.
    fn read(headers: &'a HeaderMap, suffix: Option<&str>) -> Self {
        let mut slots = Slots::default();
        for value in headers.get_all(COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let k = k.trim();
                // Every name Clerk reads starts with two underscores; most cookies do not.
                if !k.starts_with("__") {
                    continue;
                }
                // Without a publishable key there is no browser flow: only `__session` counts,
                // and the first one ends the search.
                if suffix.is_none() && k == "__session" {
                    slots.session = Some(v.trim());
                    return slots;
                }
                if let Some(slot) = slots.slot(k, suffix) {
                    if slot.is_none() {
                        *slot = Some(v.trim());
                    }
                }
            }
        }
        slots
    }

    fn slot(&mut self, name: &str, suffix: Option<&str>) -> Option<&mut Option<&'a str>> {
        Some(match name {
            "__session" => &mut self.session,
            "__client_uat" => &mut self.client_uat,
            "__clerk_db_jwt" => &mut self.dev_browser,
            "__clerk_handshake" => &mut self.handshake,
            "__clerk_handshake_nonce" => &mut self.handshake_nonce,
            "__clerk_redirect_count" => &mut self.redirect_count,
            _ => {
                let base = name.strip_suffix(suffix?)?.strip_suffix('_')?;
                match base {
                    "__session" => &mut self.session_suffixed,
                    "__client_uat" => &mut self.client_uat_suffixed,
                    "__clerk_db_jwt" => &mut self.dev_browser_suffixed,
                    "__refresh" => &mut self.refresh_suffixed,
                    _ => return None,
                }
            }
        })
    }
}

fn get<'a>(slot: Option<&'a str>) -> Option<Cookie<'a>> {
    slot.and_then(Cookie::from_raw)
}

/// The request's Clerk cookies and which family this instance uses: suffixed
/// (`<name>_<suffix>`, with a publishable key) or not (Clerk's `usesSuffixedCookies`).
#[derive(Debug, Clone)]
pub struct SessionCookies<'a> {
    slots: Slots<'a>,
    suffixed: bool,
}

impl<'a> SessionCookies<'a> {
    /// Reads them at `now_s` (the suffixed-cookie decision looks at an unverified `exp`).
    pub fn read(headers: &'a HeaderMap, pk: Option<&PublishableKey>, now_s: i64) -> Self {
        let slots = Slots::read(headers, pk.map(|pk| pk.cookie_suffix.as_str()));
        let suffixed = pk.is_some_and(|pk| uses_suffixed(&slots, pk, now_s));
        SessionCookies { slots, suffixed }
    }

    /// True when the suffixed cookies are this instance's (`suffixed_cookies` in the handshake).
    pub fn suffixed(&self) -> bool {
        self.suffixed
    }

    fn pick(&self, plain: Option<&'a str>, suffixed: Option<&'a str>) -> Option<Cookie<'a>> {
        // When the suffixed family is chosen there is no fallback to the plain one.
        get(if self.suffixed { suffixed } else { plain })
    }

    /// `__session` (or `__session_<suffix>`).
    pub fn session(&self) -> Option<Cookie<'a>> {
        self.pick(self.slots.session, self.slots.session_suffixed)
    }

    /// The session cookie as the request's token.
    pub fn session_token(&self) -> Found<'a> {
        match self.session() {
            Some(Cookie::Borrowed(t)) => Found::Token(t, Carrier::Cookie),
            Some(Cookie::Owned(t)) => Found::OwnedCookie(t),
            None => Found::None,
        }
    }

    /// `__client_uat` (or suffixed), as sent.
    pub fn client_uat(&self) -> Option<Cookie<'a>> {
        self.pick(self.slots.client_uat, self.slots.client_uat_suffixed)
    }

    /// `__clerk_db_jwt` (or suffixed): the development browser.
    pub fn dev_browser(&self) -> Option<Cookie<'a>> {
        self.pick(self.slots.dev_browser, self.slots.dev_browser_suffixed)
    }

    /// `__refresh_<suffix>` (suffixed only).
    pub fn refresh(&self) -> Option<Cookie<'a>> {
        get(self.slots.refresh_suffixed)
    }

    /// `__clerk_handshake` (never suffixed).
    pub fn handshake(&self) -> Option<Cookie<'a>> {
        get(self.slots.handshake)
    }

    /// `__clerk_handshake_nonce` (never suffixed).
    pub fn handshake_nonce(&self) -> Option<Cookie<'a>> {
        get(self.slots.handshake_nonce)
    }

    /// `__clerk_redirect_count` (never suffixed).
    pub fn redirect_count(&self) -> Option<Cookie<'a>> {
        get(self.slots.redirect_count)
    }
}

fn unverified_claim(token: &str, name: &str) -> Option<serde_json::Value> {
    decode(token, Carrier::Cookie).ok().and_then(|d| d.payload.get(name).cloned())
}

fn unverified_number(token: Option<&str>, name: &str) -> i64 {
    token.and_then(|t| unverified_claim(t, name)).and_then(|v| v.as_i64()).unwrap_or(0)
}

/// Clerk's `usesSuffixedCookies` (clerk-semantics §1.5), evaluated on unverified claims.
fn uses_suffixed(slots: &Slots<'_>, pk: &PublishableKey, now_s: i64) -> bool {
    let (s, ss) = (get(slots.session), get(slots.session_suffixed));
    let (s, ss) = (s.as_ref().map(Cookie::as_str), ss.as_ref().map(Cookie::as_str));
    let (uat, suat) = (get(slots.client_uat), get(slots.client_uat_suffixed));
    let (u, su) = (uat.as_ref().map(Cookie::as_str), suat.as_ref().map(Cookie::as_str));
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
