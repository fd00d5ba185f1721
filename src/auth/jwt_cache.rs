//! A bounded cache of verified JWTs, so that a client presenting the same
//! token on every request pays for one signature check and claim parse, not
//! one per request (issue 6: the JWT step was the largest share of the full
//! chain's allocations and CPU).
//!
//! Safety rules, each tested below:
//! - only tokens that passed full verification are cached, never failures;
//! - a hit needs the *whole* token to match, compared in constant time (the
//!   hash only picks the slot, and it is keyed per process, so nobody can
//!   aim a token at another's slot);
//! - an entry is dead once the token's `exp` (plus leeway) has passed: the
//!   next request takes the full path, which reports `expired`;
//! - reloading the revocation list empties the cache, and an entry verified
//!   against the old list is not inserted after the reload (a generation
//!   counter), so a revoked token never outlives the reload that revoked it.
//!
//! The cache is split into shards, each behind its own short-held mutex,
//! so no lock is contended by the whole process; memory is bounded by
//! [`CAPACITY`] entries.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use subtle::ConstantTimeEq;

use crate::chain::User;

/// At most this many tokens are cached per verifier (about 1-4 MiB at
/// typical token sizes).
pub const CAPACITY: usize = 4096;
const SHARDS: usize = 16;
const PER_SHARD: usize = CAPACITY / SHARDS;

/// What a verified token established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The user, shared by every request presenting the token.
    pub user: Arc<User>,
    /// The tenant claim, when configured and present.
    pub tenant: Option<String>,
}

struct Entry {
    token: Box<[u8]>,
    verified: Verified,
    /// Unix seconds after which the token is expired (`exp` + leeway).
    dead_after: u64,
}

/// The cache; one per JWT verifier.
pub struct TokenCache {
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    generation: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            hasher: std::collections::hash_map::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            generation: AtomicU64::new(0),
        }
    }
}

impl TokenCache {
    fn slot(&self, token: &[u8]) -> (u64, MutexGuard<'_, HashMap<u64, Entry>>) {
        let h = self.hasher.hash_one(token);
        // A poisoned shard only means a panic elsewhere mid-insert; the map
        // itself is still consistent, so keep serving from it.
        let shard = self.shards[(h as usize) % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (h, shard)
    }

    /// The verified identity of `token`, if it is cached and not expired
    /// at `now` (Unix seconds).
    pub fn get(&self, token: &str, now: u64) -> Option<Verified> {
        let (h, mut shard) = self.slot(token.as_bytes());
        let entry = shard.get(&h)?;
        if !bool::from(entry.token.as_ref().ct_eq(token.as_bytes())) {
            return None;
        }
        if now > entry.dead_after {
            shard.remove(&h);
            return None;
        }
        Some(entry.verified.clone())
    }

    /// The current generation: read it before verifying a token and pass
    /// it to [`TokenCache::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a token that passed full verification at `generation`,
    /// unless the cache was cleared since.
    pub fn insert(&self, token: &str, verified: Verified, dead_after: u64, generation: u64) {
        let (h, mut shard) = self.slot(token.as_bytes());
        // Checked under the shard lock: `clear` bumps the generation before
        // it empties the shards, so either this insert sees the new
        // generation or `clear` removes the entry afterwards.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if shard.len() >= PER_SHARD && !shard.contains_key(&h) {
            let now = crate::time::now_unix();
            shard.retain(|_, e| e.dead_after >= now);
            if shard.len() >= PER_SHARD {
                // Full of live tokens: drop an arbitrary one (HashMap order
                // is randomised per process).
                if let Some(k) = shard.keys().next().copied() {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(
            h,
            Entry {
                token: token.as_bytes().into(),
                verified,
                dead_after,
            },
        );
    }

    /// Forgets every token (the revocation list changed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for s in self.shards.iter() {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(id: &str) -> Verified {
        Verified {
            user: Arc::new(User::new(id.into(), vec!["admin".into()])),
            tenant: Some("acme".into()),
        }
    }

    #[test]
    fn a_hit_needs_the_whole_token_and_a_live_exp() {
        let c = TokenCache::default();
        c.insert("aaa.bbb.ccc", verified("u1"), 1_000, c.generation());
        assert_eq!(c.get("aaa.bbb.ccc", 1_000).unwrap().user.id, "u1");
        // Same prefix, different signature: not a hit.
        assert!(c.get("aaa.bbb.ccd", 1_000).is_none());
        assert!(c.get("aaa.bbb.cc", 1_000).is_none());
        // Past exp + leeway: gone, and stays gone.
        assert!(c.get("aaa.bbb.ccc", 1_001).is_none());
        assert!(c.get("aaa.bbb.ccc", 999).is_none());
    }

    #[test]
    fn clear_wins_over_an_insert_verified_before_it() {
        let c = TokenCache::default();
        c.insert("t1", verified("u1"), u64::MAX, c.generation());
        let before = c.generation();
        c.clear();
        assert!(c.get("t1", 0).is_none());
        c.insert("t2", verified("u2"), u64::MAX, before);
        assert!(c.get("t2", 0).is_none(), "stale generation was cached");
        c.insert("t2", verified("u2"), u64::MAX, c.generation());
        assert!(c.get("t2", 0).is_some());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_tokens() {
        let c = TokenCache::default();
        for i in 0..(CAPACITY * 3) {
            c.insert(
                &format!("token-{i}"),
                verified("u"),
                u64::MAX,
                c.generation(),
            );
        }
        assert!(c.len() <= CAPACITY, "{} entries", c.len());
        assert!(c.len() >= CAPACITY / 2, "{} entries", c.len());
        // The newest token is always there.
        assert!(c.get(&format!("token-{}", CAPACITY * 3 - 1), 0).is_some());
    }
}
