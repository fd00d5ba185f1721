//! Server-side TLS sessions with a bounded lifetime.
//!
//! rustls resumes TLS 1.2 sessions by id and, with no ticket encryption
//! key configured (the gateway configures none), TLS 1.3 sessions by
//! tickets that are ids into this same store: nothing is ever encrypted
//! into a ticket for the client to keep. rustls itself bounds neither by
//! age. [`Sessions`] stamps each session when stored and forgets it after
//! [`SESSION_LIFETIME`]; every configuration (start-up and each reload)
//! gets a new, empty store, so a reload ends all resumption. A resumed
//! connection's client certificate is still checked against the clock on
//! every connection ([`super::Terminator::identify`]): this bound limits
//! how long a session lives, that check how long an identity does.

use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};

/// How long after a full handshake its session can be resumed (nginx's
/// `ssl_session_timeout` default).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Sessions kept at once (rustls's default), least recently used
/// evicted first.
const CAPACITY: usize = 256;

/// A session store whose entries expire; see the module documentation.
#[derive(Debug)]
pub(super) struct Sessions {
    inner: Arc<ServerSessionMemoryCache>,
    lifetime_s: u64,
    /// Unix seconds now (injected for tests).
    now: fn() -> u64,
}

fn unix_now() -> u64 {
    crate::time::now_unix()
}

impl Sessions {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self::with_clock(SESSION_LIFETIME, unix_now))
    }

    fn with_clock(lifetime: Duration, now: fn() -> u64) -> Self {
        Sessions {
            inner: ServerSessionMemoryCache::new(CAPACITY),
            lifetime_s: lifetime.as_secs(),
            now,
        }
    }

    /// The session stored under a stamp, if it is still young enough.
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let (stamp, session) = stored.split_first_chunk::<8>()?;
        let age = (self.now)().saturating_sub(u64::from_be_bytes(*stamp));
        (age < self.lifetime_s).then(|| session.to_vec())
    }
}

// === impl Sessions ===

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut stamped = Vec::with_capacity(8 + value.len());
        stamped.extend_from_slice(&(self.now)().to_be_bytes());
        stamped.extend_from_slice(&value);
        self.inner.put(key, stamped)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let session = self.fresh(self.inner.get(key)?);
        if session.is_none() {
            // Expired: make room now rather than at eviction.
            self.inner.take(key);
        }
        session
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.take(key)?)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;

    static NOW: AtomicU64 = AtomicU64::new(1_000);

    fn now() -> u64 {
        NOW.load(Relaxed)
    }

    #[test]
    fn sessions_expire_after_their_lifetime() {
        let s = Sessions::with_clock(Duration::from_secs(300), now);
        assert!(s.put(b"id".to_vec(), b"session".to_vec()));
        assert!(s.put(b"ticket".to_vec(), b"other".to_vec()));
        NOW.store(1_299, Relaxed);
        assert_eq!(s.get(b"id").as_deref(), Some(&b"session"[..]));
        NOW.store(1_300, Relaxed);
        assert_eq!(s.get(b"id"), None);
        assert_eq!(s.take(b"ticket"), None);
        // Gone for good, not just hidden.
        NOW.store(1_000, Relaxed);
        assert_eq!(s.get(b"id"), None);
        assert_eq!(s.take(b"ticket"), None);
    }
}
