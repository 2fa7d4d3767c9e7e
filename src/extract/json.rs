//! JSON bodies: the configured fields as a tree of object keys, and a single
//! pass over the body that picks them out without building a tree: strings
//! without escapes and metadata are shared slices of the body; everything
//! else is skipped.

#[cfg(feature = "json")]
use bytes::Bytes;
#[cfg(feature = "json")]
use serde::de::DeserializeSeed;

#[cfg(feature = "json")]
use super::{Extracted, Sources};
use crate::claim::Role;
#[cfg(feature = "json")]
use crate::verify::{Failure, Malformed};
#[cfg(feature = "json")]
use walk::{Found, Walk};

/// The configured JSON fields, as a tree of object keys.
#[derive(Clone, Debug, Default)]
pub(super) struct JsonNode {
    pub(super) children: Vec<(Box<str>, JsonChild)>,
}

#[derive(Clone, Debug)]
pub(super) enum JsonChild {
    Field(Role),
    Object(JsonNode),
}

impl JsonNode {
    pub(super) fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub(super) fn insert(&mut self, role: Role, pointer: &str) -> Result<(), &'static str> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err("a JSON pointer starts with '/'");
        };
        let keys: Vec<String> = rest.split('/').map(|k| k.replace("~1", "/").replace("~0", "~")).collect();
        let mut node = self;
        for (i, key) in keys.iter().enumerate() {
            let last = i + 1 == keys.len();
            let pos = node.children.iter().position(|(k, _)| **k == **key);
            match (pos, last) {
                (None, true) => {
                    node.children.push((key.as_str().into(), JsonChild::Field(role)));
                    return Ok(());
                }
                (None, false) => {
                    node.children.push((key.as_str().into(), JsonChild::Object(JsonNode::default())));
                    let JsonChild::Object(next) = &mut node.children.last_mut().expect("just pushed").1 else {
                        unreachable!()
                    };
                    node = next;
                }
                (Some(p), true) => match &mut node.children[p].1 {
                    JsonChild::Field(r) => {
                        *r = role;
                        return Ok(());
                    }
                    JsonChild::Object(_) => return Err("the pointer is the parent of another field"),
                },
                (Some(p), false) => match &mut node.children[p].1 {
                    JsonChild::Object(next) => node = next,
                    JsonChild::Field(_) => return Err("the pointer goes below another field"),
                },
            }
        }
        Err("empty pointer")
    }
}

/// Reads the roles configured on `sources` from a JSON body into `out`.
#[cfg(feature = "json")]
pub(super) fn read(sources: &Sources, body: &Bytes, out: &mut Extracted) {
    // An empty body (a POST with a JSON content type and nothing to say)
    // carries no identity; it is not an error.
    if body.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked =
        Walk { node: &sources.json, found: &mut found, base: body }.deserialize(&mut de).and_then(|()| de.end());
    if let Err(e) = walked {
        tracing::debug!(error = %e, "identity: JSON body refused");
        match found.failure {
            Some((Some(role), failure)) => out.fail_role(role, failure),
            Some((None, failure)) => out.fail(failure),
            None => out.fail(Failure::Malformed(Malformed::Body)),
        }
        return;
    }
    // Taken in place: the array is a few hundred bytes.
    for (role, value) in Role::ALL.into_iter().zip(&mut found.values) {
        if let Some(value) = value.take() {
            out.put(role, value);
        }
    }
}

/// Without the `json` feature no JSON field can be configured.
#[cfg(not(feature = "json"))]
pub(super) fn read(_sources: &super::Sources, _body: &bytes::Bytes, _out: &mut super::Extracted) {}

#[cfg(feature = "json")]
mod walk {
    use std::fmt;

    use bytes::Bytes;
    use serde::Deserializer;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{JsonChild, JsonNode};
    use crate::claim::{IdStr, Role};
    use crate::extract::ROLES;
    use crate::verify::strict_json::JsonKey;
    use crate::verify::{Failure, Malformed};

    #[derive(Default)]
    pub(super) struct Found {
        pub(super) values: [Option<IdStr>; ROLES],
        /// Why the walk stopped, and the role whose field caused it.
        pub(super) failure: Option<(Option<Role>, Failure)>,
    }

    pub(super) struct Walk<'a> {
        pub(super) node: &'a JsonNode,
        pub(super) found: &'a mut Found,
        pub(super) base: &'a Bytes,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    macro_rules! ignore {
        ($($name:ident($t:ty)),*) => {
            $(fn $name<E: de::Error>(self, _v: $t) -> Result<(), E> { Ok(()) })*
        };
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        ignore!(visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));

        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = 0u64;
            while let Some(key) = map.next_key::<JsonKey<'de>>()? {
                let Some(i) = self.node.children.iter().position(|(k, _)| **k == *key) else {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                };
                let bit = 1u64 << (i % 64);
                let duplicate = seen & bit != 0;
                seen |= bit;
                match &self.node.children[i].1 {
                    JsonChild::Field(role) => {
                        if duplicate {
                            self.found.failure = Some((Some(*role), Failure::Conflict(*role)));
                            return Err(de::Error::custom("duplicate key"));
                        }
                        let value = if *role == Role::Metadata {
                            let raw: &RawValue = map.next_value()?;
                            IdStr::shared_in(self.base, raw.get())
                        } else {
                            match map.next_value::<JsonStr<'de>>()? {
                                JsonStr::Borrowed(s) => IdStr::shared_in(self.base, s),
                                JsonStr::Owned(s) => IdStr::from(s),
                                JsonStr::NotAString => {
                                    self.found.failure = Some((Some(*role), Failure::Malformed(Malformed::NotAString)));
                                    return Err(de::Error::custom("not a string"));
                                }
                            }
                        };
                        let slot = &mut self.found.values[role.index()];
                        if slot.as_ref().is_some_and(|prev| *prev != value) {
                            self.found.failure = Some((Some(*role), Failure::Conflict(*role)));
                            return Err(de::Error::custom("conflicting values"));
                        }
                        *slot = Some(value);
                    }
                    JsonChild::Object(node) => {
                        if duplicate {
                            self.found.failure = Some((None, Failure::Malformed(Malformed::Body)));
                            return Err(de::Error::custom("duplicate key"));
                        }
                        map.next_value_seed(Walk { node, found: &mut *self.found, base: self.base })?;
                    }
                }
            }
            Ok(())
        }
    }

    /// A field value that must be a string.
    enum JsonStr<'de> {
        Borrowed(&'de str),
        Owned(String),
        NotAString,
    }

    impl<'de> de::Deserialize<'de> for JsonStr<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = JsonStr<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::Borrowed(v))
                }
                fn visit_str<E>(self, v: &str) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::Owned(v.to_owned()))
                }
                fn visit_string<E>(self, v: String) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::Owned(v))
                }
                fn visit_bool<E>(self, _: bool) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_i64<E>(self, _: i64) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_u64<E>(self, _: u64) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_f64<E>(self, _: f64) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_unit<E>(self) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonStr<'de>, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(JsonStr::NotAString)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonStr<'de>, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(JsonStr::NotAString)
                }
            }
            d.deserialize_any(V)
        }
    }
}
