//! For services written in Rust: check that a request really comes from
//! the gateway ([`ServiceVerifier`]), and call other services the way the
//! gateway does ([`ServiceClient`], the twin of the seed's `fetchService()`).
//!
//! The verifier, the signing and the client are the `gateway-service`
//! crate's, re-exported here; a service that needs nothing else depends on
//! that crate alone (no server, TLS or rate limiting):
//! `gateway_service::ServiceVerifier`. What this module adds is the
//! gateway's way of building a client from a compiled [`ServiceSpec`]:
//! the upstream URL rules (no plain HTTP in production), the TLS connector
//! and the gateway's [`CircuitBreaker`].
//!
//! ```no_run
//! use gateway::service::ServiceVerifier;
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

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use gateway_service::client::{Admission, BaseUrl, Breaker};
pub use gateway_service::{
    CallContext, Proof, Rejected, ServiceError, ServiceVerifier, VerifiedCall,
};

use crate::config::{StartupEnv, StartupError};
use crate::outbound::{Signer, SystemClock};
use crate::policy::breaker::{self, CircuitBreaker};
use crate::spec::ServiceSpec;

/// Calls another service the way the gateway does: URL from the
/// environment, the caller's signature (same [`Signer`]), tenant and
/// correlation id propagated, a fresh request id, a timeout, a circuit
/// breaker (same [`CircuitBreaker`]), and JSON decoded or a typed error.
/// The calls are [`gateway_service::ServiceClient`]'s; this type builds
/// one from a [`ServiceSpec`] with the gateway's connector.
///
/// ```no_run
/// use gateway::service::{CallContext, ServiceClient};
/// use gateway::spec::ServiceSpec;
/// use gateway::outbound::OutboundIdentity;
///
/// static INSIGHTS: ServiceSpec = ServiceSpec {
///     name: "insights",
///     url_env: "INSIGHTS_SERVICE_URL",
///     default_url: "http://localhost:3005",
///     identity: OutboundIdentity::Hmac { secret_env: "INSIGHTS_SERVICE_SECRET" },
///     allow_plaintext: false,
///     breaker: None,
///     tls_ca_env: None,
///     tls_client_cert: None,
///     connect_timeout: None,
///     allow_client_headers: &[],
/// };
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let env = gateway::config::StartupEnv::from_process();
/// let insights = ServiceClient::new("api-gateway", &INSIGHTS, std::time::Duration::from_secs(5), &env)?;
/// let ctx = CallContext { tenant: Some("acme".into()), correlation_id: None };
/// let trends: serde_json::Value = insights.get("/api/v1/trends?window=7d", &ctx).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ServiceClient {
    inner: gateway_service::ServiceClient<crate::proxy::Connector>,
}

impl ServiceClient {
    /// A client for `spec`, calling as `caller`.
    ///
    /// # Errors
    /// An unusable URL or a missing credential, naming the variable.
    pub fn new(
        caller: &'static str,
        spec: &'static ServiceSpec,
        timeout: Duration,
        env: &StartupEnv,
    ) -> Result<Self, StartupError> {
        let url = crate::proxy::checked_url(spec, env)?;
        let signer = Signer::new(caller, spec.name, spec.identity, env, Arc::new(SystemClock))?;
        let connector =
            crate::proxy::connector(spec, env, spec.connect_timeout.unwrap_or(timeout))?;
        let mut inner = gateway_service::ServiceClient::with_connector(
            spec.name, url, signer, timeout, connector,
        );
        if let Some(b) = spec.breaker {
            inner = inner.with_breaker(GatewayBreaker(CircuitBreaker::new(spec.name, b)));
        }
        Ok(ServiceClient { inner })
    }

    /// `GET path_and_query`, decoding JSON.
    ///
    /// # Errors
    /// See [`ServiceError`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        ctx: &CallContext,
    ) -> Result<T, ServiceError> {
        self.inner.get(path_and_query, ctx).await
    }

    /// Calls the service with an optional JSON body and decodes its JSON
    /// answer.
    ///
    /// # Errors
    /// See [`ServiceError`].
    pub async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        ctx: &CallContext,
    ) -> Result<T, ServiceError> {
        self.inner.call(method, path_and_query, body, ctx).await
    }
}

/// The gateway's circuit breaker, as the service client's [`Breaker`].
#[derive(Debug)]
struct GatewayBreaker(CircuitBreaker);

fn to_gateway(a: Admission) -> breaker::Admission {
    match a {
        Admission::Allowed => breaker::Admission::Allowed,
        Admission::Probe => breaker::Admission::Probe,
        Admission::Rejected => breaker::Admission::Rejected,
    }
}

impl Breaker for GatewayBreaker {
    fn admit(&self) -> Admission {
        match self.0.admit() {
            breaker::Admission::Allowed => Admission::Allowed,
            breaker::Admission::Probe => Admission::Probe,
            breaker::Admission::Rejected => Admission::Rejected,
        }
    }

    fn record(&self, admission: Admission, ok: bool) {
        self.0.record(to_gateway(admission), ok);
    }

    fn release(&self, admission: Admission) {
        self.0.release(to_gateway(admission));
    }
}
