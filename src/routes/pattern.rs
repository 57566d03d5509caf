//! Route patterns in the dialect of Clerk's `createRouteMatcher`.
//!
//! Clerk compiles each pattern with path-to-regexp v6 using its defaults: case-insensitive,
//! an optional single trailing delimiter, and a match of the whole path. This module supports
//! the subset that Clerk configurations use in practice:
//!
//! * literal text, compared ASCII case-insensitively;
//! * `(.*)` anywhere, matching any rest of the path including the empty string and `/`, so
//!   `/sign-in(.*)` matches `/sign-in`, `/sign-in/factor-one` and `/sign-in-x`;
//! * `:name`, matching one or more characters other than `/`, and `:name(.*)`, which behaves
//!   like `(.*)` exactly as in path-to-regexp. Unlike path-to-regexp, a `:name` may contain `#`
//!   and `?`: here they can only come from a decoded `%23` or `%3F` inside one segment, and
//!   excluding them would let such a segment slip past a rule meant to cover it;
//! * `\x`, which makes `x` literal, as in path-to-regexp.
//!
//! Every other path-to-regexp feature (custom groups, `{}` groups and the `?`, `*` and `+`
//! modifiers) is rejected at parse time, because treating it as literal text would make a
//! configuration mean something different here than it does in Clerk.
//!
//! Patterns are matched against [`super::NormalisedPath::matching`], which is percent-decoded,
//! so valid percent-escapes in literal text are decoded when the pattern is parsed; a pattern
//! copied from a Clerk configuration that spells `%20` therefore still matches a space.
//!
//! Matching simulates all possible positions in the pattern at once (a Thompson-style
//! simulation over the pieces) instead of backtracking. The work is bounded by the path length
//! times the pattern length no matter how many wildcards a pattern has, so a hostile path can
//! never trigger exponential backtracking, and nothing recurses.

/// One step of a compiled pattern; each step is a state of the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Consumes exactly this byte, which is stored in ASCII lower case.
    Byte(u8),
    /// Consumes any number of bytes, `/` included, for `(.*)`.
    AnyRest,
    /// Consumes the first byte of a `:name`, which must not be `/`.
    ParamFirst,
    /// Consumes further bytes of a `:name` other than `/`.
    ParamRest,
}

/// A parsed route pattern.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    source: String,
    steps: Vec<Step>,
    shape: Shape,
    first_segment: Option<Vec<u8>>,
}

/// The two shapes nearly every real pattern has, matched by a comparison instead of the
/// state-set simulation (same answers; the property tests compare both with a reference).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// Only literal bytes: `/health`.
    Literal(Vec<u8>),
    /// Literal bytes then one trailing `(.*)`: `/sign-in(.*)`.
    Prefix(Vec<u8>),
    /// Anything else.
    General,
}

impl Shape {
    fn of(steps: &[Step]) -> Shape {
        let literal = |s: &[Step]| -> Option<Vec<u8>> {
            s.iter().map(|st| if let Step::Byte(b) = st { Some(*b) } else { None }).collect()
        };
        match steps.split_last() {
            Some((Step::AnyRest, init)) => literal(init).map_or(Shape::General, Shape::Prefix),
            _ => literal(steps).map_or(Shape::General, Shape::Literal),
        }
    }
}

impl RoutePattern {
    /// Parses a pattern.
    ///
    /// # Errors
    ///
    /// Returns a message suitable for configuration errors when the pattern does not start
    /// with '/', has an unbalanced '(' or ')', has a group other than `(.*)`, has a ':' without
    /// a parameter name, uses unsupported path-to-regexp syntax, or ends with a lone `\`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("route pattern {pattern:?} must start with '/'"));
        }
        let bytes = pattern.as_bytes();
        let mut steps = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while let Some(&byte) = bytes.get(index) {
            match byte {
                b'\\' => {
                    let Some(&escaped) = bytes.get(index + 1) else {
                        return Err(format!("route pattern {pattern:?} ends with a lone '\\'"));
                    };
                    steps.push(Step::Byte(escaped.to_ascii_lowercase()));
                    index += 2;
                }
                b'(' => {
                    index += group_len(bytes, index)
                        .map_err(|problem| format!("route pattern {pattern:?} has {problem} at byte {index}"))?;
                    push_any_rest(&mut steps);
                }
                b')' => {
                    return Err(format!("route pattern {pattern:?} has an unbalanced ')' at byte {index}"));
                }
                b':' => {
                    let name_len =
                        bytes[index + 1..].iter().take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_').count();
                    if name_len == 0 {
                        return Err(format!(
                            "route pattern {pattern:?} has a ':' without a parameter name at byte {index}"
                        ));
                    }
                    index += 1 + name_len;
                    if bytes.get(index) == Some(&b'(') {
                        // A parameter with its own pattern is only supported as `:name(.*)`,
                        // which path-to-regexp treats as "any rest", possibly empty.
                        index += group_len(bytes, index)
                            .map_err(|problem| format!("route pattern {pattern:?} has {problem} at byte {index}"))?;
                        push_any_rest(&mut steps);
                    } else {
                        steps.push(Step::ParamFirst);
                        steps.push(Step::ParamRest);
                    }
                }
                b'*' | b'+' | b'?' | b'{' | b'}' => {
                    return Err(format!(
                        "route pattern {pattern:?} uses unsupported syntax '{}' at byte {index}; \
                         only literal text, (.*) and :name are supported",
                        char::from(byte)
                    ));
                }
                b'%' => match decode_escape(bytes, index) {
                    Some(decoded) => {
                        steps.push(Step::Byte(decoded.to_ascii_lowercase()));
                        index += 3;
                    }
                    None => {
                        steps.push(Step::Byte(b'%'));
                        index += 1;
                    }
                },
                other => {
                    steps.push(Step::Byte(other.to_ascii_lowercase()));
                    index += 1;
                }
            }
        }
        let shape = Shape::of(&steps);
        let first_segment = first_segment_of(&steps);
        Ok(Self { source: pattern.to_owned(), steps, shape, first_segment })
    }

    /// Whether the whole `matching_path` matches, ignoring ASCII case and one trailing `/`.
    #[must_use]
    pub fn matches(&self, matching_path: &str) -> bool {
        let path = matching_path.as_bytes();
        match &self.shape {
            Shape::Literal(lit) => {
                let without_slash = path.strip_suffix(b"/").filter(|p| !p.is_empty());
                return path.eq_ignore_ascii_case(lit) || without_slash.is_some_and(|p| p.eq_ignore_ascii_case(lit));
            }
            Shape::Prefix(lit) => {
                return path.len() >= lit.len() && path[..lit.len()].eq_ignore_ascii_case(lit);
            }
            Shape::General => {}
        }
        let accept = self.steps.len();
        let mut current = vec![false; accept + 1];
        let mut next = vec![false; accept + 1];
        current[0] = true;
        self.follow_empty_moves(&mut current);

        // The optional trailing slash is handled by remembering whether the pattern had
        // already matched everything before the last byte, when that last byte is '/'.
        let mut matched_before_last = false;
        for (position, &byte) in path.iter().enumerate() {
            if position + 1 == path.len() {
                matched_before_last = current[accept];
            }
            next.fill(false);
            let lower = byte.to_ascii_lowercase();
            let mut alive = false;
            for (state, step) in self.steps.iter().enumerate() {
                if !current[state] {
                    continue;
                }
                let target = match *step {
                    Step::Byte(expected) => (lower == expected).then_some(state + 1),
                    Step::AnyRest => Some(state),
                    Step::ParamFirst => (byte != b'/').then_some(state + 1),
                    Step::ParamRest => (byte != b'/').then_some(state),
                };
                if let Some(target) = target {
                    next[target] = true;
                    alive = true;
                }
            }
            if !alive {
                // Nothing can continue, so only the optional trailing slash can still match.
                return matched_before_last && position + 1 == path.len() && byte == b'/';
            }
            self.follow_empty_moves(&mut next);
            std::mem::swap(&mut current, &mut next);
        }
        current[accept] || (matched_before_last && path.last() == Some(&b'/'))
    }

    /// The first path segment (lower case) of every path this pattern matches, when the
    /// pattern spells it out: `seg` for `/seg`, `/seg/...` and `/seg/:id`; `None` when it does
    /// not (`/seg(.*)`, `/:id/x`, `/(.*)`), since such a pattern matches paths whose first
    /// segment is anything.
    #[must_use]
    pub fn first_segment(&self) -> Option<&[u8]> {
        self.first_segment.as_deref()
    }

    /// The pattern as it was written in the configuration.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Adds the states reachable without consuming input; every such move goes one step
    /// forward, so a single forward pass reaches all of them.
    fn follow_empty_moves(&self, states: &mut [bool]) {
        for (state, step) in self.steps.iter().enumerate() {
            if matches!(step, Step::AnyRest | Step::ParamRest) && states[state] {
                states[state + 1] = true;
            }
        }
    }
}

/// The literal bytes between the leading `/` and the next `/` (or the end), when every step
/// up to there is a literal byte. A literal pattern's one optional trailing `/` keeps its first
/// segment: `/seg` matches `/seg/` too.
fn first_segment_of(steps: &[Step]) -> Option<Vec<u8>> {
    let (Step::Byte(b'/'), rest) = steps.split_first()? else { return None };
    let mut segment = Vec::new();
    for step in rest {
        match step {
            Step::Byte(b'/') => return Some(segment),
            Step::Byte(b) => segment.push(*b),
            Step::AnyRest | Step::ParamFirst | Step::ParamRest => return None,
        }
    }
    Some(segment)
}

/// Appends an "any rest" step, merging it with a directly preceding one because `(.*)(.*)`
/// means the same as `(.*)` and fewer states make matching cheaper.
fn push_any_rest(steps: &mut Vec<Step>) {
    if steps.last() != Some(&Step::AnyRest) {
        steps.push(Step::AnyRest);
    }
}

/// The length of the `(.*)` group starting at `bytes[start]`, or a description of the problem.
fn group_len(bytes: &[u8], start: usize) -> Result<usize, &'static str> {
    const ANY_REST: &[u8] = b"(.*)";
    let rest = bytes.get(start..).unwrap_or_default();
    if rest.starts_with(ANY_REST) {
        Ok(ANY_REST.len())
    } else if rest.contains(&b')') {
        Err("an unsupported group (only (.*) is supported)")
    } else {
        Err("an unbalanced '('")
    }
}

/// Decodes the escape starting at `bytes[index]`, if it is a `%` followed by two hex digits.
fn decode_escape(bytes: &[u8], index: usize) -> Option<u8> {
    let digits = bytes.get(index + 1..index + 3)?;
    let text = std::str::from_utf8(digits).ok()?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/sign-in(.*)", "/sign-in", true),
            ("/sign-in(.*)", "/sign-in/", true),
            ("/sign-in(.*)", "/sign-in/factor-one", true),
            ("/sign-in(.*)", "/sign-in-x", true),
            ("/sign-in(.*)", "/SIGN-IN", true),
            ("/sign-in(.*)", "/Sign-In/Factor-One", true),
            ("/sign-in(.*)", "/sign-up", false),
            ("/sign-in(.*)", "/x/sign-in", false),
            ("/", "/", true),
            ("/", "/x", false),
            ("/", "", false),
            ("/api(.*)", "/api/x", true),
            ("/api(.*)", "/apix", true),
            ("/api(.*)", "/api", true),
            ("/api(.*)", "/ap", false),
            ("/api/(.*)", "/api/", true),
            ("/api/(.*)", "/api/a/b", true),
            ("/api/(.*)", "/api", false),
            ("/users/:id", "/users/42", true),
            ("/users/:id", "/users/42/", true),
            ("/users/:id", "/users/", false),
            ("/users/:id", "/users", false),
            ("/users/:id", "/users/4/2", false),
            ("/users/:id/posts", "/USERS/7/Posts/", true),
            ("/users/:id/posts", "/users//posts", false),
            ("/files/:path(.*)", "/files/", true),
            ("/files/:path(.*)", "/files/a/b.txt", true),
            ("/files/:path(.*)", "/files", false),
            ("/file.:ext", "/file.txt", true),
            ("/file.:ext", "/file.", false),
            ("/health", "/health", true),
            ("/health", "/health/", true),
            ("/health", "/health//", false),
            ("/health", "/HEALTH", true),
            ("/health", "/private/health", false),
            ("/health", "/private#/health", false),
            ("/health", "/health?", false),
            ("/health", "/healthz", false),
            ("/health/", "/health/", true),
            ("/health/", "/health", false),
            ("/(.*)", "/", true),
            ("/(.*)", "/anything/at/all", true),
            ("/a(.*)b(.*)c", "/axxbyyc", true),
            ("/a(.*)b(.*)c", "/abc", true),
            ("/a(.*)b(.*)c", "/acb", false),
            ("/a(.*)(.*)", "/a", true),
            ("/caf%C3%A9", "/café", true),
            ("/a%20b", "/a b", true),
            ("/a%2", "/a%2", true),
            ("/x\\:y", "/x:y", true),
            ("/x\\:y", "/x:", false),
            ("/café", "/CAFÉ", false),
            ("/café", "/CAFé", true),
        ];
        for &(pattern, path, expected) in cases {
            if let Ok(compiled) = RoutePattern::parse(pattern) {
                assert_eq!(compiled.matches(path), expected, "pattern {pattern:?} path {path:?}");
                assert_eq!(compiled.as_str(), pattern);
            } else {
                assert!(!expected, "pattern {pattern:?} should parse");
            }
        }
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        let cases: &[(&str, &str)] = &[
            ("", "must start with '/'"),
            ("sign-in(.*)", "must start with '/'"),
            ("(.*)", "must start with '/'"),
            ("/a(.*", "unbalanced '('"),
            ("/a(", "unbalanced '('"),
            ("/a)", "unbalanced ')'"),
            ("/a(\\d+)", "unsupported group"),
            ("/a(.+)", "unsupported group"),
            ("/a((.*))", "unsupported group"),
            ("/users/:", "without a parameter name"),
            ("/users/:/x", "without a parameter name"),
            ("/users/:id(\\d+)", "unsupported group"),
            ("/users/:id?", "unsupported syntax '?'"),
            ("/files/*", "unsupported syntax '*'"),
            ("/a(.*)+", "unsupported syntax '+'"),
            ("/{a}", "unsupported syntax '{'"),
            ("/a\\", "lone '\\'"),
        ];
        for &(pattern, expected) in cases {
            match RoutePattern::parse(pattern) {
                Ok(compiled) => panic!("{pattern:?} parsed as {compiled:?}"),
                Err(message) => {
                    assert!(message.contains(expected), "{pattern:?}: {message:?} should mention {expected:?}")
                }
            }
        }
    }

    #[test]
    fn hostile_paths_stay_cheap() {
        // Nested wildcards make a naive backtracking matcher exponential on this input.
        let source = format!("/{}{}b", "(.*)a:p-".repeat(20), "(.*)a".repeat(20));
        let pattern = RoutePattern::parse(&source).unwrap();
        let path = format!("/{}", "aa-".repeat(40_000));
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&path));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A deliberately naive recursive matcher used as an oracle on small inputs.
    fn reference(steps: &[Step], path: &[u8]) -> bool {
        fn go(steps: &[Step], path: &[u8]) -> bool {
            match steps.split_first() {
                None => path.is_empty(),
                Some((Step::Byte(b), rest)) => {
                    path.first().map(u8::to_ascii_lowercase) == Some(*b) && go(rest, &path[1..])
                }
                Some((Step::AnyRest, rest)) => (0..=path.len()).any(|n| go(rest, &path[n..])),
                Some((Step::ParamFirst, rest)) => path.first().is_some_and(|&b| b != b'/') && go(rest, &path[1..]),
                Some((Step::ParamRest, rest)) => {
                    let run = path.iter().take_while(|&&b| b != b'/').count();
                    (0..=run).any(|n| go(rest, &path[n..]))
                }
            }
        }
        go(steps, path) || path.strip_suffix(b"/").is_some_and(|shorter| go(steps, shorter))
    }

    fn small_pattern() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec!["/", "a", "B", "-", "(.*)", ":p", ":p(.*)", "%41"]);
        prop::collection::vec(pieces, 0..6).prop_map(|parts| format!("/{}", parts.concat()))
    }

    fn small_path() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec!["/", "a", "A", "b", "-", "%"]);
        prop::collection::vec(pieces, 0..10).prop_map(|parts| parts.concat())
    }

    /// Pattern-like strings full of syntax and escapes, which arbitrary strings rarely contain.
    fn tricky_text() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "/", "/", "(", ")", "(.*)", ".*", ":", ":id", "\\", "*", "?", "{", "%", "%4", "%41", "%2F", "%zz",
            "%C3%A9", "é", "a", "Z", "_",
        ]);
        prop::collection::vec(pieces, 0..16).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn tricky_patterns_never_panic(pattern in tricky_text(), path in tricky_text()) {
            if let Ok(compiled) = RoutePattern::parse(&pattern) {
                let _ = compiled.matches(&path);
                prop_assert_eq!(compiled.as_str(), pattern.as_str());
            }
        }

        #[test]
        fn parse_and_match_never_panic(pattern in any::<String>(), path in any::<String>()) {
            for candidate in [pattern.clone(), format!("/{pattern}")] {
                if let Ok(compiled) = RoutePattern::parse(&candidate) {
                    let _ = compiled.matches(&path);
                    let _ = compiled.matches(&candidate);
                }
            }
        }

        #[test]
        fn agrees_with_reference(pattern in small_pattern(), path in small_path()) {
            let compiled = RoutePattern::parse(&pattern).unwrap();
            prop_assert_eq!(
                compiled.matches(&path),
                reference(&compiled.steps, path.as_bytes()),
                "pattern {:?} path {:?}", pattern, path
            );
        }

        #[test]
        fn literal_paths_match_themselves(segments in prop::collection::vec("[a-zA-Z0-9._~-]{1,8}", 0..5)) {
            let path = format!("/{}", segments.join("/"));
            let compiled = RoutePattern::parse(&path).unwrap();
            prop_assert!(compiled.matches(&path));
            prop_assert!(compiled.matches(&path.to_ascii_uppercase()));
            let with_slash = format!("{path}/");
            prop_assert!(compiled.matches(&with_slash));
        }
    }
}
