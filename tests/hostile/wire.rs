//! The hostile battery's own plumbing: an upstream that records what
//! reaches it, raw HTTP/1.1 exchanges that keep every byte, and a raw
//! HTTP/2 client that can break the rules a client library enforces.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The longest any single wait in the battery may take before the test
/// fails: generous, for a loaded CI machine. Waits end as soon as their
/// condition holds, so a passing run never sleeps this long.
pub const PATIENCE: Duration = Duration::from_secs(15);

// === impl Recorder ===

/// A request as the recording upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    /// The whole body, or why it could not be read whole (an aborted
    /// request: the gateway gave up half-way).
    pub body: Result<Bytes, String>,
}

/// An upstream that records every request, answers `{"uri": ...}`, and
/// holds requests under `/hold` until [`Recorder::release`].
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    release: Arc<watch::Sender<bool>>,
}

/// Counts a held request out again, even when the gateway abandons it.
struct Holding(Arc<AtomicUsize>);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rec = Recorder {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            release: Arc::new(watch::channel(false).0),
        };
        let r = rec.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| r.clone().answer(req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        rec
    }

    async fn answer(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| e.to_string());
        let uri = parts.uri.to_string();
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            uri: uri.clone(),
            headers: parts.headers,
            body,
        });
        if uri.starts_with("/hold") {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let _holding = Holding(self.in_flight.clone());
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let _ = self.release.subscribe().wait_for(|go| *go).await;
        }
        let json = serde_json::json!({ "uri": uri }).to_string();
        Ok(Response::new(Full::new(Bytes::from(json))))
    }

    /// Everything received so far, except the liveness probes.
    pub fn seen(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.uri != "/alive").cloned().collect()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Requests now held under `/hold`, and the most ever held at once.
    pub fn held(&self) -> (usize, usize) {
        (
            self.in_flight.load(Ordering::SeqCst),
            self.max_in_flight.load(Ordering::SeqCst),
        )
    }

    /// Lets every held request (and any later one) answer.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// Polls `cond` every 10 ms until it holds; false after [`PATIENCE`].
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

// === raw HTTP/1.1 ===

/// Every byte the gateway sent on one connection.
#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// The gateway closed the connection (FIN or reset) within [`PATIENCE`].
    pub closed: bool,
}

/// Writes `request` as is (a write error, when the gateway closes early,
/// is ignored) and reads until the gateway closes the connection.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    read_until_closed(&mut s).await
}

/// Reads until EOF or a reset, at most [`PATIENCE`].
pub async fn read_until_closed(s: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    Reply { bytes, closed }
}

/// One response parsed from raw bytes.
#[derive(Debug)]
pub struct Parsed {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended where its framing says (Content-Length reached, or
    /// the last chunk seen); false for a truncated body.
    pub complete: bool,
}

impl Parsed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} {:?}",
                self.headers,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Splits raw bytes into the responses they hold, in order. A response
/// whose head is cut off is left out.
pub fn responses(mut bytes: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &bytes[end + 4..];
        let mut p = Parsed {
            status,
            headers,
            body: Vec::new(),
            complete: false,
        };
        let used = if let Some(len) = p.header("content-length") {
            let len: usize = len.parse().unwrap();
            p.body = rest[..len.min(rest.len())].to_vec();
            p.complete = rest.len() >= len;
            len.min(rest.len())
        } else if p.header("transfer-encoding") == Some("chunked") {
            dechunk(rest, &mut p)
        } else {
            // No framing: the body runs to the end of the connection.
            p.body = rest.to_vec();
            rest.len()
        };
        bytes = &rest[used..];
        out.push(p);
    }
    out
}

/// Decodes a chunked body into `p`; returns the bytes used.
fn dechunk(rest: &[u8], p: &mut Parsed) -> usize {
    let mut at = 0;
    while let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&rest[at..at + eol]).into_owned();
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let data = at + eol + 2;
        if size == 0 {
            p.complete = rest[data..].starts_with(b"\r\n");
            return (data + 2).min(rest.len());
        }
        if rest.len() < data + size + 2 {
            p.body
                .extend_from_slice(&rest[data..rest.len().min(data + size)]);
            return rest.len();
        }
        p.body.extend_from_slice(&rest[data..data + size]);
        at = data + size + 2;
    }
    rest.len()
}

// === an upstream that answers badly ===

/// An upstream that reads a request head and answers with the bytes
/// scripted for its last path segment, then closes the connection.
pub async fn broken_upstream(script: Vec<(&'static str, Vec<u8>)>) -> SocketAddr {
    let script = Arc::new(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).into_owned();
                let path = line.split(' ').nth(1).unwrap_or("");
                let name = path.rsplit('/').next().unwrap_or("");
                if let Some((_, answer)) = script.iter().find(|(n, _)| *n == name) {
                    let _ = s.write_all(answer).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

// === raw HTTP/2 (prior knowledge) ===

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// One frame as it travels.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A `GET path` request that ends its stream: a HEADERS frame whose block
/// uses only the static HPACK table and literals (no dynamic state).
pub fn get_request(stream: u32, path: &str) -> Vec<u8> {
    assert!(path.len() < 127, "one-byte HPACK length");
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.push(0x04); // :path, literal without indexing
    block.push(path.len() as u8);
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 2, b'g', b'w']); // :authority gw
    Frame::encode(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

/// A connection that has exchanged SETTINGS with the gateway.
pub struct H2 {
    pub s: TcpStream,
    /// The gateway's SETTINGS_MAX_CONCURRENT_STREAMS, if it sent one.
    pub max_streams: Option<u32>,
}

impl H2 {
    /// Sends the preface and empty SETTINGS, reads the gateway's SETTINGS
    /// and acknowledges them, so that its limits are in force.
    pub async fn handshake(addr: SocketAddr) -> H2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut hello = PREFACE.to_vec();
        hello.extend(Frame::encode(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.unwrap();
        let mut h2 = H2 {
            s,
            max_streams: None,
        };
        loop {
            let f = h2.next().await.expect("the gateway's SETTINGS");
            if f.kind == SETTINGS && f.flags & 0x1 == 0 {
                for e in f.payload.chunks_exact(6) {
                    if u16::from_be_bytes([e[0], e[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS {
                        h2.max_streams = Some(u32::from_be_bytes([e[2], e[3], e[4], e[5]]));
                    }
                }
                break;
            }
        }
        let ack = Frame::encode(SETTINGS, 0x1, 0, &[]);
        h2.s.write_all(&ack).await.unwrap();
        h2
    }

    /// The next frame; None once the connection is closed (or after
    /// [`PATIENCE`] without one).
    pub async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(PATIENCE, async {
            let mut head = [0u8; 9];
            self.s.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            self.s.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload,
            })
        })
        .await
        .ok()
        .flatten()
    }
}

/// The status of a `GET url` over HTTP/2 (prior knowledge) on a new
/// connection.
pub async fn h2_status(url: &str) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(PATIENCE, client.get(url.parse().unwrap()))
        .await
        .expect("an HTTP/2 answer in time")
        .expect("an HTTP/2 answer");
    resp.status().as_u16()
}
