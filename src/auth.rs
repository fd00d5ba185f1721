//! Inbound identity (contract §4, §5): every caller is identified before
//! an upstream sees its request.
//!
//! - [`jwt`]: user tokens from `Authorization: Bearer` or a cookie, roles;
//! - [`jwt_cache`]: verified tokens, so a repeated token is checked once;
//! - [`hmac`]: service-to-service request signatures, v1 and v2;
//! - [`token`]: the legacy shared `X-Service-Token`;
//! - [`revocation`]: the deny-list of token ids and subjects.
//!
//! Steps record why they rejected a request in [`RequestCtx::auth_failure`]
//! (crate::chain::RequestCtx); the server turns that into one
//! security-event log line. No secret, token or signature is ever logged.

pub mod hmac;
pub mod jwt;
pub mod jwt_cache;
pub mod nonce;
pub mod revocation;
pub mod token;

/// Why an authentication step refused (or, in audit mode, let through) a
/// request: the `reason` of the security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// A stable, machine-readable reason (`expired`, `replayed_nonce`, ...).
    pub reason: &'static str,
    /// The caller, when known: a JWT subject or a claimed service name.
    pub caller: Option<String>,
    /// `enforce` (rejected) or `audit` (logged and let through).
    pub mode: &'static str,
}

impl AuthFailure {
    /// A failure that rejected the request.
    pub fn enforced(reason: &'static str, caller: Option<String>) -> Self {
        AuthFailure {
            reason,
            caller,
            mode: "enforce",
        }
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
        use crate::headers::name;
        SigningHeaders {
            signature: h.get(name::X_INTERNAL_SERVICE_AUTH).cloned(),
            service: h.get(name::X_SERVICE_NAME).cloned(),
            timestamp: h.get(name::X_INTERNAL_TIMESTAMP).cloned(),
            nonce: h.get(name::X_INTERNAL_NONCE).cloned(),
            tenant: h.get(name::X_TENANT_ID).cloned(),
        }
    }
}

/// The secrets in a variable: comma-separated, so keys rotate without
/// downtime (old and new are both accepted until the old one is removed).
pub fn secrets(value: &str) -> Vec<Vec<u8>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}
