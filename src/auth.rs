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

pub use crate::chain::{AuthFailure, SigningHeaders};

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
