//! User authentication with JWTs (contract §4).
//!
//! Keys are loaded and parsed once at start-up; each algorithm in the
//! allow-list is verified only with its own kind of key, so `alg: none` and
//! algorithm confusion (an RS256 public key used as an HS256 secret) are
//! always rejected. `exp` is required; `nbf` is checked when present, `iss`
//! and `aud` when configured, with the configured leeway.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::jwt_cache::{TokenCache, Verified};
use super::revocation::Revocations;
use super::AuthFailure;
use crate::chain::{Flow, RequestCtx, RequestParts, Step, User};
use crate::config::{StartupEnv, StartupError};
use crate::error::{ErrorKind, GatewayError};

/// An algorithm of the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::upper_case_acronyms,
    reason = "the names are the JOSE algorithm names"
)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    fn jose(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// `gateway.jwt`, as compiled from the spec.
#[derive(Debug, Clone, Copy)]
pub struct JwtSpec {
    /// The allow-list.
    pub algorithms: &'static [JwtAlgorithm],
    /// Variable holding the HS256 secret.
    pub secret_env: Option<&'static str>,
    /// Variable holding the path of a PEM public key.
    pub public_key_env: Option<&'static str>,
    /// Variable holding the path of a JWKS file.
    pub jwks_env: Option<&'static str>,
    /// Required issuer.
    pub issuer: Option<&'static str>,
    /// Required audience.
    pub audience: Option<&'static str>,
    /// Clock leeway.
    pub leeway: Duration,
    /// Cookie read when there is no bearer header.
    pub cookie: Option<&'static str>,
    /// Subject claim.
    pub subject_claim: &'static str,
    /// Roles claim.
    pub roles_claim: &'static str,
    /// Tenant claim.
    pub tenant_claim: Option<&'static str>,
    /// Revocation list file.
    pub revocation_file: Option<&'static str>,
}

/// A verified user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject claim.
    pub subject: String,
    /// The roles claim.
    pub roles: Vec<String>,
    /// The tenant claim, when configured and present.
    pub tenant: Option<String>,
}

struct Key {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies tokens against the keys loaded at start-up.
pub struct JwtVerifier {
    spec: &'static JwtSpec,
    keys: Vec<Key>,
    validations: Vec<(Algorithm, Validation)>,
    revoked: Option<Revocations>,
    cache: TokenCache,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.spec.algorithms)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn read_key_file(var: &str, env: &StartupEnv) -> Result<(String, Vec<u8>), StartupError> {
    let path = env.get(var).ok_or_else(|| StartupError::MissingSecret {
        var: var.to_owned(),
        what: "the path of the JWT public key file".into(),
    })?;
    let bytes = std::fs::read(path).map_err(|e| StartupError::BadKey {
        var: var.to_owned(),
        why: format!("cannot read `{path}`: {e}"),
    })?;
    Ok((path.to_owned(), bytes))
}

impl JwtVerifier {
    /// Loads the keys the allow-list needs and the revocation list.
    ///
    /// # Errors
    /// A missing variable, an unreadable or malformed key, naming the
    /// variable; an unreadable revocation list.
    pub fn new(spec: &'static JwtSpec, env: &StartupEnv) -> Result<Self, StartupError> {
        let mut keys = Vec::new();
        for alg in spec.algorithms {
            match alg {
                JwtAlgorithm::HS256 => {
                    let var = spec.secret_env.unwrap_or("JWT_SECRET");
                    let secret = env.get(var).ok_or_else(|| StartupError::MissingSecret {
                        var: var.to_owned(),
                        what: "the HS256 JWT secret".into(),
                    })?;
                    keys.push(Key {
                        alg: Algorithm::HS256,
                        kid: None,
                        key: DecodingKey::from_secret(secret.as_bytes()),
                    });
                }
                asym => {
                    if let Some(var) = spec.public_key_env {
                        let (path, pem) = read_key_file(var, env)?;
                        let parsed = match asym {
                            JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                            JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                            _ => DecodingKey::from_ed_pem(&pem),
                        };
                        let key = parsed.map_err(|e| StartupError::BadKey {
                            var: var.to_owned(),
                            why: format!("`{path}` is not a {asym:?} PEM public key: {e}"),
                        })?;
                        keys.push(Key {
                            alg: asym.jose(),
                            kid: None,
                            key,
                        });
                    }
                }
            }
        }
        if let Some(var) = spec.jwks_env {
            keys.extend(load_jwks(var, spec, env)?);
        }
        let validations = spec
            .algorithms
            .iter()
            .map(|a| (a.jose(), validation(spec, a.jose())))
            .collect();
        let revoked = spec.revocation_file.map(Revocations::load).transpose()?;
        Ok(JwtVerifier {
            spec,
            keys,
            validations,
            revoked,
            cache: TokenCache::default(),
        })
    }

    /// [`JwtVerifier::new`], shared by every route.
    ///
    /// # Errors
    /// As [`JwtVerifier::new`].
    pub fn shared(spec: &'static JwtSpec, env: &StartupEnv) -> Result<Arc<Self>, StartupError> {
        Self::new(spec, env).map(Arc::new)
    }

    /// Re-reads the revocation list (SIGHUP).
    ///
    /// # Errors
    /// The list cannot be read; the previous list stays in force.
    pub fn reload(&self) -> Result<(), StartupError> {
        match &self.revoked {
            Some(r) => {
                let reloaded = r.reload();
                // Entries were admitted against the old list.
                self.cache.clear();
                reloaded
            }
            None => Ok(()),
        }
    }

    /// The spec this verifier was built from.
    pub fn spec(&self) -> &'static JwtSpec {
        self.spec
    }

    /// Verifies a token.
    ///
    /// # Errors
    /// The security-event reason.
    pub fn verify(&self, token: &str) -> Result<Identity, &'static str> {
        self.verify_full(token).map(|(id, _)| id)
    }

    /// [`JwtVerifier::verify`] through the cache of verified tokens: a
    /// token seen before (and not expired since) costs a hash and a
    /// compare; others are verified in full and then cached.
    ///
    /// # Errors
    /// The security-event reason.
    pub fn verify_cached(&self, token: &str) -> Result<Verified, &'static str> {
        let now = crate::time::now_unix();
        if let Some(hit) = self.cache.get(token, now) {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let (id, exp) = self.verify_full(token)?;
        let verified = Verified {
            user: Arc::new(User::new(id.subject, id.roles)),
            tenant: id.tenant,
        };
        let dead_after = exp.saturating_add(self.spec.leeway.as_secs());
        self.cache
            .insert(token, verified.clone(), dead_after, generation);
        Ok(verified)
    }

    /// Full verification; also returns `exp` (required, so always there).
    fn verify_full(&self, token: &str) -> Result<(Identity, u64), &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed_token")?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err("algorithm_not_allowed");
        };
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err("unknown_key");
        }
        let mut last = "bad_signature";
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    // Validation required `exp`; one that is not a whole
                    // number gives 0, so that token is simply never cached.
                    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    return self.identity(data.claims).map(|id| (id, exp));
                }
                Err(e) => {
                    last = reason(e.kind());
                    if last != "bad_signature" {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: Map<String, Value>) -> Result<Identity, &'static str> {
        // RFC 7519 §4.1.1: `iss` is one StringOrURI. jsonwebtoken also
        // accepts an array that contains the configured issuer
        // (`["aegis-gateway", "evil"]`), which no issuer of ours mints.
        if self.spec.issuer.is_some() && !claims.get("iss").is_some_and(Value::is_string) {
            return Err("malformed_issuer");
        }
        let subject = match claims.get(self.spec.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("missing_subject"),
        };
        if !header_safe(&subject) {
            return Err("invalid_claim_subject");
        }
        let roles: Vec<String> = match claims.get(self.spec.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or("malformed_roles"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("malformed_roles"),
        };
        if !roles.iter().all(|r| role_safe(r)) {
            return Err("invalid_claim_roles");
        }
        let tenant = match self.spec.tenant_claim.and_then(|c| claims.get(c)) {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if !t.is_empty() && header_safe(t) => Some(t.clone()),
            // A tenant the gateway cannot forward as verified must not
            // turn into no tenant: upstreams may read that as "all".
            Some(_) => return Err("invalid_claim_tenant"),
        };
        if let Some(revoked) = &self.revoked {
            let jti = claims.get("jti").and_then(Value::as_str);
            if revoked.is_revoked(jti, &subject) {
                return Err("revoked");
            }
        }
        Ok(Identity {
            subject,
            roles,
            tenant,
        })
    }
}

/// Whether a verified claim travels upstream as a header value exactly as
/// the token says (issue 13 §3): no control character (a header value
/// cannot hold one, and dropping the header instead would forward the
/// request without its verified identity), and no space or tab at either
/// end (HTTP parsers strip those, so `" admin"` would arrive as `admin`).
fn header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 || b == 0x7f) && !s.starts_with(' ') && !s.ends_with(' ')
}

/// A role travels in the comma-separated `X-User-Roles`: besides being
/// [`header_safe`], it must be one non-empty item of that list (a role
/// `"viewer,admin"` would arrive as two roles).
fn role_safe(r: &str) -> bool {
    !r.is_empty() && !r.contains(',') && header_safe(r)
}

fn validation(spec: &JwtSpec, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = spec.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = spec.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    match spec.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "bad_signature",
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not_yet_valid",
        K::InvalidIssuer => "wrong_issuer",
        K::InvalidAudience => "wrong_audience",
        K::MissingRequiredClaim(_) => "missing_claim",
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            "algorithm_not_allowed"
        }
        _ => "malformed_token",
    }
}

fn load_jwks(var: &str, spec: &JwtSpec, env: &StartupEnv) -> Result<Vec<Key>, StartupError> {
    let (path, bytes) = read_key_file(var, env)?;
    let bad = |why: String| StartupError::BadKey {
        var: var.to_owned(),
        why: format!("`{path}`: {why}"),
    };
    let set: JwkSet =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("unusable key: {e}")))?;
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => a.to_string().parse::<Algorithm>().ok(),
            (None, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
            (None, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)) => {
                Some(Algorithm::ES256)
            }
            (None, jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_)) => {
                Some(Algorithm::EdDSA)
            }
            (None, _) => None,
        };
        let Some(alg) = alg.filter(|a| {
            spec.algorithms
                .iter()
                .any(|s| s.jose() == *a && *a != Algorithm::HS256)
        }) else {
            continue;
        };
        keys.push(Key {
            alg,
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(bad("no key for an allowed algorithm".into()));
    }
    Ok(keys)
}

/// Where the token comes from: `Authorization: Bearer`, else the cookie.
/// A bearer header, when present, is the credential, even if invalid.
pub fn token_from<'h>(h: &'h HeaderMap, cookie: Option<&str>) -> Option<&'h str> {
    if let Some(auth) = h.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = auth.trim().splitn(2, ' ');
        if parts
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            return Some(parts.next().unwrap_or("").trim());
        }
    }
    let name = cookie?;
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Chain step: a valid JWT is required (401 otherwise). On success the
/// subject, roles and tenant become the request's identity.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    verifier: Arc<JwtVerifier>,
}

impl JwtAuth {
    /// A step using the shared verifier.
    pub fn new(verifier: &Arc<JwtVerifier>) -> Self {
        JwtAuth {
            verifier: verifier.clone(),
        }
    }
}

impl Step for JwtAuth {
    // The head is all this step needs, so it runs before any body is read.
    fn before_body(&self, ctx: &mut RequestCtx, req: &RequestParts) -> Flow {
        let Some(token) =
            token_from(&req.headers, self.verifier.spec.cookie).filter(|t| !t.is_empty())
        else {
            ctx.auth_failure = Some(AuthFailure::enforced("missing_token", None));
            return Flow::Respond(GatewayError::client(ErrorKind::Unauthorized(
                "Authentication required",
            )));
        };
        match self.verifier.verify_cached(token) {
            Ok(v) => {
                ctx.tenant = v.tenant.or(ctx.tenant.take());
                ctx.user = Some(v.user);
                Flow::Continue
            }
            Err(reason) => {
                ctx.auth_failure = Some(AuthFailure::enforced(reason, None));
                let message = match reason {
                    "expired" => "Token expired",
                    "revoked" => "Token revoked",
                    _ => "Invalid token",
                };
                Flow::Respond(GatewayError::client(ErrorKind::Unauthorized(message)))
            }
        }
    }

    fn on_request(&self, _: &mut RequestCtx, _: &mut RequestParts) -> Flow {
        Flow::Continue
    }
}

/// Chain step: the verified user must hold one of these roles (403).
#[derive(Debug, Clone, Copy)]
pub struct RequireRoles(pub &'static [&'static str]);

impl Step for RequireRoles {
    // The head is all this step needs, so it runs before any body is read.
    fn before_body(&self, ctx: &mut RequestCtx, _: &RequestParts) -> Flow {
        let user = ctx.user.as_ref();
        if user.is_some_and(|u| u.roles.iter().any(|r| self.0.contains(&r.as_str()))) {
            return Flow::Continue;
        }
        ctx.auth_failure = Some(AuthFailure::enforced(
            "missing_role",
            user.map(|u| u.id.clone()),
        ));
        Flow::Respond(GatewayError::client(ErrorKind::Forbidden(
            "Insufficient role",
        )))
    }

    fn on_request(&self, _: &mut RequestCtx, _: &mut RequestParts) -> Flow {
        Flow::Continue
    }
}

/// Mints an HS256 token with the spec's claim names (`gateway token`).
///
/// # Errors
/// A missing secret, or an allow-list without HS256.
pub fn mint(
    spec: &JwtSpec,
    env: &StartupEnv,
    subject: &str,
    roles: &[String],
    tenant: Option<&str>,
    ttl: Duration,
) -> Result<String, StartupError> {
    if !spec.algorithms.contains(&JwtAlgorithm::HS256) {
        return Err(StartupError::Config {
            var: "gateway.jwt.algorithms".into(),
            why: "minting needs HS256 in the allow-list".into(),
        });
    }
    let var = spec.secret_env.unwrap_or("JWT_SECRET");
    let secret = env.get(var).ok_or_else(|| StartupError::MissingSecret {
        var: var.to_owned(),
        what: "the HS256 JWT secret".into(),
    })?;
    let now = super::hmac::now_unix();
    let mut claims = Map::new();
    claims.insert(spec.subject_claim.into(), Value::from(subject));
    claims.insert(spec.roles_claim.into(), Value::from(roles.to_vec()));
    if let (Some(claim), Some(t)) = (spec.tenant_claim, tenant) {
        claims.insert(claim.into(), Value::from(t));
    }
    if let Some(iss) = spec.issuer {
        claims.insert("iss".into(), Value::from(iss));
    }
    if let Some(aud) = spec.audience {
        claims.insert("aud".into(), Value::from(aud));
    }
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl.as_secs()));
    claims.insert("jti".into(), Value::from(uuid::Uuid::new_v4().to_string()));
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| StartupError::Config {
        var: var.to_owned(),
        why: format!("cannot sign: {e}"),
    })
}
