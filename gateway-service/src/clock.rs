//! The wall clock that signing and verification read: signature
//! timestamps, the verifier's window, nonce expiry and service-token
//! lifetimes. One trait, so that tests move time by hand instead of
//! sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Unix seconds, replaceable in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in Unix seconds.
    fn now_unix(&self) -> u64;
}

/// Unix seconds now, from the system clock (0 before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        now_unix()
    }
}

/// A clock that only moves when told to: for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `now` (Unix seconds).
    pub fn new(now: u64) -> Self {
        ManualClock(AtomicU64::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_unix(), 1_000);
        c.advance(59);
        assert_eq!(c.now_unix(), 1_059);
        c.set(5);
        assert_eq!(c.now_unix(), 5);
    }

    #[test]
    fn the_system_clock_reads_unix_seconds() {
        // 2020-01-01 and 2200-01-01: any sane system clock is between.
        let now = SystemClock.now_unix();
        assert!((1_577_836_800..7_258_118_400).contains(&now), "{now}");
    }
}
