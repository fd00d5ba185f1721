//! The v2 replay cache: which nonces each service used recently.
//!
//! A nonce is remembered for twice the signature window, plus a second,
//! after it is first seen: a replay must carry the same (signed) timestamp,
//! which may be up to one window ahead of the clock when first accepted and
//! stays acceptable until one window after it, inclusive. Entries are
//! 128-bit keyed hashes of (service, nonce), so memory per entry is fixed;
//! the total is capped, and when the cap is reached after expiring old
//! entries the cache refuses new nonces (fail closed) rather than forget
//! ones that could still be replayed. The map is sharded so that no lock is
//! shared by the whole process.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 32;

/// What the cache said about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: remembered now.
    Fresh,
    /// Already seen inside the window: a replay.
    Replay,
    /// The cache is full of live nonces; the request cannot be checked.
    Full,
}

#[derive(Default)]
struct Shard {
    expiry: HashMap<u128, u64>,
    order: VecDeque<(u64, u128)>,
}

/// A bounded, sharded set of recently seen nonces.
pub struct NonceCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    remember_s: u64,
    keys: (RandomState, RandomState),
}

impl std::fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl NonceCache {
    /// A cache of at most `capacity` nonces, each kept `remember_s` seconds.
    pub fn new(capacity: usize, remember_s: u64) -> Self {
        NonceCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            remember_s,
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    fn key(&self, service: &[u8], nonce: &[u8]) -> u128 {
        let hash = |s: &RandomState| {
            let mut h = s.build_hasher();
            h.write(service);
            h.write_u8(0xff);
            h.write(nonce);
            h.finish()
        };
        (u128::from(hash(&self.keys.0)) << 64) | u128::from(hash(&self.keys.1))
    }

    /// Records `nonce` for `service` at time `now` (Unix seconds).
    pub fn check(&self, service: &[u8], nonce: &[u8], now: u64) -> Seen {
        let key = self.key(service, nonce);
        let shard = &self.shards[(key as usize) % SHARDS];
        let Ok(mut s) = shard.lock() else {
            return Seen::Full;
        };
        while let Some(&(exp, k)) = s.order.front() {
            if live(exp, now) {
                break;
            }
            s.order.pop_front();
            if s.expiry.get(&k) == Some(&exp) {
                s.expiry.remove(&k);
            }
        }
        if s.expiry.get(&key).is_some_and(|&exp| live(exp, now)) {
            return Seen::Replay;
        }
        if s.expiry.len() >= self.per_shard {
            return Seen::Full;
        }
        let exp = now.saturating_add(self.remember_s);
        s.expiry.insert(key, exp);
        s.order.push_back((exp, key));
        Seen::Fresh
    }

    /// How many nonces are remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.expiry.len()).unwrap_or(0))
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether an entry expiring at `exp` is still remembered at `now`. An
/// expiry that saturated at the end of time never passes (a caller may pass
/// any clock to `ServiceVerifier::verify_at`).
fn live(exp: u64, now: u64) -> bool {
    exp > now || exp == u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_seen_until_they_expire() {
        let c = NonceCache::new(1000, 120);
        assert_eq!(
            c.check(b"billing", b"nonce-aaaaaaaaaaaa", 1000),
            Seen::Fresh
        );
        assert_eq!(
            c.check(b"billing", b"nonce-aaaaaaaaaaaa", 1050),
            Seen::Replay
        );
        assert_eq!(
            c.check(b"reports", b"nonce-aaaaaaaaaaaa", 1050),
            Seen::Fresh,
            "per service"
        );
        assert_eq!(
            c.check(b"billing", b"nonce-aaaaaaaaaaaa", 1120),
            Seen::Fresh,
            "expired"
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_nonces() {
        let c = NonceCache::new(1000, 120);
        let mut full = 0;
        for i in 0..50_000u32 {
            if c.check(b"billing", &i.to_le_bytes(), 1000) == Seen::Full {
                full += 1;
            }
        }
        assert!(c.len() <= 1000 + SHARDS, "{}", c.len());
        assert!(full > 48_000, "refuses rather than forgets: {full}");
        // Once the window has passed, the old entries make room again.
        assert_eq!(
            c.check(b"billing", b"later-nonce-123456", 1200),
            Seen::Fresh
        );
        assert!(c.len() <= 1000 + SHARDS);
    }
}
