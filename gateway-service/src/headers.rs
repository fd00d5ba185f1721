//! The names of the headers that carry a service's proof (contract §5).

use http::HeaderName;

/// `X-Service-Name`: the calling service.
pub const X_SERVICE_NAME: HeaderName = HeaderName::from_static("x-service-name");
/// `X-Internal-Service-Auth`: the HMAC signature.
pub const X_INTERNAL_SERVICE_AUTH: HeaderName = HeaderName::from_static("x-internal-service-auth");
/// `X-Internal-Timestamp`: Unix seconds, signed.
pub const X_INTERNAL_TIMESTAMP: HeaderName = HeaderName::from_static("x-internal-timestamp");
/// `X-Internal-Nonce`: the v2 single-use nonce.
pub const X_INTERNAL_NONCE: HeaderName = HeaderName::from_static("x-internal-nonce");
/// `X-Tenant-Id`: the tenant a v2 signature covers.
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
