//! A deterministic xorshift generator, so tests vary their inputs
//! reproducibly without a dependency.
//!
//! Self-contained: other test binaries include it with `#[path]`.
#![allow(dead_code)]

/// A xorshift64 generator; the seed must not be zero.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
