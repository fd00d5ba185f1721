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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::auth::hmac::{self, V2Input};
use crate::config::{StartupEnv, StartupError};
use crate::headers::name;

pub use crate::spec::policies::OutboundIdentity;

/// Unix seconds, replaceable in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in Unix seconds.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        hmac::now_unix()
    }
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

fn first_secret(var: &str, value: &str, what: &str) -> Result<Vec<u8>, StartupError> {
    crate::auth::secrets(value)
        .into_iter()
        .next()
        .ok_or_else(|| StartupError::MissingSecret {
            var: var.to_owned(),
            what: what.to_owned(),
        })
}

impl Credential {
    /// Reads `var`, else the file named by `var_FILE`.
    ///
    /// # Errors
    /// Neither is set, the file cannot be read, or it is empty.
    pub fn load(var: &str, env: &StartupEnv, what: &str) -> Result<Self, StartupError> {
        let file_var = format!("{var}_FILE");
        let (source, secret) = match (env.get(var), env.get(&file_var)) {
            (Some(v), _) => (Source::Env, first_secret(var, v, what)?),
            (None, Some(path)) => (
                Source::File(path.to_owned()),
                read_file(&file_var, path, what)?,
            ),
            (None, None) => {
                return Err(StartupError::MissingSecret {
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
    pub fn reload(&self) -> Result<(), StartupError> {
        if let Source::File(path) = &self.source {
            let secret = read_file(&format!("{}_FILE", self.var), path, "a credential")?;
            self.secret.store(Arc::new(secret));
        }
        Ok(())
    }

    /// The signing secret.
    pub fn secret(&self) -> Arc<Vec<u8>> {
        self.secret.load_full()
    }
}

fn read_file(var: &str, path: &str, what: &str) -> Result<Vec<u8>, StartupError> {
    let text = std::fs::read_to_string(path).map_err(|e| StartupError::BadKey {
        var: var.to_owned(),
        why: format!("cannot read `{path}`: {e}"),
    })?;
    first_secret(var, text.trim(), what)
}

struct MintedToken {
    value: HeaderValue,
    iat: u64,
    exp: u64,
}

/// Signs requests to one upstream.
pub struct Signer {
    identity: OutboundIdentity,
    gateway: HeaderValue,
    gateway_name: &'static str,
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

/// What the signature of one upstream request covers.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Upstream method.
    pub method: &'a str,
    /// Upstream path and query, after rewriting.
    pub path_and_query: &'a str,
    /// The verified tenant, if any.
    pub tenant: Option<&'a str>,
    /// Hex SHA-256 of the body, when it was read.
    pub body_sha256: Option<&'a str>,
}

impl Signer {
    /// A signer for `service`, loading its credential.
    ///
    /// # Errors
    /// The credential cannot be loaded, naming its variable.
    pub fn new(
        gateway_name: &'static str,
        service: &'static str,
        identity: OutboundIdentity,
        env: &StartupEnv,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let what = format!("the outbound credential of service `{service}`");
        let credential = match identity {
            OutboundIdentity::Hmac { secret_env }
            | OutboundIdentity::HmacV1 { secret_env }
            | OutboundIdentity::Jwt { secret_env, .. } => {
                Some(Credential::load(secret_env, env, &what)?)
            }
            OutboundIdentity::Unsigned => None,
        };
        let gateway = HeaderValue::from_str(gateway_name).map_err(|_| StartupError::Config {
            var: "gateway.name".into(),
            why: "not a header value".into(),
        })?;
        Ok(Signer {
            identity,
            gateway,
            gateway_name,
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
    pub fn reload(&self) -> Result<(), StartupError> {
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

    /// Adds the identity headers to one upstream request attempt. Each
    /// call signs anew (fresh timestamp and nonce), so a retried attempt
    /// is never a replay.
    ///
    /// # Errors
    /// A v2 signature without the body's hash (a spec/runtime mismatch).
    pub fn sign(&self, h: &mut HeaderMap, out: &Outgoing<'_>) -> Result<(), &'static str> {
        let Some(cred) = &self.credential else {
            return Ok(());
        };
        h.insert(name::X_SERVICE_NAME, self.gateway.clone());
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
                        service: self.gateway_name,
                        tenant: out.tenant.unwrap_or(""),
                        body_sha256: body,
                    },
                );
                insert(h, name::X_INTERNAL_TIMESTAMP, &ts);
                insert(h, name::X_INTERNAL_NONCE, &nonce);
                insert(h, name::X_INTERNAL_SERVICE_AUTH, &sig);
            }
            OutboundIdentity::HmacV1 { .. } => {
                let path = out.path_and_query.split('?').next().unwrap_or("/");
                insert(h, name::X_INTERNAL_TIMESTAMP, &ts);
                insert(
                    h,
                    name::X_INTERNAL_SERVICE_AUTH,
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
            "iss": self.gateway_name,
            "sub": self.gateway_name,
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
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct ManualClock(AtomicU64);

    impl Clock for ManualClock {
        fn now_unix(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

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
        let clock = Arc::new(ManualClock(AtomicU64::new(1_000_000)));
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
        clock.0.store(1_000_000 + 239, Ordering::SeqCst);
        assert_eq!(sign()["authorization"], first["authorization"]);
        // ...and replaced once four fifths of it have passed, well before exp.
        clock.0.store(1_000_000 + 240, Ordering::SeqCst);
        let second = sign();
        assert_ne!(second["authorization"], first["authorization"]);
        assert_eq!(claims(&second)["iat"], 1_000_240);
    }

    #[test]
    fn only_signed_kinds_carry_the_gateway_name() {
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
        let signer = Signer::new("gw", "billing", identity, &env, Arc::new(SystemClock)).unwrap();
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
}
