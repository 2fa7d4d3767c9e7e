//! Time, injectable for tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current unix time in seconds.
///
/// Implemented for closures `Fn() -> u64`.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the unix epoch.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

impl<F> Clock for F
where
    F: Fn() -> u64 + Send + Sync + 'static,
{
    fn now(&self) -> u64 {
        self()
    }
}
