//! The upstream connection pool: HTTP/1.1 keep-alive connections to one
//! service, made with `hyper::client::conn` and kept idle between requests.
//!
//! hyper-util's pooled client does this job for any host and protocol: a
//! pool keyed by scheme and authority, a waiting list, an executor task
//! spawned per request to notice when its connection is free again, and
//! connection metadata attached to every response. The gateway knows each
//! upstream at start-up, speaks HTTP/1.1 to it, and streams every response
//! body itself, so it can be simpler: one idle list per service, and a
//! connection goes back on it the moment the response body ends
//! ([`UpstreamBody`]). No task, map lookup or extension per request.
//!
//! Behaviour kept from hyper-util's client: a request that finds no idle
//! connection dials a new one but takes the first connection another
//! request gives back while it waits (under a burst, connects that the
//! upstream's listen backlog would delay are not waited for); a request
//! that a reused connection closed before it was sent is tried again on
//! another one (the upstream never saw it); connections idle longer than
//! the idle timeout are closed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use tokio::sync::oneshot;

use super::{Connector, ProxyBody};

/// Idle connections kept per upstream; a connection coming back to a full
/// list is closed.
const MAX_IDLE: usize = 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: the request never left the gateway.
    Connect(BoxError),
    /// The exchange failed once the request was, or may have been, sent.
    Request(hyper::Error),
}

/// Keep-alive connections to one upstream.
pub struct Pool {
    shared: Arc<Shared>,
    connector: Connector,
    /// The upstream's scheme and authority: what the connector dials.
    base: Uri,
    reaper: Once,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("base", &self.base).finish()
    }
}

struct Shared {
    state: Mutex<State>,
    idle_timeout: Duration,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    idle: VecDeque<Idle>,
    /// Requests dialing a new connection that would take a free one
    /// instead, oldest first.
    waiting: VecDeque<oneshot::Sender<SendRequest<ProxyBody>>>,
}

struct Idle {
    tx: SendRequest<ProxyBody>,
    since: Instant,
}

impl Pool {
    /// A pool dialing `base` (scheme and authority) with `connector`;
    /// connections idle longer than `idle_timeout` are closed.
    pub fn new(connector: Connector, base: Uri, idle_timeout: Duration) -> Self {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                idle_timeout,
            }),
            connector,
            base,
            reaper: Once::new(),
        }
    }

    /// Sends `req` (its URI absolute or origin-form; origin-form goes on
    /// the wire) on an idle connection, or a new one, and returns the
    /// response head with a body that gives the connection back when it
    /// ends.
    ///
    /// # Errors
    /// [`SendError::Connect`] when no connection could be made (safe to
    /// retry), [`SendError::Request`] when the exchange failed.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        origin_form(req.uri_mut());
        loop {
            let (mut tx, reused) = match self.shared.checkout() {
                Ok(tx) => (tx, true),
                Err(freed) => self.connect_or_take(freed).await?,
            };
            // A reused connection is ready once hyper has finished the
            // previous exchange on it; an error means it closed meanwhile.
            if reused && tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(UpstreamBody::track(resp, tx, &self.shared)),
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written: the upstream
                    // never saw it, so another connection may carry it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// A new connection, or the first one another request gives back
    /// before it is made. The dial runs in its own task and is not
    /// abandoned when a connection is handed over first: its connection
    /// joins the pool, so the pool grows to the peak number of requests in
    /// flight and then stops dialing (abandoned dials would be repeated at
    /// every burst).
    async fn connect_or_take(
        &self,
        mut freed: oneshot::Receiver<SendRequest<ProxyBody>>,
    ) -> Result<(SendRequest<ProxyBody>, bool), SendError> {
        // Started here rather than in `new`, which may run before the
        // runtime does.
        self.reaper.call_once(|| {
            tokio::spawn(reap(Arc::downgrade(&self.shared)));
        });
        let (done, mut dialed) = oneshot::channel();
        let (connector, base, shared) = (
            self.connector.clone(),
            self.base.clone(),
            self.shared.clone(),
        );
        tokio::spawn(async move {
            let result = dial(connector, base).await;
            if let Err(result) = done.send(result) {
                // Nobody waits for it any more.
                match result {
                    Ok(tx) => shared.put(tx),
                    Err(e) => {
                        tracing::debug!(error = ?e, "upstream dial failed after its request went on")
                    }
                }
            }
        });
        let connected = tokio::select! {
            biased;
            Ok(tx) = &mut freed => return Ok((tx, true)),
            dialed = &mut dialed => dialed,
        };
        // One may have been handed over just as the dial finished: keep it.
        freed.close();
        if let Ok(tx) = freed.try_recv() {
            self.shared.put(tx);
        }
        match connected {
            Ok(result) => result.map(|tx| (tx, false)),
            Err(_) => Err(SendError::Connect("the dialing task ended early".into())),
        }
    }

    /// Connections idle in the pool now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.shared.lock().idle.len()
    }
}

/// A new HTTP/1.1 connection to `base`, its connection task spawned.
async fn dial(mut connector: Connector, base: Uri) -> Result<SendRequest<ProxyBody>, SendError> {
    use tower_service::Service as _;
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(SendError::Connect)?;
    let io = connector.call(base).await.map_err(SendError::Connect)?;
    let (tx, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| SendError::Connect(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(tx)
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every operation, so a panic
        // elsewhere while holding the lock leaves nothing to repair.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live connection; else a place in the queue
    /// for the next one given back.
    fn checkout(
        &self,
    ) -> Result<SendRequest<ProxyBody>, oneshot::Receiver<SendRequest<ProxyBody>>> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut stale = VecDeque::new();
        while let Some(i) = state.idle.pop_back() {
            if now.duration_since(i.since) >= self.idle_timeout {
                // The newest is too old, so all are: close them all, after
                // the lock is released.
                stale = std::mem::take(&mut state.idle);
                break;
            }
            if !i.tx.is_closed() {
                return Ok(i.tx);
            }
        }
        // Requests that stopped waiting leave their places at the front.
        while state.waiting.front().is_some_and(|w| w.is_closed()) {
            state.waiting.pop_front();
        }
        let (give, take) = oneshot::channel();
        state.waiting.push_back(give);
        drop(state);
        drop(stale);
        Err(take)
    }

    /// A connection whose response has ended comes back: to the oldest
    /// request still waiting for one, else to the idle list.
    fn put(&self, mut tx: SendRequest<ProxyBody>) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        while let Some(waiter) = state.waiting.pop_front() {
            match waiter.send(tx) {
                Ok(()) => return,
                Err(back) => tx = back,
            }
        }
        if state.idle.len() < MAX_IDLE {
            state.idle.push_back(Idle { tx, since: now });
        }
    }

    /// Closes connections idle past the timeout (the oldest are at the
    /// front).
    fn expire(&self) {
        let now = Instant::now();
        let mut stale = Vec::new();
        let mut state = self.lock();
        while state
            .idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout || i.tx.is_closed())
        {
            stale.extend(state.idle.pop_front());
        }
        drop(state);
        drop(stale);
    }
}

/// Closes idle connections past their timeout even when no request comes
/// to notice them; ends with the pool.
async fn reap(shared: Weak<Shared>) {
    let every = match shared.upgrade() {
        Some(s) => (s.idle_timeout / 4).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        match shared.upgrade() {
            Some(s) => s.expire(),
            None => return,
        }
    }
}

/// An upstream response body, streamed untouched; its connection returns
/// to the pool when the body has been read to its end, and is closed if
/// the body is dropped before (the client went away mid-response).
pub struct UpstreamBody {
    body: Incoming,
    conn: Option<(SendRequest<ProxyBody>, Arc<Shared>)>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.conn.is_some())
            .finish()
    }
}

impl UpstreamBody {
    fn track(
        resp: Response<Incoming>,
        tx: SendRequest<ProxyBody>,
        shared: &Arc<Shared>,
    ) -> Response<Self> {
        let (parts, body) = resp.into_parts();
        let mut body = UpstreamBody {
            body,
            conn: Some((tx, shared.clone())),
        };
        if body.body.is_end_stream() {
            // No body (204, 304, HEAD, Content-Length: 0): nothing will
            // poll it, so the connection is free now.
            body.give_back();
        }
        Response::from_parts(parts, body)
    }

    fn give_back(&mut self) {
        if let Some((tx, shared)) = self.conn.take() {
            shared.put(tx);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.give_back(),
            // A broken body leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Only the path and query go on the wire to an upstream (RFC 9112
/// §3.2.1); the pool already knows where it is connected.
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let pq = std::mem::take(uri).into_parts().path_and_query;
    *uri = match pq {
        Some(pq) => Uri::from(pq),
        None => Uri::from_static("/"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts of an upstream's connections: accepted, and seen closed by
    /// the gateway's side.
    #[derive(Default)]
    struct Seen {
        accepted: AtomicUsize,
        closed: AtomicUsize,
    }

    /// An HTTP/1.1 upstream answering every request with `answer`, then
    /// closing the connection if `close_after` says so.
    async fn upstream(answer: &'static [u8], close_after: bool) -> (Uri, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if s.write_all(answer).await.is_err() || close_after {
                                return;
                            }
                        }
                    }
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (base, seen)
    }

    fn pool(base: Uri, idle_timeout: Duration) -> Pool {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Pool::new(connector, base, idle_timeout)
    }

    fn get(base: &Uri) -> Request<ProxyBody> {
        let host = base.authority().unwrap().as_str().to_owned();
        Request::get(format!("{base}x"))
            .header("host", host)
            .body(http_body_util::Either::Right(http_body_util::Full::new(
                Bytes::new(),
            )))
            .unwrap()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (base, seen) = upstream(OK, false).await;
        let pool = pool(base.clone(), Duration::from_secs(90));
        for _ in 0..5 {
            let resp = pool.send(get(&base)).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_handed_out() {
        let (base, seen) = upstream(OK, true).await;
        let pool = pool(base.clone(), Duration::from_secs(90));
        for _ in 0..2 {
            let resp = pool.send(get(&base)).await.unwrap();
            resp.into_body().collect().await.unwrap();
            // Time for the close to reach the gateway's side.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (base, seen) = upstream(OK, false).await;
        let pool = pool(base.clone(), Duration::from_millis(300));
        let resp = pool.send(get(&base)).await.unwrap();
        resp.into_body().collect().await.unwrap();
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(pool.idle(), 0, "the reaper closes it with no request");
        assert_eq!(seen.closed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
        // Promises 10 bytes, sends 2: the response never ends.
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok";
        let (base, seen) = upstream(cut, false).await;
        let pool = pool(base.clone(), Duration::from_secs(90));
        let mut resp = pool.send(get(&base)).await.unwrap();
        let first = resp.body_mut().frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ok");
        assert_eq!(pool.idle(), 0, "busy until its body ends");
        drop(resp);
        pool.send(get(&base)).await.unwrap();
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_that_dials_loses_no_connection_whoever_wins() {
        let (base, seen) = upstream(OK, false).await;
        let pool = pool(base.clone(), Duration::from_secs(90));
        let resp = pool.send(get(&base)).await.unwrap();
        // A second request finds no idle connection and dials, while the
        // first connection comes back: it takes whichever is first, and
        // the other joins the pool rather than being thrown away.
        let (second, ()) = tokio::join!(pool.send(get(&base)), async {
            resp.into_body().collect().await.unwrap();
        });
        second.unwrap().into_body().collect().await.unwrap();
        for _ in 0..50 {
            if pool.idle() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.idle(), 2);
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    }

    /// A connection over an in-memory pipe, for the pool's bookkeeping.
    async fn piped() -> (SendRequest<ProxyBody>, impl Sized) {
        let (ours, _theirs) = tokio::io::duplex(64);
        let (tx, conn) = http1::handshake(hyper_util::rt::TokioIo::new(ours))
            .await
            .unwrap();
        (tx, (conn, _theirs))
    }

    #[tokio::test]
    async fn a_connection_given_back_goes_to_the_oldest_waiting_request() {
        let shared = Shared {
            state: Mutex::new(State::default()),
            idle_timeout: Duration::from_secs(90),
        };
        let Err(mut first) = shared.checkout() else {
            panic!("nothing is idle yet")
        };
        let Err(mut second) = shared.checkout() else {
            panic!("nothing is idle yet")
        };
        let (a, _keep_a) = piped().await;
        shared.put(a);
        assert!(first.try_recv().is_ok(), "the oldest waiter gets it");
        assert!(second.try_recv().is_err());
        // A waiter that gave up is skipped.
        drop(second);
        let (b, _keep_b) = piped().await;
        shared.put(b);
        assert_eq!(shared.lock().idle.len(), 1);
        assert!(shared.checkout().is_ok());
    }

    #[test]
    fn origin_form_keeps_path_and_query_only() {
        let mut u: Uri = "http://10.0.0.1:8080/a/b?c=d".parse().unwrap();
        origin_form(&mut u);
        assert_eq!(u, "/a/b?c=d");
        let mut u: Uri = "https://svc.internal".parse().unwrap();
        origin_form(&mut u);
        assert_eq!(u, "/");
        let mut u: Uri = "/x?y".parse().unwrap();
        origin_form(&mut u);
        assert_eq!(u, "/x?y");
    }
}
