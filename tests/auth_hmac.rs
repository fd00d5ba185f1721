//! HMAC service authentication (contract §5), the shared service token and
//! the headers the gateway owns (§3), through a running gateway built from
//! `tests/specs/identity.yaml`.
//!
//! The signing side is an independent implementation of the contract's
//! canonical strings (the `hmac`/`sha2` crates directly), never the
//! gateway's own `sign_*` functions. The upstream counts the requests it
//! receives, so "never reaches an upstream" is checked directly.

#[path = "support/lib.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gateway::config::StartupEnv;
use gateway::log::AccessSink;
use gateway::server::Gateway;
use hmac::{Hmac, KeyInit, Mac};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Digest;
use support::{now, send, start_with_log, Got, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod identity {
    gateway_macros::spec!("tests/specs/identity.yaml");
}

// Distinctive values, so that finding one in a log line is never a coincidence.
const BILLING: &str = "billing-secret-3f9c1d7ae2";
const BILLING_OLD: &str = "billing-old-secret-5d1c9a44";
const REPORTING: &str = "reporting-secret-41b7e0c8";
const SHARED: &str = "shared-legacy-secret-c93a6217";
const TOKEN: &str = "service-token-value-0f6d2b95";
const JWT: &str = "jwt-secret-unused-77aa10e3";

// ---------------------------------------------------------------------------
// Independent signer (contract §5).

type HmacSha256 = Hmac<sha2::Sha256>;

fn hmac_hex(key: &str, canonical: &str) -> String {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    m.update(canonical.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// A fresh nonce of the contract's alphabet (`A-Za-z0-9_-`, 16..=128).
fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // The counter first, so that any 16-character prefix is still unique.
    format!(
        "n{:06}_{:x}",
        N.fetch_add(1, Ordering::Relaxed) % 1_000_000,
        t
    )
}

/// Everything a v2 signature covers, plus the secret it is made with.
#[derive(Debug, Clone)]
struct V2 {
    method: String,
    path_and_query: String,
    timestamp: String,
    nonce: String,
    service: String,
    tenant: String,
    body: String,
    secret: String,
}

impl V2 {
    /// A billing request for tenant `acme`, signed now.
    fn new(method: &str, path_and_query: &str, body: &str) -> Self {
        V2 {
            method: method.into(),
            path_and_query: path_and_query.into(),
            timestamp: now().to_string(),
            nonce: nonce(),
            service: "billing".into(),
            tenant: "acme".into(),
            body: body.into(),
            secret: BILLING.into(),
        }
    }

    fn canonical(&self) -> String {
        [
            "v2",
            &self.method,
            &self.path_and_query,
            &self.timestamp,
            &self.nonce,
            &self.service,
            &self.tenant,
            &sha256_hex(self.body.as_bytes()),
        ]
        .join("\n")
    }

    fn signature(&self) -> String {
        format!("v2={}", hmac_hex(&self.secret, &self.canonical()))
    }

    /// The request headers carrying `signature` (the tenant header only
    /// when there is a tenant).
    fn headers_with(&self, signature: &str) -> Vec<(String, String)> {
        let mut h = vec![
            ("x-internal-service-auth".into(), signature.to_owned()),
            ("x-service-name".into(), self.service.clone()),
            ("x-internal-timestamp".into(), self.timestamp.clone()),
            ("x-internal-nonce".into(), self.nonce.clone()),
            ("content-type".into(), "application/json".into()),
        ];
        if !self.tenant.is_empty() {
            h.push(("x-tenant-id".into(), self.tenant.clone()));
        }
        h
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.headers_with(&self.signature())
    }
}

/// A v1 signature (bare hex): `METHOD\nPATH\nTIMESTAMP`, PATH without the query.
fn v1_signature(secret: &str, method: &str, path: &str, timestamp: &str) -> String {
    hmac_hex(secret, &format!("{method}\n{path}\n{timestamp}"))
}

fn v1_headers(secret: &str, service: &str, method: &str, path: &str) -> Vec<(String, String)> {
    let ts = now().to_string();
    vec![
        (
            "x-internal-service-auth".into(),
            v1_signature(secret, method, path, &ts),
        ),
        ("x-service-name".into(), service.into()),
        ("x-internal-timestamp".into(), ts),
    ]
}

fn without(h: &[(String, String)], name: &str) -> Vec<(String, String)> {
    h.iter().filter(|(k, _)| k != name).cloned().collect()
}

fn with(h: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut h = without(h, name);
    h.push((name.to_owned(), value.to_owned()));
    h
}

// ---------------------------------------------------------------------------
// A counting upstream.

/// An upstream that counts the requests it receives (on arrival of the
/// head) and answers with a JSON echo of method, uri, headers and body.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    echo(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
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
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::new(Full::new(Bytes::from(echo.to_string())));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

// ---------------------------------------------------------------------------
// Harness: one gateway, one counting upstream, the collected log lines.

struct Harness {
    gw: Running,
    hits: Arc<AtomicUsize>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Credential values sent (signatures, tokens) and configured secrets:
    /// none may appear in a log line.
    sensitive: Mutex<Vec<String>>,
}

fn base_env(backend: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("ID_BACKEND_URL", format!("http://{backend}")),
        ("ID_JWT_SECRET", JWT.into()),
        ("ID_BILLING_SECRET", BILLING.into()),
        ("ID_REPORTING_SECRET", REPORTING.into()),
        ("ID_SHARED_SECRET", SHARED.into()),
        ("ID_SERVICE_TOKEN", TOKEN.into()),
    ]
}

impl Harness {
    /// A gateway with the base environment, `extra` overriding it.
    async fn start(extra: &[(&'static str, &str)]) -> Harness {
        let (backend, hits) = counting_upstream().await;
        let mut env = base_env(backend);
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k, (*v).to_owned()));
        }
        let logs = Arc::new(Mutex::new(Vec::new()));
        let gw = start_with_log::<identity::Spec>(&env, AccessSink::Memory(logs.clone())).await;
        let mut sensitive: Vec<String> = [BILLING, BILLING_OLD, REPORTING, SHARED, TOKEN, JWT]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        sensitive.extend(
            env.iter()
                .filter(|(k, _)| k.ends_with("_SECRET") || k.ends_with("_TOKEN"))
                .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>()),
        );
        Harness {
            gw,
            hits,
            logs,
            sensitive: Mutex::new(sensitive),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn send(&self, method: &str, pq: &str, headers: &[(String, String)], body: &str) -> Got {
        {
            let mut s = self.sensitive.lock().unwrap();
            for (k, v) in headers {
                let k = k.to_ascii_lowercase();
                if (k == "x-internal-service-auth" || k == "x-service-token") && v.len() >= 16 {
                    s.push(v.clone());
                    if let Some(bare) = v.strip_prefix("v2=") {
                        s.push(bare.to_owned());
                    }
                }
            }
        }
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(method, &self.gw.url(pq), &h, body).await
    }

    /// Sends `r` with its own headers.
    async fn send_v2(&self, r: &V2) -> Got {
        self.send(&r.method, &r.path_and_query, &r.headers(), &r.body)
            .await
    }

    /// Sends `sent` (a tampered copy) carrying the signature of `signed`.
    async fn send_tampered(&self, signed: &V2, sent: &V2) -> Got {
        let sig = signed.signature();
        self.send(
            &sent.method,
            &sent.path_and_query,
            &sent.headers_with(&sig),
            &sent.body,
        )
        .await
    }

    fn lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
            .collect()
    }

    /// The security events of request `id`.
    fn events_of(&self, id: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["event"] == "auth_failure" && l["request_id"] == id)
            .collect()
    }

    /// The access-log line of request `id`.
    fn access_of(&self, id: &str) -> Value {
        let mut v: Vec<Value> = self
            .lines()
            .into_iter()
            .filter(|l| l["target"] == "access" && l["request_id"] == id)
            .collect();
        assert_eq!(v.len(), 1, "one access line for {id}: {v:?}");
        v.remove(0)
    }

    /// Sends a request that must be refused with 403 for `reason`, without
    /// the upstream seeing it, with exactly one security event.
    async fn rejected(
        &self,
        what: &str,
        method: &str,
        pq: &str,
        headers: &[(String, String)],
        body: &str,
        reason: &str,
    ) -> Got {
        let before = self.hits();
        let got = self.send(method, pq, headers, body).await;
        self.check_rejected(what, &got, before, reason);
        got
    }

    fn check_rejected(&self, what: &str, got: &Got, hits_before: usize, reason: &str) {
        assert_eq!(
            got.status,
            403,
            "{what}: {:?}",
            String::from_utf8_lossy(&got.body)
        );
        let id = check_error_body(what, got);
        assert_eq!(
            self.hits(),
            hits_before,
            "{what}: the upstream was contacted"
        );
        let events = self.events_of(&id);
        assert_eq!(events.len(), 1, "{what}: one security event: {events:?}");
        let e = &events[0];
        assert_eq!(e["reason"], reason, "{what}: {e}");
        assert_eq!(e["mode"], "enforce", "{what}: {e}");
        assert_eq!(e["level"], "WARN", "{what}: {e}");
        let access = self.access_of(&id);
        assert_eq!(access["status"], 403, "{what}: {access}");
        assert!(access["upstream_ms"].is_null(), "{what}: {access}");
        assert!(access["caller"].is_null(), "{what}: {access}");
        assert!(access["tenant"].is_null(), "{what}: {access}");
    }

    /// Checks that no secret, signature or token value is in any log line,
    /// then stops the gateway.
    async fn finish(self) {
        let lines = self.logs.lock().unwrap().clone();
        assert!(!lines.is_empty());
        for s in self.sensitive.lock().unwrap().iter() {
            for l in &lines {
                assert!(!l.contains(s.as_str()), "`{s}` logged in {l}");
            }
        }
        self.gw.shutdown().await;
    }
}

/// The contract's error body: exactly `error` and `request_id`, JSON, the
/// id equal to the `X-Request-Id` response header. Returns the id.
fn check_error_body(what: &str, got: &Got) -> String {
    assert_eq!(
        got.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = got.json();
    let obj = body.as_object().expect("a JSON object");
    assert_eq!(obj.len(), 2, "{what}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
    let id = got.header("x-request-id").expect("x-request-id").to_owned();
    assert_eq!(body["request_id"], id.as_str(), "{what}");
    id
}

fn upstream_headers(got: &Got) -> serde_json::Map<String, Value> {
    got.json()["headers"].as_object().unwrap().clone()
}

/// The caller's signing headers, never forwarded. (`X-Service-Name` is
/// forwarded, but always as the gateway's own name: contract §3.)
const SIGNING_HEADERS: [&str; 3] = [
    "x-internal-service-auth",
    "x-internal-timestamp",
    "x-internal-nonce",
];

// ---------------------------------------------------------------------------
// v2 success.

#[tokio::test(flavor = "multi_thread")]
async fn v2_get_reaches_the_rewritten_path_with_the_verified_identity_only() {
    let h = Harness::start(&[]).await;
    let r = V2::new("GET", "/internal/v2/invoices/42?draft=true&page=2", "");
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(h.hits(), 1);
    let echo = got.json();
    assert_eq!(echo["uri"], "/v2/invoices/42?draft=true&page=2");
    assert_eq!(echo["method"], "GET");
    let up = upstream_headers(&got);
    assert_eq!(up["x-caller-service"], "billing");
    assert_eq!(up["x-tenant-id"], "acme");
    for name in SIGNING_HEADERS {
        assert!(
            !up.contains_key(name),
            "{name} reached the upstream: {up:?}"
        );
    }
    // One id per request, the same on both sides.
    assert_eq!(up["x-request-id"], got.header("x-request-id").unwrap());
    let access = h.access_of(got.header("x-request-id").unwrap());
    assert_eq!(access["caller"], "billing");
    assert_eq!(access["tenant"], "acme");
    assert!(access["upstream_ms"].is_number());
    assert!(h.events_of(got.header("x-request-id").unwrap()).is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_post_with_a_json_body_reaches_the_upstream_intact() {
    let h = Harness::start(&[]).await;
    let body = r#"{"amount":42,"currency":"EUR","lines":[{"sku":"a-1","qty":3}],"note":"é ü"}"#;
    let r = V2::new("POST", "/internal/v2/invoices", body);
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let echo = got.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/v2/invoices");
    assert_eq!(echo["body"], body);
    let up = upstream_headers(&got);
    assert_eq!(up["content-type"], "application/json");
    assert_eq!(up["x-caller-service"], "billing");
    assert_eq!(up["x-tenant-id"], "acme");
    for name in SIGNING_HEADERS {
        assert!(!up.contains_key(name), "{name} reached the upstream");
    }
    // The caller's name never travels; this upstream is unsigned, so it
    // gets no `X-Service-Name` of the gateway's either (contract §3).
    assert!(!up.contains_key("x-service-name"), "{up:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_without_a_tenant_forwards_no_tenant_and_other_methods_verify() {
    let h = Harness::start(&[]).await;
    let mut r = V2::new("DELETE", "/internal/v2/invoices/7", "");
    r.tenant = String::new();
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let up = upstream_headers(&got);
    assert_eq!(up["x-caller-service"], "billing");
    assert!(!up.contains_key("x-tenant-id"), "{up:?}");
    for method in ["PUT", "PATCH"] {
        let r = V2::new(method, "/internal/v2/invoices/7", r#"{"x":1}"#);
        let got = h.send_v2(&r).await;
        assert_eq!(got.status, 200, "{method}");
        assert_eq!(got.json()["method"], method);
    }
    // Nonce length boundaries: 16 and 128 characters are valid.
    for n in [16, 128] {
        let mut r = V2::new("GET", "/internal/v2/n", "");
        r.nonce = format!("{}{}", nonce(), "A".repeat(128))
            .chars()
            .take(n)
            .collect();
        assert_eq!(r.nonce.len(), n);
        assert_eq!(h.send_v2(&r).await.status, 200, "nonce of {n}");
    }
    // Percent-encoding is signed as sent, query included.
    let r = V2::new("GET", "/internal/v2/r%20eports/7?a=1&b=%2F&c=%C3%A9", "");
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.json()["uri"], "/v2/r%20eports/7?a=1&b=%2F&c=%C3%A9");
    // A timestamp inside the window, either side of now.
    for skew in [-50, 50] {
        let mut r = V2::new("GET", "/internal/v2/skew", "");
        r.timestamp = (now() + skew).to_string();
        assert_eq!(h.send_v2(&r).await.status, 200, "skew {skew}");
    }
    h.finish().await;
}

// ---------------------------------------------------------------------------
// v2 failures.

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_malformed_signing_headers_are_403_before_the_upstream() {
    let h = Harness::start(&[]).await;
    let r = V2::new("GET", "/internal/v2/invoices", "");
    let pq = r.path_and_query.clone();
    let ok = r.headers();

    h.rejected(
        "no signing headers at all",
        "GET",
        &pq,
        &[],
        "",
        "missing_service_name",
    )
    .await;
    h.rejected(
        "missing signature",
        "GET",
        &pq,
        &without(&ok, "x-internal-service-auth"),
        "",
        "missing_signature",
    )
    .await;
    h.rejected(
        "missing X-Service-Name",
        "GET",
        &pq,
        &without(&ok, "x-service-name"),
        "",
        "missing_service_name",
    )
    .await;
    for bad in [
        "v2=zz",
        "v2=",
        "v2=abcdef",
        "not-a-signature-at-all",
        &format!("v2={}", "g".repeat(64)),
        &format!("{}00", r.signature()),
    ] {
        h.rejected(
            &format!("malformed signature {bad:?}"),
            "GET",
            &pq,
            &with(&ok, "x-internal-service-auth", bad),
            "",
            "malformed_signature",
        )
        .await;
    }
    // A v2 request without a nonce, even with the signature made over an empty one.
    let mut no_nonce = V2::new("GET", "/internal/v2/invoices", "");
    no_nonce.nonce = String::new();
    h.rejected(
        "v2 without nonce",
        "GET",
        &pq,
        &without(&no_nonce.headers(), "x-internal-nonce"),
        "",
        "missing_nonce",
    )
    .await;
    for (what, n) in [
        ("15 characters", "abcdefghijklmno".to_owned()),
        ("129 characters", "a".repeat(129)),
        ("a dot", "abcdefgh.ijklmnopq".to_owned()),
        ("a plus and a slash", "abcdefgh+ijklm/nopq".to_owned()),
        ("a space", "abcdefgh ijklmnopq".to_owned()),
    ] {
        let mut bad = V2::new("GET", "/internal/v2/invoices", "");
        bad.nonce = n;
        h.rejected(
            &format!("malformed nonce: {what}"),
            "GET",
            &pq,
            &bad.headers(),
            "",
            "malformed_nonce",
        )
        .await;
    }
    // Timestamp missing or not a number: refused (reason not fixed by the contract).
    for hs in [
        without(&ok, "x-internal-timestamp"),
        with(&ok, "x-internal-timestamp", "yesterday"),
        with(&ok, "x-internal-timestamp", "-5"),
    ] {
        let before = h.hits();
        let got = h.send("GET", &pq, &hs, "").await;
        assert_eq!(got.status, 403);
        let id = check_error_body("bad timestamp", &got);
        assert_eq!(h.hits(), before);
        assert_eq!(h.events_of(&id).len(), 1);
    }
    // None of the refusals used the nonce: the original request still passes.
    assert_eq!(h.send("GET", &pq, &ok, "").await.status, 200);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_unadmitted_services_are_403() {
    let h = Harness::start(&[]).await;
    let mut stranger = V2::new("GET", "/internal/v2/invoices", "");
    stranger.service = "stranger".into();
    h.rejected(
        "unknown service",
        "GET",
        "/internal/v2/invoices",
        &stranger.headers(),
        "",
        "unknown_service",
    )
    .await;
    // A known caller with a valid signature of its own, not admitted by the route.
    let mut reporting = V2::new("GET", "/internal/v2/invoices", "");
    reporting.service = "reporting".into();
    reporting.secret = REPORTING.into();
    let got = h
        .rejected(
            "reporting on /internal/v2",
            "GET",
            "/internal/v2/invoices",
            &reporting.headers(),
            "",
            "service_not_allowed",
        )
        .await;
    let e = &h.events_of(got.header("x-request-id").unwrap())[0];
    assert_eq!(
        e["caller"], "reporting",
        "the claimed caller is logged: {e}"
    );
    assert_eq!(e["path"], "/internal/v2/invoices");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_outside_the_window_are_stale() {
    let h = Harness::start(&[]).await;
    for skew in [-120, 120, -3600] {
        let mut r = V2::new("GET", "/internal/v2/invoices", "");
        r.timestamp = (now() + skew).to_string();
        h.rejected(
            &format!("timestamp now{skew:+}"),
            "GET",
            "/internal/v2/invoices",
            &r.headers(),
            "",
            "stale_timestamp",
        )
        .await;
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_with_any_signed_field_is_a_bad_signature() {
    let h = Harness::start(&[]).await;
    let base = || {
        V2::new(
            "POST",
            "/internal/v2/invoices/1?draft=true",
            r#"{"amount":42}"#,
        )
    };
    let mut cases: Vec<(&str, V2, V2)> = Vec::new();
    let tamper = |f: &dyn Fn(&mut V2)| {
        let signed = base();
        let mut sent = signed.clone();
        f(&mut sent);
        (signed, sent)
    };
    let (s, t) = tamper(&|r| r.method = "PUT".into());
    cases.push(("method", s, t));
    let (s, t) = tamper(&|r| r.path_and_query = "/internal/v2/invoices/2?draft=true".into());
    cases.push(("path", s, t));
    let (s, t) = tamper(&|r| r.path_and_query = "/internal/v2/invoices/1?draft=false".into());
    cases.push(("query", s, t));
    let (s, t) = tamper(&|r| r.path_and_query = "/internal/v2/invoices/1".into());
    cases.push(("query removed", s, t));
    let (s, t) = tamper(&|r| r.timestamp = (r.timestamp.parse::<i64>().unwrap() - 1).to_string());
    cases.push(("timestamp", s, t));
    let (s, t) = tamper(&|r| r.nonce = nonce());
    cases.push(("nonce", s, t));
    let (s, t) = tamper(&|r| r.tenant = "globex".into());
    cases.push(("tenant", s, t));
    let (s, t) = tamper(&|r| r.tenant = String::new());
    cases.push(("tenant removed", s, t));
    let (s, t) = tamper(&|r| r.body = r#"{"amount":4200}"#.into());
    cases.push(("body", s, t));
    let (s, t) = tamper(&|r| r.body = String::new());
    cases.push(("body removed", s, t));
    {
        let mut signed = base();
        signed.tenant = String::new();
        let mut sent = signed.clone();
        sent.tenant = "acme".into();
        cases.push(("tenant added", signed, sent));
    }
    {
        // A signature made with another secret.
        let signed = V2 {
            secret: "not-the-billing-secret-123".into(),
            ..base()
        };
        let sent = signed.clone();
        cases.push(("wrong secret", signed, sent));
    }
    {
        // The right request with one hex digit of its signature changed.
        let sent = base();
        let sig = sent.signature();
        let mut flipped = sig.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        h.rejected(
            "one hex digit changed",
            &sent.method,
            &sent.path_and_query,
            &sent.headers_with(&flipped),
            &sent.body,
            "bad_signature",
        )
        .await;
    }
    for (what, signed, sent) in &cases {
        let before = h.hits();
        let got = h.send_tampered(signed, sent).await;
        h.check_rejected(&format!("tampered {what}"), &got, before, "bad_signature");
    }
    // The service name is bound too. On /internal/legacy both billing and
    // legacy_app are admitted and billing's candidates include the shared
    // secret, so only the canonical string differs.
    let mut signed = V2::new("GET", "/internal/legacy/x", "");
    signed.service = "legacy_app".into();
    signed.secret = SHARED.into();
    let mut sent = signed.clone();
    sent.service = "billing".into();
    let before = h.hits();
    let got = h.send_tampered(&signed, &sent).await;
    h.check_rejected("tampered service", &got, before, "bad_signature");
    // The untampered original passes (and the failures did not burn its nonce).
    assert_eq!(h.send_v2(&signed).await.status, 200);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_is_accepted_once() {
    let h = Harness::start(&[]).await;
    let r = V2::new("POST", "/internal/v2/payments", r#"{"amount":1}"#);
    let first = h.send_v2(&r).await;
    assert_eq!(first.status, 200);
    assert_eq!(h.hits(), 1);
    // The very same request again.
    let before = h.hits();
    let again = h.send_v2(&r).await;
    h.check_rejected("replayed request", &again, before, "replayed_nonce");
    // The same nonce with another, freshly and correctly signed request.
    let mut other = V2::new("GET", "/internal/v2/other?x=1", "");
    other.nonce = r.nonce.clone();
    let before = h.hits();
    let got = h.send_v2(&other).await;
    h.check_rejected(
        "nonce reused by a new request",
        &got,
        before,
        "replayed_nonce",
    );
    // A forged request does not burn a nonce: it is remembered only once a
    // signature verified.
    let victim = V2::new("GET", "/internal/v2/victim", "");
    let forged = V2 {
        secret: "attacker-guess-secret-000".into(),
        ..victim.clone()
    };
    let before = h.hits();
    let got = h.send_v2(&forged).await;
    h.check_rejected("forged", &got, before, "bad_signature");
    assert_eq!(h.send_v2(&victim).await.status, 200);
    // One verifier for every route: a nonce used on /internal/v2 is spent
    // on /internal/legacy too.
    let mut elsewhere = V2::new("GET", "/internal/legacy/z", "");
    elsewhere.nonce = victim.nonce.clone();
    let before = h.hits();
    let got = h.send_v2(&elsewhere).await;
    h.check_rejected(
        "nonce reused on another route",
        &got,
        before,
        "replayed_nonce",
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_per_route() {
    let h = Harness::start(&[]).await;
    // v1 on the v2-only route.
    let hs = v1_headers(BILLING, "billing", "GET", "/internal/v2/invoices");
    h.rejected(
        "v1 on /internal/v2",
        "GET",
        "/internal/v2/invoices",
        &hs,
        "",
        "version_not_allowed",
    )
    .await;
    // v2 on the v1-only route.
    let r = V2::new("GET", "/internal/v1/reports", "");
    h.rejected(
        "v2 on /internal/v1",
        "GET",
        "/internal/v1/reports",
        &r.headers(),
        "",
        "version_not_allowed",
    )
    .await;
    h.finish().await;
}

// ---------------------------------------------------------------------------
// v1.

#[tokio::test(flavor = "multi_thread")]
async fn v1_identifies_the_caller_but_never_forwards_a_tenant() {
    let h = Harness::start(&[]).await;
    for (service, secret) in [("billing", BILLING), ("reporting", REPORTING)] {
        let mut hs = v1_headers(secret, service, "GET", "/internal/v1/reports/9");
        hs.push(("x-tenant-id".into(), "acme".into()));
        let got = h
            .send("GET", "/internal/v1/reports/9?month=5", &hs, "")
            .await;
        assert_eq!(got.status, 200, "{service}: {:?}", got.body);
        let echo = got.json();
        assert_eq!(
            echo["uri"], "/v1/reports/9?month=5",
            "the query is not signed in v1"
        );
        let up = upstream_headers(&got);
        assert_eq!(up["x-caller-service"], service);
        assert!(
            !up.contains_key("x-tenant-id"),
            "v1 does not cover the tenant: {up:?}"
        );
        for name in SIGNING_HEADERS {
            assert!(!up.contains_key(name), "{name} reached the upstream");
        }
        let access = h.access_of(got.header("x-request-id").unwrap());
        assert_eq!(access["caller"], service);
        assert!(access["tenant"].is_null());
    }
    // The path is signed as sent, percent-encoding included.
    let hs = v1_headers(BILLING, "billing", "GET", "/internal/v1/r%20eports");
    let got = h
        .send("GET", "/internal/v1/r%20eports?q=%2F", &hs, "")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["uri"], "/v1/r%20eports?q=%2F");
    // A v1 POST: the body is not covered, the method and path are.
    let hs = v1_headers(BILLING, "billing", "POST", "/internal/v1/reports");
    let got = h
        .send("POST", "/internal/v1/reports", &hs, "{\"a\":1}")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["body"], "{\"a\":1}");
    h.rejected(
        "v1 method tampered",
        "PUT",
        "/internal/v1/reports",
        &hs,
        "",
        "bad_signature",
    )
    .await;
    h.rejected(
        "v1 path tampered",
        "POST",
        "/internal/v1/other",
        &hs,
        "",
        "bad_signature",
    )
    .await;
    let ts: i64 = hs[2].1.parse().unwrap();
    h.rejected(
        "v1 timestamp tampered",
        "POST",
        "/internal/v1/reports",
        &with(&hs, "x-internal-timestamp", &(ts - 1).to_string()),
        "",
        "bad_signature",
    )
    .await;
    // v1 with a stale timestamp.
    let old = (now() - 120).to_string();
    let hs = vec![
        (
            "x-internal-service-auth".to_owned(),
            v1_signature(BILLING, "GET", "/internal/v1/r", &old),
        ),
        ("x-service-name".to_owned(), "billing".to_owned()),
        ("x-internal-timestamp".to_owned(), old),
    ];
    h.rejected(
        "v1 stale",
        "GET",
        "/internal/v1/r",
        &hs,
        "",
        "stale_timestamp",
    )
    .await;
    h.finish().await;
}

// ---------------------------------------------------------------------------
// Rotation and the shared secret.

#[tokio::test(flavor = "multi_thread")]
async fn both_rotated_secrets_verify() {
    let both = format!("{BILLING_OLD},{BILLING}");
    let h = Harness::start(&[("ID_BILLING_SECRET", &both)]).await;
    for secret in [BILLING_OLD, BILLING] {
        let r = V2 {
            secret: secret.into(),
            ..V2::new("GET", "/internal/v2/rotation", "")
        };
        let got = h.send_v2(&r).await;
        assert_eq!(got.status, 200, "{secret}");
        assert_eq!(upstream_headers(&got)["x-caller-service"], "billing");
        let hs = v1_headers(secret, "billing", "GET", "/internal/v1/rotation");
        assert_eq!(
            h.send("GET", "/internal/v1/rotation", &hs, "").await.status,
            200,
            "v1 with {secret}"
        );
    }
    // The whole variable is not a secret, nor is a third value.
    for secret in [both.as_str(), "billing-third-secret-99"] {
        let r = V2 {
            secret: secret.into(),
            ..V2::new("GET", "/internal/v2/rotation", "")
        };
        h.rejected(
            "not one of the secrets",
            "GET",
            "/internal/v2/rotation",
            &r.headers(),
            "",
            "bad_signature",
        )
        .await;
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shared_secret_works_only_where_the_route_accepts_it() {
    let h = Harness::start(&[]).await;
    // legacy_app has no secret of its own; the shared one admits it here.
    let mut r = V2::new("POST", "/internal/legacy/jobs?x=1", r#"{"job":1}"#);
    r.service = "legacy_app".into();
    r.secret = SHARED.into();
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let echo = got.json();
    assert_eq!(echo["uri"], "/legacy/jobs?x=1");
    assert_eq!(echo["body"], r#"{"job":1}"#);
    let up = upstream_headers(&got);
    assert_eq!(up["x-caller-service"], "legacy_app");
    assert_eq!(up["x-tenant-id"], "acme");
    // v1 with the shared secret on the same route.
    let hs = v1_headers(SHARED, "legacy_app", "GET", "/internal/legacy/ping");
    let got = h.send("GET", "/internal/legacy/ping", &hs, "").await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream_headers(&got)["x-caller-service"], "legacy_app");
    // billing may use either its own or the shared secret on this route.
    for secret in [BILLING, SHARED] {
        let r = V2 {
            secret: secret.into(),
            ..V2::new("GET", "/internal/legacy/b", "")
        };
        assert_eq!(h.send_v2(&r).await.status, 200, "billing with {secret}");
    }

    // The shared secret on /internal/v2, which does not accept it.
    let r = V2 {
        secret: SHARED.into(),
        ..V2::new("GET", "/internal/v2/invoices", "")
    };
    h.rejected(
        "shared secret on /internal/v2",
        "GET",
        "/internal/v2/invoices",
        &r.headers(),
        "",
        "bad_signature",
    )
    .await;
    let mut r = V2::new("GET", "/internal/v2/invoices", "");
    r.service = "legacy_app".into();
    r.secret = SHARED.into();
    let before = h.hits();
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 403);
    check_error_body("legacy_app on /internal/v2", &got);
    assert_eq!(h.hits(), before);

    // Names the route does not admit, with the shared secret.
    let mut r = V2::new("GET", "/internal/legacy/jobs", "");
    r.service = "intruder".into();
    r.secret = SHARED.into();
    let before = h.hits();
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 403, "a name outside the route's callers");
    check_error_body("intruder on /internal/legacy", &got);
    assert_eq!(h.hits(), before);
    r.service = "reporting".into();
    r.nonce = nonce();
    h.rejected(
        "reporting (known, not admitted) with the shared secret",
        "GET",
        "/internal/legacy/jobs",
        &r.headers(),
        "",
        "service_not_allowed",
    )
    .await;
    h.finish().await;
}

// ---------------------------------------------------------------------------
// Modes.

#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_forwards_failures_without_identity_and_logs_them() {
    let h = Harness::start(&[("INTERNAL_AUTH_MODE", "audit")]).await;
    let signed = V2::new("POST", "/internal/v2/invoices", r#"{"amount":42}"#);
    let mut sent = signed.clone();
    sent.body = r#"{"amount":4200}"#.into();
    let got = h.send_tampered(&signed, &sent).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    assert_eq!(h.hits(), 1);
    let echo = got.json();
    assert_eq!(echo["body"], r#"{"amount":4200}"#);
    let up = upstream_headers(&got);
    assert!(!up.contains_key("x-caller-service"), "{up:?}");
    assert!(!up.contains_key("x-tenant-id"), "{up:?}");
    for name in SIGNING_HEADERS {
        assert!(!up.contains_key(name), "{name} reached the upstream");
    }
    // The caller's name never travels; this upstream is unsigned, so it
    // gets no `X-Service-Name` of the gateway's either (contract §3).
    assert!(!up.contains_key("x-service-name"), "{up:?}");
    let id = got.header("x-request-id").unwrap();
    let events = h.events_of(id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["mode"], "audit");
    assert_eq!(events[0]["reason"], "bad_signature");
    let access = h.access_of(id);
    assert!(access["caller"].is_null() && access["tenant"].is_null());

    // Unsigned: forwarded too, logged.
    let got = h
        .send(
            "GET",
            "/internal/v2/x",
            &[
                ("x-service-name".into(), "billing".into()),
                ("x-tenant-id".into(), "acme".into()),
            ],
            "",
        )
        .await;
    assert_eq!(got.status, 200);
    let up = upstream_headers(&got);
    assert!(!up.contains_key("x-caller-service") && !up.contains_key("x-tenant-id"));
    let events = h.events_of(got.header("x-request-id").unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["mode"], "audit");
    assert_eq!(events[0]["reason"], "missing_signature");

    // A valid signature still carries its identity.
    let r = V2::new("GET", "/internal/v2/ok", "");
    let got = h.send_v2(&r).await;
    assert_eq!(got.status, 200);
    let up = upstream_headers(&got);
    assert_eq!(up["x-caller-service"], "billing");
    assert_eq!(up["x-tenant-id"], "acme");
    assert!(h.events_of(got.header("x-request-id").unwrap()).is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_mode_forwards_the_claimed_caller_and_tenant() {
    let h = Harness::start(&[("INTERNAL_AUTH_MODE", "disabled")]).await;
    let got = h
        .send(
            "GET",
            "/internal/v2/invoices",
            &[
                ("x-service-name".into(), "billing".into()),
                ("x-tenant-id".into(), "acme".into()),
                ("x-internal-service-auth".into(), "v2=00".into()),
            ],
            "",
        )
        .await;
    assert_eq!(got.status, 200);
    let up = upstream_headers(&got);
    assert_eq!(up["x-caller-service"], "billing");
    assert_eq!(up["x-tenant-id"], "acme");
    assert!(!up.contains_key("x-internal-service-auth"));
    // The caller's name never travels; this upstream is unsigned, so it
    // gets no `X-Service-Name` of the gateway's either (contract §3).
    assert!(!up.contains_key("x-service-name"), "{up:?}");
    h.finish().await;
}

fn startup_env(mode: &str, gateway_env: &str) -> StartupEnv {
    let mut pairs: Vec<(String, String)> = base_env("127.0.0.1:9".parse().unwrap())
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    pairs.push(("INTERNAL_AUTH_MODE".into(), mode.into()));
    pairs.push(("GATEWAY_ENV".into(), gateway_env.into()));
    StartupEnv::from_pairs(pairs)
}

#[test]
fn disabled_mode_is_refused_in_production() {
    let err = Gateway::<identity::Spec>::new(&startup_env("disabled", "production"))
        .expect_err("disabled is refused in production");
    let msg = err.to_string();
    assert!(msg.contains("INTERNAL_AUTH_MODE"), "{msg}");
    // Elsewhere it starts (logged loudly), and production accepts the other modes.
    assert!(Gateway::<identity::Spec>::new(&startup_env("disabled", "staging")).is_ok());
    assert!(Gateway::<identity::Spec>::new(&startup_env("enforce", "production")).is_ok());
    assert!(Gateway::<identity::Spec>::new(&startup_env("audit", "production")).is_ok());
    // An unknown mode is not silently "enforce" or "disabled".
    let err = Gateway::<identity::Spec>::new(&startup_env("off", "staging"))
        .expect_err("unknown mode refused");
    assert!(err.to_string().contains("INTERNAL_AUTH_MODE"), "{err}");
}

// ---------------------------------------------------------------------------
// Body limit.

/// Writes `head` (a request head ending in the blank line) and returns the
/// first whole response: status line, headers and a `content-length` body.
async fn raw_response(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len || n == 0 {
                let status = text[9..12].parse().unwrap();
                return (status, text);
            }
        }
        assert!(n > 0, "connection closed: {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_one_mib_on_a_v2_route_is_413_before_the_upstream() {
    let h = Harness::start(&[]).await;
    // Exactly 1 MiB is within the limit.
    let at_limit = V2::new("POST", "/internal/v2/upload", &"a".repeat(1 << 20));
    let got = h.send_v2(&at_limit).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["body"].as_str().unwrap().len(), 1 << 20);
    let before = h.hits();

    // One byte more, correctly signed, declared by Content-Length: refused
    // from the head alone, before the body is sent.
    let over = V2::new("POST", "/internal/v2/upload", &"a".repeat((1 << 20) + 1));
    let mut head = format!(
        "POST {} HTTP/1.1\r\nhost: gw\r\ncontent-length: {}\r\n",
        over.path_and_query,
        over.body.len()
    );
    for (k, v) in over.headers() {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (status, text) = raw_response(h.gw.addr, &head).await;
    assert_eq!(status, 413, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json"), "{text}");
    let body: Value = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    assert!(body["error"].is_string());
    let id = body["request_id"].as_str().unwrap();
    assert!(
        lower.contains(&format!("x-request-id: {}", id.to_ascii_lowercase())),
        "{text}"
    );
    assert_eq!(h.access_of(id)["status"], 413);
    assert_eq!(h.hits(), before, "the upstream was contacted");

    // The same with the whole body sent through a client.
    let over = V2::new("POST", "/internal/v2/upload", &"b".repeat((1 << 20) + 1));
    let got = h.send_v2(&over).await;
    assert_eq!(got.status, 413);
    check_error_body("over the limit", &got);
    assert_eq!(h.hits(), before, "the upstream was contacted");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_request_is_refused_before_its_body_is_read() {
    // Authentication runs before the body limit (contract §2): a v2 route
    // checks everything the head shows before buffering any body.
    let h = Harness::start(&[]).await;
    let head = "POST /internal/v2/upload HTTP/1.1\r\nhost: gw\r\ncontent-length: 2097152\r\n\r\n";
    let (status, text) = raw_response(h.gw.addr, head).await;
    assert_eq!(status, 403, "{text}");
    let claimed = "POST /internal/v2/upload HTTP/1.1\r\nhost: gw\r\ncontent-length: 2097152\r\nx-service-name: intruder\r\nx-internal-service-auth: v2=0000000000000000000000000000000000000000000000000000000000000000\r\nx-internal-timestamp: 1\r\n\r\n";
    let (status, text) = raw_response(h.gw.addr, claimed).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(h.hits(), 0);
    h.finish().await;
}

// ---------------------------------------------------------------------------
// The shared service token.

#[tokio::test(flavor = "multi_thread")]
async fn the_service_token_is_checked_and_forwarded_only_when_the_route_says_so() {
    let h = Harness::start(&[]).await;
    let token = vec![("x-service-token".to_owned(), TOKEN.to_owned())];
    let got = h.send("GET", "/internal/token/a?b=1", &token, "").await;
    assert_eq!(got.status, 200);
    let echo = got.json();
    assert_eq!(echo["uri"], "/token/a?b=1");
    assert!(
        !upstream_headers(&got).contains_key("x-service-token"),
        "{echo}"
    );
    assert_eq!(h.hits(), 1);

    for (what, headers) in [
        (
            "wrong token",
            vec![(
                "x-service-token".to_owned(),
                "wrong-token-value-1a2b3c4d".to_owned(),
            )],
        ),
        (
            "token with a suffix",
            vec![("x-service-token".to_owned(), format!("{TOKEN}x"))],
        ),
        (
            "token prefix",
            vec![(
                "x-service-token".to_owned(),
                TOKEN[..TOKEN.len() - 1].into(),
            )],
        ),
        ("missing token", vec![]),
    ] {
        let before = h.hits();
        let got = h.send("GET", "/internal/token/a", &headers, "").await;
        assert_eq!(got.status, 401, "{what}");
        let id = got.header("x-request-id").unwrap().to_owned();
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(
            String::from_utf8_lossy(&got.body),
            format!(r#"{{"error":"Invalid service token","request_id":"{id}"}}"#),
            "{what}"
        );
        assert_eq!(h.hits(), before, "{what}: the upstream was contacted");
        let events = h.events_of(&id);
        assert_eq!(events.len(), 1, "{what}: {events:?}");
        assert_eq!(events[0]["mode"], "enforce");
    }

    // Where the route forwards it, it reaches the upstream.
    let got = h
        .send("GET", "/internal/token-forwarded/a", &token, "")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["uri"], "/token-forwarded/a");
    assert_eq!(upstream_headers(&got)["x-service-token"], TOKEN);
    let got = h
        .send(
            "GET",
            "/internal/token-forwarded/a",
            &[("x-service-token".into(), "nope-nope-nope-nope".into())],
            "",
        )
        .await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error"], "Invalid service token");
    // `finish` checks the access log: the forwarded token is logged nowhere.
    let lines = h.logs.lock().unwrap().clone();
    assert!(lines.iter().all(|l| !l.contains(TOKEN)));
    h.finish().await;
}

// ---------------------------------------------------------------------------
// Logs.

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_signature_or_token_is_ever_logged() {
    let both = format!("{BILLING_OLD},{BILLING}");
    let h = Harness::start(&[("ID_BILLING_SECRET", &both)]).await;
    // A mix of successes and every kind of failure, with the secrets in
    // places a careless logger might copy (query, path, headers).
    let ok = V2::new("POST", "/internal/v2/a?q=1", r#"{"a":1}"#);
    assert_eq!(h.send_v2(&ok).await.status, 200);
    assert_eq!(h.send_v2(&ok).await.status, 403);
    let bad = V2 {
        secret: "guessed-secret-abcdef12".into(),
        ..V2::new("GET", "/internal/v2/b", "")
    };
    assert_eq!(h.send_v2(&bad).await.status, 403);
    let old = V2 {
        secret: BILLING_OLD.into(),
        ..V2::new("GET", "/internal/v2/c", "")
    };
    assert_eq!(h.send_v2(&old).await.status, 200);
    let hs = v1_headers(REPORTING, "reporting", "GET", "/internal/v1/d");
    assert_eq!(h.send("GET", "/internal/v1/d", &hs, "").await.status, 200);
    assert_eq!(
        h.send("GET", "/internal/v2/d", &hs, "").await.status,
        403,
        "v1 on v2"
    );
    let mut legacy = V2::new("GET", "/internal/legacy/e", "");
    legacy.service = "legacy_app".into();
    legacy.secret = SHARED.into();
    assert_eq!(h.send_v2(&legacy).await.status, 200);
    for t in [TOKEN, "wrong-token-value-9z8y7x6w"] {
        h.send(
            "GET",
            "/internal/token/f",
            &[("x-service-token".into(), t.into())],
            "",
        )
        .await;
        h.send(
            "GET",
            "/internal/token-forwarded/f",
            &[("x-service-token".into(), t.into())],
            "",
        )
        .await;
    }
    let lines = h.lines();
    assert!(lines.iter().any(|l| l["event"] == "auth_failure"));
    assert!(lines.iter().any(|l| l["target"] == "access"));
    // No line carries any signing or credential header value.
    for l in &lines {
        let text = l.to_string();
        assert!(!text.contains("v2="), "{text}");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_keyed_on_the_service_gives_each_verified_caller_its_own_bucket() {
    let h = Harness::start(&[]).await;
    let as_caller = |service: &str, secret: &str| {
        let mut r = V2::new("POST", "/internal/limited/jobs", r#"{"n":1}"#);
        r.service = service.into();
        r.secret = secret.into();
        r
    };
    for i in 0..2 {
        let got = h.send_v2(&as_caller("billing", BILLING)).await;
        assert_eq!(got.status, 200, "billing request {i}");
        let want = format!(r#""per-service";r={};t={}"#, 1 - i, i);
        assert_eq!(got.header("ratelimit"), Some(want.as_str()));
    }
    let got = h.send_v2(&as_caller("billing", BILLING)).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.header("retry-after"), Some("1"));
    // Same client address, another verified service: its own bucket.
    let got = h.send_v2(&as_caller("reporting", REPORTING)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("ratelimit"), Some(r#""per-service";r=1;t=0"#));
    // A forged caller never gets as far as the limit, nor spends a token.
    let mut forged = as_caller("reporting", "wrong-secret");
    forged.nonce = nonce();
    assert_eq!(h.send_v2(&forged).await.status, 403);
    let got = h.send_v2(&as_caller("reporting", REPORTING)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("ratelimit"), Some(r#""per-service";r=0;t=1"#));
    assert_eq!(h.hits(), 4);
    h.finish().await;
}
