//! The accept loop and connections: TCP accept, the TLS handshake in the
//! connection's own task, hyper's per-connection limits, the header-read
//! deadline before the first request, and the graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{Connection, Gateway};
use crate::spec::{LimitsSpec, Spec};
use crate::tls::ClientIdentity;

/// Concurrent streams per HTTP/2 connection, as Envoy's edge-proxy
/// guidance and RFC 9113 §6.5.2's floor (hyper's default is 200); a client
/// opening more has them refused (RST_STREAM REFUSED_STREAM).
const H2_MAX_STREAMS: u32 = 100;

/// HTTP/2 streams a client may reset before the gateway accepts them.
const H2_MAX_PENDING_RESETS: usize = 20;

impl<S: Spec> Gateway<S> {
    /// Logs a failed TLS handshake as a security event, when rustls
    /// refused it (a bad, expired, missing or untrusted client
    /// certificate, no shared protocol), within the log budget
    /// ([`crate::tls::Terminator::refused`]); a client that merely went
    /// away is only a debug line.
    fn handshake_failed(&self, peer: SocketAddr, e: &std::io::Error) {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let (Some(tls), Some(rustls_error)) = (&self.tls, rustls_error) else {
            tracing::debug!(%peer, error = %e, "TLS connection closed during the handshake");
            return;
        };
        tls.refused(&self.access_log, peer, rustls_error);
    }
}

/// Serves one accepted connection (plain or after the TLS handshake),
/// watched for graceful shutdown.
async fn serve_connection<S: Spec, I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    gw: Arc<Gateway<S>>,
    conn: Connection,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The connection and the body bytes its requests buffer together
    // (all the streams of an HTTP/2 connection share one share).
    let conn = Arc::new((conn, AtomicUsize::new(0)));
    let started = Arc::new(AtomicBool::new(false));
    let first = started.clone();
    let svc = service_fn(move |req| {
        first.store(true, Ordering::Relaxed);
        let (gw, conn) = (gw.clone(), conn.clone());
        async move { Ok::<_, Infallible>(gw.handle_in(req, &conn.0, &conn.1).await) }
    });
    let served = builder.serve_connection(TokioIo::new(io), svc).into_owned();
    let served = watcher.watch(served);
    tokio::pin!(served);
    // `auto` first reads enough bytes to tell HTTP/2's preface from HTTP/1,
    // with no deadline; hyper's header-read timeout starts only after that.
    // A client sending nothing, or half a preface, would keep its
    // connection forever (hyperium/hyper#3756, #3962). So a connection that
    // has not started a request within the header-read timeout is closed,
    // whatever its protocol.
    let ended = tokio::select! {
        r = &mut served => Some(r),
        () = tokio::time::sleep(S::GATEWAY.header_read_timeout) => None,
    };
    let result = match ended {
        Some(r) => r,
        None if started.load(Ordering::Relaxed) => served.await,
        None => {
            tracing::debug!("no request within the header-read timeout; closing");
            return;
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops
/// accepting at once and lets in-flight requests finish until the spec's
/// drain deadline. Returns when every connection is closed or the deadline
/// passed.
pub async fn serve<S: Spec>(
    gateway: Arc<Gateway<S>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = connection_builder::<S>();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // The TLS handshake runs in the connection's own task, bounded by
        // the header-read timeout, so a slow client never stalls accepting.
        tokio::spawn(async move { accept_connection(&builder, watcher, stream, peer, gw).await });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open_connections = open, "shutting down: no new connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(S::GATEWAY.drain_timeout) => {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
}

/// hyper's connection builder with the spec's limits on one client,
/// proved by tests/hostile.rs. A head over them is answered by hyper's
/// parser before any request exists: a bare `431` (`400` for bytes that
/// are not HTTP) and a closed connection. hyper has no hook to give that
/// answer a body; contract §2 allows it.
fn connection_builder<S: Spec>() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let limits = S::GATEWAY.limits;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(S::GATEWAY.header_read_timeout)
        // Bounds the request line and headers together (`gateway.limits.
        // max_head`, 64 KiB by default; hyper's is ~400 KiB).
        .max_buf_size(limits.max_head);
    if limits.max_headers != LimitsSpec::HYPER_MAX_HEADERS {
        // Only when the spec asks for another count than hyper's own 100:
        // hyper parses into 100 inline slots, and a larger count is two
        // heap allocations per request (hyper 1.12 `proto/h1/role.rs`).
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_head).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_STREAMS)
        // Rapid reset (CVE-2023-44487): streams a client resets before
        // they are accepted; past this, GOAWAY ENHANCE_YOUR_CALM. h2's
        // default, stated here so an upgrade cannot loosen it unseen.
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS);
    builder
}

/// One accepted TCP connection: served as is on a plain listener; on a
/// TLS listener after a handshake bounded by the header-read timeout,
/// refused (and logged) when the handshake or the client's certificate
/// fails.
async fn accept_connection<S: Spec>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    gw: Arc<Gateway<S>>,
) {
    let Some(tls) = gw.tls() else {
        let conn = Connection {
            peer,
            tls: false,
            client: ClientIdentity::Anonymous,
        };
        return serve_connection(builder, watcher, stream, gw, conn).await;
    };
    let handshake = tls.acceptor().accept(stream);
    match tokio::time::timeout(S::GATEWAY.header_read_timeout, handshake).await {
        Ok(Ok(stream)) => {
            let client = match tls.identify(stream.get_ref().1) {
                Ok(client) => client,
                // A resumed session whose certificate has expired
                // since: refused like a handshake presenting it,
                // the connection closed unserved.
                Err(e) => return tls.refused(&gw.access_log, peer, &e),
            };
            let conn = Connection {
                peer,
                tls: true,
                client,
            };
            serve_connection(builder, watcher, stream, gw.clone(), conn).await;
        }
        Ok(Err(e)) => gw.handshake_failed(peer, &e),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
