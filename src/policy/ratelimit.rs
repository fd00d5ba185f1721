//! Rate limiting (contract §7): a token bucket per route and key, checked
//! before the upstream is contacted. A 429 carries `Retry-After` (whole
//! seconds); every response of a limited route carries
//! `RateLimit-Policy: "<name>";q=<quota>;w=<window>` and
//! `RateLimit: "<name>";r=<remaining>;t=<seconds until a token>`.
//!
//! For a token bucket the quota `q` is what a fresh key can spend at once,
//! the bucket's capacity (the burst), and `w` the whole seconds a drained
//! bucket takes to refill (burst / rate, rounded up); so `0 <= r <= q` on
//! every response (contract rev 2 §7). Quoting the sustained rate's count
//! and window instead would let `r` exceed `q` whenever the burst is larger
//! than the count.
//!
//! Buckets live in governor's sharded map (no process-wide lock). Keys that
//! have refilled are indistinguishable from new ones, so the map is pruned
//! of them every [`PRUNE_EVERY`] checks, and at once when it holds more
//! than [`MAX_KEYS`]: memory stays bounded however many keys appear.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderValue;

mod refused;

use crate::chain::{Flow, RequestCtx, RequestParts, Step};
use crate::error::{ErrorKind, GatewayError};

/// Checks between prunings of refilled buckets.
pub const PRUNE_EVERY: u64 = 1024;
/// Buckets above which a pruning runs at once.
pub const MAX_KEYS: usize = 50_000;

/// What a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKeyKind {
    /// JWT subject, else verified service, else client address.
    Consumer,
    /// Client address.
    Ip,
    /// Verified service, else client address.
    Service,
    /// The whole route.
    Route,
}

/// One route's rate limit, as compiled from the spec.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitSpec {
    /// The policy name in headers.
    pub name: &'static str,
    /// Requests per window.
    pub count: u32,
    /// The window.
    pub window: Duration,
    /// Bucket size.
    pub burst: u32,
    /// What a bucket belongs to.
    pub key: RateKeyKind,
}

/// Whole seconds a drained bucket of `spec` takes to refill: burst /
/// rate = burst x window / count, rounded up (exact, in nanoseconds).
fn refill_seconds(spec: &RateLimitSpec) -> u128 {
    let burst = u128::from(spec.burst.max(1));
    let count = u128::from(spec.count.max(1));
    (burst * spec.window.as_nanos()).div_ceil(count * 1_000_000_000)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Route,
    Ip(IpAddr),
    Name(Box<str>),
}

pub use crate::chain::RateState;

type Limiter<C> = RateLimiter<Key, DashMapStateStore<Key>, C, StateInformationMiddleware>;

/// Chain step: one bucket per key for this route. The clock is the wall
/// clock except in tests, which drive a fake one.
pub struct RateLimit<C: Clock = DefaultClock> {
    spec: RateLimitSpec,
    limiter: Limiter<C>,
    clock: C,
    policy: HeaderValue,
    checks: AtomicU64,
    /// Callers refused after their body was read, refused on the head
    /// next time.
    refused: refused::Refused,
}

impl<C: Clock> std::fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// A limiter for `spec` on the wall clock.
    pub fn new(spec: RateLimitSpec) -> Self {
        RateLimit::with_clock(spec, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimit<C> {
    /// A limiter for `spec` on `clock`.
    pub fn with_clock(spec: RateLimitSpec, clock: C) -> Self {
        let burst = NonZeroU32::new(spec.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let per_token = spec.window / spec.count.max(1);
        let quota = Quota::with_period(per_token.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        // Built once per route; every response shares it.
        let policy = format!("\"{}\";q={};w={}", spec.name, burst, refill_seconds(&spec));
        RateLimit {
            spec,
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            clock,
            policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("\"limit\"")),
            checks: AtomicU64::new(0),
            refused: refused::Refused::new(),
        }
    }

    fn key(&self, ctx: &RequestCtx) -> Key {
        let named = |s: &str| Key::Name(s.into());
        match self.spec.key {
            RateKeyKind::Route => Key::Route,
            RateKeyKind::Ip => Key::Ip(ctx.client_ip),
            RateKeyKind::Service => ctx.caller.as_deref().map_or(Key::Ip(ctx.client_ip), named),
            RateKeyKind::Consumer => ctx
                .user
                .as_ref()
                .map(|u| named(&u.id))
                .or_else(|| ctx.caller.as_deref().map(named))
                .unwrap_or(Key::Ip(ctx.client_ip)),
        }
    }

    /// How many buckets are held (for tests and metrics).
    pub fn buckets(&self) -> usize {
        self.limiter.len()
    }

    fn prune(&self) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % PRUNE_EVERY == 0 || self.limiter.len() > MAX_KEYS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }

    fn state(&self, remaining: u32, until_token: Duration, retry_after: Option<u64>) -> RateState {
        let t = if remaining > 0 {
            0
        } else {
            until_token.as_secs_f64().ceil() as u64
        };
        let limit = format!("\"{}\";r={remaining};t={t}", self.spec.name);
        RateState {
            policy: self.policy.clone(),
            limit: HeaderValue::from_str(&limit).unwrap_or(HeaderValue::from_static("\"limit\"")),
            retry_after,
        }
    }

    /// Checks one request for `key`.
    #[cfg(test)]
    fn check(&self, key: &Key) -> Result<RateState, RateState> {
        self.check_waiting(key).map_err(|(state, _)| state)
    }

    /// Checks one request for `key`; a refusal comes with the wait for
    /// the next token.
    fn check_waiting(&self, key: &Key) -> Result<RateState, (RateState, Duration)> {
        self.prune();
        let per_token = self.spec.window / self.spec.count.max(1);
        match self.limiter.check_key(key) {
            Ok(snapshot) => Ok(self.state(snapshot.remaining_burst_capacity(), per_token, None)),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err((self.refusal(wait), wait))
            }
        }
    }

    fn refusal(&self, wait: Duration) -> RateState {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        self.state(0, wait, Some(secs))
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> Step for RateLimit<C>
where
    C::Instant: Send + Sync,
{
    fn before_body(&self, ctx: &mut RequestCtx, _: &RequestParts) -> Flow {
        // A limit keyed on the calling service waits for its signature to
        // be verified (after the body), or every caller behind one address
        // would share a bucket.
        let needs_caller = matches!(self.spec.key, RateKeyKind::Service)
            || (self.spec.key == RateKeyKind::Consumer && ctx.user.is_none());
        if needs_caller && ctx.caller_pending && ctx.caller.is_none() {
            // A caller refused a moment ago is refused on its head, so its
            // body is not read again only to be refused (issue 13 §1).
            let claimed = ctx.signing.service.as_ref().and_then(|v| v.to_str().ok());
            if let Some(wait) = claimed.and_then(|name| self.refused.remaining(name)) {
                ctx.rate_limit = Some(self.refusal(wait));
                return Flow::Respond(GatewayError::client(ErrorKind::TooManyRequests));
            }
            return Flow::Continue;
        }
        self.apply(ctx)
    }

    fn on_request(&self, ctx: &mut RequestCtx, _: &mut RequestParts) -> Flow {
        if ctx.rate_limit.is_some() {
            return Flow::Continue;
        }
        self.apply(ctx)
    }
}

impl<C: Clock + Clone> RateLimit<C> {
    fn apply(&self, ctx: &mut RequestCtx) -> Flow {
        let key = self.key(ctx);
        match self.check_waiting(&key) {
            Ok(state) => {
                ctx.rate_limit = Some(state);
                Flow::Continue
            }
            Err((state, wait)) => {
                if let (Key::Name(name), None) = (&key, &ctx.user) {
                    // Keyed on the verified calling service.
                    self.refused.remember(name, wait);
                }
                ctx.rate_limit = Some(state);
                Flow::Respond(GatewayError::client(ErrorKind::TooManyRequests))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(count: u32, window_s: u64, burst: u32) -> RateLimit {
        RateLimit::new(RateLimitSpec {
            name: "test",
            count,
            window: Duration::from_secs(window_s),
            burst,
            key: RateKeyKind::Ip,
        })
    }

    #[test]
    fn burst_then_429_with_retry_after_and_headers() {
        let l = limit(100, 60, 10);
        let key = Key::Ip("10.0.0.1".parse().unwrap());
        for i in 0..10u32 {
            let s = l.check(&key).unwrap();
            // q is the burst; a drained bucket of 10 refills in 6 s.
            assert_eq!(s.policy, "\"test\";q=10;w=6");
            assert_eq!(
                s.limit,
                format!("\"test\";r={};t={}", 9 - i, if i == 9 { 1 } else { 0 }).as_str()
            );
        }
        let s = l.check(&key).unwrap_err();
        assert_eq!(s.retry_after, Some(1), "a token every 0.6 s");
        assert_eq!(s.limit, "\"test\";r=0;t=1");
        // Another key has its own bucket.
        assert!(l.check(&Key::Ip("10.0.0.2".parse().unwrap())).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// However requests arrive, a key is never admitted more than
        /// `burst + rate x elapsed` times; a fresh key gets its burst.
        #[test]
        fn never_admits_more_than_rate_times_time_plus_burst(
            count in 1u32..200,
            window_s in proptest::sample::select(vec![1u64, 60, 3600]),
            burst in 1u32..30,
            gaps_ms in proptest::collection::vec(0u64..3000, 1..400),
        ) {
            let clock = governor::clock::FakeRelativeClock::default();
            let l = RateLimit::with_clock(
                RateLimitSpec { name: "p", count, window: Duration::from_secs(window_s), burst, key: RateKeyKind::Route },
                clock.clone(),
            );
            let (mut elapsed_ms, mut admitted) = (0u64, 0u64);
            for (i, gap) in gaps_ms.iter().enumerate() {
                if i > 0 {
                    clock.advance(Duration::from_millis(*gap));
                    elapsed_ms += gap;
                }
                if l.check(&Key::Route).is_ok() {
                    admitted += 1;
                }
                let bound = u64::from(burst) + elapsed_ms * u64::from(count) / (window_s * 1000);
                proptest::prop_assert!(admitted <= bound, "{admitted} admitted, bound {bound} after {elapsed_ms} ms");
                if elapsed_ms == 0 {
                    proptest::prop_assert_eq!(admitted, (i as u64 + 1).min(u64::from(burst)));
                }
            }
        }
    }

    #[test]
    fn a_burst_of_five_at_one_a_minute_quotes_its_burst() {
        // Regression (issue 14, point 15): this answered `q=1;w=60`.
        let l = limit(1, 60, 5);
        for r in (0..5).rev() {
            let s = l.check(&Key::Route).unwrap();
            assert_eq!(s.policy, "\"test\";q=5;w=300");
            assert_eq!(param(&s.limit, "r"), r);
        }
        let s = l.check(&Key::Route).unwrap_err();
        assert_eq!(s.policy, "\"test\";q=5;w=300");
        assert_eq!(s.limit, "\"test\";r=0;t=60");
    }

    /// The numeric parameters of a structured header value:
    /// `"name";a=1;b=2` -> `[("a", 1), ("b", 2)]`.
    fn params(v: &HeaderValue) -> Vec<(String, u64)> {
        v.to_str()
            .unwrap()
            .split(';')
            .skip(1)
            .map(|p| {
                let (k, n) = p.split_once('=').unwrap();
                (k.to_owned(), n.parse().unwrap())
            })
            .collect()
    }

    fn param(v: &HeaderValue, name: &str) -> u64 {
        params(v).into_iter().find(|(k, _)| k == name).unwrap().1
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Regression (issue 14, point 15): burst 5 at 1/min answered
        /// `q=1;w=60` while `RateLimit` counted r=4..0. For any rate and
        /// burst, every response, admitted or 429, has `0 <= r <= q`, `q`
        /// is the burst, and `w` is the refill time of a drained bucket: all
        /// `q` tokens are back after `w` seconds and not after `w - 1`.
        #[test]
        fn remaining_never_exceeds_the_quota_and_w_is_the_refill_time(
            count in 1u32..200,
            window_s in proptest::sample::select(vec![1u64, 60, 3600, 86_400]),
            burst in 1u32..40,
            gaps_ms in proptest::collection::vec(0u64..5000, 1..200),
        ) {
            let spec = RateLimitSpec { name: "p", count, window: Duration::from_secs(window_s), burst, key: RateKeyKind::Route };
            let clock = governor::clock::FakeRelativeClock::default();
            let l = RateLimit::with_clock(spec, clock.clone());
            for gap in &gaps_ms {
                clock.advance(Duration::from_millis(*gap));
                let state = l.check(&Key::Route).unwrap_or_else(|denied| denied);
                let (q, r) = (param(&state.policy, "q"), param(&state.limit, "r"));
                proptest::prop_assert_eq!(q, u64::from(burst));
                proptest::prop_assert!(r <= q, "r={} > q={}", r, q);
            }
            let w = param(&l.check(&Key::Route).unwrap_or_else(|d| d).policy, "w");
            // w seconds after a drain, the whole quota is back; a second
            // earlier it is not.
            let refilled_after = |secs: u64| {
                let clock = governor::clock::FakeRelativeClock::default();
                let l = RateLimit::with_clock(spec, clock.clone());
                for _ in 0..burst {
                    let _ = l.check(&Key::Route);
                }
                clock.advance(Duration::from_secs(secs));
                (0..burst).all(|_| l.check(&Key::Route).is_ok())
            };
            proptest::prop_assert!(w >= 1);
            proptest::prop_assert!(refilled_after(w), "not refilled after w={}", w);
            proptest::prop_assert!(!refilled_after(w - 1), "already refilled after w-1={}", w - 1);
        }
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_keys() {
        let l = limit(1000, 1, 1000);
        for i in 0..200_000u32 {
            let _ = l.check(&Key::Name(i.to_string().into()));
            assert!(l.buckets() <= MAX_KEYS + 1, "{} buckets", l.buckets());
        }
    }
}
