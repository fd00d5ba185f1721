//! Circuit breaking per upstream service (contract §7): after too many
//! consecutive failures (5xx, timeouts, connect errors; never 4xx), or
//! when configured, too high a failure rate over a sliding window, the
//! circuit opens and requests are answered `503` without connecting; after
//! `open_for` it half-opens and admits a few probes; a successful probe
//! closes it, a failed one opens it again. State changes are logged.
//!
//! Lock-free: a few atomics per service, so no request waits on another.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::time::Clock;

pub use crate::spec::policies::{BreakerSpec, FailureRate};

/// Slices of the sliding window: the window slides a tenth at a time.
const SLICES: usize = 10;

/// One slice of the window: which slice of time it holds, and its
/// requests (high 32 bits) and failures (low 32 bits).
#[derive(Debug, Default)]
struct Slice {
    index: AtomicU64,
    counts: AtomicU64,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The breaker's verdict on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead as a probe of a half-open circuit; report the outcome.
    Probe,
    /// The circuit is open: answer 503 without contacting the upstream.
    Rejected,
}

/// One upstream's circuit.
#[derive(Debug)]
pub struct CircuitBreaker {
    service: &'static str,
    spec: BreakerSpec,
    state: AtomicU8,
    consecutive: AtomicU32,
    opened_at_ms: AtomicU64,
    probes: AtomicU32,
    clock: Clock,
    window: [Slice; SLICES],
}

impl CircuitBreaker {
    /// A closed circuit for `service`, timed by the system clock.
    pub fn new(service: &'static str, spec: BreakerSpec) -> Self {
        Self::with_clock(service, spec, Clock::system())
    }

    /// A closed circuit for `service`, timed by `clock` (the gateway's
    /// one clock, or a manual one in tests).
    pub fn with_clock(service: &'static str, spec: BreakerSpec, clock: Clock) -> Self {
        CircuitBreaker {
            service,
            spec,
            state: AtomicU8::new(CLOSED),
            consecutive: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            probes: AtomicU32::new(0),
            clock,
            window: Default::default(),
        }
    }

    /// Counts one outcome in the window and tells whether the failure
    /// rate now opens the circuit. Lock-free: a slice that has fallen out
    /// of the window is claimed by one CAS and reset; a count racing that
    /// reset may be lost, which only makes the rate slightly approximate.
    fn rate_trips(&self, failed: bool) -> bool {
        let Some(rate) = self.spec.rate else {
            return false;
        };
        let slice_ms = (rate.window.as_millis() as u64 / SLICES as u64).max(1);
        // +1 so that slice index 0 never looks current in a fresh slot.
        let now = self.now_ms() / slice_ms + 1;
        let slot = &self.window[(now % SLICES as u64) as usize];
        let seen = slot.index.load(Ordering::Acquire);
        if seen != now
            && slot
                .index
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.counts.store(0, Ordering::Release);
        }
        slot.counts
            .fetch_add((1 << 32) | u64::from(failed), Ordering::AcqRel);
        if !failed {
            return false;
        }
        let (mut requests, mut failures) = (0u64, 0u64);
        for s in &self.window {
            let i = s.index.load(Ordering::Acquire);
            if i + (SLICES as u64) > now && i <= now {
                let c = s.counts.load(Ordering::Acquire);
                requests += c >> 32;
                failures += c & 0xffff_ffff;
            }
        }
        requests >= u64::from(rate.min_requests)
            && failures * 100 >= u64::from(rate.percent) * requests
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether a request may go to the upstream now.
    pub fn admit(&self) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Allowed,
            OPEN => {
                let open_ms = self.spec.open_for.as_millis() as u64;
                if self
                    .now_ms()
                    .saturating_sub(self.opened_at_ms.load(Ordering::Acquire))
                    < open_ms
                {
                    return Admission::Rejected;
                }
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.probes.store(0, Ordering::Release);
                    tracing::info!(target: "breaker", service = self.service, state = "half_open", "circuit half-open: probing");
                }
                self.take_probe()
            }
            _ => self.take_probe(),
        }
    }

    fn take_probe(&self) -> Admission {
        let taken = self
            .probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.spec.probes).then_some(n + 1)
            });
        if taken.is_ok() {
            Admission::Probe
        } else {
            Admission::Rejected
        }
    }

    /// Records how an admitted request went.
    pub fn record(&self, admission: Admission, success: bool) {
        let rate_trips = admission == Admission::Allowed && self.rate_trips(!success);
        if success {
            self.consecutive.store(0, Ordering::Release);
            if admission == Admission::Probe
                && self
                    .state
                    .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                tracing::info!(target: "breaker", service = self.service, state = "closed", "circuit closed: upstream recovered");
            }
            return;
        }
        if admission == Admission::Probe {
            self.open("a probe failed");
            return;
        }
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if self.state.load(Ordering::Acquire) == CLOSED {
            if n >= self.spec.failures {
                self.open("consecutive failures");
            } else if rate_trips {
                self.open("failure rate");
            }
        }
    }

    fn open(&self, why: &'static str) {
        self.opened_at_ms.store(self.now_ms(), Ordering::Release);
        let previous = self.state.swap(OPEN, Ordering::AcqRel);
        self.consecutive.store(0, Ordering::Release);
        // A reopened circuit starts judging its rate afresh.
        for s in &self.window {
            s.counts.store(0, Ordering::Release);
        }
        if previous != OPEN {
            tracing::warn!(target: "breaker", service = self.service, state = "open", reason = why, "circuit opened");
        }
    }

    /// Gives back an admission whose outcome says nothing about the
    /// upstream (the client went away, or sent a broken body).
    pub fn release(&self, admission: Admission) {
        if admission == Admission::Probe {
            let _ = self
                .probes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// `closed`, `open` or `half_open`.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            CLOSED => "closed",
            OPEN => "open",
            _ => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;
    use std::time::Duration;

    /// A breaker that three failures in a row open for `open_ms`, on a
    /// manual clock.
    fn breaker(open_ms: u64) -> (CircuitBreaker, ManualClock) {
        let time = ManualClock::new(0);
        let b = CircuitBreaker::with_clock(
            "svc",
            BreakerSpec {
                failures: 3,
                open_for: Duration::from_millis(open_ms),
                probes: 1,
                rate: None,
            },
            time.clock(),
        );
        (b, time)
    }

    /// A breaker that only a failure rate can open.
    fn rate_breaker(
        percent: u32,
        window: Duration,
        min_requests: u32,
    ) -> (CircuitBreaker, ManualClock) {
        let time = ManualClock::new(0);
        let b = CircuitBreaker::with_clock(
            "svc",
            BreakerSpec {
                failures: 1000,
                open_for: Duration::from_secs(60),
                probes: 1,
                rate: Some(FailureRate {
                    percent,
                    window,
                    min_requests,
                }),
            },
            time.clock(),
        );
        (b, time)
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it_without_a_streak() {
        let (b, _) = rate_breaker(50, Duration::from_secs(60), 10);
        // Alternating: never two failures in a row, half of them failures.
        for i in 0..9 {
            b.record(b.admit(), i % 2 == 0);
        }
        assert_eq!(b.state(), "closed", "9 requests are under min_requests");
        b.record(b.admit(), false);
        assert_eq!(b.state(), "open", "5 failures of 10 requests is 50%");
        assert_eq!(b.admit(), Admission::Rejected);

        // Below the rate it stays closed however long it runs.
        let (b, _) = rate_breaker(50, Duration::from_secs(60), 10);
        for i in 0..1000 {
            b.record(b.admit(), i % 3 != 0);
        }
        assert_eq!(b.state(), "closed", "a third failing is under 50%");
    }

    #[test]
    fn failures_age_out_of_the_window() {
        let (b, time) = rate_breaker(50, Duration::from_millis(200), 4);
        for _ in 0..3 {
            b.record(b.admit(), false);
        }
        time.advance(Duration::from_millis(199));
        b.record(b.admit(), true);
        b.record(b.admit(), false);
        assert_eq!(b.state(), "open", "still in the window: 4 of 5 failed");

        let (b, time) = rate_breaker(50, Duration::from_millis(200), 4);
        for _ in 0..3 {
            b.record(b.admit(), false);
        }
        time.advance(Duration::from_millis(260));
        for _ in 0..3 {
            b.record(b.admit(), true);
        }
        b.record(b.admit(), false);
        assert_eq!(
            b.state(),
            "closed",
            "the early failures left the window: 1 of 4"
        );
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let (b, _) = breaker(60_000);
        for _ in 0..2 {
            b.record(b.admit(), false);
        }
        b.record(b.admit(), true);
        for _ in 0..2 {
            b.record(b.admit(), false);
        }
        assert_eq!(
            b.admit(),
            Admission::Allowed,
            "2 + 2 failures are not 3 in a row"
        );
        b.record(Admission::Allowed, false);
        assert_eq!(b.state(), "open");
        assert_eq!(b.admit(), Admission::Rejected);
    }

    #[test]
    fn half_open_admits_limited_probes_then_closes_or_reopens() {
        let (b, time) = breaker(30);
        for _ in 0..3 {
            b.record(Admission::Allowed, false);
        }
        assert_eq!(b.admit(), Admission::Rejected);
        time.advance(Duration::from_millis(29));
        assert_eq!(b.admit(), Admission::Rejected, "open for 30 ms");
        time.advance(Duration::from_millis(1));
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.admit(), Admission::Rejected, "one probe at a time");
        b.record(Admission::Probe, false);
        assert_eq!(b.state(), "open", "a failed probe reopens");
        assert_eq!(b.admit(), Admission::Rejected);
        time.advance(Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Probe);
        b.record(Admission::Probe, true);
        assert_eq!(b.state(), "closed");
        assert_eq!(b.admit(), Admission::Allowed);
    }
}
