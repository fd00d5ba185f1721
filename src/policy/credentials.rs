//! Client credentials stay at the gateway (contract §3): `Authorization`,
//! `X-Service-Token` and the JWT cookie are removed before proxying unless
//! the route's policy lists them under `forward_credentials`. Other cookies
//! pass untouched.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderValue;

use crate::chain::{Flow, RequestCtx, RequestParts, Step};

/// Nothing is forwarded.
pub const NONE: u8 = 0;
/// Forward `Authorization`.
pub const AUTHORIZATION_HEADER: u8 = 1;
/// Forward `X-Service-Token`.
pub const SERVICE_TOKEN: u8 = 2;
/// Forward the JWT cookie.
pub const AUTH_COOKIE: u8 = 4;

/// Removes the client credentials the route does not forward. `FORWARD` is
/// the route's constant set of forwarded credentials; `cookie` the name of
/// the JWT cookie, if the spec has one.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripCredentials<const FORWARD: u8> {
    cookie: Option<&'static str>,
}

impl<const FORWARD: u8> StripCredentials<FORWARD> {
    /// A step that also strips the JWT cookie `cookie`.
    pub const fn new(cookie: Option<&'static str>) -> Self {
        StripCredentials { cookie }
    }
}

impl<const FORWARD: u8> Step for StripCredentials<FORWARD> {
    #[inline]
    fn on_request(&self, _: &mut RequestCtx, req: &mut RequestParts) -> Flow {
        if FORWARD & AUTHORIZATION_HEADER == 0 {
            req.headers.remove(AUTHORIZATION);
        }
        if FORWARD & SERVICE_TOKEN == 0 {
            req.headers.remove(crate::headers::name::X_SERVICE_TOKEN);
        }
        if let (0, Some(name)) = (FORWARD & AUTH_COOKIE, self.cookie) {
            strip_cookie(&mut req.headers, name);
        }
        Flow::Continue
    }
}

/// Removes `name=...` from every `Cookie` header, keeping the others
/// byte for byte (a value need not be UTF-8). Allocates only when a
/// `Cookie` header is present.
pub fn strip_cookie(h: &mut http::HeaderMap, name: &str) {
    if !h.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in h.get_all(COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            let key = pair.split(|b| *b == b'=').next().unwrap_or(pair);
            if pair.is_empty() || key == name.as_bytes() {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    h.remove(COOKIE);
    if let Ok(v) = HeaderValue::from_bytes(&kept) {
        if !kept.is_empty() {
            h.insert(COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_auth_cookie_is_removed() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=1; aegis_token=secret".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        super::strip_cookie(&mut h, "aegis_token");
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
        let mut only = http::HeaderMap::new();
        only.insert("cookie", "aegis_token=secret".parse().unwrap());
        super::strip_cookie(&mut only, "aegis_token");
        assert!(only.get("cookie").is_none());
    }
}
