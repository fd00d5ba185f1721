//! Callers recently found over a limit keyed on them (issue 13 §1).
//!
//! A limit keyed on the calling service runs only once the caller is
//! verified, and on a route whose HMAC v2 signature covers the body that
//! is after the body is read. So that a limited caller does not get its
//! body buffered again and again, each refusal is remembered here until
//! the caller's bucket has a token again; the next request claiming that
//! caller is refused (429) on its head, before its body is read.
//!
//! Only a verified refusal is remembered: a forged request cannot mark a
//! caller as limited; it can only learn that one is. Lock-free and
//! allocation-free: a fixed table of atomic words, each holding a 32-bit
//! fingerprint of the name and the refusal's end in milliseconds (wrapping;
//! waits are far below the 24 days that allows). A name whose slot another
//! name took is simply not remembered: its next body is read as before.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots; callers are the spec's declared services, a handful.
const SLOTS: usize = 256;

/// The table.
#[derive(Debug)]
pub(super) struct Refused {
    slots: Box<[AtomicU64]>,
    keys: RandomState,
    epoch: Instant,
}

impl Refused {
    pub(super) fn new() -> Self {
        Refused {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            keys: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u32 {
        // Wrapping on purpose: only differences are compared.
        self.epoch.elapsed().as_millis() as u32
    }

    fn slot(&self, name: &str) -> (&AtomicU64, u64) {
        let h = self.keys.hash_one(name);
        let fingerprint = (h >> 32) | 1;
        (&self.slots[h as usize & (SLOTS - 1)], fingerprint)
    }

    /// `name` was refused and gets no token for `wait`.
    pub(super) fn remember(&self, name: &str, wait: Duration) {
        let (slot, fingerprint) = self.slot(name);
        let wait = wait.as_millis().min(u128::from(u32::MAX / 2)) as u32;
        let until = self.now_ms().wrapping_add(wait);
        slot.store(fingerprint << 32 | u64::from(until), Ordering::Release);
    }

    /// How long `name` is still refused, if it was refused recently.
    pub(super) fn remaining(&self, name: &str) -> Option<Duration> {
        let (slot, fingerprint) = self.slot(name);
        let word = slot.load(Ordering::Acquire);
        if word >> 32 != fingerprint {
            return None;
        }
        let left = (word as u32).wrapping_sub(self.now_ms()) as i32;
        (left > 0).then(|| Duration::from_millis(left as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_remembered_for_its_wait_and_only_for_its_name() {
        let r = Refused::new();
        assert_eq!(r.remaining("billing"), None);
        r.remember("billing", Duration::from_secs(30));
        let left = r.remaining("billing").expect("remembered");
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        assert_eq!(r.remaining("reporting"), None);
        r.remember("billing", Duration::ZERO);
        assert_eq!(r.remaining("billing"), None, "over once the wait is");
    }
}
