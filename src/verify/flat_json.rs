//! A fast path for the strict reader of JWT headers and payloads.
//!
//! Nearly every token carries a flat object: a few keys, string values
//! without escapes, non-negative integers, an `aud` array of one string.
//! The serde pass of [`strict_json`](super::strict_json) costs several
//! hundred instructions per key on those (a visitor call per key and value,
//! a UTF-8 check per string); this scanner reads them in one loop over the
//! bytes. It never refuses anything: input it does not fully understand
//! (nesting, escapes, negative or fractional numbers, integers past `u64`,
//! duplicate keys, more than [`OTHERS`] keys the verifier does not read,
//! invalid JSON) makes it return `None`, and the serde pass reads the
//! object again and decides. So it only ever accepts input the serde pass
//! accepts, with the same values; debug builds (the tests and the fuzz
//! targets) check every acceptance against the serde pass.

use std::borrow::Cow;

use super::strict_json::Scalar;

/// Most keys the verifier does not read that the fast path tracks for the
/// duplicate check; an object with more goes to the serde pass.
const OTHERS: usize = 8;

/// The bytes that end the fast scan of a string: the closing quote, an
/// escape, a control character (a lookup instead of three compares per byte).
static STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// Reads the flat object `json` into `values` (all `None` on entry), by the
/// slots `index` gives. `None`: not read here (`values` may be partly
/// filled), the serde pass decides.
pub(super) fn read<'de, const N: usize>(
    json: &'de [u8],
    index: fn(&str) -> Option<usize>,
    values: &mut [Option<Scalar<'de>>; N],
) -> Option<()> {
    // One UTF-8 check for the whole object: every string below is cut at
    // ASCII quotes, so each is UTF-8 too.
    let mut cur = Cursor { text: std::str::from_utf8(json).ok()?, at: 0 };
    let mut others: [&str; OTHERS] = [""; OTHERS];
    let mut seen = 0;
    cur.expect(b'{')?;
    if !cur.eat(b'}') {
        loop {
            cur.expect(b'"')?;
            let key = cur.string()?;
            cur.expect(b':')?;
            cur.skip_ws();
            match index(key).filter(|&i| i < N) {
                Some(i) => {
                    let slot = &mut values[i];
                    if slot.is_some() {
                        return None;
                    }
                    *slot = Some(cur.value(true)?);
                }
                None => {
                    if seen == OTHERS || others[..seen].contains(&key) {
                        return None;
                    }
                    others[seen] = key;
                    seen += 1;
                    cur.value(false)?;
                }
            }
            if !cur.eat(b',') {
                cur.expect(b'}')?;
                break;
            }
        }
    }
    cur.skip_ws();
    (cur.at == cur.text.len()).then_some(())
}

/// A position in the object's text.
struct Cursor<'de> {
    text: &'de str,
    at: usize,
}

impl<'de> Cursor<'de> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Skips JSON whitespace (the four characters RFC 8259 and serde_json allow).
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Skips whitespace, then consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// The rest of a string whose opening quote is consumed; `None` at an
    /// escape or a control character (the serde pass decodes or refuses it).
    fn string(&mut self) -> Option<&'de str> {
        let start = self.at;
        let len = self.text.as_bytes()[start..].iter().position(|&b| STRING_STOP[usize::from(b)])?;
        let end = start + len;
        (self.text.as_bytes()[end] == b'"').then_some(())?;
        self.at = end + 1;
        self.text.get(start..end)
    }

    /// A value: a string, a non-negative integer, a literal or an array of
    /// those. `keep`: whether strings and integers are kept or only checked.
    fn value(&mut self, keep: bool) -> Option<Scalar<'de>> {
        if self.peek() != Some(b'[') {
            return self.scalar(keep);
        }
        self.at += 1;
        if self.eat(b']') {
            return Some(Scalar::Other);
        }
        // As the serde pass: only the first item is kept, and an array of
        // exactly one kept string is `OneStrList`.
        self.skip_ws();
        let first = self.scalar(keep)?;
        let mut one = true;
        while self.eat(b',') {
            self.skip_ws();
            self.scalar(false)?;
            one = false;
        }
        self.expect(b']')?;
        Some(match first {
            Scalar::Str(s) if one => Scalar::OneStrList(s),
            _ => Scalar::Other,
        })
    }

    /// A string, a non-negative integer or a literal; `None` for anything
    /// else (arrays, objects, negative or fractional numbers).
    fn scalar(&mut self, keep: bool) -> Option<Scalar<'de>> {
        let kept = |scalar| if keep { scalar } else { Scalar::Other };
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string().map(|s| kept(Scalar::Str(Cow::Borrowed(s))))
            }
            b'0'..=b'9' => self.integer().map(|v| kept(Scalar::U64(v))),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => None,
        }
    }

    /// A non-negative integer as serde_json reads it into a `u64`; `None`
    /// for a leading zero, a fraction, an exponent, or more than 19 digits
    /// (which may not fit: the serde pass reads those).
    fn integer(&mut self) -> Option<u64> {
        let digits = self.text.as_bytes()[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 19 {
            return None;
        }
        let text = &self.text.as_bytes()[self.at..self.at + digits];
        self.at += digits;
        // At most 19 digits: below 10^19 < u64::MAX, no overflow.
        let value = text.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
        let leading_zero = digits > 1 && text[0] == b'0';
        let fraction = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (!leading_zero && !fraction).then_some(value)
    }

    fn literal(&mut self, word: &str) -> Option<Scalar<'de>> {
        let rest = self.text.as_bytes().get(self.at..)?;
        rest.starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            Scalar::Other
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::strict_json::Fields;
    use proptest::prelude::*;

    /// The slots of a small test schema.
    fn slot(name: &str) -> Option<usize> {
        ["exp", "aud", "sub", "kid"].iter().position(|n| *n == name)
    }

    fn flat(json: &str) -> Option<[Option<Scalar<'_>>; 4]> {
        let mut values = [const { None }; 4];
        read(json.as_bytes(), slot, &mut values).map(|()| values)
    }

    /// What the fast path reads, the serde pass reads the same.
    fn agrees(json: &str) -> Option<()> {
        let values = flat(json)?;
        let serde = Fields::<4>::parse_serde(slot, json.as_bytes());
        let serde = serde.unwrap_or_else(|e| panic!("the fast path read {json:?}, serde refuses it: {e:?}"));
        assert_eq!(serde.values(), &values, "{json:?}");
        Some(())
    }

    #[test]
    fn reads_flat_objects_as_serde_does() {
        let borrowed = |s| Some(Scalar::Str(Cow::Borrowed(s)));
        let read = flat(r#"{"exp":1767225600,"aud":["app"],"sub":"jane@example.com","name":"Jane","n":null}"#);
        assert_eq!(
            read,
            Some([
                Some(Scalar::U64(1_767_225_600)),
                Some(Scalar::OneStrList(Cow::Borrowed("app"))),
                borrowed("jane@example.com"),
                None
            ])
        );
        for json in [
            "{}",
            " \t\r\n{ \t\r\n} \t\r\n",
            r#"{ "exp" : 0 , "aud" : "a" , "kid" : "" }"#,
            r#"{"exp":18446744073709551,"aud":[],"sub":["a","b"],"kid":[1]}"#,
            r#"{"exp":9999999999999999999}"#,
            r#"{"aud":[ "x" ]}"#,
            r#"{"aud":["x",true,false,null,0]}"#,
            "{\"x\":[\"x\",1],\"y\":true,\"z\":\"\u{7f}\"}",
            r#"{"sub":"Zoë ünïcödé ✓ 𝄞","é":"e"}"#,
            r#"{"kid":true,"exp":false,"aud":null,"sub":12}"#,
        ] {
            assert_eq!(agrees(json), Some(()), "{json:?} is read by the fast path");
        }
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        let eight_others = (0..OTHERS).map(|i| format!(r#""k{i}":1"#)).collect::<Vec<_>>().join(",");
        let nine_others = format!(r#"{{{eight_others},"k{OTHERS}":1}}"#);
        assert!(flat(&format!("{{{eight_others}}}")).is_some());
        for json in [
            // Refused by serde too.
            r#"{"exp":1,"exp":1}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"exp":01}"#,
            r#"{"exp":1,}"#,
            r#"{"aud":["a",]}"#,
            r#"{"exp":1} x"#,
            r#"{"exp":1}}"#,
            r#"{"sub":"a	b"}"#,
            r#"{"exp":tru}"#,
            r#"{"exp" 1}"#,
            r#"{exp:1}"#,
            "[1]",
            "",
            "\u{feff}{}",
            // Accepted by serde, read by it.
            r#"{"\u0065xp":1}"#,
            r#"{"sub":"a\"b"}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":1.0}"#,
            r#"{"exp":1e3}"#,
            r#"{"exp":18446744073709551615}"#,
            r#"{"x":{}}"#,
            r#"{"aud":[["a"]]}"#,
            &nine_others,
        ] {
            assert!(flat(json).is_none(), "{json:?} is left to serde");
        }
        assert!(read(b"{\"sub\":\"\xff\"}", slot, &mut [const { None }; 4]).is_none(), "not UTF-8");
    }

    /// Objects made of the pieces the fast path reads and the ones it must
    /// leave, glued with or without the right punctuation.
    fn object() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec!["exp", "aud", "sub", "kid", "x", "y", "é", "\\u0065xp", ""]);
        let value = prop::sample::select(vec![
            "0",
            "1",
            "01",
            "-1",
            "1.5",
            "2e3",
            "18446744073709551615",
            "1767225600",
            "true",
            "fals",
            "null",
            r#""a""#,
            r#""a\"b""#,
            r#""""#,
            "\"\u{1}\"",
            "[]",
            r#"["app"]"#,
            r#"["a","b"]"#,
            "[1,]",
            "[[]]",
            "{}",
            r#"{"a":1}"#,
        ]);
        let glue = prop::sample::select(vec![",", ",", ",", " , ", "", ",,", "\n,\t"]);
        prop::collection::vec((key, value, glue), 0..6).prop_map(|members| {
            let mut json = String::from("{");
            for (i, (key, value, glue)) in members.iter().enumerate() {
                if i > 0 {
                    json.push_str(glue);
                }
                json.push_str(&format!(r#""{key}":{value}"#));
            }
            json + "}"
        })
    }

    proptest! {
        #[test]
        fn the_fast_path_accepts_only_what_serde_accepts_alike(json in object()) {
            agrees(&json);
        }
    }
}
