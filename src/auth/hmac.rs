//! HMAC-SHA256 service signing, exactly as contract §5.
//!
//! - v1: `METHOD\nPATH\nTIMESTAMP`, PATH without the query; header value is
//!   the bare lowercase hex signature.
//! - v2: `v2\nMETHOD\nPATH_AND_QUERY\nTIMESTAMP\nNONCE\nSERVICE\nTENANT\nBODY_SHA256`,
//!   TENANT empty when absent, BODY_SHA256 the lowercase hex SHA-256 of the
//!   body (of the empty string when there is none); header value `v2=<hex>`.
//!
//! Signing is used by `gateway sign`, the tests and outbound signing;
//! verification by the [`HmacAuth`] chain step. One implementation of each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::nonce::{NonceCache, Seen};
use super::{secrets, AuthFailure, SigningHeaders};
use crate::chain::{Flow, RequestCtx, RequestParts, Step};
use crate::config::{StartupEnv, StartupError};
use crate::error::{ErrorKind, GatewayError};

type HmacSha256 = Hmac<Sha256>;

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

/// Which signature versions a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmacVersions(pub u8);

impl HmacVersions {
    /// v1 signatures.
    pub const V1: HmacVersions = HmacVersions(1);
    /// v2 signatures.
    pub const V2: HmacVersions = HmacVersions(2);

    /// Whether `v` (1 or 2) is accepted.
    pub fn accepts(self, v: u8) -> bool {
        self.0 & v != 0
    }
}

/// Everything a v2 signature covers.
#[derive(Debug, Clone, Copy)]
pub struct V2Input<'a> {
    /// Request method.
    pub method: &'a str,
    /// Path and query, as sent.
    pub path_and_query: &'a str,
    /// Unix seconds, as sent.
    pub timestamp: &'a str,
    /// The `X-Internal-Nonce` value.
    pub nonce: &'a str,
    /// The calling service (`X-Service-Name`).
    pub service: &'a str,
    /// The tenant (`X-Tenant-Id`), empty when absent.
    pub tenant: &'a str,
    /// Lowercase hex SHA-256 of the body.
    pub body_sha256: &'a str,
}

/// The v1 canonical string.
pub fn canonical_v1(method: &str, path: &str, timestamp: &str) -> String {
    join_lines(&[method, path, timestamp])
}

/// The v2 canonical string.
pub fn canonical_v2(i: &V2Input<'_>) -> String {
    join_lines(&[
        "v2",
        i.method,
        i.path_and_query,
        i.timestamp,
        i.nonce,
        i.service,
        i.tenant,
        i.body_sha256,
    ])
}

/// `parts` joined by `\n`, in one allocation of the exact size (`format!`
/// grows its buffer several times for a string this long).
fn join_lines(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(p);
    }
    out
}

/// Lowercase hex SHA-256 of the empty body: most requests have none.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lowercase hex SHA-256 of a body.
pub fn body_sha256(body: &[u8]) -> String {
    if body.is_empty() {
        return EMPTY_SHA256.to_owned();
    }
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &Sha256::digest(body).into());
    out
}

/// Appends the lowercase hex of a 32-byte digest (the `hex` crate's
/// encoder goes through a `char` iterator, several times slower, and is on
/// every signed request).
fn push_hex(out: &mut String, digest: &[u8; 32]) {
    let mut buf = [0u8; 64];
    crate::ids::hex_into(&mut buf, digest);
    // Only hex digits were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

fn mac(secret: &[u8], canonical: &str) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(canonical.as_bytes());
    m
}

/// The v1 header value: bare lowercase hex.
pub fn sign_v1(secret: &[u8], method: &str, path: &str, timestamp: &str) -> String {
    let mut out = String::with_capacity(64);
    let tag = mac(secret, &canonical_v1(method, path, timestamp)).finalize();
    push_hex(&mut out, &tag.into_bytes().into());
    out
}

/// The v2 header value: `v2=<lowercase hex>`.
pub fn sign_v2(secret: &[u8], input: &V2Input<'_>) -> String {
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v2=");
    let tag = mac(secret, &canonical_v2(input)).finalize();
    push_hex(&mut out, &tag.into_bytes().into());
    out
}

/// A fresh nonce: 32 characters of `A-Za-z0-9_-` from 192 random bits.
pub fn fresh_nonce() -> String {
    let (a, b) = (
        uuid::Uuid::new_v4().as_u128(),
        uuid::Uuid::new_v4().as_u128(),
    );
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..32)
        .map(|i| {
            let bits = if i < 16 {
                a >> (i * 6)
            } else {
                b >> ((i - 16) * 6)
            };
            ALPHABET[(bits & 63) as usize] as char
        })
        .collect()
}

/// `16..=128` characters of `A-Za-z0-9_-`.
pub fn valid_nonce(n: &[u8]) -> bool {
    (16..=128).contains(&n.len())
        && n.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The version and raw bytes of a signature header: `v2=<64 hex>` or a
/// bare 64-hex v1 signature.
fn parse_signature(sig: &str) -> Result<(u8, Vec<u8>), &'static str> {
    let (version, hex_sig) = match sig.strip_prefix("v2=") {
        Some(rest) => (2, rest),
        None => (1, sig),
    };
    match hex::decode(hex_sig) {
        Ok(bytes) if bytes.len() == 32 => Ok((version, bytes)),
        _ => Err("malformed_signature"),
    }
}

fn text(v: &Option<http::HeaderValue>) -> Option<&str> {
    v.as_ref().and_then(|v| v.to_str().ok())
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

/// A verified calling service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The service name.
    pub service: String,
    /// The tenant, from a v2 signature only.
    pub tenant: Option<String>,
}

/// Verifies inbound signatures: per-caller secrets, the legacy shared
/// secret, the window and the nonce cache. Built once at start-up.
#[derive(Debug)]
pub struct HmacVerifier {
    secrets: HashMap<String, Vec<Vec<u8>>>,
    shared: Vec<Vec<u8>>,
    window_s: u64,
    nonces: NonceCache,
    mode: Mode,
}

/// The request facts a signature is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// Method as received.
    pub method: &'a str,
    /// Path as received, without the query.
    pub path: &'a str,
    /// Path and query as received.
    pub path_and_query: &'a str,
    /// Hex SHA-256 of the body, when it was read.
    pub body_sha256: Option<&'a str>,
    /// Unix seconds now.
    pub now: u64,
}

/// What a route admits.
#[derive(Debug, Clone, Copy)]
pub struct Admits<'a> {
    /// Callers the route admits.
    pub callers: &'a [&'a str],
    /// Versions the route accepts.
    pub versions: HmacVersions,
    /// Whether the legacy shared secret is accepted.
    pub shared_secret: bool,
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

    /// A verifier over known secrets (for services verifying the gateway:
    /// [`crate::service::ServiceVerifier`]).
    pub fn from_secrets(
        secrets: HashMap<String, Vec<Vec<u8>>>,
        shared: Vec<Vec<u8>>,
        window: Duration,
        nonce_cache: usize,
        mode: Mode,
    ) -> Self {
        let window_s = window.as_secs();
        HmacVerifier {
            secrets,
            shared,
            window_s,
            // A request stamped `window` ahead stays acceptable until `2 *
            // window` after it first arrived, that last second included.
            // Saturating: `ServiceVerifier::new` takes any window.
            nonces: NonceCache::new(nonce_cache, window_s.saturating_mul(2).saturating_add(1)),
            mode,
        }
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
        let Some(service) = text(&h.service).filter(|s| !s.is_empty()) else {
            return Err(("missing_service_name", None));
        };
        let fail = |reason| Err((reason, Some(service.to_owned())));
        let Some(sig) = text(&h.signature) else {
            return fail("missing_signature");
        };
        let version = match parse_signature(sig) {
            Ok((v, _)) => v,
            Err(reason) => return fail(reason),
        };
        if !admits.versions.accepts(version) {
            return fail("version_not_allowed");
        }
        let allowed = admits.callers.contains(&service);
        let known = self.secrets.contains_key(service) || (admits.shared_secret && allowed);
        if !known {
            return fail("unknown_service");
        }
        if !allowed {
            return fail("service_not_allowed");
        }
        match text(&h.timestamp).map(str::parse::<u64>) {
            None => fail("missing_timestamp"),
            Some(Err(_)) => fail("malformed_timestamp"),
            Some(Ok(ts)) if now.abs_diff(ts) > self.window_s => fail("stale_timestamp"),
            Some(Ok(_)) => Ok(()),
        }
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
        // Caller, admission, signature shape and timestamp first.
        self.precheck(h, req.now, admits)?;
        let service = text(&h.service).unwrap_or_default();
        let fail = |reason| Err((reason, Some(service.to_owned())));
        let sig = text(&h.signature).unwrap_or_default();
        let ts = text(&h.timestamp).unwrap_or_default();
        let (version, sig_bytes) = match parse_signature(sig) {
            Ok(parsed) => parsed,
            Err(reason) => return fail(reason),
        };
        let own = self.secrets.get(service);
        // The tenant as sent, any UTF-8: the signer signs a JWT's tenant
        // claim as is, non-ASCII included. A v2 tenant header that is not
        // UTF-8 cannot have been signed; it is refused, not read as absent.
        let tenant = match h.tenant.as_ref().map(|v| std::str::from_utf8(v.as_bytes())) {
            None => "",
            Some(Ok(t)) => t,
            Some(Err(_)) if version == 2 => return fail("malformed_tenant"),
            Some(Err(_)) => "",
        };
        let canonical = if version == 1 {
            canonical_v1(req.method, req.path, ts)
        } else {
            let Some(nonce) = text(&h.nonce) else {
                return fail("missing_nonce");
            };
            if !valid_nonce(nonce.as_bytes()) {
                return fail("malformed_nonce");
            }
            let Some(body) = req.body_sha256 else {
                return fail("body_not_read");
            };
            canonical_v2(&V2Input {
                method: req.method,
                path_and_query: req.path_and_query,
                timestamp: ts,
                nonce,
                service,
                tenant,
                body_sha256: body,
            })
        };
        let shared: &[Vec<u8>] = if admits.shared_secret {
            &self.shared
        } else {
            &[]
        };
        let candidates = own.map(Vec::as_slice).unwrap_or(&[]).iter().chain(shared);
        // `verify_slice` compares in constant time.
        let ok = candidates
            .into_iter()
            .any(|secret| mac(secret, &canonical).verify_slice(&sig_bytes).is_ok());
        if !ok {
            return fail("bad_signature");
        }
        if version == 2 {
            // Only signed requests reach the cache, so strangers cannot fill it.
            let nonce = text(&h.nonce).unwrap_or("");
            match self
                .nonces
                .check(service.as_bytes(), nonce.as_bytes(), req.now)
            {
                Seen::Fresh => {}
                Seen::Replay => return fail("replayed_nonce"),
                Seen::Full => return fail("nonce_cache_full"),
            }
        }
        Ok(Verified {
            service: service.to_owned(),
            tenant: (version == 2 && !tenant.is_empty()).then(|| tenant.to_owned()),
        })
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
            .precheck(&ctx.signing, now_unix(), &self.admits())
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
            now: now_unix(),
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

    #[test]
    fn body_hashes_are_lowercase_hex_sha256_the_empty_one_included() {
        assert_eq!(body_sha256(b""), hex::encode(Sha256::digest(b"")));
        assert_eq!(
            body_sha256(br#"{"k":1}"#),
            hex::encode(Sha256::digest(br#"{"k":1}"#))
        );
        let mut digest = [0xff; 32];
        digest[..3].copy_from_slice(&[0x00, 0x0f, 0xa5]);
        let mut s = String::from("v2=");
        push_hex(&mut s, &digest);
        assert_eq!(s, format!("v2=000fa5{}", "ff".repeat(29)));
    }
}
