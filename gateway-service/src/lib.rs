//! For Rust services behind the gateway: check that a request really
//! comes from the gateway ([`ServiceVerifier`]), and call other services
//! signed the way the gateway signs ([`ServiceClient`], feature `client`,
//! on by default).
//!
//! This is the gateway's own signing code, not a copy: the gateway
//! verifies its callers with [`hmac::SignatureVerifier`] and signs every
//! upstream request with [`Signer`]; both build their canonical strings
//! with [`hmac`]. It depends on no server, TLS or rate-limiting crate; with
//! `default-features = false` it needs no HTTP client either.
//!
//! ```no_run
//! use gateway_service::ServiceVerifier;
//!
//! # fn handle(parts: http::request::Parts, body: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
//! // Once, at start-up: this service is `billing`; the gateway calls itself
//! // `aegis-gateway` and signs with the secret(s) in BILLING_SERVICE_SECRET
//! // (or the file named by BILLING_SERVICE_SECRET_FILE).
//! let verifier = ServiceVerifier::from_env("billing", "aegis-gateway", "BILLING_SERVICE_SECRET")?;
//!
//! // Per request, with the body as received:
//! let call = verifier.verify(&parts, &body).map_err(|r| format!("403: {}", r.reason))?;
//! println!("from {} for tenant {:?}", call.caller, call.tenant);
//! # Ok(()) }
//! ```
//!
//! Modules, lowest first: [`clock`] (the one wall clock), [`env`]
//! (credentials from variables and files), [`headers`], [`hmac`]
//! (canonical strings, signing, the signature verifier) with [`nonce`]
//! (its replay cache), [`sign`] (outbound identity), [`verify`] (the
//! service-side verifier), `client`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod env;
pub mod headers;
pub mod hmac;
pub mod nonce;
pub mod sign;
pub mod verify;

#[cfg(feature = "client")]
pub mod client;

pub use clock::{now_unix, Clock, ManualClock, SystemClock};
pub use env::{EnvError, StartupEnv};
pub use sign::{Credential, OutboundIdentity, Outgoing, Signer};
pub use verify::{Proof, Rejected, ServiceVerifier, VerifiedCall};

#[cfg(feature = "client")]
pub use client::{Admission, BaseUrl, Breaker, CallContext, ServiceClient, ServiceError};
