//! Shared test support: in-process upstreams that echo what they receive,
//! a gateway on an ephemeral port, and a small HTTP client.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::config::StartupEnv;
use gateway::log::AccessSink;
use gateway::server::{serve, Gateway};
use gateway::service::ServiceVerifier;
use gateway::spec::Spec;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// An upstream that answers every request with a JSON echo of what it
/// received, except for a few magic paths:
/// - `.../slow`: waits 3 s first;
/// - `.../sse`: streams three server-sent events 300 ms apart;
/// - `.../leaky`: sends `Server`, `X-Powered-By` and hop-by-hop headers.
pub async fn echo_upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req| echo(name, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn echo(name: &'static str, req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path.ends_with("/sse") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for i in 0..3 {
                let ev = format!("data: event {i}\n\n");
                if tx.send(Ok(Frame::data(Bytes::from(ev)))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let stream = tokio_stream_from(rx);
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(resp);
    }
    if path.ends_with("/first-chunk") {
        // Answers as soon as the first body chunk arrives, with that chunk:
        // only a gateway that streams request bodies lets this finish
        // before the client has sent everything.
        let mut body = body;
        let first = loop {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        break d;
                    }
                }
                _ => break Bytes::new(),
            }
        };
        tokio::spawn(async move { while body.frame().await.is_some() {} });
        return Ok(Response::new(BodyExt::boxed(Full::new(first))));
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                json!(String::from_utf8_lossy(v.as_bytes())),
            )
        })
        .collect();
    let echo = json!({
        "service": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(echo.to_string()))));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if path.ends_with("/leaky") {
        let h = resp.headers_mut();
        h.insert("server", "upstream/1.0".parse().unwrap());
        h.insert("x-powered-by", "php/5".parse().unwrap());
        h.insert("connection", "x-upstream-hop".parse().unwrap());
        h.insert("x-upstream-hop", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        h.insert(
            "access-control-allow-origin",
            "https://evil.example".parse().unwrap(),
        );
        h.insert("access-control-allow-credentials", "true".parse().unwrap());
    }
    Ok(resp)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A running gateway; dropping it does not stop it, call `shutdown`.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Sends the shutdown signal and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.done.await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Starts a gateway for spec `S` on 127.0.0.1:0 with the given environment.
pub async fn start<S: Spec>(env: &[(&str, String)]) -> Running {
    start_with_log::<S>(env, AccessSink::Off).await
}

/// Like [`start`], with the access log going to `sink`.
pub async fn start_with_log<S: Spec>(env: &[(&str, String)], sink: AccessSink) -> Running {
    start_shared::<S>(env, sink).await.0
}

/// Like [`start_with_log`], also returning the gateway (to call `reload`).
pub async fn start_shared<S: Spec>(
    env: &[(&str, String)],
    sink: AccessSink,
) -> (Running, Arc<Gateway<S>>) {
    let env = StartupEnv::from_pairs(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let gw = Arc::new(
        Gateway::<S>::new(&env)
            .expect("gateway starts")
            .with_access_log(sink),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(gw.clone(), listener, async {
        let _ = rx.await;
    }));
    let running = Running {
        addr,
        stop: Some(tx),
        done,
    };
    (running, gw)
}

/// A response with its body read.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request with hyper's client (which does not normalize paths).
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = client.request(req).await.expect("gateway answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Got {
    send("GET", url, &[], "").await
}

/// The HS256 secret the AEGIS tests run with.
pub const JWT_SECRET: &str = "test-secret-for-the-aegis-gateway";

/// The AEGIS services, their URL variables, and their outbound
/// credential variables.
pub const AEGIS_SERVICES: [(&str, &str, &str); 7] = [
    (
        "orchestration",
        "ORCHESTRATION_URL",
        "ORCHESTRATION_SERVICE_SECRET",
    ),
    (
        "knowledge_graph",
        "KNOWLEDGE_GRAPH_URL",
        "KNOWLEDGE_GRAPH_SERVICE_SECRET",
    ),
    ("approval", "APPROVAL_URL", "APPROVAL_SERVICE_SECRET"),
    ("ingestion", "INGESTION_URL", "INGESTION_SERVICE_SECRET"),
    ("compliance", "COMPLIANCE_URL", "COMPLIANCE_SERVICE_SECRET"),
    ("flaring", "FLARING_URL", "FLARING_SERVICE_SECRET"),
    ("auth", "AUTH_URL", "AUTH_SERVICE_SECRET"),
];

/// The outbound credential the tests give `service`.
pub fn service_secret(service: &str) -> String {
    format!("test-outbound-credential-of-{service}")
}

/// The secrets the bundled spec needs to start: the JWT secret and one
/// outbound credential per service.
pub fn aegis_env() -> Vec<(&'static str, String)> {
    let mut env = vec![("JWT_SECRET", JWT_SECRET.to_owned())];
    for (service, _, secret) in AEGIS_SERVICES {
        env.push((secret, service_secret(service)));
    }
    env
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token with these claims, signed HS256 with `secret`, minted with the
/// jsonwebtoken crate directly rather than the gateway's own minting.
pub fn sign_claims(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid AEGIS token for `user` with `roles`, valid for an hour.
pub fn aegis_token(user: &str, roles: &[&str]) -> String {
    sign_claims(
        &json!({"user_id": user, "roles": roles, "iss": "aegis-gateway", "exp": now() + 3600, "iat": now()}),
        JWT_SECRET,
    )
}

/// `Authorization: Bearer` value for an admin with every AEGIS role. Each
/// call is a different user (`admin-1`, `admin-2`, ...), so tests that send
/// many requests do not run into the per-user rate limit.
pub fn admin_bearer() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let user = format!("admin-{n}");
    format!(
        "Bearer {}",
        aegis_token(&user, &["admin", "power_user", "operator", "reviewer"])
    )
}

/// Sends raw bytes and returns the raw response text (for request targets
/// a client library would refuse or clean up).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// === verifying upstreams (outbound identity) ===

/// A request as an upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub parts: http::request::Parts,
    pub body: Bytes,
}

pub type Log = Arc<Mutex<Vec<Received>>>;

/// An upstream that checks every request with `verifier`, answers with the
/// verdict as JSON, and keeps what it received. Paths ending in `/slow`
/// wait 2 s, `/missing` is 404, `/broken` 500, `/notjson` not JSON.
pub async fn verifying_upstream(verifier: Arc<Mutex<ServiceVerifier>>) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (verifier, kept) = (verifier.clone(), kept.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (verifier, kept) = (verifier.clone(), kept.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let verdict = match verifier.lock().unwrap().verify(&parts, &body) {
                            Ok(v) => {
                                json!({"ok": true, "caller": v.caller, "proof": format!("{:?}", v.proof), "tenant": v.tenant})
                            }
                            Err(r) => json!({"ok": false, "reason": r.reason}),
                        };
                        let headers: serde_json::Map<String, Value> = parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
                            .collect();
                        kept.lock().unwrap().push(Received {
                            parts: parts.clone(),
                            body,
                        });
                        let out = json!({"verdict": verdict, "uri": parts.uri.to_string(), "headers": headers});
                        let path = parts.uri.path().to_owned();
                        if path.ends_with("/slow") {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let mut resp = Response::new(Full::new(Bytes::from(out.to_string())));
                        if path.ends_with("/missing") {
                            *resp.status_mut() = http::StatusCode::NOT_FOUND;
                        } else if path.ends_with("/broken") {
                            *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        } else if path.ends_with("/notjson") {
                            *resp.body_mut() = Full::new(Bytes::from_static(b"<html>"));
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

pub fn verifier(service: &str, gateway: &str, secrets: &[&str]) -> Arc<Mutex<ServiceVerifier>> {
    Arc::new(Mutex::new(ServiceVerifier::new(
        service,
        gateway,
        secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
        Duration::from_secs(60),
    )))
}
