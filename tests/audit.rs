//! The service-to-service authentication audit
//! (`../shared/seeds/002_d6ae819d36ac6e74.txt`): tests for the checks that
//! no other test proved on its own. `SECURITY.md` names, for every check
//! of the audit, the tests that prove it; these are the `audit::` ones.
//!
//! Black-box where the property is on the wire: a real listener on
//! 127.0.0.1:0, in-process upstreams that count what reaches them, and the
//! log lines the gateway writes.

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/lib.rs"]
mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis::Spec as Aegis;
use bytes::Bytes;
use gateway::auth::hmac::{body_sha256, fresh_nonce, now_unix, sign_v2, V2Input};
use gateway::config::StartupEnv;
use gateway::log::AccessSink;
use gateway::server::Gateway;
use gateway::service::{Proof, ServiceVerifier};
use gateway::spec::{Methods, Spec as _};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};
use support::{send, sign_claims, start_shared, Got, Running};

mod audit {
    gateway_macros::spec!("tests/specs/audit.yaml");
}

mod outbound {
    gateway_macros::spec!("tests/specs/outbound.yaml");
}

mod identity {
    gateway_macros::spec!("tests/specs/identity.yaml");
}

mod tls_upstream {
    gateway_macros::spec!("tests/specs/tls_upstream.yaml");
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Every log line written so far, parsed.
fn parsed(lines: &Lines) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

/// The `auth_failure` security events of request `id`.
fn events_of(lines: &Lines, id: &str) -> Vec<Value> {
    parsed(lines)
        .into_iter()
        .filter(|l| l["event"] == "auth_failure" && l["request_id"] == id)
        .collect()
}

/// The one access-log line of request `id`.
fn access_of(lines: &Lines, id: &str) -> Value {
    let mut found: Vec<Value> = parsed(lines)
        .into_iter()
        .filter(|l| l["target"] == "access" && l["request_id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "one access line for {id}: {found:?}");
    found.remove(0)
}

fn request_id(got: &Got) -> String {
    got.header("x-request-id").expect("x-request-id").to_owned()
}

// === upstreams ===

/// What reached an upstream: requests and TCP (or TLS) connections.
#[derive(Clone, Default)]
struct Counters {
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Counters {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

type Answer = Arc<dyn Fn(&http::request::Parts, &[u8]) -> (u16, Value) + Send + Sync>;

/// A plain-HTTP upstream that counts requests and connections and answers
/// each request with `answer`.
async fn upstream(answer: Answer) -> (SocketAddr, Counters) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Counters::default();
    let seen = counters.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (answer, seen) = (answer.clone(), seen.clone());
                    async move {
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        let (status, json) = answer(&parts, &body.unwrap_or_default());
                        let mut resp =
                            http::Response::new(Full::new(Bytes::from(json.to_string())));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, counters)
}

/// The request as the upstream saw it: URI and headers.
fn echo(parts: &http::request::Parts) -> Value {
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
        .collect();
    json!({"uri": parts.uri.to_string(), "headers": headers})
}

/// An upstream that echoes every request.
async fn echo_upstream() -> (SocketAddr, Counters) {
    upstream(Arc::new(|parts, _| (200, echo(parts)))).await
}

/// An upstream that checks the gateway's proof like a real service would:
/// 403 with the reason when it does not hold, the echo otherwise.
async fn strict_upstream(service: &str, gateway: &str, secret: &str) -> (SocketAddr, Counters) {
    let verifier = Mutex::new(ServiceVerifier::new(
        service,
        gateway,
        vec![secret.as_bytes().to_vec()],
        Duration::from_secs(60),
    ));
    upstream(Arc::new(move |parts, body| {
        match verifier.lock().unwrap().verify(parts, body) {
            Ok(_) => (200, echo(parts)),
            Err(r) => (403, json!({"error": r.reason})),
        }
    }))
    .await
}

/// The AEGIS gateway with every service at `url`.
async fn aegis_at(url: &str) -> (Running, Lines) {
    let mut env = support::aegis_env();
    for (_, var, _) in support::AEGIS_SERVICES {
        env.push((var, url.to_owned()));
    }
    let lines = Lines::default();
    let (gw, _) = start_shared::<Aegis>(&env, AccessSink::Memory(lines.clone())).await;
    (gw, lines)
}

const BILLING_SECRET: &str = "audit-billing-secret-8c1f";
const BACKEND_SECRET: &str = "audit-backend-credential-41d2";

/// `tests/specs/audit.yaml` in front of `backend`, signing its requests
/// to it with `credential`.
async fn audit_gateway(backend: SocketAddr, credential: &str) -> (Running, Lines) {
    let lines = Lines::default();
    let env = [
        ("AUDIT_BACKEND_URL", format!("http://{backend}")),
        ("AUDIT_BACKEND_SECRET", credential.to_owned()),
        ("AUDIT_BILLING_SECRET", BILLING_SECRET.to_owned()),
    ];
    let (gw, _) = start_shared::<audit::Spec>(&env, AccessSink::Memory(lines.clone())).await;
    (gw, lines)
}

/// HMAC v2 headers of `billing` for `GET path`, with a fresh nonce.
fn billing_signed_get(path: &str, secret: &str) -> Vec<(String, String)> {
    let ts = now_unix().to_string();
    let nonce = fresh_nonce();
    let empty = body_sha256(b"");
    let sig = sign_v2(
        secret.as_bytes(),
        &V2Input {
            method: "GET",
            path_and_query: path,
            timestamp: &ts,
            nonce: &nonce,
            service: "billing",
            tenant: "",
            body_sha256: &empty,
        },
    );
    vec![
        ("x-internal-service-auth".into(), sig),
        ("x-service-name".into(), "billing".into()),
        ("x-internal-timestamp".into(), ts),
        ("x-internal-nonce".into(), nonce),
    ]
}

async fn send_owned(method: &str, url: &str, headers: &[(String, String)]) -> Got {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send(method, url, &h, "").await
}

// === Service Endpoint - Inbound ===

/// The AEGIS spec's public routes (seed 004, "Unauthenticated routes").
/// Any other route must refuse a request that carries no credential.
const AEGIS_PUBLIC: [&str; 4] = [
    "api_v1_auth_token",
    "api_v1_entity_types",
    "api_v1_relationship_rules",
    "api_v1_relationship_types",
];

/// A request path matching a router path (`{p0}`, `{*p1}` filled in).
fn concrete(router_path: &str) -> String {
    router_path
        .split('/')
        .map(|seg| match seg {
            s if s.starts_with("{*") => "a/b",
            s if s.starts_with('{') => "x1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Internal routes require auth; the auth middleware is global: every
/// router path of the AEGIS spec (the tests' copy), with every method its route accepts,
/// is 401 without a credential and never reaches an upstream, except the
/// routes that the spec declares public, which are exactly the four of
/// seed 004. A new route is authenticated unless its policy says otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_the_declared_public_ones_refuses_a_request_without_credentials() {
    let (up, counters) = echo_upstream().await;
    let (gw, lines) = aegis_at(&format!("http://{up}")).await;
    let mut public = BTreeSet::new();
    let mut refused = 0;
    for (router_path, routes) in <Aegis as gateway::spec::Spec>::PATHS {
        let path = concrete(router_path);
        for &route in *routes {
            let spec = Aegis::route(route);
            if AEGIS_PUBLIC.contains(&spec.id) {
                // Once per public route: anonymous clients share one
                // rate-limit bucket.
                if public.insert(spec.id) {
                    let before = counters.requests();
                    let got = send("GET", &gw.url(&path), &[], "").await;
                    assert_eq!(got.status, 200, "public {path}");
                    assert_eq!(counters.requests(), before + 1, "public {path}");
                }
                continue;
            }
            for (method, bit) in Methods::NAMES {
                if spec.methods.0 & bit == 0 {
                    continue;
                }
                let before = counters.requests();
                let got = send(method, &gw.url(&path), &[], "").await;
                assert_eq!(got.status, 401, "{method} {path} ({})", spec.id);
                assert_eq!(got.header("www-authenticate"), Some("Bearer"), "{path}");
                assert_eq!(
                    counters.requests(),
                    before,
                    "{method} {path} reached upstream"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(
        public,
        BTreeSet::from(AEGIS_PUBLIC),
        "each public route exists"
    );
    assert!(refused > 100, "{refused}");
    // Each refusal is one security event.
    let events = parsed(&lines)
        .into_iter()
        .filter(|l| l["event"] == "auth_failure" && l["reason"] == "missing_token")
        .count();
    assert_eq!(events, refused);
    gw.shutdown().await;
}

/// Token audience validated: with `audience` configured, a token without
/// `aud` is refused (a wrong one is in `auth_jwt`), and logged.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_the_configured_audience_is_refused() {
    let (up, counters) = echo_upstream().await;
    let lines = Lines::default();
    let secret = "audit-identity-jwt-secret";
    let (gw, _) = start_shared::<identity::Spec>(
        &[
            ("ID_BACKEND_URL", format!("http://{up}")),
            ("ID_JWT_SECRET", secret.into()),
            ("ID_BILLING_SECRET", "b".into()),
            ("ID_REPORTING_SECRET", "r".into()),
            ("ID_SHARED_SECRET", "s".into()),
            ("ID_SERVICE_TOKEN", "t".into()),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    let bearer = |claims: Value| format!("Bearer {}", sign_claims(&claims, secret));
    let base = json!({"sub": "u1", "iss": "id-issuer", "exp": support::now() + 600});
    let mut with_aud = base.clone();
    with_aud["aud"] = json!("gateway");
    let ok = send(
        "GET",
        &gw.url("/user/x"),
        &[("authorization", &bearer(with_aud))],
        "",
    )
    .await;
    assert_eq!(ok.status, 200);
    let got = send(
        "GET",
        &gw.url("/user/x"),
        &[("authorization", &bearer(base))],
        "",
    )
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error"], "Invalid token");
    let ev = events_of(&lines, &request_id(&got));
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "missing_claim");
    assert_eq!(
        counters.requests(),
        1,
        "only the valid token reached the upstream"
    );
    gw.shutdown().await;
}

/// A refused request: path, headers, status, security-event reason.
type RefusalCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// Correlation ID logged: a security event carries the request's
/// `request_id` and `correlation_id` (the client's, when valid, else the
/// request id), the same as its access-log line and response headers.
#[tokio::test(flavor = "multi_thread")]
async fn security_events_carry_the_request_and_correlation_ids() {
    let (up, _) = echo_upstream().await;
    let (gw, lines) = aegis_at(&format!("http://{up}")).await;
    let operator = format!("Bearer {}", support::aegis_token("olga", &["operator"]));
    let cases: [RefusalCase; 3] = [
        (
            "/api/v1/rules",
            vec![("x-correlation-id", "audit-corr-1")],
            401,
            "missing_token",
        ),
        (
            "/api/v1/admin/users",
            vec![
                ("authorization", operator.as_str()),
                ("x-correlation-id", "audit-corr-2"),
            ],
            403,
            "missing_role",
        ),
        (
            "/api/v1/rules",
            vec![("x-correlation-id", "not a valid id")],
            401,
            "missing_token",
        ),
    ];
    for (path, headers, status, reason) in cases {
        let got = send("GET", &gw.url(path), &headers, "").await;
        assert_eq!(got.status, status, "{path}");
        let id = request_id(&got);
        let correlation = got.header("x-correlation-id").unwrap().to_owned();
        let ev = events_of(&lines, &id);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0]["reason"], reason);
        assert_eq!(ev[0]["correlation_id"], correlation.as_str());
        assert_eq!(
            access_of(&lines, &id)["correlation_id"],
            correlation.as_str()
        );
    }
    let events: Vec<Value> = parsed(&lines)
        .into_iter()
        .filter(|l| l["event"] == "auth_failure")
        .collect();
    assert_eq!(events[0]["correlation_id"], "audit-corr-1");
    assert_eq!(events[1]["correlation_id"], "audit-corr-2");
    assert_eq!(events[1]["caller"], "olga");
    assert_eq!(
        events[2]["correlation_id"], events[2]["request_id"],
        "an invalid correlation id is replaced by the request id"
    );
    gw.shutdown().await;
}

// === Service Client - Outbound ===

/// The seed's critical finding was a static `x-gateway-internal: true`
/// header that anyone could send. Here the marker is a proof: an upstream
/// verifier refuses a request that only claims to come from the gateway
/// (its name, the audited gateway's flag, a made-up signature, a token
/// signed with another key) and accepts the real one.
#[test]
fn a_spoofed_gateway_marker_never_passes_an_upstream_verifier() {
    let secret = "approval-credential-5e7a";
    let verifier = || {
        ServiceVerifier::new(
            "approval",
            "aegis-gateway",
            vec![secret.as_bytes().to_vec()],
            Duration::from_secs(60),
        )
    };
    let now = now_unix();
    let parts = |extra: &[(&str, String)]| {
        let mut b = http::Request::builder()
            .method("GET")
            .uri("/approvals/9")
            .header("x-service-name", "aegis-gateway")
            .header("x-gateway-internal", "true")
            .header("x-caller-service", "aegis-gateway");
        for (k, v) in extra {
            b = b.header(*k, v.as_str());
        }
        b.body(()).unwrap().into_parts().0
    };
    let signed_with = |key: &str| {
        let (ts, nonce, empty) = (now.to_string(), fresh_nonce(), body_sha256(b""));
        let sig = sign_v2(
            key.as_bytes(),
            &V2Input {
                method: "GET",
                path_and_query: "/approvals/9",
                timestamp: &ts,
                nonce: &nonce,
                service: "aegis-gateway",
                tenant: "",
                body_sha256: &empty,
            },
        );
        vec![
            ("x-internal-service-auth", sig),
            ("x-internal-timestamp", ts),
            ("x-internal-nonce", nonce),
        ]
    };
    let token = |key: &str| {
        let claims = json!({"iss": "aegis-gateway", "sub": "aegis-gateway", "aud": "approval",
            "iat": now, "exp": now + 60, "jti": "j-1"});
        vec![(
            "authorization",
            format!("Bearer {}", sign_claims(&claims, key)),
        )]
    };
    let refused =
        |extra: Vec<(&str, String)>| verifier().verify_at(&parts(extra.as_slice()), b"", now);
    assert_eq!(refused(vec![]).unwrap_err().reason, "missing_proof");
    let zeros = format!("v2={}", "0".repeat(64));
    let forged = vec![
        ("x-internal-service-auth", zeros),
        ("x-internal-timestamp", now.to_string()),
        ("x-internal-nonce", fresh_nonce()),
    ];
    assert_eq!(refused(forged).unwrap_err().reason, "bad_signature");
    assert_eq!(
        refused(signed_with("guessed-secret")).unwrap_err().reason,
        "bad_signature"
    );
    assert_eq!(
        refused(token("guessed-secret")).unwrap_err().reason,
        "bad_service_token"
    );
    // The genuine proofs pass, so the refusals above are about the proof.
    assert_eq!(
        refused(signed_with(secret)).map(|v| v.proof),
        Ok(Proof::HmacV2)
    );
    assert_eq!(refused(token(secret)).map(|v| v.proof), Ok(Proof::Jwt));
}

/// Unique per-service credentials: a proof the gateway made for one AEGIS
/// upstream (with that upstream's own credential) is refused by every
/// other upstream, so one service cannot replay it to another as the
/// gateway.
#[tokio::test(flavor = "multi_thread")]
async fn a_proof_made_for_one_upstream_is_refused_by_every_other() {
    let mut env = support::aegis_env();
    let mut logs = Vec::new();
    for (service, url_var, _) in support::AEGIS_SERVICES {
        let secret = support::service_secret(service);
        let (addr, log) =
            support::verifying_upstream(support::verifier(service, "aegis-gateway", &[&secret]))
                .await;
        env.push((url_var, format!("http://{addr}")));
        logs.push((service, log));
    }
    let (gw, _) = start_shared::<Aegis>(&env, AccessSink::Off).await;
    // One route per service.
    let calls = [
        ("orchestration", "POST", "/api/v1/conversations/c1"),
        ("approval", "GET", "/api/v1/approvals/9"),
        ("knowledge_graph", "GET", "/api/v1/graph/entities/e1"),
        ("ingestion", "POST", "/api/v1/ingest/csv"),
        ("compliance", "GET", "/api/v1/compliance/reports"),
        ("flaring", "GET", "/api/v1/alerts/a1"),
        ("auth", "POST", "/api/v1/auth/token"),
    ];
    let bearer = support::admin_bearer();
    for (_, method, path) in calls {
        let got = send(method, &gw.url(path), &[("authorization", &bearer)], "{}").await;
        assert_eq!(got.status, 200, "{path}");
    }
    let verifier_of = |service: &str| {
        ServiceVerifier::new(
            service,
            "aegis-gateway",
            vec![support::service_secret(service).into_bytes()],
            Duration::from_secs(60),
        )
    };
    let now = now_unix();
    let mut checked = 0;
    for (service, log) in &logs {
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{service}");
        let r = &seen[0];
        assert!(
            verifier_of(service)
                .verify_at(&r.parts, &r.body, now)
                .is_ok(),
            "{service} accepts its own proof"
        );
        for (other, _, _) in support::AEGIS_SERVICES {
            if other == *service {
                continue;
            }
            let verdict = verifier_of(other).verify_at(&r.parts, &r.body, now);
            assert!(
                verdict.is_err(),
                "{other} accepted a proof made for {service}"
            );
            checked += 1;
        }
    }
    // Every service with a route, against every other signed service.
    let n = logs.len();
    assert_eq!(checked, n * (n - 1));
    gw.shutdown().await;
}

/// Short-lived credentials: the service token the gateway sends lives
/// exactly its configured `ttl` (here 120 s, at most 300 s) and is refused
/// from its `exp` on, and by any service it was not minted for; an HMAC v2
/// signature is refused once its timestamp is more than 60 s old, and is
/// single-use.
#[tokio::test(flavor = "multi_thread")]
async fn outbound_credentials_expire_within_minutes() {
    const V2: &str = "audit-v2-credential";
    const TOKEN: &str = "audit-token-credential";
    const USERS: &str = "audit-users-secret";
    let (v2, v2_log) =
        support::verifying_upstream(support::verifier("signed_v2", "outbound-gateway", &[V2]))
            .await;
    let (tok, tok_log) =
        support::verifying_upstream(support::verifier("tokened", "outbound-gateway", &[TOKEN]))
            .await;
    let env = [
        ("OUT_JWT_SECRET", USERS.to_owned()),
        ("OUT_V2_URL", format!("http://{v2}")),
        ("OUT_TOKEN_URL", format!("http://{tok}")),
        ("OUT_V1_SECRET", "audit-v1-credential".to_owned()),
        ("OUT_V2_SECRET", V2.to_owned()),
        ("OUT_TOKEN_SECRET", TOKEN.to_owned()),
    ];
    let (gw, _) = start_shared::<outbound::Spec>(&env, AccessSink::Off).await;
    let user = sign_claims(
        &json!({"sub": "u-1", "org": "acme", "exp": support::now() + 600}),
        USERS,
    );
    let auth = format!("Bearer {user}");
    for path in ["/tok/x", "/v2/x"] {
        let got = send("GET", &gw.url(path), &[("authorization", &auth)], "").await;
        assert_eq!(got.json()["verdict"]["ok"], true, "{path}");
    }
    let verifier = |service: &str, secret: &str| {
        ServiceVerifier::new(
            service,
            "outbound-gateway",
            vec![secret.as_bytes().to_vec()],
            Duration::from_secs(60),
        )
    };

    // The service token.
    let r = tok_log.lock().unwrap()[0].clone();
    let header = r.parts.headers["authorization"].to_str().unwrap();
    let token = header.strip_prefix("Bearer ").unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .unwrap()
        .claims;
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 120, "the configured ttl");
    let at = |now: u64| verifier("tokened", TOKEN).verify_at(&r.parts, &r.body, now);
    assert_eq!(at(exp - 1).map(|v| v.proof), Ok(Proof::Jwt));
    assert_eq!(at(exp).unwrap_err().reason, "expired_service_token");
    assert_eq!(at(exp + 3600).unwrap_err().reason, "expired_service_token");
    // Minted for `tokened`: another service refuses it even if it knew the key.
    assert_eq!(
        verifier("signed_v2", TOKEN)
            .verify_at(&r.parts, &r.body, iat)
            .unwrap_err()
            .reason,
        "bad_service_token"
    );

    // The HMAC v2 signature.
    let r = v2_log.lock().unwrap()[0].clone();
    let ts: u64 = r.parts.headers["x-internal-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let at = |now: u64| verifier("signed_v2", V2).verify_at(&r.parts, &r.body, now);
    assert_eq!(at(ts + 60).map(|v| v.proof), Ok(Proof::HmacV2));
    assert_eq!(at(ts + 61).unwrap_err().reason, "stale_timestamp");
    let once = verifier("signed_v2", V2);
    assert!(once.verify_at(&r.parts, &r.body, ts).is_ok());
    assert_eq!(
        once.verify_at(&r.parts, &r.body, ts).unwrap_err().reason,
        "replayed_nonce"
    );
    gw.shutdown().await;
}

/// Failed auth logged (outbound): when an upstream refuses the gateway's
/// proof (here: the gateway holds a stale credential), the access-log line
/// records the upstream, its status and `upstream_ms`, and the upstream
/// got the same `X-Request-Id` to log on its side. A refusal by the gateway
/// itself is told apart: an `auth_failure` event and `upstream_ms: null`.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_refusing_the_gateways_proof_is_in_the_access_log() {
    let (up, counters) = strict_upstream("backend", "audit-gateway", BACKEND_SECRET).await;
    let (gw, lines) = audit_gateway(up, "stale-backend-credential").await;
    let got = send("GET", &gw.url("/open/report"), &[], "").await;
    assert_eq!(got.status, 403);
    assert_eq!(
        got.json()["error"],
        "bad_signature",
        "the upstream's answer"
    );
    assert_eq!(counters.requests(), 1);
    let id = request_id(&got);
    let access = access_of(&lines, &id);
    assert_eq!(access["status"], 403);
    assert_eq!(access["upstream"], "backend");
    assert!(access["upstream_ms"].is_number(), "{access}");
    assert!(
        events_of(&lines, &id).is_empty(),
        "not the gateway's refusal"
    );
    // The gateway's own refusal of an unsigned caller.
    let got = send("GET", &gw.url("/internal/x"), &[], "").await;
    assert_eq!(got.status, 403);
    let id = request_id(&got);
    assert_eq!(events_of(&lines, &id).len(), 1);
    assert!(access_of(&lines, &id)["upstream_ms"].is_null());
    assert_eq!(counters.requests(), 1);
    gw.shutdown().await;
    // With the right credential the same request passes: the 403 above was
    // about the credential.
    let (gw, _) = audit_gateway(up, BACKEND_SECRET).await;
    let got = send("GET", &gw.url("/open/report"), &[], "").await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json()["headers"]["x-request-id"],
        request_id(&got).as_str()
    );
    gw.shutdown().await;
}

/// Credentials not hardcoded: the gateway has no built-in value for any
/// credential. Without any one of the bundled spec's variables it
/// does not start, naming that variable; and none of the development
/// values of `dev.env` is in `gateway.yaml` or in the code generated from
/// it.
#[test]
fn no_credential_has_a_built_in_value() {
    let dev_env = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dev.env")).unwrap();
    // Lines of the form: export NAME="${NAME:-value}"
    let dev: Vec<(String, String)> = dev_env
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (name, rest) = l.split_once('=').unwrap();
            let value = rest.split_once(":-").unwrap().1.trim_end_matches("}\"");
            (name.to_owned(), value.to_owned())
        })
        // dev.env also binds loopback; that is no credential.
        .filter(|(name, _)| name != "GATEWAY_LISTEN")
        .collect();
    // JWT_SECRET and one credential per signed service of the bundled spec.
    let signed = <gateway::routes::Spec as gateway::spec::Spec>::SERVICES
        .iter()
        .filter(|s| !matches!(s.identity, gateway::outbound::OutboundIdentity::Unsigned))
        .count();
    assert_eq!(dev.len(), 1 + signed, "{dev:?}");
    let start = |env: Vec<(String, String)>| {
        Gateway::<gateway::routes::Spec>::new(&StartupEnv::from_pairs(env)).map(|_| ())
    };
    assert!(start(dev.clone()).is_ok());
    for (name, _) in &dev {
        let without: Vec<_> = dev.iter().filter(|(n, _)| n != name).cloned().collect();
        let e = start(without).unwrap_err().to_string();
        assert!(e.starts_with(name.as_str()), "{name}: {e}");
    }
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml")).unwrap();
    let generated = gateway_codegen::compile_str("gateway.yaml", &spec)
        .unwrap()
        .render();
    for (name, value) in &dev {
        assert!(
            !spec.contains(value.as_str()),
            "{name}'s value in gateway.yaml"
        );
        assert!(
            !generated.contains(value.as_str()),
            "{name}'s value compiled in"
        );
        assert!(
            generated.contains(name.as_str()),
            "{name} is named, not valued"
        );
    }
}

// === TLS to upstreams ===

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "audit upstream CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for `localhost` (DER) and its key: issued by `ca`,
/// or self-signed; valid now, or expired in 2021.
fn localhost_cert(ca: Option<&Ca>, expired: bool) -> (Vec<u8>, KeyPair) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.der().to_vec(), key)
}

/// An HTTPS upstream (TLS 1.2 and 1.3 offered) that answers with the
/// negotiated protocol version, counting handshakes and requests.
async fn https_upstream(cert: (Vec<u8>, KeyPair)) -> (SocketAddr, Counters) {
    let (der, key) = cert;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![der.into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Counters::default();
    let seen = counters.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.connections.fetch_add(1, Ordering::SeqCst);
                let version = format!("{:?}", tls.get_ref().1.protocol_version());
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    let body = json!({"tls": version, "http": format!("{:?}", req.version())});
                    async move {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, counters)
}

/// `tests/specs/tls_upstream.yaml` with its `trusted` service at
/// `https://localhost:<port>`, verified against `ca`.
async fn tls_gateway(upstream: SocketAddr, ca: &Ca, tag: &str) -> (Running, Lines) {
    let file =
        std::env::temp_dir().join(format!("gateway-audit-ca-{}-{tag}.pem", std::process::id()));
    std::fs::write(&file, &ca.pem).unwrap();
    let lines = Lines::default();
    let env = [
        (
            "TRUSTED_URL",
            format!("https://localhost:{}", upstream.port()),
        ),
        ("TRUSTED_CA_FILE", file.display().to_string()),
    ];
    let (gw, _) = start_shared::<tls_upstream::Spec>(&env, AccessSink::Memory(lines.clone())).await;
    (gw, lines)
}

/// Modern HTTP client: the upstream client negotiates TLS 1.3 when the
/// upstream offers it, and keeps connections alive in a pool: three
/// requests, one handshake.
#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_client_speaks_tls_1_3_and_pools_connections() {
    let ca = ca();
    let (up, counters) = https_upstream(localhost_cert(Some(&ca), false)).await;
    let (gw, _) = tls_gateway(up, &ca, "modern").await;
    for i in 0..3 {
        let got = send("GET", &gw.url(&format!("/trusted/{i}")), &[], "").await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        assert_eq!(got.json()["tls"], "Some(TLSv1_3)");
        assert_eq!(got.json()["http"], "HTTP/1.1");
    }
    assert_eq!(counters.requests(), 3);
    assert_eq!(counters.connections(), 1, "one pooled connection");
    gw.shutdown().await;
}

/// TLS certificate validation: besides an unknown issuer and a wrong name
/// (`upstream_tls`), an expired certificate from the trusted CA and a
/// self-signed one are refused in the handshake: 502, the reason in the
/// access log, and not one request reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn expired_and_self_signed_upstream_certificates_are_refused() {
    let ca = ca();
    for (what, cert, because) in [
        ("expired", localhost_cert(Some(&ca), true), "xpired"),
        ("self-signed", localhost_cert(None, false), "UnknownIssuer"),
    ] {
        let (up, counters) = https_upstream(cert).await;
        let (gw, lines) = tls_gateway(up, &ca, what).await;
        let got = send("GET", &gw.url("/trusted/x"), &[], "").await;
        assert_eq!(got.status, 502, "{what}");
        assert_eq!(got.json()["error"], "Bad gateway");
        let line = access_of(&lines, &request_id(&got)).to_string();
        assert!(line.contains(because), "{what}: {line}");
        assert_eq!(counters.requests(), 0, "{what}: a request was served");
        gw.shutdown().await;
    }
}

/// No TLS bypass: `services.*.tls` has exactly three fields (a CA bundle
/// and a client certificate with its key); any field meant to skip
/// verification, under any spelling, is a build error, as is such a field
/// on the service itself.
#[test]
fn no_spec_field_turns_upstream_certificate_checks_off() {
    let spec = |service_extra: &str| {
        format!(
            "gateway:\n  name: t\n  listen: \"127.0.0.1:0\"\nservices:\n  s:\n    url: {{ env: S_URL, default: \"https://localhost:9443\" }}\n    identity: {{ kind: none, unsigned: true }}\n{service_extra}routes:\n  - path: /s*\n    service: s\n    upstream: /*\n"
        )
    };
    let compile = |extra: &str| gateway_codegen::compile_str("gateway.yaml", &spec(extra));
    assert!(compile("    tls: { ca_file_env: S_CA }\n").is_ok());
    for field in [
        "insecure: true",
        "insecure_skip_verify: true",
        "skip_verify: true",
        "verify: false",
        "danger_accept_invalid_certs: true",
        "reject_unauthorized: false",
    ] {
        let e = compile(&format!("    tls: {{ ca_file_env: S_CA, {field} }}\n"))
            .err()
            .unwrap_or_else(|| panic!("`tls.{field}` compiled"))
            .render();
        assert!(e.contains("unknown field"), "{field}: {e}");
        assert!(
            e.contains("expected one of `ca_file_env`, `client_cert_env`, `client_key_env`"),
            "{field}: {e}"
        );
        let e = compile(&format!("    {field}\n"))
            .err()
            .unwrap_or_else(|| panic!("service `{field}` compiled"))
            .render();
        assert!(e.contains("unknown field"), "{field}: {e}");
    }
}

// === Proxy headers ===

/// Original IP forwarded: behind a trusted proxy the incoming
/// `X-Forwarded-For` chain is kept with the proxy appended, its
/// `X-Forwarded-Proto`/`-Host` are kept, and the access log and security
/// events name the original client (the nearest untrusted address). From
/// an untrusted peer the same headers are replaced and the peer is logged.
#[tokio::test(flavor = "multi_thread")]
async fn the_original_client_address_is_forwarded_and_logged_only_through_trusted_proxies() {
    let (up, _) = strict_upstream("backend", "audit-gateway", BACKEND_SECRET).await;
    let (gw, lines) = audit_gateway(up, BACKEND_SECRET).await;
    let proxied = [
        ("x-forwarded-for", "203.0.113.7, 127.0.0.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
    ];
    let got = send("GET", &gw.url("/open/x"), &proxied, "").await;
    assert_eq!(got.status, 200);
    let h = &got.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "public.example");
    assert_eq!(
        access_of(&lines, &request_id(&got))["client_ip"],
        "203.0.113.7"
    );
    let got = send("GET", &gw.url("/internal/x"), &proxied, "").await;
    assert_eq!(got.status, 403);
    let ev = events_of(&lines, &request_id(&got));
    assert_eq!(ev[0]["client_ip"], "203.0.113.7");
    gw.shutdown().await;

    // AEGIS trusts no proxy: the client's claims are replaced.
    let (up, _) = echo_upstream().await;
    let (gw, lines) = aegis_at(&format!("http://{up}")).await;
    let got = send("GET", &gw.url("/api/v1/entity-types/x"), &proxied, "").await;
    assert_eq!(got.status, 200);
    let h = &got.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(
        access_of(&lines, &request_id(&got))["client_ip"],
        "127.0.0.1"
    );
    gw.shutdown().await;
}

// === Fail-secure ===

/// Access check fails secure: when the replay cache is full of live
/// nonces, a correctly signed request with a new nonce is refused with 503
/// (and an event) instead of being admitted unchecked or making the cache
/// forget a nonce; the requests it did admit still cannot be replayed.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_replay_cache_refuses_new_nonces_instead_of_forgetting_old_ones() {
    let (up, counters) = strict_upstream("backend", "audit-gateway", BACKEND_SECRET).await;
    let (gw, lines) = audit_gateway(up, BACKEND_SECRET).await;
    let mut admitted = Vec::new();
    let mut full = None;
    // The cache holds at most 1024 nonces (1000, rounded up per shard).
    for i in 0..1100 {
        let path = format!("/internal/n{i}");
        let headers = billing_signed_get(&path, BILLING_SECRET);
        let got = send_owned("GET", &gw.url(&path), &headers).await;
        match got.status.as_u16() {
            200 => admitted.push((path, headers)),
            503 => {
                full = Some(got);
                break;
            }
            other => panic!("request {i}: {other} {:?}", got.body),
        }
    }
    let full = full.expect("the cache filled up");
    assert!(admitted.len() <= 1024, "{}", admitted.len());
    assert_eq!(full.json()["error"], "Service temporarily unavailable");
    let ev = events_of(&lines, &request_id(&full));
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "nonce_cache_full");
    assert_eq!(ev[0]["caller"], "billing");
    assert_eq!(
        counters.requests(),
        admitted.len(),
        "the 503 never reached the upstream"
    );
    // Nothing was forgotten to make room.
    for (path, headers) in admitted.iter().take(5).chain(admitted.iter().rev().take(5)) {
        let got = send_owned("GET", &gw.url(path), headers).await;
        assert_eq!(got.status, 403, "replay of {path}");
        assert_eq!(
            events_of(&lines, &request_id(&got))[0]["reason"],
            "replayed_nonce"
        );
    }
    assert_eq!(counters.requests(), admitted.len());
    gw.shutdown().await;
}

/// Health check errors handled: `/health` is the gateway's own and never
/// waits on an upstream. With every upstream accepting connections and
/// never answering, and a request stuck on one of them, `/health` still
/// answers at once.
#[tokio::test(flavor = "multi_thread")]
async fn health_answers_at_once_while_every_upstream_hangs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    let (gw, _) = aegis_at(&format!("http://{hanging}")).await;
    let url = gw.url("/api/v1/entity-types/x");
    let stuck = tokio::spawn(async move { send("GET", &url, &[], "").await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for method in ["GET", "HEAD", "GET"] {
        let got = tokio::time::timeout(
            Duration::from_secs(1),
            send(method, &gw.url("/health"), &[], ""),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} /health waited"));
        assert_eq!(got.status, 200, "{method}");
        if method == "GET" {
            assert_eq!(got.json(), json!({"status": "ok"}));
        }
    }
    assert!(!stuck.is_finished(), "the proxied request is still waiting");
    stuck.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.shutdown()).await;
}
