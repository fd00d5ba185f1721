//! CORS (contract §7): the gateway is the one source of CORS policy. A
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! is answered `204` before rate limiting and authentication; an allowed
//! origin's responses carry the CORS headers; a disallowed origin gets
//! none (its preflight: `403`). Upstream `Access-Control-*` headers are
//! dropped on routes with a policy.

use http::header::{self, HeaderMap, HeaderValue};

pub use crate::spec::policies::CorsSpec;

impl CorsSpec {
    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    pub fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?;
        self.origins.contains(&o).then(|| origin.clone())
    }

    /// Whether this is a preflight request.
    pub fn is_preflight(method: &http::Method, h: &HeaderMap) -> bool {
        method == http::Method::OPTIONS
            && h.contains_key(header::ORIGIN)
            && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// Headers of a `204` preflight answer for an allowed origin.
    pub fn preflight_headers(&self, allow_origin: HeaderValue, h: &mut HeaderMap) {
        self.common(allow_origin, h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(self.methods),
        );
        if !self.headers.is_empty() {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(self.headers),
            );
        }
        if self.max_age > 0 {
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.max_age),
            );
        }
    }

    /// Headers of any other response to an allowed origin; upstream
    /// `Access-Control-*` headers are replaced.
    pub fn response_headers(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        strip_upstream(h);
        if let Some(allow) = origin.and_then(|o| self.allow_origin(o)) {
            self.common(allow, h);
            if !self.expose.is_empty() {
                h.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(self.expose),
                );
            }
        }
    }

    fn common(&self, allow_origin: HeaderValue, h: &mut HeaderMap) {
        let exact = allow_origin != "*";
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if exact {
            // The answer depends on the origin: caches must keep them apart.
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// Drops every `Access-Control-*` header an upstream sent.
pub fn strip_upstream(h: &mut HeaderMap) {
    let names: Vec<header::HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}
