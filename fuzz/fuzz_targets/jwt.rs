//! HS256 JWT parsing and verification: `verify::jwt::verify_jws` and `verify` with a token.
//!
//! Tokens are raw strings or built from fuzzer-chosen headers and payloads,
//! signed with one of the key set's secrets (or a stranger's) by an HMAC
//! written out from RFC 2104, then mutated. Invariants:
//!
//! - an accepted token is three base64url parts whose third is exactly the
//!   base64url (canonical, unpadded) of the independent HMAC of the first two
//!   under the matching key's secret; the payload returned is the second
//!   part decoded, and re-encodes to it; the header says `alg: HS256`;
//! - a token built with a valid key and a plain header is accepted by
//!   `verify_jws` with that key;
//! - `verify` accepts only what `verify_jws` accepts, and then the claims
//!   hold: `exp` in the future, `iat`/`nbf` not in the future, lifetime at
//!   most `max_lifetime`, `aud` equal to the key set's audience, identifiers
//!   sent beside the token equal to its claims.

#![no_main]
// Fuzz inputs live once per run: their size does not matter.
#![allow(clippy::large_enum_variant)]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tower_identity::verify::jwt::{JwtOptions, verify_jws};
use tower_identity::{Identifier, Key, KeySet, Scheme, Secret, claim::Claim, verify::VerifyOptions, verify::verify};
use tower_identity_fuzz::{NOW, b64url, hmac_sha256};

const AUDIENCE: &str = "app_1";

#[derive(Arbitrary, Debug)]
struct Input {
    token: Token,
    with_audience: bool,
    beside: Beside,
    now: i16,
    options: Options,
}

#[derive(Arbitrary, Debug)]
enum Options {
    Default,
    Custom { max_lifetime: u16, leeway: u8, require_iat: bool, max_token_len: u16 },
}

#[derive(Arbitrary, Debug)]
enum Token {
    Raw(String),
    Built { header: Header, payload: Payload, signer: u8, mutation: Mutation },
}

#[derive(Arbitrary, Debug)]
enum Header {
    Plain { kid: Kid, typ: Option<String> },
    Extra { name: String, value: Scalar },
    Alg(Scalar),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Kid {
    None,
    OfSigner,
    Other(String),
    NotAString(u32),
}

#[derive(Arbitrary, Debug)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Array(Vec<String>),
}

impl Scalar {
    fn json(&self) -> Value {
        match self {
            Scalar::Str(s) => json!(s),
            Scalar::Int(i) => json!(i),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Bool(b) => json!(b),
            Scalar::Null => Value::Null,
            Scalar::Array(a) => json!(a),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Claims(Claims),
    RawJson(String),
    RawBytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Claims {
    sub: Option<Scalar>,
    user_id: Option<String>,
    email: Option<String>,
    visitor_id: Option<String>,
    name: Option<String>,
    aud: Option<Aud>,
    iat: Option<Time>,
    exp: Option<Time>,
    nbf: Option<Time>,
    extra: Vec<(String, Scalar)>,
}

#[derive(Arbitrary, Debug)]
enum Aud {
    Expected,
    ExpectedInArray,
    Other(String),
    Many(Vec<String>),
    Scalar(Scalar),
}

#[derive(Arbitrary, Debug)]
enum Time {
    /// Seconds from now.
    Relative(i16),
    Absolute(u64),
    Other(Scalar),
}

impl Time {
    fn json(&self, now: u64) -> Value {
        match self {
            Time::Relative(d) => json!(now as i64 + i64::from(*d)),
            Time::Absolute(t) => json!(t),
            Time::Other(s) => s.json(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    None,
    ReplaceChar {
        at: u16,
        with: char,
    },
    Truncate(u16),
    Append(String),
    Pad,
    /// Changes the unused low bits of the signature's last character.
    NonCanonicalTail(u8),
    DropSignature,
    SwapPayload(String),
}

#[derive(Arbitrary, Debug)]
struct Beside {
    user_id: Option<Sent>,
    email: Option<Sent>,
    visitor_id: Option<Sent>,
}

#[derive(Arbitrary, Debug)]
enum Sent {
    /// The value the token carries for this identifier, if any.
    Same,
    Other(String),
}

struct Fixture {
    keys: KeySet,
    with_audience: KeySet,
    /// Secrets by signer index: the keys' (in order), then a stranger's.
    secrets: Vec<Secret>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = KeySet::new([
            Key::jwt(Secret::text("jwt-secret-one-0123456789abcdef").unwrap()).with_id("one"),
            Key::jwt(Secret::text("jwt-secret-two-0123456789abcdef").unwrap()).with_id("two").not_after(NOW + 10),
            Key::jwt(Secret::text("jwt-secret-three-0123456789abcd").unwrap()),
            Key::hmac(Identifier::UserId, Secret::text("hmac-secret-beside-jwt-keys-0123").unwrap()).with_id("hmac"),
        ])
        .expect("distinct secrets");
        let mut secrets: Vec<Secret> = keys.keys().iter().map(|k| k.secret().clone()).collect();
        secrets.push(Secret::text("a-stranger-secret-0123456789abcdef").unwrap());
        Fixture { with_audience: keys.clone().with_audience(AUDIENCE), keys, secrets }
    })
}

fn build_header(header: &Header, signer_id: Option<&str>) -> (Vec<u8>, bool) {
    let mut map = Map::new();
    map.insert("alg".into(), json!("HS256"));
    // Whether a correct signature must make `verify_jws` accept.
    let mut plain = true;
    match header {
        Header::Plain { kid, typ } => {
            if let Some(typ) = typ {
                plain &= typ.eq_ignore_ascii_case("JWT");
                map.insert("typ".into(), json!(typ));
            }
            match kid {
                Kid::None => {}
                Kid::OfSigner => {
                    if let Some(id) = signer_id {
                        map.insert("kid".into(), json!(id));
                    }
                }
                Kid::Other(k) => {
                    plain &= signer_id == Some(k.as_str());
                    map.insert("kid".into(), json!(k));
                }
                Kid::NotAString(n) => {
                    plain = false;
                    map.insert("kid".into(), json!(n));
                }
            }
        }
        Header::Extra { name, value } => {
            plain = false;
            map.insert(name.clone(), value.json());
        }
        Header::Alg(alg) => {
            plain = false;
            map.insert("alg".into(), alg.json());
        }
        Header::Raw(raw) => return (raw.as_bytes().to_vec(), false),
    }
    (serde_json::to_vec(&map).expect("a map serializes"), plain)
}

fn build_payload(payload: &Payload, now: u64) -> Vec<u8> {
    match payload {
        Payload::RawJson(s) => s.as_bytes().to_vec(),
        Payload::RawBytes(b) => b.clone(),
        Payload::Claims(c) => {
            let mut map = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    map.insert(k.into(), v);
                }
            };
            put("sub", c.sub.as_ref().map(Scalar::json));
            put("user_id", c.user_id.as_ref().map(|s| json!(s)));
            put("email", c.email.as_ref().map(|s| json!(s)));
            put("visitor_id", c.visitor_id.as_ref().map(|s| json!(s)));
            put("name", c.name.as_ref().map(|s| json!(s)));
            put(
                "aud",
                c.aud.as_ref().map(|a| match a {
                    Aud::Expected => json!(AUDIENCE),
                    Aud::ExpectedInArray => json!([AUDIENCE]),
                    Aud::Other(s) => json!(s),
                    Aud::Many(v) => json!(v),
                    Aud::Scalar(s) => s.json(),
                }),
            );
            put("iat", c.iat.as_ref().map(|t| t.json(now)));
            put("exp", c.exp.as_ref().map(|t| t.json(now)));
            put("nbf", c.nbf.as_ref().map(|t| t.json(now)));
            for (k, v) in &c.extra {
                map.entry(k.clone()).or_insert_with(|| v.json());
            }
            serde_json::to_vec(&map).expect("a map serializes")
        }
    }
}

fn mutate(token: String, mutation: &Mutation) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    match mutation {
        Mutation::None => token,
        Mutation::ReplaceChar { at, with } => {
            let mut chars: Vec<char> = token.chars().collect();
            if !chars.is_empty() {
                let at = *at as usize % chars.len();
                chars[at] = *with;
            }
            chars.into_iter().collect()
        }
        Mutation::Truncate(n) => token.chars().take(*n as usize).collect(),
        Mutation::Append(s) => token + s,
        Mutation::Pad => token + "=",
        Mutation::NonCanonicalTail(bits) => {
            // 32 bytes are 43 characters; the last one carries 4 bits and 2 unused ones.
            let mut bytes = token.into_bytes();
            if let Some(last) = bytes.last_mut()
                && let Some(v) = B64.iter().position(|c| c == last)
            {
                *last = B64[(v & !3) | (*bits as usize & 3)];
            }
            String::from_utf8(bytes).expect("ASCII")
        }
        Mutation::DropSignature => match token.rsplit_once('.') {
            Some((input, _)) => format!("{input}."),
            None => token,
        },
        Mutation::SwapPayload(p) => {
            let parts: Vec<&str> = token.split('.').collect();
            if parts.len() == 3 { format!("{}.{}.{}", parts[0], b64url(p.as_bytes()), parts[2]) } else { token }
        }
    }
}

/// The independent check of an accepted token.
fn check_accepted(token: &str, key: &Key, payload: &[u8], now: u64) {
    assert!(matches!(key.scheme(), Scheme::Jwt), "a non-JWT key verified a token");
    assert!(key.is_valid_at(now), "a key outside its validity window verified a token");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact serialization only");
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    let expected = b64url(&hmac_sha256(key.secret().expose(), signing_input.as_bytes()));
    assert_eq!(parts[2], expected, "the accepted signature is not the HMAC of the signing input");
    assert_eq!(b64url(payload), parts[1], "the payload is the second part, canonically encoded");
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).expect("a base64url header");
    assert_eq!(b64url(&header), parts[0], "the header is canonically encoded");
    let header: Value = serde_json::from_slice(&header).expect("a JSON header");
    assert_eq!(header.get("alg"), Some(&json!("HS256")));
    for refused in ["crit", "jwk", "jku", "x5u", "x5c"] {
        assert!(header.get(refused).is_none(), "{refused}");
    }
    if let Some(kid) = header.get("kid") {
        assert_eq!(kid.as_str(), key.id(), "the kid selects the key");
    }
}

fuzz_target!(|input: Input| {
    let fx = fixture();
    let now = NOW.saturating_add_signed(i64::from(input.now));
    let keys = if input.with_audience { &fx.with_audience } else { &fx.keys };
    let jwt_opts = match input.options {
        Options::Default => JwtOptions::default(),
        Options::Custom { max_lifetime, leeway, require_iat, max_token_len } => JwtOptions::default()
            .max_lifetime(u64::from(max_lifetime))
            .leeway(u64::from(leeway))
            .require_iat(require_iat)
            .max_token_len(usize::from(max_token_len)),
    };

    // Build the token.
    let mut must_verify_with = None;
    let (token, claims_sent): (String, Option<Value>) = match &input.token {
        Token::Raw(s) => (s.clone(), None),
        Token::Built { header, payload, signer, mutation } => {
            let signer = *signer as usize % fx.secrets.len();
            let signer_key = keys.keys().get(signer);
            let (header, plain) = build_header(header, signer_key.and_then(Key::id));
            let payload = build_payload(payload, now);
            let signing_input = format!("{}.{}", b64url(&header), b64url(&payload));
            let sig = b64url(&hmac_sha256(fx.secrets[signer].expose(), signing_input.as_bytes()));
            let token = mutate(format!("{signing_input}.{sig}"), mutation);
            if let Some(key) = signer_key
                && plain
                && matches!(mutation, Mutation::None)
                && matches!(key.scheme(), Scheme::Jwt)
                && key.is_valid_at(now)
                && token.len() <= jwt_opts.get_max_token_len()
                && !payload.is_empty()
            {
                must_verify_with = Some(key);
            }
            (token, serde_json::from_slice(&payload).ok())
        }
    };

    // verify_jws
    let jws = verify_jws(&token, keys, now, &jwt_opts);
    if let Ok((key, payload)) = &jws {
        check_accepted(&token, key, payload, now);
    }
    if let Some(key) = must_verify_with {
        match &jws {
            Ok((got, _)) => assert_eq!(got.id(), key.id(), "another key verified"),
            Err(e) => panic!("a token signed with a valid key and a plain header was refused: {e:?}"),
        }
    }

    // verify, with identifiers beside the token
    let carried =
        |name: &str| claims_sent.as_ref().and_then(|c| c.get(name)).and_then(Value::as_str).map(str::to_owned);
    let beside = |sent: &Option<Sent>, name: &str| match sent {
        None => None,
        Some(Sent::Same) => carried(name).or_else(|| Some("absent".to_owned())),
        Some(Sent::Other(s)) => Some(s.clone()),
    };
    let mut claim = Claim::new().token(token.as_str());
    claim.user_id = beside(&input.beside.user_id, "sub").map(Into::into);
    claim.email = beside(&input.beside.email, "email").map(Into::into);
    claim.visitor_id = beside(&input.beside.visitor_id, "visitor_id").map(Into::into);
    let opts = VerifyOptions::default().jwt(jwt_opts.clone());
    let Ok(identity) = verify(&claim, keys, now, &opts) else { return };

    let Ok((key, payload)) = &jws else { panic!("verify accepted a token verify_jws refuses") };
    assert_eq!(identity.key_id(), key.id());
    assert!(matches!(identity.scheme(), Scheme::Jwt));
    let claims: Value = serde_json::from_slice(payload).expect("a verified token's payload is JSON");
    let number = |name: &str| claims.get(name).map(|v| v.as_u64().expect("a non-negative integer"));
    let exp = number("exp").expect("exp is required");
    let iat = number("iat");
    let nbf = number("nbf");
    let leeway = jwt_opts.get_leeway();
    assert!(now < exp.saturating_add(leeway), "expired token accepted");
    assert!(iat.is_some() || !jwt_opts.get_require_iat());
    if let Some(iat) = iat {
        assert!(iat <= now.saturating_add(leeway), "iat in the future");
        assert!(exp >= iat);
    }
    assert!(nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway)), "nbf in the future");
    assert!(exp - iat.unwrap_or(now).min(exp) <= jwt_opts.get_max_lifetime(), "lifetime too long");
    if let Some(expected) = keys.audience() {
        let aud = claims.get("aud");
        assert!(
            aud == Some(&json!(expected)) || aud == Some(&json!([expected])),
            "aud {aud:?} accepted for {expected}"
        );
    }
    assert_eq!(identity.signed_at(), iat);
    let user_id = claims.get("sub").or(claims.get("user_id")).and_then(Value::as_str);
    assert_eq!(identity.user_id(), user_id);
    assert_eq!(identity.email(), claims.get("email").and_then(Value::as_str));
    assert_eq!(identity.visitor_id(), claims.get("visitor_id").and_then(Value::as_str));
    assert!(identity.user_id().is_some() || identity.email().is_some() || identity.visitor_id().is_some());
    for (which, sent) in [
        (Identifier::UserId, &claim.user_id),
        (Identifier::Email, &claim.email),
        (Identifier::VisitorId, &claim.visitor_id),
    ] {
        if let Some(sent) = sent {
            let proven = match which {
                Identifier::UserId => identity.user_id(),
                Identifier::Email => identity.email(),
                Identifier::VisitorId => identity.visitor_id(),
                _ => unreachable!("only the three identifiers above are sent"),
            };
            assert_eq!(proven, Some(sent.as_str()), "an identifier sent beside the token differs from its claim");
        }
    }
    let signed = identity.claims().expect("a JWT identity carries its claims");
    for (name, value) in signed.iter() {
        assert_eq!(claims.get(name), Some(value));
    }
});
