//! Outbound identity (contract §6): proving who is calling to a service,
//! with a credential of that service's own. The gateway signs every
//! upstream request with [`Signer`]; so does [`crate::ServiceClient`].
//!
//! - `hmac`: v2 headers over the method, path and query, a fresh
//!   timestamp and nonce, the caller's name, the tenant and the body hash,
//!   signed anew for every attempt;
//! - `hmac-v1`: the older scheme, for services not yet moved;
//! - `jwt`: a short-lived HS256 service token (`iss` = `sub` = caller
//!   name, `aud` = service, `exp` at most 300 s after `iat`, a `jti`),
//!   minted once and reused until shortly before it expires;
//! - `none`: unsigned.
//!
//! Every signed request carries `X-Service-Name: <caller>` (HMAC v2 signs
//! over it); an unsigned one gets none, since a name without a proof would
//! be an unverifiable claim (contract §3). Credentials come from `VAR`,
//! else from the file named by `VAR_FILE` (the mounted-secret convention);
//! [`Signer::reload`] re-reads files.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::clock::Clock;
use crate::env::{read_file, secrets, EnvError, StartupEnv};
use crate::headers;
use crate::hmac::{self, V2Input};

/// How requests to one service are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundIdentity {
    /// HMAC v2.
    Hmac {
        /// Variable holding the credential.
        secret_env: &'static str,
    },
    /// HMAC v1.
    HmacV1 {
        /// Variable holding the credential.
        secret_env: &'static str,
    },
    /// A short-lived service JWT.
    Jwt {
        /// Variable holding the credential.
        secret_env: &'static str,
        /// Token lifetime (at most 300 s).
        ttl: Duration,
    },
    /// Unsigned.
    Unsigned,
}

#[derive(Debug, Clone)]
enum Source {
    Env,
    File(String),
}

/// A credential read from `VAR` or from the file `VAR_FILE` names. When it
/// holds several comma-separated secrets, the first one signs (receivers
/// accept all of theirs, so a new secret can be rolled out ahead).
pub struct Credential {
    var: String,
    source: Source,
    secret: ArcSwap<Vec<u8>>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("var", &self.var)
            .finish_non_exhaustive()
    }
}

fn first_secret(var: &str, value: &str, what: &str) -> Result<Vec<u8>, EnvError> {
    secrets(value)
        .into_iter()
        .next()
        .ok_or_else(|| EnvError::MissingSecret {
            var: var.to_owned(),
            what: what.to_owned(),
        })
}

fn read_secret_file(var: &str, path: &str, what: &str) -> Result<Vec<u8>, EnvError> {
    let text = read_file(var, path)?;
    first_secret(var, text.trim(), what)
}

impl Credential {
    /// Reads `var`, else the file named by `var_FILE`.
    ///
    /// # Errors
    /// Neither is set, the file cannot be read, or it is empty.
    pub fn load(var: &str, env: &StartupEnv, what: &str) -> Result<Self, EnvError> {
        let file_var = format!("{var}_FILE");
        let (source, secret) = match (env.get(var), env.get(&file_var)) {
            (Some(v), _) => (Source::Env, first_secret(var, v, what)?),
            (None, Some(path)) => (
                Source::File(path.to_owned()),
                read_secret_file(&file_var, path, what)?,
            ),
            (None, None) => {
                return Err(EnvError::MissingSecret {
                    var: format!("{var} (or {file_var})"),
                    what: what.to_owned(),
                })
            }
        };
        Ok(Credential {
            var: var.to_owned(),
            source,
            secret: ArcSwap::from_pointee(secret),
        })
    }

    /// Re-reads a file-based credential; an environment value cannot change.
    ///
    /// # Errors
    /// The file cannot be read or is empty; the old secret stays in use.
    pub fn reload(&self) -> Result<(), EnvError> {
        if let Source::File(path) = &self.source {
            let secret = read_secret_file(&format!("{}_FILE", self.var), path, "a credential")?;
            self.secret.store(Arc::new(secret));
        }
        Ok(())
    }

    /// The signing secret.
    pub fn secret(&self) -> Arc<Vec<u8>> {
        self.secret.load_full()
    }
}

struct MintedToken {
    value: HeaderValue,
    iat: u64,
    exp: u64,
}

/// Signs requests to one service.
pub struct Signer {
    identity: OutboundIdentity,
    caller: HeaderValue,
    caller_name: &'static str,
    service: &'static str,
    credential: Option<Credential>,
    token: ArcSwap<Option<MintedToken>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("service", &self.service)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What the signature of one request covers.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Method.
    pub method: &'a str,
    /// Path and query, as sent (for the gateway: after rewriting).
    pub path_and_query: &'a str,
    /// The verified tenant, if any.
    pub tenant: Option<&'a str>,
    /// Hex SHA-256 of the body, when it was read.
    pub body_sha256: Option<&'a str>,
}

impl Signer {
    /// A signer for requests from `caller` (the gateway's name, or the
    /// calling service's) to `service`, loading its credential; times come
    /// from `clock`.
    ///
    /// # Errors
    /// The credential cannot be loaded, naming its variable.
    pub fn new(
        caller: &'static str,
        service: &'static str,
        identity: OutboundIdentity,
        env: &StartupEnv,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EnvError> {
        let what = format!("the outbound credential of service `{service}`");
        let credential = match identity {
            OutboundIdentity::Hmac { secret_env }
            | OutboundIdentity::HmacV1 { secret_env }
            | OutboundIdentity::Jwt { secret_env, .. } => {
                Some(Credential::load(secret_env, env, &what)?)
            }
            OutboundIdentity::Unsigned => None,
        };
        let caller_value = HeaderValue::from_str(caller).map_err(|_| EnvError::Config {
            var: "gateway.name".into(),
            why: "not a header value".into(),
        })?;
        Ok(Signer {
            identity,
            caller: caller_value,
            caller_name: caller,
            service,
            credential,
            token: ArcSwap::from_pointee(None),
            clock,
        })
    }

    /// Re-reads a file-based credential (SIGHUP); a new secret also drops
    /// the cached service token.
    ///
    /// # Errors
    /// As [`Credential::reload`].
    pub fn reload(&self) -> Result<(), EnvError> {
        if let Some(c) = &self.credential {
            c.reload()?;
            self.token.store(Arc::new(None));
        }
        Ok(())
    }

    /// Whether signing needs the body's hash.
    pub fn needs_body(&self) -> bool {
        matches!(self.identity, OutboundIdentity::Hmac { .. })
    }

    /// Adds the identity headers to one request attempt. Each call signs
    /// anew (fresh timestamp and nonce), so a retried attempt is never a
    /// replay.
    ///
    /// # Errors
    /// A v2 signature without the body's hash (a spec/runtime mismatch).
    pub fn sign(&self, h: &mut HeaderMap, out: &Outgoing<'_>) -> Result<(), &'static str> {
        let Some(cred) = &self.credential else {
            return Ok(());
        };
        h.insert(headers::X_SERVICE_NAME, self.caller.clone());
        let secret = cred.secret();
        let now = self.clock.now_unix();
        let ts = now.to_string();
        match self.identity {
            OutboundIdentity::Hmac { .. } => {
                let body = out
                    .body_sha256
                    .ok_or("the body was not read for an HMAC v2 upstream")?;
                let nonce = hmac::fresh_nonce();
                let sig = hmac::sign_v2(
                    &secret,
                    &V2Input {
                        method: out.method,
                        path_and_query: out.path_and_query,
                        timestamp: &ts,
                        nonce: &nonce,
                        service: self.caller_name,
                        tenant: out.tenant.unwrap_or(""),
                        body_sha256: body,
                    },
                );
                insert(h, headers::X_INTERNAL_TIMESTAMP, &ts);
                insert(h, headers::X_INTERNAL_NONCE, &nonce);
                insert(h, headers::X_INTERNAL_SERVICE_AUTH, &sig);
            }
            OutboundIdentity::HmacV1 { .. } => {
                let path = out.path_and_query.split('?').next().unwrap_or("/");
                insert(h, headers::X_INTERNAL_TIMESTAMP, &ts);
                insert(
                    h,
                    headers::X_INTERNAL_SERVICE_AUTH,
                    &hmac::sign_v1(&secret, out.method, path, &ts),
                );
            }
            OutboundIdentity::Jwt { ttl, .. } => {
                let token = self.token(&secret, now, ttl)?;
                h.insert(http::header::AUTHORIZATION, token);
            }
            OutboundIdentity::Unsigned => {}
        }
        Ok(())
    }

    /// The cached service token, re-minted once four fifths of its life
    /// have passed, so it is never minted per request.
    fn token(&self, secret: &[u8], now: u64, ttl: Duration) -> Result<HeaderValue, &'static str> {
        let ttl = ttl.as_secs().clamp(1, 300);
        if let Some(t) = self.token.load().as_ref() {
            if now >= t.iat && now < t.iat + ttl * 4 / 5 && now < t.exp {
                return Ok(t.value.clone());
            }
        }
        let claims = serde_json::json!({
            "iss": self.caller_name,
            "sub": self.caller_name,
            "aud": self.service,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let jwt = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .map_err(|_| "cannot sign the service token")?;
        let value = HeaderValue::from_str(&format!("Bearer {jwt}")).map_err(|_| "bad token")?;
        self.token.store(Arc::new(Some(MintedToken {
            value: value.clone(),
            iat: now,
            exp: now + ttl,
        })));
        Ok(value)
    }
}

fn insert(h: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};

    fn claims(h: &HeaderMap) -> serde_json::Value {
        use base64::Engine as _;
        let v = h["authorization"].to_str().unwrap();
        let payload = v
            .strip_prefix("Bearer ")
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn service_tokens_are_reused_then_reminted_before_expiry() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let env = StartupEnv::from_pairs([("SVC_SECRET", "s")]);
        let identity = OutboundIdentity::Jwt {
            secret_env: "SVC_SECRET",
            ttl: Duration::from_secs(300),
        };
        let signer = Signer::new("gw", "billing", identity, &env, clock.clone()).unwrap();
        let out = Outgoing {
            method: "GET",
            path_and_query: "/x",
            tenant: None,
            body_sha256: None,
        };
        let sign = || {
            let mut h = HeaderMap::new();
            signer.sign(&mut h, &out).unwrap();
            h
        };
        let first = sign();
        let c = claims(&first);
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
            (Some("gw"), Some("gw"), Some("billing"))
        );
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
        assert!(c["jti"].is_string());
        assert_eq!(first["x-service-name"], "gw");
        // Reused for most of its life...
        clock.set(1_000_000 + 239);
        assert_eq!(sign()["authorization"], first["authorization"]);
        // ...and replaced once four fifths of it have passed, well before exp.
        clock.set(1_000_000 + 240);
        let second = sign();
        assert_ne!(second["authorization"], first["authorization"]);
        assert_eq!(claims(&second)["iat"], 1_000_240);
    }

    #[test]
    fn hmac_timestamps_come_from_the_clock() {
        let clock = Arc::new(ManualClock::new(1_234_567));
        let env = StartupEnv::from_pairs([("SVC_SECRET", "s")]);
        let digest = hmac::body_sha256(b"");
        let out = Outgoing {
            method: "GET",
            path_and_query: "/x?y",
            tenant: None,
            body_sha256: Some(&digest),
        };
        for identity in [
            OutboundIdentity::Hmac {
                secret_env: "SVC_SECRET",
            },
            OutboundIdentity::HmacV1 {
                secret_env: "SVC_SECRET",
            },
        ] {
            let signer = Signer::new("gw", "svc", identity, &env, clock.clone()).unwrap();
            let mut h = HeaderMap::new();
            signer.sign(&mut h, &out).unwrap();
            assert_eq!(h["x-internal-timestamp"], "1234567", "{identity:?}");
        }
        let v1 = Signer::new(
            "gw",
            "svc",
            OutboundIdentity::HmacV1 {
                secret_env: "SVC_SECRET",
            },
            &env,
            clock.clone(),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        v1.sign(&mut h, &out).unwrap();
        assert_eq!(
            h["x-internal-service-auth"],
            hmac::sign_v1(b"s", "GET", "/x", "1234567").as_str(),
            "v1 signs the path without the query"
        );
    }

    #[test]
    fn only_signed_kinds_carry_the_caller_name() {
        let env = StartupEnv::from_pairs([("SVC_SECRET", "s")]);
        let digest = hmac::body_sha256(b"");
        let out = Outgoing {
            method: "GET",
            path_and_query: "/x",
            tenant: None,
            body_sha256: Some(&digest),
        };
        let secret_env = "SVC_SECRET";
        let ttl = Duration::from_secs(60);
        for (identity, named) in [
            (OutboundIdentity::Hmac { secret_env }, true),
            (OutboundIdentity::HmacV1 { secret_env }, true),
            (OutboundIdentity::Jwt { secret_env, ttl }, true),
            (OutboundIdentity::Unsigned, false),
        ] {
            let signer = Signer::new("gw", "svc", identity, &env, Arc::new(SystemClock)).unwrap();
            let mut h = HeaderMap::new();
            signer.sign(&mut h, &out).unwrap();
            assert_eq!(h.contains_key("x-service-name"), named, "{identity:?}");
        }
    }

    #[test]
    fn hmac_signatures_are_fresh_per_attempt() {
        let env = StartupEnv::from_pairs([("SVC_SECRET", "s")]);
        let identity = OutboundIdentity::Hmac {
            secret_env: "SVC_SECRET",
        };
        let clock = Arc::new(ManualClock::new(1_000_000));
        let signer = Signer::new("gw", "billing", identity, &env, clock).unwrap();
        let digest = hmac::body_sha256(b"");
        let out = Outgoing {
            method: "POST",
            path_and_query: "/x?y=1",
            tenant: Some("t"),
            body_sha256: Some(&digest),
        };
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        signer.sign(&mut a, &out).unwrap();
        signer.sign(&mut b, &out).unwrap();
        assert_ne!(a["x-internal-nonce"], b["x-internal-nonce"]);
        assert_ne!(a["x-internal-service-auth"], b["x-internal-service-auth"]);
        let without_body = Outgoing {
            body_sha256: None,
            ..out
        };
        assert!(signer.sign(&mut HeaderMap::new(), &without_body).is_err());
    }

    #[test]
    fn a_missing_credential_names_both_variables() {
        let identity = OutboundIdentity::Hmac {
            secret_env: "SVC_SECRET",
        };
        let e = Signer::new(
            "gw",
            "svc",
            identity,
            &StartupEnv::default(),
            Arc::new(SystemClock),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "SVC_SECRET (or SVC_SECRET_FILE): the outbound credential of service `svc` is not set"
        );
    }
}
