//! For upstream services written in Rust: check that a request really
//! comes from the gateway ([`ServiceVerifier`]).
//!
//! It is the gateway's own verification code (the same HMAC verifier,
//! window and replay cache it applies to its callers), configured with the
//! credential the gateway signs this service's requests with.
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

use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::auth::hmac::{self, Admits, HmacVerifier, HmacVersions, Mode, Signed};
use crate::auth::{secrets, SigningHeaders};
use crate::config::{StartupEnv, StartupError};

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
        }
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
        if exp <= now || exp.saturating_sub(iat) > 300 || iat > now + self.window.as_secs() {
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
