//! For a service behind the gateway: check that a request really comes
//! from the gateway. The HMAC checks are the gateway's own
//! ([`SignatureVerifier`]: window, replay cache); service tokens are the
//! ones [`crate::Signer`] mints.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::clock::Clock;
use crate::env::{secret_text, secrets, EnvError, StartupEnv};
use crate::hmac::{self, Admits, HmacVersions, SignatureVerifier, Signed, SigningHeaders};

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

/// Verifies the gateway's signatures and service tokens on a service.
///
/// ```no_run
/// use gateway_service::ServiceVerifier;
///
/// # fn handle(parts: http::request::Parts, body: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
/// // Once, at start-up: this service is `billing`; the gateway calls itself
/// // `aegis-gateway` and signs with the secret(s) in BILLING_SERVICE_SECRET
/// // (or the file named by BILLING_SERVICE_SECRET_FILE).
/// let verifier = ServiceVerifier::from_env("billing", "aegis-gateway", "BILLING_SERVICE_SECRET")?;
///
/// // Per request, with the body as received:
/// let call = verifier.verify(&parts, &body).map_err(|r| format!("403: {}", r.reason))?;
/// println!("from {} for tenant {:?}", call.caller, call.tenant);
/// # Ok(()) }
/// ```
pub struct ServiceVerifier {
    service: String,
    gateway: String,
    hmac: SignatureVerifier,
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
    /// any of `secrets` (old and new during a rotation), within `window`,
    /// by the system clock.
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
            hmac: SignatureVerifier::new(map, Vec::new(), window, 100_000),
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

    /// Reads `clock` in [`ServiceVerifier::verify`] (tests pass a
    /// [`crate::ManualClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.hmac = self.hmac.with_clock(clock);
        self
    }

    /// [`ServiceVerifier::new`] with the secrets in `var` (comma-separated)
    /// or in the file named by `var_FILE`, and the contract's 60 s window.
    ///
    /// # Errors
    /// Neither variable is set, or the file cannot be read.
    pub fn from_env(service: &str, gateway: &str, var: &str) -> Result<Self, EnvError> {
        Self::from_startup_env(service, gateway, var, &StartupEnv::from_process())
    }

    /// [`ServiceVerifier::from_env`] in a given environment.
    ///
    /// # Errors
    /// As [`ServiceVerifier::from_env`].
    pub fn from_startup_env(
        service: &str,
        gateway: &str,
        var: &str,
        env: &StartupEnv,
    ) -> Result<Self, EnvError> {
        let text = secret_text(env, var, "the gateway's credential for this service")?;
        Ok(Self::new(
            service,
            gateway,
            secrets(&text),
            Duration::from_secs(60),
        ))
    }

    /// Verifies a request as received, with its whole body, at the time of
    /// its clock.
    ///
    /// # Errors
    /// The reason the proof does not hold.
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<VerifiedCall, Rejected> {
        self.verify_at(parts, body, self.hmac.now_unix())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::sign::{OutboundIdentity, Outgoing, Signer};

    fn request(h: http::HeaderMap, uri: &str) -> http::request::Parts {
        let mut req = http::Request::builder().uri(uri).body(()).unwrap();
        *req.headers_mut() = h;
        req.into_parts().0
    }

    fn signed(signer: &Signer, uri: &str, tenant: Option<&str>) -> http::request::Parts {
        let digest = hmac::body_sha256(b"");
        let mut h = http::HeaderMap::new();
        if let Some(t) = tenant {
            h.insert("x-tenant-id", t.parse().unwrap());
        }
        signer
            .sign(
                &mut h,
                &Outgoing {
                    method: "GET",
                    path_and_query: uri,
                    tenant,
                    body_sha256: Some(&digest),
                },
            )
            .unwrap();
        request(h, uri)
    }

    /// Signer and verifier share one hand-moved clock: the window and the
    /// replay cache are checked without waiting for time to pass.
    #[test]
    fn the_window_and_replays_follow_the_clock() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let env = StartupEnv::from_pairs([("BILLING_SECRET", "k1")]);
        let identity = OutboundIdentity::Hmac {
            secret_env: "BILLING_SECRET",
        };
        let signer = Signer::new("gw", "billing", identity, &env, clock.clone()).unwrap();
        let verifier = ServiceVerifier::from_startup_env("billing", "gw", "BILLING_SECRET", &env)
            .unwrap()
            .with_clock(clock.clone());
        let req = signed(&signer, "/v1/invoices?page=2", Some("acme"));
        let call = verifier.verify(&req, b"").unwrap();
        assert_eq!(
            call,
            VerifiedCall {
                caller: "gw".into(),
                proof: Proof::HmacV2,
                tenant: Some("acme".into()),
            }
        );
        // The same request again 30 s later: inside the window, so the
        // replay cache refuses it; 61 s later its timestamp is stale.
        clock.advance(30);
        assert_eq!(
            verifier.verify(&req, b"").unwrap_err().reason,
            "replayed_nonce"
        );
        clock.advance(31);
        assert_eq!(
            verifier.verify(&req, b"").unwrap_err().reason,
            "stale_timestamp"
        );
        // A fresh signature at the new time passes.
        let again = signed(&signer, "/v1/invoices?page=2", None);
        assert_eq!(verifier.verify(&again, b"").unwrap().tenant, None);
        // Tampering with the body is caught.
        let other = signed(&signer, "/v1/invoices", None);
        assert_eq!(
            verifier.verify(&other, b"{}").unwrap_err().reason,
            "bad_signature"
        );
    }

    #[test]
    fn service_tokens_expire_by_the_clock() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let env = StartupEnv::from_pairs([("ML_SECRET", "m1")]);
        let identity = OutboundIdentity::Jwt {
            secret_env: "ML_SECRET",
            ttl: Duration::from_secs(120),
        };
        let signer = Signer::new("gw", "ml", identity, &env, clock.clone()).unwrap();
        let verifier =
            ServiceVerifier::new("ml", "gw", vec![b"m1".to_vec()], Duration::from_secs(60))
                .with_clock(clock.clone());
        let req = signed(&signer, "/predict", None);
        assert_eq!(verifier.verify(&req, b"").unwrap().proof, Proof::Jwt);
        clock.advance(119);
        assert_eq!(verifier.verify(&req, b"").unwrap().proof, Proof::Jwt);
        clock.advance(1);
        assert_eq!(
            verifier.verify(&req, b"").unwrap_err().reason,
            "expired_service_token"
        );
        // Another audience refuses it.
        let billing = ServiceVerifier::new(
            "billing",
            "gw",
            vec![b"m1".to_vec()],
            Duration::from_secs(60),
        )
        .with_clock(clock);
        assert_eq!(
            billing.verify(&req, b"").unwrap_err().reason,
            "bad_service_token"
        );
    }

    #[test]
    fn only_the_accepted_proofs_pass() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let env = StartupEnv::from_pairs([("S", "k")]);
        let v1 = Signer::new(
            "gw",
            "svc",
            OutboundIdentity::HmacV1 { secret_env: "S" },
            &env,
            clock.clone(),
        )
        .unwrap();
        let verifier =
            ServiceVerifier::new("svc", "gw", vec![b"k".to_vec()], Duration::from_secs(60))
                .with_clock(clock);
        let req = signed(&v1, "/x", None);
        assert_eq!(verifier.verify(&req, b"").unwrap().proof, Proof::HmacV1);
        let strict = verifier.with_proofs(&[Proof::HmacV2]);
        assert_eq!(
            strict.verify(&req, b"").unwrap_err().reason,
            "proof_not_accepted"
        );
        assert_eq!(
            strict
                .verify(&request(http::HeaderMap::new(), "/x"), b"")
                .unwrap_err()
                .reason,
            "missing_proof"
        );
    }

    #[test]
    fn from_env_names_the_variables_it_needs() {
        let e = ServiceVerifier::from_startup_env("b", "gw", "B_SECRET", &StartupEnv::default())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "B_SECRET (or B_SECRET_FILE): the gateway's credential for this service is not set"
        );
    }
}
