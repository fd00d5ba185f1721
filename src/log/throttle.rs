//! At most so many lines a second of one kind, the rest counted.
//!
//! A flood of events (refused TLS handshakes, say) must not become a
//! flood of log lines: that costs disk and I/O, and buries every other
//! line. A [`Throttle`] lets the first `per_second` events of each
//! wall-clock second through and counts the others; whoever logs is told
//! when a count starts, so that one summary line reports it a second
//! later (see [`crate::tls::Terminator::refused`]). Lock-free: three
//! atomics, no allocation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it.
    Write,
    /// Count it; `first` when the count was zero, so the caller arranges
    /// for a summary (later ones join that summary).
    Suppress {
        /// The count started with this event.
        first: bool,
    },
}

/// A per-second budget of log lines.
#[derive(Debug)]
pub struct Throttle {
    per_second: u64,
    /// The Unix second the budget is for.
    second: AtomicU64,
    /// Lines written (or attempted) in that second.
    written: AtomicU64,
    /// Events suppressed since the last [`Throttle::take_suppressed`].
    suppressed: AtomicU64,
}

impl Throttle {
    /// At most `per_second` lines each second.
    pub fn new(per_second: u64) -> Self {
        Throttle {
            per_second,
            second: AtomicU64::new(0),
            written: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// The verdict on an event at Unix second `now_s`.
    pub fn admit(&self, now_s: u64) -> Verdict {
        let seen = self.second.load(Relaxed);
        if seen != now_s
            && self
                .second
                .compare_exchange(seen, now_s, Relaxed, Relaxed)
                .is_ok()
        {
            // A new second: its budget starts afresh. An event of the old
            // second counted between these two lines only makes the new
            // budget one smaller.
            self.written.store(0, Relaxed);
        }
        if self.written.fetch_add(1, Relaxed) < self.per_second {
            Verdict::Write
        } else {
            Verdict::Suppress {
                first: self.suppressed.fetch_add(1, Relaxed) == 0,
            }
        }
    }

    /// The events suppressed since the last call, for a summary line; the
    /// next suppressed event starts a new count.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_per_second_then_one_count() {
        let t = Throttle::new(3);
        let verdicts: Vec<Verdict> = (0..6).map(|_| t.admit(100)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Write,
                Verdict::Write,
                Verdict::Write,
                Verdict::Suppress { first: true },
                Verdict::Suppress { first: false },
                Verdict::Suppress { first: false },
            ]
        );
        // The next second has its own budget; the count goes on until it
        // is taken.
        assert_eq!(t.admit(101), Verdict::Write);
        assert_eq!(t.admit(101), Verdict::Write);
        assert_eq!(t.admit(101), Verdict::Write);
        assert_eq!(t.admit(101), Verdict::Suppress { first: false });
        assert_eq!(t.take_suppressed(), 4);
        assert_eq!(t.take_suppressed(), 0);
        // After a summary, the next suppressed event starts a new count.
        assert_eq!(t.admit(101), Verdict::Suppress { first: true });
        assert_eq!(t.take_suppressed(), 1);
    }

    #[test]
    fn threads_share_one_budget() {
        let t = std::sync::Arc::new(Throttle::new(10));
        let written: u64 = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|_| t.admit(7) == Verdict::Write).count() as u64
                })
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(written, 10);
        assert_eq!(t.take_suppressed(), 3990);
    }
}
