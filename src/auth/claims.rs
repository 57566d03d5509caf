//! The normalised auth object built from an already signature-verified session token payload.
//!
//! This mirrors Clerk's `jwtPayloadParser.ts` (`clerk-semantics.md` §3.2–§3.3). Version 2 tokens
//! (`"v": 2`) carry the active organisation compactly in `o` and encode its permissions as one
//! decimal bitmask per org-scoped feature (`o.fpm`); every other token is read with the v1 claim
//! names (`org_id`, `org_role`, `org_slug`, `org_permissions`). Both encodings end up in the same
//! [`SessionClaims`], so `has()` and the identity headers never need to know which one a token
//! used.
//!
//! Where Clerk's SDK would throw on a malformed organisation claim (a `fea` element without a
//! scope, a non-string `fea`, `o.per` or `o.fpm`), its auth object cannot be built and the
//! request has no usable session; [`SessionClaims::from_payload`] answers [`MalformedClaims`] so
//! the verifier can refuse the token the same way, rather than grant the role and drop the
//! permissions. Where the SDK would instead let a non-string slip through JavaScript's loose
//! typing, this module fails closed: the claim contributes nothing (no role, no permissions).
//! Every such choice can only deny more, never grant more.

use serde_json::Value;

use super::payload::{Claim, OrgClaim, Payload};

/// The organisation the session has active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgContext {
    /// The organisation id (`o.id` in v2, `org_id` in v1); never empty, because Clerk treats an
    /// empty id as "no active organisation".
    pub id: String,
    /// The organisation slug (`o.slg` in v2, `org_slug` in v1), verbatim.
    pub slug: Option<String>,
    /// The member's role: `"org:" + o.rol` in v2 (only when `rol` is a non-empty string), and
    /// `org_role` verbatim in v1, where very old tokens carry `admin` without the prefix.
    pub role: Option<String>,
    /// The member's permissions: v1 `org_permissions` verbatim (string elements only); v2 decoded
    /// from `fea`, `o.per` and `o.fpm`, each `org:<feature>:<permission>`.
    pub permissions: Vec<String>,
}

/// The session as the gateway sees it once the token's signature and time claims are verified.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionClaims {
    /// The user id (`sub`). The verifier has already rejected tokens whose `sub` is not a string;
    /// should one get here anyway it becomes the empty string, which `has()` treats as signed out.
    pub user_id: String,
    /// The session id (`sid`).
    pub session_id: Option<String>,
    /// The active organisation; `None` for a v2 token without `o` or a v1 token without a
    /// non-empty string `org_id`.
    pub org: Option<OrgContext>,
    /// The impersonating actor (`act.sub`), when `act` is an object with a string `sub`.
    pub actor: Option<String>,
    /// The raw `fea` claim (comma list of `scope:feature`), read by `has({feature})`.
    pub features: Option<String>,
    /// The raw `pla` claim (comma list of `scope:plan`), read by `has({plan})`.
    pub plans: Option<String>,
    /// The raw `fva` claim (`[first_factor_age, second_factor_age]` in minutes), read by
    /// `has({reverification})`. A JSON `null` is stored as `None`, as the SDK's `fva ?? null` does.
    pub fva: Option<Value>,
    /// Whether the session still has pending tasks (`sts == "pending"`), such as choosing a
    /// mandatory organisation.
    pub pending: bool,
}

/// Organisation claims that Clerk's SDK cannot read: building its auth object throws, so the
/// session is not usable at all (`unexpected-error` for a cookie, no auth for a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedClaims {
    /// What is wrong, for the refusal message.
    pub problem: &'static str,
}

impl SessionClaims {
    /// Builds the auth object exactly as Clerk's jwtPayloadParser does: `v` equal to the JSON
    /// number 2 selects v2, anything else v1. Fails where the SDK throws (see [`MalformedClaims`]).
    pub fn from_payload(payload: &Payload<'_>) -> Result<SessionClaims, MalformedClaims> {
        let org = if is_v2(payload) { v2_org(payload)? } else { v1_org(payload) };
        Ok(SessionClaims {
            user_id: string_claim(payload.sub.as_ref()).unwrap_or_default(),
            session_id: string_claim(payload.sid.as_ref()),
            org,
            actor: match &payload.act {
                Some(Claim::Json(Value::Object(act))) => act.get("sub").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            },
            // The SDK reads `fea` and `pla` for `has()` whatever the token version, so they are
            // kept for v1 tokens too (Clerk only mints them in v2).
            features: string_claim(payload.fea.as_ref()),
            plans: string_claim(payload.pla.as_ref()),
            fva: payload.fva.as_ref().filter(|fva| fva.as_json() != Some(&Value::Null)).map(Claim::to_value),
            pending: payload.sts.as_ref().and_then(Claim::as_str) == Some("pending"),
        })
    }

    /// The permissions `has()` can grant, in claim order: those of the active organisation that
    /// start with `org:`. A v1 permission without the prefix can never satisfy `has()`, so it is
    /// not advertised to the upstream either.
    pub fn listed_permissions(&self) -> impl Iterator<Item = &str> {
        self.org.iter().flat_map(|org| org.permissions.iter()).map(String::as_str).filter(|p| p.starts_with("org:"))
    }
}

/// Decodes v2 `o.fpm` against `fea` and `o.per` (§3.3). Exposed for benches.
///
/// Mask *i* belongs to the *i*-th org-scoped feature of `fea` (scope `o`, `ou` or `uo`), and its
/// bit *j* (least significant first) grants `org:<feature>:<per[j]>`. Masks are arbitrary-precision
/// decimals; one that is not all ASCII digits after trimming grants nothing but still occupies its
/// position. Extra masks, and bits beyond the permission list, are ignored.
///
/// Where the SDK throws because a `fea` element has no `:`, this returns no permissions at all:
/// once the feature list cannot be parsed, the alignment of every later mask is in doubt, so no
/// mask can be trusted.
pub fn decode_v2_permissions(fea: &str, per: &str, fpm: &str) -> Vec<String> {
    match split_by_scope(fea) {
        Some(scoped) => org_permissions(&scoped.org, per, fpm),
        None => Vec::new(),
    }
}

/// The permissions `o.per` and `o.fpm` grant for the org-scoped features of `fea`, in order.
fn org_permissions(org_features: &[&str], per: &str, fpm: &str) -> Vec<String> {
    // The SDK returns early on an empty `per` or `fpm` (JavaScript's falsy check runs on the
    // untrimmed strings, so a lone space still counts as present).
    if per.is_empty() || fpm.is_empty() {
        return Vec::new();
    }
    let permissions: Vec<&str> = per.split(',').map(js_trim).collect();
    let mut granted = Vec::new();
    for (feature, mask) in org_features.iter().zip(fpm.split(',')) {
        let Some(bits) = mask_low_bits(js_trim(mask), permissions.len()) else {
            continue;
        };
        for (index, permission) in permissions.iter().enumerate() {
            if (bits[index / 64] >> (index % 64)) & 1 == 1 {
                granted.push(["org:", feature, ":", permission].concat());
            }
        }
    }
    granted
}

/// A `fea`/`pla` claim split into its org-scoped and user-scoped ids.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ScopedIds<'a> {
    /// Ids with scope `o`, `ou` or `uo`, in claim order.
    pub(crate) org: Vec<&'a str>,
    /// Ids with scope `u`, `ou` or `uo`, in claim order.
    pub(crate) user: Vec<&'a str>,
}

/// Splits a `scope:id` comma list as Clerk's `splitByScope` does, shared by the `fpm` decoder and
/// `has({feature, plan})` so both read the claims identically.
///
/// Each element is trimmed and split at its first `:`; unknown scopes are skipped. An element
/// without `:` (including the empty element a stray comma leaves) is where the SDK throws, so the
/// whole claim is rejected with `None` and each caller fails closed.
pub(crate) fn split_by_scope(claim: &str) -> Option<ScopedIds<'_>> {
    let mut scoped = ScopedIds::default();
    if claim.is_empty() {
        return Some(scoped);
    }
    for element in claim.split(',') {
        let (scope, id) = js_trim(element).split_once(':')?;
        match scope {
            "o" => scoped.org.push(id),
            "u" => scoped.user.push(id),
            "ou" | "uo" => {
                scoped.org.push(id);
                scoped.user.push(id);
            }
            _ => {}
        }
    }
    Some(scoped)
}

/// Trims exactly what JavaScript's `String.prototype.trim` trims, so that a claim element is
/// accepted or rejected as it is by the SDK.
///
/// Rust's `str::trim` differs in two code points: it strips U+0085 (NEL), which JavaScript keeps,
/// and keeps U+FEFF (BOM), which JavaScript strips.
fn js_trim(text: &str) -> &str {
    text.trim_matches(|c: char| {
        matches!(
            c,
            '\u{0009}'..='\u{000D}'
                | '\u{0020}'
                | '\u{00A0}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
        )
    })
}

/// Whether `v` is the JSON number 2, which is what the SDK's `switch (claims.v) case 2` tests:
/// `2.0` is the same JavaScript number, while the string `"2"` is not.
fn is_v2(payload: &Payload<'_>) -> bool {
    matches!(&payload.v, Some(Claim::Json(Value::Number(v))) if v.as_f64() == Some(2.0))
}

/// Reads the active organisation of a v2 token from `o`.
///
/// As soon as `o` is truthy the SDK splits `fea` (and, when `o` is an object, `o.per` and
/// `o.fpm`): a non-string value there, or a `fea` element without a scope, makes it throw, and
/// that is [`MalformedClaims`] here, whether or not `o` names an organisation.
///
/// `o` must be an object with a non-empty string `id` to be an organisation; the SDK would still
/// build a role and permissions for an `o` without an id, but never lets them authorise anything
/// (`has()` fails without `orgId`), so there is no organisation to report.
fn v2_org(payload: &Payload<'_>) -> Result<Option<OrgContext>, MalformedClaims> {
    let o = match &payload.o {
        None => return Ok(None),
        Some(OrgClaim::Json(other)) if !js_truthy(other) => return Ok(None),
        Some(OrgClaim::Json(_)) => None,
        Some(OrgClaim::Object(members)) => Some(members),
    };
    let fea = js_split_operand(payload.fea.as_ref(), "The fea claim is not a string.")?;
    let scoped = split_by_scope(fea)
        .ok_or(MalformedClaims { problem: "The fea claim has an element without a scope (scope:feature)." })?;
    let per = js_split_operand(o.and_then(|o| o.per.as_ref()), "The o.per claim is not a string.")?;
    let fpm = js_split_operand(o.and_then(|o| o.fpm.as_ref()), "The o.fpm claim is not a string.")?;
    let Some(o) = o else { return Ok(None) };
    let Some(id) = non_empty_string(o.id.as_ref()) else { return Ok(None) };
    Ok(Some(OrgContext {
        id,
        slug: string_claim(o.slg.as_ref()),
        // The SDK prefixes any truthy `rol`, including numbers; only strings are honoured here,
        // since a non-string role is malformed and should not be coerced into a grantable name.
        role: non_empty_string(o.rol.as_ref()).map(|rol| format!("org:{rol}")),
        permissions: org_permissions(&scoped.org, per, fpm),
    }))
}

/// A claim the SDK calls `.split(',')` on when it is truthy: absent or falsy reads as empty (the
/// SDK skips it), a string is itself, anything else throws in the SDK and is `problem` here.
fn js_split_operand<'a>(claim: Option<&'a Claim<'_>>, problem: &'static str) -> Result<&'a str, MalformedClaims> {
    match claim {
        Some(Claim::Str(text)) => Ok(text),
        Some(Claim::Json(other)) if js_truthy(other) => Err(MalformedClaims { problem }),
        _ => Ok(""),
    }
}

/// JavaScript truthiness of a JSON value: `null`, `false`, `0` and `""` are falsy.
fn js_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Reads the active organisation of a v1 token from the `org_*` claims, copied verbatim.
///
/// Non-string values are dropped rather than coerced: a string `org_permissions` would otherwise
/// match by substring in the SDK's `includes`, and an empty `org_role` is as absent as a missing
/// one to `has()`.
fn v1_org(payload: &Payload<'_>) -> Option<OrgContext> {
    let id = non_empty_string(payload.org_id.as_ref())?;
    let permissions = match &payload.org_permissions {
        Some(Claim::Json(Value::Array(items))) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Some(OrgContext {
        id,
        slug: string_claim(payload.org_slug.as_ref()),
        role: non_empty_string(payload.org_role.as_ref()),
        permissions,
    })
}

/// The claim as an owned string when it is a JSON string.
fn string_claim(claim: Option<&Claim<'_>>) -> Option<String> {
    claim.and_then(Claim::as_str).map(str::to_owned)
}

/// The claim as an owned string when it is a non-empty JSON string, the only kind of string
/// JavaScript's truthiness checks let through.
fn non_empty_string(claim: Option<&Claim<'_>>) -> Option<String> {
    claim.and_then(Claim::as_str).filter(|text| !text.is_empty()).map(str::to_owned)
}

/// The low `width` bits of the decimal number `mask`, as 64-bit limbs (least significant first),
/// or `None` when `mask` is not one or more ASCII digits (the SDK's `^\d+$`).
///
/// The number is accumulated by Horner's rule modulo 2^(64 × limbs): every higher bit would be
/// discarded anyway, so the cost stays proportional to the digits times the permission count and
/// no precision is ever lost, unlike the old `parseInt` decoding that rounded above 2^53.
fn mask_low_bits(mask: &str, width: usize) -> Option<Vec<u64>> {
    if mask.is_empty() || !mask.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let mut limbs = vec![0u64; width.div_ceil(64)];
    // Nineteen decimal digits are the most that fit in a u64 (10^19 < 2^64), so each chunk is
    // folded in with a single multiply-and-add pass over the limbs.
    for chunk in mask.as_bytes().chunks(19) {
        let (chunk_value, scale) =
            chunk.iter().fold((0u64, 1u64), |(value, scale), digit| (value * 10 + u64::from(digit - b'0'), scale * 10));
        let mut carry = chunk_value;
        for limb in &mut limbs {
            let wide = u128::from(*limb) * u128::from(scale) + u128::from(carry);
            *limb = wide as u64;
            carry = (wide >> 64) as u64;
        }
    }
    Some(limbs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::{json, Map};

    /// Reads a `json!` object literal as the payload `from_payload` takes.
    fn object(value: Value) -> Payload<'static> {
        assert!(value.is_object(), "test payload must be an object, got {value}");
        Payload::deserialize(value).expect("a payload")
    }

    /// The 54 permission names Clerk's 2^53 tests use.
    fn permission_names_54() -> String {
        (0..54).map(|index| format!("permission_{index}")).collect::<Vec<_>>().join(",")
    }

    /// Clerk's own `decimalToBinaryBits`: repeated division of a decimal digit string by two.
    /// Kept as the oracle the limb arithmetic is checked against.
    fn reference_bits(decimal: &str) -> Vec<u8> {
        let mut digits: Vec<u8> = decimal.bytes().map(|byte| byte - b'0').collect();
        let mut bits = Vec::new();
        while digits.iter().any(|&digit| digit != 0) {
            let mut remainder = 0;
            for digit in &mut digits {
                let value = remainder * 10 + *digit;
                *digit = value / 2;
                remainder = value % 2;
            }
            bits.push(remainder);
        }
        bits
    }

    #[test]
    fn fpm_vectors_from_clerk() {
        let names_54 = permission_names_54();
        let cases: Vec<(&str, &str, &str, Vec<&str>)> = vec![
            (
                "o:dashboard,o:teams",
                "manage,read",
                "3,2",
                vec!["org:dashboard:manage", "org:dashboard:read", "org:teams:read"],
            ),
            (
                "o:impersonation,o:memberships",
                "read,manage",
                "1,3",
                vec!["org:impersonation:read", "org:memberships:read", "org:memberships:manage"],
            ),
            (
                "ou:memberships,u:impersonation",
                "read,manage",
                "3,0",
                vec!["org:memberships:read", "org:memberships:manage"],
            ),
            (
                "o:reservations,u:dashboard,uo:support-chat,o:impersonation",
                "read,manage",
                "2,3",
                vec!["org:reservations:manage", "org:support-chat:read", "org:support-chat:manage"],
            ),
            (
                "o:repositories,o:impersonation,o:billing",
                "manage,read,update",
                "6,0,3",
                vec!["org:repositories:read", "org:repositories:update", "org:billing:manage", "org:billing:read"],
            ),
            (
                "o:repositories,o:projects",
                "read,create,update,delete,revoke",
                "7,21",
                vec![
                    "org:repositories:read",
                    "org:repositories:create",
                    "org:repositories:update",
                    "org:projects:read",
                    "org:projects:update",
                    "org:projects:revoke",
                ],
            ),
            ("o:feature", &names_54, "9007199254740993", vec!["org:feature:permission_0", "org:feature:permission_53"]),
            ("o:feature", &names_54, "18014398509481984", vec![]),
            ("o:feature", &names_54, "1invalid", vec![]),
            ("o:feature", &names_54, "-1", vec![]),
            ("o:feature", &names_54, "1.5", vec![]),
        ];
        for (fea, per, fpm, expected) in cases {
            assert_eq!(decode_v2_permissions(fea, per, fpm), expected, "fea={fea:?} fpm={fpm:?}");
        }
    }

    #[test]
    fn fpm_edge_cases() {
        let names_130 = (0..130).map(|index| format!("p{index}")).collect::<Vec<_>>().join(",");
        let cases: Vec<(&str, &str, &str, &str, Vec<&str>)> = vec![
            // (why, fea, per, fpm, expected)
            ("empty fea", "", "read", "1", vec![]),
            ("empty per", "o:a", "", "1", vec![]),
            ("empty fpm", "o:a", "read", "", vec![]),
            ("element without a colon fails the whole claim", "o:a,b", "read", "1,1", vec![]),
            ("a trailing comma is an element without a colon", "o:a,", "read", "1", vec![]),
            ("unknown scopes are skipped, not misaligned", "x:a,o:b", "read", "1", vec!["org:b:read"]),
            ("user-only features take no mask", "u:a,o:b", "read", "1", vec!["org:b:read"]),
            ("an invalid mask still occupies its position", "o:a,o:b", "read", "x,1", vec!["org:b:read"]),
            ("an empty mask still occupies its position", "o:a,o:b", "read", ",1", vec!["org:b:read"]),
            ("extra masks are ignored", "o:a", "read", "1,1,1", vec!["org:a:read"]),
            ("features without a mask get nothing", "o:a,o:b", "read", "1", vec!["org:a:read"]),
            (
                "elements and masks are trimmed",
                " o:a , o:b ",
                " read , manage ",
                " 2 ,\t3 ",
                vec!["org:a:manage", "org:b:read", "org:b:manage"],
            ),
            ("JavaScript trims a BOM", "o:a", "read", "\u{FEFF}1", vec!["org:a:read"]),
            ("JavaScript keeps NEL, so the mask is not digits", "o:a", "read", "\u{0085}1", vec![]),
            ("only ASCII digits count", "o:a", "read", "١", vec![]),
            ("a plus sign is not a digit", "o:a", "read", "+1", vec![]),
            ("inner spaces are not digits", "o:a", "read", "1 1", vec![]),
            ("leading zeros are harmless", "o:a", "read,manage", "00000000000000000000000000002", vec!["org:a:manage"]),
            ("the feature is everything after the first colon", "o:a:b", "read", "1", vec!["org:a:b:read"]),
            (
                "bits beyond the permission list are discarded",
                "o:a",
                "read,manage",
                "7",
                vec!["org:a:read", "org:a:manage"],
            ),
            (
                "2^129 + 1 reaches the third limb",
                "o:a",
                &names_130,
                "680564733841876926926749214863536422913",
                vec!["org:a:p0", "org:a:p129"],
            ),
            ("2^64 sits exactly on a limb boundary", "o:a", &names_130, "18446744073709551616", vec!["org:a:p64"]),
            (
                "2^64 + 2^63 straddles the first limb",
                "o:a",
                &names_130,
                "27670116110564327424",
                vec!["org:a:p63", "org:a:p64"],
            ),
        ];
        for (why, fea, per, fpm, expected) in cases {
            assert_eq!(decode_v2_permissions(fea, per, fpm), expected, "{why}");
        }
    }

    #[test]
    fn split_by_scope_cases() {
        let scoped =
            |org: &[&'static str], user: &[&'static str]| Some(ScopedIds { org: org.to_vec(), user: user.to_vec() });
        let cases: Vec<(&str, Option<ScopedIds<'static>>)> = vec![
            ("", scoped(&[], &[])),
            ("o:reservations,u:dashboard", scoped(&["reservations"], &["dashboard"])),
            (
                "o:reservations,u:dashboard,ou:support-chat,uo:billing",
                scoped(&["reservations", "support-chat", "billing"], &["dashboard", "support-chat", "billing"]),
            ),
            // Only the claim's own short scopes exist; the long aliases are for questions.
            ("org:a,user:b", scoped(&[], &[])),
            ("reservations,dashboard", None),
            ("o:a,,u:b", None),
        ];
        for (claim, expected) in cases {
            assert_eq!(split_by_scope(claim), expected, "claim={claim:?}");
        }
    }

    #[test]
    fn from_payload_cases() {
        let base = SessionClaims {
            user_id: "user_1".into(),
            session_id: Some("sess_1".into()),
            org: None,
            actor: None,
            features: None,
            plans: None,
            fva: None,
            pending: false,
        };
        let org = |id: &str, slug: Option<&str>, role: Option<&str>, permissions: &[&str]| {
            Some(OrgContext {
                id: id.into(),
                slug: slug.map(Into::into),
                role: role.map(Into::into),
                permissions: permissions.iter().map(|&p| p.into()).collect(),
            })
        };
        let cases: Vec<(&str, Value, SessionClaims)> = vec![
            ("bare token", json!({"sub": "user_1", "sid": "sess_1"}), base.clone()),
            (
                "v1 org copied verbatim, unprefixed role kept",
                json!({"sub": "user_1", "sid": "sess_1", "org_id": "org_1", "org_slug": "acme",
                       "org_role": "admin", "org_permissions": ["org:f1:read", 7, "f2:manage"]}),
                SessionClaims {
                    org: org("org_1", Some("acme"), Some("admin"), &["org:f1:read", "f2:manage"]),
                    ..base.clone()
                },
            ),
            (
                "v1 without a string org_id has no org",
                json!({"sub": "user_1", "sid": "sess_1", "org_id": 5, "org_role": "org:admin"}),
                base.clone(),
            ),
            (
                "v1 with an empty org_id has no org",
                json!({"sub": "user_1", "sid": "sess_1", "org_id": "", "org_role": "org:admin"}),
                base.clone(),
            ),
            (
                "v1 non-array permissions and non-string role are dropped",
                json!({"sub": "user_1", "sid": "sess_1", "org_id": "org_1",
                       "org_role": 3, "org_permissions": "org:f1:read"}),
                SessionClaims { org: org("org_1", None, None, &[]), ..base.clone() },
            ),
            (
                "v2 org decoded",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "fea": "o:dashboard,o:teams",
                       "pla": "u:pro", "o": {"id": "org_1", "slg": "acme", "rol": "admin",
                       "per": "manage,read", "fpm": "3,2"}}),
                SessionClaims {
                    org: org(
                        "org_1",
                        Some("acme"),
                        Some("org:admin"),
                        &["org:dashboard:manage", "org:dashboard:read", "org:teams:read"],
                    ),
                    features: Some("o:dashboard,o:teams".into()),
                    plans: Some("u:pro".into()),
                    ..base.clone()
                },
            ),
            (
                "v given as 2.0 is still the number 2",
                json!({"v": 2.0, "sub": "user_1", "sid": "sess_1", "o": {"id": "org_1"}}),
                SessionClaims { org: org("org_1", None, None, &[]), ..base.clone() },
            ),
            (
                "v given as the string \"2\" selects v1",
                json!({"v": "2", "sub": "user_1", "sid": "sess_1", "o": {"id": "org_1"}}),
                base.clone(),
            ),
            (
                "v1 claims are ignored in a v2 token",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "org_id": "org_1"}),
                base.clone(),
            ),
            (
                "v2 role is prefixed even when it already has the prefix",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1",
                       "o": {"id": "org_1", "rol": "org:admin"}}),
                SessionClaims { org: org("org_1", None, Some("org:org:admin"), &[]), ..base.clone() },
            ),
            (
                "v2 empty or non-string role is no role",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "o": {"id": "org_1", "rol": ""}}),
                SessionClaims { org: org("org_1", None, None, &[]), ..base.clone() },
            ),
            (
                "v2 numeric role is not coerced",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "o": {"id": "org_1", "rol": 5}}),
                SessionClaims { org: org("org_1", None, None, &[]), ..base.clone() },
            ),
            (
                "v2 o without a string id has no org",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "o": {"rol": "admin"}}),
                base.clone(),
            ),
            (
                "v2 o that is not an object has no org",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "o": "org_1"}),
                base.clone(),
            ),
            (
                "v2 falsy per, fpm and fea are read as absent",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "fea": 0,
                       "o": {"id": "org_1", "rol": "admin", "per": null, "fpm": false}}),
                SessionClaims { org: org("org_1", None, Some("org:admin"), &[]), ..base.clone() },
            ),
            (
                "v2 non-digit mask grants nothing for its feature only (Clerk's vectors)",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "fea": "o:a,o:b",
                       "o": {"id": "org_1", "per": "read", "fpm": "1invalid,1"}}),
                SessionClaims {
                    org: org("org_1", None, None, &["org:b:read"]),
                    features: Some("o:a,o:b".into()),
                    ..base.clone()
                },
            ),
            (
                "a malformed fea without o is only a feature claim has() refuses",
                json!({"v": 2, "sub": "user_1", "sid": "sess_1", "fea": "broken"}),
                SessionClaims { features: Some("broken".into()), ..base.clone() },
            ),
            (
                "v1 tokens never split fea",
                json!({"sub": "user_1", "sid": "sess_1", "fea": "broken", "org_id": "org_1"}),
                SessionClaims { org: org("org_1", None, None, &[]), features: Some("broken".into()), ..base.clone() },
            ),
            (
                "actor from act.sub",
                json!({"sub": "user_1", "sid": "sess_1",
                       "act": {"iss": "https://dashboard.clerk.com", "sid": "sess_2", "sub": "user_admin"}}),
                SessionClaims { actor: Some("user_admin".into()), ..base.clone() },
            ),
            (
                "act without a string sub is no actor",
                json!({"sub": "user_1", "sid": "sess_1", "act": {"sub": 1}}),
                base.clone(),
            ),
            (
                "act that is not an object is no actor",
                json!({"sub": "user_1", "sid": "sess_1", "act": "user_admin"}),
                base.clone(),
            ),
            (
                "pending session",
                json!({"sub": "user_1", "sid": "sess_1", "sts": "pending"}),
                SessionClaims { pending: true, ..base.clone() },
            ),
            ("active session", json!({"sub": "user_1", "sid": "sess_1", "sts": "active"}), base.clone()),
            (
                "fva kept raw",
                json!({"sub": "user_1", "sid": "sess_1", "fva": [3, -1]}),
                SessionClaims { fva: Some(json!([3, -1])), ..base.clone() },
            ),
            ("fva null is no fva", json!({"sub": "user_1", "sid": "sess_1", "fva": null}), base.clone()),
            (
                "non-string sub becomes the empty user id",
                json!({"sub": 42, "sid": "sess_1"}),
                SessionClaims { user_id: String::new(), ..base.clone() },
            ),
            (
                "non-string fea and pla are dropped",
                json!({"sub": "user_1", "sid": "sess_1", "fea": 1, "pla": ["u:pro"]}),
                base.clone(),
            ),
        ];
        for (why, payload, expected) in cases {
            assert_eq!(SessionClaims::from_payload(&object(payload)), Ok(expected), "{why}");
        }
    }

    /// Where the SDK's auth object throws, there is no session at all: not an organisation
    /// without permissions, whose role would still authorise.
    #[test]
    fn malformed_org_claims_are_refused_whole() {
        let no_scope = "The fea claim has an element without a scope (scope:feature).";
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "fea element without a scope",
                json!({"v": 2, "sub": "u", "fea": "billing,o:dashboard",
                       "o": {"id": "org_1", "rol": "admin", "per": "manage", "fpm": "1,1"}}),
                no_scope,
            ),
            ("fea with a stray comma", json!({"v": 2, "sub": "u", "fea": "o:a,", "o": {"id": "org_1"}}), no_scope),
            ("fea of blanks", json!({"v": 2, "sub": "u", "fea": " ", "o": {"id": "org_1"}}), no_scope),
            (
                "fea an array",
                json!({"v": 2, "sub": "u", "fea": ["o:a"], "o": {"id": "org_1"}}),
                "The fea claim is not a string.",
            ),
            (
                "fea a number",
                json!({"v": 2, "sub": "u", "fea": 1, "o": {"id": "org_1"}}),
                "The fea claim is not a string.",
            ),
            (
                "per an array",
                json!({"v": 2, "sub": "u", "fea": "o:a", "o": {"id": "org_1", "per": ["read"], "fpm": "1"}}),
                "The o.per claim is not a string.",
            ),
            (
                "fpm a number",
                json!({"v": 2, "sub": "u", "fea": "o:a", "o": {"id": "org_1", "per": "read", "fpm": 1}}),
                "The o.fpm claim is not a string.",
            ),
            (
                "an o without an id still has its fea split",
                json!({"v": 2, "sub": "u", "fea": "broken", "o": {"rol": "admin"}}),
                no_scope,
            ),
            ("an o that is a string", json!({"v": 2, "sub": "u", "fea": "broken", "o": "org_1"}), no_scope),
        ];
        for (why, payload, problem) in cases {
            assert_eq!(SessionClaims::from_payload(&object(payload)), Err(MalformedClaims { problem }), "{why}");
        }
    }

    /// Case 65: the same organisation context encoded as v1 and as v2 normalises identically, and
    /// a v2 token without `o` has no organisation.
    #[test]
    fn v1_and_v2_encodings_agree() {
        let v1 = object(json!({
            "sub": "user_1", "sid": "sess_1", "act": {"sub": "user_admin"}, "fva": [0, 5],
            "org_id": "org_1", "org_slug": "acme", "org_role": "org:admin",
            "org_permissions": ["org:impersonation:read", "org:memberships:read", "org:memberships:manage"],
        }));
        let v2 = object(json!({
            "v": 2, "sub": "user_1", "sid": "sess_1", "act": {"sub": "user_admin"}, "fva": [0, 5],
            "fea": "o:impersonation,o:memberships",
            "o": {"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,manage", "fpm": "1,3"},
        }));
        let from_v1 = SessionClaims::from_payload(&v1).expect("v1 claims");
        let from_v2 = SessionClaims::from_payload(&v2).expect("v2 claims");
        assert!(from_v1.org.is_some());
        assert_eq!(from_v1.org, from_v2.org);
        assert_eq!(from_v1.user_id, from_v2.user_id);
        assert_eq!(from_v1.session_id, from_v2.session_id);
        assert_eq!(from_v1.actor, from_v2.actor);
        assert_eq!(from_v1.fva, from_v2.fva);
        assert_eq!(from_v1.pending, from_v2.pending);

        let without_o = object(json!({"v": 2, "sub": "user_1", "sid": "sess_1", "fea": "o:a"}));
        assert_eq!(SessionClaims::from_payload(&without_o).map(|c| c.org), Ok(None));
    }

    #[test]
    fn listed_permissions_cases() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("no org", json!({"sub": "u"}), vec![]),
            ("org without permissions", json!({"sub": "u", "org_id": "org_1"}), vec![]),
            (
                "v2 decoded permissions",
                json!({"v": 2, "sub": "u", "fea": "o:dashboard,o:teams",
                       "o": {"id": "org_1", "per": "manage,read", "fpm": "3,2"}}),
                vec!["org:dashboard:manage", "org:dashboard:read", "org:teams:read"],
            ),
            (
                "v1 permissions without the prefix are not advertised",
                json!({"sub": "u", "org_id": "org_1",
                       "org_permissions": ["org:f1:read", "f2:manage"]}),
                vec!["org:f1:read"],
            ),
            (
                // Listed as they stand: whether a header can carry them is the verifier's call
                // (it refuses the token rather than drop one).
                "odd bytes are listed verbatim",
                json!({"sub": "u", "org_id": "org_1", "org_permissions": ["org:a:b,org:admin:all", "org:x\r\ny"]}),
                vec!["org:a:b,org:admin:all", "org:x\r\ny"],
            ),
        ];
        for (why, payload, expected) in cases {
            let claims = SessionClaims::from_payload(&object(payload)).expect("well-formed claims");
            assert_eq!(claims.listed_permissions().collect::<Vec<_>>(), expected, "{why}");
        }
    }

    #[test]
    fn js_trim_matches_ecmascript() {
        let cases = [
            (" \t\n\u{000B}\u{000C}\r a \u{00A0}", "a"),
            ("\u{FEFF}a\u{3000}", "a"),
            ("\u{2028}a\u{2029}", "a"),
            ("\u{0085}a", "\u{0085}a"),
            ("\u{200B}a", "\u{200B}a"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(js_trim(input), expected, "input={input:?}");
        }
    }

    /// Counts the org-scoped features of a well-formed `fea`, independently of `split_by_scope`.
    fn org_feature_count(fea: &str) -> usize {
        if fea.is_empty() {
            return 0;
        }
        fea.split(',')
            .filter(|element| matches!(js_trim(element).split_once(':'), Some(("o" | "ou" | "uo", _))))
            .count()
    }

    /// Arbitrary JSON, biased towards the claim names the parser reads so that the interesting
    /// branches are reached rather than skipped.
    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(json!(2)),
            Just(json!(-1)),
            "[ou:,a-z0-9 ]{0,12}".prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("v".to_owned()),
            Just("o".to_owned()),
            Just("id".to_owned()),
            Just("rol".to_owned()),
            Just("per".to_owned()),
            Just("fpm".to_owned()),
            Just("fea".to_owned()),
            Just("sub".to_owned()),
            Just("act".to_owned()),
            Just("fva".to_owned()),
            Just("sts".to_owned()),
            Just("org_id".to_owned()),
            Just("org_role".to_owned()),
            Just("org_permissions".to_owned()),
            ".{0,6}",
        ];
        leaf.prop_recursive(4, 48, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_strings(fea in ".*", per in ".*", fpm in ".*") {
            let decoded = decode_v2_permissions(&fea, &per, &fpm);
            prop_assert!(decoded.len() <= per.split(',').count() * org_feature_count(&fea));
        }

        #[test]
        fn decoded_count_is_bounded(
            fea in "((o|u|ou|uo|x)?:[a-z]{0,3}|[a-z]{0,2})(,((o|u|ou|uo|x)?:[a-z]{0,3}| ?o:[a-z]))*",
            per in "[a-z ]{0,3}(,[a-z ]{0,3}){0,12}",
            fpm in "[0-9 ]{0,40}(,[0-9a ]{0,30}){0,8}",
        ) {
            let decoded = decode_v2_permissions(&fea, &per, &fpm);
            let per_count = per.split(',').count();
            prop_assert!(decoded.len() <= per_count * org_feature_count(&fea));
            for permission in &decoded {
                prop_assert!(permission.starts_with("org:"));
            }
        }

        #[test]
        fn mask_bits_match_repeated_division(mask in "[0-9]{1,90}", width in 1usize..320) {
            let limbs = mask_low_bits(&mask, width).expect("digits always decode");
            let reference = reference_bits(&mask);
            for index in 0..width {
                let ours = (limbs[index / 64] >> (index % 64)) & 1;
                let theirs = u64::from(reference.get(index).copied().unwrap_or(0));
                prop_assert_eq!(ours, theirs, "bit {} of {}", index, mask);
            }
        }

        #[test]
        fn from_payload_never_panics(payload in prop::collection::btree_map(
            prop_oneof![
                Just("v".to_owned()), Just("o".to_owned()), Just("fea".to_owned()),
                Just("pla".to_owned()), Just("sub".to_owned()), Just("sid".to_owned()),
                Just("act".to_owned()), Just("fva".to_owned()), Just("sts".to_owned()),
                Just("org_id".to_owned()), Just("org_role".to_owned()),
                Just("org_slug".to_owned()), Just("org_permissions".to_owned()), ".{0,6}",
            ],
            arbitrary_json(),
            0..12,
        )) {
            let payload = Payload::deserialize(Value::Object(payload.into_iter().collect::<Map<_, _>>())).expect("an object");
            if let Ok(claims) = SessionClaims::from_payload(&payload) {
                if let Some(org) = &claims.org {
                    prop_assert!(!org.id.is_empty());
                }
                prop_assert!(claims.listed_permissions().all(|p| p.starts_with("org:")));
            }
        }
    }
}
