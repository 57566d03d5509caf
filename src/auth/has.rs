//! Clerk's `has()`: does the session satisfy everything a caller asks about it?
//!
//! This mirrors the current `createCheckAuthorization` in Clerk's `authorization.ts`
//! (`clerk-semantics.md` §3.4). A question can touch three dimensions, organisation (`role`,
//! `permission`), billing (`feature`, `plan`) and reverification, and each is judged `Pass`,
//! `Fail` or `Skip` (not asked). The answer is yes only when at least one dimension was asked and
//! none failed: a strict, fail-closed AND, so `has({})` is false and missing or malformed session
//! data always denies.
//!
//! The session's pending status (`sts: "pending"`) is deliberately not consulted here: Clerk
//! turns a pending session into a signed-out one before `has()` ever runs, and the gateway makes
//! that decision (reject, or accept by configuration) before it asks about roles.

use serde_json::Value;

use super::claims::{split_by_scope, SessionClaims};

/// What a route (or a caller) asks about the session.
///
/// Each field is `None` when not asked. Values are raw JSON so that a non-string role,
/// permission, feature or plan (which Clerk's tests feed through `as any`) can be represented and
/// denied; `Some(Value::Null)` counts as asked, as `null !== undefined` does in JavaScript.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HasParams {
    /// An organisation role such as `org:admin` (the `org:` prefix is optional).
    pub role: Option<Value>,
    /// An organisation permission such as `org:billing:manage` (the `org:` prefix is optional).
    pub permission: Option<Value>,
    /// A billing feature, `[scope:]name` with scope `o`/`org`/`organization` or `u`/`user`.
    pub feature: Option<Value>,
    /// A billing plan, `[scope:]slug` with the same scopes as `feature`.
    pub plan: Option<Value>,
    /// A reverification requirement: a preset string (`strict_mfa`, `strict`, `moderate`, `lax`)
    /// or an object `{level, afterMinutes}`.
    pub reverification: Option<Value>,
}

/// Answers a `has()` question about the session with Clerk's current, fail-closed semantics.
pub fn has(claims: &SessionClaims, params: &HasParams) -> bool {
    if claims.user_id.is_empty() {
        return false;
    }
    combine(&[
        check_org(claims, asked(params.role.as_ref()), asked(params.permission.as_ref())),
        check_billing(claims, params),
        check_reverification(claims, params.reverification.as_ref()),
    ])
}

/// Convenience for the gateway's route rules (role and/or permission strings).
///
/// Equivalent to `has({role, permission})` without building JSON values on the request path.
/// With neither a role nor a permission nothing is asked, so, like `has({})`, the answer is
/// false: a route rule without requirements should not call this.
pub fn has_role_and_permission(claims: &SessionClaims, role: Option<&str>, permission: Option<&str>) -> bool {
    if claims.user_id.is_empty() {
        return false;
    }
    let role = role.map_or(Asked::No, Asked::Text);
    let permission = permission.map_or(Asked::No, Asked::Text);
    combine(&[check_org(claims, role, permission)])
}

/// One dimension's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Asked, and the session satisfies it.
    Pass,
    /// Asked, and the session does not satisfy it (including missing or malformed data).
    Fail,
    /// Not asked; it does not contribute to the answer.
    Skip,
}

/// How one string-valued parameter was asked.
#[derive(Debug, Clone, Copy)]
enum Asked<'a> {
    /// The parameter was not given.
    No,
    /// The parameter was given as a string.
    Text(&'a str),
    /// The parameter was given, but not as a string; Clerk fails the dimension rather than throw.
    NotText,
}

/// Classifies a raw parameter value.
fn asked(value: Option<&Value>) -> Asked<'_> {
    match value {
        None => Asked::No,
        Some(Value::String(text)) => Asked::Text(text),
        Some(_) => Asked::NotText,
    }
}

/// At least one dimension passed and none failed.
fn combine(verdicts: &[Verdict]) -> bool {
    verdicts.contains(&Verdict::Pass) && !verdicts.contains(&Verdict::Fail)
}

/// Turns a satisfied/unsatisfied requirement into a verdict.
fn verdict(satisfied: bool) -> Verdict {
    if satisfied {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// The organisation dimension: the role and the permission, when asked, must both hold.
fn check_org(claims: &SessionClaims, role: Asked<'_>, permission: Asked<'_>) -> Verdict {
    if matches!((role, permission), (Asked::No, Asked::No)) {
        return Verdict::Skip;
    }
    if matches!(role, Asked::NotText) || matches!(permission, Asked::NotText) {
        return Verdict::Fail;
    }
    let Some(org) = claims.org.as_ref().filter(|org| !org.id.is_empty()) else {
        return Verdict::Fail;
    };
    if let Asked::Text(wanted) = role {
        // Clerk compares `prefixWithOrg(orgRole) === prefixWithOrg(role)`, which is the same as
        // comparing both with every leading `org:` removed; an empty held role never matches.
        let held = org.role.as_deref().filter(|held| !held.is_empty());
        if held.map(strip_org_prefixes) != Some(strip_org_prefixes(wanted)) {
            return Verdict::Fail;
        }
    }
    if let Asked::Text(wanted) = permission {
        // Clerk tests `orgPermissions.includes(prefixWithOrg(permission))`: only the asked value
        // is normalised, the held permissions are compared as they stand.
        let wanted = strip_org_prefixes(wanted);
        let held = org.permissions.iter().any(|held| held.strip_prefix("org:") == Some(wanted));
        if !held {
            return Verdict::Fail;
        }
    }
    Verdict::Pass
}

/// Removes every leading `org:`, so that `prefixWithOrg(x)` (`x.replace(/^(org:)*/, "org:")`)
/// equals `"org:" + strip_org_prefixes(x)` without allocating.
fn strip_org_prefixes(mut value: &str) -> &str {
    while let Some(rest) = value.strip_prefix("org:") {
        value = rest;
    }
    value
}

/// The billing dimension: the feature and the plan, when asked, must both be in the claims.
fn check_billing(claims: &SessionClaims, params: &HasParams) -> Verdict {
    let feature = asked(params.feature.as_ref());
    let plan = asked(params.plan.as_ref());
    if matches!((feature, plan), (Asked::No, Asked::No)) {
        return Verdict::Skip;
    }
    if matches!(feature, Asked::NotText) || matches!(plan, Asked::NotText) {
        return Verdict::Fail;
    }
    if let Asked::Text(wanted) = feature {
        if !entitled(claims.features.as_deref(), wanted) {
            return Verdict::Fail;
        }
    }
    if let Asked::Text(wanted) = plan {
        if !entitled(claims.plans.as_deref(), wanted) {
            return Verdict::Fail;
        }
    }
    Verdict::Pass
}

/// Clerk's `checkForFeatureOrPlan`: is `wanted` (`[scope:]id`) listed in the `fea`/`pla` claim?
///
/// Only the first two `:`-separated parts of `wanted` count. With a scope, `org`-like scopes look
/// in the org list and `user`-like scopes in the user list, and any other scope is an error in the
/// SDK, so it fails here; an empty id after the colon falls back to the scope itself, as the
/// SDK's `rawId || rawScope` does. Without a scope either list will do. An empty or malformed
/// claim grants nothing.
fn entitled(claim: Option<&str>, wanted: &str) -> bool {
    let Some(claim) = claim.filter(|claim| !claim.is_empty()) else {
        return false;
    };
    let Some(scoped) = split_by_scope(claim) else {
        return false;
    };
    let mut parts = wanted.split(':');
    let scope = parts.next().unwrap_or_default();
    let Some(raw_id) = parts.next() else {
        return scoped.org.contains(&scope) || scoped.user.contains(&scope);
    };
    let id = if raw_id.is_empty() { scope } else { raw_id };
    match scope {
        "o" | "org" | "organization" => scoped.org.contains(&id),
        "u" | "user" => scoped.user.contains(&id),
        _ => false,
    }
}

/// Which factors a reverification requirement looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// `first_factor`: the first factor alone.
    First,
    /// `second_factor`: the second factor, or the first when no second factor is enrolled.
    Second,
    /// `multi_factor`: both factors, or the first when no second factor is enrolled.
    Multi,
}

/// The reverification dimension: were the required factors verified recently enough?
fn check_reverification(claims: &SessionClaims, config: Option<&Value>) -> Verdict {
    let Some(config) = config else {
        return Verdict::Skip;
    };
    let Some((first, second)) = claims.fva.as_ref().and_then(factor_ages) else {
        return Verdict::Fail;
    };
    let Some((level, after_minutes)) = reverification_config(config) else {
        return Verdict::Fail;
    };
    verdict(fresh_enough(level, after_minutes, first, second))
}

/// The two factor ages of `fva`, when it is exactly two finite numbers that are each `-1` (not
/// enrolled) or non-negative; anything else is malformed and fails the dimension.
fn factor_ages(fva: &Value) -> Option<(f64, f64)> {
    let [first, second] = fva.as_array()?.as_slice() else {
        return None;
    };
    let age = |value: &Value| value.as_f64().filter(|age| age.is_finite() && (*age == -1.0 || *age >= 0.0));
    Some((age(first)?, age(second)?))
}

/// Resolves a preset name or a `{level, afterMinutes}` object; `afterMinutes` must be a number
/// greater than zero.
fn reverification_config(config: &Value) -> Option<(Level, f64)> {
    match config {
        Value::String(preset) => match preset.as_str() {
            "strict_mfa" => Some((Level::Multi, 10.0)),
            "strict" => Some((Level::Second, 10.0)),
            "moderate" => Some((Level::Second, 60.0)),
            "lax" => Some((Level::Second, 1440.0)),
            _ => None,
        },
        Value::Object(object) => {
            let level = match object.get("level").and_then(Value::as_str)? {
                "first_factor" => Level::First,
                "second_factor" => Level::Second,
                "multi_factor" => Level::Multi,
                _ => return None,
            };
            let after_minutes = object.get("afterMinutes").and_then(Value::as_f64).filter(|minutes| *minutes > 0.0)?;
            Some((level, after_minutes))
        }
        _ => None,
    }
}

/// Clerk's freshness rules. A factor is fresh when it is enrolled (age not `-1`) and was verified
/// strictly less than `after_minutes` ago.
///
/// `second_factor` prefers the second factor and falls back to the first when no second factor is
/// enrolled; `multi_factor` needs both fresh, but also falls back to the first factor alone when
/// no second factor is enrolled (so `[0, -1]` satisfies `strict_mfa`), while a missing first
/// factor with an enrolled second one fails.
fn fresh_enough(level: Level, after_minutes: f64, first: f64, second: f64) -> bool {
    let first_enrolled = first != -1.0;
    let second_enrolled = second != -1.0;
    // With neither factor enrolled neither is fresh, so every level below fails, as the SDK's
    // explicit `[-1, -1]` check does.
    let first_fresh = first_enrolled && after_minutes > first;
    let second_fresh = second_enrolled && after_minutes > second;
    match level {
        Level::First => first_fresh,
        Level::Second if second_enrolled => second_fresh,
        Level::Multi if second_enrolled => first_fresh && second_fresh,
        Level::Second | Level::Multi => first_fresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{json, Map};

    /// Builds claims from a `json!` payload the way the gateway does.
    fn claims(payload: Value) -> SessionClaims {
        assert!(payload.is_object(), "test payload must be an object, got {payload}");
        let payload = crate::auth::payload::Payload::deserialize(payload).expect("a payload");
        SessionClaims::from_payload(&payload).expect("well-formed test claims")
    }

    /// Builds parameters from a `json!` object: a present key (even `null`) is asked.
    fn params(question: Value) -> HasParams {
        let mut map: Map<String, Value> = match question {
            Value::Object(map) => map,
            other => panic!("test question must be an object, got {other}"),
        };
        let params = HasParams {
            role: map.remove("role"),
            permission: map.remove("permission"),
            feature: map.remove("feature"),
            plan: map.remove("plan"),
            reverification: map.remove("reverification"),
        };
        assert!(map.is_empty(), "unknown has() keys: {map:?}");
        params
    }

    /// Runs a table of `(question, expected)` against one session.
    fn check_table(session: &SessionClaims, table: &[(Value, bool)]) {
        for (question, expected) in table {
            assert_eq!(has(session, &params(question.clone())), *expected, "has({question}) on {session:?}");
        }
    }

    /// Case 67: a v1 token from the days before roles were prefixed.
    #[test]
    fn v1_unprefixed_admin_role() {
        let session = claims(json!({
            "sub": "userId", "sid": "sessionId", "act": {"sub": "actor"},
            "org_id": "orgId", "org_role": "admin", "org_slug": "orgSlug",
            "org_permissions": ["org:f1:read", "org:f2:manage"],
        }));
        check_table(
            &session,
            &[
                (json!({"role": "org:admin"}), true),
                (json!({"role": "admin"}), true),
                (json!({"role": "org:org:admin"}), true),
                (json!({"role": "member"}), false),
                (json!({"permission": "org:f1:read"}), true),
                (json!({"permission": "f1:read"}), true),
                (json!({"permission": "org:f1"}), false),
                (json!({"permission": "org:f2:manage"}), true),
                (json!({"permission": "org:f2"}), false),
                (json!({"feature": "org:reservations"}), false),
                (json!({"feature": "org:impersonation"}), false),
            ],
        );
    }

    /// The v2 counterpart from Clerk's `authObjects` tests: permissions come from `fpm`.
    #[test]
    fn v2_org_role_and_permissions() {
        let session = claims(json!({
            "v": 2, "sub": "userId", "sid": "sessionId", "act": {"sub": "actor"},
            "fea": "o:reservations,o:impersonation",
            "o": {"id": "orgId", "rol": "admin", "slg": "orgSlug", "per": "read,manage", "fpm": "3"},
        }));
        check_table(
            &session,
            &[
                (json!({"role": "org:admin"}), true),
                (json!({"role": "admin"}), true),
                (json!({"permission": "org:reservations:read"}), true),
                (json!({"permission": "reservations:manage"}), true),
                (json!({"permission": "org:impersonation:read"}), false),
                (json!({"feature": "org:reservations"}), true),
                (json!({"feature": "org:impersonation"}), true),
            ],
        );
    }

    /// Case 68 (combination rules) on a fully populated session.
    #[test]
    fn combination_rules() {
        let session = claims(json!({
            "sub": "user_123", "org_id": "org_123", "org_role": "org:admin",
            "org_permissions": ["org:sys_memberships:read"],
            "fea": "o:reservations", "pla": "u:plus", "fva": [0, 0],
        }));
        check_table(
            &session,
            &[
                (json!({}), false),
                // Role and permission are ANDed.
                (json!({"role": "org:admin", "permission": "org:sys_memberships:read"}), true),
                (json!({"role": "org:admin", "permission": "org:sys_profile:delete"}), false),
                (json!({"role": "org:member", "permission": "org:sys_memberships:read"}), false),
                // Feature and plan are ANDed.
                (json!({"feature": "org:reservations", "plan": "u:plus"}), true),
                (json!({"feature": "org:reservations", "plan": "u:free"}), false),
                (json!({"feature": "org:missing", "plan": "u:plus"}), false),
                // Organisation and billing are ANDed.
                (json!({"permission": "org:sys_profile:delete", "feature": "org:reservations"}), false),
                (json!({"permission": "org:sys_memberships:read", "feature": "org:reservations"}), true),
                (json!({"role": "org:admin", "feature": "org:missing"}), false),
                (json!({"role": "org:admin", "plan": "u:free"}), false),
                (json!({"role": "org:admin", "feature": "org:reservations"}), true),
                // Reverification is ANDed with the rest.
                (json!({"role": "org:admin", "reverification": "strict"}), true),
                (json!({"role": "org:member", "reverification": "strict"}), false),
                (json!({"feature": "org:missing", "reverification": "strict"}), false),
                (json!({"permission": "org:sys_memberships:read", "reverification": "invalid-value"}), false),
                // Non-string values fail without throwing.
                (json!({"role": null}), false),
                (json!({"permission": null}), false),
                (json!({"feature": null}), false),
                (json!({"plan": null}), false),
                (json!({"role": 123}), false),
                (json!({"permission": 123}), false),
                (json!({"feature": ["org:reservations"]}), false),
                (json!({"plan": {"u": "plus"}}), false),
                (json!({"reverification": null}), false),
                (json!({"role": 123, "feature": "org:reservations"}), false),
            ],
        );
    }

    /// Case 68: without an organisation, any organisation question fails, even next to a passing
    /// reverification check.
    #[test]
    fn missing_org_fails_org_questions() {
        let session = claims(json!({"sub": "user_123", "fva": [0, 0]}));
        check_table(
            &session,
            &[
                (json!({"role": "org:admin"}), false),
                (json!({"permission": "org:sys_profile:delete"}), false),
                (json!({"permission": "org:sys_profile:delete", "reverification": "strict"}), false),
                (json!({"role": "org:admin", "reverification": "strict"}), false),
                (json!({"reverification": "strict"}), true),
            ],
        );
    }

    /// Case 68: reverification with every preset, malformed ages and malformed configurations.
    #[test]
    fn reverification_rules() {
        let cases: Vec<(Value, Value, bool)> = vec![
            // (fva, reverification, expected)
            (json!(null), json!("strict"), false),
            (json!(["0", "0"]), json!("strict_mfa"), false),
            (json!([-0.5, 0]), json!("strict"), false),
            (json!([0, -2]), json!("strict"), false),
            (json!([0]), json!("strict"), false),
            (json!([0, 0, 0]), json!("strict"), false),
            (json!({"0": 0, "1": 0}), json!("strict"), false),
            (json!("0,0"), json!("strict"), false),
            (json!([0, -1]), json!("strict_mfa"), true),
            (json!([-1, -1]), json!("strict_mfa"), false),
            (json!([-1, -1]), json!("strict"), false),
            (json!([-1, -1]), json!("lax"), false),
            (json!([-1, -1]), json!({"level": "first_factor", "afterMinutes": 10}), false),
            (json!([0, 0]), json!({"level": "multi_factor"}), false),
            (json!([0, 0]), json!({"level": "multi_factor", "afterMinutes": 0}), false),
            (json!([0, 0]), json!({"level": "multi_factor", "afterMinutes": -1}), false),
            (json!([0, 0]), json!({"level": "multi_factor", "afterMinutes": "10"}), false),
            (json!([0, 0]), json!({"level": "third_factor", "afterMinutes": 10}), false),
            (json!([0, 0]), json!({"level": "multi_factor", "afterMinutes": 0.5}), true),
            (json!([0, 0]), json!("invalid-value"), false),
            (json!([0, 0]), json!(""), false),
            (json!([0, 0]), json!(10), false),
            (json!([0, 0]), json!(["strict"]), false),
            // Freshness is strict: an age equal to the limit is too old.
            (json!([10, 10]), json!("strict"), false),
            (json!([10, -1]), json!("strict"), false),
            (json!([10, 0]), json!({"level": "first_factor", "afterMinutes": 10}), false),
            (json!([10, 0]), json!("strict_mfa"), false),
            (json!([9.5, 9.5]), json!("strict"), true),
            // second_factor prefers the second factor and falls back to whichever is enrolled.
            (json!([20, 5]), json!("strict"), true),
            (json!([5, 20]), json!("strict"), false),
            (json!([5, -1]), json!("strict"), true),
            (json!([20, -1]), json!("strict"), false),
            (json!([-1, 5]), json!("strict"), true),
            (json!([-1, 20]), json!("strict"), false),
            (json!([59, 59]), json!("moderate"), true),
            (json!([0, 1439]), json!("lax"), true),
            (json!([0, 1440]), json!("lax"), false),
            // first_factor looks only at the first factor.
            (json!([5, 500]), json!({"level": "first_factor", "afterMinutes": 10}), true),
            (json!([-1, 0]), json!({"level": "first_factor", "afterMinutes": 10}), false),
            // multi_factor needs both, falls back to the first, and fails without the first.
            (json!([5, 5]), json!("strict_mfa"), true),
            (json!([5, 20]), json!("strict_mfa"), false),
            (json!([20, 5]), json!("strict_mfa"), false),
            (json!([20, -1]), json!("strict_mfa"), false),
            (json!([-1, 5]), json!("strict_mfa"), false),
        ];
        for (fva, reverification, expected) in cases {
            let session = claims(json!({"sub": "user_123", "fva": fva}));
            let question = HasParams { reverification: Some(reverification.clone()), ..HasParams::default() };
            assert_eq!(has(&session, &question), expected, "fva={fva} reverification={reverification}");
        }
    }

    /// Case 69: feature lookups by scope alias and by bare name.
    #[test]
    fn feature_scopes() {
        let session = claims(json!({
            "sub": "user_123", "org_id": "org_123", "org_role": "admin",
            "org_permissions": ["org:read"], "fea": "o:reservations,u:dashboard",
            "pla": "free_user,plus_user", "fva": [1000, 2000],
        }));
        check_table(
            &session,
            &[
                (json!({"feature": "o:reservations"}), true),
                (json!({"feature": "org:reservations"}), true),
                (json!({"feature": "organization:reservations"}), true),
                (json!({"feature": "reservations"}), true),
                (json!({"feature": "u:dashboard"}), true),
                (json!({"feature": "user:dashboard"}), true),
                (json!({"feature": "dashboard"}), true),
                (json!({"feature": "lol:dashboard"}), false),
                (json!({"feature": "u:reservations"}), false),
                (json!({"feature": "org:dashboard"}), false),
                (json!({"feature": "ou:reservations"}), false),
                (json!({"feature": "org:reservations:extra"}), true),
                (json!({"feature": ""}), false),
                // The plans claim here has no colons, so every plan question fails.
                (json!({"plan": "free_user"}), false),
            ],
        );
    }

    /// Case 69: plan lookups by scope.
    #[test]
    fn plan_scopes() {
        let session = claims(json!({"sub": "user_123", "pla": "u:pro,o:business"}));
        check_table(
            &session,
            &[
                (json!({"plan": "org:business"}), true),
                (json!({"plan": "o:business"}), true),
                (json!({"plan": "user:business"}), false),
                (json!({"plan": "u:pro"}), true),
                (json!({"plan": "org:pro"}), false),
                (json!({"plan": "pro"}), true),
                (json!({"plan": "business"}), true),
                (json!({"plan": "enterprise"}), false),
                (json!({"feature": "pro"}), false),
            ],
        );
    }

    /// Claim shapes that the SDK would reject or coerce: each must deny.
    #[test]
    fn billing_claim_edge_cases() {
        let cases: Vec<(Value, Value, bool)> = vec![
            // (payload, question, expected)
            (json!({"sub": "u", "fea": ""}), json!({"feature": "org:premium"}), false),
            (json!({"sub": "u"}), json!({"feature": "premium"}), false),
            (json!({"sub": "u", "fea": "premium,o:other"}), json!({"feature": "o:other"}), false),
            (json!({"sub": "u", "fea": "o:a,"}), json!({"feature": "a"}), false),
            (json!({"sub": "u", "fea": " o:a , uo:b "}), json!({"feature": "user:b"}), true),
            // `org:` with nothing after the colon looks up the scope name itself, as the SDK's
            // `rawId || rawScope` does.
            (json!({"sub": "u", "fea": "o:org"}), json!({"feature": "org:"}), true),
            (json!({"sub": "u", "fea": "o:a"}), json!({"feature": "org:"}), false),
            // An empty bare name matches an element with an empty id.
            (json!({"sub": "u", "fea": "u:"}), json!({"feature": ""}), true),
        ];
        for (payload, question, expected) in cases {
            assert_eq!(
                has(&claims(payload.clone()), &params(question.clone())),
                expected,
                "has({question}) on {payload}"
            );
        }
    }

    /// A session without a user id authorises nothing, however well the rest matches.
    #[test]
    fn falsy_user_id_denies_everything() {
        let payloads = [
            json!({"sub": "", "org_id": "org_1", "org_role": "org:admin", "fea": "o:a", "fva": [0, 0]}),
            json!({"sub": 7, "org_id": "org_1", "org_role": "org:admin", "fea": "o:a", "fva": [0, 0]}),
        ];
        for payload in payloads {
            let session = claims(payload);
            check_table(
                &session,
                &[
                    (json!({"role": "org:admin"}), false),
                    (json!({"feature": "a"}), false),
                    (json!({"reverification": "strict"}), false),
                ],
            );
            assert!(!has_role_and_permission(&session, Some("org:admin"), None));
        }
    }

    /// Organisation data the SDK would treat as falsy or throw on.
    #[test]
    fn org_claim_edge_cases() {
        let cases: Vec<(Value, Value, bool)> = vec![
            (json!({"sub": "u", "org_id": "org_1", "org_role": ""}), json!({"role": ""}), false),
            (
                json!({"sub": "u", "org_id": "org_1", "org_role": "org:admin"}),
                json!({"permission": "org:admin"}),
                false,
            ),
            (
                json!({"sub": "u", "org_id": "org_1", "org_permissions": ["f1:read"]}),
                json!({"permission": "f1:read"}),
                false,
            ),
            (
                json!({"sub": "u", "org_id": "org_1", "org_permissions": "org:f1:read"}),
                json!({"permission": "org:f1"}),
                false,
            ),
            (
                json!({"sub": "u", "org_id": "org_1", "org_permissions": ["org:org:f1:read"]}),
                json!({"permission": "org:org:f1:read"}),
                false,
            ),
            (
                json!({"sub": "u", "org_id": "org_1", "org_permissions": ["org:f1:read"]}),
                json!({"permission": "org:org:f1:read"}),
                true,
            ),
            (json!({"sub": "u", "org_id": "org_1", "org_role": "Org:admin"}), json!({"role": "admin"}), false),
            (json!({"v": 2, "sub": "u", "o": {"id": "org_1", "rol": "admin"}}), json!({"role": "org:admin"}), true),
            (json!({"v": 2, "sub": "u", "o": {"rol": "admin"}}), json!({"role": "org:admin"}), false),
        ];
        for (payload, question, expected) in cases {
            assert_eq!(
                has(&claims(payload.clone()), &params(question.clone())),
                expected,
                "has({question}) on {payload}"
            );
        }
    }

    #[test]
    fn route_rule_convenience() {
        let session = claims(json!({
            "sub": "user_1", "org_id": "org_1", "org_role": "org:admin",
            "org_permissions": ["org:billing:manage"],
        }));
        let no_org = claims(json!({"sub": "user_1"}));
        let cases: Vec<(&SessionClaims, Option<&str>, Option<&str>, bool)> = vec![
            (&session, Some("org:admin"), None, true),
            (&session, Some("admin"), None, true),
            (&session, Some("org:member"), None, false),
            (&session, None, Some("org:billing:manage"), true),
            (&session, None, Some("billing:manage"), true),
            (&session, None, Some("org:billing"), false),
            (&session, Some("org:admin"), Some("org:billing:manage"), true),
            (&session, Some("org:admin"), Some("org:billing:read"), false),
            (&session, Some("org:member"), Some("org:billing:manage"), false),
            (&session, None, None, false),
            (&no_org, Some("org:admin"), None, false),
            (&no_org, None, Some("org:billing:manage"), false),
        ];
        for (session, role, permission, expected) in cases {
            assert_eq!(
                has_role_and_permission(session, role, permission),
                expected,
                "role={role:?} permission={permission:?}"
            );
            // The convenience must agree with the general entry point.
            let question = HasParams {
                role: role.map(Value::from),
                permission: permission.map(Value::from),
                ..HasParams::default()
            };
            assert_eq!(has(session, &question), expected);
        }
    }

    /// Pending status is the caller's decision; `has()` answers from the claims alone.
    #[test]
    fn pending_is_not_consulted() {
        let session = claims(json!({
            "sub": "user_1", "sts": "pending", "org_id": "org_1", "org_role": "org:admin",
        }));
        assert!(session.pending);
        assert!(has(&session, &params(json!({"role": "org:admin"}))));
    }
}
