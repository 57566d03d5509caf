//! Deciding what protection a request needs from its method and path.
//!
//! A request's path is first turned into a [`NormalisedPath`] by [`normalise`]; requests
//! whose path is ambiguous are rejected there, before any route is consulted. The table is
//! then asked about [`NormalisedPath::matching`], never about the raw path, so that the
//! gateway decides on the same path the upstream will receive.
//!
//! # Precedence
//!
//! [`RouteTable::route`] decides in this order:
//!
//! 1. The first entry of `rules`, in configuration order, whose pattern matches the path and
//!    whose method list (if any) contains the method decides. A rule always means "protected,
//!    with these extra conditions", so the result is [`Route::Protected`] carrying that rule.
//!    Rules come first so that a broad public pattern can never switch off a narrower
//!    rule's role, permission or webhook requirement.
//! 2. Otherwise, if any pattern in `public` matches, the request is [`Route::Public`].
//! 3. Otherwise `default` decides: [`Route::Protected`] without a rule, or [`Route::Public`].
//!
//! A rule whose method list contains `GET` also covers `HEAD`, because most servers answer
//! `HEAD` with the `GET` handler; otherwise a `HEAD` request could reach a `GET`-only rule's
//! handler without its conditions.

pub mod path;
pub mod pattern;

pub use path::{already_normal, normalise, NormalisedPath, PathError};
pub use pattern::RoutePattern;

use std::collections::HashMap;

use http::Method;

/// What happens to requests that no rule and no public pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The request is forwarded without a session.
    Public,
    /// The request needs a valid session.
    Protected,
}

/// A protected route with extra conditions.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// The paths the rule applies to.
    pub pattern: RoutePattern,
    /// The methods the rule applies to; `None` means all methods.
    pub methods: Option<Vec<Method>>,
    /// A role the session must have.
    pub role: Option<String>,
    /// A permission the session must have.
    pub permission: Option<String>,
    /// The rule is enforced even in bypass mode.
    pub bypass_never: bool,
    /// The request must carry a valid Clerk (Svix) webhook signature instead of a session token.
    pub webhook: bool,
}

impl RouteRule {
    /// Whether this rule applies to a request with `method` and the given matching path.
    #[must_use]
    pub fn applies_to(&self, method: &Method, matching_path: &str) -> bool {
        self.allows_method(method) && self.pattern.matches(matching_path)
    }

    fn allows_method(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => {
                methods.iter().any(|listed| listed == method || (*method == Method::HEAD && *listed == Method::GET))
            }
        }
    }
}

/// The configured routes.
#[derive(Debug, Clone)]
pub struct RouteTable {
    default: Access,
    public: Vec<RoutePattern>,
    rules: Vec<RouteRule>,
    /// Which public patterns and rules can match a path, by its first segment.
    public_index: SegmentIndex,
    rule_index: SegmentIndex,
}

/// The patterns of a list that can match a path, found by the path's first segment: those
/// that spell that segment out, and those that match any first segment. The cost of a lookup
/// grows with the patterns under one segment, not with the whole list.
#[derive(Debug, Clone, Default)]
struct SegmentIndex {
    /// Positions in the list, ascending, of the patterns that spell out this first segment.
    by_segment: HashMap<Box<[u8]>, Vec<usize>>,
    /// Positions, ascending, of the patterns that match any first segment.
    any: Vec<usize>,
}

/// The longest first segment looked up; a longer one is checked against every pattern.
const MAX_INDEXED_SEGMENT: usize = 64;

impl SegmentIndex {
    fn new<'a>(patterns: impl Iterator<Item = &'a RoutePattern>) -> Self {
        let mut index = SegmentIndex::default();
        for (position, pattern) in patterns.enumerate() {
            match pattern.first_segment().filter(|s| s.len() <= MAX_INDEXED_SEGMENT) {
                Some(segment) => index.by_segment.entry(segment.into()).or_default().push(position),
                None => index.any.push(position),
            }
        }
        index
    }

    /// The first position, in ascending order, among the patterns that can match
    /// `matching_path` (out of `all`), for which `hit` says yes.
    fn first(&self, matching_path: &str, all: usize, mut hit: impl FnMut(usize) -> bool) -> Option<usize> {
        let segment = matching_path.strip_prefix('/').map(|rest| rest.split('/').next().unwrap_or(rest));
        let mut lower = [0u8; MAX_INDEXED_SEGMENT];
        let keyed: &[usize] = match segment {
            Some(segment) if segment.len() <= MAX_INDEXED_SEGMENT => {
                let lower = &mut lower[..segment.len()];
                lower.copy_from_slice(segment.as_bytes());
                lower.make_ascii_lowercase();
                self.by_segment.get(&*lower).map_or(&[], Vec::as_slice)
            }
            // Not a path any pattern could index (no leading `/`, or a segment too long to
            // look up): every pattern is a candidate.
            _ => return (0..all).find(|&i| hit(i)),
        };
        // Both lists ascend: merge them, so that the first match is the first in the list.
        let (mut k, mut a) = (keyed.iter().peekable(), self.any.iter().peekable());
        loop {
            let next = match (k.peek(), a.peek()) {
                (Some(&&x), Some(&&y)) if x < y => k.next(),
                (Some(_), Some(_)) | (None, Some(_)) => a.next(),
                (Some(_), None) => k.next(),
                (None, None) => return None,
            };
            if let Some(&position) = next.filter(|&&position| hit(position)) {
                return Some(position);
            }
        }
    }
}

/// What the table says about one request.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// The request is forwarded without a session.
    Public,
    /// The request needs a valid session, and must meet the rule's conditions if there is one.
    Protected {
        /// The rule that decided, or `None` when the table's default did.
        rule: Option<&'a RouteRule>,
    },
}

impl<'a> Route<'a> {
    /// Whether the request may be forwarded without a session.
    #[must_use]
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Public)
    }

    /// The rule that decided, if any.
    #[must_use]
    pub fn rule(&self) -> Option<&'a RouteRule> {
        match self {
            Route::Public => None,
            Route::Protected { rule } => *rule,
        }
    }
}

impl RouteTable {
    /// A table: `default` for what nothing else matches, `public` paths needing no session
    /// unless a rule matches first, and `rules` in priority order.
    #[must_use]
    pub fn new(default: Access, public: Vec<RoutePattern>, rules: Vec<RouteRule>) -> Self {
        let public_index = SegmentIndex::new(public.iter());
        let rule_index = SegmentIndex::new(rules.iter().map(|r| &r.pattern));
        RouteTable { default, public, rules, public_index, rule_index }
    }

    /// What applies when neither a rule nor a public pattern matches.
    #[must_use]
    pub fn default(&self) -> Access {
        self.default
    }

    /// Paths that need no session, unless a rule matches first.
    #[must_use]
    pub fn public(&self) -> &[RoutePattern] {
        &self.public
    }

    /// Protected routes with extra conditions, in priority order.
    #[must_use]
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Precedence: the first rule whose pattern and methods match decides (Protected with that
    /// rule, since a rule always means "protected, with these extra conditions"); otherwise a
    /// match in `public` makes it Public; otherwise `default` decides.
    #[must_use]
    pub fn route(&self, method: &Method, matching_path: &str) -> Route<'_> {
        let rules = &self.rules;
        if let Some(i) =
            self.rule_index.first(matching_path, rules.len(), |i| rules[i].applies_to(method, matching_path))
        {
            return Route::Protected { rule: Some(&rules[i]) };
        }
        let public = &self.public;
        if self.public_index.first(matching_path, public.len(), |i| public[i].matches(matching_path)).is_some() {
            return Route::Public;
        }
        match self.default {
            Access::Public => Route::Public,
            Access::Protected => Route::Protected { rule: None },
        }
    }

    /// True when any rule that applies to this request is marked `bypass_never`. Every
    /// applying rule is considered, not only the first, so that reordering rules cannot
    /// silently drop the guarantee.
    #[must_use]
    pub fn bypass_never(&self, method: &Method, matching_path: &str) -> bool {
        let rules = &self.rules;
        let never = |i: usize| rules[i].bypass_never && rules[i].applies_to(method, matching_path);
        self.rule_index.first(matching_path, rules.len(), never).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> RoutePattern {
        RoutePattern::parse(source).unwrap()
    }

    fn rule(source: &str, methods: Option<&[Method]>, role: &str) -> RouteRule {
        RouteRule {
            pattern: pattern(source),
            methods: methods.map(<[Method]>::to_vec),
            role: Some(role.to_owned()),
            permission: None,
            bypass_never: role == "root",
            webhook: false,
        }
    }

    fn rules() -> Vec<RouteRule> {
        vec![
            rule("/api/admin(.*)", None, "root"),
            rule("/api/posts(.*)", Some(&[Method::POST, Method::DELETE]), "writer"),
            rule("/api/reports(.*)", Some(&[Method::GET]), "analyst"),
            rule("/api/(.*)", Some(&[Method::DELETE]), "janitor"),
        ]
    }

    fn table(default: Access) -> RouteTable {
        RouteTable::new(default, vec![pattern("/"), pattern("/sign-in(.*)"), pattern("/api(.*)")], rules())
    }

    /// Describes a route as the role of its rule, "public" or "protected".
    fn describe(route: Route<'_>) -> String {
        match route {
            Route::Public => "public".to_owned(),
            Route::Protected { rule: None } => "protected".to_owned(),
            Route::Protected { rule: Some(rule) } => rule.role.clone().unwrap_or_default(),
        }
    }

    #[test]
    fn route_table() {
        let cases: &[(Access, Method, &str, &str)] = &[
            // Rules take precedence over public patterns.
            (Access::Public, Method::GET, "/api/admin", "root"),
            (Access::Protected, Method::GET, "/API/Admin/users", "root"),
            // Method filters.
            (Access::Protected, Method::POST, "/api/posts/1", "writer"),
            (Access::Protected, Method::DELETE, "/api/posts/1", "writer"),
            (Access::Protected, Method::GET, "/api/posts/1", "public"),
            (Access::Protected, Method::PUT, "/api/posts/1", "public"),
            // The first matching rule wins, even when a later one also matches.
            (Access::Protected, Method::DELETE, "/api/other", "janitor"),
            // A GET rule also covers HEAD, but not other methods.
            (Access::Protected, Method::GET, "/api/reports", "analyst"),
            (Access::Protected, Method::HEAD, "/api/reports", "analyst"),
            (Access::Protected, Method::POST, "/api/reports", "public"),
            // Public patterns.
            (Access::Protected, Method::GET, "/", "public"),
            (Access::Protected, Method::GET, "/sign-in/factor-one", "public"),
            // The default.
            (Access::Protected, Method::GET, "/dashboard", "protected"),
            (Access::Public, Method::GET, "/dashboard", "public"),
            (Access::Protected, Method::GET, "/private/health", "protected"),
        ];
        for (default, method, path, expected) in cases {
            let table = table(*default);
            let route = table.route(method, path);
            assert_eq!(describe(route), *expected, "{default:?} {method} {path}");
            assert_eq!(route.is_public(), *expected == "public");
            assert_eq!(route.rule().is_some(), !matches!(*expected, "public" | "protected"));
        }
    }

    #[test]
    fn bypass_never_considers_every_applying_rule() {
        let table = table(Access::Protected);
        assert!(table.bypass_never(&Method::GET, "/api/admin/x"));
        assert!(!table.bypass_never(&Method::GET, "/api/posts"));
        // A non-bypass rule listed first still leaves the later bypass_never rule in force.
        let mut listed = rules();
        listed.insert(0, rule("/api/(.*)", None, "anyone"));
        let table = RouteTable::new(Access::Protected, table.public().to_vec(), listed);
        assert_eq!(describe(table.route(&Method::GET, "/api/admin/x")), "anyone");
        assert!(table.bypass_never(&Method::GET, "/api/admin/x"));
    }

    #[test]
    fn empty_table_uses_default() {
        for (default, public) in [(Access::Public, true), (Access::Protected, false)] {
            let table = RouteTable::new(default, Vec::new(), Vec::new());
            let route = table.route(&Method::GET, "/anything");
            assert_eq!(route.is_public(), public);
            assert!(route.rule().is_none());
        }
    }

    #[test]
    fn normalised_paths_drive_routing() {
        let table = table(Access::Protected);
        let cases: &[(&str, &str)] = &[
            ("/sign-in/../api/admin", "root"),
            ("/sign-in/%2e%2e/api/admin", "root"),
            ("//api//admin", "root"),
            ("/%61pi/admin", "root"),
            ("/api/admin;x=1", "root"),
            ("/private%23/sign-in", "protected"),
        ];
        for (raw, expected) in cases {
            let normalised = normalise(raw).unwrap();
            let route = table.route(&Method::GET, &normalised.matching);
            assert_eq!(describe(route), *expected, "{raw}");
        }
        assert_eq!(normalise("/sign-in/..%2fapi/admin"), Err(PathError::EncodedSlash));
    }

    /// The precedence rules, read as written: every rule and pattern in list order.
    fn route_by_scan<'a>(table: &'a RouteTable, method: &Method, path: &str) -> (Option<&'a RouteRule>, bool, bool) {
        let rule = table.rules().iter().find(|r| r.applies_to(method, path));
        let public = table.public().iter().any(|p| p.matches(path));
        let never = table.rules().iter().any(|r| r.bypass_never && r.applies_to(method, path));
        (rule, public, never)
    }

    #[test]
    fn first_segments_are_what_every_match_starts_with() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/", Some("")),
            ("/Health", Some("health")),
            ("/api/admin(.*)", Some("api")),
            ("/api/:org/settings", Some("api")),
            ("/%41pi/x", Some("api")),
            ("/api(.*)", None),
            ("/sign-in(.*)", None),
            ("/:org/x", None),
            ("/(.*)", None),
        ];
        for (source, segment) in cases {
            assert_eq!(pattern(source).first_segment(), segment.map(str::as_bytes), "{source}");
        }
    }

    proptest::proptest! {
        /// The index finds exactly what reading every rule and pattern in order finds: the same
        /// first rule, the same public answer, the same `bypass_never`, for any table and path.
        #[test]
        fn the_index_decides_as_a_scan_of_every_rule(
            rules in proptest::collection::vec(("/(a|B|ab|%61|\\\\\\(a|:p|\\(\\.\\*\\)|x{65})(/(a|b|:q|\\(\\.\\*\\)))?(\\(\\.\\*\\))?", proptest::bool::ANY, proptest::bool::ANY), 0..12),
            public in proptest::collection::vec("/(a|b|A|:p|\\(\\.\\*\\))?(/(a|b|\\(\\.\\*\\)))?", 0..6),
            paths in proptest::collection::vec("/?(a|A|b|ab|x|\\(a|x{65})?(/(a|b|x)?)?/?", 1..8),
        ) {
            let rules: Vec<RouteRule> = rules
                .iter()
                .enumerate()
                .map(|(i, (source, get_only, never))| RouteRule {
                    pattern: pattern(source),
                    methods: get_only.then(|| vec![Method::GET]),
                    role: Some(format!("rule{i}")),
                    permission: None,
                    bypass_never: *never,
                    webhook: false,
                })
                .collect();
            let table = RouteTable::new(Access::Protected, public.iter().map(|p| pattern(p)).collect(), rules);
            for path in &paths {
                for method in [Method::GET, Method::POST] {
                    let (rule, public, never) = route_by_scan(&table, &method, path);
                    let route = table.route(&method, path);
                    proptest::prop_assert_eq!(
                        route.rule().map(|r| r.role.clone()),
                        rule.map(|r| r.role.clone()),
                        "{} {}", method, path
                    );
                    proptest::prop_assert_eq!(route.is_public(), rule.is_none() && public, "{} {}", method, path);
                    proptest::prop_assert_eq!(table.bypass_never(&method, path), never, "{} {}", method, path);
                }
            }
        }
    }
}
