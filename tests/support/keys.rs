//! Secrets, keys and the fixed clock the tests sign and verify with.
//!
//! Self-contained (it needs only `tower_identity`), so a test binary of its
//! own, such as `tests/allocations.rs`, can include it with `#[path]`.
#![allow(dead_code)]

use tower_identity::Secret;

/// The tests' clock: 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;
/// The text of [`secret()`].
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The tests' usual HMAC secret, [`SECRET`] as UTF-8 text.
pub fn secret() -> Secret {
    Secret::text(SECRET).unwrap()
}

/// Secrets of a rotating key set (two HMAC keys and a JWT key) for the
/// observability and log-hygiene tests.
pub const OLD: &str = "observability-old-secret-0123";
pub const NEW: &str = "observability-new-secret-0123";
pub const JWT_SECRET: &str = "observability-jwt-secret-0123";

/// Keys "2025" (OLD), "2026" (NEW) and "jwt-1" (JWT_SECRET).
#[cfg(feature = "jwt")]
pub fn rotating_keys() -> tower_identity::KeySet {
    use tower_identity::{Identifier, Key, KeySet};
    KeySet::new([
        Key::hmac(Identifier::UserId, Secret::text(OLD).unwrap()).with_id("2025"),
        Key::hmac(Identifier::UserId, Secret::text(NEW).unwrap()).with_id("2026"),
        Key::jwt(Secret::text(JWT_SECRET).unwrap()).with_id("jwt-1"),
    ])
    .unwrap()
}

/// The default header credential for `user` signed with `secret` (HMAC over
/// the user id): `x-user-id` and `x-identity-signature`.
pub fn signed_headers(secret: &str, user: &str) -> [(&'static str, String); 2] {
    let sig = tower_identity::sign::hmac(&Secret::text(secret).unwrap(), user);
    [("x-user-id", user.to_owned()), ("x-identity-signature", sig)]
}
