//! A deterministic xorshift generator, so tests vary their inputs
//! reproducibly without a dependency.
//!
//! Self-contained: other test binaries include it with `#[path]`.
#![allow(dead_code)]

/// A xorshift64 generator; the seed must not be zero (use [`Rng::new`] for
/// any seed).
pub struct Rng(pub u64);

impl Rng {
    /// A generator seeded by `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
