//! Phase 4, the request body: read whole for a route that verifies a body
//! signature, bounded in size, in time and by the gateway's body budget;
//! streamed otherwise, bounded as it goes.

use std::sync::atomic::AtomicUsize;

use http::request::Parts;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};

use super::Gateway;
use crate::body::budget::Permit;
use crate::body::client::ClientBody;
use crate::chain::RequestCtx;
use crate::error::{ErrorKind, GatewayError};
use crate::proxy::ProxyBody;
use crate::spec::{RouteSpec, Spec};

impl<S: Spec> Gateway<S> {
    /// Phase 4, the request body: read whole, within the route's limit and
    /// body timeout and the body budget, for a route that verifies a body
    /// signature (413, 408, 503 `overloaded`; see `read_body`); streamed
    /// otherwise, aborting the upstream request when it grows past the
    /// limit or stalls. `permit` holds the buffered bytes' share.
    pub(super) async fn request_body<'a>(
        &'a self,
        ctx: &mut RequestCtx,
        parts: &Parts,
        (body, buffered): (Incoming, &'a AtomicUsize),
        spec: &RouteSpec,
        permit: &mut Option<Permit<'a>>,
    ) -> Result<ProxyBody, GatewayError> {
        Ok(match spec.buffer_body {
            Some(limit) => {
                let permit = permit.insert(self.bodies.permit(ctx.client_ip, buffered));
                let bytes = read_body(parts, body, limit, spec.body_timeout, permit).await?;
                ctx.body_sha256 = Some(crate::auth::hmac::body_sha256(&bytes));
                Either::Right(Full::new(bytes))
            }
            // A streamed body that grows past the limit or stalls aborts
            // the upstream request, which so never receives a complete
            // request.
            None => Either::Left(ClientBody::new(
                body,
                spec.body_limit as usize,
                spec.body_timeout,
                S::GATEWAY.limits.min_body_rate,
            )),
        })
    }
}

/// Reads a whole body of at most `limit` bytes within `timeout`: a
/// declared length over the limit is refused before reading, a longer
/// stream as soon as it passes it (413); a body not complete in time is
/// 408. Its bytes are taken from `permit` before they are held: a declared
/// length at once, a chunked body as it grows; 503 `overloaded` when the
/// budget has no room.
async fn read_body(
    parts: &http::request::Parts,
    mut body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
    permit: &mut Permit<'_>,
) -> Result<bytes::Bytes, GatewayError> {
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::client(ErrorKind::PayloadTooLarge));
    }
    let overloaded = |_| GatewayError::client(ErrorKind::Overloaded);
    let declared = declared.map_or(0, |n| n as usize);
    permit.grow(declared).map_err(overloaded)?;
    let read = async {
        let mut first: Option<bytes::Bytes> = None;
        let mut rest = bytes::BytesMut::new();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                GatewayError::client(ErrorKind::BadRequest("Malformed request body"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len();
            if len > limit {
                return Err(GatewayError::client(ErrorKind::PayloadTooLarge));
            }
            if len > permit.held() {
                permit.grow(len - permit.held()).map_err(overloaded)?;
            }
            // One chunk is kept as it came; several are joined once.
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                taken => {
                    if rest.is_empty() {
                        rest.reserve(declared.max(len));
                    }
                    rest.extend_from_slice(&taken.unwrap_or_default());
                    rest.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| rest.freeze()))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => Err(GatewayError::client(ErrorKind::RequestTimeout)),
    }
}
