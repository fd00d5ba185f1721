//! `gateway.limits`: what one client may send, and what clients may make
//! the gateway hold, gateway-wide.

use super::traffic::{parse_size, size_bytes};
use super::Ctx;
use crate::diag::Problem;
use crate::ir::traffic::LimitsIr;
use crate::spec::{Limits, SpecPath};

/// The largest request head by default: 64 KiB (Envoy's default is 60 KiB).
pub const DEFAULT_MAX_HEAD: u64 = 64 * 1024;
/// hyper's parser refuses a head below this buffer size (it asserts on it).
pub const MIN_MAX_HEAD: u64 = 8 * 1024;
/// A head larger than this is a typo, and a memory risk per connection.
pub const MAX_MAX_HEAD: u64 = 1 << 20;
/// The most header fields by default: hyper's own default, 100.
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// More fields than this is a typo (Envoy's hard ceiling is 10,000; a
/// real request has a few dozen).
pub const MAX_MAX_HEADERS: u32 = 1000;

/// Each limit falls back to its default, so a bad value gives one error
/// and the rest of the spec is still checked.
pub(super) fn check_limits(cx: &mut Ctx<'_>, at: &SpecPath, l: &Limits) -> LimitsIr {
    let max_head = match &l.max_head {
        Some(s) => cx.check(&at.key("max_head"), max_head(s)),
        None => None,
    };
    let max_headers = match l.max_headers {
        Some(n) => cx.check(&at.key("max_headers"), max_headers(n)),
        None => None,
    };
    let (min_body_rate, body_buffer, body_buffer_per_client) = check_body_buffer(cx, at, l);
    LimitsIr {
        max_head: max_head.unwrap_or(DEFAULT_MAX_HEAD),
        max_headers: max_headers.unwrap_or(DEFAULT_MAX_HEADERS),
        min_body_rate,
        body_buffer,
        body_buffer_per_client,
    }
}

/// `min_body_rate`, `body_buffer` and `body_buffer_per_client` in bytes,
/// defaults filled in.
///
/// A per-client share larger than the whole budget would let one client
/// take all of it, which is what the share exists to prevent.
fn check_body_buffer(cx: &mut Ctx<'_>, at: &SpecPath, l: &Limits) -> (u64, u64, u64) {
    let mut size = |key: &str, v: &Option<String>, default: u64| match v {
        Some(s) => cx.check(&at.key(key), parse_size(s)).unwrap_or(default),
        None => default,
    };
    let rate = size("min_body_rate", &l.min_body_rate, 1 << 10);
    let total = size("body_buffer", &l.body_buffer, 64 << 20);
    let per_client = size(
        "body_buffer_per_client",
        &l.body_buffer_per_client,
        (8 << 20).min(total),
    );
    if per_client > total {
        cx.error(
            &at.key("body_buffer_per_client"),
            Problem::new(format!(
                    "the per-client share ({per_client} bytes) is larger than `body_buffer` ({total} bytes)"
                ), "make `body_buffer_per_client` at most `body_buffer`, so one client cannot take the whole budget"),
        );
    }
    (rate, total, per_client)
}

/// The head limit is hyper's read buffer for a connection: hyper panics
/// below 8 KiB, and every connection may hold this much, so it is bounded
/// on both sides.
pub fn max_head(s: &str) -> Result<u64, Problem> {
    let bytes = size_bytes(s)?;
    if (MIN_MAX_HEAD..=MAX_MAX_HEAD).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(Problem::new(
            format!("a request head limit of `{s}` is out of range"),
            "use between 8KiB and 1MiB; the default is 64KiB",
        ))
    }
}

/// No request can be sent without a header (HTTP/1.1 needs `Host`), and a
/// count in the thousands is a typo.
pub fn max_headers(n: u32) -> Result<u32, Problem> {
    if (1..=MAX_MAX_HEADERS).contains(&n) {
        Ok(n)
    } else {
        Err(Problem::new(
            format!("a limit of {n} header fields is out of range"),
            "use between 1 and 1000; the default is 100",
        ))
    }
}
