//! The gateway's budget for buffered request bodies (issue 13 §1).
//!
//! Routes that verify or make an HMAC v2 signature read the whole body
//! before contacting the upstream. Without a bound, clients that declare a
//! body and send it slowly (or never finish) pin that memory for as long
//! as their sockets stay open. So every buffered body holds a [`Permit`]
//! for its bytes, counted three ways, each with its own cap:
//! - gateway-wide (`gateway.limits.body_buffer`);
//! - per client address (`gateway.limits.body_buffer_per_client`), so one
//!   address cannot take the whole budget;
//! - per connection (the same share), so all the streams of one HTTP/2
//!   connection share it too.
//!
//! A request whose bytes do not fit is refused at once (503 `overloaded`)
//! rather than waiting for room: waiting would let the slow clients that
//! exhausted the budget hold everyone else's requests as well.
//!
//! Lock-free and allocation-free per request: three atomic counters, each
//! grown with a compare-and-swap that never passes its cap. Client
//! addresses are hashed (with a per-process random key) into a fixed table
//! of counters; two addresses that share a slot share one share, which
//! only ever refuses earlier, never admits more. IPv6 addresses count by
//! their /64, the block one client usually holds.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Per-address counters. A power of two; 4096 words is 32 KiB.
const SLOTS: usize = 4096;

/// The gateway-wide budget and its per-address shares.
#[derive(Debug)]
pub struct BodyBudget {
    total: usize,
    per_client: usize,
    used: AtomicUsize,
    slots: Box<[AtomicUsize]>,
    keys: RandomState,
}

/// The bytes did not fit the budget: 503 `overloaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

impl BodyBudget {
    /// A budget of `total` bytes of which one client address or one
    /// connection may hold `per_client`.
    pub fn new(total: usize, per_client: usize) -> Self {
        BodyBudget {
            total,
            per_client: per_client.min(total),
            used: AtomicUsize::new(0),
            slots: (0..SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            keys: RandomState::new(),
        }
    }

    /// Bytes currently held by buffered bodies, all clients together.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// An empty permit for a body from `client` on the connection whose
    /// counter is `conn`; it holds nothing until [`Permit::grow`].
    pub fn permit<'a>(&'a self, client: IpAddr, conn: &'a AtomicUsize) -> Permit<'a> {
        let key = match client.to_canonical() {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6) >> 64,
        };
        let slot = self.keys.hash_one(key) as usize & (SLOTS - 1);
        Permit {
            budget: self,
            slot: &self.slots[slot],
            conn,
            held: 0,
        }
    }
}

/// Adds `n` to `counter` unless that would pass `cap`.
fn try_add(counter: &AtomicUsize, n: usize, cap: usize) -> Result<(), Overloaded> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(n).filter(|&after| after <= cap)
        })
        .map(drop)
        .map_err(|_| Overloaded)
}

/// Bytes of one buffered body, given back when it is dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    budget: &'a BodyBudget,
    slot: &'a AtomicUsize,
    conn: &'a AtomicUsize,
    held: usize,
}

impl Permit<'_> {
    /// Takes `n` more bytes from every counter, or none of them.
    ///
    /// # Errors
    /// [`Overloaded`] when any counter would pass its cap.
    pub fn grow(&mut self, n: usize) -> Result<(), Overloaded> {
        let b = self.budget;
        try_add(self.conn, n, b.per_client)?;
        if let Err(e) = try_add(self.slot, n, b.per_client) {
            self.conn.fetch_sub(n, Ordering::AcqRel);
            return Err(e);
        }
        if let Err(e) = try_add(&b.used, n, b.total) {
            self.conn.fetch_sub(n, Ordering::AcqRel);
            self.slot.fetch_sub(n, Ordering::AcqRel);
            return Err(e);
        }
        self.held += n;
        Ok(())
    }

    /// Bytes this permit holds.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.conn.fetch_sub(self.held, Ordering::AcqRel);
            self.slot.fetch_sub(self.held, Ordering::AcqRel);
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests;
