//! The service client on its own, as a service uses it without the
//! gateway: its calls verify with [`ServiceVerifier`], carry the tenant and
//! ids, and report outcomes to a breaker.
#![cfg(feature = "client")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_service::{
    Admission, BaseUrl, Breaker, CallContext, OutboundIdentity, ServiceClient, ServiceError,
    ServiceVerifier, Signer, StartupEnv, SystemClock,
};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// An upstream that verifies every request and answers with the verdict,
/// the URI and the headers it got; `/fail` answers 500.
async fn upstream(verifier: ServiceVerifier) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let verifier = Arc::new(Mutex::new(verifier));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let verifier = verifier.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let verifier = verifier.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let verdict = match verifier.lock().unwrap().verify(&parts, &body) {
                            Ok(call) => {
                                json!({"ok": true, "proof": format!("{:?}", call.proof), "tenant": call.tenant})
                            }
                            Err(r) => json!({"ok": false, "reason": r.reason}),
                        };
                        let headers: serde_json::Map<String, Value> = parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                            .collect();
                        let status = if parts.uri.path().ends_with("/fail") {
                            500
                        } else {
                            200
                        };
                        let out = json!({"verdict": verdict, "uri": parts.uri.to_string(), "headers": headers});
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(out.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn signer(identity: OutboundIdentity, secret_env: &str) -> Signer {
    let env = StartupEnv::from_pairs([(secret_env, "k1")]);
    Signer::new("billing", "insights", identity, &env, Arc::new(SystemClock)).unwrap()
}

#[tokio::test]
async fn calls_verify_and_carry_the_tenant_and_ids() {
    let verifier = ServiceVerifier::new(
        "insights",
        "billing",
        vec![b"k1".to_vec()],
        Duration::from_secs(60),
    );
    let addr = upstream(verifier).await;
    let url = BaseUrl::parse(&format!("http://{addr}/base/")).unwrap();
    let identity = OutboundIdentity::Hmac { secret_env: "S" };
    let client = ServiceClient::http(
        "insights",
        url,
        signer(identity, "S"),
        Duration::from_secs(10),
    );
    let ctx = CallContext {
        tenant: Some("acme".into()),
        correlation_id: Some("corr-7".into()),
    };
    let got: Value = client.get("/trends?window=7d", &ctx).await.unwrap();
    assert_eq!(
        got["verdict"],
        json!({"ok": true, "proof": "HmacV2", "tenant": "acme"}),
        "{got}"
    );
    assert_eq!(got["uri"], "/base/trends?window=7d");
    assert_eq!(got["headers"]["x-correlation-id"], "corr-7");
    assert_eq!(got["headers"]["x-service-name"], "billing");
    let posted: Value = client
        .call(http::Method::POST, "/scores", Some(&json!({"k": 1})), &ctx)
        .await
        .unwrap();
    assert_eq!(
        posted["verdict"]["ok"], true,
        "the body hash is signed: {posted}"
    );
    assert_eq!(posted["headers"]["content-type"], "application/json");
}

/// Counts what the client reports; refuses calls once told to.
#[derive(Debug, Default)]
struct Counting {
    open: AtomicU32,
    ok: AtomicU32,
    failed: AtomicU32,
}

/// The breaker the client owns, sharing its counts with the test.
#[derive(Debug)]
struct Shared(Arc<Counting>);

impl Breaker for Shared {
    fn admit(&self) -> Admission {
        if self.0.open.load(Ordering::SeqCst) == 1 {
            Admission::Rejected
        } else {
            Admission::Allowed
        }
    }

    fn record(&self, _: Admission, ok: bool) {
        let n = if ok { &self.0.ok } else { &self.0.failed };
        n.fetch_add(1, Ordering::SeqCst);
    }

    fn release(&self, _: Admission) {}
}

#[tokio::test]
async fn outcomes_reach_the_breaker_and_an_open_circuit_is_not_called() {
    let verifier = ServiceVerifier::new(
        "insights",
        "billing",
        vec![b"k1".to_vec()],
        Duration::from_secs(60),
    );
    let addr = upstream(verifier).await;
    let url = BaseUrl::parse(&format!("http://{addr}")).unwrap();
    let identity = OutboundIdentity::Jwt {
        secret_env: "S",
        ttl: Duration::from_secs(60),
    };
    let counts = Arc::new(Counting::default());
    let client = ServiceClient::http(
        "insights",
        url,
        signer(identity, "S"),
        Duration::from_secs(10),
    )
    .with_breaker(Shared(counts.clone()));
    let ctx = CallContext::default();
    let got: Value = client.get("/fine", &ctx).await.unwrap();
    assert_eq!(got["verdict"]["proof"], "Jwt", "{got}");
    assert_eq!(
        got["headers"]["x-correlation-id"], got["headers"]["x-request-id"],
        "a fresh correlation id when none is given"
    );
    match client.get::<Value>("/fail", &ctx).await {
        Err(ServiceError::Status { status: 500, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (
            counts.ok.load(Ordering::SeqCst),
            counts.failed.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    counts.open.store(1, Ordering::SeqCst);
    match client.get::<Value>("/fine", &ctx).await {
        Err(ServiceError::CircuitOpen(s)) => assert_eq!(s, "insights"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        counts.ok.load(Ordering::SeqCst) + counts.failed.load(Ordering::SeqCst),
        2
    );
}

#[test]
fn base_urls_are_plain_http_or_https_without_credentials_or_query() {
    let u = BaseUrl::parse("http://10.0.0.1:9000/base/").unwrap();
    assert_eq!(
        (u.authority.as_str(), u.base_path.as_str()),
        ("10.0.0.1:9000", "/base")
    );
    for (bad, why) in [
        ("ftp://x", "the scheme must be http or https"),
        ("http://u:p@x", "credentials do not belong in the URL"),
        ("http://x/?a=1", "a base URL has no query"),
        ("/relative", "no scheme"),
    ] {
        assert_eq!(BaseUrl::parse(bad).unwrap_err(), why, "{bad}");
    }
}
