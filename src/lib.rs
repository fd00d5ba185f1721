//! A compiled internal API gateway.
//!
//! `gateway.yaml` is compiled at build time (by `build.rs`, through
//! `gateway-codegen`) into a route enum, a static `matchit` router table and
//! a typed policy chain per route; this crate is the runtime those items
//! plug into. See `README.md` for running it and `docs/gateway-yaml.md` for
//! the spec format.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gateway::{config::StartupEnv, routes, server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = StartupEnv::from_process();
//! let gw = Arc::new(server::Gateway::<routes::Spec>::new(&env)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! server::serve(gw, listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Generated code names this crate as `::gateway`, inside and outside it.
extern crate self as gateway;

pub mod auth;
pub mod body;
pub mod chain;
pub mod config;
pub mod error;
pub mod headers;
pub mod ids;
pub mod log;
pub mod outbound;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod service;
pub mod spec;
pub mod time;
pub mod tls;

/// The routing compiled from `gateway.yaml` (or `GATEWAY_SPEC`) by `build.rs`.
#[allow(
    missing_docs,
    reason = "generated items carry doc comments derived from the spec; enum variants name paths"
)]
pub mod routes;

/// What generated code names, and nothing else: one path that generated
/// code depends on, so the runtime can move things without breaking it.
#[doc(hidden)]
pub mod __codegen {
    pub use crate::auth::hmac::{HmacAuth, HmacVerifier, HmacVersions, ServiceAuthSpec};
    pub use crate::auth::jwt::{JwtAlgorithm, JwtAuth, JwtSpec, JwtVerifier, RequireRoles};
    pub use crate::auth::token::ServiceTokenAuth;
    pub use crate::chain::{Flow, RequestCtx, RequestParts, Step};
    pub use crate::config::{StartupEnv, StartupError};
    pub use crate::outbound::OutboundIdentity;
    pub use crate::policy::breaker::{BreakerSpec, FailureRate};
    pub use crate::policy::canary::CanarySpec;
    pub use crate::policy::cors::CorsSpec;
    pub use crate::policy::credentials;
    pub use crate::policy::ratelimit::{RateKeyKind, RateLimit, RateLimitSpec};
    pub use crate::policy::retry::RetrySpec;
    pub use crate::policy::version::{DeprecatedSpec, VersionSet, VersionSpec};
    pub use crate::policy::StripCredentials;
    pub use crate::spec::{
        ClientAuthSpec, ClientCertSpec, GatewaySpec, LimitsSpec, Methods, Part, RouteSpec,
        ServiceSpec, Spec, TlsSpec,
    };
    pub use std::sync::Arc;
    pub use std::time::Duration;
}
