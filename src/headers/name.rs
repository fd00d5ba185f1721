//! Header names the gateway sets or strips on every request, built once:
//! a `&str` name is parsed and validated again at each use.

use http::HeaderName;

/// The proof headers (`X-Service-Name`, `X-Internal-Service-Auth`,
/// `X-Internal-Timestamp`, `X-Internal-Nonce`, `X-Tenant-Id`): the
/// `gateway-service` crate's, which signs and verifies them.
pub use gateway_service::headers::{
    X_INTERNAL_NONCE, X_INTERNAL_SERVICE_AUTH, X_INTERNAL_TIMESTAMP, X_SERVICE_NAME, X_TENANT_ID,
};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Correlation-Id`.
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `X-Caller-Service`.
pub const X_CALLER_SERVICE: HeaderName = HeaderName::from_static("x-caller-service");
/// `X-User-Id`.
pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
/// `X-User-Roles`.
pub const X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
/// `X-Powered-By`.
pub const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
/// `X-Service-Token`.
pub const X_SERVICE_TOKEN: HeaderName = HeaderName::from_static("x-service-token");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `API-Version`.
pub const API_VERSION: HeaderName = HeaderName::from_static("api-version");
/// `Deprecation` (RFC 9745).
pub const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// `Sunset` (RFC 8594).
pub const SUNSET: HeaderName = HeaderName::from_static("sunset");
