//! Canary routing (contract §7): a weighted share of a route's traffic goes
//! to another upstream, sticky per consumer: the same caller always lands on
//! the same side. A request header forces a side for testing, with values
//! the spec names (`always` / `never` unless it says otherwise).

use http::HeaderMap;

use crate::chain::RequestCtx;

pub use crate::spec::policies::CanarySpec;

/// FNV-1a: a fixed, well-known hash, so a consumer's side does not change
/// across restarts or upgrades (std's hasher promises neither).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A consumer's bucket in `0..10000`.
pub fn bucket(kind: &[u8], id: &[u8]) -> u32 {
    (fnv1a(&[kind, id]) % 10_000) as u32
}

impl CanarySpec {
    /// Whether this request goes to the canary.
    pub fn pick(&self, ctx: &RequestCtx, h: &HeaderMap) -> bool {
        // Exact bytes; any other value is ignored (the consumer's side).
        match h.get(self.header).map(|v| v.as_bytes()) {
            Some(v) if v == self.force_canary.as_bytes() => return true,
            Some(v) if v == self.force_stable.as_bytes() => return false,
            _ => {}
        }
        let b = match (&ctx.user, &ctx.caller) {
            (Some(u), _) => bucket(b"user", u.id.as_bytes()),
            (None, Some(c)) => bucket(b"service", c.as_bytes()),
            (None, None) => match ctx.client_ip {
                std::net::IpAddr::V4(a) => bucket(b"ip", &a.octets()),
                std::net::IpAddr::V6(a) => bucket(b"ip", &a.octets()),
            },
        };
        b < self.basis_points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket(b"user", b"alice"), bucket(b"user", b"alice"));
        assert_ne!(bucket(b"user", b"alice"), bucket(b"service", b"alice"));
        let n = 20_000u32;
        let under_5pct = (0..n)
            .filter(|i| bucket(b"user", i.to_string().as_bytes()) < 500)
            .count();
        // Binomial(20000, 0.05): mean 1000, sd ~31; 5 sd either way.
        assert!((845..=1155).contains(&under_5pct), "{under_5pct}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Whatever the weight and whoever the consumers, the canary's share
        /// stays within 5 standard deviations of the binomial mean, and a
        /// consumer's side never changes.
        #[test]
        fn split_stays_within_binomial_tolerance_and_is_sticky(
            basis_points in 1u32..10_000,
            prefix in "[a-z0-9._-]{0,12}",
            kind in proptest::sample::select(vec![&b"user"[..], &b"service"[..], &b"ip"[..]]),
        ) {
            let n = 4_000u32;
            let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
            let sides: Vec<bool> = ids.iter().map(|id| bucket(kind, id.as_bytes()) < basis_points).collect();
            let hits = sides.iter().filter(|s| **s).count() as f64;
            let p = f64::from(basis_points) / 10_000.0;
            let (mean, sd) = (f64::from(n) * p, (f64::from(n) * p * (1.0 - p)).sqrt());
            proptest::prop_assert!((hits - mean).abs() <= 5.0 * sd + 1.0, "{hits} hits, mean {mean}, sd {sd}");
            for (id, side) in ids.iter().zip(&sides).take(200) {
                proptest::prop_assert_eq!(bucket(kind, id.as_bytes()) < basis_points, *side);
            }
        }
    }
}
