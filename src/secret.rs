//! Secrets: the bytes a key signs with, held in zeroizing memory with a redacted `Debug`.

use std::fmt;

use zeroize::Zeroizing;

/// How a configured secret string turns into the key bytes.
///
/// Vendors differ: most use the secret "as text" (its UTF-8 bytes), some
/// publish a hex string that must be hex-decoded first, some hand out base64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretEncoding {
    /// The UTF-8 bytes of the string, as given (the default, and what
    /// `crypto.createHmac("sha256", secret)` does with a string secret).
    #[default]
    Utf8,
    /// Hex-decoded (either case), like `Buffer.from(secret, "hex")` or
    /// `bytes.fromhex(secret)`.
    Hex,
    /// Base64-decoded: the standard alphabet with or without padding, or the
    /// URL-safe alphabet without padding.
    #[cfg(feature = "base64")]
    Base64,
}

impl SecretEncoding {
    /// The name used in configuration files: `utf8`, `hex` or `base64`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretEncoding::Utf8 => "utf8",
            SecretEncoding::Hex => "hex",
            #[cfg(feature = "base64")]
            SecretEncoding::Base64 => "base64",
        }
    }
}

impl std::str::FromStr for SecretEncoding {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "utf8" | "utf-8" | "text" => Ok(SecretEncoding::Utf8),
            "hex" => Ok(SecretEncoding::Hex),
            #[cfg(feature = "base64")]
            "base64" => Ok(SecretEncoding::Base64),
            _ => Err(SecretError::UnknownEncoding),
        }
    }
}

/// Why a secret could not be built. Never contains the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty.
    Empty,
    /// The secret is not valid hex.
    InvalidHex,
    /// The secret is not valid base64.
    InvalidBase64,
    /// The encoding name is not one of `utf8`, `hex`, `base64`.
    UnknownEncoding,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretError::Empty => "the secret is empty",
            SecretError::InvalidHex => "the secret is not valid hex",
            SecretError::InvalidBase64 => "the secret is not valid base64",
            SecretError::UnknownEncoding => "unknown secret encoding (expected utf8, hex or base64)",
        })
    }
}

impl std::error::Error for SecretError {}

/// Key material. Zeroized on drop; `Debug` prints `Secret([REDACTED; n bytes])`
/// without the bytes.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// A secret from raw bytes. Fails when empty.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(bytes))
    }

    /// A secret used as text: its UTF-8 bytes (the common case).
    pub fn text(secret: &str) -> Result<Self, SecretError> {
        Self::from_bytes(secret.as_bytes())
    }

    /// A secret given as hex, decoded to bytes.
    pub fn hex(secret: &str) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(hex::decode(secret.trim()).map_err(|_| SecretError::InvalidHex)?);
        Self::from_bytes(bytes.to_vec())
    }

    /// A secret given as base64 (standard with or without padding, or URL-safe without padding).
    #[cfg(feature = "base64")]
    pub fn base64(secret: &str) -> Result<Self, SecretError> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let s = secret.trim();
        let decoded = STANDARD
            .decode(s)
            .or_else(|_| STANDARD_NO_PAD.decode(s))
            .or_else(|_| URL_SAFE_NO_PAD.decode(s))
            .map_err(|_| SecretError::InvalidBase64)?;
        Self::from_bytes(Zeroizing::new(decoded).to_vec())
    }

    /// A secret from its configured string form and encoding.
    pub fn decode(secret: &str, encoding: SecretEncoding) -> Result<Self, SecretError> {
        match encoding {
            SecretEncoding::Utf8 => Self::text(secret),
            SecretEncoding::Hex => Self::hex(secret),
            #[cfg(feature = "base64")]
            SecretEncoding::Base64 => Self::base64(secret),
        }
    }

    /// The key bytes. Handle with care: never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: an empty secret cannot be built.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([REDACTED; {} bytes])", self.0.len())
    }
}

impl PartialEq for Secret {
    /// Constant-time comparison of the bytes.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_decode() {
        assert_eq!(Secret::text("abc").unwrap().expose(), b"abc");
        assert_eq!(Secret::hex("00FF10ab").unwrap().expose(), &[0, 0xff, 0x10, 0xab]);
        assert_eq!(Secret::hex("abc"), Err(SecretError::InvalidHex));
        assert_eq!(Secret::text(""), Err(SecretError::Empty));
        assert_eq!(Secret::hex(""), Err(SecretError::Empty));
        #[cfg(feature = "base64")]
        {
            assert_eq!(Secret::base64("AAEC").unwrap().expose(), &[0, 1, 2]);
            assert_eq!(Secret::base64("-_8").unwrap().expose(), &[0xfb, 0xff]);
            assert_eq!(Secret::base64("+/8=").unwrap().expose(), &[0xfb, 0xff]);
            assert_eq!(Secret::base64("!!"), Err(SecretError::InvalidBase64));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::text("super-secret-value").unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("super"), "{dbg}");
        assert_eq!(dbg, "Secret([REDACTED; 18 bytes])");
    }
}
