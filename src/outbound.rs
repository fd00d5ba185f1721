//! Outbound identity (contract §6): the gateway proves who it is to every
//! upstream, with a credential of that upstream's own.
//!
//! - `hmac`: v2 headers over the upstream method, rewritten path and query,
//!   a fresh timestamp and nonce, the gateway's name, the tenant and the
//!   body hash, signed anew for every attempt;
//! - `hmac-v1`: the older scheme, for services not yet moved;
//! - `jwt`: a short-lived HS256 service token (`iss` = `sub` = gateway
//!   name, `aud` = service, `exp` at most 300 s after `iat`, a `jti`),
//!   minted once and reused until shortly before it expires;
//! - `none`: unsigned, only with an explicit opt-in in the spec.
//!
//! Every signed upstream request carries `X-Service-Name: <gateway name>`
//! (HMAC v2 signs over it); an unsigned (`none`) upstream gets none, since
//! a name without a proof would be an unverifiable claim (contract §3).
//! Credentials come from `VAR`, else from the file named by `VAR_FILE`
//! (the mounted-secret convention); files are re-read on SIGHUP.
//!
//! The identity kinds, credentials, the [`Signer`] and the [`Clock`] it
//! reads are the `gateway-service` crate's ([`gateway_service::sign`],
//! [`gateway_service::clock`]), re-exported here: services calling each
//! other with [`crate::service::ServiceClient`] sign with the same code.

pub use gateway_service::clock::{Clock, ManualClock, SystemClock};
pub use gateway_service::sign::{Credential, OutboundIdentity, Outgoing, Signer};
