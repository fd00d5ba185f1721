//! The compiled settings of the per-route and per-service policies: plain
//! data that generated code writes out as constants. Their behaviour lives
//! with each policy (`crate::policy::*`, `crate::outbound`), which sits
//! above the spec; these types sit on the ground floor with the rest of
//! the spec, so that the spec imports nothing above it.

use std::time::Duration;

use super::Part;

/// A route's CORS policy, as compiled from the spec. Header values are
/// pre-joined, so answering allocates no strings.
#[derive(Debug, Clone, Copy)]
pub struct CorsSpec {
    /// Exact allowed origins; empty with `any`.
    pub origins: &'static [&'static str],
    /// `*`: any origin.
    pub any: bool,
    /// `Access-Control-Allow-Methods`.
    pub methods: &'static str,
    /// `Access-Control-Allow-Headers` (may be empty).
    pub headers: &'static str,
    /// `Access-Control-Expose-Headers` (may be empty).
    pub expose: &'static str,
    /// Whether credentials are allowed.
    pub credentials: bool,
    /// `Access-Control-Max-Age` seconds (0: not sent).
    pub max_age: u64,
}

/// Settings of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSpec {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Probes admitted at once while half-open.
    pub probes: u32,
    /// Also open on a failure rate over a window.
    pub rate: Option<FailureRate>,
}

/// Opens the circuit when at least `percent` of the requests of the last
/// `window` failed, once there were `min_requests` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRate {
    /// Failure share that opens the circuit, 1 to 100.
    pub percent: u32,
    /// The sliding window.
    pub window: Duration,
    /// Requests in the window below which the rate is not judged.
    pub min_requests: u32,
}

/// A route's canary, as compiled from the spec.
#[derive(Debug, Clone, Copy)]
pub struct CanarySpec {
    /// Index of the canary service.
    pub service: usize,
    /// Share of consumers, in basis points (500 = 5%).
    pub basis_points: u32,
    /// Lower-case header forcing a side.
    pub header: &'static str,
    /// The header value that forces the canary (default `always`).
    pub force_canary: &'static str,
    /// The header value that forces the route's own service (default
    /// `never`).
    pub force_stable: &'static str,
}

/// A route's retry policy, as compiled from the spec.
#[derive(Debug, Clone, Copy)]
pub struct RetrySpec {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Upstream statuses that are retried.
    pub on: &'static [u16],
    /// Timeout of each attempt, if any.
    pub per_try_timeout: Option<Duration>,
    /// First backoff.
    pub backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Retries allowed per 100 requests.
    pub budget_percent: u32,
    /// Retries always allowed per second.
    pub min_per_second: u32,
    /// Retry POST and PATCH too.
    pub non_idempotent: bool,
}

/// A route's live API versions.
#[derive(Debug)]
pub struct VersionSet {
    /// `<vendor>` in `application/vnd.<vendor>.v<name>+json`.
    pub vendor: &'static str,
    /// Index into `live` of the default version.
    pub default: usize,
    /// The live versions, oldest first.
    pub live: &'static [VersionSpec],
    /// Their names, for the 400 body.
    pub names: &'static [&'static str],
}

/// One live version.
#[derive(Debug)]
pub struct VersionSpec {
    /// Its name (`1`, `2024-06-01`), also the `API-Version` response value.
    pub name: &'static str,
    /// Index into the spec's services.
    pub service: usize,
    /// Its upstream path template.
    pub upstream: &'static [Part],
    /// Deprecation headers, when deprecated.
    pub deprecated: Option<DeprecatedSpec>,
}

/// A deprecated version's headers, precomputed.
#[derive(Debug)]
pub struct DeprecatedSpec {
    /// `Deprecation: @<unix seconds>` (RFC 9745).
    pub deprecation: &'static str,
    /// `Sunset: <IMF-fixdate>` (RFC 8594).
    pub sunset: Option<&'static str>,
    /// The sunset in Unix seconds.
    pub sunset_unix: Option<u64>,
    /// `Link: <url>; rel="deprecation"`.
    pub link: Option<&'static str>,
    /// Answer `410 Gone` once `sunset_unix` has passed.
    pub gone_after_sunset: bool,
}

/// How the gateway signs requests to one upstream (the `gateway-service`
/// crate's, which signs with it).
pub use gateway_service::sign::OutboundIdentity;
