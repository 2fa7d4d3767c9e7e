//! A deterministic xorshift generator for tests that need reproducible
//! variety (one generator per case, seeded by its number).

/// A deterministic xorshift generator (one per request, seeded by its id).
pub struct Rng(u64);

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
}
