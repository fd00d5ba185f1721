//! HMAC-SHA256 service signing, exactly as contract §5: the canonical
//! strings, the body hash, signing, signature parsing and comparison, the
//! nonce rules, and the verifier (window, per-caller secrets, replay
//! cache). The gateway signs and verifies with this module; so do
//! services through [`crate::Signer`] and [`crate::ServiceVerifier`].
//!
//! - v1: `METHOD\nPATH\nTIMESTAMP`, PATH without the query; header value is
//!   the bare lowercase hex signature.
//! - v2: `v2\nMETHOD\nPATH_AND_QUERY\nTIMESTAMP\nNONCE\nSERVICE\nTENANT\nBODY_SHA256`,
//!   TENANT empty when absent, BODY_SHA256 the lowercase hex SHA-256 of the
//!   body (of the empty string when there is none); header value `v2=<hex>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::headers;
use crate::nonce::{NonceCache, Seen};

pub use crate::clock::now_unix;

type HmacSha256 = Hmac<Sha256>;

/// Which signature versions a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmacVersions(pub u8);

impl HmacVersions {
    /// v1 signatures.
    pub const V1: HmacVersions = HmacVersions(1);
    /// v2 signatures.
    pub const V2: HmacVersions = HmacVersions(2);

    /// Whether `v` (1 or 2) is accepted.
    pub fn accepts(self, v: u8) -> bool {
        self.0 & v != 0
    }
}

/// Everything a v2 signature covers.
#[derive(Debug, Clone, Copy)]
pub struct V2Input<'a> {
    /// Request method.
    pub method: &'a str,
    /// Path and query, as sent.
    pub path_and_query: &'a str,
    /// Unix seconds, as sent.
    pub timestamp: &'a str,
    /// The `X-Internal-Nonce` value.
    pub nonce: &'a str,
    /// The calling service (`X-Service-Name`).
    pub service: &'a str,
    /// The tenant (`X-Tenant-Id`), empty when absent.
    pub tenant: &'a str,
    /// Lowercase hex SHA-256 of the body.
    pub body_sha256: &'a str,
}

/// The v1 canonical string.
pub fn canonical_v1(method: &str, path: &str, timestamp: &str) -> String {
    join_lines(&[method, path, timestamp])
}

/// The v2 canonical string.
pub fn canonical_v2(i: &V2Input<'_>) -> String {
    join_lines(&[
        "v2",
        i.method,
        i.path_and_query,
        i.timestamp,
        i.nonce,
        i.service,
        i.tenant,
        i.body_sha256,
    ])
}

/// `parts` joined by `\n`, in one allocation of the exact size (`format!`
/// grows its buffer several times for a string this long).
fn join_lines(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(p);
    }
    out
}

/// Lowercase hex SHA-256 of the empty body: most requests have none.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lowercase hex SHA-256 of a body.
pub fn body_sha256(body: &[u8]) -> String {
    if body.is_empty() {
        return EMPTY_SHA256.to_owned();
    }
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &Sha256::digest(body).into());
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (twice their length), by
/// table lookup: the gateway's ids, trace ids and every signature use it
/// (the `hex` crate's encoder goes through a `char` iterator, several
/// times slower).
///
/// # Panics
/// When `out` is shorter than twice `bytes`.
pub fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

/// Appends the lowercase hex of a 32-byte digest.
fn push_hex(out: &mut String, digest: &[u8; 32]) {
    let mut buf = [0u8; 64];
    hex_into(&mut buf, digest);
    // Only hex digits were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

fn mac(secret: &[u8], canonical: &str) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(canonical.as_bytes());
    m
}

/// The v1 header value: bare lowercase hex.
pub fn sign_v1(secret: &[u8], method: &str, path: &str, timestamp: &str) -> String {
    let mut out = String::with_capacity(64);
    let tag = mac(secret, &canonical_v1(method, path, timestamp)).finalize();
    push_hex(&mut out, &tag.into_bytes().into());
    out
}

/// The v2 header value: `v2=<lowercase hex>`.
pub fn sign_v2(secret: &[u8], input: &V2Input<'_>) -> String {
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v2=");
    let tag = mac(secret, &canonical_v2(input)).finalize();
    push_hex(&mut out, &tag.into_bytes().into());
    out
}

/// Whether `sig` (32 bytes) is the HMAC of `canonical` under `secret`,
/// compared in constant time.
pub fn signature_matches(secret: &[u8], canonical: &str, sig: &[u8; 32]) -> bool {
    mac(secret, canonical).verify_slice(sig).is_ok()
}

/// A fresh nonce: 32 characters of `A-Za-z0-9_-` from 192 random bits.
pub fn fresh_nonce() -> String {
    let (a, b) = (
        uuid::Uuid::new_v4().as_u128(),
        uuid::Uuid::new_v4().as_u128(),
    );
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..32)
        .map(|i| {
            let bits = if i < 16 {
                a >> (i * 6)
            } else {
                b >> ((i - 16) * 6)
            };
            ALPHABET[(bits & 63) as usize] as char
        })
        .collect()
}

/// `16..=128` characters of `A-Za-z0-9_-`.
pub fn valid_nonce(n: &[u8]) -> bool {
    (16..=128).contains(&n.len())
        && n.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// The version and raw bytes of a signature header: `v2=<64 hex>` or a
/// bare 64-hex v1 signature (hex digits of either case).
///
/// # Errors
/// `malformed_signature`: anything else.
pub fn parse_signature(sig: &str) -> Result<(u8, [u8; 32]), &'static str> {
    let (version, hex_sig) = match sig.strip_prefix("v2=") {
        Some(rest) => (2, rest),
        None => (1, sig),
    };
    let digits = hex_sig.as_bytes();
    if digits.len() != 64 {
        return Err("malformed_signature");
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(hi), Some(lo)) => *o = (hi << 4) | lo,
            _ => return Err("malformed_signature"),
        }
    }
    Ok((version, out))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The signing headers of a request, read before the gateway strips them,
/// so that a route with HMAC auth can verify them.
#[derive(Debug, Clone, Default)]
pub struct SigningHeaders {
    /// `X-Internal-Service-Auth`.
    pub signature: Option<http::HeaderValue>,
    /// `X-Service-Name`.
    pub service: Option<http::HeaderValue>,
    /// `X-Internal-Timestamp`.
    pub timestamp: Option<http::HeaderValue>,
    /// `X-Internal-Nonce`.
    pub nonce: Option<http::HeaderValue>,
    /// `X-Tenant-Id`.
    pub tenant: Option<http::HeaderValue>,
}

impl SigningHeaders {
    /// Reads the signing headers (cheap: header values are reference-counted).
    pub fn read(h: &http::HeaderMap) -> Self {
        SigningHeaders {
            signature: h.get(headers::X_INTERNAL_SERVICE_AUTH).cloned(),
            service: h.get(headers::X_SERVICE_NAME).cloned(),
            timestamp: h.get(headers::X_INTERNAL_TIMESTAMP).cloned(),
            nonce: h.get(headers::X_INTERNAL_NONCE).cloned(),
            tenant: h.get(headers::X_TENANT_ID).cloned(),
        }
    }
}

fn text(v: &Option<http::HeaderValue>) -> Option<&str> {
    v.as_ref().and_then(|v| v.to_str().ok())
}

/// A verified calling service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The service name.
    pub service: String,
    /// The tenant, from a v2 signature only.
    pub tenant: Option<String>,
}

/// The request facts a signature is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// Method as received.
    pub method: &'a str,
    /// Path as received, without the query.
    pub path: &'a str,
    /// Path and query as received.
    pub path_and_query: &'a str,
    /// Hex SHA-256 of the body, when it was read.
    pub body_sha256: Option<&'a str>,
    /// Unix seconds now.
    pub now: u64,
}

/// What a route admits.
#[derive(Debug, Clone, Copy)]
pub struct Admits<'a> {
    /// Callers the route admits.
    pub callers: &'a [&'a str],
    /// Versions the route accepts.
    pub versions: HmacVersions,
    /// Whether the legacy shared secret is accepted.
    pub shared_secret: bool,
}

/// Verifies signatures: per-caller secrets, the legacy shared secret, the
/// window and the nonce cache. The gateway's inbound HMAC verifier is
/// this one with an enforcement mode on top; a service verifying the
/// gateway uses it through [`crate::ServiceVerifier`].
pub struct SignatureVerifier {
    secrets: HashMap<String, Vec<Vec<u8>>>,
    shared: Vec<Vec<u8>>,
    window_s: u64,
    nonces: NonceCache,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut callers: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        callers.sort_unstable();
        f.debug_struct("SignatureVerifier")
            .field("callers", &callers)
            .field("window_s", &self.window_s)
            .field("nonces", &self.nonces)
            .finish_non_exhaustive()
    }
}

impl SignatureVerifier {
    /// A verifier over known secrets: `secrets` per caller, the legacy
    /// `shared` secrets, the allowed clock difference and the most nonces
    /// remembered at once. It reads the system clock
    /// ([`SignatureVerifier::with_clock`] to change that).
    pub fn new(
        secrets: HashMap<String, Vec<Vec<u8>>>,
        shared: Vec<Vec<u8>>,
        window: Duration,
        nonce_cache: usize,
    ) -> Self {
        let window_s = window.as_secs();
        SignatureVerifier {
            secrets,
            shared,
            window_s,
            // A request stamped `window` ahead stays acceptable until `2 *
            // window` after it first arrived, that last second included.
            // Saturating: `ServiceVerifier::new` takes any window.
            nonces: NonceCache::new(nonce_cache, window_s.saturating_mul(2).saturating_add(1)),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads `clock` for [`SignatureVerifier::now_unix`].
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by this verifier's clock: the `now` to check a request at.
    pub fn now_unix(&self) -> u64 {
        self.clock.now_unix()
    }

    /// The checks that need no body: caller, admission, signature shape,
    /// timestamp. Run before a v2 route reads the body, so strangers cannot
    /// make the gateway buffer anything.
    ///
    /// # Errors
    /// The failure reason and the claimed caller, if any.
    pub fn precheck(
        &self,
        h: &SigningHeaders,
        now: u64,
        admits: &Admits<'_>,
    ) -> Result<(), (&'static str, Option<String>)> {
        let Some(service) = text(&h.service).filter(|s| !s.is_empty()) else {
            return Err(("missing_service_name", None));
        };
        let fail = |reason| Err((reason, Some(service.to_owned())));
        let Some(sig) = text(&h.signature) else {
            return fail("missing_signature");
        };
        let version = match parse_signature(sig) {
            Ok((v, _)) => v,
            Err(reason) => return fail(reason),
        };
        if !admits.versions.accepts(version) {
            return fail("version_not_allowed");
        }
        let allowed = admits.callers.contains(&service);
        let known = self.secrets.contains_key(service) || (admits.shared_secret && allowed);
        if !known {
            return fail("unknown_service");
        }
        if !allowed {
            return fail("service_not_allowed");
        }
        match text(&h.timestamp).map(str::parse::<u64>) {
            None => fail("missing_timestamp"),
            Some(Err(_)) => fail("malformed_timestamp"),
            Some(Ok(ts)) if now.abs_diff(ts) > self.window_s => fail("stale_timestamp"),
            Some(Ok(_)) => Ok(()),
        }
    }

    /// Verifies the signing headers of a request.
    ///
    /// # Errors
    /// The failure reason and the claimed caller, if any.
    pub fn verify(
        &self,
        h: &SigningHeaders,
        req: &Signed<'_>,
        admits: &Admits<'_>,
    ) -> Result<Verified, (&'static str, Option<String>)> {
        // Caller, admission, signature shape and timestamp first.
        self.precheck(h, req.now, admits)?;
        let service = text(&h.service).unwrap_or_default();
        let fail = |reason| Err((reason, Some(service.to_owned())));
        let sig = text(&h.signature).unwrap_or_default();
        let ts = text(&h.timestamp).unwrap_or_default();
        let (version, sig_bytes) = match parse_signature(sig) {
            Ok(parsed) => parsed,
            Err(reason) => return fail(reason),
        };
        let own = self.secrets.get(service);
        // The tenant as sent, any UTF-8: the signer signs a JWT's tenant
        // claim as is, non-ASCII included. A v2 tenant header that is not
        // UTF-8 cannot have been signed; it is refused, not read as absent.
        let tenant = match h.tenant.as_ref().map(|v| std::str::from_utf8(v.as_bytes())) {
            None => "",
            Some(Ok(t)) => t,
            Some(Err(_)) if version == 2 => return fail("malformed_tenant"),
            Some(Err(_)) => "",
        };
        let canonical = if version == 1 {
            canonical_v1(req.method, req.path, ts)
        } else {
            let Some(nonce) = text(&h.nonce) else {
                return fail("missing_nonce");
            };
            if !valid_nonce(nonce.as_bytes()) {
                return fail("malformed_nonce");
            }
            let Some(body) = req.body_sha256 else {
                return fail("body_not_read");
            };
            canonical_v2(&V2Input {
                method: req.method,
                path_and_query: req.path_and_query,
                timestamp: ts,
                nonce,
                service,
                tenant,
                body_sha256: body,
            })
        };
        let shared: &[Vec<u8>] = if admits.shared_secret {
            &self.shared
        } else {
            &[]
        };
        let candidates = own.map(Vec::as_slice).unwrap_or(&[]).iter().chain(shared);
        let ok = candidates
            .into_iter()
            .any(|secret| signature_matches(secret, &canonical, &sig_bytes));
        if !ok {
            return fail("bad_signature");
        }
        if version == 2 {
            // Only signed requests reach the cache, so strangers cannot fill it.
            let nonce = text(&h.nonce).unwrap_or("");
            match self
                .nonces
                .check(service.as_bytes(), nonce.as_bytes(), req.now)
            {
                Seen::Fresh => {}
                Seen::Replay => return fail("replayed_nonce"),
                Seen::Full => return fail("nonce_cache_full"),
            }
        }
        Ok(Verified {
            service: service.to_owned(),
            tenant: (version == 2 && !tenant.is_empty()).then(|| tenant.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        let mut out = vec![0u8; bytes.len() * 2];
        hex_into(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn body_hashes_are_lowercase_hex_sha256_the_empty_one_included() {
        assert_eq!(body_sha256(b""), hex(&Sha256::digest(b"")));
        assert_eq!(
            body_sha256(br#"{"k":1}"#),
            hex(&Sha256::digest(br#"{"k":1}"#))
        );
        let mut digest = [0xff; 32];
        digest[..3].copy_from_slice(&[0x00, 0x0f, 0xa5]);
        let mut s = String::from("v2=");
        push_hex(&mut s, &digest);
        assert_eq!(s, format!("v2=000fa5{}", "ff".repeat(29)));
    }

    #[test]
    fn signatures_parse_in_either_case_and_nothing_else() {
        let lower = "0a".repeat(32);
        assert_eq!(parse_signature(&lower), Ok((1, [0x0a; 32])));
        let upper = format!("v2={}", "AB".repeat(32));
        assert_eq!(parse_signature(&upper), Ok((2, [0xab; 32])));
        for bad in [
            "".to_owned(),
            "v2=".to_owned(),
            "0a".repeat(31),
            "0a".repeat(33),
            format!("{}0g", "0a".repeat(31)),
            format!("v1={}", "0a".repeat(32)),
            format!("v2= {}", "0a".repeat(32)),
        ] {
            assert_eq!(parse_signature(&bad), Err("malformed_signature"), "{bad}");
        }
    }

    #[test]
    fn nonces_are_fresh_and_follow_the_rules() {
        let (a, b) = (fresh_nonce(), fresh_nonce());
        assert_ne!(a, b);
        assert!(valid_nonce(a.as_bytes()) && a.len() == 32, "{a}");
        assert!(valid_nonce(&[b'a'; 16]) && valid_nonce(&[b'-'; 128]));
        assert!(!valid_nonce(&[b'a'; 15]) && !valid_nonce(&[b'a'; 129]));
        assert!(!valid_nonce(b"aaaaaaaaaaaaaaa=") && !valid_nonce(b"aaaaaaaaaaaaaaa."));
    }
}
