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
pub use gateway_service::nonce;
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

pub use gateway_service::hmac::SigningHeaders;

pub use gateway_service::env::secrets;
