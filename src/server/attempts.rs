//! Phase 6: the upstream call. Each attempt is built from the same
//! unsigned head, signed anew and admitted by the upstream's breaker; the
//! route's retry policy and retry budget decide whether another follows,
//! and the route's timeout bounds all of them together.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Body as _;

use super::Gateway;
use crate::chain::RequestCtx;
use crate::error::{ErrorKind, GatewayError, Side};
use crate::policy::retry::RetrySpec;
use crate::proxy::pool::UpstreamBody;
use crate::proxy::{self, ProxyBody};
use crate::spec::{RouteSpec, Spec};

/// An upstream's answer and how long its head took.
type Answer = Result<(Response<UpstreamBody>, Duration), GatewayError>;

impl<S: Spec> Gateway<S> {
    /// Sends the request, retrying as the route's policy allows.
    ///
    /// May refuse with 502 (the upstream failed or answered badly, or the
    /// head could not be built), 503 (the breaker is open), 504 (no
    /// attempt answered in `spec.timeout`), or 408 when an attempt timed
    /// out while the client's streamed body was still behind: the client's
    /// doing, not the upstream's, so neither counted by the breaker nor
    /// retried.
    pub(super) async fn attempts(
        &self,
        spec: &RouteSpec,
        upstream: &proxy::Upstream,
        ctx: &RequestCtx,
        mut parts: Parts,
        body: ProxyBody,
    ) -> Answer {
        let deadline = Instant::now() + spec.timeout;
        // How far the client's streamed body has come, to tell a stalled
        // client from a hung upstream.
        let progress = match &body {
            Either::Left(b) => b.progress(),
            Either::Right(_) => None,
        };
        let replay = replay_body(spec, &body).await;
        let policy = spec
            .retries
            .filter(|r| r.method_ok(&parts.method) && replay.is_some());
        if let Some(r) = &policy {
            self.budgets[spec.index].deposit(r);
        }
        let mut body = Some(body);
        let mut attempt = 1;
        loop {
            // The last possible attempt takes the head; earlier ones copy
            // it, so a retry starts from the original (a copy of a header
            // map costs allocations on every request otherwise).
            let last = policy.is_none_or(|r| attempt >= r.attempts);
            let mut head = attempt_head(&mut parts, last)?;
            upstream.sign(&mut head, ctx)?;
            let this_body = attempt_body(replay.as_ref(), &mut body, attempt)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(GatewayError::upstream(
                    ErrorKind::GatewayTimeout,
                    "no attempt time left",
                ));
            }
            let per_try = policy
                .and_then(|r| r.per_try_timeout)
                .map_or(remaining, |t| t.min(remaining));
            let call = proxy::BreakerCall::admit(upstream)?;
            let mut result = self
                .proxy
                .send(upstream, Request::from_parts(head, this_body), per_try)
                .await;
            if let (Err(e), Some(p)) = (&result, &progress) {
                // The attempt ran out of time while the gateway was still
                // waiting for the client's body: the upstream could not
                // have answered a request it never got whole. The client's
                // doing (408): not the breaker's, never retried.
                if e.kind == ErrorKind::GatewayTimeout && p.client_behind() {
                    result = Err(GatewayError::client(ErrorKind::RequestTimeout));
                }
            }
            call.record(&result);
            let Some(r) = policy.filter(|r| attempt < r.attempts) else {
                return result;
            };
            if !retryable(&r, &result, per_try, remaining) || !self.budgets[spec.index].withdraw(&r)
            {
                return result;
            }
            let pause = r.backoff_before(attempt);
            if Instant::now() + pause >= deadline {
                return result;
            }
            tracing::debug!(route = spec.id, attempt, "retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// The body again for a retry: a body can be sent again only if it is
/// empty or was read in full (and then only when the route retries).
async fn replay_body(spec: &RouteSpec, body: &ProxyBody) -> Option<Bytes> {
    match body {
        Either::Right(full) if spec.retries.is_some() => Some(
            full.clone()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default(),
        ),
        Either::Left(b) if b.is_end_stream() => Some(Bytes::new()),
        _ => None,
    }
}

/// One attempt's head: the original's, taken by the `last` attempt and
/// copied by earlier ones.
fn attempt_head(parts: &mut Parts, last: bool) -> Result<Parts, GatewayError> {
    let (mut head, ()) = Request::builder()
        .method(parts.method.clone())
        .uri(if last {
            std::mem::take(&mut parts.uri)
        } else {
            parts.uri.clone()
        })
        .version(parts.version)
        .body(())
        .map_err(|e| GatewayError::upstream(ErrorKind::BadGateway, e.to_string()))?
        .into_parts();
    head.headers = if last {
        std::mem::take(&mut parts.headers)
    } else {
        parts.headers.clone()
    };
    Ok(head)
}

/// One attempt's body: the client's on the first attempt, the replayed
/// bytes on later ones.
fn attempt_body(
    replay: Option<&Bytes>,
    body: &mut Option<ProxyBody>,
    attempt: u32,
) -> Result<ProxyBody, GatewayError> {
    match (replay, body.take()) {
        (Some(bytes), _) if attempt > 1 => Ok(Either::Right(Full::new(bytes.clone()))),
        (_, Some(b)) => Ok(b),
        (Some(bytes), None) => Ok(Either::Right(Full::new(bytes.clone()))),
        (None, None) => Err(GatewayError::upstream(
            ErrorKind::BadGateway,
            "body already sent",
        )),
    }
}

/// Whether an attempt's `result` is worth another under `r`: a status the
/// policy names, a per-try timeout that left time for more, or an
/// upstream failure that says trying again could succeed.
fn retryable(r: &RetrySpec, result: &Answer, per_try: Duration, remaining: Duration) -> bool {
    match result {
        Ok((resp, _)) => r.on.contains(&resp.status().as_u16()),
        Err(e) if e.kind == ErrorKind::GatewayTimeout => {
            r.per_try_timeout.is_some() && per_try < remaining
        }
        Err(e) => e.side == Side::Upstream && e.retryable,
    }
}
