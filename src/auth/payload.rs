//! A token's JSON header and payload read straight into the fields clerkgate looks at, instead
//! of a `serde_json::Map` of every member: no key is allocated, and a member nobody reads is
//! checked and skipped in place.
//!
//! It reads what a `Map` would, member for member: the same JSON is accepted (an unknown
//! member is still parsed whole, strings and their escapes included, so a token that a `Map`
//! refuses is refused here too), a repeated member keeps its last value (as JavaScript's
//! `JSON.parse` does), and each field holds the member's raw JSON value, so `null`, a missing
//! member and a value of the wrong type stay apart as Clerk's checks need.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Where claims are read from: a token's payload, typed ([`Payload`]) or whole (a `Map`).
pub trait ClaimSource {
    /// The claim `name` as found (`None` when absent).
    fn claim(&self, name: &str) -> Option<&Value>;
}

impl ClaimSource for Map<String, Value> {
    fn claim(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// Declares a struct of `Option<Value>` members read from a JSON object, with its
/// [`Deserialize`] (unknown members validated and skipped, the last of a repeated one kept)
/// and a by-name lookup.
macro_rules! json_members {
    ($(#[$doc:meta])* $name:ident { $($field:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, PartialEq)]
        pub struct $name {
            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                pub $field: Option<Value>,
            )+
        }

        impl $name {
            /// The member `name`, when it is one this type reads and was present.
            pub fn get(&self, name: &str) -> Option<&Value> {
                match name {
                    $(stringify!($field) => self.$field.as_ref(),)+
                    _ => None,
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Members;
                impl<'de> Visitor<'de> for Members {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match key.as_str() {
                                $(stringify!($field) => out.$field = Some(map.next_value()?),)+
                                _ => {
                                    map.next_value::<Checked>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(Members)
            }
        }
    };
}

json_members! {
    /// The JOSE header members Clerk looks at.
    Header { alg, typ, kid, cat }
}

json_members! {
    /// The payload claims clerkgate reads: those `verifyToken` checks and those the auth
    /// object is built from ([`super::claims::SessionClaims::from_payload`]).
    Payload {
        sub, sid, azp, iss, exp, nbf, iat, v, o, fea, pla, fva, sts, act,
        org_id, org_slug, org_role, org_permissions,
    }
}

impl ClaimSource for Payload {
    fn claim(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A member name, borrowed from the JSON unless it held an escape.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A member nobody reads: parsed whole as `Value` would be (so its strings and escapes are
/// checked the same way), and kept nowhere. (serde's `IgnoredAny` skips strings without
/// checking their escapes, and would accept a lone surrogate that a `Map` refuses.)
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_what_a_map_reads() {
        let cases = [
            r#"{"sub":"u","sub":"last","x":[1,{"y":null}],"v":2,"o":{"id":"org"}}"#,
            r#"{"sub":null,"exp":1.5e3,"n\u0061me":1,"\u0073ub":"escaped"}"#,
            r#"{}"#,
        ];
        for text in cases {
            let map: Map<String, Value> = serde_json::from_str(text).expect("map");
            let typed: Payload = serde_json::from_str(text).expect("typed");
            for name in ["sub", "exp", "v", "o", "iat", "x"] {
                let expected = if typed.get(name).is_some() || name != "x" { map.get(name) } else { None };
                assert_eq!(typed.claim(name), expected, "{name} in {text}");
            }
        }
        let typed: Payload = serde_json::from_str(r#"{"sub":"u","sub":"last"}"#).unwrap();
        assert_eq!(typed.sub, Some(json!("last")));
    }

    #[test]
    fn refuses_what_a_map_refuses() {
        let cases = [
            r#"[]"#,
            r#""text""#,
            r#"null"#,
            r#"{"x":"\ud800"}"#,
            r#"{"x":"\q"}"#,
            r#"{"x":[1,}"#,
            r#"{"x":1,}"#,
            r#"{"x":1} trailing"#,
        ];
        for text in cases {
            assert!(serde_json::from_str::<Map<String, Value>>(text).is_err(), "map accepted {text}");
            assert!(serde_json::from_str::<Payload>(text).is_err(), "typed accepted {text}");
            assert!(serde_json::from_str::<Header>(text).is_err(), "typed header accepted {text}");
        }
    }
}
