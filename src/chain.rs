//! The per-request context and per-route policy chains, on the ground
//! floor: this file imports only the error, ids and header names, never
//! the policies or auth steps that fill the context (their plain data,
//! such as [`AuthFailure`] and [`RateState`], is defined here).
//!
//! A route's chain is a tuple of steps whose type the spec compiler writes
//! out (`(StripCredentials<{ NONE }>,)`), so every step call is static
//! dispatch: no `Vec<Box<dyn Step>>` walked per request and no lookup by
//! name. Steps run in the contract's order (§2): rate limit ->
//! authentication (service token, HMAC, JWT) -> authorization (roles) ->
//! credential stripping. Path sanity, matching and the method check run
//! before any chain ([`crate::routing`]); CORS, version selection and the
//! declared body limit are read from the route's spec by the pipeline's
//! head phase (`server/pipeline.rs`), not chain steps.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::HeaderValue;

use crate::error::GatewayError;
use crate::ids::Ids;

/// The request head a step may inspect and change.
pub type RequestParts = http::request::Parts;

/// What a step decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next step, then the upstream.
    Continue,
    /// Answer the client now; the upstream is never contacted.
    Respond(GatewayError),
}

/// Per-request state, created once when a request arrives.
#[derive(Debug)]
pub struct RequestCtx {
    /// Request, correlation and trace ids.
    pub ids: Ids,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client address: the peer, or the nearest untrusted address of a
    /// forwarded chain that arrived through trusted proxies.
    pub client_ip: IpAddr,
    /// When the request arrived.
    pub started: Instant,
    /// The verified calling service, once known.
    pub caller: Option<String>,
    /// The verified tenant, once known.
    pub tenant: Option<String>,
    /// The verified user, once known.
    pub user: Option<std::sync::Arc<User>>,
    /// The client's signing headers, read before they were stripped.
    pub signing: SigningHeaders,
    /// Hex SHA-256 of the body, for routes that read it before proxying.
    pub body_sha256: Option<String>,
    /// Why authentication failed (or, in audit mode, would have).
    pub auth_failure: Option<AuthFailure>,
    /// The rate limit's state, for the response headers.
    pub rate_limit: Option<RateState>,
    /// A service signature is pending verification after the body: the
    /// caller becomes known only then.
    pub caller_pending: bool,
    /// The request arrived over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The calling service the connection's verified client certificate
    /// names (`gateway.tls.client_auth.identities`), if any.
    pub client_cert: Option<&'static str>,
}

/// A user verified from a JWT, shared by every request presenting the
/// same token (see [`crate::auth::jwt_cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The subject claim.
    pub id: String,
    /// The roles claim.
    pub roles: Vec<String>,
    /// `X-User-Id` and `X-User-Roles`, built once per verified token rather
    /// than per request; `None` when not a valid header value (or, for the
    /// roles, when there are none: no roles is said by the header's absence).
    pub(crate) headers: (Option<http::HeaderValue>, Option<http::HeaderValue>),
}

impl User {
    /// A user with these claims.
    pub fn new(id: String, roles: Vec<String>) -> Self {
        let id_header = http::HeaderValue::from_str(&id).ok();
        let roles_header = (!roles.is_empty())
            .then(|| roles.join(","))
            .and_then(|r| http::HeaderValue::from_str(&r).ok());
        User {
            id,
            roles,
            headers: (id_header, roles_header),
        }
    }
}

/// Why an authentication step refused (or, in audit mode, let through) a
/// request: the `reason` of the security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// A stable, machine-readable reason (`expired`, `replayed_nonce`, ...).
    pub reason: &'static str,
    /// The caller, when known: a JWT subject or a claimed service name.
    pub caller: Option<String>,
    /// `enforce` (rejected) or `audit` (logged and let through).
    pub mode: &'static str,
}

impl AuthFailure {
    /// A failure that rejected the request.
    pub fn enforced(reason: &'static str, caller: Option<String>) -> Self {
        AuthFailure {
            reason,
            caller,
            mode: "enforce",
        }
    }
}

/// The signing headers of a request, read before the gateway strips them
/// (the `gateway-service` crate's, which verifies them).
pub use gateway_service::hmac::SigningHeaders;

/// The limit's state after a check, for the response headers.
#[derive(Debug, Clone)]
pub struct RateState {
    /// `RateLimit-Policy` value.
    pub policy: HeaderValue,
    /// `RateLimit` value.
    pub limit: HeaderValue,
    /// `Retry-After` seconds, on a 429.
    pub retry_after: Option<u64>,
}

/// One policy step of a route's chain.
pub trait Step: Send + Sync + 'static {
    /// Runs on the request head only, before a body the route needs is
    /// read, so that a request which cannot pass is refused without the
    /// gateway buffering its body. Most steps have nothing to do here.
    fn before_body(&self, _ctx: &mut RequestCtx, _req: &RequestParts) -> Flow {
        Flow::Continue
    }

    /// Runs before the request is proxied.
    fn on_request(&self, ctx: &mut RequestCtx, req: &mut RequestParts) -> Flow;
}

impl Step for () {
    fn on_request(&self, _: &mut RequestCtx, _: &mut RequestParts) -> Flow {
        Flow::Continue
    }
}

macro_rules! tuple_step {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Step),+> Step for ($($name,)+) {
            #[inline]
            fn before_body(&self, ctx: &mut RequestCtx, req: &RequestParts) -> Flow {
                $(
                    if let Flow::Respond(e) = self.$idx.before_body(ctx, req) {
                        return Flow::Respond(e);
                    }
                )+
                Flow::Continue
            }

            #[inline]
            fn on_request(&self, ctx: &mut RequestCtx, req: &mut RequestParts) -> Flow {
                $(
                    if let Flow::Respond(e) = self.$idx.on_request(ctx, req) {
                        return Flow::Respond(e);
                    }
                )+
                Flow::Continue
            }
        }
    };
}

tuple_step!(A 0);
tuple_step!(A 0, B 1);
tuple_step!(A 0, B 1, C 2);
tuple_step!(A 0, B 1, C 2, D 3);
tuple_step!(A 0, B 1, C 2, D 3, E 4);
tuple_step!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_step!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_step!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
