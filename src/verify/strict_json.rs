//! Strict JSON reading: object keys read without copying (shared with the
//! JSON body walker), and, for JWT headers and payloads, one pass over an
//! object that keeps the fields the verifier reads and refuses duplicate
//! keys at every level (after the [`flat_json`](super::flat_json) fast path,
//! which reads the common flat objects and leaves the rest to this pass).

use std::borrow::Cow;
use std::fmt;

#[cfg(feature = "jwt")]
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess};
use serde::de::{Deserialize, Deserializer, Visitor};

#[cfg(feature = "jwt")]
use super::{Failure, Malformed};

/// An object key, borrowed from the input when it has no escapes
/// (`"\u0065xp"` is `exp`, and is owned).
pub(crate) struct JsonKey<'de>(pub(crate) Cow<'de, str>);

impl std::ops::Deref for JsonKey<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JsonKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<JsonKey<'de>, E> {
                Ok(JsonKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonKey<'de>, E> {
                Ok(JsonKey(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<JsonKey<'de>, E> {
                Ok(JsonKey(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(feature = "jwt")]
/// A JSON value as the verifier needs it: a string (borrowed from the
/// decoded bytes when it has no escapes), a non-negative integer, an array of
/// exactly one string (`aud`), or anything else, checked but not kept.
#[cfg_attr(any(test, debug_assertions), derive(PartialEq))]
#[cfg_attr(test, derive(Debug))]
pub(super) enum Scalar<'de> {
    Str(Cow<'de, str>),
    U64(u64),
    OneStrList(Cow<'de, str>),
    Other,
}

#[cfg(feature = "jwt")]
impl<'de> Scalar<'de> {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(feature = "jwt")]
/// Visits a JSON value strictly: duplicate object keys are refused at every
/// level. `keep` decides whether strings and integers are kept (`Scalar`) or
/// only checked (`Scalar::Other`).
struct Strict {
    keep: bool,
}

#[cfg(feature = "jwt")]
impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(feature = "jwt")]
impl<'de> Visitor<'de> for Strict {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scalar<'de>, E> {
        // serde_json calls this for negative integers only.
        Ok(Scalar::Other)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(if self.keep { Scalar::U64(v) } else { Scalar::Other })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(if self.keep { Scalar::Str(Cow::Borrowed(v)) } else { Scalar::Other })
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(if self.keep { Scalar::Str(Cow::Owned(v.to_owned())) } else { Scalar::Other })
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        let mut items = 0;
        let mut only = None;
        while let Some(item) = seq.next_element_seed(Strict { keep: self.keep && items == 0 })? {
            items += 1;
            only = Some(item);
        }
        Ok(match only {
            Some(Scalar::Str(s)) if items == 1 => Scalar::OneStrList(s),
            _ => Scalar::Other,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(JsonKey(key)) = map.next_key()? {
            if seen.contains(&key) {
                return Err(de::Error::custom("duplicate key"));
            }
            if seen.len() == MAX_KEYS {
                return Err(de::Error::custom("too many keys"));
            }
            map.next_value_seed(Strict { keep: false })?;
            seen.push(key);
        }
        Ok(Scalar::Other)
    }
}

#[cfg(feature = "jwt")]
/// Most keys one JSON object in a token may have besides the ones the
/// verifier reads. The duplicate check compares each key with the ones before
/// it, and a header is parsed before its MAC is checked: a bound keeps a
/// forged token of `max_token_len` bytes from costing quadratic time.
pub(super) const MAX_KEYS: usize = 64;

#[cfg(feature = "jwt")]
/// One pass over a JSON object (the header or the payload), keeping the
/// values of the `N` names the verifier reads and checking the rest: no
/// duplicate key at any level, valid JSON, nothing after the object.
pub(super) struct Fields<'de, const N: usize> {
    /// The slot of a name the verifier reads (a `match`: no string compare loop).
    index: fn(&str) -> Option<usize>,
    values: [Option<Scalar<'de>>; N],
}

#[cfg(feature = "jwt")]
impl<'de, const N: usize> Fields<'de, N> {
    pub(super) fn new(index: fn(&str) -> Option<usize>) -> Self {
        Fields { index, values: [const { None }; N] }
    }

    /// Reads `json` into these (empty) fields, in place: the fields are a
    /// few hundred bytes, not worth returning by value. A flat object is
    /// read by the [`flat_json`](super::flat_json) fast path; anything it
    /// leaves, by the strict serde pass, which alone refuses.
    pub(super) fn read(&mut self, json: &'de [u8]) -> Result<(), Failure> {
        if super::flat_json::read(json, self.index, &mut self.values).is_some() {
            #[cfg(debug_assertions)]
            self.assert_serde_agrees(json);
            return Ok(());
        }
        self.values = [const { None }; N];
        self.read_serde(json)
    }

    /// The strict serde pass.
    fn read_serde(&mut self, json: &'de [u8]) -> Result<(), Failure> {
        let mut de = serde_json::Deserializer::from_slice(json);
        self.deserialize(&mut de).and_then(|()| de.end()).map_err(|_| Failure::Malformed(Malformed::Token))
    }

    /// The fast path accepts only what the serde pass accepts, with the
    /// same values: checked on every acceptance in debug builds, so the
    /// tests and the fuzz targets compare the two.
    #[cfg(debug_assertions)]
    fn assert_serde_agrees(&self, json: &'de [u8]) {
        let mut serde = Fields::<N>::new(self.index);
        assert_eq!(serde.read_serde(json), Ok(()), "the flat JSON fast path accepted what serde refuses");
        assert!(serde.values == self.values, "the flat JSON fast path read other values than serde");
    }

    /// The serde pass alone, for comparing the fast path with it.
    #[cfg(test)]
    pub(super) fn parse_serde(index: fn(&str) -> Option<usize>, json: &'de [u8]) -> Result<Self, Failure> {
        let mut fields = Fields::new(index);
        fields.read_serde(json).map(|()| fields)
    }

    #[cfg(test)]
    pub(super) fn values(&self) -> &[Option<Scalar<'de>>; N] {
        &self.values
    }

    #[cfg(test)]
    pub(super) fn parse(index: fn(&str) -> Option<usize>, json: &'de [u8]) -> Result<Self, Failure> {
        let mut fields = Fields::new(index);
        fields.read(json).map(|()| fields)
    }

    /// The value in `slot` (as `index` gives it for the field's name).
    pub(super) fn get(&self, slot: usize) -> Option<&Scalar<'de>> {
        self.values.get(slot)?.as_ref()
    }

    /// A non-negative integer claim; any other type is malformed.
    pub(super) fn numeric(&self, slot: usize) -> Result<Option<u64>, Failure> {
        match self.get(slot) {
            None => Ok(None),
            Some(Scalar::U64(v)) => Ok(Some(*v)),
            Some(_) => Err(Failure::Malformed(Malformed::Token)),
        }
    }

    /// A string claim; any other type is malformed.
    pub(super) fn string(&self, slot: usize) -> Result<Option<&str>, Failure> {
        match self.get(slot) {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(_) => Err(Failure::Malformed(Malformed::Token)),
        }
    }
}

#[cfg(feature = "jwt")]
impl<'de, const N: usize> DeserializeSeed<'de> for &mut Fields<'de, N> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

#[cfg(feature = "jwt")]
impl<'de, const N: usize> Visitor<'de> for &mut Fields<'de, N> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys the verifier does not read, for the duplicate check.
        let mut others: Vec<Cow<'de, str>> = Vec::new();
        while let Some(JsonKey(key)) = map.next_key()? {
            match (self.index)(&key).filter(|&i| i < N) {
                Some(i) => {
                    if self.values[i].is_some() {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    self.values[i] = Some(map.next_value_seed(Strict { keep: true })?);
                }
                None => {
                    if others.contains(&key) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    if others.len() == MAX_KEYS {
                        return Err(de::Error::custom("too many keys"));
                    }
                    map.next_value_seed(Strict { keep: false })?;
                    others.push(key);
                }
            }
        }
        Ok(())
    }
}
