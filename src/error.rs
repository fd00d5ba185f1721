//! The gateway's one error type and the one place it becomes a response:
//! `{"error": "<message>", "request_id": "<id>"}` with
//! `content-type: application/json` (contract §2).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::routing::path::PathError;
use crate::spec::methods::Methods;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The path broke a sanity rule.
    BadPath(PathError),
    /// No route matches.
    NotFound,
    /// The path matched, the method did not.
    MethodNotAllowed(Methods),
    /// The upstream refused the connection or answered badly.
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// The gateway is shutting down or the upstream is unavailable.
    ServiceUnavailable,
    /// A missing or invalid user credential (JWT).
    Unauthorized(&'static str),
    /// Authenticated but not allowed, or a service-auth failure.
    Forbidden(&'static str),
    /// The shared `X-Service-Token` did not match.
    InvalidServiceToken,
    /// The request body is over the route's limit.
    PayloadTooLarge,
    /// More header fields than `gateway.limits.max_headers` (HTTP/2; the
    /// HTTP/1 parser refuses those itself).
    HeadersTooLarge,
    /// A malformed request the HTTP parser let through.
    BadRequest(&'static str),
    /// A feature of the request the gateway does not support.
    NotImplemented(&'static str),
    /// Over the route's rate limit.
    TooManyRequests,
    /// A CORS preflight from an origin the route does not allow.
    CorsOriginNotAllowed,
    /// The request named an API version the route does not serve; the
    /// body lists these, the supported ones.
    UnsupportedVersion(&'static [&'static str]),
    /// The selected API version is past its sunset and retired.
    VersionGone,
    /// The client did not send its request body within the route's body
    /// timeout (or stalled it); the connection is closed after the answer.
    RequestTimeout,
    /// The gateway's budget for buffered request bodies is spent.
    Overloaded,
}

/// Which side caused the error, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something unacceptable.
    Client,
    /// The upstream failed.
    Upstream,
}

/// A request the gateway answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Who caused it.
    pub side: Side,
    /// Whether trying again could succeed.
    pub retryable: bool,
    /// Detail for the log line only; never sent to the client.
    pub context: Option<String>,
}

impl GatewayError {
    /// A client-side error.
    pub fn client(kind: ErrorKind) -> Self {
        GatewayError {
            kind,
            side: Side::Client,
            retryable: false,
            context: None,
        }
    }

    /// An upstream-side error with log context.
    pub fn upstream(kind: ErrorKind, context: impl Into<String>) -> Self {
        GatewayError {
            kind,
            side: Side::Upstream,
            retryable: true,
            context: Some(context.into()),
        }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadPath(_) => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unauthorized(_) | ErrorKind::InvalidServiceToken => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden(_) => StatusCode::FORBIDDEN,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BadRequest(_) => StatusCode::BAD_REQUEST,
            ErrorKind::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::CorsOriginNotAllowed => StatusCode::FORBIDDEN,
            ErrorKind::UnsupportedVersion(_) => StatusCode::BAD_REQUEST,
            ErrorKind::VersionGone => StatusCode::GONE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` message of the JSON body.
    pub fn message(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadPath(p) => p.message(),
            ErrorKind::NotFound => "Not found",
            ErrorKind::MethodNotAllowed(_) => "Method not allowed",
            ErrorKind::BadGateway => "Bad gateway",
            ErrorKind::GatewayTimeout => "Gateway timeout",
            ErrorKind::ServiceUnavailable => "Service temporarily unavailable",
            ErrorKind::Unauthorized(m)
            | ErrorKind::Forbidden(m)
            | ErrorKind::BadRequest(m)
            | ErrorKind::NotImplemented(m) => m,
            ErrorKind::InvalidServiceToken => "Invalid service token",
            ErrorKind::PayloadTooLarge => "Request body too large",
            ErrorKind::HeadersTooLarge => "Request header fields too large",
            ErrorKind::TooManyRequests => "Too many requests",
            ErrorKind::CorsOriginNotAllowed => "Origin not allowed",
            ErrorKind::UnsupportedVersion(_) => "Unsupported API version",
            ErrorKind::VersionGone => "API version retired",
            ErrorKind::RequestTimeout => "Request body not received in time",
            // Contract §2 names this message.
            ErrorKind::Overloaded => "overloaded",
        }
    }

    /// Whether the client's connection is closed after this answer: the
    /// rest of its request body was never read (HTTP/1 cannot find the
    /// next request after it), and a client that stalled or flooded the
    /// body buffer should not keep its connection.
    pub fn closes_connection(&self) -> bool {
        matches!(self.kind, ErrorKind::RequestTimeout | ErrorKind::Overloaded)
    }

    /// The JSON error response (the gateway's own answers wrap its body
    /// as a [`crate::body::ResponseBody`]).
    pub fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let mut body = serde_json::json!({ "error": self.message(), "request_id": request_id });
        if let ErrorKind::UnsupportedVersion(supported) = self.kind {
            body["supported"] = serde_json::json!(supported);
        }
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ErrorKind::MethodNotAllowed(allow) = self.kind {
            if let Ok(v) = HeaderValue::from_str(&allow.allow_header()) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        if let ErrorKind::Unauthorized(_) = self.kind {
            // RFC 6750 §3: tell the client which scheme is expected.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())?;
        if let Some(c) = &self.context {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for GatewayError {}
