//! A token's JSON header and payload read straight into the fields clerkgate looks at, instead
//! of a `serde_json::Map` of every member: no member name is allocated, a string without an
//! escape is borrowed from the decoded segment, and a member nobody reads is checked and skipped
//! in place.
//!
//! It reads what a `Map` would, member for member: the same JSON is accepted (an unknown
//! member is still parsed whole, strings and their escapes included, so a token that a `Map`
//! refuses is refused here too), a repeated member keeps its last value (as JavaScript's
//! `JSON.parse` does), and each field keeps the member's JSON value ([`Claim`]), so `null`, a
//! missing member and a value of the wrong type stay apart as Clerk's checks need.
//!
//! One deliberate difference from a `Map`: serde_json's own reader (with its `raw_value`
//! feature, which this build has through axum) takes an object whose first member is named
//! [`SERDE_RAW_VALUE_KEY`] for embedded JSON text. `JSON.parse` sees an ordinary member there, and
//! so does every reader here ([`Parsed`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// serde_json's private member name for embedded JSON text (see the module docs).
pub const SERDE_RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// A claim's JSON value: a string (borrowed from the token when it held no escape), or any
/// other value.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<'a> {
    /// A JSON string.
    Str(Cow<'a, str>),
    /// Any other JSON value (a string is read as [`Claim::Str`]).
    Json(Value),
}

impl Claim<'_> {
    /// The string, when the claim is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Claim::Str(text) => Some(text),
            Claim::Json(_) => None,
        }
    }

    /// The value, when it is not a string.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Claim::Str(_) => None,
            Claim::Json(value) => Some(value),
        }
    }

    /// The claim as a JSON value of its own.
    pub fn to_value(&self) -> Value {
        match self {
            Claim::Str(text) => Value::String(text.as_ref().to_owned()),
            Claim::Json(value) => value.clone(),
        }
    }

    /// The claim no longer borrowing from the token.
    pub fn into_owned(self) -> Claim<'static> {
        match self {
            Claim::Str(text) => Claim::Str(Cow::Owned(text.into_owned())),
            Claim::Json(value) => Claim::Json(value),
        }
    }
}

/// The `o` claim: an object read member by member, or any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum OrgClaim<'a> {
    /// A JSON object.
    Object(OrgMembers<'a>),
    /// Any other JSON value (a string included).
    Json(Value),
}

/// Declares a struct of optional members read from a JSON object, with its [`Deserialize`]
/// (unknown members validated and skipped, the last of a repeated one kept).
macro_rules! json_members {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, PartialEq)]
        pub struct $name<'a> {
            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                pub $field: Option<$ty>,
            )+
        }

        impl<'de> Deserialize<'de> for $name<'de> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Members;
                impl<'de> Visitor<'de> for Members {
                    type Value = $name<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name<'de>, A::Error> {
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
    Header { alg: Claim<'a>, typ: Claim<'a>, kid: Claim<'a>, cat: Claim<'a> }
}

json_members! {
    /// The payload claims clerkgate reads: those `verifyToken` checks and those the auth
    /// object is built from ([`super::claims::SessionClaims::from_payload`]).
    Payload {
        sub: Claim<'a>, sid: Claim<'a>, azp: Claim<'a>, iss: Claim<'a>,
        exp: Claim<'a>, nbf: Claim<'a>, iat: Claim<'a>, v: Claim<'a>, o: OrgClaim<'a>,
        fea: Claim<'a>, pla: Claim<'a>, fva: Claim<'a>, sts: Claim<'a>, act: Claim<'a>,
        org_id: Claim<'a>, org_slug: Claim<'a>, org_role: Claim<'a>, org_permissions: Claim<'a>,
    }
}

json_members! {
    /// The members of a v2 token's `o` claim that the auth object is built from.
    OrgMembers { id: Claim<'a>, slg: Claim<'a>, rol: Claim<'a>, per: Claim<'a>, fpm: Claim<'a> }
}

impl Header<'_> {
    /// The header no longer borrowing from the token.
    pub fn into_owned(self) -> Header<'static> {
        Header {
            alg: self.alg.map(Claim::into_owned),
            typ: self.typ.map(Claim::into_owned),
            kid: self.kid.map(Claim::into_owned),
            cat: self.cat.map(Claim::into_owned),
        }
    }
}

/// How a JSON value of each kind becomes `Self`; [`Lenient`] reads any value through it.
trait FromJson<'de>: Sized {
    fn string(text: Cow<'de, str>) -> Self;
    fn object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
    fn other(value: Value) -> Self;
}

impl<'de> FromJson<'de> for Claim<'de> {
    fn string(text: Cow<'de, str>) -> Self {
        Claim::Str(text)
    }
    fn object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        Parsed::object(map).map(|Parsed(value)| Claim::Json(value))
    }
    fn other(value: Value) -> Self {
        Claim::Json(value)
    }
}

impl<'de> FromJson<'de> for OrgClaim<'de> {
    fn string(text: Cow<'de, str>) -> Self {
        OrgClaim::Json(Value::String(text.into_owned()))
    }
    fn object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        OrgMembers::deserialize(MapAccessDeserializer::new(map)).map(OrgClaim::Object)
    }
    fn other(value: Value) -> Self {
        OrgClaim::Json(value)
    }
}

/// Any JSON value, read as JavaScript's `JSON.parse` reads it: objects member by member with
/// the last of a repeated member kept, and no member name special ([`SERDE_RAW_VALUE_KEY`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed(pub Value);

impl<'de> FromJson<'de> for Parsed {
    fn string(text: Cow<'de, str>) -> Self {
        Parsed(Value::String(text.into_owned()))
    }
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let Parsed(value) = map.next_value()?;
            members.insert(key.into_string(), value);
        }
        Ok(Parsed(Value::Object(members)))
    }
    fn other(value: Value) -> Self {
        Parsed(value)
    }
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient(PhantomData))
    }
}

/// Whether any object in `json` has a member named [`SERDE_RAW_VALUE_KEY`]: where a `Map` of the
/// same JSON can differ from what `JSON.parse` (and this module) reads.
pub fn has_serde_raw_value_key(json: &[u8]) -> bool {
    fn any_key(value: &Value) -> bool {
        match value {
            Value::Object(members) => members.iter().any(|(k, v)| k == SERDE_RAW_VALUE_KEY || any_key(v)),
            Value::Array(items) => items.iter().any(any_key),
            _ => false,
        }
    }
    serde_json::from_slice::<Parsed>(json).is_ok_and(|Parsed(value)| any_key(&value))
}

impl<'de> Deserialize<'de> for Claim<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient(PhantomData))
    }
}

impl<'de> Deserialize<'de> for OrgClaim<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient(PhantomData))
    }
}

/// Reads any JSON value into `T`, each kind as `serde_json::Value` would read it.
struct Lenient<T>(PhantomData<T>);

impl<'de, T: FromJson<'de>> Visitor<'de> for Lenient<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<T, E> {
        Ok(T::other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<T, E> {
        Ok(T::other(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::other(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<T, E> {
        Ok(T::other(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<T, E> {
        Ok(T::string(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::other(Value::Null))
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::other(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let mut items = Vec::new();
        while let Some(Parsed(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(T::other(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
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

    fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
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

    use serde_json::Map;

    /// `json` read typed, and read as a `Map` and then typed: the same members and values.
    fn same_as_a_map<'de, T: Deserialize<'de> + PartialEq + fmt::Debug>(json: &'de str) {
        let typed: T = serde_json::from_str(json).expect("typed");
        let map: Map<String, Value> = serde_json::from_str(json).expect("map");
        assert_eq!(typed, T::deserialize(Value::Object(map)).expect("typed from the map"), "{json}");
    }

    #[test]
    fn reads_what_a_map_reads() {
        let cases = [
            r#"{"sub":"u","sub":"last","x":[1,{"y":null}],"v":2,"o":{"id":"org","id":"last","z":[]}}"#,
            r#"{"sub":null,"exp":1.5e3,"n\u0061me":1,"\u0073ub":"esc\u0061ped","act":{"sub":"a"},"o":"text"}"#,
            r#"{"fva":[0,-1,{"a":[{}]}],"iat":-7,"exp":18446744073709551615,"o":{"per":"a,b","fpm":3},"o":null}"#,
            r#"{"alg":"RS256","kid":{"k":1},"typ":null,"cat":[]}"#,
            r#"{}"#,
        ];
        for text in cases {
            same_as_a_map::<Payload<'_>>(text);
            same_as_a_map::<Header<'_>>(text);
        }
        // `o` keeps only the members read, and any other value whole.
        let typed: Payload<'_> = serde_json::from_str(r#"{"o":{"id":"x","z":1}}"#).unwrap();
        assert_eq!(
            typed.o,
            Some(OrgClaim::Object(OrgMembers { id: Some(Claim::Str("x".into())), ..Default::default() }))
        );
        let typed: Payload<'_> = serde_json::from_str(r#"{"o":"text"}"#).unwrap();
        assert_eq!(typed.o, Some(OrgClaim::Json(json!("text"))));
    }

    /// serde_json's private raw-value member is an ordinary member to `JSON.parse`, and so here,
    /// in every place a claim can hold an object; a `Map` reads it as embedded JSON instead.
    #[test]
    fn a_serde_raw_value_member_is_an_ordinary_member() {
        let cases = [
            (r#"{"o":{"$serde_json::private::RawValue":"{\"id\":\"org_1\"}"}}"#, "o"),
            (r#"{"act":{"$serde_json::private::RawValue":"{\"sub\":\"a\"}"}}"#, "act"),
            (r#"{"fva":[{"$serde_json::private::RawValue":"1"}]}"#, "fva"),
            (r#"{"x":{"$serde_json::private::RawValue":1}}"#, "x"),
        ];
        for (text, name) in cases {
            let typed: Payload<'_> = serde_json::from_str(text).expect(text);
            let Parsed(Value::Object(parsed)) = serde_json::from_str(text).expect(text) else { panic!("{text}") };
            assert!(has_serde_raw_value_key(text.as_bytes()), "{text}");
            let member = parsed.get(name).expect(name);
            assert!(member.to_string().contains(SERDE_RAW_VALUE_KEY), "JSON.parse keeps the member: {text}");
            match name {
                "o" => assert_eq!(typed.o, Some(OrgClaim::Object(OrgMembers::default())), "{text}"),
                "act" => assert_eq!(typed.act, Some(Claim::Json(member.clone())), "{text}"),
                "fva" => assert_eq!(typed.fva, Some(Claim::Json(member.clone())), "{text}"),
                _ => {}
            }
            // A `Map` reads something else or nothing.
            let map = serde_json::from_str::<Map<String, Value>>(text);
            assert!(map.map_or(true, |map| map.get(name) != Some(member)), "{text}");
        }
        assert!(!has_serde_raw_value_key(br#"{"o":{"id":"RawValue"}}"#));
    }

    #[test]
    fn a_string_without_an_escape_is_borrowed_from_the_token() {
        let typed: Payload<'_> =
            serde_json::from_str(r#"{"sub":"user_1","sid":"s\u0031","o":{"id":"org_1"}}"#).unwrap();
        assert!(matches!(typed.sub, Some(Claim::Str(Cow::Borrowed("user_1")))));
        assert!(matches!(&typed.sid, Some(Claim::Str(Cow::Owned(sid))) if sid == "s1"));
        let Some(OrgClaim::Object(o)) = typed.o else { panic!("o is an object") };
        assert!(matches!(o.id, Some(Claim::Str(Cow::Borrowed("org_1")))));
        // From a `Value` (as the tests build payloads) the same fields are read.
        let from_value = Payload::deserialize(json!({"sub": "user_1", "v": 2})).unwrap();
        assert_eq!(from_value.sub, Some(Claim::Str("user_1".into())));
        assert_eq!(from_value.v, Some(Claim::Json(json!(2))));
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
            r#"{"sub":"\ud800"}"#,
            r#"{"o":{"id":"\q"}}"#,
            r#"{"o":{"x":[1,}}"#,
            r#"{"o":{"per":"a"},}"#,
            r#"{"act":{"sub":"\ud800"}}"#,
        ];
        for text in cases {
            assert!(serde_json::from_str::<Map<String, Value>>(text).is_err(), "map accepted {text}");
            assert!(serde_json::from_str::<Payload<'_>>(text).is_err(), "typed accepted {text}");
            assert!(serde_json::from_str::<Header<'_>>(text).is_err(), "typed header accepted {text}");
        }
    }
}
