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

pub use crate::chain::AuthFailure;
pub use gateway_service::env::secrets;
pub use gateway_service::hmac::SigningHeaders;
