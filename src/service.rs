//! For services written in Rust: check that a request really comes from
//! the gateway ([`ServiceVerifier`]), and call other services the way the
//! gateway does ([`ServiceClient`], the twin of the seed's `fetchService()`).
//!
//! Both are the gateway's own code, not copies: the verifier is the HMAC
//! verifier (window, replay cache) the gateway applies to its callers; the
//! client signs with the gateway's [`Signer`] and breaks circuits with its
//! [`CircuitBreaker`].
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

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::auth::hmac::{self, Admits, HmacVerifier, HmacVersions, Mode, Signed};
use crate::auth::{secrets, SigningHeaders};
use crate::config::{StartupEnv, StartupError, UpstreamUrl};
use crate::outbound::{Outgoing, Signer, SystemClock};
use crate::policy::breaker::{Admission, CircuitBreaker};
use crate::spec::ServiceSpec;

/// How the gateway proved itself on a verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// An HMAC v2 signature (covers method, path, query, body, tenant).
    HmacV2,
    /// An HMAC v1 signature (method, path and timestamp only).
    HmacV1,
    /// A service JWT.
    Jwt,
}

/// A request verified as coming from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCall {
    /// The gateway's name.
    pub caller: String,
    /// How it proved it.
    pub proof: Proof,
    /// The tenant, when covered by the proof (v2 only).
    pub tenant: Option<String>,
}

/// Why a request was not accepted; answer it with 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The reason, as in the gateway's security events.
    pub reason: &'static str,
}

/// Verifies the gateway's signatures and service tokens on an upstream.
pub struct ServiceVerifier {
    service: String,
    gateway: String,
    hmac: HmacVerifier,
    jwt_keys: Vec<DecodingKey>,
    window: Duration,
    accepted: Vec<Proof>,
}

impl std::fmt::Debug for ServiceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceVerifier")
            .field("service", &self.service)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl ServiceVerifier {
    /// A verifier for `service`, accepting proofs from `gateway` made with
    /// any of `secrets` (old and new during a rotation), within `window`.
    pub fn new(service: &str, gateway: &str, secrets: Vec<Vec<u8>>, window: Duration) -> Self {
        let jwt_keys = secrets
            .iter()
            .map(|s| DecodingKey::from_secret(s))
            .collect();
        let mut map = HashMap::new();
        map.insert(gateway.to_owned(), secrets);
        ServiceVerifier {
            service: service.to_owned(),
            gateway: gateway.to_owned(),
            hmac: HmacVerifier::from_secrets(map, Vec::new(), window, 100_000, Mode::Enforce),
            jwt_keys,
            window,
            accepted: vec![Proof::HmacV2, Proof::HmacV1, Proof::Jwt],
        }
    }

    /// Accepts only these proofs: a service the gateway signs with HMAC v2
    /// should not also accept the weaker v1 (`with_proofs(&[Proof::HmacV2])`).
    #[must_use]
    pub fn with_proofs(mut self, proofs: &[Proof]) -> Self {
        self.accepted = proofs.to_vec();
        self
    }

    /// [`ServiceVerifier::new`] with the secrets in `var` (comma-separated)
    /// or in the file named by `var_FILE`, and the contract's 60 s window.
    ///
    /// # Errors
    /// Neither variable is set, or the file cannot be read.
    pub fn from_env(service: &str, gateway: &str, var: &str) -> Result<Self, StartupError> {
        let env = StartupEnv::from_process();
        let file_var = format!("{var}_FILE");
        let text = match (env.get(var), env.get(&file_var)) {
            (Some(v), _) => v.to_owned(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| StartupError::BadKey {
                    var: file_var.clone(),
                    why: format!("cannot read `{path}`: {e}"),
                })?
            }
            (None, None) => {
                return Err(StartupError::MissingSecret {
                    var: format!("{var} (or {file_var})"),
                    what: "the gateway's credential for this service".into(),
                })
            }
        };
        Ok(Self::new(
            service,
            gateway,
            secrets(text.trim()),
            Duration::from_secs(60),
        ))
    }

    /// Verifies a request as received, with its whole body.
    ///
    /// # Errors
    /// The reason the proof does not hold.
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<VerifiedCall, Rejected> {
        self.verify_at(parts, body, hmac::now_unix())
    }

    /// [`ServiceVerifier::verify`] at a given time (Unix seconds).
    ///
    /// # Errors
    /// The reason the proof does not hold.
    pub fn verify_at(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: u64,
    ) -> Result<VerifiedCall, Rejected> {
        let call = self.verify_any(parts, body, now)?;
        if !self.accepted.contains(&call.proof) {
            return Err(Rejected {
                reason: "proof_not_accepted",
            });
        }
        Ok(call)
    }

    fn verify_any(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: u64,
    ) -> Result<VerifiedCall, Rejected> {
        let reject = |reason| Err(Rejected { reason });
        let signing = SigningHeaders::read(&parts.headers);
        if signing.signature.is_none() {
            return self.verify_token(parts, now);
        }
        let body_sha256 = hmac::body_sha256(body);
        let signed = Signed {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            body_sha256: Some(&body_sha256),
            now,
        };
        let callers = [self.gateway.as_str()];
        let admits = Admits {
            callers: &callers,
            versions: HmacVersions(HmacVersions::V1.0 | HmacVersions::V2.0),
            shared_secret: false,
        };
        match self.hmac.verify(&signing, &signed, &admits) {
            Ok(v) => {
                let v2 = signing
                    .signature
                    .as_ref()
                    .is_some_and(|s| s.as_bytes().starts_with(b"v2="));
                Ok(VerifiedCall {
                    caller: v.service,
                    proof: if v2 { Proof::HmacV2 } else { Proof::HmacV1 },
                    tenant: v.tenant,
                })
            }
            Err((reason, _)) => reject(reason),
        }
    }

    fn verify_token(
        &self,
        parts: &http::request::Parts,
        now: u64,
    ) -> Result<VerifiedCall, Rejected> {
        let reject = |reason| Err(Rejected { reason });
        let Some(token) = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return reject("missing_proof");
        };
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.gateway]);
        v.set_audience(&[&self.service]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        v.leeway = 0;
        // Validate exp against the given clock, not the system's.
        v.validate_exp = false;
        let claims = self
            .jwt_keys
            .iter()
            .find_map(|k| jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, k, &v).ok())
            .map(|d| d.claims);
        let Some(claims) = claims else {
            return reject("bad_service_token");
        };
        let num = |k: &str| claims.get(k).and_then(Value::as_u64);
        let (Some(iat), Some(exp)) = (num("iat"), num("exp")) else {
            return reject("bad_service_token");
        };
        if claims.get("sub").and_then(Value::as_str) != Some(self.gateway.as_str()) {
            return reject("bad_service_token");
        }
        let issued_by = now.saturating_add(self.window.as_secs());
        if exp <= now || exp.saturating_sub(iat) > 300 || iat > issued_by {
            return reject("expired_service_token");
        }
        if claims.get("jti").and_then(Value::as_str).is_none() {
            return reject("bad_service_token");
        }
        Ok(VerifiedCall {
            caller: self.gateway.clone(),
            proof: Proof::Jwt,
            tenant: None,
        })
    }
}

// === impl ServiceClient ===

/// The ids and identity a call carries to the next service.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The verified tenant, if any.
    pub tenant: Option<String>,
    /// The correlation id of the request being served (a fresh one if none).
    pub correlation_id: Option<String>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service's circuit is open; it was not contacted.
    #[error("service `{0}` is temporarily unavailable (circuit open)")]
    CircuitOpen(String),
    /// No response within the timeout.
    #[error("service `{0}` did not answer within the timeout")]
    Timeout(String),
    /// It could not be reached.
    #[error("service `{service}` could not be reached: {why}")]
    Connect {
        /// The service.
        service: String,
        /// What failed.
        why: String,
    },
    /// It answered with a non-2xx status.
    #[error("service `{service}` answered {status}")]
    Status {
        /// The service.
        service: String,
        /// The status.
        status: u16,
        /// The body it sent.
        body: Bytes,
    },
    /// Its answer was not the expected JSON.
    #[error("service `{service}` sent a body that is not the expected JSON: {why}")]
    Decode {
        /// The service.
        service: String,
        /// What failed.
        why: String,
    },
}

/// Calls another service the way the gateway does: URL from the
/// environment, the caller's signature (same [`Signer`]), tenant and
/// correlation id propagated, a fresh request id, a timeout, a circuit
/// breaker (same [`CircuitBreaker`]), and JSON decoded or a typed error.
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
pub struct ServiceClient {
    service: &'static str,
    url: UpstreamUrl,
    signer: Signer,
    breaker: Option<CircuitBreaker>,
    timeout: Duration,
    client: Client<crate::proxy::Connector, Full<Bytes>>,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
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
        let signer = Signer::new(
            caller,
            spec.name,
            spec.identity,
            env,
            std::sync::Arc::new(SystemClock),
        )?;
        let connector =
            crate::proxy::connector(spec, env, spec.connect_timeout.unwrap_or(timeout))?;
        Ok(ServiceClient {
            service: spec.name,
            url,
            signer,
            breaker: spec.breaker.map(|b| CircuitBreaker::new(spec.name, b)),
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
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
        self.call(Method::GET, path_and_query, None::<&()>, ctx)
            .await
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
        let service = || self.service.to_owned();
        let admission = self
            .breaker
            .as_ref()
            .map_or(Admission::Allowed, CircuitBreaker::admit);
        if admission == Admission::Rejected {
            return Err(ServiceError::CircuitOpen(service()));
        }
        let result = self.send(method, path_and_query, body, ctx).await;
        if let Some(b) = &self.breaker {
            match &result {
                Ok((status, _)) => b.record(admission, *status < 500),
                Err(ServiceError::Decode { .. }) => b.release(admission),
                Err(_) => b.record(admission, false),
            }
        }
        let (status, bytes) = result?;
        if !(200..300).contains(&status) {
            return Err(ServiceError::Status {
                service: service(),
                status,
                body: bytes,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ServiceError::Decode {
            service: service(),
            why: e.to_string(),
        })
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), ServiceError> {
        let service = || self.service.to_owned();
        let bytes = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| ServiceError::Decode {
                service: service(),
                why: format!("cannot encode the request body: {e}"),
            })?),
            None => Bytes::new(),
        };
        let pq = format!("{}{path_and_query}", self.url.base_path);
        let uri = format!("{}://{}{pq}", self.url.scheme, self.url.authority);
        let mut req = Request::builder().method(method.clone()).uri(uri);
        let request_id = uuid::Uuid::new_v4().to_string();
        let correlation = ctx
            .correlation_id
            .clone()
            .unwrap_or_else(|| request_id.clone());
        let headers = req.headers_mut().ok_or_else(|| ServiceError::Connect {
            service: service(),
            why: "invalid request".into(),
        })?;
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if body.is_some() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in [
            ("x-request-id", Some(request_id.as_str())),
            ("x-correlation-id", Some(correlation.as_str())),
            ("x-tenant-id", ctx.tenant.as_deref()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        let digest = hmac::body_sha256(&bytes);
        let outgoing = Outgoing {
            method: method.as_str(),
            path_and_query: &pq,
            tenant: ctx.tenant.as_deref(),
            body_sha256: Some(&digest),
        };
        self.signer
            .sign(headers, &outgoing)
            .map_err(|why| ServiceError::Connect {
                service: service(),
                why: why.into(),
            })?;
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ServiceError::Connect {
                service: service(),
                why: e.to_string(),
            })?;
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(ServiceError::Timeout(service())),
            Ok(Err(e)) => {
                return Err(ServiceError::Connect {
                    service: service(),
                    why: std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), |s| s.to_string()),
                })
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
            .await
            .map_err(|_| ServiceError::Timeout(service()))?
            .map_err(|e| ServiceError::Connect {
                service: service(),
                why: e.to_string(),
            })?
            .to_bytes();
        Ok((status, body))
    }
}
