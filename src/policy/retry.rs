//! Retries (contract §7): only idempotent methods unless the route opts in;
//! only connect errors and configured statuses (per-try timeouts only when
//! configured); exponential backoff with full jitter; and a budget, so that
//! retries never add more than a set share of load (with a small floor per
//! second, so a quiet route can still retry). Each attempt is signed anew.
//! A retry happens only before anything was sent to the client, and only
//! when the request body can be sent again (none, or read in full).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::time::Clock;

pub use crate::spec::policies::RetrySpec;

impl RetrySpec {
    /// Whether requests with this method may be retried.
    pub fn method_ok(&self, m: &http::Method) -> bool {
        self.non_idempotent || !matches!(*m, http::Method::POST | http::Method::PATCH)
    }

    /// The backoff before retry number `n` (1-based): a random time up to
    /// `backoff * 2^(n-1)`, capped at `max_backoff` (full jitter).
    pub fn backoff_before(&self, n: u32) -> Duration {
        let cap = self
            .backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let random = uuid::Uuid::new_v4().as_u64_pair().0;
        let nanos = cap.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { random % (nanos + 1) })
    }
}

const MILLI: i64 = 1000;

/// A route's retry budget: each request deposits `budget_percent / 100` of
/// a token, time deposits `min_per_second` tokens a second, and each retry
/// takes one. Lock-free; the balance is capped so that a long quiet spell
/// cannot save up a storm.
#[derive(Debug)]
pub struct RetryBudget {
    milli_tokens: AtomicI64,
    last_refill_ms: AtomicU64,
    clock: Clock,
}

impl Default for RetryBudget {
    /// A budget timed by the system clock.
    fn default() -> Self {
        RetryBudget::with_clock(Clock::system())
    }
}

impl RetryBudget {
    /// An empty budget timed by `clock` (the gateway's one clock, or a
    /// manual one in tests).
    pub fn with_clock(clock: Clock) -> Self {
        RetryBudget {
            milli_tokens: AtomicI64::new(0),
            // Starting a second in (see `withdraw`): a fresh route has one
            // second of floor to spend.
            last_refill_ms: AtomicU64::new(clock.now_ms()),
            clock,
        }
    }

    fn cap(spec: &RetrySpec) -> i64 {
        i64::from(spec.min_per_second.max(10)) * MILLI
    }

    /// Counts one request.
    pub fn deposit(&self, spec: &RetrySpec) {
        let add = i64::from(spec.budget_percent) * MILLI / 100;
        let cap = Self::cap(spec);
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t + add).min(cap))
            });
    }

    /// Takes a token for one retry, if the budget allows it.
    pub fn withdraw(&self, spec: &RetrySpec) -> bool {
        // Starting a second in, a fresh route has one second of floor to
        // spend: a quiet route can retry at once.
        let now = self.clock.now_ms() + 1000;
        let last = self.last_refill_ms.swap(now, Ordering::AcqRel);
        let floor = (now.saturating_sub(last) as i64) * i64::from(spec.min_per_second);
        let cap = Self::cap(spec);
        if floor > 0 {
            let _ = self
                .milli_tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some((t + floor).min(cap))
                });
        }
        self.milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t >= MILLI).then_some(t - MILLI)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RetrySpec {
        RetrySpec {
            attempts: 3,
            on: &[503],
            per_try_timeout: None,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            budget_percent: 20,
            min_per_second: 0,
            non_idempotent: false,
        }
    }

    #[test]
    fn the_budget_allows_a_share_of_requests() {
        let (s, b) = (spec(), RetryBudget::default());
        for _ in 0..100 {
            b.deposit(&s);
        }
        let allowed = (0..100).filter(|_| b.withdraw(&s)).count();
        assert_eq!(
            allowed, 10,
            "capped at 10 tokens, never more than 20 per 100 requests"
        );
        let (s, b) = (spec(), RetryBudget::default());
        for _ in 0..10 {
            b.deposit(&s);
        }
        assert_eq!(
            (0..10).filter(|_| b.withdraw(&s)).count(),
            2,
            "20% of 10 requests"
        );
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let s = spec();
        for n in 1..8 {
            let d = s.backoff_before(n);
            assert!(
                d <= Duration::from_millis(10 << (n - 1)).min(Duration::from_millis(100)),
                "{n}: {d:?}"
            );
        }
        assert!(s.method_ok(&http::Method::GET) && !s.method_ok(&http::Method::POST));
    }

    #[test]
    fn a_quiet_route_can_retry_at_once_up_to_the_floor() {
        let s = RetrySpec {
            min_per_second: 3,
            budget_percent: 1,
            ..spec()
        };
        let time = crate::time::ManualClock::new(0);
        let b = RetryBudget::with_clock(time.clock());
        b.deposit(&s);
        assert_eq!((0..10).filter(|_| b.withdraw(&s)).count(), 3);
    }

    #[test]
    fn the_floor_refills_with_time_not_with_requests() {
        let s = RetrySpec {
            min_per_second: 3,
            budget_percent: 0,
            ..spec()
        };
        let time = crate::time::ManualClock::new(0);
        let b = RetryBudget::with_clock(time.clock());
        assert_eq!((0..10).filter(|_| b.withdraw(&s)).count(), 3);
        time.advance(Duration::from_millis(999));
        assert_eq!(
            (0..10).filter(|_| b.withdraw(&s)).count(),
            2,
            "2.997 tokens in 999 ms"
        );
        time.advance(Duration::from_secs(60));
        assert_eq!(
            (0..100).filter(|_| b.withdraw(&s)).count(),
            10,
            "a quiet minute saves up at most the cap"
        );
    }
}
