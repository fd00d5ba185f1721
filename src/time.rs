//! Time, on the ground floor: one [`Clock`] that the gateway makes once
//! and hands to everything that measures time against a window or a
//! date (circuit breakers, retry budgets, the version sunset check), so
//! that tests drive a [`ManualClock`] instead of sleeping.
//!
//! A clock tells monotonic milliseconds (for windows and pauses; it never
//! goes back) and Unix seconds (for dates). Reading the system clock takes
//! no lock and allocates nothing; cloning a clock is a copy, or one
//! reference-count increment for a manual clock.
//!
//! ```
//! use std::time::Duration;
//! use gateway::time::ManualClock;
//!
//! let manual = ManualClock::new(1_700_000_000);
//! let clock = manual.clock();
//! assert_eq!((clock.now_ms(), clock.now_unix()), (0, 1_700_000_000));
//! manual.advance(Duration::from_millis(1_500));
//! assert_eq!((clock.now_ms(), clock.now_unix()), (1_500, 1_700_000_001));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where time comes from: the system's clocks, or a [`ManualClock`].
#[derive(Debug, Clone)]
pub struct Clock(Source);

#[derive(Debug, Clone)]
enum Source {
    /// Milliseconds count from `epoch`; Unix time is the system's.
    System { epoch: Instant },
    /// Both read from a manual clock.
    Manual(Arc<Manual>),
}

#[derive(Debug)]
struct Manual {
    /// Milliseconds since the manual clock was made.
    ms: AtomicU64,
    /// Unix milliseconds at `ms == 0`.
    unix_ms: u64,
}

impl Clock {
    /// The system's clocks: a monotonic one counting from now, and the
    /// wall clock for dates.
    pub fn system() -> Self {
        Clock(Source::System {
            epoch: Instant::now(),
        })
    }

    /// Milliseconds since the clock was made; never goes back.
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Source::System { epoch } => epoch.elapsed().as_millis() as u64,
            Source::Manual(m) => m.ms.load(Ordering::Acquire),
        }
    }

    /// Unix seconds now.
    pub fn now_unix(&self) -> u64 {
        match &self.0 {
            Source::System { .. } => now_unix(),
            Source::Manual(m) => (m.unix_ms + m.ms.load(Ordering::Acquire)) / 1000,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// A clock that moves only when told to, for tests: every [`Clock`] made
/// by [`ManualClock::clock`] reads it.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

impl ManualClock {
    /// A manual clock at 0 ms, whose Unix time is `unix` seconds.
    pub fn new(unix: u64) -> Self {
        ManualClock(Arc::new(Manual {
            ms: AtomicU64::new(0),
            unix_ms: unix.saturating_mul(1000),
        }))
    }

    /// A clock reading this one.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.ms.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
    }
}

/// Unix seconds now, from the system's wall clock (the `gateway-service`
/// crate's, which signs and verifies with it).
pub use gateway_service::clock::now_unix;
