//! Faults and load (hardening issue, point 3): an upstream killed in the
//! middle of a streamed response and restarted, SIGTERM to the real binary
//! under load, and thousands of concurrent keep-alive connections.
//!
//! Every wait polls for its condition and gives up after [`PATIENCE`], so a
//! passing run is as fast as the machine allows and a loaded CI machine
//! only makes it slower, not flaky.

#[path = "support/lib.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

mod faults {
    gateway_macros::spec!("tests/specs/faults.yaml");
}

/// The longest any single wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// `services.stream.circuit_breaker` in tests/specs/faults.yaml.
const BREAKER_FAILURES: usize = 3;
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(2);

/// `gateway.timeouts.drain` in the bundled gateway.yaml (the binary's spec).
const BINARY_DRAIN: Duration = Duration::from_secs(30);

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// [`PATIENCE`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A different number on each call (std's randomly keyed hasher).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// `fut`, or a panic naming `what` after [`PATIENCE`].
async fn patiently<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

// === an upstream that can be killed and restarted =========================

/// How a killed upstream's sockets close: as when a process dies with
/// nothing unread (FIN), or abortively (RST, `SO_LINGER` 0).
#[derive(Debug, Clone, Copy)]
enum Death {
    Close,
    Reset,
}

/// What one run of the upstream saw, and the gate its `/hold` requests
/// wait on.
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    release: watch::Sender<bool>,
}

/// An upstream whose every socket can be closed at once, as when its
/// process is killed, and which can be started again on the same port.
/// Paths: `.../events` streams server-sent events every 20 ms for ever;
/// `.../sized` declares a 1 MB body and sends 4 KB of it; `.../hold` waits
/// for [`Upstream::release`]; anything else answers `ok`.
struct Upstream {
    addr: SocketAddr,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Upstream {
    /// Starts on a free port below the ephemeral range, so that while the
    /// upstream is dead no other socket (a connection, a listener on port
    /// 0) can be given its port before the restart.
    async fn start(death: Death) -> Upstream {
        let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(0);
        if low > 11_000 {
            for _ in 0..100 {
                let port = 10_000 + (random() % u64::from(low - 10_000)) as u16;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if let Ok(listener) = TcpListener::bind(addr).await {
                    return Upstream::serve(listener, death);
                }
            }
        }
        Upstream::start_on("127.0.0.1:0".parse().unwrap(), death).await
    }

    /// Binds `addr` (polling: the port of a killed run is free again at
    /// once, but allow the kernel a moment) and serves.
    async fn start_on(addr: SocketAddr, death: Death) -> Upstream {
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(started.elapsed() < PATIENCE, "cannot bind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        Upstream::serve(listener, death)
    }

    fn serve(listener: TcpListener, death: Death) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats {
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            release: watch::channel(false).0,
        });
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (s, conns) = (stats.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Death::Reset = death {
                    stream.set_zero_linger().unwrap();
                }
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                conns.lock().unwrap().push(conn);
            }
        });
        Upstream {
            addr,
            stats,
            accept,
            connections,
        }
    }

    /// Closes the listener and every connection, mid-response or not, and
    /// returns once they are closed.
    async fn kill(self) -> SocketAddr {
        self.accept.abort();
        let _ = self.accept.await;
        // The accept loop is gone, so the list no longer grows.
        let conns = std::mem::take(&mut *self.connections.lock().unwrap());
        for c in &conns {
            c.abort();
        }
        for c in conns {
            let _ = c.await;
        }
        self.addr
    }

    fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.stats.release.send_replace(true);
    }
}

async fn answer(
    stats: Arc<Stats>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let streamed = |rx| BodyExt::boxed(StreamBody::new(stream_from(rx)));
    if path.ends_with("/events") {
        tokio::spawn(async move {
            for n in 0.. {
                let event = Frame::data(Bytes::from(format!("data: event {n}\n\n")));
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut resp = Response::new(streamed(rx));
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(resp);
    }
    if path.ends_with("/sized") {
        tokio::spawn(async move {
            for _ in 0..4 {
                let chunk = Frame::data(Bytes::from(vec![b'x'; 1000]));
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            // The rest of the declared length never comes.
            tx.closed().await;
        });
        let mut resp = Response::new(streamed(rx));
        resp.headers_mut()
            .insert("content-length", "1000000".parse().unwrap());
        return Ok(resp);
    }
    let body = if path.ends_with("/hold") {
        let mut release = stats.release.subscribe();
        let _ = release.wait_for(|r| *r).await;
        "held"
    } else {
        "ok"
    };
    Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(body)))))
}

fn stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// One request on a new HTTP/1.1 connection, returning the response as
/// soon as its head arrives (the body still streaming).
async fn h1(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "gateway")
        .body(Empty::<Bytes>::new())
        .unwrap();
    patiently(path, send.send_request(req))
        .await
        .expect("a response head")
}

/// Reads `resp`'s body until it holds `want`.
async fn read_until(resp: &mut Response<Incoming>, want: &str) -> String {
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(want) {
        let frame = patiently(want, resp.body_mut().frame()).await;
        match frame {
            Some(Ok(f)) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
            other => panic!("the body ended before {want:?}: {other:?}"),
        }
    }
    String::from_utf8(got).unwrap()
}

/// Reads what is left of `resp`'s body and returns how it ended: it must
/// be an error, never a clean end, which the client would take for the
/// whole response.
async fn assert_aborted(resp: &mut Response<Incoming>, what: &str) -> String {
    loop {
        match patiently(what, resp.body_mut().frame()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return e.to_string(),
            None => panic!("{what}: the body ended cleanly: a truncated response passed as whole"),
        }
    }
}

/// The upstream killed mid-stream: the client's response is aborted; with
/// the upstream down, requests fail (502) until the circuit opens (503
/// without a connection); restarted on the same port, the circuit
/// half-opens (one probe at a time) and closes again on a good answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_killed_mid_stream_aborts_the_response_then_the_circuit_opens_and_recovers() {
    let up = Upstream::start(Death::Close).await;
    let gw = support::start::<faults::Spec>(&[
        ("FAULTS_STREAM_URL", format!("http://{}", up.addr)),
        ("FAULTS_PLAIN_URL", "http://127.0.0.1:9".into()),
    ])
    .await;

    // 1. Killed in the middle of a server-sent event stream.
    let mut resp = h1(gw.addr, "/stream/events").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let seen = read_until(&mut resp, "data: event 1\n\n").await;
    assert!(
        seen.starts_with("data: event 0\n\ndata: event 1\n\n"),
        "{seen:?}"
    );
    let addr = up.kill().await;
    let how = assert_aborted(&mut resp, "the event stream after the kill").await;
    eprintln!("event stream after the kill: {how}");

    // 2. Down: each request is a connect failure (502), which counts
    // against the breaker (the aborted stream above had answered 200, so
    // it did not); the circuit then opens and answers 503 at once.
    // The circuit opens when the last failure is recorded, so no earlier
    // than `last_failure`, and half-opens no earlier than `open_for` later.
    let mut last_failure = Instant::now();
    for i in 0..BREAKER_FAILURES {
        last_failure = Instant::now();
        let got = support::get(&gw.url("/stream/down")).await;
        assert_eq!(got.status, 502, "request {i} to a dead upstream: {got:?}");
    }
    let got = support::get(&gw.url("/stream/down")).await;
    assert_eq!(got.status, 503, "{got:?}");
    assert_eq!(got.json()["error"], "Service temporarily unavailable");

    // 3. Restarted on the same port while the circuit is open: still 503,
    // and nothing connects to it.
    let up = Upstream::start_on(addr, Death::Close).await;
    assert_eq!(up.addr, addr);
    for _ in 0..5 {
        let got = support::get(&gw.url("/stream/open")).await;
        if got.status != 503 && last_failure.elapsed() >= BREAKER_OPEN_FOR {
            panic!(
                "the machine is too slow for this test: {:?} passed while the circuit was to stay open",
                last_failure.elapsed()
            );
        }
        assert_eq!(got.status, 503, "{got:?}");
    }
    assert_eq!(up.connections(), 0, "the open circuit connected upstream");

    // 4. After `open_for` the circuit half-opens: the first request through
    // is a probe. Held at the upstream, it keeps the only probe slot, so
    // another request still gets 503.
    let url = gw.url("/stream/hold");
    let started = Instant::now();
    let probe = loop {
        let u = url.clone();
        let attempt = tokio::spawn(async move { support::get(&u).await });
        while !attempt.is_finished() && up.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if up.requests() == 1 {
            break attempt;
        }
        let got = attempt.await.unwrap();
        assert_eq!(got.status, 503, "before the probe: {got:?}");
        assert!(
            started.elapsed() < PATIENCE,
            "the circuit never half-opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        last_failure.elapsed() >= BREAKER_OPEN_FOR,
        "probed {:?} after opening, before open_for",
        last_failure.elapsed()
    );
    let got = support::get(&gw.url("/stream/while-probing")).await;
    assert_eq!(
        got.status, 503,
        "a second request during the probe: {got:?}"
    );
    assert_eq!(up.requests(), 1, "only the probe reached the upstream");
    up.release();
    let got = patiently("the probe", probe).await.unwrap();
    assert_eq!((got.status, &got.body[..]), (StatusCode::OK, &b"held"[..]));

    // 5. Closed again: requests and streams go through.
    for _ in 0..3 {
        let got = support::get(&gw.url("/stream/again")).await;
        assert_eq!((got.status, &got.body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    let mut resp = h1(gw.addr, "/stream/events").await;
    assert_eq!(resp.status(), StatusCode::OK);
    read_until(&mut resp, "data: event 2\n\n").await;
    drop(resp);
    gw.shutdown().await;
    up.kill().await;
}

/// The other framings of an aborted response: a body with a declared
/// length cut short by an abortive close (RST), and an HTTP/2 stream,
/// which is reset while its connection keeps serving other streams.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_upstream_aborts_sized_bodies_and_http2_streams() {
    let up = Upstream::start(Death::Reset).await;
    let gw = support::start::<faults::Spec>(&[
        ("FAULTS_STREAM_URL", format!("http://{}", up.addr)),
        ("FAULTS_PLAIN_URL", "http://127.0.0.1:9".into()),
    ])
    .await;

    // HTTP/1.1 with Content-Length: fewer bytes than declared, then an error.
    let mut resp = h1(gw.addr, "/stream/sized").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "1000000");
    read_until(&mut resp, &"x".repeat(4000)).await;
    let addr = up.kill().await;
    let how = assert_aborted(&mut resp, "the sized body after the kill").await;
    eprintln!("sized body after the kill: {how}");

    // HTTP/2 (prior knowledge): the stream is reset, the connection stays.
    let up = Upstream::start_on(addr, Death::Close).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        Request::get(format!("http://gateway{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let mut resp = patiently("h2 events", h2.send_request(get("/stream/events")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    read_until(&mut resp, "data: event 1\n\n").await;
    let addr = up.kill().await;
    let how = assert_aborted(&mut resp, "the HTTP/2 stream after the kill").await;
    eprintln!("HTTP/2 stream after the kill: {how}");
    let up = Upstream::start_on(addr, Death::Close).await;
    let resp = patiently("h2 after the abort", h2.send_request(get("/stream/after")))
        .await
        .expect("the HTTP/2 connection still serves");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    gw.shutdown().await;
    up.kill().await;
}

// === SIGTERM under load, on the real binary ===============================

/// What a request does at the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fast,
    /// Answers after 150 ms.
    Paced,
    /// Answers when the test releases it.
    Held,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fast => "fast",
            Kind::Paced => "paced",
            Kind::Held => "held",
        }
    }
}

/// The upstream of the SIGTERM test: answers `answer <tag>` for
/// `/rules/<tag>?kind=...`, and remembers every tag it received.
struct LoadUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<HashSet<String>>>,
    held: Arc<AtomicUsize>,
    release: Arc<watch::Sender<bool>>,
}

impl LoadUpstream {
    async fn start() -> LoadUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = LoadUpstream {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            held: Arc::default(),
            release: Arc::new(watch::channel(false).0),
        };
        let (seen, held, release) = (up.seen.clone(), up.held.clone(), up.release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, held, release) = (seen.clone(), held.clone(), release.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (seen, held, release) = (seen.clone(), held.clone(), release.clone());
                        async move {
                            let tag = req.uri().path().rsplit('/').next().unwrap().to_owned();
                            seen.lock().unwrap().insert(tag.clone());
                            match req.uri().query() {
                                Some("kind=paced") => {
                                    tokio::time::sleep(Duration::from_millis(150)).await;
                                }
                                Some("kind=held") => {
                                    held.fetch_add(1, Ordering::SeqCst);
                                    let _ = release.subscribe().wait_for(|r| *r).await;
                                }
                                _ => {}
                            }
                            let body = Full::new(Bytes::from(format!("answer {tag}")));
                            Ok::<_, Infallible>(Response::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }
}

/// The gateway binary as a child process, killed if the test fails first.
struct Gateway {
    child: std::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts the binary (the bundled gateway.yaml) with the orchestration
    /// service at `upstream`, and returns it with its listen address.
    async fn start(upstream: SocketAddr) -> (Gateway, SocketAddr) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
        c.env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_ACCESS_LOG", "off")
            .env("GATEWAY_WORKERS", "2")
            .env("RUST_LOG", "info")
            .env("JWT_SECRET", support::JWT_SECRET)
            .env("ORCHESTRATION_URL", format!("http://{upstream}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (service, _, secret) in support::AEGIS_SERVICES {
            c.env(secret, support::service_secret(service));
        }
        let mut child = c.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, lines) = (child.stdout.take().unwrap(), stdout.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let (mut err, text) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            text.lock().unwrap().push_str(&s);
        });
        let gw = Gateway {
            child,
            stdout,
            stderr,
        };
        let mut addr = None;
        eventually("the gateway's `gateway listening` line", || {
            addr = gw.stdout.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "gateway listening").then(|| v["listen"].as_str()?.parse().ok())?
            });
            addr.is_some()
        })
        .await;
        (gw, addr.unwrap())
    }

    fn logged(&self, message: &str) -> bool {
        self.stdout.lock().unwrap().iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["message"] == message)
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!(
                "gateway stdout:\n{}\ngateway stderr:\n{}",
                self.stdout.lock().unwrap().join("\n"),
                self.stderr.lock().unwrap()
            );
        }
    }
}

/// How one attempt at a request ended, on the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// The whole upstream answer, 200.
    Answered,
    /// A whole response, but not the upstream's answer to this request.
    Wrong(String),
    /// A response head, then the body broke: a reset mid-response.
    Truncated(String),
    /// The connection failed before any response.
    NoResponse(String),
}

#[derive(Debug)]
struct Attempt {
    tag: String,
    ended_at: Instant,
    ended: Ended,
}

#[derive(Default)]
struct Journal {
    attempts: Vec<Attempt>,
    /// Requests never answered: (id, why).
    given_up: Vec<(usize, String)>,
    /// Every connection attempt: (when it started, whether it connected).
    connects: Vec<(Instant, bool)>,
}

/// One client connection: sends `plan` in order on a keep-alive
/// connection, reconnecting when the gateway closed it, until a connection
/// is refused. Before request `pause_at`, it waits for `gate`. Each request
/// is tried at most twice (a keep-alive connection may close under it).
async fn client(
    addr: SocketAddr,
    plan: Vec<(usize, Kind, String)>,
    pause_at: Option<usize>,
    mut gate: watch::Receiver<bool>,
    journal: Arc<Mutex<Journal>>,
) {
    let mut conn: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    for (k, (id, kind, bearer)) in plan.iter().enumerate() {
        if pause_at == Some(k) {
            let _ = gate.wait_for(|open| *open).await;
        }
        let mut tries = 0;
        let answered = loop {
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                let started = Instant::now();
                let stream = TcpStream::connect(addr).await;
                journal
                    .lock()
                    .unwrap()
                    .connects
                    .push((started, stream.is_ok()));
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        let mut j = journal.lock().unwrap();
                        for (id, ..) in &plan[k..] {
                            j.given_up.push((*id, format!("connect: {e}")));
                        }
                        return;
                    }
                };
                let Ok((send, c)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    continue;
                };
                tokio::spawn(c);
                conn = Some(send);
            }
            let send = conn.as_mut().unwrap();
            if send.ready().await.is_err() {
                conn = None;
                continue;
            }
            tries += 1;
            let tag = format!("{id}-{tries}");
            let req = Request::get(format!("/api/v1/rules/{tag}?kind={}", kind.name()))
                .header("host", "gateway")
                .header("authorization", bearer)
                .body(Empty::new())
                .unwrap();
            let ended = match tokio::time::timeout(PATIENCE, send.send_request(req)).await {
                Err(_) => Ended::Wrong("no response head in time".into()),
                Ok(Err(e)) => Ended::NoResponse(e.to_string()),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    match tokio::time::timeout(PATIENCE, resp.into_body().collect()).await {
                        Err(_) => Ended::Truncated("the body stalled".into()),
                        Ok(Err(e)) => Ended::Truncated(e.to_string()),
                        Ok(Ok(body)) => {
                            let body = body.to_bytes();
                            if status == StatusCode::OK && body == format!("answer {tag}") {
                                Ended::Answered
                            } else {
                                Ended::Wrong(format!("{status} {}", String::from_utf8_lossy(&body)))
                            }
                        }
                    }
                }
            };
            let answered = ended == Ended::Answered;
            let no_response = matches!(ended, Ended::NoResponse(_));
            journal.lock().unwrap().attempts.push(Attempt {
                tag,
                ended_at: Instant::now(),
                ended,
            });
            if no_response {
                conn = None;
                if tries < 2 {
                    continue;
                }
            }
            break answered;
        };
        if !answered {
            journal
                .lock()
                .unwrap()
                .given_up
                .push((*id, "no answer after two tries".into()));
        }
    }
}

/// 200 requests on 20 keep-alive connections to the binary; SIGTERM while
/// 8 requests are held at the upstream, 8 connections send paced requests
/// and 4 sit idle. Every request the upstream received is answered in full;
/// no response is cut off; nothing fails before the signal; new
/// connections are refused from the signal on; the held requests finish
/// and the process exits 0, drained, well within the drain deadline.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_finishes_accepted_requests_refuses_new_ones_and_exits_zero() {
    const CONNECTIONS: usize = 20;
    const PER_CONNECTION: usize = 10;
    const HELD_CONNS: usize = 8; // connections 0..8: request 4 is held
    const PACED_CONNS: usize = 8; // connections 8..16: every other request paced
    const HELD_AT: usize = 4;
    const IDLE_AT: usize = 3; // connections 16..20 pause before request 3

    let up = LoadUpstream::start().await;
    let (mut gw, addr) = Gateway::start(up.addr).await;
    let journal = Arc::new(Mutex::new(Journal::default()));
    let (signalled, gate) = watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..CONNECTIONS {
        let plan: Vec<_> = (0..PER_CONNECTION)
            .map(|k| {
                let paced = (HELD_CONNS..HELD_CONNS + PACED_CONNS).contains(&c);
                let kind = if c < HELD_CONNS && k == HELD_AT {
                    Kind::Held
                } else if paced && k % 2 == 1 {
                    Kind::Paced
                } else {
                    Kind::Fast
                };
                let id = c * PER_CONNECTION + k;
                // One user per request: the bundled spec limits each user
                // to a burst of 10.
                let user = format!("load-{id}");
                (
                    id,
                    kind,
                    format!("Bearer {}", support::aegis_token(&user, &["operator"])),
                )
            })
            .collect();
        let pause_at = (c >= HELD_CONNS + PACED_CONNS).then_some(IDLE_AT);
        clients.push(tokio::spawn(client(
            addr,
            plan,
            pause_at,
            gate.clone(),
            journal.clone(),
        )));
    }

    // Every held request is in flight, and the idle connections are idle.
    eventually("the held requests at the upstream", || {
        up.held.load(Ordering::SeqCst) == HELD_CONNS
    })
    .await;
    let idle_ready = |j: &Journal| {
        (HELD_CONNS + PACED_CONNS..CONNECTIONS).all(|c| {
            let tag = format!("{}-", c * PER_CONNECTION + IDLE_AT - 1);
            j.attempts
                .iter()
                .any(|a| a.tag.starts_with(&tag) && a.ended == Ended::Answered)
        })
    };
    eventually("the idle connections' first requests", || {
        idle_ready(&journal.lock().unwrap())
    })
    .await;
    // All answered (checked below: nothing fails before the signal).
    let answered_before = journal.lock().unwrap().attempts.len();

    let sigterm = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // New connections are refused while the held requests still run.
    let refused_at = loop {
        assert!(
            sigterm.elapsed() < PATIENCE,
            "still accepting connections {:?} after SIGTERM",
            sigterm.elapsed()
        );
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break started,
            // Reset as the listener closed under the handshake: not
            // refused yet.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(Err(e)) => panic!("connect after SIGTERM: {e}"),
            // Connected (accepted, or queued for accepting), or the
            // handshake hangs in a full queue: not refused.
            Ok(Ok(_)) | Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The process waits for its in-flight requests, however long they
    // take (up to the drain deadline): hold them a while longer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "exited with requests in flight"
    );
    assert_eq!(up.held.load(Ordering::SeqCst), HELD_CONNS);
    // The idle connections try their next request; then the held ones end.
    signalled.send_replace(true);
    up.release.send_replace(true);

    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sigterm.elapsed() < BINARY_DRAIN + PATIENCE,
            "no exit {:?} after SIGTERM",
            sigterm.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_after = sigterm.elapsed();
    for c in clients {
        patiently("a client", c).await.unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    assert!(
        exited_after < BINARY_DRAIN,
        "exit took {exited_after:?}, past the drain deadline"
    );

    let j = journal.lock().unwrap();
    let seen = up.seen.lock().unwrap();
    let ended: HashMap<&str, &Ended> = j
        .attempts
        .iter()
        .map(|a| (a.tag.as_str(), &a.ended))
        .collect();
    // Nothing is cut off or answered wrongly, ever.
    let bad: Vec<_> = j
        .attempts
        .iter()
        .filter(|a| matches!(a.ended, Ended::Wrong(_) | Ended::Truncated(_)))
        .collect();
    assert!(bad.is_empty(), "wrong or truncated responses: {bad:#?}");
    // Every request the upstream received was answered in full.
    let lost: Vec<_> = seen
        .iter()
        .filter(|t| ended.get(t.as_str()) != Some(&&Ended::Answered))
        .collect();
    assert!(
        lost.is_empty(),
        "reached the upstream but not answered to the client: {lost:?}"
    );
    // Before the signal, everything was answered.
    let early: Vec<_> = j
        .attempts
        .iter()
        .filter(|a| a.ended_at < sigterm && a.ended != Ended::Answered)
        .collect();
    assert!(early.is_empty(), "failed before SIGTERM: {early:#?}");
    // The held requests, in flight at the signal, finished.
    for c in 0..HELD_CONNS {
        let tag = format!("{}-1", c * PER_CONNECTION + HELD_AT);
        assert_eq!(ended.get(tag.as_str()), Some(&&Ended::Answered), "{tag}");
    }
    // After them, their connections were closed and no new one was
    // accepted: the rest of their requests were never answered.
    let answered_ids: HashSet<usize> = j
        .attempts
        .iter()
        .filter(|a| a.ended == Ended::Answered)
        .map(|a| a.tag.split('-').next().unwrap().parse().unwrap())
        .collect();
    for c in 0..HELD_CONNS {
        for k in HELD_AT + 1..PER_CONNECTION {
            let id = c * PER_CONNECTION + k;
            assert!(
                !answered_ids.contains(&id),
                "request {id}, sent after the drain began, was served"
            );
        }
    }
    let late_connects: Vec<_> = j
        .connects
        .iter()
        .filter(|(t, ok)| *ok && *t > refused_at)
        .collect();
    assert!(
        late_connects.is_empty(),
        "connections accepted after the listener closed: {}",
        late_connects.len()
    );
    assert_eq!(
        answered_ids.len() + j.given_up.len(),
        CONNECTIONS * PER_CONNECTION,
        "every request is answered or given up once: {:?}",
        j.given_up
    );
    // It stopped because every connection had closed, not at the deadline.
    assert!(
        gw.logged("drained") && !gw.logged("drain deadline passed; closing remaining connections"),
        "not drained: {:#?}",
        gw.stdout.lock().unwrap()
    );
    let no_response = j
        .attempts
        .iter()
        .filter(|a| matches!(a.ended, Ended::NoResponse(_)))
        .count();
    eprintln!(
        "SIGTERM: {answered_before} answered before, {} after; {} given up \
         (connection refused or closed before a response: {no_response} attempts); \
         exit 0 after {exited_after:?}",
        answered_ids.len() - answered_before,
        j.given_up.len(),
    );
}

// === thousands of keep-alive connections ==================================

/// The soft limit on open files, from /proc/self/limits.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Appends what the connection has to `buf`; an error when it is closed.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err(format!("closed after {} bytes", buf.len()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// One request on an open connection, read byte by byte as sent: the
/// status and body, or how the connection failed.
async fn exchange(s: &mut TcpStream, path: &str) -> Result<(u16, Bytes), String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(2048);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(s, &mut buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let mut length = None;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
            if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                return Err(format!("the gateway is closing the connection: {head}"));
            }
        }
    }
    let length = length.ok_or_else(|| format!("no content-length: {head}"))?;
    while buf.len() < head_end + length {
        read_more(s, &mut buf).await?;
    }
    if buf.len() > head_end + length {
        return Err("bytes past the response".into());
    }
    Ok((status, Bytes::copy_from_slice(&buf[head_end..])))
}

/// Opens thousands of keep-alive connections, sends one request on each
/// (all at once), holds them all open, then sends a second request on each
/// connection: every request is answered on its own connection, and no
/// connection is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_keep_alive_connections_all_stay_open_and_answer_twice() {
    const WANTED: usize = 2000;
    const HOLD: Duration = Duration::from_secs(1);
    // Per connection, in this process: the client's socket, the gateway's,
    // and at worst one upstream connection (both ends) per concurrent
    // request. Other tests in this binary run at the same time: keep 512
    // descriptors for them.
    let n = match (open_file_limit(), open_fds()) {
        (Some(limit), Some(open)) => WANTED.min(limit.saturating_sub(open + 512) / 4),
        _ => WANTED,
    };
    if n < WANTED {
        eprintln!(
            "open-file limit {:?}: {n} connections instead of {WANTED}",
            open_file_limit()
        );
    }
    assert!(n >= 100, "the open-file limit leaves only {n} connections");

    let upstream = support::echo_upstream("plain").await;
    let gw = support::start::<faults::Spec>(&[
        ("FAULTS_STREAM_URL", "http://127.0.0.1:9".into()),
        ("FAULTS_PLAIN_URL", format!("http://{upstream}")),
    ])
    .await;
    let started = Instant::now();

    // Connect, at most 128 handshakes at a time (the listen backlog is 1024).
    let connecting = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = connecting.clone().acquire_owned().await.unwrap();
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await;
            drop(permit);
            s
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        conns.push(
            patiently("a connection", t)
                .await
                .unwrap()
                .expect("connects"),
        );
    }
    let connected = started.elapsed();

    // One request on each, all at once; then the next on each, all at once.
    for round in 1..=2 {
        let mut tasks = Vec::with_capacity(n);
        for (i, mut s) in conns.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let path = format!("/plain/c{i}/r{round}");
                let got = exchange(&mut s, &path).await;
                (s, got)
            }));
        }
        conns = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let (s, got) = patiently("a response", t).await.unwrap();
            match got {
                Ok((200, body)) => {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["uri"], format!("/c{i}/r{round}"), "connection {i}");
                }
                other => failed.push((i, other)),
            }
            conns.push(s);
        }
        assert!(
            failed.is_empty(),
            "round {round}: {} of {n} connections failed, first: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        if round == 1 {
            // All n connections open and idle at once.
            tokio::time::sleep(HOLD).await;
        }
    }
    eprintln!(
        "{n} keep-alive connections: connected in {connected:?}, two requests each in {:?}",
        started.elapsed()
    );
    drop(conns);
    gw.shutdown().await;
}
