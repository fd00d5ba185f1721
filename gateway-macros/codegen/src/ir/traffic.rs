//! Traffic policies, checked (contract §7): rate limits, CORS, retries,
//! versions, and the gateway-wide limits.

use super::pattern::Part;
use crate::spec::RateKey;

/// A checked rate limit.
#[derive(Debug, Clone)]
pub struct RateLimitIr {
    /// Requests per window.
    pub count: u32,
    /// Window in seconds.
    pub window_s: u64,
    /// Bucket size.
    pub burst: u32,
    /// What a bucket belongs to.
    pub key: RateKey,
    /// The policy name in headers.
    pub name: String,
}

/// A checked CORS policy.
#[derive(Debug, Clone)]
pub struct CorsIr {
    /// Exact origins; empty when any origin is allowed.
    pub origins: Vec<String>,
    /// `*`.
    pub any: bool,
    /// Allowed methods (`None`: the route's).
    pub methods: Option<Vec<String>>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Exposed response headers.
    pub expose: Vec<String>,
    /// Credentials allowed.
    pub credentials: bool,
    /// Preflight cache seconds.
    pub max_age_s: u64,
}

/// Checked retries.
#[derive(Debug, Clone)]
pub struct RetriesIr {
    /// Attempts in all.
    pub attempts: u32,
    /// Retried statuses.
    pub on: Vec<u16>,
    /// Per-try timeout in ms.
    pub per_try_ms: Option<u64>,
    /// First backoff in ms.
    pub backoff_ms: u64,
    /// Longest backoff in ms.
    pub max_backoff_ms: u64,
    /// Budget percent.
    pub budget: u32,
    /// Floor per second.
    pub min_per_second: u32,
    /// Retry POST and PATCH.
    pub non_idempotent: bool,
}

/// Resolved `gateway.limits`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LimitsIr {
    /// Largest request head, in bytes.
    pub max_head: u64,
    /// Most header fields in a request.
    pub max_headers: u32,
    /// Least average rate of a streamed request body, bytes per second.
    pub min_body_rate: u64,
    /// Buffered request-body bytes, all clients together.
    pub body_buffer: u64,
    /// The share of `body_buffer` one client address or connection may hold.
    pub body_buffer_per_client: u64,
}

/// A route's checked versions.
#[derive(Debug, Clone)]
pub struct VersionsIr {
    /// The vendor of the media type.
    pub vendor: String,
    /// Index into `live` of the default version.
    pub default: usize,
    /// The live versions, in spec order (oldest first).
    pub live: Vec<VersionIr>,
}

/// One checked version.
#[derive(Debug, Clone)]
pub struct VersionIr {
    /// Its name.
    pub name: String,
    /// Index of its service.
    pub service: usize,
    /// Its upstream template as written.
    pub upstream_text: String,
    /// The parsed template.
    pub template: Vec<Part>,
    /// Deprecation, if any.
    pub deprecated: Option<DeprecatedIr>,
}

/// A checked deprecation notice.
#[derive(Debug, Clone)]
pub struct DeprecatedIr {
    /// Unix seconds of `since`.
    pub since: i64,
    /// Unix seconds of `sunset`.
    pub sunset: Option<i64>,
    /// The `Link` target.
    pub link: Option<String>,
    /// 410 after the sunset.
    pub gone_after_sunset: bool,
}
