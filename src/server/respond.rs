//! Phase 8, the response phase: runs on every answer, the upstream's or
//! the gateway's own, refusals included. It refuses nothing; it turns a
//! refusal into its JSON answer, puts the request's ids and the route's
//! response-side policy headers (CORS, API version, rate limit) on the
//! answer, writes the security event of an authentication failure and
//! the request's access-log line.

use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Either;

use crate::body::ResponseBody;
use crate::chain::RequestCtx;
use crate::error::GatewayError;
use crate::headers;
use crate::log::access::PendingLog;
use crate::policy::cors::CorsSpec;
use crate::policy::version::VersionSet;

/// What the route's response-side policies need to know, gathered by the
/// head phase.
#[derive(Debug, Default)]
pub(super) struct ResponseSide {
    /// The matched route's CORS policy, for every response.
    pub cors: Option<&'static CorsSpec>,
    /// The response is the gateway's own preflight answer, complete as is.
    pub preflight: bool,
    /// The route's API versions and the one selected, for every response.
    pub versions: Option<(&'static VersionSet, Option<usize>)>,
}

impl ResponseSide {
    /// The response headers of the route's CORS, version and rate-limit
    /// policies; `origin` is the request's `Origin`.
    fn apply(&self, ctx: &RequestCtx, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        if let (Some(cors), false) = (self.cors, self.preflight) {
            cors.response_headers(origin, h);
        }
        if let Some((vs, selected)) = self.versions {
            vs.response_headers(selected, h);
        }
        if let Some(rl) = &ctx.rate_limit {
            h.insert(headers::name::RATELIMIT_POLICY, rl.policy.clone());
            h.insert(headers::name::RATELIMIT, rl.limit.clone());
            if let Some(secs) = rl.retry_after {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
    }
}

/// The response phase: `routed` (an answer or a refusal) made into the
/// client's answer, and the request's log lines written.
pub(super) fn respond(
    routed: Result<Response<ResponseBody>, GatewayError>,
    ctx: &RequestCtx,
    pending: &mut PendingLog<'_>,
    side: &ResponseSide,
    origin: Option<&HeaderValue>,
    http1: bool,
) -> Response<ResponseBody> {
    let mut resp = match routed {
        Ok(resp) => resp,
        Err(e) => {
            pending.out.error = Some(e.to_string());
            refusal(e, ctx, http1)
        }
    };
    headers::set_ids(resp.headers_mut(), ctx);
    side.apply(ctx, origin, resp.headers_mut());
    if let Some(f) = &ctx.auth_failure {
        pending.auth_failure(f.reason, f.mode, f.caller.as_deref());
    }
    let caller = ctx
        .caller
        .as_deref()
        .or(ctx.user.as_ref().map(|u| u.id.as_str()));
    pending.finish(resp.status().as_u16(), caller, ctx.tenant.as_deref());
    resp
}

/// A refusal's JSON answer; over HTTP/1 it closes the connection when the
/// rest of the request's body was never read or the client stalled or
/// flooded the body buffer ([`GatewayError::closes_connection`]).
fn refusal(e: GatewayError, ctx: &RequestCtx, http1: bool) -> Response<ResponseBody> {
    let close = http1 && e.closes_connection();
    let mut resp = e.into_response(ctx.ids.request_id()).map(Either::Right);
    if close {
        // hyper closes an HTTP/1 connection after a response that says
        // so. HTTP/2 has no such header: there the stream alone ends
        // (RST_STREAM after the answer).
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
