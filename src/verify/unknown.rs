//! The answer for a tenant the provider does not know: the same checks, and
//! the same work, as for a known tenant whose key does not match.
//!
//! Answering an unknown tenant with a bare "invalid signature" would make it
//! an oracle: a malformed signature or an over-long identifier is
//! `credential_malformed` for a known tenant, and skipping the MAC makes the
//! unknown path measurably faster. So the claim is verified against a dummy
//! key of the claim's own scheme, and whatever that says (never a pass) is the
//! answer.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use super::{Failure, VerifyOptions, check};
use crate::claim::Claim;
use crate::key::{Identifier, Key, KeySet};
use crate::secret::Secret;

/// One dummy key set per scheme the claim's credential can take: plain and
/// timestamped HMAC over each identifier, and (feature `jwt`) HS256.
struct Dummies {
    hmac: [KeySet; 3],
    timestamped: [KeySet; 3],
    #[cfg(feature = "jwt")]
    jwt: KeySet,
}

const IDENTIFIERS: [Identifier; 3] = [Identifier::UserId, Identifier::Email, Identifier::VisitorId];

/// A secret nobody knows: 32 bytes drawn from the standard library's randomly
/// keyed SipHash (keyed from the operating system's randomness once per
/// process). It only has to be unknown, never to verify anything: with a known
/// dummy key, a client could sign with it and tell an unknown tenant by the
/// failures only an authentic MAC reaches (expired, claims mismatch).
fn unknown_secret(n: u64) -> Secret {
    let state = RandomState::new();
    let bytes: Vec<u8> = (0..4u64).flat_map(|i| state.hash_one((n, i)).to_le_bytes()).collect();
    Secret::from_bytes(bytes).expect("32 bytes is a valid secret")
}

fn dummies() -> &'static Dummies {
    static DUMMIES: OnceLock<Dummies> = OnceLock::new();
    DUMMIES.get_or_init(|| {
        let mut n = 0;
        let mut key = |make: fn(Identifier, Secret) -> Key, over: Identifier| {
            n += 1;
            KeySet::single(make(over, unknown_secret(n)))
        };
        Dummies {
            hmac: IDENTIFIERS.map(|over| key(Key::hmac, over)),
            timestamped: IDENTIFIERS.map(|over| key(Key::timestamped_hmac, over)),
            #[cfg(feature = "jwt")]
            jwt: KeySet::single(Key::jwt(unknown_secret(0))),
        }
    })
}

/// The dummy key set for this claim's credential: a token's, or an HMAC over
/// the first identifier sent, timestamped when the signature carries a time.
fn dummy_for(claim: &Claim) -> &'static KeySet {
    let d = dummies();
    #[cfg(feature = "jwt")]
    if claim.signature.is_none() && claim.token.is_some() {
        return &d.jwt;
    }
    let over = IDENTIFIERS.iter().position(|&i| claim.identifier(i).is_some()).unwrap_or(0);
    let timestamped = claim.timestamp.is_some() || claim.signature.as_ref().is_some_and(|s| s.len() > 64);
    if timestamped { &d.timestamped[over] } else { &d.hmac[over] }
}

/// Whether verifying this claim against its dummy key reads the clock.
pub(crate) fn needs_time(claim: &Claim) -> bool {
    dummy_for(claim).needs_time()
}

/// The failure for `claim` when its tenant is unknown: the claim is checked
/// against a dummy key of its scheme (identifier rules, signature or token
/// form, one MAC), so an unknown tenant answers like a known one with a wrong
/// key, in the same time. Never a pass.
pub(crate) fn unknown_tenant(claim: &Claim, now: u64, opts: &VerifyOptions) -> Failure {
    match check(claim, dummy_for(claim), now, opts) {
        Err(failure) => failure,
        // Unreachable with a secret nobody knows; fail closed all the same.
        Ok(_) => Failure::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Malformed;

    fn claim() -> Claim {
        Claim::new().user_id("u1")
    }

    #[test]
    fn answers_like_a_wrong_key() {
        let opts = VerifyOptions::default();
        let sig = "ab".repeat(32);
        assert_eq!(unknown_tenant(&claim().signature(sig.as_str()), 0, &opts), Failure::Invalid);
        assert_eq!(unknown_tenant(&claim().signature(format!("{sig}-100")), 0, &opts), Failure::Invalid);
        assert_eq!(unknown_tenant(&claim().signature("zz"), 0, &opts), Failure::Malformed(Malformed::Signature));
        let long = Claim::new().user_id("u".repeat(300)).signature(sig.as_str());
        assert_eq!(unknown_tenant(&long, 0, &opts), Failure::Malformed(Malformed::IdentifierTooLong));
        assert_eq!(unknown_tenant(&claim(), 0, &opts), Failure::Missing);
        assert_eq!(
            unknown_tenant(&Claim::new().email("e@x").signature(sig.as_str()), 0, &opts),
            Failure::Invalid,
            "an HMAC over the identifier sent"
        );
    }

    #[test]
    fn dummy_keys_differ_per_scheme() {
        let d = dummies();
        let secret = |k: &KeySet| k.keys()[0].secret().expose().to_vec();
        assert_ne!(secret(&d.hmac[0]), secret(&d.timestamped[0]));
        assert_ne!(secret(&d.hmac[0]), secret(&d.hmac[1]));
        assert_eq!(secret(&d.hmac[0]).len(), 32);
    }
}
