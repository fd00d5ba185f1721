//! What a compiled spec gives the runtime: constants describing the gateway,
//! its services and routes, and the [`Spec`] trait that ties a generated
//! route enum to its typed chains.

use std::fmt::Debug;
use std::time::Duration;

use crate::chain::{Flow, RequestCtx, RequestParts};
use crate::config::{StartupEnv, StartupError};

pub mod methods;
pub mod policies;

pub use methods::Methods;

pub use policies::{
    BreakerSpec, CanarySpec, CorsSpec, DeprecatedSpec, FailureRate, OutboundIdentity, RetrySpec,
    VersionSet, VersionSpec,
};

/// The `gateway:` section.
#[derive(Debug, Clone, Copy)]
pub struct GatewaySpec {
    /// Name for `Via`, logs and outbound identity.
    pub name: &'static str,
    /// Default listen address (`GATEWAY_LISTEN` overrides).
    pub listen: &'static str,
    /// Addresses and CIDR blocks whose forwarded headers are trusted.
    pub trusted_proxies: &'static [&'static str],
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// Default upstream response-head timeout.
    pub upstream_timeout: Duration,
    /// How long in-flight requests may finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// What one client may send and make the gateway hold (`gateway.limits`).
    pub limits: LimitsSpec,
    /// Default of [`RouteSpec::body_timeout`] (`gateway.timeouts.body`).
    pub body_timeout: Duration,
    /// TLS termination (`gateway.tls`); plain HTTP when absent.
    pub tls: Option<&'static TlsSpec>,
}

/// `gateway.limits`: what one client may send, gateway-wide.
#[derive(Debug, Clone, Copy)]
pub struct LimitsSpec {
    /// The largest request head in bytes: the request line and headers
    /// over HTTP/1, the header list over HTTP/2 (8 KiB to 1 MiB).
    pub max_head: usize,
    /// The most header fields in a request.
    pub max_headers: usize,
    /// The least average rate of a streamed request body once its first
    /// body timeout has passed, bytes per second
    /// (`gateway.limits.min_body_rate`).
    pub min_body_rate: u64,
    /// Request-body bytes buffered at once, all clients together
    /// (`gateway.limits.body_buffer`).
    pub body_buffer: usize,
    /// The share of `body_buffer` one client address, and one connection,
    /// may hold (`gateway.limits.body_buffer_per_client`).
    pub body_buffer_per_client: usize,
}

impl LimitsSpec {
    /// hyper's own header-field limit for HTTP/1: its parser keeps that
    /// many slots inline, and a larger count is allocated per request.
    pub const HYPER_MAX_HEADERS: usize = 100;
}

/// `gateway.tls`: the listener's certificate and, optionally, client
/// certificates (mTLS).
#[derive(Debug, Clone, Copy)]
pub struct TlsSpec {
    /// Variable holding the path of the PEM certificate chain (leaf first).
    pub cert_env: &'static str,
    /// Variable holding the path of the PEM private key.
    pub key_env: &'static str,
    /// Client-certificate verification, when configured.
    pub client_auth: Option<ClientAuthSpec>,
}

/// `gateway.tls.client_auth`: which client certificates are accepted and
/// which calling service each one names.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthSpec {
    /// Variable holding the path of the PEM bundle of client CAs.
    pub ca_env: &'static str,
    /// Whether a connection without a client certificate is refused in the
    /// handshake (`required`) or admitted without a caller (`optional`).
    pub required: bool,
    /// Certificate identity (a SAN DNS name or URI, e.g. a SPIFFE id) to
    /// caller service name.
    pub identities: &'static [(&'static str, &'static str)],
}

/// `services.*.tls.client_cert_env` / `client_key_env`: the client
/// certificate the gateway presents to an upstream (mTLS).
#[derive(Debug, Clone, Copy)]
pub struct ClientCertSpec {
    /// Variable holding the path of the PEM certificate chain.
    pub cert_env: &'static str,
    /// Variable holding the path of the PEM private key.
    pub key_env: &'static str,
}

/// An upstream service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Its name in the spec.
    pub name: &'static str,
    /// The environment variable that overrides the URL.
    pub url_env: &'static str,
    /// The URL when the variable is unset.
    pub default_url: &'static str,
    /// How requests to it are signed.
    pub identity: OutboundIdentity,
    /// Plain HTTP allowed when `GATEWAY_ENV=production`.
    pub allow_plaintext: bool,
    /// The upstream's circuit breaker, if on.
    pub breaker: Option<BreakerSpec>,
    /// Variable naming a PEM CA bundle for an `https://` upstream (the
    /// system roots otherwise).
    pub tls_ca_env: Option<&'static str>,
    /// Client certificate presented to an `https://` upstream.
    pub tls_client_cert: Option<ClientCertSpec>,
    /// Connect timeout for this service (`gateway.timeouts.connect`
    /// otherwise).
    pub connect_timeout: Option<Duration>,
    /// Client headers this service trusts although the gateway strips them
    /// by default (`allow_client_headers`, lower case; only names of
    /// [`crate::headers::CLIENT_CLAIMED`]).
    pub allow_client_headers: &'static [&'static str],
}

/// A piece of an upstream path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Copied as is.
    Lit(&'static str),
    /// The n-th `{name}` parameter, as received (still percent-encoded).
    Param(usize),
    /// The `{*name}` catch-all's value, as received, without a leading `/`.
    Rest,
    /// What follows a prefix route's base: empty, `/`, or `/...`.
    Suffix,
}

/// One route's constants.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// snake_case id, used in logs.
    pub id: &'static str,
    /// The path pattern as written in the spec.
    pub pattern: &'static str,
    /// Accepted methods.
    pub methods: Methods,
    /// Index into [`Spec::SERVICES`].
    pub service: usize,
    /// The upstream path template.
    pub upstream: &'static [Part],
    /// For a catch-all or prefix route, the path segment where the rest
    /// starts.
    pub rest_segment: Option<usize>,
    /// Upstream response-head timeout.
    pub timeout: Duration,
    /// How long the client has to send a buffered body whole; the longest
    /// a streamed body may stall (408 beyond, and the connection closed).
    pub body_timeout: Duration,
    /// The named policy, if any.
    pub policy: Option<&'static str>,
    /// For routes that verify a body signature: the body is read first, up
    /// to this many bytes (413 beyond).
    pub buffer_body: Option<usize>,
    /// The most body bytes a streamed request may send (413 beyond).
    pub body_limit: u64,
    /// The route's CORS policy.
    pub cors: Option<&'static CorsSpec>,
    /// The route's canary.
    pub canary: Option<CanarySpec>,
    /// The route's retry policy.
    pub retries: Option<RetrySpec>,
    /// The route's API versions; `service` and `upstream` are then the
    /// default version's.
    pub versions: Option<&'static VersionSet>,
    /// The route's position in the spec (indexes per-route state).
    pub index: usize,
}

/// A compiled spec: implemented by generated code (`build.rs` for
/// `gateway.yaml`, `gateway_macros::spec!` for any other file).
pub trait Spec: Send + Sync + 'static {
    /// The generated route enum.
    type Route: Copy + Debug + Send + Sync + 'static;
    /// The generated per-route chains.
    type Chains: Send + Sync + 'static;

    /// Gateway settings.
    const GATEWAY: &'static GatewaySpec;
    /// Upstream services.
    const SERVICES: &'static [ServiceSpec];
    /// Router paths and the routes sharing each.
    const PATHS: &'static [(&'static str, &'static [Self::Route])];
    /// The route table, as `gateway routes` prints it.
    const ROUTE_TABLE: &'static str;

    /// A route's constants.
    fn route(route: Self::Route) -> &'static RouteSpec;

    /// Builds every route's chain once at start-up.
    ///
    /// # Errors
    /// When a step's configuration cannot be loaded.
    fn build_chains(env: &StartupEnv) -> Result<Self::Chains, StartupError>;

    /// Re-reads what may change without a restart (SIGHUP).
    ///
    /// # Errors
    /// A file that cannot be read; the previous state stays in force.
    fn reload(chains: &Self::Chains) -> Result<(), StartupError>;

    /// Runs the head-only phase of `route`'s chain (before a body is read).
    fn before_body(
        chains: &Self::Chains,
        route: Self::Route,
        ctx: &mut RequestCtx,
        req: &RequestParts,
    ) -> Flow;

    /// Runs the request phase of `route`'s chain.
    fn on_request(
        chains: &Self::Chains,
        route: Self::Route,
        ctx: &mut RequestCtx,
        req: &mut RequestParts,
    ) -> Flow;
}
