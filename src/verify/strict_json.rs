//! What the JSON body walker and the JWT verifier share: object keys read
//! without copying, and identifiers kept as slices of the bytes they came from.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Visitor};

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
