//! HMAC-SHA256 service authentication of the gateway's callers (contract
//! §5). The canonical strings, signing, signature comparison, the nonce
//! rules and the signature verifier (window, replay cache) are the
//! `gateway-service` crate's ([`gateway_service::hmac`], re-exported
//! here): the gateway, `gateway sign`, outbound signing and services
//! verifying the gateway share that one implementation. This module adds
//! what only the gateway needs: `INTERNAL_AUTH_MODE`, secrets from the
//! spec's variables, and the [`HmacAuth`] chain step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use gateway_service::hmac::{
    body_sha256, canonical_v1, canonical_v2, fresh_nonce, now_unix, parse_signature, sign_v1,
    sign_v2, signature_matches, valid_nonce, Admits, HmacVersions, SignatureVerifier, Signed,
    V2Input, Verified,
};
use gateway_service::Clock;

use super::{secrets, AuthFailure, SigningHeaders};
use crate::chain::{Flow, RequestCtx, RequestParts, Step};
use crate::config::{StartupEnv, StartupError};
use crate::error::{ErrorKind, GatewayError};

/// `gateway.service_auth`, as compiled from the spec.
#[derive(Debug, Clone, Copy)]
pub struct ServiceAuthSpec {
    /// Allowed clock difference.
    pub window: Duration,
    /// (caller, variable holding its comma-separated secrets).
    pub callers: &'static [(&'static str, &'static str)],
    /// Variable holding the legacy shared secret(s).
    pub shared_secret_env: Option<&'static str>,
    /// Most nonces remembered at once.
    pub nonce_cache: usize,
}

/// `INTERNAL_AUTH_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reject failures (the default).
    Enforce,
    /// Log failures and forward without a caller identity.
    Audit,
    /// Skip verification and forward the claimed caller (unsafe).
    Disabled,
}

impl Mode {
    /// Reads `INTERNAL_AUTH_MODE`; `disabled` is refused when
    /// `GATEWAY_ENV=production`.
    ///
    /// # Errors
    /// An unknown mode, or `disabled` in production.
    pub fn from_env(env: &StartupEnv) -> Result<Self, StartupError> {
        let mode = match env
            .get("INTERNAL_AUTH_MODE")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("enforce") => Mode::Enforce,
            Some("audit") => Mode::Audit,
            Some("disabled") => Mode::Disabled,
            Some(other) => {
                return Err(StartupError::Config {
                    var: "INTERNAL_AUTH_MODE".into(),
                    why: format!("`{other}` is not enforce, audit or disabled"),
                })
            }
        };
        if mode == Mode::Disabled && env.get("GATEWAY_ENV") == Some("production") {
            return Err(StartupError::Config {
                var: "INTERNAL_AUTH_MODE".into(),
                why: "`disabled` is refused when GATEWAY_ENV=production".into(),
            });
        }
        Ok(mode)
    }
}

/// Verifies inbound signatures: the [`SignatureVerifier`] over every
/// caller's secrets, and the enforcement mode. Built once at start-up.
#[derive(Debug)]
pub struct HmacVerifier {
    inner: SignatureVerifier,
    mode: Mode,
}

impl HmacVerifier {
    /// Loads every caller's secrets and the mode.
    ///
    /// # Errors
    /// A caller or shared-secret variable that is unset or empty, or a bad
    /// `INTERNAL_AUTH_MODE`.
    pub fn new(spec: &ServiceAuthSpec, env: &StartupEnv) -> Result<Self, StartupError> {
        let mut map = HashMap::new();
        for (caller, var) in spec.callers {
            let s = env.get(var).map(secrets).unwrap_or_default();
            if s.is_empty() {
                return Err(StartupError::MissingSecret {
                    var: (*var).to_owned(),
                    what: format!("the HMAC secret of caller `{caller}`"),
                });
            }
            map.insert((*caller).to_owned(), s);
        }
        let shared = match spec.shared_secret_env {
            Some(var) => {
                let s = env.get(var).map(secrets).unwrap_or_default();
                if s.is_empty() {
                    return Err(StartupError::MissingSecret {
                        var: var.to_owned(),
                        what: "the shared service secret".into(),
                    });
                }
                s
            }
            None => Vec::new(),
        };
        let mode = Mode::from_env(env)?;
        if mode == Mode::Disabled {
            tracing::warn!(
                target: "security",
                "INTERNAL_AUTH_MODE=disabled: service signatures are NOT verified and claimed callers are trusted"
            );
        }
        Ok(Self::from_secrets(
            map,
            shared,
            spec.window,
            spec.nonce_cache,
            mode,
        ))
    }

    /// A verifier over known secrets (the services' side is
    /// [`gateway_service::ServiceVerifier`], over the same
    /// [`SignatureVerifier`]).
    pub fn from_secrets(
        secrets: HashMap<String, Vec<Vec<u8>>>,
        shared: Vec<Vec<u8>>,
        window: Duration,
        nonce_cache: usize,
        mode: Mode,
    ) -> Self {
        HmacVerifier {
            inner: SignatureVerifier::new(secrets, shared, window, nonce_cache),
            mode,
        }
    }

    /// Reads `clock` for [`HmacVerifier::now_unix`] (the system clock
    /// otherwise).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.inner = self.inner.with_clock(clock);
        self
    }

    /// Now, by this verifier's clock.
    pub fn now_unix(&self) -> u64 {
        self.inner.now_unix()
    }

    /// [`HmacVerifier::new`], shared by every route.
    ///
    /// # Errors
    /// As [`HmacVerifier::new`].
    pub fn shared(spec: &ServiceAuthSpec, env: &StartupEnv) -> Result<Arc<Self>, StartupError> {
        Self::new(spec, env).map(Arc::new)
    }

    /// The enforcement mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The checks that need no body: caller, admission, signature shape,
    /// timestamp. Run before a v2 route reads the body, so strangers cannot
    /// make the gateway buffer anything.
    ///
    /// # Errors
    /// The failure reason and the claimed caller, if any.
    pub fn precheck(
        &self,
        h: &SigningHeaders,
        now: u64,
        admits: &Admits<'_>,
    ) -> Result<(), (&'static str, Option<String>)> {
        self.inner.precheck(h, now, admits)
    }

    /// Verifies the signing headers of a request.
    ///
    /// # Errors
    /// The failure reason and the claimed caller, if any.
    pub fn verify(
        &self,
        h: &SigningHeaders,
        req: &Signed<'_>,
        admits: &Admits<'_>,
    ) -> Result<Verified, (&'static str, Option<String>)> {
        self.inner.verify(h, req, admits)
    }
}

/// Chain step: HMAC service authentication. Runs after rate limiting and
/// before any user authentication; its failure is 403 (503 when the replay
/// cache is full), or in audit mode a logged event and no caller identity.
#[derive(Debug, Clone)]
pub struct HmacAuth {
    verifier: Arc<HmacVerifier>,
    callers: &'static [&'static str],
    versions: HmacVersions,
    shared_secret: bool,
    mtls: bool,
}

impl HmacAuth {
    /// A step admitting `callers` with `versions`.
    pub fn new(
        verifier: &Arc<HmacVerifier>,
        callers: &'static [&'static str],
        versions: HmacVersions,
        shared_secret: bool,
    ) -> Self {
        HmacAuth {
            verifier: verifier.clone(),
            callers,
            versions,
            shared_secret,
            mtls: false,
        }
    }

    /// Also admits a caller named by the connection's verified client
    /// certificate (`service_auth.mtls: true`): such a request needs no
    /// signature. A connection whose certificate names a caller the route
    /// does not admit is refused, not asked for a signature instead, so one
    /// connection never acts as two services. Without a certificate, the
    /// signature rules apply (with no versions: refused).
    pub fn admit_mtls(mut self) -> Self {
        self.mtls = true;
        self
    }

    /// Whether the step needs the request body (v2 covers its hash).
    pub fn needs_body(&self) -> bool {
        self.versions.accepts(2)
    }
}

impl HmacAuth {
    fn admits(&self) -> Admits<'static> {
        Admits {
            callers: self.callers,
            versions: self.versions,
            shared_secret: self.shared_secret,
        }
    }

    /// Records a failure: rejected (403, or 503 when the replay cache is
    /// full) when enforcing, logged and let through without identity when
    /// auditing.
    fn fail(&self, ctx: &mut RequestCtx, reason: &'static str, caller: Option<String>) -> Flow {
        if self.verifier.mode == Mode::Audit {
            // Without identity, whatever proved it: the connection's
            // client certificate set the caller before this step ran.
            ctx.caller = None;
            ctx.auth_failure = Some(AuthFailure {
                reason,
                caller,
                mode: "audit",
            });
            return Flow::Continue;
        }
        ctx.auth_failure = Some(AuthFailure::enforced(reason, caller));
        let kind = if reason == "nonce_cache_full" {
            ErrorKind::ServiceUnavailable
        } else {
            ErrorKind::Forbidden("Service authentication failed")
        };
        Flow::Respond(GatewayError::client(kind))
    }
}

impl HmacAuth {
    /// The decision on a request that came with a client certificate, on
    /// a route that admits callers by certificate.
    fn by_certificate(&self, ctx: &mut RequestCtx) -> Option<Flow> {
        let name = ctx.client_cert.filter(|_| self.mtls)?;
        if self.callers.contains(&name) {
            ctx.caller = Some(name.to_owned());
            return Some(Flow::Continue);
        }
        Some(self.fail(ctx, "caller_not_allowed", Some(name.to_owned())))
    }
}

impl Step for HmacAuth {
    fn before_body(&self, ctx: &mut RequestCtx, _: &RequestParts) -> Flow {
        if let Some(flow) = self.by_certificate(ctx) {
            return flow;
        }
        if self.versions.0 == 0 {
            return self.fail(ctx, "missing_client_certificate", None);
        }
        if self.verifier.mode != Mode::Enforce {
            // Audit mode forwards anyway and logs once, after the full check.
            return Flow::Continue;
        }
        match self
            .verifier
            .precheck(&ctx.signing, self.verifier.now_unix(), &self.admits())
        {
            Ok(()) => {
                ctx.caller_pending = true;
                Flow::Continue
            }
            Err((reason, caller)) => self.fail(ctx, reason, caller),
        }
    }

    fn on_request(&self, ctx: &mut RequestCtx, req: &mut RequestParts) -> Flow {
        if self.mtls && ctx.client_cert.is_some() || self.versions.0 == 0 {
            // Decided in `before_body` (which let it through).
            return Flow::Continue;
        }
        let h = &ctx.signing;
        if self.verifier.mode == Mode::Disabled {
            let claimed = |v: &Option<http::HeaderValue>| {
                v.as_ref()
                    .and_then(|v| v.to_str().ok())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            ctx.caller = claimed(&h.service);
            ctx.tenant = claimed(&h.tenant);
            return Flow::Continue;
        }
        let signed = Signed {
            method: req.method.as_str(),
            path: req.uri.path(),
            path_and_query: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            body_sha256: ctx.body_sha256.as_deref(),
            now: self.verifier.now_unix(),
        };
        match self.verifier.verify(h, &signed, &self.admits()) {
            Ok(v) => {
                ctx.caller = Some(v.service);
                ctx.tenant = v.tenant;
                Flow::Continue
            }
            Err((reason, caller)) => self.fail(ctx, reason, caller),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_service::ManualClock;

    /// The gateway's verifier reads the clock it is given: a request
    /// stamped long ago verifies at that time and is stale a window later.
    #[test]
    fn the_verifier_checks_at_the_time_of_its_clock() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let secrets = HashMap::from([("billing".to_owned(), vec![b"k".to_vec()])]);
        let verifier = HmacVerifier::from_secrets(
            secrets,
            Vec::new(),
            Duration::from_secs(60),
            10,
            Mode::Enforce,
        )
        .with_clock(clock.clone());
        let sig = sign_v1(b"k", "GET", "/x", "1000000");
        let h = SigningHeaders {
            signature: Some(http::HeaderValue::from_str(&sig).unwrap()),
            service: Some(http::HeaderValue::from_static("billing")),
            timestamp: Some(http::HeaderValue::from_static("1000000")),
            nonce: None,
            tenant: None,
        };
        let admits = Admits {
            callers: &["billing"],
            versions: HmacVersions::V1,
            shared_secret: false,
        };
        let at = |now| Signed {
            method: "GET",
            path: "/x",
            path_and_query: "/x",
            body_sha256: None,
            now,
        };
        assert_eq!(verifier.now_unix(), 1_000_000);
        assert!(verifier
            .verify(&h, &at(verifier.now_unix()), &admits)
            .is_ok());
        clock.advance(61);
        let stale = verifier.verify(&h, &at(verifier.now_unix()), &admits);
        assert_eq!(stale.unwrap_err().0, "stale_timestamp");
    }
}
