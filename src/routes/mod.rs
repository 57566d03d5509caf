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
    /// What applies when neither a rule nor a public pattern matches.
    pub default: Access,
    /// Paths that need no session, unless a rule matches first.
    pub public: Vec<RoutePattern>,
    /// Protected routes with extra conditions, in priority order.
    pub rules: Vec<RouteRule>,
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
    /// Precedence: the first rule whose pattern and methods match decides (Protected with that
    /// rule, since a rule always means "protected, with these extra conditions"); otherwise a
    /// match in `public` makes it Public; otherwise `default` decides.
    #[must_use]
    pub fn route(&self, method: &Method, matching_path: &str) -> Route<'_> {
        if let Some(rule) = self.rules.iter().find(|rule| rule.applies_to(method, matching_path)) {
            return Route::Protected { rule: Some(rule) };
        }
        if self.public.iter().any(|pattern| pattern.matches(matching_path)) {
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
        self.rules.iter().any(|rule| rule.bypass_never && rule.applies_to(method, matching_path))
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

    fn table(default: Access) -> RouteTable {
        RouteTable {
            default,
            public: vec![pattern("/"), pattern("/sign-in(.*)"), pattern("/api(.*)")],
            rules: vec![
                rule("/api/admin(.*)", None, "root"),
                rule("/api/posts(.*)", Some(&[Method::POST, Method::DELETE]), "writer"),
                rule("/api/reports(.*)", Some(&[Method::GET]), "analyst"),
                rule("/api/(.*)", Some(&[Method::DELETE]), "janitor"),
            ],
        }
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
        let mut table = table(Access::Protected);
        assert!(table.bypass_never(&Method::GET, "/api/admin/x"));
        assert!(!table.bypass_never(&Method::GET, "/api/posts"));
        // A non-bypass rule listed first still leaves the later bypass_never rule in force.
        table.rules.insert(0, rule("/api/(.*)", None, "anyone"));
        assert_eq!(describe(table.route(&Method::GET, "/api/admin/x")), "anyone");
        assert!(table.bypass_never(&Method::GET, "/api/admin/x"));
    }

    #[test]
    fn empty_table_uses_default() {
        for (default, public) in [(Access::Public, true), (Access::Protected, false)] {
            let table = RouteTable { default, public: Vec::new(), rules: Vec::new() };
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
}
