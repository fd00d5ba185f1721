//! A streamed request body on its way upstream, watched for a client that
//! stalls (issue 13 §1 and §2).
//!
//! The body fails with [`BodyTimeout`] (the client's fault: 408, and the
//! upstream request aborted, so it never sees a complete request) when,
//! while the gateway is waiting for the client:
//! - the client sends nothing for the route's body timeout; or
//! - once that timeout has passed since the body started, the client has
//!   averaged less than `gateway.limits.min_body_rate` (Apache
//!   `mod_reqtimeout`'s `MinRate`: each `rate` bytes earn one more second).
//!
//! Only time spent waiting for the client counts: while the upstream is
//! not taking bytes (hyper does not poll the body), the clock is the
//! upstream's, not the client's.
//!
//! The attempt loop shares a [`Progress`] with the body, so that an
//! attempt that times out while the body is still incomplete and the
//! gateway is waiting for the client is charged to the client (408), not
//! to the upstream's circuit breaker or retry budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Limited;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client did not send its body in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client stalled its request body")
    }
}

impl std::error::Error for BodyTimeout {}

/// How far a streamed body has come, as the attempt loop sees it.
#[derive(Debug, Default)]
pub struct Progress {
    complete: AtomicBool,
    waiting: AtomicBool,
}

impl Progress {
    /// Whether the body is unfinished and the gateway is waiting for the
    /// client to send more: a timeout now is the client's doing.
    pub fn client_behind(&self) -> bool {
        !self.complete.load(Ordering::Acquire) && self.waiting.load(Ordering::Acquire)
    }
}

/// The client's streamed body, limited in size and watched in time.
#[derive(Debug)]
pub struct ClientBody {
    inner: Limited<Incoming>,
    /// `None` for a body that is already complete (most requests): no
    /// timer and no allocation for them.
    watch: Option<Watch>,
}

#[derive(Debug)]
struct Watch {
    timer: Pin<Box<Sleep>>,
    progress: Arc<Progress>,
    timeout: Duration,
    rate: u64,
    /// The start of the rate allowance, moved on by the time the upstream
    /// (not the client) held the body up.
    since: Instant,
    received: u64,
    /// Waiting for the client (the last poll found no data).
    waiting: bool,
    /// When the last frame was handed on.
    handed: Instant,
}

impl ClientBody {
    /// Wraps `body` (at most `limit` bytes) with the route's body timeout
    /// and the gateway's minimum rate in bytes per second.
    pub fn new(body: Incoming, limit: usize, timeout: Duration, rate: u64) -> Self {
        let watch = (!body.is_end_stream()).then(|| {
            let now = Instant::now();
            Watch {
                timer: Box::pin(tokio::time::sleep_until(now + timeout)),
                progress: Arc::default(),
                timeout,
                rate: rate.max(1),
                since: now,
                received: 0,
                waiting: false,
                handed: now,
            }
        });
        ClientBody {
            inner: Limited::new(body, limit),
            watch,
        }
    }

    /// The progress the attempt loop reads; `None` for a complete body.
    pub fn progress(&self) -> Option<Arc<Progress>> {
        self.watch.as_ref().map(|w| w.progress.clone())
    }
}

impl Watch {
    /// The gateway starts waiting for the client: arm the timer.
    fn start_waiting(&mut self, now: Instant) {
        self.waiting = true;
        self.progress.waiting.store(true, Ordering::Release);
        // Time the upstream spent not taking bytes is not the client's.
        self.since += now.saturating_duration_since(self.handed);
        // At most a day: a huge body must not overflow the deadline.
        let earned =
            Duration::from_secs(self.received / self.rate).min(Duration::from_secs(86_400));
        let rate_deadline = self.since + self.timeout + earned;
        let stall_deadline = now + self.timeout;
        self.timer.as_mut().reset(rate_deadline.min(stall_deadline));
    }

    fn handed_on(&mut self, now: Instant, bytes: usize, complete: bool) {
        self.waiting = false;
        self.handed = now;
        self.received += bytes as u64;
        self.progress.waiting.store(false, Ordering::Release);
        if complete {
            self.progress.complete.store(true, Ordering::Release);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(w) = this.watch.as_mut() else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        if !w.waiting {
            w.start_waiting(Instant::now());
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                w.handed_on(Instant::now(), n, this.inner.is_end_stream());
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                w.handed_on(Instant::now(), 0, true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                w.handed_on(Instant::now(), 0, false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => match w.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    w.waiting = false;
                    Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
