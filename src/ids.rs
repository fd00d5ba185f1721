//! Request, correlation and trace ids (contract §3).
//!
//! - `X-Request-Id`: fresh for every request, never taken from the client;
//!   the same value goes upstream, back to the client and into the log.
//! - `X-Correlation-Id`: the client's when it matches
//!   `^[A-Za-z0-9._:-]{1,128}$`, else the request id.
//! - `traceparent` (W3C Trace Context): a valid incoming one is continued
//!   with a new span id; otherwise a new trace starts.

use http::{HeaderMap, HeaderValue};
use uuid::Uuid;

/// The ids of one request.
#[derive(Debug, Clone)]
pub struct Ids {
    /// This hop's request id.
    pub request_id: HeaderValue,
    /// The correlation id that follows the request through every service.
    pub correlation_id: HeaderValue,
    /// The `traceparent` sent upstream.
    pub traceparent: HeaderValue,
}

/// Lowercase hex by table lookup (ids and trace ids on every request; the
/// signatures' encoder, shared with the `gateway-service` crate).
use gateway_service::hmac::hex_into;

fn header(bytes: &[u8]) -> HeaderValue {
    // Only hex digits and `-` are ever passed here.
    HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Ids {
    /// Ids for a request with these (client) headers.
    pub fn from_headers(h: &HeaderMap) -> Ids {
        Self::from_headers_keeping_trace(h).0
    }

    /// [`Ids::from_headers`], also saying whether the incoming trace was
    /// continued (when not, its `tracestate` must not travel on).
    pub fn from_headers_keeping_trace(h: &HeaderMap) -> (Ids, bool) {
        let uuid = Uuid::new_v4();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let request_id = header(uuid.hyphenated().encode_lower(&mut buf).as_bytes());
        let correlation_id = h
            .get(crate::headers::name::X_CORRELATION_ID)
            .filter(|v| valid_correlation_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(|| request_id.clone());
        let incoming = h
            .get(crate::headers::name::TRACEPARENT)
            .map(HeaderValue::as_bytes);
        let continued = incoming.and_then(parse_traceparent).is_some();
        let traceparent = next_traceparent(incoming);
        let ids = Ids {
            request_id,
            correlation_id,
            traceparent,
        };
        (ids, continued)
    }

    /// The request id as text.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }

    /// The correlation id as text.
    pub fn correlation_id(&self) -> &str {
        self.correlation_id.to_str().unwrap_or("")
    }
}

/// `^[A-Za-z0-9._:-]{1,128}$`
pub fn valid_correlation_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The trace id and flags of a valid `traceparent`, per W3C Trace Context
/// level 1: version `00` is exactly 55 bytes; a higher version may carry
/// more fields after the flags; `ff` is invalid; all-zero ids are invalid.
pub fn parse_traceparent(v: &[u8]) -> Option<(&[u8], &[u8])> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    let ok = is_lower_hex(version)
        && version != b"ff"
        && (version != b"00" || v.len() == 55)
        && (v.len() == 55 || v[55] == b'-')
        && is_lower_hex(trace)
        && is_lower_hex(parent)
        && is_lower_hex(flags)
        && trace.iter().any(|&b| b != b'0')
        && parent.iter().any(|&b| b != b'0');
    ok.then_some((trace, flags))
}

fn next_traceparent(incoming: Option<&[u8]>) -> HeaderValue {
    let random = Uuid::new_v4().into_bytes();
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex_into(&mut out[36..52], &random[..8]);
    match incoming.and_then(parse_traceparent) {
        Some((trace, flags)) => {
            out[3..35].copy_from_slice(trace);
            // Only the sampled bit is defined for version 00.
            let sampled = matches!(
                flags[1],
                b'1' | b'3' | b'5' | b'7' | b'9' | b'b' | b'd' | b'f'
            );
            out[53..55].copy_from_slice(if sampled { b"01" } else { b"00" });
        }
        None => hex_into(&mut out[3..35], &Uuid::new_v4().into_bytes()),
    }
    header(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids() {
        assert!(valid_correlation_id(b"abc-123_x.y:z"));
        assert!(valid_correlation_id(&[b'a'; 128]));
        assert!(!valid_correlation_id(&[b'a'; 129]));
        assert!(!valid_correlation_id(b""));
        assert!(!valid_correlation_id(b"a b"));
        assert!(!valid_correlation_id(b"a/b"));
    }

    #[test]
    fn traceparent_is_continued_or_restarted() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next = next_traceparent(Some(tp));
        let next = next.as_bytes();
        assert_eq!(&next[..36], &tp[..36], "same version and trace id");
        assert_ne!(&next[36..52], &tp[36..52], "new span id");
        assert_eq!(&next[52..], b"-01");
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"garbage",
        ] {
            let next = next_traceparent(Some(bad));
            assert!(parse_traceparent(next.as_bytes()).is_some());
            assert_ne!(&next.as_bytes()[3..35], bad.get(3..35).unwrap_or(b""));
        }
        assert!(parse_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"
        )
        .is_some());
    }
}
