//! The identity part of the spec model: JWT verification settings, HMAC
//! service-auth settings, and what a policy asks of a caller.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `gateway.jwt`: how user tokens are verified (contract §4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Allowed algorithms: `HS256`, `RS256`, `ES256`, `EdDSA`.
    pub algorithms: Vec<String>,
    /// Variable holding the HS256 secret.
    pub secret_env: Option<String>,
    /// Variable holding the path of a PEM public key (RS256, ES256, EdDSA).
    pub public_key_env: Option<String>,
    /// Variable holding the path of a JWKS file.
    pub jwks_env: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock leeway for `exp` and `nbf`, at most `60s`. Default `0s`.
    pub leeway: Option<String>,
    /// Cookie read when there is no `Authorization` header.
    pub cookie: Option<String>,
    /// Claim names.
    #[serde(default)]
    pub claims: Claims,
    /// File of revoked token ids and subjects, re-read on SIGHUP.
    pub revocation_file: Option<String>,
}

/// Which claims carry the subject, roles and tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Subject claim; default `sub`.
    pub subject: Option<String>,
    /// Roles claim (array of strings); default `roles`.
    pub roles: Option<String>,
    /// Tenant claim; none by default.
    pub tenant: Option<String>,
}

/// `gateway.service_auth`: HMAC service signing (contract §5).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAuth {
    /// Allowed clock difference; default `60s`.
    pub window: Option<String>,
    /// Calling services and the variable holding each one's secret(s).
    #[serde(default, deserialize_with = "crate::spec::unique_map")]
    pub callers: BTreeMap<String, String>,
    /// Variable holding the legacy gateway-wide shared secret.
    pub shared_secret_env: Option<String>,
    /// Most nonces remembered at once; default 100000.
    pub nonce_cache: Option<u64>,
}

/// `gateway.tls`: TLS termination (contract §8).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Variable holding the path of the PEM certificate chain.
    pub cert_env: String,
    /// Variable holding the path of the PEM private key.
    pub key_env: String,
    /// Client-certificate verification (mTLS).
    pub client_auth: Option<ClientAuth>,
}

/// `gateway.tls.client_auth`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// Variable holding the path of the PEM bundle of client CAs.
    pub ca_env: String,
    /// `required` or `optional`. Default `required`.
    pub mode: Option<ClientCertMode>,
    /// Certificate identity (SAN URI or DNS name) to calling service.
    #[serde(default, deserialize_with = "crate::spec::unique_map")]
    pub identities: BTreeMap<String, String>,
}

/// Whether a client certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertMode {
    /// The handshake fails without one.
    Required,
    /// Connections without one are admitted, with no caller.
    Optional,
}

/// `auth:` of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// No user authentication: a public route.
    None,
    /// A verified JWT is required.
    Jwt,
}

/// `service_auth:` of a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteServiceAuth {
    /// The calling services this route admits.
    pub callers: Vec<String>,
    /// Accepted signature versions: `v1`, `v2`. Default `[v2]`.
    pub versions: Option<Vec<String>>,
    /// Whether the legacy shared secret is accepted. Default `false`.
    pub shared_secret: Option<bool>,
    /// Whether a client certificate naming an admitted caller
    /// authenticates the request instead of a signature. Default `false`.
    pub mtls: Option<bool>,
}

/// `services.*.identity`: the gateway's proof of identity to one upstream
/// (contract §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// `hmac` (v2), `hmac-v1`, `jwt` or `none`.
    pub kind: IdentityKind,
    /// Variable holding this service's credential (or `<VAR>_FILE`, a path).
    pub secret_env: Option<String>,
    /// Service-token lifetime (`jwt`), at most `300s`. Default `300s`.
    pub ttl: Option<String>,
    /// Required with `kind: none`: requests to this service are unsigned.
    pub unsigned: Option<bool>,
}

/// How requests to an upstream are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityKind {
    /// HMAC v2 headers over method, path and query, timestamp, nonce,
    /// gateway name, tenant and body hash.
    Hmac,
    /// The older v1 scheme (method, path, timestamp).
    HmacV1,
    /// A short-lived service JWT in `Authorization: Bearer`.
    Jwt,
    /// Unsigned (explicit opt-in).
    None,
}
