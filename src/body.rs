//! Body types. Upstream bodies stream through untouched; the gateway's own
//! answers are small and complete. Request bodies are bounded in time
//! ([`client`]) and, when the gateway buffers them, in memory ([`budget`]).

pub mod budget;
pub mod client;

use bytes::Bytes;
use http_body_util::{Either, Full};

use crate::proxy::pool::UpstreamBody;

/// A response body: an upstream's stream, or a body the gateway made.
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// A complete body the gateway made.
pub fn full(b: impl Into<Bytes>) -> ResponseBody {
    Either::Right(Full::new(b.into()))
}
