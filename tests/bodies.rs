//! Slow and unfinished request bodies against the running gateway, from
//! real sockets (issue 13 §1 and §2): a body deadline answered 408 with the
//! connection closed, a stalled streamed body, a budget for buffered
//! bodies shared by all clients and by each address, and a circuit breaker
//! that a client stalling its own body cannot open.
//!
//! tests/specs/bodies.yaml: body timeout 1 s, budget 1 MiB of which
//! 64 KiB per client address or connection, buffered routes of 16 KiB.

#[path = "support/lib.rs"]
mod support;

#[path = "hostile/wire.rs"]
#[allow(
    dead_code,
    reason = "the hostile suite's raw-HTTP helpers; this file uses a few"
)]
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::log::AccessSink;
use gateway::server::Gateway;
use support::{send, Running};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wire::{eventually, responses, Parsed, PATIENCE};

mod bodies {
    gateway_macros::spec!("tests/specs/bodies.yaml");
}

/// `gateway.limits` in tests/specs/bodies.yaml.
const BUDGET: usize = 1 << 20;
const PER_CLIENT: usize = 64 << 10;
/// What the tests declare on the 16 KiB buffered routes.
const DECLARED: usize = 16_000;

const BILLING_SECRET: &str = "bodies-billing-secret-0123456789ab";

/// The signing headers of `billing` for `POST path` with `body`.
fn billing_signed(path: &str, body: &[u8], nonce: &str) -> String {
    use gateway::auth::hmac;
    let ts = hmac::now_unix().to_string();
    let sig = hmac::sign_v2(
        BILLING_SECRET.as_bytes(),
        &hmac::V2Input {
            method: "POST",
            path_and_query: path,
            timestamp: &ts,
            nonce,
            service: "billing",
            tenant: "",
            body_sha256: &hmac::body_sha256(body),
        },
    );
    format!(
        "x-internal-service-auth: {sig}\r\nx-service-name: billing\r\nx-internal-timestamp: {ts}\r\nx-internal-nonce: {nonce}\r\n"
    )
}

struct Fixture {
    gw: Running,
    g: Arc<Gateway<bodies::Spec>>,
}

async fn fixture() -> Fixture {
    let echo = support::echo_upstream("echo").await;
    let hanging = hanging_upstream().await;
    let (gw, g) = support::start_shared::<bodies::Spec>(
        &[
            ("BODIES_SIGNED_URL", format!("http://{echo}")),
            (
                "BODIES_SIGNED_SECRET",
                "bodies-signing-secret-0123456789ab".into(),
            ),
            ("BODIES_PLAIN_URL", format!("http://{echo}")),
            ("BODIES_HANGING_URL", format!("http://{hanging}")),
            ("BODIES_BILLING_SECRET", BILLING_SECRET.into()),
        ],
        AccessSink::Off,
    )
    .await;
    Fixture { gw, g }
}

/// An upstream that reads requests and never answers.
async fn hanging_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A connection that sent a POST head declaring `declared` bytes (chunked
/// when `None`), then `sent` of them, and nothing more. `client` is its
/// `X-Forwarded-For` (the gateway trusts 127.0.0.1).
async fn unfinished(
    addr: SocketAddr,
    path: &str,
    declared: Option<usize>,
    sent: usize,
    client: Option<&str>,
) -> TcpStream {
    let framing = match declared {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_owned(),
    };
    let xff = client.map_or(String::new(), |c| format!("x-forwarded-for: {c}\r\n"));
    let mut req =
        format!("POST {path} HTTP/1.1\r\nhost: gw.test\r\n{framing}{xff}\r\n").into_bytes();
    let body = vec![b'x'; sent];
    match declared {
        Some(_) => req.extend_from_slice(&body),
        None if sent > 0 => {
            req.extend_from_slice(format!("{sent:x}\r\n").as_bytes());
            req.extend_from_slice(&body);
            req.extend_from_slice(b"\r\n");
        }
        None => {}
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    s
}

/// The first complete response on `r`, if one comes `within`.
async fn response(r: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<Parsed> {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
            if responses(&bytes).first().is_some_and(|p| p.complete) {
                return;
            }
        }
    })
    .await;
    responses(&bytes).into_iter().next()
}

/// Whether the gateway closes `r` (EOF or reset) without sending more.
async fn closes(r: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(PATIENCE, r.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn assert_408(r: &Parsed, what: &str) {
    assert_eq!(
        r.status,
        408,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.json()["error"],
        "Request body not received in time",
        "{what}"
    );
    assert!(r.json()["request_id"].is_string(), "{what}");
    assert_eq!(r.header("connection"), Some("close"), "{what}");
}

fn assert_overloaded(r: &Parsed, what: &str) {
    assert_eq!(
        r.status,
        503,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["error"], "overloaded", "{what}");
    assert!(r.json()["request_id"].is_string(), "{what}");
}

/// Issue 13 §1: a buffered body that stops half-way held its bytes and
/// its connection for as long as the client liked.
#[tokio::test(flavor = "multi_thread")]
async fn a_buffered_body_not_finished_within_the_deadline_is_408_and_the_connection_closes() {
    let f = fixture().await;
    for (what, declared, sent) in [
        ("declared length", Some(1000), 100),
        ("declared length, nothing sent", Some(1000), 0),
        ("chunked", None, 100),
    ] {
        let started = Instant::now();
        let mut s = unfinished(f.gw.addr, "/buffered/x", declared, sent, None).await;
        let r = response(&mut s, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer within {PATIENCE:?}"));
        assert_408(&r, what);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(8),
            "{what}: answered after {took:?}, the deadline is 1 s"
        );
        assert!(closes(&mut s).await, "{what}: the connection stays open");
    }
    assert!(eventually(|| f.g.buffered_body_bytes() == 0).await);
    let ok = send("POST", &f.gw.url("/buffered/x"), &[], "a whole body").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["body"], "a whole body");
    f.gw.shutdown().await;
}

/// Issue 13 §1: a streamed body trickled at a few bytes a second kept its
/// connection (and an upstream connection) open without limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_trickling_a_streamed_body_is_408_and_the_connection_closes() {
    let f = fixture().await;
    let started = Instant::now();
    let s = unfinished(f.gw.addr, "/stream/x", Some(100_000), 0, None).await;
    let (mut rd, mut wr) = s.into_split();
    // 10 bytes a second: never silent for the 1 s body timeout, far below
    // the 1 KiB/s minimum rate.
    let trickle = tokio::spawn(async move {
        while wr.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let r = response(&mut rd, PATIENCE)
        .await
        .expect("an answer to the trickling client");
    assert_408(&r, "trickle");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}; the upstream timeout (5 s) must not be what ends it",
        started.elapsed()
    );
    assert!(closes(&mut rd).await, "the connection stays open");
    trickle.abort();
    // A client that sends its body at a normal pace is served.
    let ok = send("POST", &f.gw.url("/stream/x"), &[], "streamed").await;
    assert_eq!(ok.status, 200);
    f.gw.shutdown().await;
}

/// The soft limit on open files, from /proc/self/limits.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Issue 13 §1: a thousand connections (fewer under a low open-file
/// limit), each from its own address, each holding a buffered body one
/// byte short of complete. The gateway holds
/// at most its budget; the rest are refused at once with 503
/// `overloaded`; `/health` and requests that buffer nothing are served
/// throughout; everything is given back when the clients leave.
#[tokio::test(flavor = "multi_thread")]
async fn unfinished_buffered_bodies_from_many_clients_stay_within_the_budget() {
    let f = fixture().await;
    // Two descriptors per connection in this process (the client's socket
    // and the gateway's); other tests here run at the same time.
    const WANTED: usize = 1000;
    let n = match (open_file_limit(), open_fds()) {
        (Some(limit), Some(open)) => WANTED.min(limit.saturating_sub(open + 256) / 2),
        _ => WANTED,
    };
    assert!(
        n >= 2 * BUDGET / DECLARED,
        "the open-file limit leaves only {n} connections"
    );
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let client = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        conns.push(
            unfinished(
                f.gw.addr,
                "/held/x",
                Some(DECLARED),
                DECLARED - 1,
                Some(&client),
            )
            .await,
        );
        assert!(f.g.buffered_body_bytes() <= BUDGET);
        if i % 100 == 99 {
            assert_eq!(send("GET", &f.gw.url("/health"), &[], "").await.status, 200);
        }
    }
    // Every connection either holds its body (no answer) or was refused.
    let answers: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let r = response(&mut s, Duration::from_secs(3)).await;
                (r, s)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for a in answers {
        match a.await.unwrap() {
            (Some(r), _) => {
                assert_overloaded(&r, "over the budget");
                refused += 1;
            }
            (None, s) => held.push(s),
        }
    }
    let fit = BUDGET / DECLARED;
    assert!(
        held.len() <= fit && refused >= n - fit,
        "{} bodies held, {refused} refused; the budget fits {fit}",
        held.len()
    );
    assert!(f.g.buffered_body_bytes() <= BUDGET);
    assert!(f.g.buffered_body_bytes() >= held.len() * DECLARED);
    // Served meanwhile: the gateway's health, a request with no body on the
    // same route, a streamed body.
    assert_eq!(send("GET", &f.gw.url("/health"), &[], "").await.status, 200);
    assert_eq!(send("GET", &f.gw.url("/held/x"), &[], "").await.status, 200);
    assert_eq!(
        send("POST", &f.gw.url("/stream/x"), &[], "legit")
            .await
            .status,
        200
    );
    drop(held);
    assert!(
        eventually(|| f.g.buffered_body_bytes() == 0).await,
        "{} bytes still held after every client left",
        f.g.buffered_body_bytes()
    );
    f.gw.shutdown().await;
}

/// Issue 13 §1: one address cannot take the whole budget: past its share
/// its next body is refused, while another address is still served.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_address_gets_only_its_share_of_the_budget() {
    let f = fixture().await;
    let share = PER_CLIENT / DECLARED;
    let mut held = Vec::new();
    for i in 0..share {
        let mut s = unfinished(f.gw.addr, "/held/x", Some(DECLARED), 10, None).await;
        assert!(
            response(&mut s, Duration::from_millis(500)).await.is_none(),
            "body {i} of {share} fits the share"
        );
        held.push(s);
    }
    let mut over = unfinished(f.gw.addr, "/held/x", Some(DECLARED), 10, None).await;
    let r = response(&mut over, PATIENCE)
        .await
        .expect("a body past the share is refused at once");
    assert_overloaded(&r, "past the per-client share");
    assert!(closes(&mut over).await, "the refused connection stays open");
    assert!(f.g.buffered_body_bytes() <= PER_CLIENT);
    let other = send(
        "POST",
        &f.gw.url("/held/x"),
        &[("x-forwarded-for", "10.2.0.1")],
        "from elsewhere",
    )
    .await;
    assert_eq!(other.status, 200, "another address is served");
    f.gw.shutdown().await;
}

/// The rate limit runs on the head: a limited client is refused before
/// its body is read (it never buffers, and never waits for the deadline).
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_client_is_refused_before_its_body_is_read() {
    let f = fixture().await;
    let ok = send("POST", &f.gw.url("/limited/x"), &[], "first").await;
    assert_eq!(ok.status, 200);
    let mut s = unfinished(f.gw.addr, "/limited/x", Some(DECLARED), 0, None).await;
    let r = response(&mut s, PATIENCE).await.expect("an answer");
    assert_eq!(r.status, 429, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(f.g.buffered_body_bytes(), 0);
    f.gw.shutdown().await;
}

/// A limit keyed on the calling service can run only once the caller's
/// signature over the body is verified. A caller found over it has its
/// next request refused on the head, before its body is read.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_over_its_limit_is_refused_before_its_next_body_is_read() {
    let f = fixture().await;
    let path = "/service/x";
    // Signed over `body`; declares `declared` bytes and sends `body` only
    // when that is its length.
    let post = |nonce: &str, body: &[u8], declared: usize| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: gw.test\r\ncontent-length: {declared}\r\n{}\r\n",
            billing_signed(path, body, nonce)
        )
        .into_bytes();
        if declared == body.len() {
            req.extend_from_slice(body);
        }
        req
    };
    let mut answers = Vec::new();
    for (nonce, body) in [
        ("bodies-nonce-0001", b"first"),
        ("bodies-nonce-0002", b"again"),
    ] {
        let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
        s.write_all(&post(nonce, body, body.len())).await.unwrap();
        answers.push(response(&mut s, PATIENCE).await.expect("an answer").status);
    }
    assert_eq!(answers, [200, 429], "the second is over the limit of 1/min");
    // A third declares a body and sends none of it: refused at once, not
    // after the 1 s body deadline.
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    s.write_all(&post("bodies-nonce-0003", b"never sent", DECLARED))
        .await
        .unwrap();
    let r = response(&mut s, PATIENCE).await.expect("an answer");
    assert_eq!(r.status, 429, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(r.header("retry-after").is_some());
    f.gw.shutdown().await;
}

/// Issue 13 §2: a client that declares a streamed body and stalls made the
/// upstream (which reads the body first) time out; five such 504s opened
/// the service's breaker for everyone. Now each stall is the client's 408
/// and the breaker (three failures in tests/specs/bodies.yaml) stays
/// closed, whether the body timeout (`/stream`) or the upstream timeout
/// (`/patient`) runs out first.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_stalling_its_body_cannot_open_the_upstreams_breaker() {
    let f = fixture().await;
    for path in ["/stream/x", "/patient/x"] {
        for i in 0..5 {
            let mut s = unfinished(f.gw.addr, path, Some(100), 10, None).await;
            let r = response(&mut s, PATIENCE)
                .await
                .unwrap_or_else(|| panic!("{path} #{i}: no answer"));
            assert_408(&r, path);
        }
        // Clients that leave half-way through their body: not the
        // upstream's failure either.
        for _ in 0..5 {
            let s = unfinished(f.gw.addr, path, Some(100), 10, None).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(s);
        }
        // Past the upstream timeout, so any outcome of theirs is recorded.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ok = send("POST", &f.gw.url(path), &[], "legit").await;
        assert_eq!(
            ok.status, 200,
            "{path}: the next request is proxied: {:?}",
            ok.body
        );
    }
    f.gw.shutdown().await;
}

/// The other side of §2: an upstream that has the whole body and does not
/// answer still opens its breaker.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_really_hangs_still_opens_its_breaker() {
    let f = fixture().await;
    for i in 0..3 {
        let r = send("POST", &f.gw.url("/hang/x"), &[], "complete").await;
        assert_eq!(r.status, 504, "attempt {i}");
    }
    let r = send("POST", &f.gw.url("/hang/x"), &[], "complete").await;
    assert_eq!(r.status, 503, "the circuit is open");
    assert_eq!(r.json()["error"], "Service temporarily unavailable");
    f.gw.shutdown().await;
}

/// Issue 13 §1: one HTTP/2 connection with many streams pinned many times
/// a stream's limit. The streams of a connection share one share, even
/// when each names another client address.
#[tokio::test(flavor = "multi_thread")]
async fn the_streams_of_one_http2_connection_share_one_share() {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let f = fixture().await;
    let tcp = TcpStream::connect(f.gw.addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let streams = 10;
    let mut answers = Vec::new();
    for i in 0..streams {
        // One byte short of the declared length, then nothing.
        let first: Result<Frame<Bytes>, std::convert::Infallible> =
            Ok(Frame::data(Bytes::from(vec![b'x'; DECLARED - 1])));
        let body = StreamBody::new(
            futures_util::stream::iter([first]).chain(futures_util::stream::pending()),
        );
        let req = http::Request::post(f.gw.url("/held/x"))
            .header("content-length", DECLARED)
            .header("x-forwarded-for", format!("10.3.0.{}", i + 1))
            .body(body)
            .unwrap();
        let mut tx = tx.clone();
        answers.push(tokio::spawn(async move {
            tx.ready().await.ok()?;
            let resp = tokio::time::timeout(Duration::from_secs(3), tx.send_request(req))
                .await
                .ok()?
                .ok()?;
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .ok()?
                .to_bytes();
            Some((status, body))
        }));
    }
    let mut refused = 0;
    for a in answers {
        if let Some((status, body)) = a.await.unwrap() {
            assert_eq!(status, 503, "{body:?}");
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"], "overloaded");
            refused += 1;
        }
    }
    let share = PER_CLIENT / DECLARED;
    assert_eq!(
        refused,
        streams - share,
        "the connection holds {share} bodies"
    );
    assert!(f.g.buffered_body_bytes() <= PER_CLIENT);
    drop(tx);
    f.gw.shutdown().await;
}
