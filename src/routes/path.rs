//! Request-path normalisation.
//!
//! The gateway must decide on the same path that the upstream will act on, otherwise an
//! attacker can make a request look public to the gateway while the upstream serves a
//! protected resource (the classic `/public/../admin` family of bypasses). [`normalise`]
//! therefore produces two views of one request path: `forward`, which is what the upstream
//! is sent, and `matching`, which is what route patterns see. Both are derived from the same
//! list of segments, so they cannot disagree about structure. Anything that common servers
//! read in different ways is rejected instead of guessed at, and the gateway answers 400.
//!
//! # Order of operations
//!
//! 1. Everything from the first `?` or `#` onwards is dropped, because the query and the
//!    fragment never take part in routing and a caller might pass a full request target.
//! 2. The rest must start with `/` (origin form); empty, `*` and absolute-form targets are
//!    rejected with [`PathError::NotOriginForm`].
//! 3. The raw bytes are scanned once, left to right, for ambiguous characters: a raw NUL or a
//!    `%00` ([`PathError::Nul`]), a raw `\` or a `%5C` ([`PathError::Backslash`]) and a `%2F`
//!    ([`PathError::EncodedSlash`]), in either hex case. These are checked before anything is
//!    decoded, so a decoded byte can never become a separator later on.
//! 4. The path is split on `/`. Empty segments are dropped, which merges duplicate slashes
//!    the way nginx does.
//! 5. Each segment is split at its first raw `;` into a name and `;params`, and the name is
//!    percent-decoded. Percent-encoded dots are dots, so a name that decodes to exactly `.` or
//!    `..` (with no `;params`) is a dot segment. A segment whose decoded name, cut at the first
//!    `;` (raw or `%3B`), is `.` or `..` or is otherwise made only of dots and spaces is rejected
//!    with [`PathError::DotSegmentVariant`], because Tomcat reads `..;` as `..` and Windows
//!    servers trim trailing dots and spaces. A segment whose name is empty once cut at the first
//!    `;` is rejected with [`PathError::ParamOnlySegment`], because servers that strip
//!    parameters see an empty segment there while other servers see a real one, which shifts
//!    the path's structure between the gateway and the upstream.
//! 6. Dot segments are removed as in RFC 3986 section 5.2.4: `.` is dropped and `..` drops the
//!    previous segment. A `..` with nothing left to drop is rejected with
//!    [`PathError::EscapesRoot`] rather than clamped, because servers disagree on clamping.
//! 7. The surviving segments are rendered twice. `forward` re-encodes each segment canonically
//!    (escapes of unreserved characters decoded, other escapes kept with upper-case hex, raw
//!    bytes that are not allowed in a path percent-encoded, a stray `%` written as `%25`) and
//!    keeps `;params`. `matching` uses the fully decoded names without `;params`, converted to
//!    UTF-8 lossily. A trailing slash is kept in both, and a path whose last segment was a dot
//!    segment ends in a slash, as RFC 3986 prescribes.
//!
//! Because every step is idempotent and `forward` contains no dot segments, empty segments,
//! raw `?`/`#` or ambiguous escapes, normalising `forward` again yields the same result.

use std::fmt;

use percent_encoding::{percent_decode, percent_encode_byte};

/// The request path in the two forms the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedPath {
    /// What the upstream is sent: percent-encoded, dot segments removed, duplicate slashes merged,
    /// percent-encodings of unreserved characters (ALPHA DIGIT - . _ ~) decoded, other escapes kept with upper-case hex,
    /// `;params` kept. Always starts with '/'. Non-ASCII / invalid raw bytes are percent-encoded so the result is a valid URI path.
    pub forward: String,
    /// What routes are matched against: fully percent-decoded (lossy UTF-8), dot segments removed,
    /// `;params` stripped from every segment.
    pub matching: String,
}

/// Why a request path is too ambiguous to route safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The target is not a path starting with `/` (for example empty, `*` or absolute form).
    NotOriginForm,
    /// The path contains `%2F`, which some servers decode into a separator and others do not.
    EncodedSlash,
    /// The path contains a raw `\` or `%5C`, which some servers treat as a separator.
    Backslash,
    /// The path contains a raw NUL or `%00`, which some servers treat as the end of the string.
    Nul,
    /// A `..` segment would climb above the root.
    EscapesRoot,
    /// A segment is not `.` or `..` but some common server reads it as one (`..;`, `.;x`, `...`, `.. `).
    DotSegmentVariant,
    /// A segment is made only of `;params`, which servers that strip parameters read as empty.
    ParamOnlySegment,
}

impl PathError {
    /// A short human sentence for the body of the 400 response.
    #[must_use]
    pub fn message(&self) -> &'static str {
        match self {
            PathError::NotOriginForm => "The request target must be a path that starts with '/'.",
            PathError::EncodedSlash => "The path contains an encoded slash (%2F).",
            PathError::Backslash => "The path contains a backslash or an encoded backslash (%5C).",
            PathError::Nul => "The path contains a NUL byte.",
            PathError::EscapesRoot => "The path uses '..' to climb above the root.",
            PathError::DotSegmentVariant => "The path has a segment that some servers read as '.' or '..'.",
            PathError::ParamOnlySegment => "The path has a segment made only of ';' parameters.",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PathError {}

/// Normalises a request path; see the module documentation for the exact order of operations.
///
/// # Errors
///
/// Returns the reason when the path is not in origin form or is ambiguous, in which case the
/// gateway should answer 400 with [`PathError::message`].
pub fn normalise(raw_path: &str) -> Result<NormalisedPath, PathError> {
    // The query and fragment are cut first so that nothing after them can influence routing.
    let path = match raw_path.find(['?', '#']) {
        Some(end) => &raw_path[..end],
        None => raw_path,
    };
    if already_normal(path) {
        return Ok(NormalisedPath { forward: path.to_string(), matching: path.to_string() });
    }
    normalise_slow(path)
}

/// The common case, decided in one pass: only unreserved characters and `/`, no escapes, no
/// duplicate slashes and no segment starting with a dot. Such a path is its own normal form
/// (the full algorithm below returns it unchanged; a property test checks this).
pub fn already_normal(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() == Some(&b'/')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'-' | b'_' | b'~' | b'.'))
        && !b.windows(2).any(|w| w == b"//" || w == b"/.")
}

fn normalise_slow(path: &str) -> Result<NormalisedPath, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotOriginForm);
    };
    reject_ambiguous_bytes(path.as_bytes())?;

    let mut segments: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ends_in_directory = false;
    for raw in rest.split('/') {
        // Skipping empty segments merges duplicate slashes; a trailing slash is restored below.
        if raw.is_empty() {
            continue;
        }
        match classify(raw)? {
            Segment::Current => ends_in_directory = true,
            Segment::Parent => {
                if segments.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                ends_in_directory = true;
            }
            Segment::Normal { forward, matching } => {
                segments.push((forward, matching));
                ends_in_directory = false;
            }
        }
    }
    if path.ends_with('/') {
        ends_in_directory = true;
    }

    let mut forward = String::with_capacity(path.len() + 1);
    let mut matching = Vec::with_capacity(path.len() + 1);
    for (segment_forward, segment_matching) in &segments {
        forward.push('/');
        forward.push_str(segment_forward);
        matching.push(b'/');
        matching.extend_from_slice(segment_matching);
    }
    // The root is always "/", and a directory-like path keeps its trailing slash because
    // upstreams often distinguish `/dir` from `/dir/`.
    if segments.is_empty() || ends_in_directory {
        forward.push('/');
        matching.push(b'/');
    }
    Ok(NormalisedPath { forward, matching: String::from_utf8_lossy(&matching).into_owned() })
}

/// One path segment after classification.
enum Segment {
    /// A `.` segment, which is dropped.
    Current,
    /// A `..` segment, which drops the previous segment.
    Parent,
    /// Any other segment, in its forwarded and its matching form.
    Normal { forward: String, matching: Vec<u8> },
}

/// Rejects bytes and escapes that servers disagree about, before anything is decoded.
fn reject_ambiguous_bytes(path: &[u8]) -> Result<(), PathError> {
    for (index, &byte) in path.iter().enumerate() {
        let decoded = match byte {
            b'%' => escape_at(path, index),
            other => Some(other),
        };
        // A raw `/` is a separator and is fine; only an escaped one is ambiguous.
        match (byte, decoded) {
            (_, Some(0)) => return Err(PathError::Nul),
            (_, Some(b'\\')) => return Err(PathError::Backslash),
            (b'%', Some(b'/')) => return Err(PathError::EncodedSlash),
            _ => {}
        }
    }
    Ok(())
}

/// Classifies one non-empty raw segment and renders its two forms.
fn classify(raw: &str) -> Result<Segment, PathError> {
    // Parameters start at the first raw `;` only, as in Tomcat and Spring; an encoded `%3B`
    // is part of the name for routing, but is still considered by the safety checks below.
    let (name, params) = match raw.split_once(';') {
        Some((name, params)) => (name, Some(params)),
        None => (raw, None),
    };
    let decoded_name: Vec<u8> = percent_decode(name.as_bytes()).collect();

    if params.is_none() {
        match decoded_name.as_slice() {
            b"." => return Ok(Segment::Current),
            b".." => return Ok(Segment::Parent),
            _ => {}
        }
    }
    // Servers that decode before stripping parameters would cut at an encoded `;` too, so
    // the checks look at the name up to the first `;` of either kind.
    let cut = match decoded_name.iter().position(|&b| b == b';') {
        Some(end) => &decoded_name[..end],
        None => decoded_name.as_slice(),
    };
    if cut.is_empty() {
        return Err(PathError::ParamOnlySegment);
    }
    if is_dot_like(cut) {
        return Err(PathError::DotSegmentVariant);
    }

    let mut forward = String::with_capacity(raw.len());
    push_canonical(&mut forward, name.as_bytes());
    if let Some(params) = params {
        forward.push(';');
        push_canonical(&mut forward, params.as_bytes());
    }
    Ok(Segment::Normal { forward, matching: decoded_name })
}

/// Whether a segment name is made only of dots and spaces, which Windows servers trim to a
/// dot segment and Tomcat produces from `..;`.
fn is_dot_like(name: &[u8]) -> bool {
    name.contains(&b'.') && name.iter().all(|&b| b == b'.' || b == b' ')
}

/// Appends `raw` to `out` in canonical percent-encoded form.
fn push_canonical(out: &mut String, raw: &[u8]) {
    let mut index = 0;
    while let Some(&byte) = raw.get(index) {
        if byte == b'%' {
            if let Some(value) = escape_at(raw, index) {
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else {
                    out.push_str(percent_encode_byte(value));
                }
                index += 3;
                continue;
            }
            // A `%` that does not start a valid escape stands for itself, so it is encoded;
            // this keeps `forward` a valid URI path that decodes to the same bytes.
            out.push_str("%25");
        } else if is_raw_path_char(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(percent_encode_byte(byte));
        }
        index += 1;
    }
}

/// Decodes the escape starting at `bytes[index]`, if it is a `%` followed by two hex digits.
fn escape_at(bytes: &[u8], index: usize) -> Option<u8> {
    if bytes.get(index) != Some(&b'%') {
        return None;
    }
    let high = hex_value(*bytes.get(index + 1)?)?;
    let low = hex_value(*bytes.get(index + 2)?)?;
    Some((high << 4) | low)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters, whose escapes are equivalent to the characters themselves.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters that may appear unencoded inside a path segment (RFC 3986 `pchar` minus `%`).
fn is_raw_path_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(byte, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(forward: &str, matching: &str) -> Result<NormalisedPath, PathError> {
        Ok(NormalisedPath { forward: forward.to_owned(), matching: matching.to_owned() })
    }

    #[test]
    fn normalise_table() {
        let cases: &[(&str, Result<NormalisedPath, PathError>)] = &[
            // Ordinary paths.
            ("/", ok("/", "/")),
            ("/a/b", ok("/a/b", "/a/b")),
            ("/a/b/", ok("/a/b/", "/a/b/")),
            ("/a%20b", ok("/a%20b", "/a b")),
            ("/a b", ok("/a%20b", "/a b")),
            ("/%7Euser", ok("/~user", "/~user")),
            ("/%7euser", ok("/~user", "/~user")),
            ("/a%3ab", ok("/a%3Ab", "/a:b")),
            ("/a:b@c", ok("/a:b@c", "/a:b@c")),
            ("/.hidden/..x/x..", ok("/.hidden/..x/x..", "/.hidden/..x/x..")),
            ("/caf%c3%a9", ok("/caf%C3%A9", "/café")),
            ("/café", ok("/caf%C3%A9", "/café")),
            ("/%ff", ok("/%FF", "/\u{FFFD}")),
            ("/100%", ok("/100%25", "/100%")),
            ("/%zz/%4", ok("/%25zz/%254", "/%zz/%4")),
            ("/%252F", ok("/%252F", "/%2F")),
            ("/a\"<>`{}|^", ok("/a%22%3C%3E%60%7B%7D%7C%5E", "/a\"<>`{}|^")),
            // Query and fragment never take part.
            ("/a?b=1", ok("/a", "/a")),
            ("/a#frag", ok("/a", "/a")),
            ("/a?x=/../..#y", ok("/a", "/a")),
            ("/a/?", ok("/a/", "/a/")),
            // Peer-CVE cases.
            ("/public/../admin", ok("/admin", "/admin")),
            ("/public/%2e%2e/admin", ok("/admin", "/admin")),
            ("/public/%2E%2E/admin", ok("/admin", "/admin")),
            ("/public/.%2e/admin", ok("/admin", "/admin")),
            ("/public/..%2fadmin", Err(PathError::EncodedSlash)),
            ("/public/..%2Fadmin", Err(PathError::EncodedSlash)),
            ("//admin", ok("/admin", "/admin")),
            ("///a//b//", ok("/a/b/", "/a/b/")),
            ("/%61dmin", ok("/admin", "/admin")),
            ("/admin;x=1", ok("/admin;x=1", "/admin")),
            ("/admin;x=1/", ok("/admin;x=1/", "/admin/")),
            ("/a;v=1/b;jsessionid=X", ok("/a;v=1/b;jsessionid=X", "/a/b")),
            ("/a;/b", ok("/a;/b", "/a/b")),
            ("/a;x/../b", ok("/b", "/b")),
            ("/a%3Bx", ok("/a%3Bx", "/a;x")),
            ("/../x", Err(PathError::EscapesRoot)),
            ("/..", Err(PathError::EscapesRoot)),
            ("/a/../../x", Err(PathError::EscapesRoot)),
            ("/%2e%2e/x", Err(PathError::EscapesRoot)),
            ("/private%23/health", ok("/private%23/health", "/private#/health")),
            ("/health%3F", ok("/health%3F", "/health?")),
            ("/a/./b", ok("/a/b", "/a/b")),
            ("/a/%2e/b", ok("/a/b", "/a/b")),
            ("/a/.", ok("/a/", "/a/")),
            ("/a/..", ok("/", "/")),
            ("/a/b/..", ok("/a/", "/a/")),
            ("/./", ok("/", "/")),
            // Ambiguous separators and NULs.
            ("/a%2fb", Err(PathError::EncodedSlash)),
            ("/a\\b", Err(PathError::Backslash)),
            ("/a%5cb", Err(PathError::Backslash)),
            ("/a%5Cb", Err(PathError::Backslash)),
            ("/a\0b", Err(PathError::Nul)),
            ("/a%00b", Err(PathError::Nul)),
            // Segments that some server reads as a dot segment.
            ("/a/..;/b", Err(PathError::DotSegmentVariant)),
            ("/a/.;x/b", Err(PathError::DotSegmentVariant)),
            ("/a/%2e%2e;/b", Err(PathError::DotSegmentVariant)),
            ("/a/%2E;x/b", Err(PathError::DotSegmentVariant)),
            ("/a/..%3b/b", Err(PathError::DotSegmentVariant)),
            ("/a/.../b", Err(PathError::DotSegmentVariant)),
            ("/a/.. /b", Err(PathError::DotSegmentVariant)),
            ("/a/..%20/b", Err(PathError::DotSegmentVariant)),
            // Segments made only of parameters.
            ("/;x/admin", Err(PathError::ParamOnlySegment)),
            ("/admin/;x", Err(PathError::ParamOnlySegment)),
            ("/a/%3Bx", Err(PathError::ParamOnlySegment)),
            // Targets that are not origin form.
            ("", Err(PathError::NotOriginForm)),
            ("*", Err(PathError::NotOriginForm)),
            ("a/b", Err(PathError::NotOriginForm)),
            ("http://host/admin", Err(PathError::NotOriginForm)),
            ("?/admin", Err(PathError::NotOriginForm)),
        ];
        for (input, expected) in cases {
            assert_eq!(&normalise(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn every_error_has_a_sentence() {
        let all = [
            PathError::NotOriginForm,
            PathError::EncodedSlash,
            PathError::Backslash,
            PathError::Nul,
            PathError::EscapesRoot,
            PathError::DotSegmentVariant,
            PathError::ParamOnlySegment,
        ];
        for error in all {
            let message = error.message();
            assert!(message.ends_with('.'), "{error:?}");
            assert_eq!(error.to_string(), message);
        }
    }

    /// Strings built from fragments that exercise the interesting branches far more often
    /// than uniformly random text would.
    fn tricky_path() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%", "%4", "%zz", "%41", "%7e", "%3b",
            "%3B", "%23", "%25", "%ff", "%C3%A9", ";", ";x=1", "a", "B", "admin", "?", "#", "\\", "\0", "é", " ", "~",
            ":", "@", "*",
        ]);
        prop::collection::vec(pieces, 0..24).prop_map(|parts| parts.concat())
    }

    fn check_invariants(input: &str) {
        let Ok(normalised) = normalise(input) else {
            return;
        };
        let forward = &normalised.forward;
        assert!(forward.starts_with('/'), "{input:?} -> {forward:?}");
        assert!(normalised.matching.starts_with('/'));
        for bad in ["/./", "/../", "//"] {
            assert!(!forward.contains(bad), "{input:?} -> {forward:?}");
        }
        assert!(!forward.ends_with("/.") && !forward.ends_with("/.."));
        // The forwarded path must be a syntactically valid URI path.
        assert!(forward.bytes().all(|b| b == b'/' || b == b'%' || is_raw_path_char(b)), "{input:?} -> {forward:?}");
        assert!(forward.parse::<http::Uri>().is_ok(), "{forward:?}");
        let again = normalise(forward).expect("forward must normalise again");
        assert_eq!(&again, &normalised, "{input:?}");
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_full_algorithm(path in "(/[a-zA-Z0-9._~-]{0,6}){1,6}/?") {
            if already_normal(&path) {
                let fast = normalise(&path).unwrap();
                let slow = normalise_slow(&path).unwrap();
                prop_assert_eq!(fast, slow);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(input in any::<String>()) {
            check_invariants(&input);
            let with_slash = format!("/{input}");
            check_invariants(&with_slash);
        }

        #[test]
        fn tricky_paths_keep_invariants(input in tricky_path()) {
            check_invariants(&input);
        }

        #[test]
        fn matching_never_contains_dot_segments(input in tricky_path()) {
            if let Ok(normalised) = normalise(&input) {
                for segment in normalised.matching.split('/') {
                    prop_assert!(segment != "." && segment != "..", "{:?}", normalised);
                }
            }
        }
    }
}
