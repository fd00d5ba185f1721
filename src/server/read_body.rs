//! Phase 4 for a route that verifies a body signature: the request body
//! read whole, bounded in size, in time and by the gateway's body budget.

use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use crate::body::budget::Permit;
use crate::error::{ErrorKind, GatewayError};

/// Reads a whole body of at most `limit` bytes within `timeout`: a
/// declared length over the limit is refused before reading, a longer
/// stream as soon as it passes it (413); a body not complete in time is
/// 408. Its bytes are taken from `permit` before they are held: a declared
/// length at once, a chunked body as it grows; 503 `overloaded` when the
/// budget has no room.
pub(super) async fn read_body(
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
