//! The identity layer, checked: JWT and HMAC settings, TLS, what each
//! route asks of its callers, how each service is signed.

use crate::spec::IdentityKind;

/// Checked `gateway.jwt`.
#[derive(Debug, Clone)]
pub struct JwtIr {
    /// Allowed algorithms, as written (`HS256`, ...).
    pub algorithms: Vec<String>,
    /// HS256 secret variable.
    pub secret_env: Option<String>,
    /// PEM public key path variable.
    pub public_key_env: Option<String>,
    /// JWKS path variable.
    pub jwks_env: Option<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required audience.
    pub audience: Option<String>,
    /// Leeway in seconds.
    pub leeway_s: u64,
    /// Cookie fallback.
    pub cookie: Option<String>,
    /// Subject claim.
    pub subject_claim: String,
    /// Roles claim.
    pub roles_claim: String,
    /// Tenant claim.
    pub tenant_claim: Option<String>,
    /// Revocation list path.
    pub revocation_file: Option<String>,
}

/// Checked `gateway.service_auth`.
#[derive(Debug, Clone)]
pub struct ServiceAuthIr {
    /// Window in seconds.
    pub window_s: u64,
    /// (caller, secret variable), in name order.
    pub callers: Vec<(String, String)>,
    /// Legacy shared secret variable.
    pub shared_secret_env: Option<String>,
    /// Nonce cache capacity.
    pub nonce_cache: u64,
}

/// Checked `gateway.tls`.
#[derive(Debug, Clone)]
pub struct TlsIr {
    /// Variable naming the certificate chain file.
    pub cert_env: String,
    /// Variable naming the private key file.
    pub key_env: String,
    /// Client-certificate verification.
    pub client_auth: Option<ClientAuthIr>,
}

/// Checked `gateway.tls.client_auth`.
#[derive(Debug, Clone)]
pub struct ClientAuthIr {
    /// Variable naming the client CA bundle.
    pub ca_env: String,
    /// A client certificate is required in the handshake.
    pub required: bool,
    /// (certificate identity, caller), in identity order.
    pub identities: Vec<(String, String)>,
}

impl ClientAuthIr {
    /// Whether some certificate identity names `caller`.
    pub fn declares(&self, caller: &str) -> bool {
        self.identities.iter().any(|(_, c)| c == caller)
    }
}

/// What one route asks of its callers.
#[derive(Debug, Clone, Default)]
pub struct RouteAuthIr {
    /// A verified JWT is required.
    pub jwt: bool,
    /// One of these roles is required.
    pub roles: Vec<String>,
    /// HMAC service auth, when required.
    pub service: Option<RouteServiceIr>,
    /// `X-Service-Token` secret variable, when required.
    pub service_token_env: Option<String>,
}

/// A route's HMAC requirements.
#[derive(Debug, Clone)]
pub struct RouteServiceIr {
    /// Admitted callers.
    pub callers: Vec<String>,
    /// v1 signatures accepted.
    pub v1: bool,
    /// v2 signatures accepted.
    pub v2: bool,
    /// The legacy shared secret accepted.
    pub shared_secret: bool,
    /// A client certificate naming an admitted caller is enough.
    pub mtls: bool,
}

impl RouteAuthIr {
    /// A short description for the route table.
    pub fn describe(&self) -> String {
        // In the order the steps run: token, HMAC, JWT, roles.
        let mut parts = Vec::new();
        if self.service_token_env.is_some() {
            parts.push("service-token".to_owned());
        }
        if let Some(s) = &self.service {
            let mut v = Vec::new();
            if s.v1 {
                v.push("v1");
            }
            if s.v2 {
                v.push("v2");
            }
            let shared = if s.shared_secret { "+shared" } else { "" };
            let how = match (v.is_empty(), s.mtls) {
                (true, _) => "mtls".to_owned(),
                (false, true) => format!("mtls|hmac {}{shared}", v.join(",")),
                (false, false) => format!("hmac {}{shared}", v.join(",")),
            };
            parts.push(format!("{how} callers={}", s.callers.join("|")));
        }
        if self.jwt {
            parts.push(if self.roles.is_empty() {
                "jwt".to_owned()
            } else {
                format!("jwt roles={}", self.roles.join("|"))
            });
        }
        if parts.is_empty() {
            "public".into()
        } else {
            parts.join(" + ")
        }
    }
}

/// Checked `services.*.identity`.
#[derive(Debug, Clone)]
pub struct IdentityIr {
    /// How requests are signed.
    pub kind: IdentityKind,
    /// The credential's variable (not for `none`).
    pub secret_env: Option<String>,
    /// Service-token lifetime in seconds (`jwt`).
    pub ttl_s: u64,
}

impl IdentityIr {
    /// For the route table.
    pub fn describe(&self) -> String {
        use IdentityKind as K;
        let env = self.secret_env.as_deref().unwrap_or("");
        match self.kind {
            K::Hmac => format!("hmac v2 (${env})"),
            K::HmacV1 => format!("hmac v1 (${env})"),
            K::Jwt => format!("jwt {}s (${env})", self.ttl_s),
            K::None => "UNSIGNED".into(),
        }
    }
}
