//! Client credentials stay at the gateway (contract §3): `Authorization`
//! and `X-Service-Token` are removed before proxying unless the route's
//! policy lists them under `forward_credentials`.

use http::header::AUTHORIZATION;

use crate::chain::{Flow, RequestCtx, RequestParts, Step};

/// Nothing is forwarded.
pub const NONE: u8 = 0;
/// Forward `Authorization`.
pub const AUTHORIZATION_HEADER: u8 = 1;
/// Forward `X-Service-Token`.
pub const SERVICE_TOKEN: u8 = 2;

/// Removes the client credentials the route does not forward. `FORWARD` is
/// the route's constant set of forwarded credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripCredentials<const FORWARD: u8>;

impl<const FORWARD: u8> Step for StripCredentials<FORWARD> {
    #[inline]
    fn on_request(&self, _: &mut RequestCtx, req: &mut RequestParts) -> Flow {
        if FORWARD & AUTHORIZATION_HEADER == 0 {
            req.headers.remove(AUTHORIZATION);
        }
        if FORWARD & SERVICE_TOKEN == 0 {
            req.headers.remove("x-service-token");
        }
        Flow::Continue
    }
}
