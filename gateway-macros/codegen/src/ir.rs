//! The intermediate model: the spec after validation, with every default
//! filled in and every name resolved to an index. `validate` builds it;
//! `emit` reads it (with the spec's own enums it embeds) and never
//! `validate`, so the two do not reach into each other.

pub mod auth;
pub mod dates;
pub mod methods;
pub mod names;
pub mod pattern;
pub mod traffic;

use crate::diag::Diagnostics;
use pattern::{Part, Pattern};

/// The spec after validation: everything `emit` needs, resolved.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Gateway-wide settings.
    pub gateway: GatewayIr,
    /// Services in name order; routes refer to them by index.
    pub services: Vec<ServiceIr>,
    /// Routes in file order.
    pub routes: Vec<RouteIr>,
    /// Router paths, each with the routes (by index) that share it.
    pub paths: Vec<(String, Vec<usize>)>,
    /// Warnings found along the way.
    pub warnings: Diagnostics,
}

/// Resolved `gateway:` settings.
#[derive(Debug, Clone)]
pub struct GatewayIr {
    /// Name for `Via`, logs, outbound identity.
    pub name: String,
    /// Default listen address.
    pub listen: String,
    /// Trusted proxy addresses and blocks.
    pub trusted_proxies: Vec<String>,
    /// Upstream connect timeout.
    pub connect_ms: u64,
    /// Default upstream response-head timeout.
    pub upstream_ms: u64,
    /// Drain deadline on shutdown.
    pub drain_ms: u64,
    /// Client request-head deadline.
    pub header_read_ms: u64,
    /// What one client may send.
    pub limits: traffic::LimitsIr,
    /// Default client request-body deadline (and stall limit).
    pub body_ms: u64,
    /// JWT verification, when configured.
    pub jwt: Option<auth::JwtIr>,
    /// HMAC service auth, when configured.
    pub service_auth: Option<auth::ServiceAuthIr>,
    /// TLS termination, when configured.
    pub tls: Option<auth::TlsIr>,
}

/// A resolved upstream service.
#[derive(Debug, Clone)]
pub struct ServiceIr {
    /// Its name in the spec.
    pub name: String,
    /// The variable holding its base URL.
    pub env: String,
    /// The base URL when the variable is unset.
    pub default_url: String,
    /// How requests to it are signed.
    pub identity: auth::IdentityIr,
    /// Plain HTTP allowed in production.
    pub allow_plaintext: bool,
    /// Circuit breaker, or off.
    pub breaker: Option<BreakerIr>,
    /// Variable naming a CA bundle for an `https://` upstream.
    pub tls_ca_env: Option<String>,
    /// The client certificate presented upstream (mTLS).
    pub tls_client_cert: Option<ClientCertIr>,
    /// Connect timeout overriding the gateway's.
    pub connect_ms: Option<u64>,
    /// Client-claimed headers it receives anyway, lower case.
    pub allow_client_headers: Vec<String>,
}

impl ServiceIr {
    /// `UPPER_SNAKE` constant name for the service (`service::KNOWLEDGE_GRAPH`).
    pub fn const_name(&self) -> String {
        names::upper_snake(&self.name)
    }
}

/// A service's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerIr {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open, in ms.
    pub open_ms: u64,
    /// Trial requests let through when half-open.
    pub probes: u32,
    /// The failure-rate trigger, if any.
    pub rate: Option<FailureRateIr>,
}

impl BreakerIr {
    /// The breaker of a service that configures none: 5 failures open it
    /// for 30 s, then one probe.
    pub const DEFAULT: BreakerIr = BreakerIr {
        failures: 5,
        open_ms: 30_000,
        probes: 1,
        rate: None,
    };
}

/// A breaker's failure-rate trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRateIr {
    /// Share of failed requests that opens the breaker, in percent.
    pub percent: u32,
    /// The window the share is measured over, in ms.
    pub window_ms: u64,
    /// Fewest requests in the window before the share counts.
    pub min_requests: u32,
}

/// Variables naming a client certificate chain and its key (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertIr {
    /// The PEM certificate chain file's variable.
    pub cert_env: String,
    /// The PEM private key file's variable.
    pub key_env: String,
}

/// A resolved route.
#[derive(Debug, Clone)]
pub struct RouteIr {
    /// snake_case id (`api_v1_agents_id_execute`).
    pub id: String,
    /// The path pattern as written.
    pub pattern_text: String,
    /// The parsed pattern.
    pub pattern: Pattern,
    /// Method bits (see [`methods`]).
    pub methods: u16,
    /// Index into [`Checked::services`].
    pub service: usize,
    /// The upstream template as written.
    pub upstream_text: String,
    /// The parsed template.
    pub template: Vec<Part>,
    /// Path segment where the forwarded rest starts (catch-all or prefix).
    pub rest_segment: Option<usize>,
    /// Upstream response-head timeout.
    pub timeout_ms: u64,
    /// Client request-body deadline (and stall limit).
    pub body_timeout_ms: u64,
    /// Credentials forwarded upstream.
    pub forward: Vec<crate::spec::Credential>,
    /// The named policy, if any (`default` when the route names none).
    pub policy_name: Option<String>,
    /// The route writes its own policy inline (laid over `default`).
    pub inline_policy: bool,
    /// What the route asks of its callers.
    pub auth: auth::RouteAuthIr,
    /// Rate limit.
    pub rate_limit: Option<traffic::RateLimitIr>,
    /// CORS policy.
    pub cors: Option<traffic::CorsIr>,
    /// Explicit body limit in bytes.
    pub body_limit: Option<u64>,
    /// Canary.
    pub canary: Option<CanaryIr>,
    /// Retries.
    pub retries: Option<traffic::RetriesIr>,
    /// API versions; `service` and `template` are then the default's.
    pub versions: Option<traffic::VersionsIr>,
    /// Index of the route in the spec's `routes:` list.
    pub spec_index: usize,
}

impl RouteIr {
    /// `CamelCase` enum variant for the id.
    pub fn variant(&self) -> String {
        names::camel(&self.id)
    }

    /// `UPPER_SNAKE` constant name for the id.
    pub fn const_name(&self) -> String {
        names::upper_snake(&self.id)
    }
}

/// A route's canary, checked.
#[derive(Debug, Clone)]
pub struct CanaryIr {
    /// Index of the canary service.
    pub service: usize,
    /// Share of consumers, in basis points.
    pub basis_points: u32,
    /// Lower-case header forcing a side.
    pub header: String,
    /// The header value that forces the canary.
    pub force_canary: String,
    /// The header value that forces the route's own service.
    pub force_stable: String,
}
